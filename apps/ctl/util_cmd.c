/* `util`: one-shot storage operations (ls, stat, get, put, rm, health) on any URI the storage
 * library can open. Runs on the control thread with a private libuv loop: "concurrency" is the
 * number of requests kept in flight on that one loop, each in its own slot with its own
 * sto_req_t. Nothing here knows a backend: URIs are split textually into a store base (the
 * URI's directory) and a key (its last component), and capabilities come from the backend table. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "ctl.h"
#include "rx/engine.h"
#include "rx/err.h"
#include "rx/time.h"
#include "sto/backend.h"
#include "sto/err.h"
#include "sto/s3conf.h"
#include "sto/uri.h"
#include "wl/datagen.h"
#include "wl/hist.h"
#include "wl/units.h"

#define URI_MAX (STO_PATH_MAX + 1024)
#define ERRORS_SHOWN 10 /* per-op error lines printed before they are only counted */
#define MAX_CONCURRENCY 4096u
#define MAX_PUT_COUNT 100000000u /* util-%08d.dat stays 8 digits */
/* wl_datagen_fill describes an object with at most WL_DG_MAX_IOV slices of the pool; the first
 * may be short, so (WL_DG_MAX_IOV - 1) whole pools always fit. */
#define MAX_PUT_SIZE ((uint64_t)(WL_DG_MAX_IOV - 1) * WL_DG_POOL)

static const char util_usage[] =
    "usage: sai3bench-ctl util <subcommand> URI [options]\n"
    "\n"
    "Storage operations on one URI: file:///abs/path, direct:///abs/path and every other scheme\n"
    "the storage library supports. A URI ending in '/' names a directory (a prefix); otherwise\n"
    "its last component names an object (for ls and rm -r: a key prefix).\n"
    "\n"
    "subcommands:\n"
    "  ls URI [-r|--recursive] [--limit N]\n"
    "        list the directory, or the keys starting with the last component: one line\n"
    "        SIZE<TAB>KEY per object, DIR<TAB>KEY/ per directory (keys relative to the URI's\n"
    "        directory), then totals; -r lists objects at any depth\n"
    "  stat URI [--count N] [--concurrency C]\n"
    "        HEAD one object: prints its uri, size and latency\n"
    "  get URI [--range A-B|A+LEN] [--count N] [--concurrency C]\n"
    "        read the object; the bytes are counted and discarded (there is no --output).\n"
    "        --range A-B reads bytes A to B inclusive (as HTTP), A- from A to the end,\n"
    "        A+LEN LEN bytes from A; A, B and LEN may use units (4KiB+1MiB)\n"
    "  put URI --size SIZE [--count N] [--concurrency C] [--fill random|zero]\n"
    "        write SIZE bytes (4096, 64KiB, 1MiB, up to 1008MiB; default fill random); with\n"
    "        --count N > 1 the URI must end in '/' and the objects are util-00000000.dat,\n"
    "        util-00000001.dat, ... under it\n"
    "  rm URI [-r|--recursive] [--concurrency C]\n"
    "        delete one object; with -r every object whose key starts with the URI (write a\n"
    "        trailing '/' for one directory's contents): LIST, then DELETE with C in flight\n"
    "        (default 32); on stores with directories, the directories it empties go too\n"
    "        (but not the one a URI ending in '/' names)\n"
    "  health URI\n"
    "        LIST the URI's prefix: prints 'OK URI (latency)' and exits 0, or\n"
    "        'FAIL URI: reason' and exits 1\n"
    "\n"
    "--count N repeats the operation N times (default 1) with up to --concurrency C of them in\n"
    "flight (default 1). Every subcommand but health ends with one line per operation type:\n"
    "  OP: N ops, E errors, mean X, p50 X, p99 X, max X[, BYTES bytes, X MiB/s][, R retried]\n"
    "A retryable failure (HTTP 5xx, throttling, a dropped connection) is repeated up to 3 times\n"
    "(after 100, 200, 400 ms); R counts those repeats.\n"
    "\n"
    "network stores (s3://, az://, gs://), every subcommand:\n"
    "  --endpoint URL      endpoint (as the config's 'endpoint:'); else s3:// the URI's host or\n"
    "                      AWS_ENDPOINT_URL, az:// the connection string's BlobEndpoint,\n"
    "                      gs:// STORAGE_EMULATOR_HOST\n"
    "  --http 1.1|2|auto   protocol: HTTP/1.1 (default), HTTP/2 (h2c prior knowledge, or h2 by\n"
    "                      ALPN over TLS), or auto (ALPN over TLS)\n"
    "  --ca-bundle FILE    CA certificates for TLS (else AWS_CA_BUNDLE, else the system's)\n"
    "  --insecure          accept any TLS certificate (test rigs only)\n"
    "\n"
    "exit status: 0 every operation succeeded, 1 an operation failed, 2 bad usage\n";

typedef enum sub { SUB_LS, SUB_STAT, SUB_GET, SUB_PUT, SUB_RM, SUB_HEALTH, SUB__COUNT } sub_t;

static const char *const sub_names[SUB__COUNT] = {"ls", "stat", "get", "put", "rm", "health"};

typedef struct uopts {
    sub_t sub;
    const char *uri;
    int recursive;
    int has_limit;
    uint64_t limit;
    uint64_t count;
    int has_conc;
    unsigned conc;
    int has_size;
    uint64_t size;
    wl_fill_t fill;
    int has_range;
    uint64_t offset, length; /* length 0 = to the end */
    const char *endpoint;
    const char *ca_bundle;
    int http_version;
    int insecure;
} uopts_t;

/* ------------------------------------------------------------------ arguments ------------ */

static int usage_error(const char *sub, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage_error(const char *sub, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (sub)
        fprintf(stderr, "sai3bench-ctl: util %s: %s\n", sub, msg);
    else
        fprintf(stderr, "sai3bench-ctl: util: %s\n", msg);
    fprintf(stderr, "run 'sai3bench-ctl util --help'\n");
    return 2;
}

enum {
    OPT_REC,
    OPT_LIMIT,
    OPT_COUNT,
    OPT_CONC,
    OPT_SIZE,
    OPT_FILL,
    OPT_RANGE,
    OPT_ENDPOINT,
    OPT_HTTP,
    OPT_CA,
    OPT_INSECURE
};

#define ALL_SUBS ((1u << SUB__COUNT) - 1)

#define SUBS(x) (1u << (x))

static const struct uopt {
    const char *name;
    const char *short_name;
    int id;
    int has_val;
    unsigned subs;
} uopt_table[] = {
    {"--recursive", "-r", OPT_REC, 0, SUBS(SUB_LS) | SUBS(SUB_RM)},
    {"--limit", NULL, OPT_LIMIT, 1, SUBS(SUB_LS)},
    {"--count", NULL, OPT_COUNT, 1, SUBS(SUB_STAT) | SUBS(SUB_GET) | SUBS(SUB_PUT)},
    {"--concurrency", NULL, OPT_CONC, 1,
     SUBS(SUB_STAT) | SUBS(SUB_GET) | SUBS(SUB_PUT) | SUBS(SUB_RM)},
    {"--size", NULL, OPT_SIZE, 1, SUBS(SUB_PUT)},
    {"--fill", NULL, OPT_FILL, 1, SUBS(SUB_PUT)},
    {"--range", NULL, OPT_RANGE, 1, SUBS(SUB_GET)},
    {"--endpoint", NULL, OPT_ENDPOINT, 1, ALL_SUBS},
    {"--http", NULL, OPT_HTTP, 1, ALL_SUBS},
    {"--ca-bundle", NULL, OPT_CA, 1, ALL_SUBS},
    {"--insecure", NULL, OPT_INSECURE, 0, ALL_SUBS},
};

/* A whole number in [lo, hi], written as wl_parse_count accepts it (1000, 1_000, 1,000). */
static int parse_num(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    uint64_t v;
    if (wl_parse_count(s, &v, NULL, 0) != 0 || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* "A-B" (inclusive), "A-" (to the end) or "A+LEN"; A, B, LEN sizes with optional units. */
static int parse_range(const char *s, uint64_t *off, uint64_t *len, char *err, size_t errlen)
{
    const char *sep = s[0] ? strpbrk(s + 1, "-+") : NULL;
    if (!sep) {
        snprintf(err, errlen, "--range wants OFFSET-END or OFFSET+LENGTH, got '%s'", s);
        return -1;
    }
    char a[128];
    size_t alen = (size_t)(sep - s);
    if (alen >= sizeof(a)) {
        snprintf(err, errlen, "--range '%s' is too long", s);
        return -1;
    }
    memcpy(a, s, alen);
    a[alen] = '\0';
    char e[256];
    uint64_t start, b = 0;
    if (wl_parse_size(a, &start, e, sizeof(e)) != 0) {
        snprintf(err, errlen, "--range '%s': bad offset: %s", s, e);
        return -1;
    }
    const char *rest = sep + 1;
    if (*sep == '-' && !*rest) {
        *off = start;
        *len = 0;
        return 0;
    }
    if (wl_parse_size(rest, &b, e, sizeof(e)) != 0) {
        snprintf(err, errlen, "--range '%s': bad %s: %s", s, *sep == '-' ? "end" : "length", e);
        return -1;
    }
    if (*sep == '+') {
        if (b == 0 || b > UINT64_MAX - start) {
            snprintf(err, errlen, "--range '%s': the length must be at least 1 byte", s);
            return -1;
        }
        *off = start;
        *len = b;
        return 0;
    }
    if (b < start || b == UINT64_MAX) {
        snprintf(err, errlen, "--range '%s': the end (inclusive) is before the offset", s);
        return -1;
    }
    *off = start;
    *len = b - start + 1;
    return 0;
}

/* Returns 0 (o filled), 2 (bad usage, message printed) or -1 (help printed: exit 0). */
static int parse_args(int argc, char **argv, uopts_t *o, int *verbose)
{
    memset(o, 0, sizeof(*o));
    o->count = 1;
    o->conc = 1;
    o->fill = WL_FILL_RANDOM;
    if (argc < 1) {
        fputs(util_usage, stderr);
        return 2;
    }
    const char *s = argv[0];
    if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0 || strcmp(s, "help") == 0) {
        fputs(util_usage, stdout);
        return -1;
    }
    int sub = -1;
    for (int k = 0; k < SUB__COUNT; k++)
        if (strcmp(s, sub_names[k]) == 0)
            sub = k;
    if (sub < 0) {
        if (s[0] == '-')
            return usage_error(NULL, "expected a subcommand before '%s'", s);
        return usage_error(NULL, "unknown subcommand '%s' (ls, stat, get, put, rm, health)", s);
    }
    o->sub = (sub_t)sub;
    const char *sn = sub_names[sub];
    int only_uri = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_uri || a[0] != '-' || a[1] == '\0') {
            if (o->uri)
                return usage_error(sn, "unexpected argument '%s' (one URI only)", a);
            o->uri = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_uri = 1;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(util_usage, stdout);
            return -1;
        }
        if (a[1] == 'v' && strspn(a + 1, "v") == strlen(a + 1)) {
            *verbose += (int)strlen(a + 1);
            continue;
        }
        const struct uopt *opt = NULL;
        const char *val = NULL;
        for (size_t k = 0; k < sizeof(uopt_table) / sizeof(uopt_table[0]); k++) {
            const struct uopt *t = &uopt_table[k];
            size_t n = strlen(t->name);
            if (strcmp(a, t->name) == 0 || (t->short_name && strcmp(a, t->short_name) == 0)) {
                opt = t;
            } else if (t->has_val && strncmp(a, t->name, n) == 0 && a[n] == '=') {
                opt = t;
                val = a + n + 1;
            }
            if (opt)
                break;
        }
        if (!opt) {
            if (o->sub == SUB_GET && (strcmp(a, "-o") == 0 || strncmp(a, "--output", 8) == 0))
                return usage_error(sn,
                                   "unknown option '%s': GET bodies are counted and "
                                   "discarded, util get cannot save them",
                                   a);
            return usage_error(sn, "unknown option '%s'", a);
        }
        if (!(opt->subs & SUBS(o->sub)))
            return usage_error(sn, "option '%s' does not apply to util %s", opt->name, sn);
        if (opt->has_val && !val) {
            if (i + 1 >= argc)
                return usage_error(sn, "option '%s' needs a value", a);
            val = argv[++i];
        }
        char err[512];
        uint64_t v;
        switch (opt->id) {
        case OPT_REC:
            o->recursive = 1;
            break;
        case OPT_LIMIT:
            if (parse_num(val, 1, UINT64_MAX, &o->limit) != 0)
                return usage_error(sn, "--limit wants a whole number of at least 1, got '%s'", val);
            o->has_limit = 1;
            break;
        case OPT_COUNT: {
            uint64_t hi = o->sub == SUB_PUT ? MAX_PUT_COUNT : UINT32_MAX;
            if (parse_num(val, 1, hi, &o->count) != 0)
                return usage_error(
                    sn, "--count wants a whole number from 1 to %" PRIu64 ", got '%s'", hi, val);
            break;
        }
        case OPT_CONC:
            if (parse_num(val, 1, MAX_CONCURRENCY, &v) != 0)
                return usage_error(sn, "--concurrency wants a whole number from 1 to %u, got '%s'",
                                   MAX_CONCURRENCY, val);
            o->conc = (unsigned)v;
            o->has_conc = 1;
            break;
        case OPT_SIZE:
            if (wl_parse_size(val, &o->size, err, sizeof(err)) != 0)
                return usage_error(sn, "--size: %s", err);
            if (o->size > MAX_PUT_SIZE)
                return usage_error(sn,
                                   "--size %s is more than the %" PRIu64 " MiB util put can "
                                   "write",
                                   val, MAX_PUT_SIZE >> 20);
            o->has_size = 1;
            break;
        case OPT_FILL:
            if (strcmp(val, "random") == 0 || strcmp(val, "prand") == 0)
                o->fill = WL_FILL_RANDOM;
            else if (strcmp(val, "zero") == 0)
                o->fill = WL_FILL_ZERO;
            else
                return usage_error(sn, "--fill wants random or zero, got '%s'", val);
            break;
        case OPT_RANGE:
            if (parse_range(val, &o->offset, &o->length, err, sizeof(err)) != 0)
                return usage_error(sn, "%s", err);
            o->has_range = 1;
            break;
        case OPT_ENDPOINT: {
            sto_s3_endpoint_t ep;
            if (sto_s3_endpoint_parse(val, &ep, err, sizeof(err)) != 0)
                return usage_error(sn, "--endpoint: %s", err);
            o->endpoint = val;
            break;
        }
        case OPT_HTTP:
            if (strcmp(val, "1.1") == 0)
                o->http_version = 0;
            else if (strcmp(val, "2") == 0)
                o->http_version = 1;
            else if (strcmp(val, "auto") == 0)
                o->http_version = 2;
            else
                return usage_error(sn, "--http wants 1.1, 2 or auto, got '%s'", val);
            break;
        case OPT_CA:
            o->ca_bundle = val;
            break;
        case OPT_INSECURE:
            o->insecure = 1;
            break;
        }
    }
    if (!o->uri)
        return usage_error(sn, "missing URI");
    if (o->sub == SUB_PUT && !o->has_size)
        return usage_error(sn, "--size SIZE is required");
    if (!o->has_conc && o->sub == SUB_RM)
        o->conc = 32;
    return 0;
}

/* ------------------------------------------------------------------ URIs ----------------- */

typedef struct loc {
    char base[URI_MAX]; /* store base: the URI's directory, ending in '/' */
    char key[URI_MAX];  /* last component; "" when the URI names a directory */
} loc_t;

/* Splits uri into a store base and a key. The URI names a directory when it ends in '/', when
 * its path is empty or "/" (bucket, container or filesystem root), when nothing follows the
 * "scheme://" but one component, or when the last component is "." or "..". Returns 0 or a
 * sto_uri_parse error (reason in err). */
static int split_uri(const char *uri, loc_t *l, char *err, size_t errlen)
{
    sto_uri_t *u = malloc(sizeof(*u));
    if (!u) {
        snprintf(err, errlen, "out of memory");
        return RX_ENOMEM;
    }
    int rc = sto_uri_parse(uri, u, err, errlen);
    if (rc != 0) {
        free(u);
        return rc;
    }
    const char *rest = strstr(uri, "://");
    rest = rest ? rest + 3 : uri;
    const char *last = strrchr(rest, '/');
    const char *comp = last ? last + 1 : "";
    size_t n = strlen(uri);
    int dir = u->trailing_slash || !u->path[0] || strcmp(u->path, "/") == 0 || !last || !comp[0] ||
              strcmp(comp, ".") == 0 || strcmp(comp, "..") == 0;
    free(u);
    if (n + 2 > sizeof(l->base)) {
        snprintf(err, errlen, "URI too long");
        return STO_EURI;
    }
    if (dir) {
        snprintf(l->base, sizeof(l->base), "%s%s", uri, uri[n - 1] == '/' ? "" : "/");
        l->key[0] = '\0';
    } else {
        size_t blen = (size_t)(comp - uri);
        memcpy(l->base, uri, blen);
        l->base[blen] = '\0';
        snprintf(l->key, sizeof(l->key), "%s", comp);
    }
    return 0;
}

/* ------------------------------------------------------------------ batches -------------- */

typedef struct opstat {
    sto_op_t op;
    wl_hist_t h;
    uint64_t ops, errors, bytes;
    uint64_t retried; /* attempts that failed with a retryable error and were repeated */
    uint64_t t0, t1; /* first submit, last completion (for MiB/s) */
} opstat_t;

typedef struct util {
    const uopts_t *o;
    const char *sub;
    uv_loop_t loop;
    sto_store_t *st;
    loc_t loc;
    unsigned errors_shown;
    uint64_t errors_hidden;
} util_t;

typedef struct batch batch_t;

/* Retryable failures (5xx, throttling, a dropped connection) are repeated up to UTIL_RETRIES
 * times, after 100, 200, 400 ms (+ up to 50% jitter), as AWS tools do; only the last attempt
 * counts as the op. */
#define UTIL_RETRIES 3

typedef struct slot {
    sto_req_t req;
    batch_t *b;
    uv_timer_t timer;
    int attempt;
    char name[32];
    struct iovec iov[WL_DG_MAX_IOV];
} slot_t;

/* n requests of one op, up to `conc` in flight. The key of request i is keys[i], or
 * util-%08d.dat when numbered, or key. */
struct batch {
    util_t *u;
    opstat_t *s;
    sto_op_t op;
    uint64_t n, next, ok, tolerated;
    unsigned inflight;
    const char *key;
    char *const *keys;
    int numbered;
    uint64_t offset, length; /* GET */
    wl_datagen_t *dg;        /* PUT */
    uint64_t size;           /* PUT */
    int recursive;           /* LIST */
    sto_page_fn on_page;     /* LIST */
    void *page_ud;           /* LIST */
    int tolerate_dir_errors; /* RMDIR: "not empty" and "not found" are no errors */
    void (*on_first_ok)(batch_t *b, const sto_req_t *r);
    int seen_ok;
    int quiet; /* errors are not printed (the caller reports last_*) */
    int last_status;
    char last_detail[256];
};

static void report(util_t *u, const char *key, int status, const char *detail)
{
    if (u->errors_shown >= ERRORS_SHOWN) {
        u->errors_hidden++;
        return;
    }
    u->errors_shown++;
    char uri[URI_MAX];
    if (!key || !key[0] || sto_uri_join(u->loc.base, key, uri, sizeof(uri)) != 0)
        snprintf(uri, sizeof(uri), "%s", u->o->uri);
    if (detail && detail[0])
        ctl_err("sai3bench-ctl: util %s: %s: %s (%s)", u->sub, uri, rx_strerror(status), detail);
    else
        ctl_err("sai3bench-ctl: util %s: %s: %s", u->sub, uri, rx_strerror(status));
}

static void slot_next(slot_t *sl);
static void on_done(sto_req_t *r);

static void slot_retry(uv_timer_t *t)
{
    slot_t *sl = t->data;
    batch_t *b = sl->b;
    sto_req_t *r = &sl->req;
    memset(&r->res, 0, sizeof(r->res));
    int rc = sto_submit(b->u->st, r);
    if (rc == 0)
        return;
    b->inflight--;
    b->s->ops++;
    b->s->errors++;
    b->last_status = rc;
    b->last_detail[0] = '\0';
    if (!b->quiet)
        report(b->u, r->key, rc, "");
    slot_next(sl);
}

static void on_done(sto_req_t *r)
{
    slot_t *sl = r->ud;
    batch_t *b = sl->b;
    opstat_t *s = b->s;
    const sto_result_t *res = &r->res;
    /* a LIST that delivered entries already is not repeated (they would come twice) */
    if (res->status != 0 && res->retryable && sl->attempt < UTIL_RETRIES &&
        !(r->op == STO_OP_LIST && res->bytes > 0)) {
        uint64_t ms = 100ull << sl->attempt;
        sl->attempt++;
        s->retried++;
        uv_timer_start(&sl->timer, slot_retry, ms + (uint64_t)rand() % (ms / 2 + 1), 0);
        return; /* still in flight */
    }
    b->inflight--;
    s->ops++;
    wl_hist_record(&s->h, res->t_end_ns > res->t_submit_ns ? res->t_end_ns - res->t_submit_ns : 0);
    if (res->t_end_ns > s->t1)
        s->t1 = res->t_end_ns;
    if (res->status == 0) {
        b->ok++;
        if (r->op == STO_OP_GET || r->op == STO_OP_PUT)
            s->bytes += res->bytes;
        if (!b->seen_ok && b->on_first_ok) {
            b->seen_ok = 1;
            b->on_first_ok(b, r);
        }
    } else if (b->tolerate_dir_errors &&
               (res->status == STO_ENOTEMPTY || res->status == STO_ENOTFOUND)) {
        b->tolerated++;
    } else {
        s->errors++;
        b->last_status = res->status;
        snprintf(b->last_detail, sizeof(b->last_detail), "%s", res->detail);
        if (!b->quiet)
            report(b->u, r->key, res->status, res->detail);
    }
    slot_next(sl);
}

/* Starts the next request of the batch in this slot; a request refused by sto_submit counts as
 * a failed op and the slot moves on to the next index. */
static void slot_next(slot_t *sl)
{
    batch_t *b = sl->b;
    while (b->next < b->n) {
        uint64_t i = b->next++;
        sto_req_t *r = &sl->req;
        memset(r, 0, sizeof(*r));
        sl->attempt = 0;
        r->op = b->op;
        r->done = on_done;
        r->ud = sl;
        if (b->keys) {
            r->key = b->keys[i];
        } else if (b->numbered) {
            snprintf(sl->name, sizeof(sl->name), "util-%08" PRIu64 ".dat", i);
            r->key = sl->name;
        } else {
            r->key = b->key;
        }
        r->offset = b->offset;
        r->length = b->length;
        r->recursive = b->recursive;
        r->on_page = b->on_page;
        if (b->op == STO_OP_PUT) {
            int k = b->size ? wl_datagen_fill(b->dg, i, b->size, sl->iov, WL_DG_MAX_IOV) : 0;
            r->iov = sl->iov;
            r->iovcnt = k > 0 ? k : 0;
        }
        int rc = sto_submit(b->u->st, r);
        if (rc == 0) {
            b->inflight++;
            return;
        }
        b->s->ops++;
        b->s->errors++;
        b->last_status = rc;
        b->last_detail[0] = '\0';
        if (!b->quiet)
            report(b->u, r->key, rc, "");
    }
}

static void timer_closed(uv_handle_t *h)
{
    (*(unsigned *)h->data)--;
}

/* Runs the batch to completion on the util loop. */
static void run_batch(batch_t *b, unsigned conc)
{
    if (!b->s->t0)
        b->s->t0 = rx_now_ns();
    if (b->n == 0)
        return;
    if (conc > b->n)
        conc = (unsigned)b->n;
    if (conc == 0)
        conc = 1;
    slot_t *slots = calloc(conc, sizeof(*slots));
    if (!slots) {
        ctl_err("sai3bench-ctl: util %s: out of memory", b->u->sub);
        abort();
    }
    for (unsigned i = 0; i < conc; i++) {
        slots[i].b = b;
        uv_timer_init(&b->u->loop, &slots[i].timer);
        slots[i].timer.data = &slots[i];
    }
    for (unsigned i = 0; i < conc; i++)
        slot_next(&slots[i]);
    /* until the batch is done: network stores keep timers and idle connections alive */
    while (b->inflight > 0)
        uv_run(&b->u->loop, UV_RUN_ONCE);
    unsigned closing = conc;
    for (unsigned i = 0; i < conc; i++) {
        slots[i].timer.data = &closing;
        uv_close((uv_handle_t *)&slots[i].timer, timer_closed);
    }
    while (closing > 0)
        uv_run(&b->u->loop, UV_RUN_ONCE);
    free(slots);
}

static void opstat_init(opstat_t *s, sto_op_t op)
{
    memset(s, 0, sizeof(*s));
    s->op = op;
    wl_hist_init(&s->h);
}

static void print_stat(const opstat_t *s, int with_bytes)
{
    char mean[32] = "-", p50[32] = "-", p99[32] = "-", mx[32] = "-";
    if (s->h.total) {
        wl_fmt_ns((uint64_t)wl_hist_mean(&s->h), mean, sizeof(mean));
        wl_fmt_ns(wl_hist_quantile(&s->h, 0.5), p50, sizeof(p50));
        wl_fmt_ns(wl_hist_quantile(&s->h, 0.99), p99, sizeof(p99));
        wl_fmt_ns(s->h.max, mx, sizeof(mx));
    }
    char extra[96] = "";
    if (with_bytes) {
        double secs = s->t1 > s->t0 ? (double)(s->t1 - s->t0) / 1e9 : 0;
        snprintf(extra, sizeof(extra), ", %" PRIu64 " bytes, %.2f MiB/s", s->bytes,
                 secs > 0 ? (double)s->bytes / 1048576.0 / secs : 0.0);
    }
    char retried[48] = "";
    if (s->retried)
        snprintf(retried, sizeof(retried), ", %" PRIu64 " retried", s->retried);
    ctl_out("%s: %" PRIu64 " ops, %" PRIu64 " errors, mean %s, p50 %s, p99 %s, max %s%s%s",
            sto_op_name(s->op), s->ops, s->errors, mean, p50, p99, mx, extra, retried);
}

static const char *plural(uint64_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

/* ------------------------------------------------------------------ subcommands ---------- */

static void noop_page(sto_req_t *r, const sto_entry_t *e, size_t n)
{
    (void)r;
    (void)e;
    (void)n;
}

typedef struct lsctx {
    const uopts_t *o;
    uint64_t shown, hidden, objects, dirs, bytes;
} lsctx_t;

static void ls_page(sto_req_t *r, const sto_entry_t *e, size_t n)
{
    lsctx_t *c = ((slot_t *)r->ud)->b->page_ud;
    for (size_t i = 0; i < n; i++) {
        if (c->o->has_limit && c->shown >= c->o->limit) {
            c->hidden++;
            continue;
        }
        c->shown++;
        if (e[i].is_dir) {
            c->dirs++;
            printf("DIR\t%s\n", e[i].key);
        } else {
            c->objects++;
            c->bytes += e[i].size;
            printf("%" PRIu64 "\t%s\n", e[i].size, e[i].key);
        }
    }
}

static int cmd_ls(util_t *u)
{
    opstat_t s;
    opstat_init(&s, STO_OP_LIST);
    lsctx_t c = {.o = u->o};
    batch_t b = {.u = u,
                 .s = &s,
                 .op = STO_OP_LIST,
                 .n = 1,
                 .key = u->loc.key,
                 .recursive = u->o->recursive,
                 .on_page = ls_page,
                 .page_ud = &c};
    run_batch(&b, 1);
    if (b.ok) {
        char hb[32] = "";
        if (c.bytes >= 1024) {
            char t[24];
            snprintf(hb, sizeof(hb), " (%s)", wl_fmt_bytes(c.bytes, t, sizeof(t)));
        }
        char more[96] = "";
        if (c.hidden)
            snprintf(more, sizeof(more), "; %" PRIu64 " more %s not shown (--limit %" PRIu64 ")",
                     c.hidden, plural(c.hidden, "entry", "entries"), u->o->limit);
        ctl_out("total: %" PRIu64 " %s, %" PRIu64 " %s, %" PRIu64 " bytes%s%s", c.objects,
                plural(c.objects, "object", "objects"), c.dirs,
                plural(c.dirs, "directory", "directories"), c.bytes, hb, more);
    }
    print_stat(&s, 0);
    int rc = s.errors ? 1 : 0;
    wl_hist_free(&s.h);
    return rc;
}

static void stat_first(batch_t *b, const sto_req_t *r)
{
    const uopts_t *o = b->u->o;
    ctl_out("uri: %s", o->uri);
    char hb[32] = "";
    if (r->res.bytes >= 1024) {
        char t[24];
        snprintf(hb, sizeof(hb), " (%s)", wl_fmt_bytes(r->res.bytes, t, sizeof(t)));
    }
    ctl_out("size: %" PRIu64 "%s", r->res.bytes, hb);
    if (o->count == 1) {
        char lat[32];
        ctl_out("latency: %s", wl_fmt_ns(r->res.t_end_ns - r->res.t_submit_ns, lat, sizeof(lat)));
    }
}

static void get_first(batch_t *b, const sto_req_t *r)
{
    const uopts_t *o = b->u->o;
    ctl_out("uri: %s", o->uri);
    if (o->has_range) {
        if (o->length)
            ctl_out("range: bytes %" PRIu64 "-%" PRIu64, o->offset, o->offset + o->length - 1);
        else
            ctl_out("range: bytes %" PRIu64 "- (to the end)", o->offset);
    }
    ctl_out("bytes: %" PRIu64, r->res.bytes);
    if (o->count == 1) {
        char lat[32], ttfb[32];
        wl_fmt_ns(r->res.t_end_ns - r->res.t_submit_ns, lat, sizeof(lat));
        if (r->res.t_first_ns > r->res.t_submit_ns)
            ctl_out("latency: %s (first byte after %s)", lat,
                    wl_fmt_ns(r->res.t_first_ns - r->res.t_submit_ns, ttfb, sizeof(ttfb)));
        else
            ctl_out("latency: %s", lat);
    }
}

static void put_first(batch_t *b, const sto_req_t *r)
{
    if (b->u->o->count != 1)
        return;
    char lat[32];
    ctl_out("uri: %s", b->u->o->uri);
    ctl_out("bytes: %" PRIu64, r->res.bytes);
    ctl_out("latency: %s", wl_fmt_ns(r->res.t_end_ns - r->res.t_submit_ns, lat, sizeof(lat)));
}

static int cmd_object(util_t *u, sto_op_t op)
{
    const uopts_t *o = u->o;
    opstat_t s;
    opstat_init(&s, op);
    batch_t b = {.u = u, .s = &s, .op = op, .n = o->count, .key = u->loc.key};
    if (op == STO_OP_HEAD)
        b.on_first_ok = stat_first;
    if (op == STO_OP_GET) {
        b.on_first_ok = get_first;
        b.offset = o->offset;
        b.length = o->length;
    }
    run_batch(&b, o->conc);
    print_stat(&s, op == STO_OP_GET);
    int rc = s.errors ? 1 : 0;
    wl_hist_free(&s.h);
    return rc;
}

static int cmd_put(util_t *u)
{
    const uopts_t *o = u->o;
    wl_datagen_t *dg = NULL;
    if (o->size) {
        int rc = wl_datagen_create(o->fill, 1, 1, rx_wall_ns() ^ ((uint64_t)uv_os_getpid() << 32),
                                   0, &dg);
        if (rc != 0) {
            ctl_err("sai3bench-ctl: util put: cannot build the data: %s", rx_strerror(rc));
            return 1;
        }
    }
    opstat_t s;
    opstat_init(&s, STO_OP_PUT);
    batch_t b = {.u = u,
                 .s = &s,
                 .op = STO_OP_PUT,
                 .n = o->count,
                 .key = u->loc.key,
                 .numbered = o->count > 1,
                 .dg = dg,
                 .size = o->size};
    b.on_first_ok = put_first;
    run_batch(&b, o->conc);
    if (o->count > 1)
        ctl_out("wrote %" PRIu64 " of %" PRIu64 " objects of %" PRIu64 " bytes under %s "
                "(util-00000000.dat .. util-%08" PRIu64 ".dat)",
                b.ok, o->count, o->size, u->loc.base, o->count - 1);
    print_stat(&s, 1);
    int rc = s.errors ? 1 : 0;
    wl_hist_free(&s.h);
    wl_datagen_destroy(dg);
    return rc;
}

typedef struct keylist {
    char **v;
    size_t n, cap;
} keylist_t;

static void keylist_add(keylist_t *l, const char *key, size_t len)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 1024;
        char **nv = realloc(l->v, nc * sizeof(*nv));
        if (!nv)
            abort();
        l->v = nv;
        l->cap = nc;
    }
    char *k = malloc(len + 1);
    if (!k)
        abort();
    memcpy(k, key, len);
    k[len] = '\0';
    l->v[l->n++] = k;
}

static void keylist_free(keylist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static void rm_page(sto_req_t *r, const sto_entry_t *e, size_t n)
{
    keylist_t *l = ((slot_t *)r->ud)->b->page_ud;
    for (size_t i = 0; i < n; i++)
        if (!e[i].is_dir)
            keylist_add(l, e[i].key, strlen(e[i].key));
}

static int depth_of(const char *k)
{
    int d = 0;
    for (; *k; k++)
        d += *k == '/';
    return d;
}

static int cmp_dirs(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    int dx = depth_of(x), dy = depth_of(y);
    if (dx != dy)
        return dy - dx; /* deepest first */
    return strcmp(x, y);
}

static int cmd_rm(util_t *u)
{
    const uopts_t *o = u->o;
    if (!o->recursive) {
        opstat_t s;
        opstat_init(&s, STO_OP_DEL);
        batch_t b = {.u = u, .s = &s, .op = STO_OP_DEL, .n = 1, .key = u->loc.key};
        run_batch(&b, 1);
        if (b.ok)
            ctl_out("removed %" PRIu64 " object", b.ok);
        print_stat(&s, 0);
        int rc = s.errors ? 1 : 0;
        wl_hist_free(&s.h);
        return rc;
    }
    opstat_t ls, del, rmd;
    opstat_init(&ls, STO_OP_LIST);
    opstat_init(&del, STO_OP_DEL);
    opstat_init(&rmd, STO_OP_RMDIR);
    keylist_t keys = {0}, dirs = {0};
    batch_t lb = {.u = u,
                  .s = &ls,
                  .op = STO_OP_LIST,
                  .n = 1,
                  .key = u->loc.key,
                  .recursive = 1,
                  .on_page = rm_page,
                  .page_ud = &keys};
    run_batch(&lb, 1);
    uint64_t removed_dirs = 0;
    if (lb.ok) {
        batch_t db = {.u = u, .s = &del, .op = STO_OP_DEL, .n = keys.n, .keys = keys.v};
        run_batch(&db, o->conc);
        if (sto_store_backend(u->st)->caps & STO_CAP_DIRECTORIES) {
            /* Every directory that held a listed object, below the URI's directory; the keys
             * of a recursive listing are objects only, so these are all their parents. */
            for (size_t i = 0; i < keys.n; i++)
                for (const char *p = keys.v[i]; (p = strchr(p, '/')) != NULL; p++)
                    keylist_add(&dirs, keys.v[i], (size_t)(p - keys.v[i]) + 1);
            if (dirs.n)
                qsort(dirs.v, dirs.n, sizeof(*dirs.v), cmp_dirs);
            size_t w = 0;
            for (size_t i = 0; i < dirs.n; i++) {
                if (w && strcmp(dirs.v[w - 1], dirs.v[i]) == 0) {
                    free(dirs.v[i]);
                    continue;
                }
                dirs.v[w++] = dirs.v[i];
            }
            dirs.n = w;
            /* one depth at a time, deepest first, so a parent goes after its children */
            for (size_t i = 0; i < dirs.n;) {
                size_t j = i;
                int d = depth_of(dirs.v[i]);
                while (j < dirs.n && depth_of(dirs.v[j]) == d)
                    j++;
                batch_t rb = {.u = u,
                              .s = &rmd,
                              .op = STO_OP_RMDIR,
                              .n = j - i,
                              .keys = dirs.v + i,
                              .tolerate_dir_errors = 1};
                run_batch(&rb, o->conc);
                removed_dirs += rb.ok;
                i = j;
            }
        }
        char dtext[64] = "";
        if (removed_dirs)
            snprintf(dtext, sizeof(dtext), " and %" PRIu64 " %s", removed_dirs,
                     plural(removed_dirs, "directory", "directories"));
        ctl_out("removed %" PRIu64 " %s%s under %s%s", db.ok, plural(db.ok, "object", "objects"),
                dtext, u->loc.base, u->loc.key);
    }
    print_stat(&ls, 0);
    if (lb.ok)
        print_stat(&del, 0);
    if (rmd.ops)
        print_stat(&rmd, 0);
    int rc = ls.errors || del.errors || rmd.errors ? 1 : 0;
    keylist_free(&keys);
    keylist_free(&dirs);
    wl_hist_free(&ls.h);
    wl_hist_free(&del.h);
    wl_hist_free(&rmd.h);
    return rc;
}

/* health: LIST of the prefix; the status line is the whole output, failures included. */
static int cmd_health(util_t *u)
{
    opstat_t s;
    opstat_init(&s, STO_OP_LIST);
    batch_t b = {.u = u,
                 .s = &s,
                 .op = STO_OP_LIST,
                 .n = 1,
                 .key = u->loc.key,
                 .on_page = noop_page,
                 .quiet = 1};
    run_batch(&b, 1);
    int rc = 0;
    char lat[32];
    if (b.ok) {
        ctl_out("OK %s (%s)", u->o->uri, wl_fmt_ns(s.h.max, lat, sizeof(lat)));
    } else {
        if (b.last_detail[0])
            ctl_out("FAIL %s: %s (%s)", u->o->uri, rx_strerror(b.last_status), b.last_detail);
        else
            ctl_out("FAIL %s: %s", u->o->uri, rx_strerror(b.last_status));
        rc = 1;
    }
    wl_hist_free(&s.h);
    return rc;
}

/* ------------------------------------------------------------------ entry ---------------- */

static void health_fail(const char *uri, const char *why)
{
    ctl_out("FAIL %s: %s", uri, why);
}

int ctl_cmd_util(const ctl_opts_t *co, int argc, char **argv)
{
    uopts_t o;
    int verbose = co->verbose;
    int rc = parse_args(argc, argv, &o, &verbose);
    if (rc)
        return rc < 0 ? 0 : rc;
    ctl_console_init(verbose);
    sto_err_register();
    const char *sn = sub_names[o.sub];

    util_t *u = calloc(1, sizeof(*u));
    if (!u)
        abort();
    u->o = &o;
    u->sub = sn;
    char err[512] = "";
    rc = split_uri(o.uri, &u->loc, err, sizeof(err));
    if (rc != 0) {
        free(u);
        if (o.sub == SUB_HEALTH) {
            health_fail(o.uri, err[0] ? err : rx_strerror(rc));
            return 1;
        }
        return usage_error(sn, "%s", err[0] ? err : rx_strerror(rc));
    }
    int names_dir = u->loc.key[0] == '\0';
    if ((o.sub == SUB_STAT || o.sub == SUB_GET || (o.sub == SUB_RM && !o.recursive) ||
         (o.sub == SUB_PUT && o.count == 1)) &&
        names_dir) {
        free(u);
        return usage_error(sn, "%s names a directory, not an object%s", o.uri,
                           o.sub == SUB_RM    ? " (use -r to remove what it holds)"
                           : o.sub == SUB_PUT ? " (add --count N to write N objects in it)"
                                              : "");
    }
    if (o.sub == SUB_PUT && o.count > 1 && !names_dir) {
        free(u);
        return usage_error(sn,
                           "with --count %" PRIu64 " the URI must be a directory ending in "
                           "'/' (objects util-00000000.dat, ... go under it)",
                           o.count);
    }

    /* file I/O runs on libuv's pool: size it for the requests in flight before it starts */
    unsigned inflight = o.conc;
    if ((o.sub == SUB_STAT || o.sub == SUB_GET || o.sub == SUB_PUT) && o.count < inflight)
        inflight = (unsigned)o.count;
    rx_threadpool_size(inflight > 4 ? (int)inflight : 4);

    rc = uv_loop_init(&u->loop);
    if (rc != 0) {
        ctl_err("sai3bench-ctl: util %s: cannot start an event loop: %s", sn, uv_strerror(rc));
        free(u);
        return 1;
    }
    /* create_base 0 even for put: PUT creates the key's missing parents on stores with
     * directories, and a utility should not create buckets as a side effect. */
    sto_opts_t so;
    memset(&so, 0, sizeof(so));
    so.endpoint = o.endpoint;
    so.ca_file = o.ca_bundle;
    so.http_version = o.http_version;
    so.insecure_skip_verify = o.insecure;
    so.max_connections = (int)(o.conc > 64 ? o.conc : 64);
    rc = sto_store_open_opts(&u->loop, u->loc.base, 0, &so, &u->st, err, sizeof(err));
    int exit_code;
    if (rc != 0) {
        const char *why = err[0] ? err : rx_strerror(rc);
        if (o.sub == SUB_HEALTH)
            health_fail(o.uri, why);
        else
            ctl_err("sai3bench-ctl: util %s: %s: %s", sn, o.uri, why);
        exit_code = 1;
    } else if (o.has_range && !(sto_store_backend(u->st)->caps & STO_CAP_RANGE)) {
        ctl_err("sai3bench-ctl: util get: %s: the %s backend has no range reads", o.uri,
                sto_store_backend(u->st)->name);
        exit_code = 1;
    } else {
        switch (o.sub) {
        case SUB_LS:
            exit_code = cmd_ls(u);
            break;
        case SUB_STAT:
            exit_code = cmd_object(u, STO_OP_HEAD);
            break;
        case SUB_GET:
            exit_code = cmd_object(u, STO_OP_GET);
            break;
        case SUB_PUT:
            exit_code = cmd_put(u);
            break;
        case SUB_RM:
            exit_code = cmd_rm(u);
            break;
        case SUB_HEALTH:
        default:
            exit_code = cmd_health(u);
            break;
        }
    }
    if (u->errors_hidden)
        ctl_err("sai3bench-ctl: util %s: %" PRIu64 " more %s not shown", sn, u->errors_hidden,
                plural(u->errors_hidden, "error", "errors"));
    /* A network backend may close sockets on the loop: run it dry before closing it. */
    if (u->st)
        sto_store_close(u->st);
    uv_run(&u->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&u->loop) != 0)
        ctl_err("sai3bench-ctl: util %s: internal: handles left open on the loop", sn);
    free(u);
    return exit_code;
}
