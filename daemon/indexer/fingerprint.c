/*
 * Content fingerprint: XXH64 (seed 0) of the whole file, streamed in 256 KiB reads.
 * Used to recognise a file that moved while nobody watched (or whose inotify rename pair
 * was split) and a file merely touched, so that neither costs a model run. XXH64 runs at
 * memory speed, so the disk, not the hash, sets the pace.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capindexer.h"

#define P1 11400714785074694791ULL
#define P2 14029467366897019727ULL
#define P3 1609587929392839161ULL
#define P4 9650029242287828579ULL
#define P5 2870177450012600261ULL
#define CHUNK (256 * 1024)

typedef struct {
    uint64_t v[4];
    uint64_t total;
    uint8_t buf[32];
    size_t buffered;
    uint64_t seed;
} xxh64_state;

static void xxh64_init(xxh64_state *s, uint64_t seed);
static void xxh64_update(xxh64_state *s, const uint8_t *p, size_t len);
static uint64_t xxh64_final(const xxh64_state *s);

int cx_fingerprint_file(const char *path, uint64_t *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return -errno;
    uint8_t *buf = malloc(CHUNK);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    xxh64_state s;
    xxh64_init(&s, 0);
    int rc = 0;
    for (;;) {
        ssize_t got = read(fd, buf, CHUNK);
        if (got < 0) {
            if (errno == EINTR) continue;
            rc = -errno;
            break;
        }
        if (got == 0) break;
        xxh64_update(&s, buf, (size_t)got);
    }
    free(buf);
    close(fd);
    if (rc == 0) *out = xxh64_final(&s);
    return rc;
}

uint64_t cx_xxh64(const void *data, size_t len, uint64_t seed)
{
    xxh64_state s;
    xxh64_init(&s, seed);
    xxh64_update(&s, data, len);
    return xxh64_final(&s);
}

/* ------------------------------------------------------------------ XXH64 */

static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* Little-endian 64-bit read: one unaligned load (the byte-by-byte loop this replaces
 * was not recognised as one, and made the hash 1.4 GB/s). */
static uint64_t read64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static uint32_t read32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t round64(uint64_t acc, uint64_t input)
{
    acc += input * P2;
    acc = rotl(acc, 31);
    return acc * P1;
}

static uint64_t merge_round(uint64_t acc, uint64_t val)
{
    acc ^= round64(0, val);
    return acc * P1 + P4;
}

static void xxh64_init(xxh64_state *s, uint64_t seed)
{
    memset(s, 0, sizeof *s);
    s->seed = seed;
    s->v[0] = seed + P1 + P2;
    s->v[1] = seed + P2;
    s->v[2] = seed;
    s->v[3] = seed - P1;
}

static void consume_stripe(xxh64_state *s, const uint8_t *p)
{
    for (int i = 0; i < 4; i++) s->v[i] = round64(s->v[i], read64(p + 8 * i));
}

static void xxh64_update(xxh64_state *s, const uint8_t *p, size_t len)
{
    s->total += len;
    if (s->buffered) {
        size_t take = 32 - s->buffered < len ? 32 - s->buffered : len;
        memcpy(s->buf + s->buffered, p, take);
        s->buffered += take;
        p += take;
        len -= take;
        if (s->buffered < 32) return;
        consume_stripe(s, s->buf);
        s->buffered = 0;
    }
    /* The lanes in locals: through s, every store would have to be reloaded after each
     * read of p (a byte pointer may alias the state), four times slower. */
    uint64_t v0 = s->v[0], v1 = s->v[1], v2 = s->v[2], v3 = s->v[3];
    while (len >= 32) {
        v0 = round64(v0, read64(p));
        v1 = round64(v1, read64(p + 8));
        v2 = round64(v2, read64(p + 16));
        v3 = round64(v3, read64(p + 24));
        p += 32;
        len -= 32;
    }
    s->v[0] = v0, s->v[1] = v1, s->v[2] = v2, s->v[3] = v3;
    memcpy(s->buf, p, len);
    s->buffered = len;
}

static uint64_t xxh64_final(const xxh64_state *s)
{
    uint64_t h;
    if (s->total >= 32) {
        h = rotl(s->v[0], 1) + rotl(s->v[1], 7) + rotl(s->v[2], 12) + rotl(s->v[3], 18);
        for (int i = 0; i < 4; i++) h = merge_round(h, s->v[i]);
    } else {
        h = s->seed + P5;
    }
    h += s->total;
    const uint8_t *p = s->buf;
    size_t len = s->buffered;
    while (len >= 8) {
        h ^= round64(0, read64(p));
        h = rotl(h, 27) * P1 + P4;
        p += 8;
        len -= 8;
    }
    if (len >= 4) {
        h ^= (uint64_t)read32(p) * P1;
        h = rotl(h, 23) * P2 + P3;
        p += 4;
        len -= 4;
    }
    while (len > 0) {
        h ^= (*p) * P5;
        h = rotl(h, 11) * P1;
        p++;
        len--;
    }
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}
