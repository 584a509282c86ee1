/* file:// and direct:// backends: each request is one work item on libuv's thread pool that does
 * the whole operation with plain syscalls; the loop thread only queues and completes. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include "rx/err.h"
#include "rx/time.h"
#include "sto/backend.h"
#include "sto/err.h"
#include "sto_internal.h"

#define ALIGN 4096u
#define SCRATCH_SIZE (4u << 20)
#define LIST_PAGE 1000
#define MAX_DEPTH 256
#define PATH_BUF (STO_PATH_MAX * 2)

typedef struct file_store {
    int direct;
} file_store_t;

/* ---------------------------------------------------------------- helpers -------------------- */

static sto_req_t *req_of(uv_work_t *w)
{
    return (sto_req_t *)(void *)((char *)w - offsetof(sto_req_t, work));
}

/* One aligned scratch buffer per pool thread, allocated on first use and freed at thread exit.
 * GET bodies are read into it (counted, never kept); direct:// PUTs copy unaligned slices
 * through it. */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_key_ok;
static __thread void *scratch_buf;

static void scratch_key_init(void)
{
    scratch_key_ok = pthread_key_create(&scratch_key, free) == 0;
}

static void *scratch(void)
{
    if (!scratch_buf) {
        void *p;
        if (posix_memalign(&p, ALIGN, SCRATCH_SIZE) != 0)
            return NULL;
        pthread_once(&scratch_once, scratch_key_init);
        if (scratch_key_ok)
            pthread_setspecific(scratch_key, p);
        scratch_buf = p;
    }
    return scratch_buf;
}

static void set_errno(sto_req_t *r, const char *what, const char *path, int e)
{
    char buf[128];
    r->res.status = sto_err_from_errno(e);
    r->res.retryable = e == EAGAIN || e == EINTR || e == EBUSY;
    snprintf(r->res.detail, sizeof(r->res.detail), "%s %s: %s", what, path,
             strerror_r(e, buf, sizeof(buf)));
}

/* mkdir -p on a writable path buffer (restored on return). Returns 0 or an errno value. */
static int mkdir_p(char *p)
{
    if (mkdir(p, 0755) == 0 || errno == EEXIST)
        return 0;
    if (errno != ENOENT)
        return errno;
    char *sl = strrchr(p, '/');
    if (!sl || sl == p)
        return ENOENT;
    *sl = '\0';
    int e = mkdir_p(p);
    *sl = '/';
    if (e)
        return e;
    if (mkdir(p, 0755) == 0 || errno == EEXIST)
        return 0;
    return errno;
}

/* Creates the parent directories of path. Returns 0 or an errno value. */
static int mkdir_parents(char *path)
{
    char *sl = strrchr(path, '/');
    if (!sl || sl == path)
        return 0;
    *sl = '\0';
    int e = mkdir_p(path);
    *sl = '/';
    return e;
}

static int build_path(const sto_store_t *s, const char *key, char *out, size_t outlen)
{
    const char *base = s->uri.path;
    int n =
        snprintf(out, outlen, "%s%s%s", base, strcmp(base, "/") == 0 ? "" : "/", key ? key : "");
    return n >= 0 && (size_t)n < outlen ? 0 : -1;
}

static void strip_trailing_slashes(char *p)
{
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = '\0';
}

/* ---------------------------------------------------------------- GET ------------------------ */

static void do_get(sto_req_t *r, const char *path, int direct)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0));
    if (fd < 0) {
        set_errno(r, "open", path, errno);
        return;
    }
    char *buf = scratch();
    if (!buf) {
        set_errno(r, "read", path, ENOMEM);
        close(fd);
        return;
    }
    uint64_t start = r->offset;
    uint64_t end = r->length ? start + r->length : UINT64_MAX;
    if (end < start)
        end = UINT64_MAX;
    /* direct: read from the aligned block holding `start`; bytes outside the range are not
     * counted. */
    uint64_t pos = direct ? start & ~(uint64_t)(ALIGN - 1) : start;
    uint64_t got = 0;
    int first = 1;
    while (pos < end) {
        uint64_t want = SCRATCH_SIZE;
        if (end - pos < want)
            want = end - pos;
        if (direct)
            want = (want + ALIGN - 1) & ~(uint64_t)(ALIGN - 1);
        ssize_t n = pread(fd, buf, (size_t)want, (off_t)pos);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            set_errno(r, "read", path, errno);
            break;
        }
        if (first) {
            r->res.t_first_ns = rx_now_ns();
            first = 0;
        }
        if (n == 0)
            break;
        uint64_t lo = pos < start ? start : pos;
        uint64_t hi = pos + (uint64_t)n > end ? end : pos + (uint64_t)n;
        if (hi > lo)
            got += hi - lo;
        pos += (uint64_t)n;
        /* A short read of a regular file means end of file (and for O_DIRECT the next offset
         * would be unaligned): stop without the extra read that would return 0. */
        if ((uint64_t)n < want)
            break;
    }
    r->res.bytes = got;
    if (r->res.status == 0 && got == 0 && start > 0) {
        struct stat st;
        if (fstat(fd, &st) == 0 && (uint64_t)st.st_size <= start) {
            r->res.status = STO_ESHORT;
            snprintf(r->res.detail, sizeof(r->res.detail),
                     "range start %llu is beyond the end of %s (%llu bytes)",
                     (unsigned long long)start, path, (unsigned long long)st.st_size);
        }
    }
    close(fd);
}

/* ---------------------------------------------------------------- PUT ------------------------ */

/* A position in the request's iovec array. */
typedef struct cursor {
    const struct iovec *iov;
    int cnt;
    int idx;
    size_t off;
} cursor_t;

static void cur_skip_empty(cursor_t *c)
{
    while (c->idx < c->cnt && c->off >= c->iov[c->idx].iov_len) {
        c->idx++;
        c->off = 0;
    }
}

static void cur_advance(cursor_t *c, size_t n)
{
    while (n > 0 && c->idx < c->cnt) {
        size_t left = c->iov[c->idx].iov_len - c->off;
        size_t k = n < left ? n : left;
        c->off += k;
        n -= k;
        cur_skip_empty(c);
    }
}

/* Copies up to len bytes from the cursor into dst without advancing it. */
static size_t cur_peek(const cursor_t *c0, char *dst, size_t len)
{
    cursor_t c = *c0;
    size_t done = 0;
    while (done < len && c.idx < c.cnt) {
        size_t left = c.iov[c.idx].iov_len - c.off;
        size_t k = len - done < left ? len - done : left;
        memcpy(dst + done, (const char *)c.iov[c.idx].iov_base + c.off, k);
        done += k;
        c.off += k;
        cur_skip_empty(&c);
    }
    return done;
}

/* Writes len bytes from the cursor with writev, looping on partial writes. */
static int write_stream(sto_req_t *r, int fd, cursor_t *c, uint64_t len, const char *path)
{
    while (len > 0) {
        struct iovec v[64];
        int k = 0;
        uint64_t sum = 0;
        cursor_t t = *c;
        while (k < 64 && t.idx < t.cnt && sum < len) {
            size_t left = t.iov[t.idx].iov_len - t.off;
            if (left > len - sum)
                left = (size_t)(len - sum);
            v[k].iov_base = (char *)t.iov[t.idx].iov_base + t.off;
            v[k].iov_len = left;
            sum += left;
            k++;
            t.idx++;
            t.off = 0;
            cur_skip_empty(&t);
        }
        ssize_t n = writev(fd, v, k);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            set_errno(r, "write", path, errno);
            return -1;
        }
        if (n == 0) {
            r->res.status = STO_ESHORT;
            snprintf(r->res.detail, sizeof(r->res.detail), "write %s: wrote 0 bytes", path);
            return -1;
        }
        cur_advance(c, (size_t)n);
        r->res.bytes += (uint64_t)n;
        len -= (uint64_t)n;
    }
    return 0;
}

/* direct: writes the first `len` (a multiple of ALIGN) bytes with O_DIRECT, straight from the
 * caller's buffers where they are aligned, else through the aligned scratch buffer. */
static int write_direct(sto_req_t *r, int fd, cursor_t *c, uint64_t len, const char *path)
{
    while (len > 0) {
        const char *p = (const char *)c->iov[c->idx].iov_base + c->off;
        size_t seg = c->iov[c->idx].iov_len - c->off;
        size_t want;
        const char *src;
        if (((uintptr_t)p & (ALIGN - 1)) == 0 && seg >= ALIGN) {
            want = seg < len ? seg : (size_t)len;
            want &= ~(size_t)(ALIGN - 1);
            if (want > (1u << 30))
                want = 1u << 30;
            src = p;
        } else {
            char *buf = scratch();
            if (!buf) {
                set_errno(r, "write", path, ENOMEM);
                return -1;
            }
            want = len < SCRATCH_SIZE ? (size_t)len : SCRATCH_SIZE;
            want = cur_peek(c, buf, want);
            src = buf;
        }
        ssize_t n = write(fd, src, want);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            set_errno(r, "write", path, errno);
            return -1;
        }
        if (n == 0) {
            r->res.status = STO_ESHORT;
            snprintf(r->res.detail, sizeof(r->res.detail), "write %s: wrote 0 bytes", path);
            return -1;
        }
        cur_advance(c, (size_t)n);
        r->res.bytes += (uint64_t)n;
        len -= (uint64_t)n;
    }
    return 0;
}

static void do_put(sto_req_t *r, char *path, int direct)
{
    int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | (direct ? O_DIRECT : 0);
    int fd = open(path, flags, 0644);
    if (fd < 0 && errno == ENOENT) {
        /* Parents are created only when missing, so the common case costs one open. */
        int e = mkdir_parents(path);
        if (e) {
            set_errno(r, "mkdir -p for", path, e);
            return;
        }
        fd = open(path, flags, 0644);
    }
    if (fd < 0) {
        set_errno(r, "open", path, errno);
        return;
    }
    r->res.t_first_ns = rx_now_ns();
    uint64_t total = 0;
    for (int i = 0; i < r->iovcnt; i++)
        total += r->iov[i].iov_len;
    cursor_t c = {r->iov, r->iovcnt, 0, 0};
    cur_skip_empty(&c);
    uint64_t head = direct ? total & ~(uint64_t)(ALIGN - 1) : 0;
    int rc = 0;
    if (head)
        rc = write_direct(r, fd, &c, head, path);
    if (rc == 0 && total > head) {
        if (direct) {
            int fl = fcntl(fd, F_GETFL);
            if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_DIRECT) < 0) {
                set_errno(r, "fcntl(F_SETFL) on", path, errno);
                rc = -1;
            }
        }
        if (rc == 0)
            rc = write_stream(r, fd, &c, total - head, path);
    }
    if (close(fd) != 0 && rc == 0) {
        set_errno(r, "close", path, errno);
        rc = -1;
    }
    if (rc == 0 && r->res.bytes != total) {
        r->res.status = STO_ESHORT;
        snprintf(r->res.detail, sizeof(r->res.detail), "write %s: %llu of %llu bytes", path,
                 (unsigned long long)r->res.bytes, (unsigned long long)total);
    }
}

/* ---------------------------------------------------------------- RMDIR -r ------------------- */

/* Removes name (relative to dfd) and everything below it, without following symlinks.
 * Returns 0 or an errno value. */
static int rm_tree_at(int dfd, const char *name, int depth)
{
    if (unlinkat(dfd, name, AT_REMOVEDIR) == 0)
        return 0;
    if (errno != ENOTEMPTY && errno != EEXIST)
        return errno;
    if (depth >= MAX_DEPTH)
        return ELOOP;
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return e;
    }
    int e = 0;
    struct dirent *de;
    while (e == 0 && (errno = 0, de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0')))
            continue;
        int isdir = de->d_type == DT_DIR;
        if (de->d_type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) == 0)
                isdir = S_ISDIR(st.st_mode);
        }
        if (isdir)
            e = rm_tree_at(dirfd(d), n, depth + 1);
        else if (unlinkat(dirfd(d), n, 0) != 0 && errno != ENOENT)
            e = errno;
    }
    if (e == 0 && errno != 0)
        e = errno;
    closedir(d);
    if (e)
        return e;
    if (unlinkat(dfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
        return errno;
    return 0;
}

/* ---------------------------------------------------------------- LIST ----------------------- */

typedef struct lent {
    size_t key_off;
    uint64_t size;
    int is_dir;
} lent_t;

/* Collected in the work callback, delivered and freed on the loop thread. */
typedef struct listing {
    lent_t *ents;
    size_t n, cap;
    char *arena;
    size_t alen, acap;
    sto_entry_t *out; /* ents turned into sto_entry_t, sorted by key */
} listing_t;

static int list_add(listing_t *l, const char *key, size_t klen, uint64_t size, int is_dir)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 256;
        lent_t *ne = realloc(l->ents, nc * sizeof(*ne));
        if (!ne)
            return ENOMEM;
        l->ents = ne;
        l->cap = nc;
    }
    if (l->alen + klen + 1 > l->acap) {
        size_t nc = l->acap ? l->acap * 2 : 16384;
        while (nc < l->alen + klen + 1)
            nc *= 2;
        char *na = realloc(l->arena, nc);
        if (!na)
            return ENOMEM;
        l->arena = na;
        l->acap = nc;
    }
    memcpy(l->arena + l->alen, key, klen);
    l->arena[l->alen + klen] = '\0';
    l->ents[l->n++] = (lent_t){l->alen, size, is_dir};
    l->alen += klen + 1;
    return 0;
}

static void listing_free(listing_t *l)
{
    if (!l)
        return;
    free(l->ents);
    free(l->arena);
    free(l->out);
    free(l);
}

/* Walks the directory dfd (owned: closed here). key[0..klen) is the key prefix of its entries
 * (ends with '/' unless empty). filter: only names starting with it (top level only). Returns 0
 * or an errno value. */
static int walk(listing_t *l, int dfd, char *key, size_t klen, const char *filter, int recursive,
                int depth)
{
    DIR *d = fdopendir(dfd);
    if (!d) {
        int e = errno;
        close(dfd);
        return e;
    }
    size_t flen = filter ? strlen(filter) : 0;
    int e = 0;
    struct dirent *de;
    while (e == 0 && (errno = 0, de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0')))
            continue;
        if (flen && strncmp(n, filter, flen) != 0)
            continue;
        size_t nlen = strlen(n);
        if (klen + nlen + 2 > PATH_BUF) {
            e = ENAMETOOLONG;
            break;
        }
        struct stat st;
        int have_st = 0, is_dir = 0, is_link = de->d_type == DT_LNK;
        if (de->d_type == DT_DIR) {
            is_dir = 1;
        } else {
            /* Regular files need their size; symlinks and unknown types are resolved. */
            int fl = is_link || de->d_type == DT_UNKNOWN ? 0 : AT_SYMLINK_NOFOLLOW;
            if (fstatat(dirfd(d), n, &st, fl) != 0) {
                if (errno == ENOENT)
                    continue; /* removed meanwhile, or a dangling symlink */
                e = errno;
                break;
            }
            have_st = 1;
            is_dir = S_ISDIR(st.st_mode);
        }
        memcpy(key + klen, n, nlen);
        if (is_dir) {
            key[klen + nlen] = '/';
            if (!recursive) {
                e = list_add(l, key, klen + nlen + 1, 0, 1);
                continue;
            }
            if (is_link || depth >= MAX_DEPTH)
                continue; /* never follow symlinked directories: no cycles */
            int nfd = openat(dirfd(d), n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (nfd < 0) {
                if (errno == ENOENT)
                    continue;
                e = errno;
                break;
            }
            e = walk(l, nfd, key, klen + nlen + 1, NULL, 1, depth + 1);
        } else {
            e = list_add(l, key, klen + nlen, have_st ? (uint64_t)st.st_size : 0, 0);
        }
    }
    if (e == 0 && errno != 0)
        e = errno;
    closedir(d);
    return e;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const sto_entry_t *)a)->key, ((const sto_entry_t *)b)->key);
}

static void do_list(sto_req_t *r, const sto_store_t *s)
{
    const char *prefix = r->key ? r->key : "";
    size_t plen = strlen(prefix);
    const char *sl = strrchr(prefix, '/');
    size_t dlen = sl ? (size_t)(sl - prefix) + 1 : 0; /* "dir/sub/" part, with its slash */
    const char *filter = prefix + dlen;

    listing_t *l = calloc(1, sizeof(*l));
    char *key = malloc(PATH_BUF);
    char *path = malloc(PATH_BUF);
    if (!l || !key || !path) {
        set_errno(r, "list", s->uri.path, ENOMEM);
        goto out;
    }
    r->priv = l;
    if (plen >= PATH_BUF - 1) {
        set_errno(r, "list", s->uri.path, ENAMETOOLONG);
        goto out;
    }
    memcpy(key, prefix, dlen);
    key[dlen] = '\0';
    if (build_path(s, key, path, PATH_BUF) != 0) {
        set_errno(r, "list", s->uri.path, ENAMETOOLONG);
        goto out;
    }
    r->res.t_first_ns = rx_now_ns();
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        /* Like an object store: listing a prefix that matches nothing is empty, not an error. */
        if (errno != ENOENT && errno != ENOTDIR)
            set_errno(r, "opendir", path, errno);
        goto out;
    }
    int e = walk(l, dfd, key, dlen, filter, r->recursive, 0);
    if (e) {
        set_errno(r, "list", path, e);
        goto out;
    }
    if (l->n) {
        l->out = malloc(l->n * sizeof(*l->out));
        if (!l->out) {
            set_errno(r, "list", path, ENOMEM);
            goto out;
        }
        for (size_t i = 0; i < l->n; i++)
            l->out[i] =
                (sto_entry_t){l->arena + l->ents[i].key_off, l->ents[i].size, l->ents[i].is_dir};
        qsort(l->out, l->n, sizeof(*l->out), cmp_entry);
    }
    free(l->ents);
    l->ents = NULL;
out:
    free(key);
    free(path);
    if (!r->priv)
        free(l);
}

/* ---------------------------------------------------------------- work / after --------------- */

static void work_cb(uv_work_t *w)
{
    sto_req_t *r = req_of(w);
    const sto_store_t *s = r->store;
    int direct = ((const file_store_t *)sto_store_priv(r->store))->direct;

    if (r->op == STO_OP_LIST) {
        do_list(r, s);
        return;
    }
    char path[PATH_BUF];
    if (build_path(s, r->key, path, sizeof(path)) != 0) {
        set_errno(r, "open", r->key, ENAMETOOLONG);
        return;
    }
    if (r->op != STO_OP_GET)
        r->res.t_first_ns = rx_now_ns();
    switch (r->op) {
    case STO_OP_GET:
        do_get(r, path, direct);
        break;
    case STO_OP_PUT:
        do_put(r, path, direct);
        break;
    case STO_OP_HEAD: {
        struct stat st;
        if (stat(path, &st) != 0)
            set_errno(r, "stat", path, errno);
        else
            r->res.bytes = S_ISDIR(st.st_mode) ? 0 : (uint64_t)st.st_size;
        break;
    }
    case STO_OP_DEL:
        if (unlink(path) != 0)
            set_errno(r, "unlink", path, errno);
        break;
    case STO_OP_MKDIR:
        strip_trailing_slashes(path);
        if (mkdir(path, 0755) != 0) {
            int e = errno;
            if (e == ENOENT) {
                e = mkdir_parents(path);
                if (e == 0)
                    e = mkdir(path, 0755) == 0 ? 0 : errno;
            }
            if (e)
                set_errno(r, "mkdir", path, e);
        }
        break;
    case STO_OP_RMDIR: {
        strip_trailing_slashes(path);
        int e = 0;
        if (r->recursive)
            e = rm_tree_at(AT_FDCWD, path, 0);
        else if (rmdir(path) != 0)
            e = errno == EEXIST ? ENOTEMPTY : errno;
        if (e)
            set_errno(r, r->recursive ? "rm -r" : "rmdir", path, e);
        break;
    }
    default:
        r->res.status = STO_ENOTSUP;
        break;
    }
}

static void after_cb(uv_work_t *w, int status)
{
    sto_req_t *r = req_of(w);
    r->res.t_end_ns = rx_now_ns();
    if (status == UV_ECANCELED) {
        r->res.status = STO_ECANCELED;
        snprintf(r->res.detail, sizeof(r->res.detail), "%s canceled before it started",
                 sto_op_name(r->op));
    }
    listing_t *l = r->priv;
    r->priv = NULL;
    if (r->op == STO_OP_LIST && l && r->res.status == 0) {
        for (size_t i = 0; i < l->n; i += LIST_PAGE) {
            size_t k = l->n - i < LIST_PAGE ? l->n - i : LIST_PAGE;
            if (r->on_page)
                r->on_page(r, l->out + i, k);
        }
        r->res.bytes = l->n;
    }
    listing_free(l);
    r->done(r);
}

/* ---------------------------------------------------------------- backend table -------------- */

static int file_submit(sto_store_t *s, sto_req_t *r)
{
    /* Keys stay below the base: no ".." components. */
    const char *k = r->key ? r->key : "";
    for (const char *p = k; *p;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return RX_EINVAL;
        p += n;
        if (*p == '/')
            p++;
    }
    r->work.data = r;
    return uv_queue_work(s->loop, &r->work, work_cb, after_cb);
}

static const char *fs_name(unsigned long t, char *buf, size_t len)
{
    static const struct {
        unsigned long magic;
        const char *name;
    } names[] = {
        {0x01021994, "tmpfs"},    {0x858458f6, "ramfs"}, {0xEF53, "ext4"},
        {0x58465342, "xfs"},      {0x9123683E, "btrfs"}, {0x794c7630, "overlay"},
        {0x6969, "nfs"},          {0x2fc12fc1, "zfs"},   {0x65735546, "fuse"},
        {0xFF534D42, "cifs"},     {0xFE534D42, "smb2"},  {0x00c36400, "ceph"},
        {0x73717368, "squashfs"}, {0xF2F52010, "f2fs"},  {0x01021997, "9p"},
        {0x4d44, "vfat"},         {0x5346544e, "ntfs"},  {0x62656572, "sysfs"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].magic == t)
            return names[i].name;
    snprintf(buf, len, "filesystem type 0x%lx", t);
    return buf;
}

static int open_common(sto_store_t *s, const sto_uri_t *base, char *err, size_t errlen)
{
    if (!s->create_base)
        return 0;
    char p[STO_PATH_MAX];
    snprintf(p, sizeof(p), "%s", base->path);
    int e = mkdir_p(p);
    if (e) {
        char buf[128];
        snprintf(err, errlen, "mkdir -p %s: %s", base->path, strerror_r(e, buf, sizeof(buf)));
        return sto_err_from_errno(e);
    }
    return 0;
}

static int file_open(sto_store_t *s, const sto_uri_t *base, char *err, size_t errlen)
{
    ((file_store_t *)sto_store_priv(s))->direct = 0;
    return open_common(s, base, err, errlen);
}

static int direct_refused(const char *path, unsigned long ftype, char *err, size_t errlen)
{
    char buf[64];
    snprintf(err, errlen,
             "direct:// needs O_DIRECT, which the filesystem at %s (%s) refuses; use file:// or "
             "a disk-backed path",
             path, fs_name(ftype, buf, sizeof(buf)));
    return STO_ENODIRECT;
}

static int direct_open(sto_store_t *s, const sto_uri_t *base, char *err, size_t errlen)
{
    ((file_store_t *)sto_store_priv(s))->direct = 1;
    int rc = open_common(s, base, err, errlen);
    if (rc)
        return rc;
    /* Find the nearest existing ancestor to learn the filesystem. */
    char p[STO_PATH_MAX];
    snprintf(p, sizeof(p), "%s", base->path);
    struct statfs sf;
    int exists = 1;
    while (statfs(p, &sf) != 0) {
        char *sl = strrchr(p, '/');
        if ((errno != ENOENT && errno != ENOTDIR) || !sl)
            return 0; /* cannot tell; the ops will report */
        exists = 0;
        if (sl == p)
            sl[1] = '\0';
        else
            *sl = '\0';
    }
    /* Memory filesystems accept O_DIRECT on newer kernels (tmpfs since 6.6) but still go
     * through the page cache, which makes direct:// meaningless: refuse them outright. */
    if ((unsigned long)sf.f_type == 0x01021994ul || (unsigned long)sf.f_type == 0x858458f6ul)
        return direct_refused(base->path, (unsigned long)sf.f_type, err, errlen);
    if (!exists)
        return 0; /* nothing created in directories the user did not name */

    char probe[STO_PATH_MAX + 64];
    snprintf(probe, sizeof(probe), "%s/.sai3bench-odirect-probe-%ld-%p",
             strcmp(base->path, "/") == 0 ? "" : base->path, (long)getpid(), (void *)s);
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno == EINVAL ? direct_refused(base->path, (unsigned long)sf.f_type, err, errlen)
                               : 0; /* read-only or no permission: ops will report */
    void *blk = NULL;
    int refused = 0;
    if (posix_memalign(&blk, ALIGN, ALIGN) == 0) {
        memset(blk, 0, ALIGN);
        if (write(fd, blk, ALIGN) < 0 && errno == EINVAL)
            refused = 1;
        free(blk);
    }
    close(fd);
    unlink(probe);
    return refused ? direct_refused(base->path, (unsigned long)sf.f_type, err, errlen) : 0;
}

#define LOCAL_CAPS (STO_CAP_RANGE | STO_CAP_LIST_PAGES | STO_CAP_DIRECTORIES)

const sto_backend_t sto__file_backend = {
    .name = "file",
    .caps = LOCAL_CAPS,
    .store_size = sizeof(file_store_t),
    .open = file_open,
    .close = NULL,
    .submit = file_submit,
};

const sto_backend_t sto__direct_backend = {
    .name = "direct",
    .caps = LOCAL_CAPS,
    .store_size = sizeof(file_store_t),
    .open = direct_open,
    .close = NULL,
    .submit = file_submit,
};
