/*
 * Ranking pieces shared by both backends: the candidate map (one slot per image id seen
 * by either side of a search), the bounded top-k heap, the final order, and the folder
 * and date filters for candidates that did not pass through SQL.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

candidate *capdb__map_get(candidate_map *m, int64_t id)
{
    if (m->n * 2 >= m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        candidate *slots = calloc(cap, sizeof *slots);
        if (!slots) return NULL;
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->slots[i].id) continue;
            size_t j = ((uint64_t)m->slots[i].id * 0x9E3779B97F4A7C15ull) & (cap - 1);
            while (slots[j].id) j = (j + 1) & (cap - 1);
            slots[j] = m->slots[i];
        }
        free(m->slots);
        m->slots = slots;
        m->cap = cap;
    }
    size_t j = ((uint64_t)id * 0x9E3779B97F4A7C15ull) & (m->cap - 1);
    while (m->slots[j].id && m->slots[j].id != id) j = (j + 1) & (m->cap - 1);
    if (!m->slots[j].id) {
        m->slots[j].id = id;
        m->n++;
    }
    return &m->slots[j];
}

void capdb__heap_offer(top_heap *h, double score, int64_t id)
{
    if (h->n == h->cap && score <= h->items[0].score) return;
    size_t i;
    if (h->n < h->cap) {
        /* sift up */
        i = (size_t)h->n++;
        while (i > 0 && h->items[(i - 1) / 2].score > score) {
            h->items[i] = h->items[(i - 1) / 2];
            i = (i - 1) / 2;
        }
    } else {
        /* replace the worst, sift down */
        i = 0;
        for (;;) {
            size_t l = 2 * i + 1, r = l + 1, m = i;
            double ms = score;
            if (l < (size_t)h->n && h->items[l].score < ms) {
                m = l;
                ms = h->items[l].score;
            }
            if (r < (size_t)h->n && h->items[r].score < ms) m = r;
            if (m == i) break;
            h->items[i] = h->items[m];
            i = m;
        }
    }
    h->items[i] = (scored){score, id};
}

/* A total order even with NaN scores (a damaged vector blob can make one): NaN last.
 * Without it a NaN compares unequal to itself, and a partition on it never ends. */
int capdb__by_score_desc(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    int x_nan = isnan(x->score), y_nan = isnan(y->score);
    if (x_nan != y_nan) return x_nan - y_nan;
    if (!x_nan && x->score != y->score) return x->score < y->score ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

int capdb__passes_filters(const capdb_query *q, const char *path, int64_t taken, int64_t mtime_ns)
{
    if (q->under_dir && *q->under_dir) {
        size_t len = strlen(q->under_dir);
        while (len > 0 && q->under_dir[len - 1] == '/') len--;
        if (!path || strncmp(path, q->under_dir, len) != 0 || path[len] != '/') return 0;
    }
    int64_t t = taken ? taken : mtime_ns / 1000000000;
    if (q->has_since && t < q->since) return 0;
    if (q->has_until && t > q->until) return 0;
    return 1;
}

scored *capdb__fuse(const candidate_map *map, int with_concepts, size_t *n)
{
    *n = 0;
    if (map->n == 0) return NULL;
    scored *order = malloc(map->n * sizeof *order);
    if (!order) return NULL;
    double text_max = 0, concept_max = 0;
    for (size_t i = 0; i < map->cap; i++) {
        const candidate *c = &map->slots[i];
        if (!c->id) continue;
        if (c->text > text_max) text_max = c->text;
        if (c->concept > concept_max) concept_max = c->concept;
    }
    for (size_t i = 0; i < map->cap; i++) {
        const candidate *c = &map->slots[i];
        if (!c->id) continue;
        double s = c->text;
        if (with_concepts)
            s = (text_max > 0 ? c->text / text_max : 0) +
                (concept_max > 0 ? c->concept / concept_max : 0);
        order[(*n)++] = (scored){s, c->id};
    }
    return order;
}

/* Quickselect (Hoare's partition, lower-middle pivot) of the best `need`, then one qsort
 * of just those. Invariant of the loop: order[0..lo) is better than order[lo..n),
 * order[hi..n) worse than order[0..hi), and lo <= need <= hi; it needs the comparator's
 * total order (NaN included). The scans are bounded as well: nothing can make them leave
 * the array. */
size_t capdb__sort_prefix(scored *order, size_t n, size_t sorted, size_t need)
{
    if (need > n) need = n;
    if (need <= sorted) return sorted;
    size_t lo = sorted, hi = n;
    if (need == n) hi = lo; /* everything left is wanted: just sort it */
    while (hi - lo > 1 && lo < need) {
        scored pivot = order[lo + (hi - 1 - lo) / 2];
        size_t i = lo, j = hi - 1;
        for (;;) {
            while (i < hi - 1 && capdb__by_score_desc(&order[i], &pivot) < 0) i++;
            while (j > lo && capdb__by_score_desc(&order[j], &pivot) > 0) j--;
            if (i >= j) break;
            scored t = order[i];
            order[i++] = order[j];
            order[j--] = t;
        }
        /* order[lo..j] are all better than or equal to order[j+1..hi) */
        if (need <= j + 1) hi = j + 1;
        else lo = j + 1;
    }
    qsort(order + sorted, need - sorted, sizeof *order, capdb__by_score_desc);
    return need;
}

const char *capdb__count_sql(const char *group)
{
    if (!strcmp(group, "format"))
        return "SELECT coalesce(format, 'unknown'), count(*) FROM images WHERE status = 0"
               " GROUP BY 1 ORDER BY 2 DESC, 1";
    if (!strcmp(group, "reason"))
        return "SELECT coalesce(reason, 'unknown'), count(*) FROM images WHERE status = 1"
               " GROUP BY 1 ORDER BY 2 DESC, 1";
    return NULL;
}
