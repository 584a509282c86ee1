/* The prepare / execute / cleanup engine.
 *
 * Control side: one private uv loop on the thread that calls the phase functions. It resolves
 * names (listing through the storage backends), starts a phase on every core by message, asks
 * for interval snapshots every tick, and stops when every core reported done.
 *
 * Core side: a core_ctx per core lives on that core's loop. It owns its stores, data generators,
 * slots and stats. Slots are the unit of concurrency: each slot has at most one storage request
 * in flight. Work is split across cores by index arithmetic (index % ncores == core), so cores
 * never share mutable state; the only shared word is the global error counter (atomic), read to
 * enforce max_total_errors.
 */
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rx/err.h"
#include "rx/mailbox.h"
#include "rx/time.h"
#include "sto/backend.h"
#include "sto/err.h"
#include "sto/uri.h"
#include "wl/datagen.h"
#include "wl/err.h"
#include "wl/run.h"

#define KEY_MAX 1024
#define URI_MAX 4200
#define PACE_QUEUE 65536

/* ---------------------------------------------------------------- shared, immutable plan -- */

typedef enum src_kind { SRC_NONE = 0, SRC_PREPARED, SRC_LISTED, SRC_SINGLE } src_kind_t;

typedef struct opdesc {
    wl_op_kind_t kind;
    const wl_op_cfg_t *cfg;
    int store;          /* index in run->stores */
    char prefix[KEY_MAX]; /* key prefix inside the store (PUT/MKDIR dir, LIST prefix, single key) */
    src_kind_t src;
    int set;            /* SRC_PREPARED: ensure set index */
    char **keys;        /* SRC_LISTED: resolved keys (owned) */
    size_t nkeys;
    int dg;             /* PUT: data generator index */
    int mkdir_op;       /* RMDIR: the MKDIR op whose dirs it removes */
    uint32_t limit;     /* per-core in-flight limit, 0 = none */
    char uri[URI_MAX];  /* full URI as resolved, for messages */
} opdesc_t;

typedef struct setdesc {
    const wl_ensure_cfg_t *cfg;
    int store;
    uint64_t seed;      /* size seed: stable across runs for the same base_uri */
    uint8_t *exists;    /* prepare: 1 = present with the right size (owned) */
    int dg;
    int has_delete;     /* an execute DELETE consumes this set */
} setdesc_t;

typedef struct dgdesc {
    wl_fill_t fill;
    uint32_t dedup, compress;
} dgdesc_t;

/* ---------------------------------------------------------------- per core --------------- */

typedef struct core_ctx core_ctx_t;

typedef struct slot {
    core_ctx_t *cc;
    int busy;
    int op;             /* opdesc index, or -1 for prepare/cleanup items */
    wl_op_kind_t kind;
    uint64_t t_intended;/* 0 when the run is closed-loop */
    int attempt;
    uint64_t index;     /* object index (prepared sets) or seq */
    int set;
    uint64_t size;
    sto_req_t req;
    char key[KEY_MAX];
    struct iovec iov[WL_DG_MAX_IOV];
    uv_timer_t retry_timer;
    int retry_timer_init;
    struct slot *next_idle;
    /* cleanup on stores with batch delete: up to BATCH_MAX keys per request */
    char **bkeys;
    char *barena;
    size_t nbatch, bused;
} slot_t;

#define BATCH_MAX 1000
#define BATCH_ARENA ((size_t)BATCH_MAX * 64)

typedef struct dirstack {
    uint64_t *seq;
    size_t n, cap;
} dirstack_t;

struct core_ctx {
    wl_run_t *run;
    int idx;
    rx_core_t *core;
    uv_loop_t *loop;
    int inited;
    sto_store_t **stores;
    wl_datagen_t **dgs;
    wl_rng_t rng;
    wl_stats_t total;    /* current phase */
    wl_stats_t interval; /* since the last snapshot */
    slot_t *slots;
    int nslots;
    int active;          /* slots with a request in flight or waiting on a retry timer */
    slot_t *idle;        /* parked slots */
    int stopping;
    int finished;
    wl_phase_t phase;
    uint64_t t_phase_start;
    uv_timer_t deadline;
    uv_timer_t pacer;
    uv_timer_t backoff;
    uint64_t paused_until;
    uint64_t win_start, win_errors;
    /* pacing (open loop) */
    double rate;         /* ops/s for this core, 0 = closed loop */
    uint64_t next_intended;
    uint64_t *paceq;     /* ring of intended start times waiting for a free slot */
    size_t pq_head, pq_len;
    uint64_t pace_dropped;
    /* execute state that survives into cleanup */
    uint64_t *put_seq;   /* per op */
    uint64_t *set_hi;    /* per set: local partition entries still present (deleted from top) */
    /* This core's share of prepared indices (and listed keys): k * stride + off for k = 0, 1, ...
     * with stride = cores * agents and off = agent_index + agents * core index, so the agents of
     * a distributed run split every set by index % agents and their cores split it further. */
    uint64_t stride, off;
    uint64_t *list_cursor; /* per op: next local listed key for DELETE */
    uint32_t *inflight;  /* per op */
    dirstack_t *dirs;    /* per op (MKDIR) */
    /* prepare / cleanup work list cursor */
    int item_set;        /* current set */
    uint64_t item_k;     /* next local index within the set */
    int item_stage;      /* cleanup: 0 sets, 1 puts, 2 dirs */
    int item_op;
    uint64_t item_seq;
    uint64_t done_items, total_items;
    int failed_hard;     /* cleanup/prepare failure under its mode */
    int closing_left;    /* teardown: handles whose close callback has not run */
    char fail_text[256];
};

/* ---------------------------------------------------------------- run -------------------- */

struct wl_run {
    wl_run_opts_t o;
    const wl_config_t *cfg;
    int ncores;
    core_ctx_t *cores;
    char **stores;       /* base URIs, one store per entry on every core */
    char **store_ep;     /* per store: the config endpoint it uses (NULL = none) */
    int nstores;
    opdesc_t *ops;
    int nops;
    uint32_t wsum;
    setdesc_t *sets;
    int nsets;
    dgdesc_t *dgs;
    int ndgs;
    uint64_t run_id;
    uint64_t aindex, acount; /* this agent's share of prepared sets (1 agent: 0, 1) */
    uint64_t duration_ns;    /* execute length: cfg->duration_ns unless wl_run_set_duration */

    /* control loop */
    uv_loop_t loop;
    rx_mailbox_t mb;
    uv_async_t abort_async;
    uv_timer_t tick;
    int loop_ok;
    atomic_int abort_flag;
    atomic_int abort_kind; /* 0 user, 1 too many errors, 2 failure */
    atomic_uint_fast64_t errors;

    /* phase bookkeeping (control thread only) */
    wl_phase_t cur;
    int phase_running; /* between posting a phase to the cores and its loop ending */
    int cores_done;
    int snaps_pending;
    uint64_t *prog_done, *prog_total, *prog_inflight; /* per core, from the last report */
    wl_stats_t delta;    /* reports merged since the last tick */
    uint64_t t_phase_start, t_last_tick;
    int phase_ran[WL_PHASE__COUNT];
    wl_stats_t totals[WL_PHASE__COUNT];
    uint64_t wall[WL_PHASE__COUNT];
    wl_prepare_summary_t psum;
    char err[512];
};

/* ---------------------------------------------------------------- helpers ---------------- */

const char *wl_phase_name(wl_phase_t p)
{
    static const char *const n[] = {"prepare", "execute", "cleanup"};
    return (unsigned)p < WL_PHASE__COUNT ? n[p] : "?";
}

static void msg(wl_run_t *r, rx_log_level_t lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void msg(wl_run_t *r, rx_log_level_t lvl, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (r->o.cb.on_message) r->o.cb.on_message(r->o.cb.ud, lvl, buf);
}

static void set_err(wl_run_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(wl_run_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof(r->err), fmt, ap);
    va_end(ap);
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return wl_mix64(h);
}

/* A store is a base URI plus the endpoint it is reached at (s3://bucket/ of two endpoints are
 * two stores). */
static int add_store(wl_run_t *r, const char *uri, const char *ep)
{
    for (int i = 0; i < r->nstores; i++)
        if (strcmp(r->stores[i], uri) == 0 &&
            (r->store_ep[i] == ep || (r->store_ep[i] && ep && !strcmp(r->store_ep[i], ep))))
            return i;
    char **n = realloc(r->stores, sizeof(char *) * (size_t)(r->nstores + 1));
    if (!n) return -ENOMEM;
    r->stores = n;
    n = realloc(r->store_ep, sizeof(char *) * (size_t)(r->nstores + 1));
    if (!n) return -ENOMEM;
    r->store_ep = n;
    r->store_ep[r->nstores] = NULL;
    if (!(r->stores[r->nstores] = strdup(uri))) return -ENOMEM;
    if (ep && !(r->store_ep[r->nstores] = strdup(ep))) {
        free(r->stores[r->nstores]);
        return -ENOMEM;
    }
    return r->nstores++;
}

/* Storage options of store i from the config's endpoint, s3 and http blocks. */
static void store_opts(const wl_run_t *r, int i, uint32_t slots, sto_opts_t *o)
{
    const wl_net_cfg_t *n = &r->cfg->net;
    memset(o, 0, sizeof(*o));
    o->endpoint = r->store_ep[i];
    o->virtual_host = n->virtual_host;
    o->sign_payload = n->sign_payload;
    o->no_create_bucket = !n->create_bucket;
    /* automatic: enough connections for every slot of the core, parts of multipart PUTs too */
    uint32_t mc = n->max_connections;
    if (!mc) {
        mc = slots < 64 ? 64 : slots + slots / 4;
    }
    o->max_connections = (int)mc;
    o->connect_timeout_ms = (int)(n->connect_timeout_ns / 1000000u);
    o->io_timeout_ms = (int)(n->io_timeout_ns / 1000000u);
    o->insecure_skip_verify = n->insecure_skip_verify;
    o->ca_file = n->ca_bundle;
    o->multipart_threshold = n->multipart_threshold;
    o->part_size = n->part_size;
    o->part_concurrency = (int)n->part_concurrency;
    o->http_version = n->version;
    o->h2_max_streams = (int)n->h2_max_streams;
    o->h2_stream_window = (int)n->h2_stream_window;
    o->h2_conn_window = (int)(n->h2_conn_window ? n->h2_conn_window : 4 * n->h2_stream_window);
    if (n->version == 1 && !n->max_connections) {
        /* HTTP/2: enough connections for the slots at h2_max_streams each */
        uint32_t per = n->h2_max_streams ? n->h2_max_streams : 100;
        o->max_connections = (int)((slots + per - 1) / per);
    }
}

static int add_dg(wl_run_t *r, wl_fill_t fill, uint32_t dedup, uint32_t compress)
{
    for (int i = 0; i < r->ndgs; i++)
        if (r->dgs[i].fill == fill && r->dgs[i].dedup == dedup && r->dgs[i].compress == compress)
            return i;
    dgdesc_t *n = realloc(r->dgs, sizeof(*n) * (size_t)(r->ndgs + 1));
    if (!n) return -ENOMEM;
    r->dgs = n;
    r->dgs[r->ndgs] = (dgdesc_t){fill, dedup, compress};
    return r->ndgs++;
}

static void prepared_key(const char *prefix, uint64_t idx, char *out, size_t len)
{
    snprintf(out, len, "%sprepared-%08" PRIu64 ".dat", prefix, idx);
}

static void put_key(const wl_run_t *r, const opdesc_t *od, int core, uint64_t seq, char *out,
                    size_t len)
{
    snprintf(out, len, "%sobj-%08" PRIx64 "-c%d-%" PRIu64 ".dat", od->prefix,
             r->run_id & 0xffffffffu, core, seq);
}

static void mkdir_key(const wl_run_t *r, const opdesc_t *od, int core, uint64_t seq, char *out,
                      size_t len)
{
    snprintf(out, len, "%sdir-%08" PRIx64 "-c%d-%" PRIu64, od->prefix, r->run_id & 0xffffffffu,
             core, seq);
}

/* Normalised "scheme://[endpoint|]authority/path/" for comparing directory URIs. */
static int norm_dir(const char *uri, char *out, size_t len)
{
    sto_uri_t u;
    if (sto_uri_parse(uri, &u, NULL, 0) != 0) return -1;
    size_t pl = strlen(u.path);
    int slash = pl && u.path[pl - 1] == '/';
    if (u.scheme == STO_SCHEME_FILE || u.scheme == STO_SCHEME_DIRECT)
        snprintf(out, len, "%s://%s%s", sto_scheme_name(u.scheme), u.path, slash ? "" : "/");
    else
        snprintf(out, len, "%s://%s|%s/%s%s", sto_scheme_name(u.scheme), u.endpoint, u.authority,
                 u.path, (pl && !slash) ? "/" : "");
    return 0;
}

/* Glob match of a key relative to the listed directory. "**" crosses directories. */
static int key_match(const char *pat, const char *key)
{
    if (strncmp(pat, "**/", 3) == 0) {
        if (key_match(pat + 3, key)) return 1;
        const char *sl = strchr(key, '/');
        return sl ? key_match(pat, sl + 1) : 0;
    }
    if (strstr(pat, "**")) return fnmatch(pat, key, 0) == 0;
    return fnmatch(pat, key, FNM_PATHNAME) == 0;
}

/* Splits a full URI into the directory URI (ending in '/') and the rest (pattern or name). */
static void split_uri(const char *full, char *dir, size_t dlen, const char **rest)
{
    const char *glob = strpbrk(full, "*?[");
    const char *scheme_end = strstr(full, "://");
    const char *lim = glob ? glob : full + strlen(full);
    const char *slash = NULL;
    for (const char *p = scheme_end ? scheme_end + 3 : full; p < lim; p++)
        if (*p == '/') slash = p;
    if (!slash) slash = lim - 1;
    size_t n = (size_t)(slash - full) + 1;
    if (n >= dlen) n = dlen - 1;
    memcpy(dir, full, n);
    dir[n] = 0;
    *rest = full + n;
}

/* ---------------------------------------------------------------- control: listing -------- */

typedef struct listctx {
    int done;
    int status;
    char detail[256];
    void (*entry)(struct listctx *lc, const sto_entry_t *e);
    /* resolution */
    const char *pattern;
    char **keys;
    size_t nkeys, cap;
    int oom;
    /* prepare existence */
    setdesc_t *set;
    uint64_t found;
} listctx_t;

static void list_page(sto_req_t *req, const sto_entry_t *e, size_t n)
{
    listctx_t *lc = req->ud;
    for (size_t i = 0; i < n; i++) lc->entry(lc, &e[i]);
}

static void list_done(sto_req_t *req)
{
    listctx_t *lc = req->ud;
    lc->done = 1;
    lc->status = req->res.status;
    snprintf(lc->detail, sizeof(lc->detail), "%s", req->res.detail);
}

/* Lists `prefix` in store uri on the control loop and blocks until done. */
static int ctl_list(wl_run_t *r, int store, const char *prefix, int recursive, listctx_t *lc)
{
    sto_store_t *st;
    char e[256] = "";
    const char *uri = r->stores[store];
    sto_opts_t so;
    store_opts(r, store, 1, &so);
    int rc = sto_store_open_opts(&r->loop, uri, 0, &so, &st, e, sizeof(e));
    if (rc) {
        set_err(r, "cannot open %s: %s", uri, e[0] ? e : rx_strerror(rc));
        return rc;
    }
    sto_req_t req;
    memset(&req, 0, sizeof(req));
    req.op = STO_OP_LIST;
    req.key = prefix;
    req.recursive = recursive;
    req.on_page = list_page;
    req.done = list_done;
    req.ud = lc;
    rc = sto_submit(st, &req);
    if (rc == 0) {
        while (!lc->done) uv_run(&r->loop, UV_RUN_ONCE);
        rc = lc->status;
        if (rc) set_err(r, "listing %s%s failed: %s", uri, prefix, lc->detail[0] ? lc->detail
                                                                                 : rx_strerror(rc));
    } else {
        set_err(r, "listing %s%s failed: %s", uri, prefix, rx_strerror(rc));
    }
    sto_store_close(st);
    uv_run(&r->loop, UV_RUN_NOWAIT);
    return rc;
}

static void resolve_entry(listctx_t *lc, const sto_entry_t *e)
{
    if (e->is_dir) return;
    if (lc->pattern && lc->pattern[0] && !key_match(lc->pattern, e->key)) return;
    if (lc->nkeys == lc->cap) {
        size_t nc = lc->cap ? lc->cap * 2 : 1024;
        char **n = realloc(lc->keys, nc * sizeof(char *));
        if (!n) {
            lc->oom = 1;
            return;
        }
        lc->keys = n;
        lc->cap = nc;
    }
    if (!(lc->keys[lc->nkeys] = strdup(e->key))) {
        lc->oom = 1;
        return;
    }
    lc->nkeys++;
}

static void exists_entry(listctx_t *lc, const sto_entry_t *e)
{
    unsigned long long idx;
    int end = 0;
    if (e->is_dir) return;
    if (sscanf(e->key, "prepared-%8llu.dat%n", &idx, &end) != 1 || e->key[end] != 0) return;
    if (idx >= lc->set->cfg->count) return;
    if (e->size != wl_size_for_index(&lc->set->cfg->size, lc->set->seed, idx)) return;
    lc->set->exists[idx] = 1;
    lc->found++;
}

/* ---------------------------------------------------------------- create -------------------- */

static int build_plan(wl_run_t *r)
{
    const wl_config_t *c = r->cfg;
    int rc;
    r->nsets = (int)c->prepare.nensure;
    r->sets = calloc((size_t)r->nsets + 1, sizeof(setdesc_t));
    r->nops = (int)c->nops;
    r->ops = calloc((size_t)r->nops + 1, sizeof(opdesc_t));
    if (!r->sets || !r->ops) return -ENOMEM;
    for (int s = 0; s < r->nsets; s++) {
        setdesc_t *sd = &r->sets[s];
        sd->cfg = &c->prepare.ensure[s];
        char dir[URI_MAX];
        snprintf(dir, sizeof(dir), "%s%s", sd->cfg->base_uri,
                 sd->cfg->base_uri[strlen(sd->cfg->base_uri) - 1] == '/' ? "" : "/");
        if ((rc = add_store(r, dir, sd->cfg->endpoint ? sd->cfg->endpoint : c->net.endpoint)) < 0)
            return rc;
        sd->store = rc;
        sd->seed = hash_str(dir) ^ (uint64_t)s;
        if ((rc = add_dg(r, sd->cfg->fill, sd->cfg->dedup_factor, sd->cfg->compress_factor)) < 0)
            return rc;
        sd->dg = rc;
    }
    for (int i = 0; i < r->nops; i++) {
        opdesc_t *od = &r->ops[i];
        od->cfg = &c->ops[i];
        od->kind = od->cfg->op;
        od->mkdir_op = -1;
        r->wsum += od->cfg->weight;
        if (wl_config_op_uri(c, od->cfg, od->uri, sizeof(od->uri)) != 0) {
            set_err(r, "op %d (%s): cannot resolve path '%s' against target", i + 1,
                    wl_op_name(od->kind), od->cfg->path ? od->cfg->path : "");
            return WL_ECONFIG;
        }
        char dir[URI_MAX];
        const char *rest;
        if (od->kind == WL_OP_PUT || od->kind == WL_OP_MKDIR || od->kind == WL_OP_RMDIR ||
            od->kind == WL_OP_LIST) {
            if (strpbrk(od->uri, "*?[")) {
                set_err(r, "op %d (%s): path '%s' may not contain wildcards", i + 1,
                        wl_op_name(od->kind), od->uri);
                return WL_ECONFIG;
            }
            if (od->kind == WL_OP_LIST) {
                split_uri(od->uri, dir, sizeof(dir), &rest);
                snprintf(od->prefix, sizeof(od->prefix), "%s", rest);
            } else {
                /* a directory: everything goes under it */
                snprintf(dir, sizeof(dir), "%s%s", od->uri,
                         od->uri[strlen(od->uri) - 1] == '/' ? "" : "/");
                od->prefix[0] = 0;
            }
        } else {
            split_uri(od->uri, dir, sizeof(dir), &rest);
            /* prepared set? */
            char nd[URI_MAX], ns[URI_MAX];
            if (norm_dir(dir, nd, sizeof(nd)) == 0) {
                for (int s = 0; s < r->nsets; s++) {
                    if (norm_dir(r->stores[r->sets[s].store], ns, sizeof(ns)) != 0) continue;
                    if (strcmp(nd, ns) != 0) continue;
                    if (rest[0] && !key_match(rest, "prepared-00000000.dat")) continue;
                    od->src = SRC_PREPARED;
                    od->set = s;
                    if (od->kind == WL_OP_DELETE) r->sets[s].has_delete = 1;
                    break;
                }
            }
            if (od->src != SRC_PREPARED) {
                if (!strpbrk(rest, "*?[") && rest[0]) {
                    od->src = SRC_SINGLE;
                    snprintf(od->prefix, sizeof(od->prefix), "%s", rest);
                } else {
                    od->src = SRC_LISTED;
                    snprintf(od->prefix, sizeof(od->prefix), "%s", rest); /* the pattern */
                }
            }
        }
        if (od->src == SRC_PREPARED) {
            od->store = r->sets[od->set].store;
        } else {
            if ((rc = add_store(r, dir, c->net.endpoint)) < 0) return rc;
            od->store = rc;
        }
        if (od->kind == WL_OP_PUT) {
            if ((rc = add_dg(r, od->cfg->fill, od->cfg->dedup_factor, od->cfg->compress_factor)) <
                0)
                return rc;
            od->dg = rc;
        }
        if (od->cfg->concurrency) {
            uint32_t per = (od->cfg->concurrency + (uint32_t)r->ncores - 1) / (uint32_t)r->ncores;
            od->limit = per ? per : 1;
        }
        if (od->kind == WL_OP_MKDIR || od->kind == WL_OP_RMDIR) {
            sto_uri_t su;
            const sto_backend_t *be = NULL;
            if (sto_uri_parse(r->stores[od->store], &su, NULL, 0) == 0)
                be = sto_backend_for(su.scheme);
            if (be && !(be->caps & STO_CAP_DIRECTORIES)) {
                set_err(r, "op %d (%s): %s:// has no directories; mkdir and rmdir work on "
                           "file:// and direct:// only", i + 1, wl_op_name(od->kind), be->name);
                return WL_ECONFIG;
            }
        }
    }
    for (int i = 0; i < r->nops; i++) {
        opdesc_t *od = &r->ops[i];
        if (od->kind != WL_OP_RMDIR) continue;
        for (int j = 0; j < r->nops; j++)
            if (r->ops[j].kind == WL_OP_MKDIR && r->ops[j].store == od->store) od->mkdir_op = j;
        if (od->mkdir_op < 0) {
            set_err(r,
                    "op %d (RMDIR): removes the directories a mkdir op on the same path makes; "
                    "add `op: mkdir` with path '%s'",
                    i + 1, od->cfg->path ? od->cfg->path : "");
            return WL_ECONFIG;
        }
    }
    return 0;
}

/* Opens every store once on the control loop: checks the URIs, probes direct://, and creates the
 * directories that prepare and PUT write into. */
static int probe_stores(wl_run_t *r)
{
    for (int i = 0; i < r->nstores; i++) {
        int create = 0;
        for (int s = 0; s < r->nsets; s++) create |= r->sets[s].store == i;
        for (int o = 0; o < r->nops; o++)
            create |= r->ops[o].store == i &&
                      (r->ops[o].kind == WL_OP_PUT || r->ops[o].kind == WL_OP_MKDIR);
        sto_store_t *st;
        char e[512] = "";
        sto_opts_t so;
        store_opts(r, i, 1, &so);
        int rc = sto_store_open_opts(&r->loop, r->stores[i], create, &so, &st, e, sizeof(e));
        if (rc) {
            set_err(r, "%s: %s", r->stores[i], e[0] ? e : rx_strerror(rc));
            return rc;
        }
        sto_store_close(st);
        uv_run(&r->loop, UV_RUN_NOWAIT);
    }
    return 0;
}

static void on_abort_async(uv_async_t *a);

int wl_run_create(const wl_run_opts_t *o, wl_run_t **out)
{
    wl_run_t *r = calloc(1, sizeof(*r));
    if (!r) return -ENOMEM;
    r->o = *o;
    r->cfg = o->cfg;
    if (!r->o.tick_ns) r->o.tick_ns = 1000000000ull;
    r->acount = o->agent_count ? o->agent_count : 1;
    r->aindex = o->agent_index;
    if (r->aindex >= r->acount) {
        free(r);
        return -EINVAL;
    }
    r->duration_ns = o->cfg->duration_ns;
    r->ncores = rx_engine_ncores(o->engine);
    r->run_id = wl_mix64(o->seed ^ rx_wall_ns());
    atomic_init(&r->abort_flag, 0);
    atomic_init(&r->abort_kind, 0);
    atomic_init(&r->errors, 0);
    for (int p = 0; p < WL_PHASE__COUNT; p++) wl_stats_init(&r->totals[p]);
    wl_stats_init(&r->delta);
    int rc = uv_loop_init(&r->loop);
    if (rc) {
        free(r);
        return rc;
    }
    r->loop_ok = 1;
    if ((rc = rx_mailbox_init(&r->loop, &r->mb)) != 0 ||
        (rc = uv_async_init(&r->loop, &r->abort_async, on_abort_async)) != 0 ||
        (rc = uv_timer_init(&r->loop, &r->tick)) != 0) {
        set_err(r, "control loop: %s", rx_strerror(rc));
        *out = r;
        return rc;
    }
    r->abort_async.data = r;
    r->tick.data = r;
    r->cores = calloc((size_t)r->ncores, sizeof(core_ctx_t));
    r->prog_done = calloc((size_t)r->ncores, sizeof(uint64_t));
    r->prog_total = calloc((size_t)r->ncores, sizeof(uint64_t));
    r->prog_inflight = calloc((size_t)r->ncores, sizeof(uint64_t));
    if (!r->cores || !r->prog_done || !r->prog_total || !r->prog_inflight) {
        *out = r;
        return -ENOMEM;
    }
    for (int i = 0; i < r->ncores; i++) {
        r->cores[i].run = r;
        r->cores[i].idx = i;
        r->cores[i].core = rx_engine_core(o->engine, i);
    }
    *out = r;
    if ((rc = build_plan(r)) != 0) return rc;
    return probe_stores(r);
}

/* ---------------------------------------------------------------- core: setup ------------ */

static int core_init(core_ctx_t *cc)
{
    wl_run_t *r = cc->run;
    cc->loop = rx_core_loop(cc->core);
    cc->stride = (uint64_t)r->ncores * r->acount;
    cc->off = r->aindex + r->acount * (uint64_t)cc->idx;
    wl_rng_seed(&cc->rng, wl_mix64(r->o.seed + (uint64_t)cc->idx * 0x9e3779b97f4a7c15ull));
    wl_stats_init(&cc->total);
    wl_stats_init(&cc->interval);
    cc->stores = calloc((size_t)r->nstores, sizeof(sto_store_t *));
    cc->dgs = calloc((size_t)r->ndgs + 1, sizeof(wl_datagen_t *));
    cc->put_seq = calloc((size_t)r->nops + 1, sizeof(uint64_t));
    cc->list_cursor = calloc((size_t)r->nops + 1, sizeof(uint64_t));
    cc->inflight = calloc((size_t)r->nops + 1, sizeof(uint32_t));
    cc->dirs = calloc((size_t)r->nops + 1, sizeof(dirstack_t));
    cc->set_hi = calloc((size_t)r->nsets + 1, sizeof(uint64_t));
    if (!cc->stores || !cc->dgs || !cc->put_seq || !cc->list_cursor || !cc->inflight ||
        !cc->dirs || !cc->set_hi)
        return -ENOMEM;
    for (int s = 0; s < r->nsets; s++) {
        uint64_t cnt = r->sets[s].cfg->count;
        cc->set_hi[s] = cnt > cc->off ? (cnt - cc->off + cc->stride - 1) / cc->stride : 0;
    }
    for (int i = 0; i < r->nstores; i++) {
        char e[256];
        sto_opts_t so;
        uint32_t conc = r->cfg->concurrency;
        store_opts(r, i, conc / (uint32_t)r->ncores + 1, &so);
        int rc = sto_store_open_opts(cc->loop, r->stores[i], 0, &so, &cc->stores[i], e,
                                     sizeof(e));
        if (rc) {
            snprintf(cc->fail_text, sizeof(cc->fail_text), "%s: %s", r->stores[i], e);
            return rc;
        }
    }
    for (int i = 0; i < r->ndgs; i++) {
        int rc = wl_datagen_create(r->dgs[i].fill, r->dgs[i].dedup, r->dgs[i].compress,
                                   r->o.seed ^ (uint64_t)i * 0x632be59bd9b4e019ull, cc->idx,
                                   &cc->dgs[i]);
        if (rc) return rc;
    }
    uv_timer_init(cc->loop, &cc->deadline);
    uv_timer_init(cc->loop, &cc->pacer);
    uv_timer_init(cc->loop, &cc->backoff);
    cc->deadline.data = cc->pacer.data = cc->backoff.data = cc;
    cc->inited = 1;
    return 0;
}

/* ---------------------------------------------------------------- core: messages to ctl -- */

/* A core's report to the control side: interval stats (and the phase totals when final).
 * Snapshot reports are allocated by the control side and filled on the core; final reports are
 * allocated on the core. The control side merges and frees both. */
typedef struct report_msg {
    core_ctx_t *cc;
    int final;
    wl_stats_t interval;
    wl_stats_t totals;
    uint64_t done, total, inflight;
} report_msg_t;

static void ctl_report(void *arg, int closing);

static void report_fill(core_ctx_t *cc, report_msg_t *m)
{
    wl_stats_merge(&m->interval, &cc->interval);
    wl_stats_reset(&cc->interval);
    m->done = cc->done_items;
    m->total = cc->total_items;
    m->inflight = (uint64_t)cc->active;
}

static void report_free(report_msg_t *m)
{
    wl_stats_free(&m->interval);
    wl_stats_free(&m->totals);
    free(m);
}

static void core_finish(core_ctx_t *cc)
{
    if (cc->finished) return;
    cc->finished = 1;
    uv_timer_stop(&cc->deadline);
    uv_timer_stop(&cc->pacer);
    uv_timer_stop(&cc->backoff);
    wl_run_t *r = cc->run;
    report_msg_t *m = calloc(1, sizeof(*m));
    if (!m) abort(); /* the phase could never end otherwise */
    wl_stats_init(&m->interval);
    wl_stats_init(&m->totals);
    m->cc = cc;
    m->final = 1;
    report_fill(cc, m);
    m->inflight = 0;
    wl_stats_merge(&m->totals, &cc->total);
    if (rx_mailbox_post(&r->mb, ctl_report, m) != 0) report_free(m);
}

/* ---------------------------------------------------------------- core: op engine -------- */

static void slot_next(slot_t *sl);
static void core_kick(core_ctx_t *cc);

static void count_error(core_ctx_t *cc, wl_op_kind_t kind, int code, const char *name)
{
    wl_run_t *r = cc->run;
    wl_stats_error(&cc->total, kind, code, name);
    wl_stats_error(&cc->interval, kind, code, name);
    if (cc->phase != WL_PHASE_EXECUTE) return;
    uint64_t n = atomic_fetch_add(&r->errors, 1) + 1;
    uint64_t max = r->cfg->errh.max_total_errors;
    if (max && n >= max) {
        int expect = 0;
        atomic_compare_exchange_strong(&r->abort_kind, &expect, 1);
        wl_run_abort(r);
    }
    /* error-rate backoff */
    const wl_errh_cfg_t *eh = &r->cfg->errh;
    uint64_t now = rx_now_ns();
    if (now - cc->win_start > eh->error_rate_window_ns) {
        cc->win_start = now;
        cc->win_errors = 0;
    }
    cc->win_errors++;
    double win_s = (double)eh->error_rate_window_ns / 1e9;
    if (eh->error_rate_threshold > 0 && win_s > 0 &&
        (double)cc->win_errors / win_s >= eh->error_rate_threshold && eh->backoff_duration_ns) {
        cc->paused_until = now + eh->backoff_duration_ns;
        cc->win_errors = 0;
        cc->win_start = now;
    }
}

/* Chooses an op that has work available on this core; -1 if none. */
static int op_available(core_ctx_t *cc, int i)
{
    wl_run_t *r = cc->run;
    opdesc_t *od = &r->ops[i];
    if (od->limit && cc->inflight[i] >= od->limit) return 0;
    switch (od->kind) {
    case WL_OP_GET:
    case WL_OP_STAT:
        if (od->src == SRC_PREPARED) {
            if (r->sets[od->set].has_delete) return cc->set_hi[od->set] > 0;
            return r->sets[od->set].cfg->count > 0;
        }
        return od->src == SRC_SINGLE || od->nkeys > 0;
    case WL_OP_DELETE:
        if (od->src == SRC_PREPARED) return cc->set_hi[od->set] > 0;
        if (od->src == SRC_SINGLE) return cc->off == 0 && cc->list_cursor[i] == 0;
        {
            /* local share of the listed keys: k*stride + off */
            uint64_t local =
                od->nkeys > cc->off ? (od->nkeys - cc->off + cc->stride - 1) / cc->stride : 0;
            return cc->list_cursor[i] < local;
        }
    case WL_OP_RMDIR: return cc->dirs[od->mkdir_op].n > 0;
    default: return 1;
    }
}

static int pick_op(core_ctx_t *cc)
{
    wl_run_t *r = cc->run;
    for (int tries = 0; tries < 8; tries++) {
        uint64_t x = wl_rng_below(&cc->rng, r->wsum);
        int i = 0;
        while (x >= r->ops[i].cfg->weight) x -= r->ops[i++].cfg->weight;
        if (op_available(cc, i)) return i;
    }
    /* weighted choice among those available */
    uint64_t w = 0;
    for (int i = 0; i < r->nops; i++)
        if (op_available(cc, i)) w += r->ops[i].cfg->weight;
    if (!w) return -1;
    uint64_t x = wl_rng_below(&cc->rng, w);
    for (int i = 0; i < r->nops; i++) {
        if (!op_available(cc, i)) continue;
        if (x < r->ops[i].cfg->weight) return i;
        x -= r->ops[i].cfg->weight;
    }
    return -1;
}

static sto_op_t sto_of(wl_op_kind_t k)
{
    switch (k) {
    case WL_OP_GET: return STO_OP_GET;
    case WL_OP_PUT: return STO_OP_PUT;
    case WL_OP_LIST: return STO_OP_LIST;
    case WL_OP_STAT: return STO_OP_HEAD;
    case WL_OP_DELETE: return STO_OP_DEL;
    case WL_OP_MKDIR: return STO_OP_MKDIR;
    case WL_OP_RMDIR: return STO_OP_RMDIR;
    default: return STO_OP_HEAD;
    }
}

/* LIST ops count the entries the backend reports in res.bytes; pages need no work. */
static void list_count_page(sto_req_t *req, const sto_entry_t *e, size_t n)
{
    (void)req;
    (void)e;
    (void)n;
}

/* Fills the slot's request for execute op i. Returns 0 or <0 when nothing can be issued. */
static int build_exec(core_ctx_t *cc, slot_t *sl, int i)
{
    wl_run_t *r = cc->run;
    opdesc_t *od = &r->ops[i];
    sl->op = i;
    sl->kind = od->kind;
    sl->size = 0;
    memset(&sl->req, 0, sizeof(sl->req));
    switch (od->kind) {
    case WL_OP_GET:
    case WL_OP_STAT:
        if (od->src == SRC_PREPARED) {
            setdesc_t *sd = &r->sets[od->set];
            uint64_t idx;
            if (sd->has_delete) {
                uint64_t k = wl_rng_below(&cc->rng, cc->set_hi[od->set]);
                idx = k * cc->stride + cc->off;
            } else {
                idx = wl_rng_below(&cc->rng, sd->cfg->count);
            }
            prepared_key("", idx, sl->key, sizeof(sl->key));
        } else if (od->src == SRC_SINGLE) {
            snprintf(sl->key, sizeof(sl->key), "%s", od->prefix);
        } else {
            snprintf(sl->key, sizeof(sl->key), "%s", od->keys[wl_rng_below(&cc->rng, od->nkeys)]);
        }
        break;
    case WL_OP_DELETE:
        if (od->src == SRC_PREPARED) {
            uint64_t k = --cc->set_hi[od->set];
            prepared_key("", k * cc->stride + cc->off, sl->key, sizeof(sl->key));
        } else if (od->src == SRC_SINGLE) {
            cc->list_cursor[i]++;
            snprintf(sl->key, sizeof(sl->key), "%s", od->prefix);
        } else {
            uint64_t k = cc->list_cursor[i]++;
            snprintf(sl->key, sizeof(sl->key), "%s", od->keys[k * cc->stride + cc->off]);
        }
        break;
    case WL_OP_PUT: {
        uint64_t seq = cc->put_seq[i]++;
        put_key(r, od, cc->idx, seq, sl->key, sizeof(sl->key));
        sl->size = wl_size_sample(&od->cfg->size, &cc->rng);
        int niov = wl_datagen_fill(cc->dgs[od->dg], wl_rng_next(&cc->rng), sl->size, sl->iov,
                                   WL_DG_MAX_IOV);
        if (niov < 0) return niov;
        sl->req.iov = sl->iov;
        sl->req.iovcnt = niov;
        break;
    }
    case WL_OP_LIST:
        snprintf(sl->key, sizeof(sl->key), "%s", od->prefix);
        sl->req.recursive = 1;
        sl->req.on_page = list_count_page;
        break;
    case WL_OP_MKDIR: {
        /* room for this dir and every other one in flight, pushed when they complete */
        dirstack_t *ds = &cc->dirs[i];
        if (ds->n + cc->inflight[i] + 1 > ds->cap) {
            size_t nc = ds->cap ? ds->cap * 2 : 256;
            while (nc < ds->n + cc->inflight[i] + 1) nc *= 2;
            uint64_t *ns = realloc(ds->seq, nc * sizeof(uint64_t));
            if (!ns) return -ENOMEM;
            ds->seq = ns;
            ds->cap = nc;
        }
        sl->index = cc->put_seq[i]++;
        mkdir_key(r, od, cc->idx, sl->index, sl->key, sizeof(sl->key));
        break;
    }
    case WL_OP_RMDIR: {
        dirstack_t *ds = &cc->dirs[od->mkdir_op];
        sl->index = ds->seq[--ds->n];
        mkdir_key(r, &r->ops[od->mkdir_op], cc->idx, sl->index, sl->key, sizeof(sl->key));
        sl->req.recursive = od->cfg->recursive;
        break;
    }
    default: return -EINVAL;
    }
    sl->req.op = sto_of(od->kind);
    sl->req.key = sl->key;
    return 0;
}

static int can_batch(core_ctx_t *cc, int store)
{
    return (sto_store_backend(cc->stores[store])->caps & STO_CAP_BATCH_DELETE) != 0;
}

/* Starts a delete batch on the slot with its current key. Returns 0, or <0 when the memory for
 * a batch is missing (the slot then deletes one key at a time). */
static int batch_begin(slot_t *sl)
{
    if (!sl->bkeys) {
        sl->bkeys = malloc(BATCH_MAX * sizeof(char *));
        sl->barena = malloc(BATCH_ARENA);
        if (!sl->bkeys || !sl->barena) {
            free(sl->bkeys);
            free(sl->barena);
            sl->bkeys = NULL;
            sl->barena = NULL;
            return -ENOMEM;
        }
    }
    sl->nbatch = 0;
    sl->bused = 0;
    return 0;
}

static int batch_add(slot_t *sl, const char *key)
{
    size_t l = strlen(key) + 1;
    if (sl->nbatch == BATCH_MAX || sl->bused + l > BATCH_ARENA) return 0;
    memcpy(sl->barena + sl->bused, key, l);
    sl->bkeys[sl->nbatch++] = sl->barena + sl->bused;
    sl->bused += l;
    return 1;
}

static void batch_finish(slot_t *sl)
{
    sl->req.op = STO_OP_DEL_BATCH;
    sl->req.key = NULL;
    sl->req.keys = (const char *const *)sl->bkeys;
    sl->req.nkeys = sl->nbatch;
}

/* Prepare/cleanup: fills the slot with the next item. Returns 0, or 1 when no items are left. */
static int build_item(core_ctx_t *cc, slot_t *sl)
{
    wl_run_t *r = cc->run;
    memset(&sl->req, 0, sizeof(sl->req));
    sl->op = -1;
    sl->nbatch = 0;
    if (cc->phase == WL_PHASE_PREPARE) {
        while (cc->item_set < r->nsets) {
            setdesc_t *sd = &r->sets[cc->item_set];
            uint64_t idx = cc->item_k * cc->stride + cc->off;
            if (idx >= sd->cfg->count) {
                cc->item_set++;
                cc->item_k = 0;
                continue;
            }
            cc->item_k++;
            if (sd->exists && sd->exists[idx]) continue;
            sl->set = cc->item_set;
            sl->index = idx;
            sl->kind = WL_OP_PUT;
            sl->size = wl_size_for_index(&sd->cfg->size, sd->seed, idx);
            prepared_key("", idx, sl->key, sizeof(sl->key));
            int niov = wl_datagen_fill(cc->dgs[sd->dg], wl_mix64(idx ^ sd->seed), sl->size,
                                       sl->iov, WL_DG_MAX_IOV);
            if (niov < 0) return niov;
            sl->req.op = STO_OP_PUT;
            sl->req.iov = sl->iov;
            sl->req.iovcnt = niov;
            sl->req.key = sl->key;
            return 0;
        }
        return 1;
    }
    /* cleanup: stage 0 prepared sets (minus what DELETE already removed), 1 PUT objects,
     * 2 directories made by MKDIR */
    for (;;) {
        if (cc->item_stage == 0) {
            if (cc->item_set >= r->nsets) {
                cc->item_stage = 1;
                cc->item_op = 0;
                cc->item_seq = 0;
                continue;
            }
            if (cc->item_k >= cc->set_hi[cc->item_set]) {
                cc->item_set++;
                cc->item_k = 0;
                continue;
            }
            uint64_t idx = cc->item_k++ * cc->stride + cc->off;
            sl->set = cc->item_set;
            sl->kind = WL_OP_DELETE;
            prepared_key("", idx, sl->key, sizeof(sl->key));
            sl->req.op = STO_OP_DEL;
            sl->req.key = sl->key;
            int store = r->sets[cc->item_set].store;
            sl->op = -2 - store; /* store index encoded */
            if (can_batch(cc, store) && batch_begin(sl) == 0) {
                batch_add(sl, sl->key);
                while (cc->item_k < cc->set_hi[cc->item_set]) {
                    char k[KEY_MAX];
                    prepared_key("", cc->item_k * cc->stride + cc->off, k, sizeof(k));
                    if (!batch_add(sl, k)) break;
                    cc->item_k++;
                }
                batch_finish(sl);
            }
            return 0;
        }
        if (cc->item_stage == 1) {
            if (cc->item_op >= r->nops) {
                cc->item_stage = 2;
                cc->item_op = 0;
                continue;
            }
            opdesc_t *od = &r->ops[cc->item_op];
            if (od->kind != WL_OP_PUT || cc->item_seq >= cc->put_seq[cc->item_op]) {
                cc->item_op++;
                cc->item_seq = 0;
                continue;
            }
            put_key(r, od, cc->idx, cc->item_seq++, sl->key, sizeof(sl->key));
            sl->kind = WL_OP_DELETE;
            sl->req.op = STO_OP_DEL;
            sl->req.key = sl->key;
            sl->op = -2 - od->store;
            if (can_batch(cc, od->store) && batch_begin(sl) == 0) {
                batch_add(sl, sl->key);
                while (cc->item_seq < cc->put_seq[cc->item_op]) {
                    char k[KEY_MAX];
                    put_key(r, od, cc->idx, cc->item_seq, k, sizeof(k));
                    if (!batch_add(sl, k)) break;
                    cc->item_seq++;
                }
                batch_finish(sl);
            }
            return 0;
        }
        if (cc->item_stage == 2) {
            if (cc->item_op >= r->nops) return 1;
            opdesc_t *od = &r->ops[cc->item_op];
            dirstack_t *ds = &cc->dirs[cc->item_op];
            if (od->kind != WL_OP_MKDIR || ds->n == 0) {
                cc->item_op++;
                continue;
            }
            mkdir_key(r, od, cc->idx, ds->seq[--ds->n], sl->key, sizeof(sl->key));
            sl->kind = WL_OP_RMDIR;
            sl->req.op = STO_OP_RMDIR;
            sl->req.recursive = 1;
            sl->req.key = sl->key;
            sl->op = -2 - od->store;
            return 0;
        }
        return 1;
    }
}

static void req_done(sto_req_t *req);

static void slot_submit(slot_t *sl)
{
    core_ctx_t *cc = sl->cc;
    wl_run_t *r = cc->run;
    int store;
    if (sl->op >= 0)
        store = r->ops[sl->op].store;
    else if (sl->op == -1)
        store = r->sets[sl->set].store;
    else
        store = -2 - sl->op;
    sl->req.done = req_done;
    sl->req.ud = sl;
    int rc = sto_submit(cc->stores[store], &sl->req);
    if (rc) {
        /* synchronous refusal: count it as a failed attempt and move on */
        sl->req.res.status = rc;
        snprintf(sl->req.res.detail, sizeof(sl->req.res.detail), "submit: %s", rx_strerror(rc));
        sl->req.res.t_submit_ns = sl->req.res.t_end_ns = rx_now_ns();
        req_done(&sl->req);
    }
}

static void retry_fire(uv_timer_t *t)
{
    slot_t *sl = t->data;
    slot_submit(sl);
}

static void req_done(sto_req_t *req)
{
    slot_t *sl = req->ud;
    core_ctx_t *cc = sl->cc;
    wl_run_t *r = cc->run;
    const sto_result_t *res = &req->res;
    int st = res->status;
    wl_op_kind_t kind = sl->kind;
    /* a delete batch stands for nitems objects: each counts as one DELETE (batch latency) */
    uint64_t nitems = req->op == STO_OP_DEL_BATCH ? req->nkeys : 1;

    if (cc->phase == WL_PHASE_CLEANUP && st == STO_ENOTFOUND &&
        r->cfg->prepare.cleanup_mode != WL_CLEANUP_STRICT)
        st = 0; /* already gone: fine for tolerant and besteffort */

    if (st == 0) {
        uint64_t lat = res->t_end_ns - res->t_submit_ns;
        uint64_t sched = sl->t_intended ? res->t_end_ns - sl->t_intended : 0;
        uint64_t bytes = (kind == WL_OP_GET || kind == WL_OP_PUT) ? res->bytes : 0;
        for (uint64_t i = 0; i < nitems; i++) {
            wl_stats_record(&cc->total, kind, bytes, lat, sched);
            wl_stats_record(&cc->interval, kind, bytes, lat, sched);
        }
        if (kind == WL_OP_MKDIR && sl->op >= 0) {
            dirstack_t *ds = &cc->dirs[sl->op];
            if (ds->n < ds->cap) ds->seq[ds->n++] = sl->index;
        }
        if (cc->phase != WL_PHASE_EXECUTE) cc->done_items += nitems;
    } else {
        count_error(cc, kind, st, res->code);
        const wl_errh_cfg_t *eh = &r->cfg->errh;
        int may_retry = cc->phase == WL_PHASE_EXECUTE ? eh->retry_on_error : 1;
        /* A service's answer says whether trying again can help (503 yes, 403/404 no);
         * transport failures are marked retryable. Local backends leave it to the config. */
        if (res->http_status || res->retryable) may_retry = may_retry && res->retryable;
        uint32_t max_retries = cc->phase == WL_PHASE_EXECUTE ? eh->max_retries : 3;
        if (cc->phase == WL_PHASE_CLEANUP && r->cfg->prepare.cleanup_mode == WL_CLEANUP_STRICT &&
            st == STO_ENOTFOUND)
            may_retry = 0;
        if (may_retry && (uint32_t)sl->attempt < max_retries && !cc->stopping) {
            double d = (double)eh->initial_retry_delay_ms *
                       pow(eh->retry_backoff_multiplier, (double)sl->attempt);
            if (d > (double)eh->max_retry_delay_ms) d = (double)eh->max_retry_delay_ms;
            double j = eh->retry_jitter_factor;
            d *= 1.0 - j + 2.0 * j * wl_rng_double(&cc->rng);
            sl->attempt++;
            cc->total.op[kind].retries++;
            cc->interval.op[kind].retries++;
            uv_timer_start(&sl->retry_timer, retry_fire, (uint64_t)d, 0);
            return;
        }
        if (cc->phase != WL_PHASE_EXECUTE) {
            cc->done_items += nitems;
            int hard = cc->phase == WL_PHASE_PREPARE ||
                       r->cfg->prepare.cleanup_mode != WL_CLEANUP_BESTEFFORT;
            if (hard && !cc->failed_hard) {
                cc->failed_hard = 1;
                snprintf(cc->fail_text, sizeof(cc->fail_text), "%s %s%s: %s", sto_op_name(req->op),
                         sl->key, nitems > 1 ? " (and the rest of its batch)" : "",
                         res->detail[0] ? res->detail : rx_strerror(st));
            }
        } else if (res->detail[0] && r->o.cb.on_message && cc->total.op[kind].errors == 1) {
            /* the first failure of each op kind per core is worth a line */
        }
    }
    if (sl->op >= 0) cc->inflight[sl->op]--;
    sl->busy = 0;
    cc->active--;
    slot_next(sl);
    core_kick(cc);
}

static void slot_park(slot_t *sl)
{
    core_ctx_t *cc = sl->cc;
    sl->next_idle = cc->idle;
    cc->idle = sl;
}

static void maybe_finish(core_ctx_t *cc)
{
    if (cc->active != 0 || cc->finished) return;
    if (cc->stopping) {
        core_finish(cc);
        return;
    }
    /* Nothing in flight: if every slot is parked and no work can start, the phase is over for
     * this core (all objects consumed, or prepare/cleanup items exhausted). */
    if (cc->phase != WL_PHASE_EXECUTE) {
        core_finish(cc);
        return;
    }
    if (pick_op(cc) < 0) {
        cc->stopping = 1;
        core_finish(cc);
    }
}

/* Starts a request on the slot with intended start t (0 = closed loop). */
static void slot_start(slot_t *sl, uint64_t t_intended)
{
    core_ctx_t *cc = sl->cc;
    sl->t_intended = t_intended;
    sl->attempt = 0;
    if (cc->phase == WL_PHASE_EXECUTE) {
        int i = pick_op(cc);
        if (i < 0 || build_exec(cc, sl, i) != 0) {
            slot_park(sl);
            maybe_finish(cc);
            return;
        }
        cc->inflight[i]++;
    } else {
        int rc = build_item(cc, sl);
        if (rc != 0) {
            slot_park(sl);
            if (rc < 0 && !cc->failed_hard) {
                cc->failed_hard = 1;
                snprintf(cc->fail_text, sizeof(cc->fail_text), "data generator: %s",
                         rx_strerror(rc));
            }
            maybe_finish(cc);
            return;
        }
    }
    sl->busy = 1;
    cc->active++;
    slot_submit(sl);
}

static void pace_schedule(core_ctx_t *cc);

static void backoff_fire(uv_timer_t *t)
{
    core_kick(t->data);
}

/* A slot became free: start the next op, or park it. */
static void slot_next(slot_t *sl)
{
    core_ctx_t *cc = sl->cc;
    if (cc->stopping || atomic_load(&cc->run->abort_flag) ||
        (cc->phase == WL_PHASE_PREPARE && cc->failed_hard)) {
        cc->stopping = 1;
        slot_park(sl);
        maybe_finish(cc);
        return;
    }
    uint64_t now = rx_now_ns();
    if (cc->paused_until > now) {
        slot_park(sl);
        if (!uv_is_active((uv_handle_t *)&cc->backoff))
            uv_timer_start(&cc->backoff, backoff_fire,
                           (cc->paused_until - now) / 1000000 + 1, 0);
        return;
    }
    if (cc->rate > 0 && cc->phase == WL_PHASE_EXECUTE) {
        if (cc->pq_len == 0) {
            slot_park(sl);
            pace_schedule(cc);
            return;
        }
        uint64_t t = cc->paceq[cc->pq_head];
        cc->pq_head = (cc->pq_head + 1) % PACE_QUEUE;
        cc->pq_len--;
        slot_start(sl, t);
        return;
    }
    slot_start(sl, 0);
}

/* Restarts parked slots (after a completion frees work, a backoff ends, or pacing ticks). */
static void core_kick(core_ctx_t *cc)
{
    if (cc->finished) return;
    if (cc->paused_until > rx_now_ns()) return;
    int budget = cc->nslots;
    while (cc->idle && budget-- > 0) {
        if (cc->rate > 0 && cc->phase == WL_PHASE_EXECUTE && cc->pq_len == 0 && !cc->stopping)
            break;
        slot_t *sl = cc->idle;
        cc->idle = sl->next_idle;
        int was_active = cc->active;
        slot_next(sl);
        if (cc->finished) return;
        /* the slot parked again without starting anything: stop trying for now */
        if (cc->active == was_active && cc->idle == sl) break;
    }
    maybe_finish(cc);
}

static uint64_t interarrival_ns(core_ctx_t *cc)
{
    double mean = 1e9 / cc->rate;
    switch (cc->run->cfg->io_rate.distribution) {
    case WL_RATE_DETERMINISTIC: return (uint64_t)mean;
    case WL_RATE_UNIFORM: return (uint64_t)(2.0 * mean * wl_rng_double(&cc->rng));
    case WL_RATE_EXPONENTIAL:
    default: return (uint64_t)(-log(1.0 - wl_rng_double(&cc->rng)) * mean);
    }
}

static void pace_fire(uv_timer_t *t)
{
    core_ctx_t *cc = t->data;
    uint64_t now = rx_now_ns();
    /* queue every intended start that is due */
    while (cc->next_intended <= now && !cc->stopping) {
        if (cc->pq_len == PACE_QUEUE) {
            cc->pace_dropped++;
        } else {
            cc->paceq[(cc->pq_head + cc->pq_len) % PACE_QUEUE] = cc->next_intended;
            cc->pq_len++;
        }
        cc->next_intended += interarrival_ns(cc);
    }
    while (cc->idle && cc->pq_len && !cc->stopping) {
        slot_t *sl = cc->idle;
        cc->idle = sl->next_idle;
        slot_next(sl);
        if (cc->finished) return;
    }
    pace_schedule(cc);
}

static void pace_schedule(core_ctx_t *cc)
{
    if (cc->stopping || cc->finished) return;
    uint64_t now = rx_now_ns();
    uint64_t wait_ms = cc->next_intended > now ? (cc->next_intended - now) / 1000000 : 0;
    /* libuv timers have 1 ms resolution: fire at the ms boundary and queue all due starts */
    uv_timer_start(&cc->pacer, pace_fire, wait_ms, 0);
}

static void deadline_fire(uv_timer_t *t)
{
    core_ctx_t *cc = t->data;
    cc->stopping = 1;
    uv_timer_stop(&cc->pacer);
    maybe_finish(cc);
}

/* ---------------------------------------------------------------- core: phase start ------ */

typedef struct phase_msg {
    core_ctx_t *cc;
    wl_phase_t phase;
} phase_msg_t;

static void core_phase_start(void *arg, int closing)
{
    phase_msg_t *m = arg;
    core_ctx_t *cc = m->cc;
    wl_run_t *r = cc->run;
    wl_phase_t ph = m->phase;
    free(m);
    if (closing) return;
    cc->finished = 0;
    cc->stopping = 0;
    cc->phase = ph;
    cc->failed_hard = 0;
    cc->fail_text[0] = 0;
    cc->done_items = cc->total_items = 0;
    cc->item_set = 0;
    cc->item_k = 0;
    cc->item_stage = 0;
    cc->item_op = 0;
    cc->item_seq = 0;
    cc->idle = NULL;
    cc->paused_until = 0;
    if (!cc->inited) {
        int rc = core_init(cc);
        if (rc) {
            cc->failed_hard = 1;
            if (!cc->fail_text[0])
                snprintf(cc->fail_text, sizeof(cc->fail_text), "core %d setup: %s", cc->idx,
                         rx_strerror(rc));
            core_finish(cc);
            return;
        }
    }
    wl_stats_reset(&cc->total);
    wl_stats_reset(&cc->interval);

    /* slots: the concurrency split across cores, base + remainder */
    uint32_t conc = r->cfg->concurrency;
    int ns = (int)(conc / (uint32_t)r->ncores) + ((uint32_t)cc->idx < conc % (uint32_t)r->ncores);
    if (!cc->slots) {
        cc->slots = calloc((size_t)(ns ? ns : 1), sizeof(slot_t));
        if (!cc->slots) abort();
        cc->nslots = ns;
        for (int i = 0; i < ns; i++) {
            cc->slots[i].cc = cc;
            uv_timer_init(cc->loop, &cc->slots[i].retry_timer);
            cc->slots[i].retry_timer.data = &cc->slots[i];
            cc->slots[i].retry_timer_init = 1;
        }
    }
    if (ph == WL_PHASE_PREPARE) {
        for (int s = 0; s < r->nsets; s++) {
            const setdesc_t *sd = &r->sets[s];
            for (uint64_t idx = cc->off; idx < sd->cfg->count; idx += cc->stride)
                if (!sd->exists || !sd->exists[idx]) cc->total_items++;
        }
    } else if (ph == WL_PHASE_CLEANUP) {
        for (int s = 0; s < r->nsets; s++) cc->total_items += cc->set_hi[s];
        for (int o = 0; o < r->nops; o++) {
            if (r->ops[o].kind == WL_OP_PUT) cc->total_items += cc->put_seq[o];
            if (r->ops[o].kind == WL_OP_MKDIR) cc->total_items += cc->dirs[o].n;
        }
    }
    cc->t_phase_start = rx_now_ns();
    cc->rate = 0;
    if (ph == WL_PHASE_EXECUTE) {
        if (r->cfg->io_rate.present && r->cfg->io_rate.iops > 0 && conc > 0) {
            cc->rate = r->cfg->io_rate.iops * (double)ns / (double)conc;
            if (!cc->paceq) cc->paceq = malloc(PACE_QUEUE * sizeof(uint64_t));
            if (!cc->paceq) abort();
            cc->pq_head = cc->pq_len = 0;
            cc->next_intended = cc->t_phase_start;
        }
        uv_timer_start(&cc->deadline, deadline_fire, r->duration_ns / 1000000, 0);
    }
    if (ns == 0) {
        core_finish(cc);
        return;
    }
    for (int i = 0; i < ns; i++) slot_park(&cc->slots[i]);
    if (cc->rate > 0)
        pace_fire(&cc->pacer);
    else
        core_kick(cc);
}

/* Stop request from the control side (abort). */
static void core_stop(void *arg, int closing)
{
    core_ctx_t *cc = arg;
    if (closing || cc->finished) return;
    cc->stopping = 1;
    uv_timer_stop(&cc->pacer);
    for (int i = 0; i < cc->nslots; i++) {
        slot_t *sl = &cc->slots[i];
        if (sl->busy && uv_is_active((uv_handle_t *)&sl->retry_timer)) {
            /* a retry waiting on its timer: give it up */
            uv_timer_stop(&sl->retry_timer);
            sl->busy = 0;
            cc->active--;
            if (sl->op >= 0) cc->inflight[sl->op]--;
            slot_park(sl);
        }
    }
    maybe_finish(cc);
}

static void core_snapshot(void *arg, int closing)
{
    report_msg_t *m = arg;
    core_ctx_t *cc = m->cc;
    if (closing) return; /* the control side is gone too */
    if (!cc->finished) report_fill(cc, m);
    else m->inflight = (uint64_t)-1; /* already reported final */
    if (rx_mailbox_post(&cc->run->mb, ctl_report, m) != 0) report_free(m);
}

/* ---------------------------------------------------------------- control: phases -------- */

static void emit_tick(wl_run_t *r, uint64_t now, int final)
{
    wl_tick_t t = {0};
    for (int i = 0; i < r->ncores; i++) {
        t.done += r->prog_done[i];
        t.total += r->prog_total[i];
        t.in_flight += r->prog_inflight[i];
    }
    t.phase = r->cur;
    t.final = final;
    t.wall_ns = rx_wall_ns();
    t.elapsed_ns = now - r->t_phase_start;
    t.interval_ns = now - r->t_last_tick;
    t.delta = &r->delta;
    r->t_last_tick = now;
    if (r->o.cb.on_tick) r->o.cb.on_tick(r->o.cb.ud, &t);
    wl_stats_reset(&r->delta);
}

static void ctl_maybe_end(wl_run_t *r)
{
    if (r->cores_done == r->ncores && r->snaps_pending == 0) {
        emit_tick(r, rx_now_ns(), 1);
        uv_timer_stop(&r->tick);
        uv_stop(&r->loop);
    }
}

static void ctl_report(void *arg, int closing)
{
    report_msg_t *m = arg;
    wl_run_t *r = m->cc->run;
    int i = m->cc->idx;
    if (!closing) {
        wl_stats_merge(&r->delta, &m->interval);
        if (m->inflight != (uint64_t)-1) {
            r->prog_done[i] = m->done;
            r->prog_total[i] = m->total;
            r->prog_inflight[i] = m->inflight;
        }
        if (m->final) {
            wl_stats_merge(&r->totals[r->cur], &m->totals);
            r->cores_done++;
            ctl_maybe_end(r);
        } else if (--r->snaps_pending == 0) {
            if (r->cores_done < r->ncores) emit_tick(r, rx_now_ns(), 0);
            ctl_maybe_end(r);
        }
    }
    report_free(m);
}

static void tick_fire(uv_timer_t *t)
{
    wl_run_t *r = t->data;
    if (r->snaps_pending || r->cores_done == r->ncores) return;
    for (int i = 0; i < r->ncores; i++) {
        report_msg_t *m = calloc(1, sizeof(*m));
        if (!m) return;
        wl_stats_init(&m->interval);
        wl_stats_init(&m->totals);
        m->cc = &r->cores[i];
        if (rx_core_post(r->cores[i].core, core_snapshot, m) == 0)
            r->snaps_pending++;
        else
            report_free(m);
    }
}

static void on_abort_async(uv_async_t *a)
{
    wl_run_t *r = a->data;
    /* Only a running phase has cores to stop. Outside phases (an abort between phases, or one
     * that is still pending when wl_run_destroy runs this loop to free the cores) a core_stop
     * would reach a core after its state was freed. */
    if (!r->phase_running || r->cores_done == r->ncores) return;
    for (int i = 0; i < r->ncores; i++) rx_core_post(r->cores[i].core, core_stop, &r->cores[i]);
}

static int run_phase(wl_run_t *r, wl_phase_t ph)
{
    if (atomic_load(&r->abort_flag)) return WL_EABORTED;
    r->cur = ph;
    r->cores_done = 0;
    r->snaps_pending = 0;
    wl_stats_reset(&r->totals[ph]);
    wl_stats_reset(&r->delta);
    for (int i = 0; i < r->ncores; i++) r->prog_done[i] = r->prog_total[i] = r->prog_inflight[i] = 0;
    r->t_phase_start = r->t_last_tick = rx_now_ns();
    for (int i = 0; i < r->ncores; i++) {
        phase_msg_t *m = malloc(sizeof(*m));
        if (!m) return -ENOMEM;
        m->cc = &r->cores[i];
        m->phase = ph;
        int rc = rx_core_post(r->cores[i].core, core_phase_start, m);
        if (rc) {
            free(m);
            set_err(r, "cannot start %s on core %d: %s", wl_phase_name(ph), i, rx_strerror(rc));
            return rc;
        }
    }
    uv_timer_start(&r->tick, tick_fire, r->o.tick_ns / 1000000, r->o.tick_ns / 1000000);
    r->phase_running = 1;
    /* an abort that arrived before the cores got the start message */
    if (atomic_load(&r->abort_flag)) uv_async_send(&r->abort_async);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    r->phase_running = 0;
    r->wall[ph] = rx_now_ns() - r->t_phase_start;
    r->phase_ran[ph] = 1;
    for (int i = 0; i < r->ncores; i++) {
        if (r->cores[i].failed_hard) {
            set_err(r, "%s", r->cores[i].fail_text);
            return ph == WL_PHASE_PREPARE ? WL_EPREPARE
                                          : ph == WL_PHASE_CLEANUP ? WL_ECLEANUP : WL_ENOOBJECTS;
        }
    }
    if (atomic_load(&r->abort_flag)) {
        if (atomic_load(&r->abort_kind) == 1) {
            set_err(r, "stopped: %" PRIu64 " errors reached error_handling.max_total_errors (%" PRIu64
                       ")",
                    (uint64_t)atomic_load(&r->errors), r->cfg->errh.max_total_errors);
            return WL_ETOOMANYERRORS;
        }
        set_err(r, "interrupted during %s", wl_phase_name(ph));
        return WL_EABORTED;
    }
    return 0;
}

int wl_run_prepare(wl_run_t *r)
{
    const wl_prepare_cfg_t *p = &r->cfg->prepare;
    memset(&r->psum, 0, sizeof(r->psum));
    uint64_t t0 = rx_now_ns();
    for (int s = 0; s < r->nsets; s++) {
        setdesc_t *sd = &r->sets[s];
        free(sd->exists);
        sd->exists = NULL;
        if (p->force_overwrite) continue;
        sd->exists = calloc(sd->cfg->count ? sd->cfg->count : 1, 1);
        if (!sd->exists) return -ENOMEM;
        if (p->skip_verification) {
            /* trust that the set exists, as the original does */
            memset(sd->exists, 1, sd->cfg->count);
            r->psum.existed += sd->cfg->count;
            continue;
        }
        listctx_t lc = {0};
        lc.entry = exists_entry;
        lc.set = sd;
        int rc = ctl_list(r, sd->store, "prepared-", 0, &lc);
        if (rc) return rc;
        r->psum.existed += lc.found;
        if (lc.found)
            msg(r, RX_LOG_INFO, "%s: %" PRIu64 " of %" PRIu64 " objects already exist",
                r->stores[sd->store], lc.found, sd->cfg->count);
    }
    int rc = run_phase(r, WL_PHASE_PREPARE);
    const wl_stats_t *st = &r->totals[WL_PHASE_PREPARE];
    r->psum.created = wl_stats_ops(st, WL_OP_PUT);
    r->psum.bytes_created = wl_stats_bytes(st, WL_OP_PUT);
    r->psum.failed = wl_stats_errors(st, WL_OP_PUT);
    r->psum.wall_ns = rx_now_ns() - t0;
    if (rc == 0 && r->psum.created && p->post_prepare_delay_ns) {
        msg(r, RX_LOG_INFO, "post_prepare_delay: waiting %.1f s",
            (double)p->post_prepare_delay_ns / 1e9);
        uint64_t end = rx_now_ns() + p->post_prepare_delay_ns;
        while (rx_now_ns() < end && !atomic_load(&r->abort_flag)) {
            uint64_t left = end - rx_now_ns();
            struct timespec ts = {0, (long)(left > 50000000 ? 50000000 : left)};
            nanosleep(&ts, NULL);
        }
        if (atomic_load(&r->abort_flag)) return WL_EABORTED;
    }
    return rc;
}

int wl_run_execute(wl_run_t *r)
{
    if (atomic_load(&r->abort_flag)) return WL_EABORTED;
    if (r->nops == 0) return 0;
    /* resolve glob paths by listing, once */
    for (int i = 0; i < r->nops; i++) {
        opdesc_t *od = &r->ops[i];
        if (od->src != SRC_LISTED || od->keys) continue;
        listctx_t lc = {0};
        lc.entry = resolve_entry;
        lc.pattern = od->prefix;
        /* list from the store root; recursive when the pattern spans directories or is empty */
        int recursive = od->prefix[0] == 0 || strstr(od->prefix, "**") != NULL ||
                        strchr(od->prefix, '/') != NULL;
        int rc = ctl_list(r, od->store, "", recursive, &lc);
        od->keys = lc.keys;
        od->nkeys = lc.nkeys;
        if (lc.oom) return -ENOMEM;
        if (rc) return rc;
        if (od->nkeys == 0) {
            set_err(r, "op %d (%s): path '%s' matches no objects", i + 1, wl_op_name(od->kind),
                    od->uri);
            return WL_ENOOBJECTS;
        }
        msg(r, RX_LOG_INFO, "%s %s: %zu objects", wl_op_name(od->kind), od->uri, od->nkeys);
    }
    for (int i = 0; i < r->nops; i++) {
        opdesc_t *od = &r->ops[i];
        if (od->src == SRC_PREPARED && r->sets[od->set].cfg->count == 0) {
            set_err(r, "op %d (%s): the prepared set at %s is empty", i + 1,
                    wl_op_name(od->kind), r->stores[r->sets[od->set].store]);
            return WL_ENOOBJECTS;
        }
    }
    atomic_store(&r->errors, 0);
    return run_phase(r, WL_PHASE_EXECUTE);
}

void wl_run_set_duration(wl_run_t *r, uint64_t ns)
{
    r->duration_ns = ns ? ns : r->cfg->duration_ns;
}

int wl_run_cleanup(wl_run_t *r)
{
    return run_phase(r, WL_PHASE_CLEANUP);
}

void wl_run_abort(wl_run_t *r)
{
    atomic_store(&r->abort_flag, 1);
    if (r->loop_ok) uv_async_send(&r->abort_async);
}

int wl_run_aborted(const wl_run_t *r)
{
    return atomic_load(&((wl_run_t *)r)->abort_flag);
}

const wl_stats_t *wl_run_stats(const wl_run_t *r, wl_phase_t p)
{
    return r->phase_ran[p] ? &r->totals[p] : NULL;
}

uint64_t wl_run_wall_ns(const wl_run_t *r, wl_phase_t p)
{
    return r->wall[p];
}

const wl_prepare_summary_t *wl_run_prepare_summary(const wl_run_t *r)
{
    return &r->psum;
}

const char *wl_run_error_text(const wl_run_t *r)
{
    return r->err;
}

/* ---------------------------------------------------------------- teardown --------------- */

static void ctl_fini_done(void *arg, int closing)
{
    wl_run_t *r = arg;
    (void)closing;
    if (++r->cores_done == r->ncores) uv_stop(&r->loop);
}

static void core_free_mem(core_ctx_t *cc)
{
    wl_run_t *r = cc->run;
    free(cc->stores);
    free(cc->dgs);
    for (int i = 0; cc->slots && i < cc->nslots; i++) {
        free(cc->slots[i].bkeys);
        free(cc->slots[i].barena);
    }
    free(cc->slots);
    free(cc->put_seq);
    free(cc->list_cursor);
    free(cc->inflight);
    if (cc->dirs)
        for (int o = 0; o < r->nops; o++) free(cc->dirs[o].seq);
    free(cc->dirs);
    free(cc->set_hi);
    free(cc->paceq);
    wl_stats_free(&cc->total);
    wl_stats_free(&cc->interval);
    cc->slots = NULL;
    if (rx_mailbox_post(&r->mb, ctl_fini_done, r) != 0) {
        /* control side gone: nothing waits for us */
    }
}

static void fini_close_cb(uv_handle_t *h)
{
    core_ctx_t *cc = h->data;
    if (--cc->closing_left == 0) core_free_mem(cc);
}

/* Runs on the core: closes stores and timers; memory goes once every close callback ran. */
static void core_fini(void *arg, int closing)
{
    core_ctx_t *cc = arg;
    wl_run_t *r = cc->run;
    if (closing) return;
    if (!cc->inited) {
        core_free_mem(cc);
        return;
    }
    for (int i = 0; i < r->nstores; i++)
        if (cc->stores[i]) sto_store_close(cc->stores[i]);
    for (int i = 0; i < r->ndgs; i++)
        if (cc->dgs[i]) wl_datagen_destroy(cc->dgs[i]);
    cc->closing_left = 1; /* guard until every close is queued */
    uv_handle_t *hs[3] = {(uv_handle_t *)&cc->deadline, (uv_handle_t *)&cc->pacer,
                          (uv_handle_t *)&cc->backoff};
    for (int i = 0; i < 3; i++) {
        hs[i]->data = cc;
        cc->closing_left++;
        uv_close(hs[i], fini_close_cb);
    }
    for (int i = 0; i < cc->nslots; i++) {
        cc->slots[i].retry_timer.data = cc;
        cc->closing_left++;
        uv_close((uv_handle_t *)&cc->slots[i].retry_timer, fini_close_cb);
    }
    if (--cc->closing_left == 0) core_free_mem(cc);
}

void wl_run_destroy(wl_run_t *r)
{
    if (!r) return;
    if (r->cores && r->loop_ok) {
        r->cores_done = 0;
        int posted = 0;
        for (int i = 0; i < r->ncores; i++)
            if (rx_core_post(r->cores[i].core, core_fini, &r->cores[i]) == 0) posted++;
        if (posted) {
            r->cores_done = r->ncores - posted;
            uv_run(&r->loop, UV_RUN_DEFAULT);
        }
    }
    if (r->loop_ok) {
        uv_close((uv_handle_t *)&r->tick, NULL);
        uv_close((uv_handle_t *)&r->abort_async, NULL);
        rx_mailbox_close(&r->mb, NULL);
        uv_run(&r->loop, UV_RUN_DEFAULT);
        rx_mailbox_destroy(&r->mb);
        uv_loop_close(&r->loop);
    }
    for (int i = 0; i < r->nops; i++) {
        for (size_t k = 0; k < r->ops[i].nkeys; k++) free(r->ops[i].keys[k]);
        free(r->ops[i].keys);
    }
    for (int s = 0; s < r->nsets; s++) free(r->sets[s].exists);
    for (int i = 0; i < r->nstores; i++) {
        free(r->stores[i]);
        free(r->store_ep[i]);
    }
    free(r->store_ep);
    for (int p = 0; p < WL_PHASE__COUNT; p++) wl_stats_free(&r->totals[p]);
    wl_stats_free(&r->delta);
    free(r->prog_done);
    free(r->prog_total);
    free(r->prog_inflight);
    free(r->stores);
    free(r->ops);
    free(r->sets);
    free(r->dgs);
    free(r->cores);
    free(r);
}
