/* syscall_loop: the floor for a small-file mix, as bare syscalls in a tight loop.
 *
 * A reference point for test/bench/smallfile.sh, not part of the product. T pthreads each pick,
 * uniformly at random (25/25/25/25, like sai3bench-ctl's weighted pick), one of
 *
 *   PUT     open(O_WRONLY|O_CREAT|O_TRUNC) + write(size) + close, always a new name
 *   GET     open(O_RDONLY) + read(size) + close of a random pre-created file
 *   STAT    stat() of a random pre-created file
 *   DELETE  unlink() of the next pre-created delete-pool file, each file once
 *
 * for D seconds, and prints ops/s per op and in total, and the process CPU time (user+sys from
 * getrusage(RUSAGE_SELF), taken around the measured loop only, so setup and cleanup are not
 * counted) divided by the total number of ops. CPU can only be split per op kind when one kind
 * runs alone, so the per-op rows have no CPU figure.
 *
 * Names and layout follow what sai3bench-ctl does for an equivalent config: flat directories
 * get/ and del/ holding prepared-%08d.dat, new objects in put/. If the delete pool is used up
 * before SECONDS, the run ends there (the measured window is then shorter, which is reported);
 * so the mix stays 25/25/25/25 throughout. (sai3bench-ctl instead drops DELETE from the mix and
 * goes on; the benchmark script sizes its pool so that does not happen.)
 *
 * usage: syscall_loop DIR NFILES SIZE THREADS SECONDS [DELPOOL]
 *   DIR must exist; the program creates and at the end removes DIR/{get,del,put}.
 * Build: cc -O2 -pthread -o syscall_loop syscall_loop.c
 *
 * Output: a human table, then one machine-readable line per op and one for the total:
 *   RESULT op=PUT count=N ops_per_sec=X
 *   RESULT op=TOTAL count=N ops_per_sec=X elapsed_s=E cpu_user_s=U cpu_sys_s=S cpu_us_per_op=C
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { OP_PUT, OP_GET, OP_STAT, OP_DELETE, OP_N };
static const char *op_names[OP_N] = {"PUT", "GET", "STAT", "DELETE"};

static char g_dir[PATH_MAX - 64];
static long g_nfiles, g_delpool;
static size_t g_size;
static int g_threads;

static atomic_int g_stop;
static atomic_long g_del_next;      /* next delete-pool index to unlink */
static atomic_int g_del_exhausted;  /* set once the pool is used up: the run ends */
static atomic_long g_errors;
static pthread_barrier_t g_start;   /* workers + main */
static pthread_barrier_t g_ready;   /* workers + main, after setup */

typedef struct {
    int id;
    uint64_t rng;
    long count[OP_N];
    long put_seq;                   /* PUT files made: put/t<id>-<0..put_seq-1> */
    char *buf;
    pthread_t tid;
} worker_t;

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *path)
{
    fprintf(stderr, "syscall_loop: %s %s: %s\n", what, path ? path : "", strerror(errno));
    exit(1);
}

static int write_file(const char *path, const char *buf, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -1;
    size_t off = 0;
    while (off < size) {
        ssize_t n = write(fd, buf + off, size - off);
        if (n < 0) {
            if (errno == EINTR) continue;
            close(fd);
            return -1;
        }
        off += (size_t)n;
    }
    return close(fd);
}

static int read_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    size_t off = 0;
    while (off < size) {
        ssize_t n = read(fd, buf + off, size - off);
        if (n < 0) {
            if (errno == EINTR) continue;
            close(fd);
            return -1;
        }
        if (n == 0) break;
        off += (size_t)n;
    }
    return close(fd);
}

static void pool_path(char *out, size_t cap, const char *sub, long i)
{
    snprintf(out, cap, "%s/%s/prepared-%08ld.dat", g_dir, sub, i);
}

static void *worker(void *arg)
{
    worker_t *w = arg;
    char path[PATH_MAX];

    /* Setup (not measured): each thread creates its share of both pools. */
    for (long i = w->id; i < g_nfiles; i += g_threads) {
        pool_path(path, sizeof(path), "get", i);
        if (write_file(path, w->buf, g_size)) die("create", path);
    }
    for (long i = w->id; i < g_delpool; i += g_threads) {
        pool_path(path, sizeof(path), "del", i);
        if (write_file(path, w->buf, g_size)) die("create", path);
    }
    pthread_barrier_wait(&g_ready);
    pthread_barrier_wait(&g_start);

    while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
        int op = (int)(xorshift(&w->rng) >> 32) & 3;
        int rc = 0;
        switch (op) {
        case OP_PUT:
            snprintf(path, sizeof(path), "%s/put/obj-t%d-%ld.dat", g_dir, w->id, w->put_seq++);
            rc = write_file(path, w->buf, g_size);
            break;
        case OP_GET:
            pool_path(path, sizeof(path), "get", (long)(xorshift(&w->rng) % (uint64_t)g_nfiles));
            rc = read_file(path, w->buf, g_size);
            break;
        case OP_STAT: {
            struct stat st;
            pool_path(path, sizeof(path), "get", (long)(xorshift(&w->rng) % (uint64_t)g_nfiles));
            rc = stat(path, &st);
            break;
        }
        case OP_DELETE: {
            long i = atomic_fetch_add(&g_del_next, 1);
            if (i >= g_delpool) {
                atomic_store(&g_del_exhausted, 1);
                atomic_store(&g_stop, 1);
                continue;
            }
            pool_path(path, sizeof(path), "del", i);
            rc = unlink(path);
            break;
        }
        }
        if (rc)
            atomic_fetch_add(&g_errors, 1);
        else
            w->count[op]++;
    }
    return NULL;
}

static void cleanup(worker_t *ws)
{
    char path[PATH_MAX];
    for (long i = 0; i < g_nfiles; i++) {
        pool_path(path, sizeof(path), "get", i);
        unlink(path);
    }
    long from = atomic_load(&g_del_next);
    for (long i = from < 0 ? 0 : from; i < g_delpool; i++) {
        pool_path(path, sizeof(path), "del", i);
        unlink(path);
    }
    for (int t = 0; t < g_threads; t++)
        for (long s = 0; s < ws[t].put_seq; s++) {
            snprintf(path, sizeof(path), "%s/put/obj-t%d-%ld.dat", g_dir, t, s);
            unlink(path);
        }
    const char *subs[] = {"get", "del", "put"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", g_dir, subs[i]);
        if (rmdir(path)) fprintf(stderr, "syscall_loop: rmdir %s: %s\n", path, strerror(errno));
    }
}

static long arg_long(const char *s, const char *what, long lo)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo) {
        fprintf(stderr, "syscall_loop: bad %s '%s'\n", what, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 6 || argc > 7) {
        fprintf(stderr, "usage: %s DIR NFILES SIZE THREADS SECONDS [DELPOOL]\n", argv[0]);
        return 2;
    }
    snprintf(g_dir, sizeof(g_dir), "%s", argv[1]);
    g_nfiles = arg_long(argv[2], "NFILES", 1);
    g_size = (size_t)arg_long(argv[3], "SIZE", 0);
    g_threads = (int)arg_long(argv[4], "THREADS", 1);
    double secs = (double)arg_long(argv[5], "SECONDS", 1);
    g_delpool = argc > 6 ? arg_long(argv[6], "DELPOOL", 1) : 200000;

    const char *subs[] = {"get", "del", "put"};
    char path[PATH_MAX];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", g_dir, subs[i]);
        if (mkdir(path, 0755) && errno != EEXIST) die("mkdir", path);
    }

    worker_t *ws = calloc((size_t)g_threads, sizeof(*ws));
    pthread_barrier_init(&g_ready, NULL, (unsigned)g_threads + 1);
    pthread_barrier_init(&g_start, NULL, (unsigned)g_threads + 1);
    for (int t = 0; t < g_threads; t++) {
        ws[t].id = t;
        ws[t].rng = 0x9E3779B97F4A7C15ull * (uint64_t)(t + 1) ^ (uint64_t)time(NULL);
        if (!ws[t].rng) ws[t].rng = 1;
        ws[t].buf = malloc(g_size ? g_size : 1);
        for (size_t i = 0; i < g_size; i++) ws[t].buf[i] = (char)(xorshift(&ws[t].rng) >> 56);
        if (pthread_create(&ws[t].tid, NULL, worker, &ws[t])) die("pthread_create", NULL);
    }
    double ts0 = now_s();
    pthread_barrier_wait(&g_ready); /* pools exist */
    double setup_s = now_s() - ts0;

    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    double t0 = now_s();
    pthread_barrier_wait(&g_start);
    double deadline = t0 + secs;
    while (!atomic_load(&g_stop) && now_s() < deadline) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&g_stop, 1);
    for (int t = 0; t < g_threads; t++) pthread_join(ws[t].tid, NULL);
    double elapsed = now_s() - t0;
    getrusage(RUSAGE_SELF, &r1);

    double user = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) +
                  (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6;
    double sys = (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
                 (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
    long per_op[OP_N] = {0}, total = 0;
    for (int t = 0; t < g_threads; t++)
        for (int o = 0; o < OP_N; o++) {
            per_op[o] += ws[t].count[o];
            total += ws[t].count[o];
        }

    printf("syscall_loop: dir=%s threads=%d seconds=%.2f files=%ld size=%zu delpool=%ld\n", g_dir,
           g_threads, elapsed, g_nfiles, g_size, g_delpool);
    printf("%-8s %12s %12s\n", "op", "count", "ops/s");
    for (int o = 0; o < OP_N; o++)
        printf("%-8s %12ld %12.0f\n", op_names[o], per_op[o], per_op[o] / elapsed);
    printf("%-8s %12ld %12.0f\n", "TOTAL", total, total / elapsed);
    printf("cpu: user %.3f s, sys %.3f s, %.2f us/op (user+sys / all ops)\n", user, sys,
           total ? (user + sys) * 1e6 / total : 0.0);
    if (atomic_load(&g_del_exhausted))
        printf("note: delete pool (%ld files) used up after %.2f s of %.0f s; the run ended "
               "there\n",
               g_delpool, elapsed, secs);
    if (atomic_load(&g_errors)) printf("warning: %ld failed ops\n", atomic_load(&g_errors));
    for (int o = 0; o < OP_N; o++)
        printf("RESULT op=%s count=%ld ops_per_sec=%.1f\n", op_names[o], per_op[o],
               per_op[o] / elapsed);
    printf("RESULT op=TOTAL count=%ld ops_per_sec=%.1f elapsed_s=%.3f cpu_user_s=%.3f "
           "cpu_sys_s=%.3f cpu_us_per_op=%.3f del_exhausted=%d errors=%ld\n",
           total, total / elapsed, elapsed, user, sys, total ? (user + sys) * 1e6 / total : 0.0,
           atomic_load(&g_del_exhausted), atomic_load(&g_errors));
    fflush(stdout);

    double tc0 = now_s();
    cleanup(ws);
    printf("timing: setup %.1f s, cleanup %.1f s (not measured)\n", setup_s, now_s() - tc0);
    for (int t = 0; t < g_threads; t++) free(ws[t].buf);
    free(ws);
    return 0;
}
