/* Unit tests for lib/storage's file:// and direct:// backends on a real uv loop: PUT/GET/HEAD
 * round trips with content checks, ranges, nested keys, LIST paging and filtering, DEL, MKDIR,
 * RMDIR, error codes and details, O_DIRECT refusal on tmpfs, timing order. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "rx/err.h"
#include "sto/backend.h"
#include "sto/err.h"
#include "sto/uri.h"

/* ---- fixture ---- */

typedef struct fx {
    const char *scheme; /* "file" or "direct" */
    uv_loop_t loop;
    char dir[64]; /* mkdtemp directory under /tmp */
    char uri[128];
    sto_store_t *st;
} fx_t;

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_rf(const char *path)
{
    nftw(path, rm_cb, 32, FTW_DEPTH | FTW_PHYS);
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->scheme = *state;
    if (uv_loop_init(&f->loop) != 0)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/sto-test-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->uri, sizeof(f->uri), "%s://%s/", f->scheme, f->dir);
    char err[256];
    if (sto_store_open(&f->loop, f->uri, 0, &f->st, err, sizeof(err)) != 0) {
        fprintf(stderr, "open %s: %s\n", f->uri, err);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    sto_store_close(f->st);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&f->loop);
    rm_rf(f->dir);
    free(f);
    return rc;
}

/* ---- requests ---- */

typedef struct wait {
    int done;
    size_t pages;
    size_t page_sizes[8];
    size_t entries;
    char **keys; /* collected when non-NULL capacity */
    int *is_dir;
    uint64_t *sizes;
    size_t cap;
} wait_t;

static void on_done(sto_req_t *r)
{
    ((wait_t *)r->ud)->done++;
}

static void on_page(sto_req_t *r, const sto_entry_t *e, size_t n)
{
    wait_t *w = r->ud;
    if (w->pages < 8)
        w->page_sizes[w->pages] = n;
    w->pages++;
    for (size_t i = 0; i < n; i++) {
        if (w->entries < w->cap) {
            w->keys[w->entries] = strdup(e[i].key);
            w->is_dir[w->entries] = e[i].is_dir;
            w->sizes[w->entries] = e[i].size;
        }
        w->entries++;
    }
}

static void wait_init(wait_t *w, size_t cap)
{
    memset(w, 0, sizeof(*w));
    w->cap = cap;
    w->keys = calloc(cap + 1, sizeof(char *));
    w->is_dir = calloc(cap + 1, sizeof(int));
    w->sizes = calloc(cap + 1, sizeof(uint64_t));
}

static void wait_fini(wait_t *w)
{
    for (size_t i = 0; i < w->entries && i < w->cap; i++)
        free(w->keys[i]);
    free(w->keys);
    free(w->is_dir);
    free(w->sizes);
}

/* Submits r and runs the loop until done; fails the test if done() runs more than once. */
static sto_result_t run(fx_t *f, sto_req_t *r, wait_t *w)
{
    wait_t local;
    if (!w) {
        wait_init(&local, 0);
        w = &local;
    }
    r->done = on_done;
    r->on_page = on_page;
    r->ud = w;
    int rc = sto_submit(f->st, r);
    if (rc != 0)
        fail_msg("sto_submit(%s %s): %d %s", sto_op_name(r->op), r->key ? r->key : "(null)", rc,
                 rx_strerror(rc));
    while (!w->done)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(w->done, 1);
    assert_ptr_equal(r->store, f->st);
    sto_result_t res = r->res;
    if (w == &local)
        wait_fini(&local);
    return res;
}

static sto_result_t op(fx_t *f, sto_op_t o, const char *key, int recursive)
{
    sto_req_t r;
    memset(&r, 0, sizeof(r));
    r.op = o;
    r.key = key;
    r.recursive = recursive;
    return run(f, &r, NULL);
}

static sto_result_t put(fx_t *f, const char *key, const struct iovec *iov, int n)
{
    sto_req_t r;
    memset(&r, 0, sizeof(r));
    r.op = STO_OP_PUT;
    r.key = key;
    r.iov = iov;
    r.iovcnt = n;
    return run(f, &r, NULL);
}

static sto_result_t get(fx_t *f, const char *key, uint64_t off, uint64_t len)
{
    sto_req_t r;
    memset(&r, 0, sizeof(r));
    r.op = STO_OP_GET;
    r.key = key;
    r.offset = off;
    r.length = len;
    return run(f, &r, NULL);
}

static void expect_ok(sto_result_t res, const char *what)
{
    if (res.status != 0)
        fail_msg("%s: %d %s (%s)", what, res.status, rx_strerror(res.status), res.detail);
}

static void expect_times(sto_result_t res)
{
    assert_true(res.t_submit_ns > 0);
    assert_true(res.t_submit_ns <= res.t_first_ns);
    assert_true(res.t_first_ns <= res.t_end_ns);
}

/* ---- pattern ---- */

#define BODY_MAX ((1u << 20) + 3)

static unsigned char pat(size_t i)
{
    return (unsigned char)((i * 131u + (i >> 12) * 7u + 13u) & 0xffu);
}

static unsigned char *pattern_buf(void)
{
    void *p = NULL;
    assert_int_equal(posix_memalign(&p, 4096, BODY_MAX + 8192), 0);
    unsigned char *b = p;
    for (size_t i = 0; i < BODY_MAX + 8192; i++)
        b[i] = pat(i);
    return b;
}

/* Reads the file with plain read() and compares it to the pattern. */
static void check_file(fx_t *f, const char *key, size_t size)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", f->dir, key);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal((size_t)st.st_size, size);
    unsigned char *buf = malloc(size + 1);
    assert_non_null(buf);
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, size + 1 - got);
        assert_true(n >= 0);
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    assert_int_equal(got, size);
    for (size_t i = 0; i < size; i++) {
        if (buf[i] != pat(i))
            fail_msg("%s: byte %zu is 0x%02x, expected 0x%02x", key, i, buf[i], pat(i));
    }
    free(buf);
}

/* ---- tests ---- */

static void test_put_get_sizes(void **state)
{
    fx_t *f = *state;
    static const size_t sizes[] = {0, 1, 4095, 4096, 4097, 8192 + 100, BODY_MAX};
    unsigned char *body = pattern_buf();
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t size = sizes[i];
        for (int split = 0; split < 3; split++) {
            char key[64];
            snprintf(key, sizeof(key), "obj-%zu-%d.dat", size, split);
            struct iovec iov[4];
            int n = 0;
            if (split == 0) {
                /* one iovec from an aligned buffer */
                iov[n++] = (struct iovec){body, size};
            } else if (split == 1) {
                /* unaligned pieces: the direct path copies through its scratch buffer */
                size_t a = size < 1000 ? size : 1000;
                size_t b = size - a < 7000 ? size - a : 7000;
                iov[n++] = (struct iovec){body, a};
                iov[n++] = (struct iovec){body + a, 0};
                iov[n++] = (struct iovec){body + a, b};
                iov[n++] = (struct iovec){body + a + b, size - a - b};
            } else {
                /* aligned pieces of aligned lengths, then an odd tail */
                size_t a = size & ~(size_t)4095;
                size_t a1 = a >= 8192 ? 4096 : a;
                iov[n++] = (struct iovec){body, a1};
                iov[n++] = (struct iovec){body + a1, a - a1};
                iov[n++] = (struct iovec){body + a, size - a};
            }
            sto_result_t res = put(f, key, iov, n);
            expect_ok(res, key);
            assert_int_equal(res.bytes, size);
            expect_times(res);
            check_file(f, key, size);

            res = op(f, STO_OP_HEAD, key, 0);
            expect_ok(res, "head");
            assert_int_equal(res.bytes, size);

            res = get(f, key, 0, 0);
            expect_ok(res, "get");
            assert_int_equal(res.bytes, size);
            expect_times(res);

            /* ranges */
            if (size > 100) {
                uint64_t off = 100, len = 5000;
                uint64_t want = size - off < len ? size - off : len;
                res = get(f, key, off, len);
                expect_ok(res, "get range");
                assert_int_equal(res.bytes, want);
                res = get(f, key, size - 1, 0); /* last byte, to the end */
                expect_ok(res, "get tail");
                assert_int_equal(res.bytes, 1);
                res = get(f, key, 0, 10);
                expect_ok(res, "get head");
                assert_int_equal(res.bytes, 10);
            }
            if (size > 0) {
                res = get(f, key, size + 10, 4);
                assert_int_equal(res.status, STO_ESHORT);
                assert_non_null(strstr(res.detail, "beyond the end"));
            }
        }
    }
    /* Overwrite truncates. */
    struct iovec one = {body, 1};
    expect_ok(put(f, "obj-1048579-0.dat", &one, 1), "overwrite");
    check_file(f, "obj-1048579-0.dat", 1);
    free(body);
}

static void test_nested_put(void **state)
{
    fx_t *f = *state;
    unsigned char *body = pattern_buf();
    struct iovec iov = {body, 5000};
    sto_result_t res = put(f, "a/b/c.dat", &iov, 1);
    expect_ok(res, "nested put");
    check_file(f, "a/b/c.dat", 5000);
    char path[128];
    struct stat st;
    snprintf(path, sizeof(path), "%s/a/b", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    /* A sibling in the now existing directory. */
    expect_ok(put(f, "a/b/d.dat", &iov, 1), "sibling put");
    expect_ok(get(f, "a/b/d.dat", 0, 0), "sibling get");
    free(body);
}

static void touch(fx_t *f, const char *key, size_t size)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", f->dir, key);
    char *sl = strrchr(path, '/');
    *sl = '\0';
    struct stat st;
    if (stat(path, &st) != 0) {
        /* mkdir -p without a shell */
        for (char *p = path + strlen(f->dir) + 1; *p; p++) {
            if (*p == '/') {
                *p = '\0';
                mkdir(path, 0755);
                *p = '/';
            }
        }
        mkdir(path, 0755);
    }
    *sl = '/';
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    close(fd);
}

static sto_result_t list(fx_t *f, const char *prefix, int recursive, wait_t *w)
{
    sto_req_t r;
    memset(&r, 0, sizeof(r));
    r.op = STO_OP_LIST;
    r.key = prefix;
    r.recursive = recursive;
    if (w)
        w->done = 0;
    return run(f, &r, w);
}

static void test_list_pages(void **state)
{
    fx_t *f = *state;
    char key[64];
    for (int i = 0; i < 2500; i++) {
        snprintf(key, sizeof(key), "pages/f-%05d.dat", i);
        touch(f, key, (size_t)i);
    }
    wait_t w;
    wait_init(&w, 3000);
    sto_result_t res = list(f, "pages/", 0, &w);
    expect_ok(res, "list pages");
    assert_int_equal(res.bytes, 2500);
    assert_int_equal(w.pages, 3);
    assert_int_equal(w.page_sizes[0], 1000);
    assert_int_equal(w.page_sizes[1], 1000);
    assert_int_equal(w.page_sizes[2], 500);
    assert_int_equal(w.entries, 2500);
    /* Sorted, each key once, with its size. */
    for (int i = 0; i < 2500; i++) {
        snprintf(key, sizeof(key), "pages/f-%05d.dat", i);
        assert_string_equal(w.keys[i], key);
        assert_int_equal(w.sizes[i], (uint64_t)i);
        assert_int_equal(w.is_dir[i], 0);
    }
    wait_fini(&w);

    /* Prefix filter on the last component. */
    wait_init(&w, 3000);
    res = list(f, "pages/f-01", 0, &w);
    expect_ok(res, "list filtered");
    assert_int_equal(w.entries, 1000);
    assert_int_equal(w.pages, 1);
    assert_string_equal(w.keys[0], "pages/f-01000.dat");
    assert_string_equal(w.keys[999], "pages/f-01999.dat");
    wait_fini(&w);

    wait_init(&w, 10);
    res = list(f, "pages/f-0249", 1, &w);
    expect_ok(res, "list filtered recursive");
    assert_int_equal(w.entries, 10);
    wait_fini(&w);

    /* The whole store, recursively. */
    wait_init(&w, 0);
    res = list(f, "", 1, &w);
    expect_ok(res, "list all");
    assert_int_equal(w.entries, 2500);
    assert_int_equal(res.bytes, 2500);
    expect_times(res);
    wait_fini(&w);
}

static void test_list_tree(void **state)
{
    fx_t *f = *state;
    touch(f, "tree/a.dat", 1);
    touch(f, "tree/b/c.dat", 2);
    touch(f, "tree/b/d/e.dat", 3);
    touch(f, "tree/bx.dat", 4);
    touch(f, "top.dat", 5);

    wait_t w;
    wait_init(&w, 10);
    expect_ok(list(f, "tree/", 1, &w), "recursive");
    assert_int_equal(w.entries, 4);
    assert_string_equal(w.keys[0], "tree/a.dat");
    assert_string_equal(w.keys[1], "tree/b/c.dat");
    assert_string_equal(w.keys[2], "tree/b/d/e.dat");
    assert_string_equal(w.keys[3], "tree/bx.dat");
    assert_int_equal(w.sizes[2], 3);
    for (int i = 0; i < 4; i++)
        assert_int_equal(w.is_dir[i], 0);
    wait_fini(&w);

    wait_init(&w, 10);
    expect_ok(list(f, "tree/", 0, &w), "one level");
    assert_int_equal(w.entries, 3);
    assert_string_equal(w.keys[0], "tree/a.dat");
    assert_string_equal(w.keys[1], "tree/b/");
    assert_int_equal(w.is_dir[1], 1);
    assert_string_equal(w.keys[2], "tree/bx.dat");
    assert_int_equal(w.sizes[2], 4);
    wait_fini(&w);

    wait_init(&w, 10);
    expect_ok(list(f, "tree/b", 0, &w), "one level, prefix");
    assert_int_equal(w.entries, 2);
    assert_string_equal(w.keys[0], "tree/b/");
    assert_string_equal(w.keys[1], "tree/bx.dat");
    wait_fini(&w);

    wait_init(&w, 10);
    expect_ok(list(f, "tree/b", 1, &w), "recursive, prefix");
    assert_int_equal(w.entries, 3);
    assert_string_equal(w.keys[0], "tree/b/c.dat");
    assert_string_equal(w.keys[1], "tree/b/d/e.dat");
    assert_string_equal(w.keys[2], "tree/bx.dat");
    wait_fini(&w);

    wait_init(&w, 10);
    expect_ok(list(f, "", 0, &w), "root level");
    assert_int_equal(w.entries, 2);
    assert_string_equal(w.keys[0], "top.dat");
    assert_string_equal(w.keys[1], "tree/");
    wait_fini(&w);

    /* Missing directories list empty, like object stores. */
    wait_init(&w, 10);
    sto_result_t res = list(f, "nope/", 1, &w);
    expect_ok(res, "missing dir");
    assert_int_equal(res.bytes, 0);
    assert_int_equal(w.entries, 0);
    assert_int_equal(w.pages, 0);
    res = list(f, "nope/deeper/x", 0, &w);
    expect_ok(res, "missing dir, prefix");
    res = list(f, "top.dat/", 0, &w); /* a file, not a directory */
    expect_ok(res, "not a dir");
    assert_int_equal(w.entries, 0);
    wait_fini(&w);
}

static void test_del_and_missing(void **state)
{
    fx_t *f = *state;
    unsigned char *body = pattern_buf();
    struct iovec iov = {body, 10};
    expect_ok(put(f, "gone.dat", &iov, 1), "put");
    expect_ok(op(f, STO_OP_DEL, "gone.dat", 0), "del");
    sto_result_t res = op(f, STO_OP_HEAD, "gone.dat", 0);
    assert_int_equal(res.status, STO_ENOTFOUND);
    assert_non_null(strstr(res.detail, "gone.dat"));
    res = op(f, STO_OP_DEL, "gone.dat", 0);
    assert_int_equal(res.status, STO_ENOTFOUND);

    res = get(f, "missing/x.dat", 0, 0);
    assert_int_equal(res.status, STO_ENOTFOUND);
    char want[128];
    snprintf(want, sizeof(want), "open %s/missing/x.dat: No such file or directory", f->dir);
    assert_string_equal(res.detail, want);
    assert_int_equal(res.bytes, 0);
    assert_true(res.t_end_ns >= res.t_submit_ns);
    free(body);
}

static void test_mkdir_rmdir(void **state)
{
    fx_t *f = *state;
    char path[128];
    struct stat st;
    expect_ok(op(f, STO_OP_MKDIR, "m/n/o", 0), "mkdir -p");
    snprintf(path, sizeof(path), "%s/m/n/o", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(op(f, STO_OP_MKDIR, "m/n/o/", 0).status, STO_EEXIST);
    expect_ok(op(f, STO_OP_MKDIR, "m/p/", 0), "mkdir with slash");

    unsigned char *body = pattern_buf();
    struct iovec iov = {body, 10};
    expect_ok(put(f, "m/n/o/f.dat", &iov, 1), "put");
    sto_result_t res = op(f, STO_OP_RMDIR, "m", 0);
    assert_int_equal(res.status, STO_ENOTEMPTY);
    assert_non_null(strstr(res.detail, "rmdir"));
    expect_ok(op(f, STO_OP_RMDIR, "m/p", 0), "rmdir empty");
    assert_int_equal(op(f, STO_OP_RMDIR, "m/p", 0).status, STO_ENOTFOUND);
    expect_ok(op(f, STO_OP_RMDIR, "m/", 1), "rmdir -r");
    snprintf(path, sizeof(path), "%s/m", f->dir);
    assert_int_equal(stat(path, &st), -1);
    assert_int_equal(op(f, STO_OP_HEAD, "m", 0).status, STO_ENOTFOUND);
    free(body);
}

static void test_submit_checks(void **state)
{
    fx_t *f = *state;
    sto_req_t r;
    memset(&r, 0, sizeof(r));
    r.op = STO_OP_HEAD;
    r.key = "x";
    assert_int_equal(sto_submit(f->st, &r), RX_EINVAL); /* no done */
    r.done = on_done;
    r.key = "/abs";
    assert_int_equal(sto_submit(f->st, &r), RX_EINVAL);
    r.key = "a/../../etc/passwd";
    assert_int_equal(sto_submit(f->st, &r), RX_EINVAL);
    r.key = NULL;
    assert_int_equal(sto_submit(f->st, &r), RX_EINVAL);
    r.key = "x";
    r.op = STO_OP__COUNT;
    assert_int_equal(sto_submit(f->st, &r), RX_EINVAL);
    r.op = STO_OP_PUT;
    r.iovcnt = 1;
    assert_int_equal(sto_submit(f->st, &r), RX_EINVAL);

    assert_string_equal(sto_store_backend(f->st)->name, f->scheme);
    assert_ptr_equal(sto_store_loop(f->st), &f->loop);
    assert_string_equal(sto_store_uri(f->st)->path, f->dir);
    assert_true(sto_store_backend(f->st)->caps & STO_CAP_RANGE);
}

static void test_open_create_base(void **state)
{
    fx_t *f = *state;
    char uri[256], path[200], err[256];
    struct stat st;
    sto_store_t *s;
    /* Missing base without create_base: open works, listing is empty. */
    snprintf(uri, sizeof(uri), "%s://%s/not/yet/", f->scheme, f->dir);
    assert_int_equal(sto_store_open(&f->loop, uri, 0, &s, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/not", f->dir);
    assert_int_equal(stat(path, &st), -1);
    sto_store_close(s);
    /* With create_base the directory appears. */
    assert_int_equal(sto_store_open(&f->loop, uri, 1, &s, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/not/yet", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    sto_store_close(s);
    /* The O_DIRECT probe leaves nothing behind. */
    wait_t w;
    wait_init(&w, 10);
    expect_ok(list(f, "not/yet/", 1, &w), "list");
    assert_int_equal(w.entries, 0);
    wait_fini(&w);
}

static void test_open_errors(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sto_store_t *s = (sto_store_t *)&loop;
    char err[256];

    /* a scheme the parser does not know */
    assert_int_equal(sto_store_open(&loop, "ftp://a/c/", 0, &s, err, sizeof(err)), STO_ESCHEME);
    assert_null(s);
    assert_non_null(strstr(err, "ftp"));
    /* half-set credentials fail the s3:// open with a message */
    setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
    unsetenv("AWS_SECRET_ACCESS_KEY");
    s = (sto_store_t *)&loop;
    assert_true(sto_store_open(&loop, "s3://bucket/x/", 0, &s, err, sizeof(err)) < 0);
    assert_null(s);
    assert_non_null(strstr(err, "AWS_SECRET_ACCESS_KEY"));
    unsetenv("AWS_ACCESS_KEY_ID");
    assert_int_equal(sto_store_open(&loop, "ftp://x/", 0, &s, err, sizeof(err)), STO_ESCHEME);
    assert_non_null(strstr(err, "supported"));
    assert_int_equal(sto_store_open(&loop, "/no/scheme", 0, &s, err, sizeof(err)), STO_EURI);

    /* direct:// on tmpfs is refused, naming the filesystem. */
    char dir[64] = "/dev/shm/sto-test-XXXXXX";
    if (mkdtemp(dir)) {
        char uri[128];
        snprintf(uri, sizeof(uri), "direct://%s/", dir);
        assert_int_equal(sto_store_open(&loop, uri, 0, &s, err, sizeof(err)), STO_ENODIRECT);
        assert_non_null(strstr(err, "tmpfs"));
        assert_non_null(strstr(err, dir));
        /* Also when the base does not exist yet (the nearest ancestor decides). */
        snprintf(uri, sizeof(uri), "direct://%s/sub/dir/", dir);
        assert_int_equal(sto_store_open(&loop, uri, 0, &s, err, sizeof(err)), STO_ENODIRECT);
        /* file:// there is fine. */
        snprintf(uri, sizeof(uri), "file://%s/", dir);
        assert_int_equal(sto_store_open(&loop, uri, 0, &s, err, sizeof(err)), 0);
        sto_store_close(s);
        rmdir(dir);
    }
    assert_int_equal(uv_loop_close(&loop), 0);
}

#define T(fn, scheme) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, (void *)scheme)
#define BOTH(fn) T(fn, "file"), T(fn, "direct")

int main(void)
{
    sto_err_register();
    const struct CMUnitTest tests[] = {
        BOTH(test_put_get_sizes), BOTH(test_nested_put),       BOTH(test_list_pages),
        BOTH(test_list_tree),     BOTH(test_del_and_missing),  BOTH(test_mkdir_rmdir),
        BOTH(test_submit_checks), BOTH(test_open_create_base), cmocka_unit_test(test_open_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
