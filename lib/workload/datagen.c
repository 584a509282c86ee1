/* Data generator and PRNG: PUT bodies are slices of a pool built once per core. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wl/datagen.h"

uint64_t wl_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The state is four outputs of a splitmix64 stream started at seed, as the xoshiro authors
 * recommend (wl_mix64 adds the splitmix increment itself). */
void wl_rng_seed(wl_rng_t *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        r->s[i] = wl_mix64(seed);
        seed += 0x9e3779b97f4a7c15ull;
    }
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3]))
        r->s[0] = 1;
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t wl_rng_next(wl_rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Lemire's nearly divisionless method: unbiased. */
uint64_t wl_rng_below(wl_rng_t *r, uint64_t n)
{
    if (n <= 1)
        return 0;
    unsigned __int128 m = (unsigned __int128)wl_rng_next(r) * n;
    uint64_t l = (uint64_t)m;
    if (l < n) {
        uint64_t t = -n % n;
        while (l < t) {
            m = (unsigned __int128)wl_rng_next(r) * n;
            l = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

double wl_rng_double(wl_rng_t *r)
{
    return (double)(wl_rng_next(r) >> 11) * 0x1.0p-53;
}

struct wl_datagen {
    uint8_t *pool;
    size_t nstarts; /* distinct start offsets */
    size_t grain;   /* their spacing: 4 KiB for plain data, WL_DG_BLOCK when blocks matter */
};

static void fill_random(wl_rng_t *r, uint8_t *p, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = wl_rng_next(r);
        memcpy(p + i, &v, 8);
    }
    if (i < n) {
        uint64_t v = wl_rng_next(r);
        memcpy(p + i, &v, n - i);
    }
}

int wl_datagen_create(wl_fill_t fill, uint32_t dedup_factor, uint32_t compress_factor,
                      uint64_t seed, int core, wl_datagen_t **out)
{
    if (!dedup_factor || !compress_factor || !out)
        return -EINVAL;
    if (fill != WL_FILL_RANDOM && fill != WL_FILL_ZERO)
        return -EINVAL;
    wl_datagen_t *g = calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    void *pool;
    if (posix_memalign(&pool, 4096, WL_DG_POOL) != 0) {
        free(g);
        return -ENOMEM;
    }
    g->pool = pool;
    size_t nblocks = WL_DG_POOL / WL_DG_BLOCK;
    /* Objects start at a per-object offset; with dedup or compression the offset keeps block
     * boundaries so the ratios hold inside every object. */
    g->grain = (dedup_factor > 1 || compress_factor > 1) ? WL_DG_BLOCK : 4096;
    g->nstarts = WL_DG_POOL / g->grain;
    if (fill == WL_FILL_ZERO) {
        memset(g->pool, 0, WL_DG_POOL);
        *out = g;
        return 0;
    }
    wl_rng_t r;
    wl_rng_seed(&r, seed ^ wl_mix64((uint64_t)core + 0x51ed2701ull));
    /* compress_factor N: the first ceil(BLOCK/N) bytes of each block random, the rest zero */
    size_t rnd = (WL_DG_BLOCK + compress_factor - 1) / compress_factor;
    /* dedup_factor N: U unique blocks, block b copies unique block (b / N) so that any run of
     * consecutive blocks holds about 1/N distinct ones */
    for (size_t b = 0; b < nblocks; b++) {
        uint8_t *blk = g->pool + b * WL_DG_BLOCK;
        if (dedup_factor > 1 && b % dedup_factor != 0) {
            memcpy(blk, g->pool + (b - b % dedup_factor) * WL_DG_BLOCK, WL_DG_BLOCK);
            continue;
        }
        fill_random(&r, blk, rnd);
        memset(blk + rnd, 0, WL_DG_BLOCK - rnd);
    }
    *out = g;
    return 0;
}

void wl_datagen_destroy(wl_datagen_t *g)
{
    if (!g)
        return;
    free(g->pool);
    free(g);
}

int wl_datagen_fill(wl_datagen_t *g, uint64_t object_id, uint64_t size, struct iovec *iov,
                    int max_iov)
{
    if (size == 0)
        return 0;
    if (!g || !iov || max_iov <= 0)
        return -EINVAL;
    size_t off = (size_t)(wl_mix64(object_id) % g->nstarts) * g->grain;
    /* one slice up to the end of the pool, then whole passes over it */
    uint64_t first = WL_DG_POOL - off;
    uint64_t need = 1 + (size > first ? (size - first + WL_DG_POOL - 1) / WL_DG_POOL : 0);
    if (need > (uint64_t)max_iov)
        return -EINVAL;
    int n = 0;
    while (size > 0) {
        size_t take = WL_DG_POOL - off;
        if (take > size)
            take = (size_t)size;
        iov[n].iov_base = g->pool + off;
        iov[n].iov_len = take;
        n++;
        size -= take;
        off = 0;
    }
    return n;
}
