/*
 * The queues: two FIFOs of paths (urgent: inotify events and new folders; backlog: the
 * walk) and the entry table that deduplicates them, so a path is queued or running at
 * most once (pipeline.h states the invariants).
 */
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"

static size_t hash_path(const char *s);

entry *cx__entry_find(cx_pipeline *p, const char *path)
{
    for (entry *e = p->table[hash_path(path) & (p->table_size - 1)]; e; e = e->next)
        if (!strcmp(e->path, path)) return e;
    return NULL;
}

entry *cx__entry_add(cx_pipeline *p, const char *path, int state)
{
    if (p->n_entries >= p->table_size) {
        size_t size = p->table_size * 2;
        entry **table = calloc(size, sizeof *table);
        if (table) {
            for (size_t i = 0; i < p->table_size; i++) {
                while (p->table[i]) {
                    entry *e = p->table[i];
                    p->table[i] = e->next;
                    size_t b = hash_path(e->path) & (size - 1);
                    e->next = table[b];
                    table[b] = e;
                }
            }
            free(p->table);
            p->table = table;
            p->table_size = size;
        }
    }
    entry *e = calloc(1, sizeof *e);
    if (!e || !(e->path = strdup(path))) {
        free(e);
        return NULL;
    }
    e->state = state;
    size_t b = hash_path(path) & (p->table_size - 1);
    e->next = p->table[b];
    p->table[b] = e;
    p->n_entries++;
    return e;
}

void cx__entry_remove(cx_pipeline *p, entry *e)
{
    cx__cluster_entry_gone(p, e);
    for (entry **link = &p->table[hash_path(e->path) & (p->table_size - 1)]; *link;
         link = &(*link)->next) {
        if (*link == e) {
            *link = e->next;
            p->n_entries--;
            free(e->path);
            free(e);
            return;
        }
    }
}

void cx__fifo_push(fifo *q, const char *path)
{
    qitem *it = malloc(sizeof *it);
    if (!it || !(it->path = strdup(path))) {
        free(it);
        cx_log(LOG_ERR, "out of memory queueing %s", path);
        return;
    }
    it->next = NULL;
    if (q->tail) q->tail->next = it;
    else q->head = it;
    q->tail = it;
}

char *cx__fifo_pop(fifo *q)
{
    qitem *it = q->head;
    if (!it) return NULL;
    q->head = it->next;
    if (!q->head) q->tail = NULL;
    char *path = it->path;
    free(it);
    return path;
}

void cx__fifo_clear(fifo *q)
{
    char *path;
    while ((path = cx__fifo_pop(q))) free(path);
}

static size_t hash_path(const char *s) { return (size_t)cx_xxh64(s, strlen(s), 0); }
