/* wl/datagen.h — object data from pre-built blocks: no per-op generation cost.
 *
 * A generator owns a pool of pre-built data (built once per core at start) for one
 * (fill, dedup_factor, compress_factor) triple, and hands out PUT bodies as iovec slices of it.
 * Nothing is copied per op.
 *
 * - fill random: a xoshiro256** stream seeded from (seed, core) — different per run and per agent
 *   when the caller seeds from time, pid and agent id.
 * - fill zero: zeros.
 * - dedup_factor N: the object is made of 4 KiB-aligned blocks of WL_DG_BLOCK bytes; only 1/N of
 *   the blocks in any object-sized window are unique, the rest repeat them (dedup ratio ≈ N:1).
 * - compress_factor N: each block is about 1/N random bytes followed by zeros (ratio ≈ N:1).
 *
 * Slices start at 4096-byte aligned addresses (O_DIRECT-safe). An object starts at a per-object
 * offset in the pool (4096 distinct starts for plain random data, 256 when dedup or compression
 * is on) and walks it, wrapping; objects larger than the pool repeat it. So data is unique within
 * WL_DG_POOL bytes of one object, but a dedup-capable store will find repeats across many small
 * objects or inside objects above 16 MiB.
 *
 * Thread-safety: a generator is owned by one core; wl_datagen_fill may be called only there.
 */
#ifndef WL_DATAGEN_H
#define WL_DATAGEN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define WL_DG_BLOCK (64 * 1024)      /* dedup / compress unit */
#define WL_DG_POOL (16 * 1024 * 1024) /* pre-built bytes per generator */
#define WL_DG_MAX_IOV 64

typedef enum wl_fill { WL_FILL_RANDOM = 0, WL_FILL_ZERO } wl_fill_t;

typedef struct wl_datagen wl_datagen_t;

/* Returns 0, -EINVAL (factor 0) or -ENOMEM. seed: mixed with core. */
int wl_datagen_create(wl_fill_t fill, uint32_t dedup_factor, uint32_t compress_factor,
                      uint64_t seed, int core, wl_datagen_t **out);
void wl_datagen_destroy(wl_datagen_t *g);
/* Describes an object of `size` bytes as up to WL_DG_MAX_IOV slices (chained through the pool,
 * repeating it if size > pool). `object_id` selects where in the pool the object starts, so
 * different ids give different data. Returns the number of iovecs (0 for size 0) or -EINVAL when
 * max_iov is too small for size. */
int wl_datagen_fill(wl_datagen_t *g, uint64_t object_id, uint64_t size, struct iovec *iov,
                    int max_iov);

/* Fast PRNG shared by the engine (xoshiro256**). Not thread-safe: one per owner. */
typedef struct wl_rng {
    uint64_t s[4];
} wl_rng_t;
void wl_rng_seed(wl_rng_t *r, uint64_t seed);
uint64_t wl_rng_next(wl_rng_t *r);
/* Uniform in [0, n) without modulo bias; n > 0. */
uint64_t wl_rng_below(wl_rng_t *r, uint64_t n);
/* Uniform double in [0, 1). */
double wl_rng_double(wl_rng_t *r);
/* splitmix64 mixer, handy for deriving per-index seeds. */
uint64_t wl_mix64(uint64_t x);

#endif
