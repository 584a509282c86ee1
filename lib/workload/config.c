/* The strict YAML config loader.
 *
 * Two steps: libyaml events build a small node tree (with 1-based marks), then a typed walk turns
 * it into wl_config_t. The walk never stops at the first problem: every diagnostic is collected,
 * then sorted by position. The tree is freed as one list of allocations, so aliases may share
 * nodes without reference counts; an anchor is registered only when its node is complete, which
 * rules out cycles. The walk follows the schema, whose depth is bounded, so alias fan-out cannot
 * make it explode.
 */
#include "wl/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "sto/s3conf.h"
#include "sto/uri.h"
#include "wl/err.h"
#include "wl/units.h"

#define MAX_DIAGS 1000
#define MAX_CONCURRENCY 1000000ULL
#define MiB (1024ULL * 1024ULL)

/* ---------------------------------------------------------------- diagnostics --------------- */

void wl_diags_init(wl_diags_t *d)
{
    memset(d, 0, sizeof(*d));
}

void wl_diags_free(wl_diags_t *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++)
        free(d->v[i].msg);
    free(d->v);
    free(d->source);
    memset(d, 0, sizeof(*d));
}

void wl_diag_format(const wl_diags_t *d, size_t i, char *buf, size_t len)
{
    if (!buf || !len)
        return;
    if (!d || i >= d->n) {
        buf[0] = 0;
        return;
    }
    const wl_diag_t *g = &d->v[i];
    const char *src = d->source ? d->source : "<config>";
    if (g->line > 0)
        snprintf(buf, len, "%s:%d:%d: %s", src, g->line, g->col, g->msg);
    else
        snprintf(buf, len, "%s: %s", src, g->msg);
}

static int diag_push(wl_diags_t *d, int line, int col, char *msg)
{
    if (d->n == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 16;
        wl_diag_t *nv = realloc(d->v, ncap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        d->v = nv;
        d->cap = ncap;
    }
    d->v[d->n].line = line;
    d->v[d->n].col = col;
    d->v[d->n].msg = msg;
    d->n++;
    return 0;
}

/* ---------------------------------------------------------------- node tree ----------------- */

enum { N_SCALAR, N_SEQ, N_MAP };

typedef struct node node_t;
struct node {
    int kind;
    int line, col;
    int plain;     /* scalar written without quotes */
    char *str;     /* scalar text (NUL-terminated) */
    char *anchor;  /* registered when the node is complete */
    node_t **kids; /* seq: items; map: key, value, key, value, ... */
    size_t n, cap;
    node_t *next_alloc;
};

typedef struct anchor {
    char *name;
    node_t *node;
} anchor_t;

typedef struct ctx {
    wl_diags_t *d;
    size_t first;   /* index of the first diagnostic of this load */
    size_t dropped; /* diagnostics beyond MAX_DIAGS */
    int nomem;
    node_t *all; /* every node, for freeing */
    anchor_t *anchors;
    size_t nanch, capanch;
    node_t null_node;     /* stands in for missing values */
    const node_t *ep_top; /* key of the top-level `endpoint:` when it is a string, else NULL */
    int saw_net;          /* the target, an op path or a base_uri is an s3/az/gs URI */
} ctx_t;

static void err_at_lc(ctx_t *x, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void err_at_lc(ctx_t *x, int line, int col, const char *fmt, ...)
{
    if (x->d->n - x->first >= MAX_DIAGS) {
        x->dropped++;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    int r = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (r < 0) {
        x->nomem = 1;
        return;
    }
    if (diag_push(x->d, line, col, msg) < 0) {
        free(msg);
        x->nomem = 1;
    }
}

#define err_at(x, nd, ...) err_at_lc((x), (nd)->line, (nd)->col, __VA_ARGS__)

static node_t *node_new(ctx_t *x, int kind, const yaml_mark_t *m)
{
    node_t *n = calloc(1, sizeof(*n));
    if (!n) {
        x->nomem = 1;
        return NULL;
    }
    n->kind = kind;
    n->line = (int)m->line + 1;
    n->col = (int)m->column + 1;
    n->next_alloc = x->all;
    x->all = n;
    return n;
}

static int node_add(ctx_t *x, node_t *parent, node_t *child)
{
    if (parent->n == parent->cap) {
        size_t ncap = parent->cap ? parent->cap * 2 : 8;
        node_t **nk = realloc(parent->kids, ncap * sizeof(*nk));
        if (!nk) {
            x->nomem = 1;
            return -1;
        }
        parent->kids = nk;
        parent->cap = ncap;
    }
    parent->kids[parent->n++] = child;
    return 0;
}

static void tree_free(ctx_t *x)
{
    node_t *n = x->all;
    while (n) {
        node_t *next = n->next_alloc;
        free(n->str);
        free(n->anchor);
        free(n->kids);
        free(n);
        n = next;
    }
    x->all = NULL;
    for (size_t i = 0; i < x->nanch; i++)
        free(x->anchors[i].name);
    free(x->anchors);
    x->anchors = NULL;
    x->nanch = x->capanch = 0;
}

static void anchor_add(ctx_t *x, node_t *n)
{
    if (!n->anchor)
        return;
    if (x->nanch == x->capanch) {
        size_t ncap = x->capanch ? x->capanch * 2 : 8;
        anchor_t *na = realloc(x->anchors, ncap * sizeof(*na));
        if (!na) {
            x->nomem = 1;
            return;
        }
        x->anchors = na;
        x->capanch = ncap;
    }
    x->anchors[x->nanch].name = n->anchor;
    x->anchors[x->nanch].node = n;
    n->anchor = NULL; /* now owned by the table */
    x->nanch++;
}

static node_t *anchor_find(ctx_t *x, const char *name)
{
    for (size_t i = x->nanch; i-- > 0;)
        if (!strcmp(x->anchors[i].name, name))
            return x->anchors[i].node;
    return NULL;
}

/* Line and column (1-based) of a byte offset, for reader errors that carry no mark. */
static void offset_to_lc(const char *text, size_t len, size_t off, int *line, int *col)
{
    int l = 1, c = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (text[i] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

static void syntax_error(ctx_t *x, const yaml_parser_t *p, const char *text, size_t len)
{
    const char *problem = p->problem ? p->problem : "malformed YAML";
    if (p->error == YAML_MEMORY_ERROR) {
        x->nomem = 1;
        return;
    }
    if (p->error == YAML_READER_ERROR) {
        int line, col;
        offset_to_lc(text, len, p->problem_offset, &line, &col);
        if (p->problem_value != -1)
            err_at_lc(x, line, col, "syntax error: %s (byte 0x%02X)", problem,
                      (unsigned)p->problem_value & 0xFFu);
        else
            err_at_lc(x, line, col, "syntax error: %s", problem);
        return;
    }
    int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
    size_t off = p->problem_mark.index;
    if (off < len && text[off] == '\t') {
        err_at_lc(x, line, col,
                  "syntax error: found a tab character; YAML indentation must use "
                  "spaces");
        return;
    }
    int cl = (int)p->context_mark.line + 1, cc = (int)p->context_mark.column + 1;
    if (p->context && cl == line && cc == col)
        err_at_lc(x, line, col, "syntax error: %s (%s)", problem, p->context);
    else if (p->context)
        err_at_lc(x, line, col, "syntax error: %s (%s at line %d, column %d)", problem, p->context,
                  cl, cc);
    else
        err_at_lc(x, line, col, "syntax error: %s", problem);
}

/* Builds the tree. Returns the root (NULL for an empty stream), *bad = 1 after a syntax error. */
static node_t *parse_tree(ctx_t *x, const char *text, size_t len, int *bad)
{
    yaml_parser_t p;
    node_t *root = NULL;
    node_t **stack = NULL;
    size_t depth = 0, cap = 0;
    int ndocs = 0, done = 0;
    *bad = 0;
    if (!yaml_parser_initialize(&p)) {
        x->nomem = 1;
        *bad = 1;
        return NULL;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    while (!done && !x->nomem) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            syntax_error(x, &p, text, len);
            *bad = 1;
            break;
        }
        node_t *n = NULL;
        switch (ev.type) {
        case YAML_DOCUMENT_START_EVENT:
            if (++ndocs > 1) {
                err_at_lc(x, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
                          "only one YAML document is allowed in a config (found a second '---')");
                *bad = 1;
                done = 1;
            }
            break;
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_SCALAR_EVENT:
            n = node_new(x, N_SCALAR, &ev.start_mark);
            if (!n)
                break;
            n->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
            n->str = malloc(ev.data.scalar.length + 1);
            if (!n->str) {
                x->nomem = 1;
                break;
            }
            memcpy(n->str, ev.data.scalar.value, ev.data.scalar.length);
            n->str[ev.data.scalar.length] = 0;
            if (ev.data.scalar.anchor) {
                n->anchor = strdup((const char *)ev.data.scalar.anchor);
                if (!n->anchor)
                    x->nomem = 1;
                anchor_add(x, n);
            }
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT: {
            int seq = ev.type == YAML_SEQUENCE_START_EVENT;
            n = node_new(x, seq ? N_SEQ : N_MAP, &ev.start_mark);
            if (!n)
                break;
            const yaml_char_t *a =
                seq ? ev.data.sequence_start.anchor : ev.data.mapping_start.anchor;
            if (a) {
                n->anchor = strdup((const char *)a);
                if (!n->anchor)
                    x->nomem = 1;
            }
            break;
        }
        case YAML_ALIAS_EVENT: {
            const char *name = (const char *)ev.data.alias.anchor;
            n = anchor_find(x, name);
            if (!n) {
                /* Fatal like a syntax error: the walk would only report follow-ups. */
                err_at_lc(x, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
                          "alias '*%.60s' refers to no earlier anchor '&%.60s'", name, name);
                *bad = 1;
                done = 1;
            }
            break;
        }
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (depth > 0)
                anchor_add(x, stack[--depth]);
            break;
        default:
            break;
        }
        int opens = ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT;
        yaml_event_delete(&ev);
        if (!n || x->nomem)
            continue;
        if (depth == 0) {
            if (!root)
                root = n;
        } else if (node_add(x, stack[depth - 1], n) < 0) {
            break;
        }
        if (opens) {
            if (depth == cap) {
                size_t ncap = cap ? cap * 2 : 16;
                node_t **ns = realloc(stack, ncap * sizeof(*ns));
                if (!ns) {
                    x->nomem = 1;
                    break;
                }
                stack = ns;
                cap = ncap;
            }
            stack[depth++] = n;
        }
    }
    free(stack);
    yaml_parser_delete(&p);
    return root;
}

/* ---------------------------------------------------------------- value helpers ------------- */

static int is_null(const node_t *v)
{
    if (!v)
        return 1;
    if (v->kind != N_SCALAR || !v->plain)
        return 0;
    return !v->str[0] || !strcmp(v->str, "~") || !strcmp(v->str, "null") ||
           !strcmp(v->str, "Null") || !strcmp(v->str, "NULL");
}

static int bool_value(const char *s, int *out)
{
    static const char *const t[] = {"true", "yes", "on"};
    static const char *const f[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
        if (!strcasecmp(s, t[i]))
            return *out = 1, 0;
        if (!strcasecmp(s, f[i]))
            return *out = 0, 0;
    }
    return -1;
}

static int looks_number(const char *s)
{
    char *end;
    if (!*s)
        return 0;
    errno = 0;
    (void)strtod(s, &end);
    return *end == 0;
}

/* "got string 'many'", "got a mapping", ... */
static const char *describe(const node_t *v, char *buf, size_t len)
{
    int dummy;
    if (is_null(v))
        return "got nothing";
    if (v->kind == N_MAP)
        return "got a mapping";
    if (v->kind == N_SEQ)
        return "got a list";
    const char *what = "string";
    if (v->plain && bool_value(v->str, &dummy) == 0)
        what = "boolean";
    else if (v->plain && looks_number(v->str))
        what = "number";
    size_t n = strlen(v->str);
    if (n > 40)
        snprintf(buf, len, "got %s '%.37s...'", what, v->str);
    else
        snprintf(buf, len, "got %s '%s'", what, v->str);
    return buf;
}

/* Optimal string alignment distance (Damerau-Levenshtein with adjacent transpositions). */
static int osa_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 1000;
    int d[64][64];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            int cost = a[i - 1] == b[j - 1] ? 0 : 1;
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v)
                v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    }
    return d[la][lb];
}

/* The closest candidate within distance max(len/3, 2) (1 for words of 3 characters or fewer);
 * a case-only difference always qualifies. NULL when nothing is close. */
static const char *suggest(const char *word, const char *const *cands)
{
    size_t wl = strlen(word);
    int limit = (int)(wl / 3);
    int floor_ = wl <= 3 ? 1 : 2;
    if (limit < floor_)
        limit = floor_;
    const char *best = NULL;
    int bestd = limit + 1;
    for (size_t i = 0; cands[i]; i++) {
        if (!strcasecmp(word, cands[i]))
            return cands[i];
        int dd = osa_distance(word, cands[i]);
        if (dd < bestd) {
            bestd = dd;
            best = cands[i];
        }
    }
    return best;
}

static void join_list(const char *const *items, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; items[i] && used < len; i++) {
        int w = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", items[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* ---------------------------------------------------------------- key handling -------------- */

typedef struct keyset {
    const char *where;              /* "at top level", "in workload entry", ... */
    const char *const *valid;       /* NULL-terminated */
    const char *const *unsupported; /* NULL-terminated, may be NULL */
} keyset_t;

static void unknown_key(ctx_t *x, const node_t *k, const keyset_t *ks)
{
    if (!strcmp(k->str, "<<")) {
        err_at(x, k, "YAML merge keys ('<<') are not supported; write the keys out");
        return;
    }
    if (ks->unsupported) {
        for (size_t i = 0; ks->unsupported[i]; i++) {
            if (strcmp(k->str, ks->unsupported[i]))
                continue;
            err_at(x, k, "'%s' is not supported by this version of sai3bench-ctl yet", k->str);
            return;
        }
    }
    const char *s = suggest(k->str, ks->valid);
    if (s) {
        err_at(x, k, "unknown key '%.60s' %s; did you mean '%s'?", k->str, ks->where, s);
    } else {
        char list[512];
        join_list(ks->valid, list, sizeof(list));
        err_at(x, k, "unknown key '%.60s' %s (expected one of: %s)", k->str, ks->where, list);
    }
}

static size_t npairs(const node_t *m)
{
    return m->n / 2;
}

static node_t *pair_v(const node_t *m, size_t i)
{
    return m->kids[2 * i + 1];
}

/* The key of pair i, or NULL (reported) when it is not a string or repeats an earlier key. */
static const char *pair_key(ctx_t *x, const node_t *m, size_t i)
{
    const node_t *k = m->kids[2 * i];
    if (k->kind != N_SCALAR || is_null(k)) {
        err_at(x, k, "mapping keys must be plain strings");
        return NULL;
    }
    for (size_t j = 0; j < i; j++) {
        const node_t *o = m->kids[2 * j];
        if (o->kind == N_SCALAR && !strcmp(o->str, k->str)) {
            err_at(x, k, "duplicate key '%.60s' (first given at line %d)", k->str, o->line);
            return NULL;
        }
    }
    return k->str;
}

/* Value of the first occurrence of key in m, or NULL. */
static node_t *find_key(const node_t *m, const char *key, node_t **knode)
{
    for (size_t i = 0; i < npairs(m); i++) {
        node_t *k = m->kids[2 * i];
        if (k->kind == N_SCALAR && !strcmp(k->str, key)) {
            if (knode)
                *knode = k;
            return pair_v(m, i);
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------- typed getters ------------- */

static int need_scalar(ctx_t *x, const char *key, const node_t *v, const char *what)
{
    char b[96];
    if (is_null(v)) {
        err_at(x, v, "'%s' needs a value (%s)", key, what);
        return -1;
    }
    if (v->kind != N_SCALAR) {
        err_at(x, v, "'%s' must be %s, %s", key, what, describe(v, b, sizeof(b)));
        return -1;
    }
    return 0;
}

static int get_str(ctx_t *x, const char *key, const node_t *v, char **out)
{
    if (need_scalar(x, key, v, "a string") < 0)
        return -1;
    char *s = strdup(v->str);
    if (!s) {
        x->nomem = 1;
        return -1;
    }
    free(*out);
    *out = s;
    return 0;
}

static int get_bool(ctx_t *x, const char *key, const node_t *v, int *out)
{
    char b[96];
    if (need_scalar(x, key, v, "true or false") < 0)
        return -1;
    if (bool_value(v->str, out) < 0) {
        err_at(x, v, "'%s' must be true or false, %s", key, describe(v, b, sizeof(b)));
        return -1;
    }
    return 0;
}

static int get_uint(ctx_t *x, const char *key, const node_t *v, uint64_t min, uint64_t max,
                    uint64_t *out)
{
    char b[96], e[160];
    uint64_t u;
    if (need_scalar(x, key, v, "an integer") < 0)
        return -1;
    int rc = wl_parse_count(v->str, &u, e, sizeof(e));
    if (rc == -ERANGE) {
        err_at(x, v, "'%s' is too large: '%.40s' (maximum %llu)", key, v->str,
               (unsigned long long)max);
        return -1;
    }
    if (rc < 0) {
        const char *s = v->str;
        while (*s == ' ')
            s++;
        if (*s == '-' && wl_parse_count(s + 1, &u, NULL, 0) == 0)
            err_at(x, v, "'%s' must be at least %llu, got %.40s", key, (unsigned long long)min, s);
        else
            err_at(x, v, "'%s' must be an integer, %s", key, describe(v, b, sizeof(b)));
        return -1;
    }
    if (u < min) {
        err_at(x, v, "'%s' must be at least %llu, got %llu", key, (unsigned long long)min,
               (unsigned long long)u);
        return -1;
    }
    if (u > max) {
        err_at(x, v, "'%s' must be at most %llu, got %llu", key, (unsigned long long)max,
               (unsigned long long)u);
        return -1;
    }
    *out = u;
    return 0;
}

static int get_u32(ctx_t *x, const char *key, const node_t *v, uint64_t min, uint64_t max,
                   uint32_t *out)
{
    uint64_t u;
    if (get_uint(x, key, v, min, max > UINT32_MAX ? UINT32_MAX : max, &u) < 0)
        return -1;
    *out = (uint32_t)u;
    return 0;
}

static int get_double(ctx_t *x, const char *key, const node_t *v, double *out)
{
    char b[96];
    if (need_scalar(x, key, v, "a number") < 0)
        return -1;
    char *end;
    double d = strtod(v->str, &end);
    while (*end == ' ')
        end++;
    if (end == v->str || *end || !isfinite(d)) {
        err_at(x, v, "'%s' must be a number, %s", key, describe(v, b, sizeof(b)));
        return -1;
    }
    *out = d;
    return 0;
}

static int get_size(ctx_t *x, const char *key, const node_t *v, uint64_t *out)
{
    char e[200];
    if (need_scalar(x, key, v, "a size such as 4096, 64KiB or 1.5GB") < 0)
        return -1;
    if (wl_parse_size(v->str, out, e, sizeof(e)) < 0) {
        err_at(x, v, "'%s': %s", key, e);
        return -1;
    }
    return 0;
}

static int get_duration(ctx_t *x, const char *key, const node_t *v, uint64_t *out)
{
    char e[200];
    if (need_scalar(x, key, v, "a duration such as 30s, 5m or 1h30m") < 0)
        return -1;
    if (wl_parse_duration_ns(v->str, out, e, sizeof(e)) < 0) {
        err_at(x, v, "'%s': %s", key, e);
        return -1;
    }
    return 0;
}

static void or_list(const char *const *items, char *buf, size_t len)
{
    size_t n = 0, used = 0;
    while (items[n])
        n++;
    buf[0] = 0;
    for (size_t i = 0; i < n && used < len; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
        int w = snprintf(buf + used, len - used, "%s%s", sep, items[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* names: accepted spellings (NULL-terminated), vals: their values; shown: the canonical ones. */
static int get_enum(ctx_t *x, const char *key, const node_t *v, const char *const *names,
                    const int *vals, const char *const *shown, int *out)
{
    char list[256];
    or_list(shown, list, sizeof(list));
    if (need_scalar(x, key, v, list) < 0)
        return -1;
    for (size_t i = 0; names[i]; i++) {
        if (!strcmp(v->str, names[i])) {
            *out = vals[i];
            return 0;
        }
    }
    const char *s = suggest(v->str, shown);
    if (s)
        err_at(x, v, "unknown %s '%.40s'; did you mean '%s'?", key, v->str, s);
    else
        err_at(x, v, "unknown %s '%.40s' (expected %s)", key, v->str, list);
    return -1;
}

static int need_map(ctx_t *x, const char *key, const node_t *v, const char *what)
{
    char b[96];
    if (v->kind == N_MAP)
        return 0;
    err_at(x, v, "'%s' must be %s, %s", key, what, describe(v, b, sizeof(b)));
    return -1;
}

/* Light URI check: a known scheme and something after "://". Relative file:// forms are resolved
 * by the storage layer. */
static int check_uri(ctx_t *x, const char *key, const node_t *v, const char *s)
{
    static const char *const schemes[] = {"file", "direct", "s3", "az", "gs", "gcs", NULL};
    const char *sep = strstr(s, "://");
    if (!sep) {
        err_at(x, v,
               "'%s' must be an absolute URI such as file:///abs/dir/ or s3://bucket/prefix/, "
               "got '%.60s'",
               key, s);
        return -1;
    }
    size_t sl = (size_t)(sep - s);
    size_t i;
    for (i = 0; schemes[i]; i++)
        if (strlen(schemes[i]) == sl && !strncmp(s, schemes[i], sl))
            break;
    if (!schemes[i]) {
        err_at(x, v,
               "unsupported URI scheme '%.*s' in '%.60s' (use file://, direct://, s3://, az:// or "
               "gs://)",
               (int)(sl > 20 ? 20 : sl), s, s);
        return -1;
    }
    const char *rest = sep + 3;
    if (!*rest) {
        err_at(x, v, "'%s' has nothing after '%.*s://'", key, (int)sl, s);
        return -1;
    }
    if (i >= 2 && *rest == '/') {
        err_at(x, v, "'%s' '%.60s' has no bucket or account after '%.*s://'", key, s, (int)sl, s);
        return -1;
    }
    if (i == 2) { /* s3://[host:port/]bucket/...: as the storage layer will read it */
        sto_uri_t u;
        char e[256];
        if (sto_uri_parse(s, &u, e, sizeof(e)) != 0) {
            err_at(x, v, "'%s': %s", key, e);
            return -1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- endpoints ----------------- */

static int is_s3_uri(const char *s)
{
    return s && !strncmp(s, "s3://", 5);
}

/* The object-store schemes an `endpoint:` applies to: s3://, az://, gs:// (gcs://). */
static int is_net_uri(const char *s)
{
    sto_uri_t u;
    return s && sto_uri_parse(s, &u, NULL, 0) == 0 &&
           (u.scheme == STO_SCHEME_S3 || u.scheme == STO_SCHEME_AZ || u.scheme == STO_SCHEME_GS);
}

/* s3://host:port/bucket/...: the URI names its own endpoint. */
static int s3_names_endpoint(const char *s)
{
    sto_uri_t u;
    return is_s3_uri(s) && sto_uri_parse(s, &u, NULL, 0) == 0 && u.endpoint[0];
}

/* `endpoint:` values: http[s]://host[:port], optional trailing '/', no path. */
static int check_endpoint(ctx_t *x, const node_t *v, const char *s)
{
    sto_s3_endpoint_t ep;
    char e[320];
    if (sto_s3_endpoint_parse(s, &ep, e, sizeof(e)) == 0)
        return 0;
    const char *rest = NULL;
    if (!strncasecmp(s, "http://", 7))
        rest = s + 7;
    else if (!strncasecmp(s, "https://", 8))
        rest = s + 8;
    if (!rest) {
        err_at(x, v,
               "'endpoint' must be an http:// or https:// URL such as http://127.0.0.1:9000 "
               "(got '%.60s')",
               s);
        return -1;
    }
    size_t n = strlen(rest);
    if (n && rest[n - 1] == '/')
        n--;
    if (memchr(rest, '/', n))
        err_at(x, v,
               "'endpoint' must not have a path; put the bucket in the s3:// URI (got '%.60s')", s);
    else
        err_at(x, v, "'endpoint' has no valid host[:port] such as 127.0.0.1:9000 (got '%.60s')", s);
    return -1;
}

/* An s3:// URI with a host of its own meets an `endpoint:` that would apply to it. */
static void uri_vs_endpoint(ctx_t *x, const char *key, const node_t *v, const char *uri,
                            const node_t *ep_key, const char *whose)
{
    err_at(x, v,
           "'%s' '%.60s' names its endpoint in the URI, and %s 'endpoint' (line %d) gives one "
           "too; remove one",
           key, uri, whose, ep_key->line);
}

/* ---------------------------------------------------------------- size_spec ----------------- */

static const char *const size_keys[] = {"type", "size", "min", "max", "mean", "std_dev", NULL};

static void walk_size_spec(ctx_t *x, const char *key, const node_t *v, wl_size_spec_t *out)
{
    char b[96];
    if (v->kind == N_SCALAR && !is_null(v)) {
        uint64_t sz;
        if (get_size(x, key, v, &sz) == 0) {
            out->kind = WL_SIZE_FIXED;
            out->fixed = sz;
        }
        return;
    }
    if (v->kind != N_MAP) {
        err_at(x, v,
               "'%s' must be a size or a mapping with 'type' (fixed, uniform or lognormal), %s",
               key, describe(v, b, sizeof(b)));
        return;
    }
    static const char *const tnames[] = {"fixed", "uniform", "lognormal", NULL};
    static const int tvals[] = {WL_SIZE_FIXED, WL_SIZE_UNIFORM, WL_SIZE_LOGNORMAL};
    int type = -1;
    node_t *tv = find_key(v, "type", NULL);
    if (!tv) {
        err_at(x, v, "missing required key 'type' in %s (fixed, uniform or lognormal)", key);
    } else if (get_enum(x, "type", tv, tnames, tvals, tnames, &type) < 0) {
        type = -1;
    }
    char where[64];
    snprintf(where, sizeof(where), "in %s", key);
    keyset_t ks = {where, size_keys, NULL};
    uint64_t size = 0, mn = 0, mx = 0, mean = 0, sd = 0;
    const node_t *nsize = NULL, *nmin = NULL, *nmax = NULL, *nmean = NULL, *nsd = NULL;
    int bad = 0;
    for (size_t i = 0; i < npairs(v); i++) {
        const char *k = pair_key(x, v, i);
        const node_t *val = pair_v(v, i);
        const node_t *kn = v->kids[2 * i];
        if (!k)
            continue;
        uint64_t *dst = NULL;
        const node_t **np = NULL;
        int ok_fixed = 0, ok_uni = 0, ok_logn = 0;
        if (!strcmp(k, "type"))
            continue;
        if (!strcmp(k, "size"))
            dst = &size, np = &nsize, ok_fixed = 1;
        else if (!strcmp(k, "min"))
            dst = &mn, np = &nmin, ok_uni = ok_logn = 1;
        else if (!strcmp(k, "max"))
            dst = &mx, np = &nmax, ok_uni = ok_logn = 1;
        else if (!strcmp(k, "mean"))
            dst = &mean, np = &nmean, ok_logn = 1;
        else if (!strcmp(k, "std_dev"))
            dst = &sd, np = &nsd, ok_logn = 1;
        if (!dst) {
            unknown_key(x, kn, &ks);
            bad = 1;
            continue;
        }
        if ((type == WL_SIZE_FIXED && !ok_fixed) || (type == WL_SIZE_UNIFORM && !ok_uni) ||
            (type == WL_SIZE_LOGNORMAL && !ok_logn)) {
            err_at(x, kn, "'%s' does not apply to type: %s", k, tnames[type]);
            bad = 1;
            continue;
        }
        if (get_size(x, k, val, dst) < 0)
            bad = 1;
        else
            *np = val;
    }
    if (type < 0)
        return;
    switch (type) {
    case WL_SIZE_FIXED:
        if (!nsize) {
            if (!bad)
                err_at(x, v, "missing required key 'size' in %s (type: fixed)", key);
            return;
        }
        out->kind = WL_SIZE_FIXED;
        out->fixed = size;
        break;
    case WL_SIZE_UNIFORM:
        if (!nmin)
            mn = 1024;
        if (!nmax)
            mx = 1048576;
        if (nmin && mn == 0) {
            err_at(x, nmin, "'min' must be greater than 0");
            return;
        }
        if (mn > mx) {
            const node_t *at = nmin ? nmin : nmax ? nmax : v;
            err_at(x, at, "'min' (%llu) is larger than 'max' (%llu)%s", (unsigned long long)mn,
                   (unsigned long long)mx,
                   !nmin   ? " (min defaults to 1024)"
                   : !nmax ? " (max defaults to 1048576)"
                           : "");
            return;
        }
        out->kind = WL_SIZE_UNIFORM;
        out->min = mn;
        out->max = mx;
        break;
    case WL_SIZE_LOGNORMAL:
        if (!nmean && !bad)
            err_at(x, v, "missing required key 'mean' in %s (type: lognormal)", key);
        if (!nsd && !bad)
            err_at(x, v, "missing required key 'std_dev' in %s (type: lognormal)", key);
        if (!nmean || !nsd)
            return;
        if (!nmin)
            mn = 1;
        if (!nmax)
            mx = UINT64_MAX;
        if (mean == 0) {
            err_at(x, nmean, "'mean' must be greater than 0");
            return;
        }
        if (mn > mx) {
            err_at(x, nmin ? nmin : v, "'min' (%llu) is larger than 'max' (%llu)",
                   (unsigned long long)mn, (unsigned long long)mx);
            return;
        }
        if (mean < mn || mean > mx) {
            err_at(x, nmean, "'mean' (%llu) must lie between 'min' (%llu) and 'max' (%llu)",
                   (unsigned long long)mean, (unsigned long long)mn, (unsigned long long)mx);
            return;
        }
        out->kind = WL_SIZE_LOGNORMAL;
        out->min = mn;
        out->max = mx;
        out->mean = (double)mean;
        out->std_dev = (double)sd;
        break;
    default:
        break;
    }
}

/* ---------------------------------------------------------------- shared enums -------------- */

static const char *const fill_names[] = {"random", "zero", "prand", NULL};
static const int fill_vals[] = {WL_FILL_RANDOM, WL_FILL_ZERO, WL_FILL_RANDOM};
static const char *const fill_shown[] = {"random", "zero", "prand", NULL};

static int get_fill(ctx_t *x, const node_t *v, wl_fill_t *out)
{
    int f;
    if (get_enum(x, "fill", v, fill_names, fill_vals, fill_shown, &f) < 0)
        return -1;
    *out = (wl_fill_t)f;
    return 0;
}

/* ---------------------------------------------------------------- workload ------------------ */

static const char *const op_keys[] = {"op",
                                      "path",
                                      "weight",
                                      "concurrency",
                                      "object_size",
                                      "size_spec",
                                      "size_distribution",
                                      "fill",
                                      "dedup_factor",
                                      "compress_factor",
                                      "recursive",
                                      NULL};

static int is_put_key(const char *k)
{
    return !strcmp(k, "object_size") || !strcmp(k, "size_spec") ||
           !strcmp(k, "size_distribution") || !strcmp(k, "fill") || !strcmp(k, "dedup_factor") ||
           !strcmp(k, "compress_factor");
}

static void walk_op(ctx_t *x, const node_t *m, const wl_config_t *c, wl_op_cfg_t *op)
{
    static const char *const onames[] = {"get",    "put",   "list",  "stat",
                                         "delete", "mkdir", "rmdir", NULL};
    static const int ovals[] = {WL_OP_GET,    WL_OP_PUT,   WL_OP_LIST, WL_OP_STAT,
                                WL_OP_DELETE, WL_OP_MKDIR, WL_OP_RMDIR};
    char b[96];
    op->line = m->line;
    op->col = m->col;
    op->fill = WL_FILL_RANDOM;
    op->dedup_factor = 1;
    op->compress_factor = 1;
    if (m->kind != N_MAP) {
        err_at(x, m,
               "each workload entry must be a mapping such as {op: get, path: data/, weight: 1}, "
               "%s",
               describe(m, b, sizeof(b)));
        return;
    }
    int kind = -1;
    node_t *ov = find_key(m, "op", NULL);
    if (!ov)
        err_at(x, m, "missing required key 'op' in workload entry");
    else if (get_enum(x, "op", ov, onames, ovals, onames, &kind) == 0)
        op->op = (wl_op_kind_t)kind;
    keyset_t ks = {"in workload entry", op_keys, NULL};
    const node_t *npath = NULL, *nweight = NULL, *nobj = NULL, *nspec = NULL;
    const char *spec_key = NULL;
    for (size_t i = 0; i < npairs(m); i++) {
        const char *k = pair_key(x, m, i);
        const node_t *v = pair_v(m, i);
        const node_t *kn = m->kids[2 * i];
        if (!k || !strcmp(k, "op"))
            continue;
        if (is_put_key(k) && kind >= 0 && kind != WL_OP_PUT) {
            err_at(x, kn, "'%s' applies only to op: put", k);
            continue;
        }
        if (!strcmp(k, "recursive") && kind >= 0 && kind != WL_OP_RMDIR) {
            err_at(x, kn, "'recursive' applies only to op: rmdir");
            continue;
        }
        if (!strcmp(k, "path")) {
            npath = v;
            if (get_str(x, k, v, &op->path) == 0 && strstr(op->path, "://")) {
                if (is_net_uri(op->path))
                    x->saw_net = 1;
                if (check_uri(x, k, v, op->path) == 0 && x->ep_top && s3_names_endpoint(op->path))
                    uri_vs_endpoint(x, k, v, op->path, x->ep_top, "the top-level");
            }
        } else if (!strcmp(k, "weight")) {
            nweight = v;
            get_u32(x, k, v, 1, UINT32_MAX, &op->weight);
        } else if (!strcmp(k, "concurrency")) {
            get_u32(x, k, v, 1, MAX_CONCURRENCY, &op->concurrency);
        } else if (!strcmp(k, "object_size")) {
            if (nspec) {
                err_at(x, kn, "give either 'object_size' or '%s', not both", spec_key);
                continue;
            }
            nobj = v;
            uint64_t sz;
            if (get_size(x, k, v, &sz) == 0) {
                op->size.kind = WL_SIZE_FIXED;
                op->size.fixed = sz;
            }
        } else if (!strcmp(k, "size_spec") || !strcmp(k, "size_distribution")) {
            if (nspec) {
                err_at(x, kn, "'%s' and '%s' are the same setting; give only one", spec_key, k);
                continue;
            }
            if (nobj) {
                err_at(x, kn, "give either 'object_size' or '%s', not both", k);
                continue;
            }
            nspec = v;
            spec_key = k;
            walk_size_spec(x, k, v, &op->size);
        } else if (!strcmp(k, "fill")) {
            get_fill(x, v, &op->fill);
        } else if (!strcmp(k, "dedup_factor")) {
            get_u32(x, k, v, 1, UINT32_MAX, &op->dedup_factor);
        } else if (!strcmp(k, "compress_factor")) {
            get_u32(x, k, v, 1, UINT32_MAX, &op->compress_factor);
        } else if (!strcmp(k, "recursive")) {
            get_bool(x, k, v, &op->recursive);
        } else {
            unknown_key(x, kn, &ks);
        }
    }
    if (!nweight)
        err_at(x, m, "missing required key 'weight' in workload entry");
    if (kind == WL_OP_PUT && !nobj && !nspec)
        err_at(x, m, "op: put needs 'object_size' or 'size_spec'");
    if (!npath) {
        if (c->target) {
            op->path = strdup("");
            if (!op->path)
                x->nomem = 1;
        } else {
            err_at(x, m,
                   "missing required key 'path' in workload entry (and there is no top-level "
                   "'target' to use instead)");
        }
    } else if (op->path && !strstr(op->path, "://") && !c->target) {
        err_at(x, npath,
               "relative path '%.60s' needs a top-level 'target' (or write a full URI such as "
               "file:///abs/dir/)",
               op->path);
    }
}

static void walk_workload(ctx_t *x, const node_t *v, wl_config_t *c)
{
    char b[96];
    if (v->kind != N_SEQ) {
        if (is_null(v))
            return; /* treated as an empty list */
        err_at(x, v, "'workload' must be a list of operations, %s", describe(v, b, sizeof(b)));
        return;
    }
    if (!v->n)
        return;
    c->ops = calloc(v->n, sizeof(*c->ops));
    if (!c->ops) {
        x->nomem = 1;
        return;
    }
    c->nops = v->n;
    for (size_t i = 0; i < v->n; i++)
        walk_op(x, v->kids[i], c, &c->ops[i]);
}

/* ---------------------------------------------------------------- prepare ------------------- */

static const char *const ensure_keys[] = {
    "base_uri", "count",        "size_spec",       "size_distribution", "min_size", "max_size",
    "fill",     "dedup_factor", "compress_factor", "endpoint",          NULL};

static void walk_ensure(ctx_t *x, const node_t *m, wl_ensure_cfg_t *e)
{
    char b[96];
    e->line = m->line;
    e->col = m->col;
    e->fill = WL_FILL_RANDOM;
    e->dedup_factor = 1;
    e->compress_factor = 1;
    e->size.kind = WL_SIZE_FIXED;
    e->size.fixed = MiB;
    if (m->kind != N_MAP) {
        err_at(x, m,
               "each ensure_objects entry must be a mapping such as {base_uri: file:///d/, "
               "count: 100, size_spec: 1MiB}, %s",
               describe(m, b, sizeof(b)));
        return;
    }
    keyset_t ks = {"in ensure_objects entry", ensure_keys, NULL};
    const node_t *nbase = NULL, *ncount = NULL, *nspec = NULL, *nmin = NULL, *nmax = NULL;
    const node_t *nepk = NULL;
    const char *spec_key = NULL;
    uint64_t mn = MiB, mx = MiB;
    int minmax_ok = 1, base_ok = 0;
    for (size_t i = 0; i < npairs(m); i++) {
        const char *k = pair_key(x, m, i);
        const node_t *v = pair_v(m, i);
        const node_t *kn = m->kids[2 * i];
        if (!k)
            continue;
        if (!strcmp(k, "base_uri")) {
            nbase = v;
            if (get_str(x, k, v, &e->base_uri) == 0)
                base_ok = check_uri(x, k, v, e->base_uri) == 0;
        } else if (!strcmp(k, "count")) {
            ncount = v;
            get_uint(x, k, v, 1, UINT64_MAX, &e->count);
        } else if (!strcmp(k, "size_spec") || !strcmp(k, "size_distribution")) {
            if (nspec) {
                err_at(x, kn, "'%s' and '%s' are the same setting; give only one", spec_key, k);
                continue;
            }
            if (nmin || nmax) {
                err_at(x, kn, "give either '%s' or 'min_size'/'max_size', not both", k);
                continue;
            }
            nspec = v;
            spec_key = k;
            walk_size_spec(x, k, v, &e->size);
        } else if (!strcmp(k, "min_size") || !strcmp(k, "max_size")) {
            int is_min = k[1] == 'i';
            if (nspec) {
                err_at(x, kn, "give either '%s' or 'min_size'/'max_size', not both", spec_key);
                continue;
            }
            if (is_min)
                nmin = v;
            else
                nmax = v;
            if (get_size(x, k, v, is_min ? &mn : &mx) < 0)
                minmax_ok = 0;
        } else if (!strcmp(k, "fill")) {
            get_fill(x, v, &e->fill);
        } else if (!strcmp(k, "dedup_factor")) {
            get_u32(x, k, v, 1, UINT32_MAX, &e->dedup_factor);
        } else if (!strcmp(k, "compress_factor")) {
            get_u32(x, k, v, 1, UINT32_MAX, &e->compress_factor);
        } else if (!strcmp(k, "endpoint")) {
            nepk = kn;
            if (get_str(x, k, v, &e->endpoint) == 0)
                check_endpoint(x, v, e->endpoint);
        } else {
            unknown_key(x, kn, &ks);
        }
    }
    if (is_net_uri(e->base_uri))
        x->saw_net = 1;
    if (base_ok && nepk) {
        /* (a value that is not a string was reported already) */
        if (e->endpoint && !is_net_uri(e->base_uri))
            err_at(x, nepk,
                   "'endpoint' applies to s3://, az:// and gs:// URIs only; base_uri '%.60s' is "
                   "not one",
                   e->base_uri);
        else if (e->endpoint && s3_names_endpoint(e->base_uri))
            uri_vs_endpoint(x, "base_uri", nbase, e->base_uri, nepk, "this entry's");
    } else if (base_ok && x->ep_top && s3_names_endpoint(e->base_uri)) {
        uri_vs_endpoint(x, "base_uri", nbase, e->base_uri, x->ep_top, "the top-level");
    }
    if (!nbase)
        err_at(x, m, "missing required key 'base_uri' in ensure_objects entry");
    if (!ncount)
        err_at(x, m, "missing required key 'count' in ensure_objects entry");
    if ((nmin || nmax) && minmax_ok) {
        if (mn > mx) {
            err_at(x, nmin ? nmin : nmax, "'min_size' (%llu) is larger than 'max_size' (%llu)%s",
                   (unsigned long long)mn, (unsigned long long)mx,
                   !nmin   ? " (min_size defaults to 1 MiB)"
                   : !nmax ? " (max_size defaults to 1 MiB)"
                           : "");
        } else if (mn == mx) {
            e->size.kind = WL_SIZE_FIXED;
            e->size.fixed = mn;
        } else {
            e->size.kind = WL_SIZE_UNIFORM;
            e->size.min = mn;
            e->size.max = mx;
        }
    }
}

static const char *const prepare_keys[] = {
    "ensure_objects",     "cleanup", "cleanup_mode", "skip_verification", "force_overwrite",
    "post_prepare_delay", NULL};
static const char *const prepare_unsup[] = {"directory_structure", "prepare_strategy",
                                            "key_prefix_shards", "cleanup_only", NULL};

static void walk_prepare(ctx_t *x, const node_t *v, wl_config_t *c)
{
    static const char *const cm_names[] = {"strict", "tolerant", "besteffort", "best_effort", NULL};
    static const int cm_vals[] = {WL_CLEANUP_STRICT, WL_CLEANUP_TOLERANT, WL_CLEANUP_BESTEFFORT,
                                  WL_CLEANUP_BESTEFFORT};
    static const char *const cm_shown[] = {"strict", "tolerant", "besteffort", NULL};
    wl_prepare_cfg_t *p = &c->prepare;
    p->present = 1;
    if (is_null(v))
        return;
    if (need_map(x, "prepare", v, "a mapping (ensure_objects, cleanup, ...)") < 0)
        return;
    keyset_t ks = {"in prepare", prepare_keys, prepare_unsup};
    for (size_t i = 0; i < npairs(v); i++) {
        const char *k = pair_key(x, v, i);
        const node_t *val = pair_v(v, i);
        const node_t *kn = v->kids[2 * i];
        char b[96];
        if (!k)
            continue;
        if (!strcmp(k, "ensure_objects")) {
            if (is_null(val))
                continue;
            if (val->kind != N_SEQ) {
                err_at(x, val, "'ensure_objects' must be a list of object sets, %s",
                       describe(val, b, sizeof(b)));
                continue;
            }
            if (!val->n || p->ensure)
                continue;
            p->ensure = calloc(val->n, sizeof(*p->ensure));
            if (!p->ensure) {
                x->nomem = 1;
                continue;
            }
            p->nensure = val->n;
            for (size_t j = 0; j < val->n; j++)
                walk_ensure(x, val->kids[j], &p->ensure[j]);
        } else if (!strcmp(k, "cleanup")) {
            get_bool(x, k, val, &p->cleanup);
        } else if (!strcmp(k, "cleanup_mode")) {
            int mode;
            if (get_enum(x, k, val, cm_names, cm_vals, cm_shown, &mode) == 0)
                p->cleanup_mode = (wl_cleanup_mode_t)mode;
        } else if (!strcmp(k, "skip_verification")) {
            get_bool(x, k, val, &p->skip_verification);
        } else if (!strcmp(k, "force_overwrite")) {
            get_bool(x, k, val, &p->force_overwrite);
        } else if (!strcmp(k, "post_prepare_delay")) {
            get_duration(x, k, val, &p->post_prepare_delay_ns);
        } else {
            unknown_key(x, kn, &ks);
        }
    }
}

/* ---------------------------------------------------------------- io_rate, errors, perf ----- */

static const char *const rate_keys[] = {"iops", "distribution", NULL};

static void walk_io_rate(ctx_t *x, const node_t *v, wl_config_t *c)
{
    static const char *const dnames[] = {"exponential", "uniform", "deterministic", NULL};
    static const int dvals[] = {WL_RATE_EXPONENTIAL, WL_RATE_UNIFORM, WL_RATE_DETERMINISTIC};
    if (need_map(x, "io_rate", v, "a mapping such as {iops: 1000, distribution: exponential}") < 0)
        return;
    c->io_rate.present = 1;
    keyset_t ks = {"in io_rate", rate_keys, NULL};
    int have_iops = 0;
    for (size_t i = 0; i < npairs(v); i++) {
        const char *k = pair_key(x, v, i);
        const node_t *val = pair_v(v, i);
        const node_t *kn = v->kids[2 * i];
        if (!k)
            continue;
        if (!strcmp(k, "iops")) {
            have_iops = 1;
            if (val->kind == N_SCALAR && !strcasecmp(val->str, "max")) {
                c->io_rate.iops = 0;
                continue;
            }
            double d;
            if (get_double(x, k, val, &d) < 0)
                continue;
            if (d < 0) {
                err_at(x, val, "'iops' must be greater than 0 (or 0 or 'max' for no limit), got %s",
                       val->str);
                continue;
            }
            c->io_rate.iops = d;
        } else if (!strcmp(k, "distribution")) {
            int dist;
            if (get_enum(x, k, val, dnames, dvals, dnames, &dist) == 0)
                c->io_rate.distribution = (wl_rate_dist_t)dist;
        } else {
            unknown_key(x, kn, &ks);
        }
    }
    if (!have_iops)
        err_at(x, v, "missing required key 'iops' in io_rate (a number, or 'max')");
}

static const char *const errh_keys[] = {"max_total_errors",
                                        "error_rate_threshold",
                                        "backoff_duration",
                                        "error_rate_window",
                                        "retry_on_error",
                                        "max_retries",
                                        "initial_retry_delay_ms",
                                        "max_retry_delay_ms",
                                        "retry_backoff_multiplier",
                                        "retry_jitter_factor",
                                        NULL};

static void walk_errh(ctx_t *x, const node_t *v, wl_config_t *c)
{
    wl_errh_cfg_t *e = &c->errh;
    if (is_null(v))
        return;
    if (need_map(x, "error_handling", v, "a mapping (max_total_errors, retry_on_error, ...)") < 0)
        return;
    keyset_t ks = {"in error_handling", errh_keys, NULL};
    const node_t *ninit = NULL;
    int delays_ok = 1;
    for (size_t i = 0; i < npairs(v); i++) {
        const char *k = pair_key(x, v, i);
        const node_t *val = pair_v(v, i);
        const node_t *kn = v->kids[2 * i];
        double d;
        if (!k)
            continue;
        if (!strcmp(k, "max_total_errors")) {
            get_uint(x, k, val, 0, UINT64_MAX, &e->max_total_errors);
        } else if (!strcmp(k, "error_rate_threshold")) {
            if (get_double(x, k, val, &d) < 0)
                continue;
            if (d < 0)
                err_at(x, val, "'error_rate_threshold' must be 0 or more, got %s", val->str);
            else
                e->error_rate_threshold = d;
        } else if (!strcmp(k, "backoff_duration")) {
            get_duration(x, k, val, &e->backoff_duration_ns);
        } else if (!strcmp(k, "error_rate_window")) {
            uint64_t ns;
            if (get_duration(x, k, val, &ns) < 0)
                continue;
            if (ns == 0)
                err_at(x, val, "'error_rate_window' must be greater than 0");
            else
                e->error_rate_window_ns = ns;
        } else if (!strcmp(k, "retry_on_error")) {
            get_bool(x, k, val, &e->retry_on_error);
        } else if (!strcmp(k, "max_retries")) {
            get_u32(x, k, val, 0, 1000000, &e->max_retries);
        } else if (!strcmp(k, "initial_retry_delay_ms")) {
            ninit = val;
            if (get_uint(x, k, val, 0, UINT64_MAX / 1000000, &e->initial_retry_delay_ms) < 0)
                delays_ok = 0;
        } else if (!strcmp(k, "max_retry_delay_ms")) {
            if (get_uint(x, k, val, 0, UINT64_MAX / 1000000, &e->max_retry_delay_ms) < 0)
                delays_ok = 0;
        } else if (!strcmp(k, "retry_backoff_multiplier")) {
            if (get_double(x, k, val, &d) < 0)
                continue;
            if (d < 1.0)
                err_at(x, val, "'retry_backoff_multiplier' must be at least 1.0, got %s", val->str);
            else
                e->retry_backoff_multiplier = d;
        } else if (!strcmp(k, "retry_jitter_factor")) {
            if (get_double(x, k, val, &d) < 0)
                continue;
            if (d < 0 || d > 1)
                err_at(x, val, "'retry_jitter_factor' must be between 0 and 1, got %s", val->str);
            else
                e->retry_jitter_factor = d;
        } else {
            unknown_key(x, kn, &ks);
        }
    }
    if (delays_ok && e->initial_retry_delay_ms > e->max_retry_delay_ms)
        err_at(x, ninit ? ninit : v,
               "'initial_retry_delay_ms' (%llu) is larger than 'max_retry_delay_ms' (%llu)",
               (unsigned long long)e->initial_retry_delay_ms,
               (unsigned long long)e->max_retry_delay_ms);
}

static const char *const perf_keys[] = {"interval", NULL};

static void walk_perf_log(ctx_t *x, const node_t *v, wl_config_t *c)
{
    c->perf_log.present = 1;
    if (is_null(v))
        return;
    if (need_map(x, "perf_log", v, "a mapping such as {interval: 1s}") < 0)
        return;
    keyset_t ks = {"in perf_log", perf_keys, NULL};
    for (size_t i = 0; i < npairs(v); i++) {
        const char *k = pair_key(x, v, i);
        const node_t *val = pair_v(v, i);
        const node_t *kn = v->kids[2 * i];
        if (!k)
            continue;
        if (!strcmp(k, "interval")) {
            uint64_t ns;
            if (get_duration(x, k, val, &ns) < 0)
                continue;
            if (ns == 0)
                err_at(x, val, "'interval' must be greater than 0");
            else
                c->perf_log.interval_ns = ns;
        } else if (!strcmp(k, "path")) {
            err_at(x, kn,
                   "'path' is not accepted in perf_log: perf_log.tsv always goes into the "
                   "results directory");
        } else {
            unknown_key(x, kn, &ks);
        }
    }
}

/* ---------------------------------------------------------------- s3, http ----------------- */

#define S3_MIN_PART (5ULL * MiB)
#define S3_MAX_PART (5ULL * 1024ULL * MiB)

static const char *const s3_keys[] = {"addressing",
                                      "sign_payload",
                                      "create_bucket",
                                      "multipart_threshold",
                                      "part_size",
                                      "part_concurrency",
                                      NULL};

static void walk_s3(ctx_t *x, const node_t *v, wl_config_t *c)
{
    static const char *const anames[] = {"path", "virtual", NULL};
    static const int avals[] = {0, 1};
    wl_net_cfg_t *n = &c->net;
    if (is_null(v))
        return;
    if (need_map(x, "s3", v, "a mapping (addressing, sign_payload, multipart_threshold, ...)") < 0)
        return;
    keyset_t ks = {"in s3", s3_keys, NULL};
    for (size_t i = 0; i < npairs(v); i++) {
        const char *k = pair_key(x, v, i);
        const node_t *val = pair_v(v, i);
        const node_t *kn = v->kids[2 * i];
        uint64_t sz;
        if (!k)
            continue;
        if (!strcmp(k, "addressing")) {
            int a;
            if (get_enum(x, k, val, anames, avals, anames, &a) == 0)
                n->virtual_host = a;
        } else if (!strcmp(k, "sign_payload")) {
            get_bool(x, k, val, &n->sign_payload);
        } else if (!strcmp(k, "create_bucket")) {
            get_bool(x, k, val, &n->create_bucket);
        } else if (!strcmp(k, "multipart_threshold")) {
            if (get_size(x, k, val, &sz) < 0)
                continue;
            if (sz < S3_MIN_PART)
                err_at(x, val,
                       "'multipart_threshold' must be at least 5 MiB (S3's minimum part size), "
                       "got %.40s",
                       val->str);
            else
                n->multipart_threshold = sz;
        } else if (!strcmp(k, "part_size")) {
            if (get_size(x, k, val, &sz) < 0)
                continue;
            if (sz < S3_MIN_PART)
                err_at(x, val,
                       "'part_size' must be at least 5 MiB (S3's minimum part size), got %.40s",
                       val->str);
            else if (sz > S3_MAX_PART)
                err_at(x, val,
                       "'part_size' must be at most 5 GiB (S3's maximum part size), got %.40s",
                       val->str);
            else
                n->part_size = sz;
        } else if (!strcmp(k, "part_concurrency")) {
            get_u32(x, k, val, 1, 256, &n->part_concurrency);
        } else {
            unknown_key(x, kn, &ks);
        }
    }
}

#define MS_NS 1000000ULL
#define DAY_NS (86400ULL * 1000000000ULL)

/* connect_timeout, io_timeout: the storage layer counts whole milliseconds in an int. */
static void get_timeout(ctx_t *x, const char *key, const node_t *v, uint64_t *out)
{
    uint64_t ns;
    if (get_duration(x, key, v, &ns) < 0)
        return;
    if (ns == 0)
        err_at(x, v, "'%s' must be greater than 0", key);
    else if (ns < MS_NS)
        err_at(x, v, "'%s' must be at least 1ms, got %.40s", key, v->str);
    else if (ns > DAY_NS)
        err_at(x, v, "'%s' must be at most 24h, got %.40s", key, v->str);
    else
        *out = ns;
}

static const char *const http_keys[] = {"max_connections",  "connect_timeout",
                                        "io_timeout",       "ca_bundle",
                                        "insecure_skip_verify", "version",
                                        "h2_max_streams",   "h2_stream_window",
                                        "h2_conn_window",   NULL};

/* HTTP/2 flow-control windows: 64 KiB .. 1 GiB (the protocol's limit is 2^31 - 1). */
static void get_window(ctx_t *x, const char *k, const node_t *val, uint64_t *out)
{
    uint64_t sz;
    if (get_size(x, k, val, &sz) < 0)
        return;
    if (sz < 65536 || sz > (1ull << 30))
        err_at(x, val, "'%s' must be between 64 KiB and 1 GiB, got %s", k, val->str);
    else
        *out = sz;
}

static void walk_http(ctx_t *x, const node_t *v, wl_config_t *c)
{
    wl_net_cfg_t *n = &c->net;
    if (is_null(v))
        return;
    if (need_map(x, "http", v, "a mapping (max_connections, connect_timeout, io_timeout, ...)") < 0)
        return;
    keyset_t ks = {"in http", http_keys, NULL};
    for (size_t i = 0; i < npairs(v); i++) {
        const char *k = pair_key(x, v, i);
        const node_t *val = pair_v(v, i);
        const node_t *kn = v->kids[2 * i];
        if (!k)
            continue;
        if (!strcmp(k, "max_connections")) {
            get_u32(x, k, val, 0, 4096, &n->max_connections);
        } else if (!strcmp(k, "connect_timeout")) {
            get_timeout(x, k, val, &n->connect_timeout_ns);
        } else if (!strcmp(k, "io_timeout")) {
            get_timeout(x, k, val, &n->io_timeout_ns);
        } else if (!strcmp(k, "ca_bundle")) {
            if (get_str(x, k, val, &n->ca_bundle) == 0 && !n->ca_bundle[0]) {
                err_at(x, val, "'ca_bundle' needs a file name (a PEM file of CA certificates)");
                free(n->ca_bundle);
                n->ca_bundle = NULL;
            }
        } else if (!strcmp(k, "insecure_skip_verify")) {
            get_bool(x, k, val, &n->insecure_skip_verify);
        } else if (!strcmp(k, "version")) {
            static const char *const vn[] = {"1.1", "2", "auto", "h2", "h2c", "http/1.1", NULL};
            static const int vv[] = {0, 1, 2, 1, 1, 0};
            static const char *const shown[] = {"1.1", "2", "auto", NULL};
            int ver;
            if (get_enum(x, k, val, vn, vv, shown, &ver) == 0)
                n->version = ver;
        } else if (!strcmp(k, "h2_max_streams")) {
            get_u32(x, k, val, 1, 1000, &n->h2_max_streams);
        } else if (!strcmp(k, "h2_stream_window")) {
            get_window(x, k, val, &n->h2_stream_window);
        } else if (!strcmp(k, "h2_conn_window")) {
            get_window(x, k, val, &n->h2_conn_window);
        } else {
            unknown_key(x, kn, &ks);
        }
    }
}

/* ---------------------------------------------------------------- distributed --------------- */

int wl_agent_address_parse(const char *s, char *host, size_t hostlen, int *port, char *err,
                           size_t errlen)
{
    const char *h = s, *p = NULL;
    size_t hl;
    if (!s || !*s) {
        snprintf(err, errlen, "empty agent address");
        return -EINVAL;
    }
    if (*s == '[') {
        const char *e = strchr(s, ']');
        if (!e || e == s + 1) {
            snprintf(err, errlen, "bad agent address '%.80s': unclosed or empty '['", s);
            return -EINVAL;
        }
        h = s + 1;
        hl = (size_t)(e - h);
        if (e[1] == ':')
            p = e + 2;
        else if (e[1]) {
            snprintf(err, errlen, "bad agent address '%.80s': expected ':port' after ']'", s);
            return -EINVAL;
        }
    } else {
        const char *c = strchr(s, ':');
        if (c && strchr(c + 1, ':')) {
            hl = strlen(s); /* a bare IPv6 address: no port */
        } else if (c) {
            hl = (size_t)(c - s);
            p = c + 1;
        } else {
            hl = strlen(s);
        }
    }
    if (hl == 0 || hl >= hostlen) {
        snprintf(err, errlen, "bad agent address '%.80s': %s host", s, hl ? "too long a" : "no");
        return -EINVAL;
    }
    for (size_t i = 0; i < hl; i++) {
        unsigned char ch = (unsigned char)h[i];
        if (ch <= ' ' || ch == '/' || ch == '@' || ch == '?' || ch == '#') {
            snprintf(err, errlen, "bad agent address '%.80s': character '%c' in the host", s,
                     ch > ' ' ? ch : '?');
            return -EINVAL;
        }
    }
    memcpy(host, h, hl);
    host[hl] = 0;
    *port = WL_AGENT_DEFAULT_PORT;
    if (p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (!*p || *end || v < 1 || v > 65535 || !isdigit((unsigned char)*p)) {
            snprintf(err, errlen, "bad agent address '%.80s': port must be 1..65535", s);
            return -EINVAL;
        }
        *port = (int)v;
    }
    return 0;
}

static const char *const agent_keys[] = {"address",         "id",          "target_override",
                                         "concurrency_override", "tls_fingerprint",
                                         "listen_port",     "env",         "volumes",
                                         NULL};
static const char *const agent_unsup[] = {"path_template", "multi_endpoint", "kv_cache_dir", NULL};

/* A list of strings (a single string is a list of one). */
static void get_str_list(ctx_t *x, const char *key, const node_t *v, char ***out, size_t *n)
{
    char b[96];
    if (is_null(v) || *out)
        return;
    if (v->kind == N_SCALAR) {
        char **l = calloc(2, sizeof(char *));
        if (!l) {
            x->nomem = 1;
            return;
        }
        *out = l;
        *n = 1;
        get_str(x, key, v, &l[0]);
        return;
    }
    if (v->kind != N_SEQ) {
        err_at(x, v, "'%s' must be a list of strings, %s", key, describe(v, b, sizeof(b)));
        return;
    }
    char **l = calloc(v->n + 1, sizeof(char *));
    if (!l) {
        x->nomem = 1;
        return;
    }
    *out = l;
    *n = v->n;
    for (size_t j = 0; j < v->n; j++)
        get_str(x, key, v->kids[j], &l[j]);
}

/* env: a mapping NAME: value (NAME a shell variable name). */
static void get_env_map(ctx_t *x, const char *key, const node_t *v, wl_kv_t **out, size_t *n)
{
    if (is_null(v) || *out)
        return;
    if (need_map(x, key, v, "a mapping of NAME: value") < 0)
        return;
    size_t np = npairs(v);
    if (!np)
        return;
    wl_kv_t *l = calloc(np, sizeof(*l));
    if (!l) {
        x->nomem = 1;
        return;
    }
    *out = l;
    *n = np;
    for (size_t i = 0; i < np; i++) {
        const char *k = pair_key(x, v, i);
        const node_t *kn = v->kids[2 * i];
        if (!k)
            continue;
        int ok = isalpha((unsigned char)k[0]) || k[0] == '_';
        for (const char *q = k; *q && ok; q++)
            ok = isalnum((unsigned char)*q) || *q == '_';
        if (!ok) {
            err_at(x, kn, "'%s' names must be environment variable names (letters, digits, '_'), "
                          "got '%.40s'",
                   key, k);
            continue;
        }
        if (!(l[i].key = strdup(k))) {
            x->nomem = 1;
            continue;
        }
        get_str(x, k, pair_v(v, i), &l[i].value);
    }
}

static void check_volumes(ctx_t *x, const node_t *v, char **vols, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        const char *s = vols[j];
        const char *c = s ? strchr(s, ':') : NULL;
        if (s && (!c || c == s || !c[1]))
            err_at(x, v->kind == N_SEQ && j < v->n ? v->kids[j] : v,
                   "volumes entries are host_path:container_path[:mode], got '%.60s'", s);
    }
}

static void free_kv(wl_kv_t *l, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(l[i].key);
        free(l[i].value);
    }
    free(l);
}

static void free_strs(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(l[i]);
    free(l);
}

static void walk_agent(ctx_t *x, const node_t *m, void *item, size_t pos)
{
    wl_agent_cfg_t *a = item;
    char b[96];
    a->line = m->line;
    a->col = m->col;
    if (m->kind == N_SCALAR && !is_null(m)) {
        /* shorthand: "- host:port" */
        if (get_str(x, "address", m, &a->address) < 0)
            return;
    } else if (m->kind != N_MAP) {
        err_at(x, m, "each agents entry must be a mapping such as {address: host:7761, id: a1}, %s",
               describe(m, b, sizeof(b)));
        return;
    } else {
        keyset_t ks = {"in agents entry", agent_keys, agent_unsup};
        for (size_t i = 0; i < npairs(m); i++) {
            const char *k = pair_key(x, m, i);
            const node_t *val = pair_v(m, i);
            const node_t *kn = m->kids[2 * i];
            if (!k)
                continue;
            if (!strcmp(k, "address")) {
                get_str(x, k, val, &a->address);
            } else if (!strcmp(k, "id")) {
                if (get_str(x, k, val, &a->id) == 0) {
                    const char *bad = NULL;
                    for (const char *q = a->id; *q && !bad; q++)
                        if (!isalnum((unsigned char)*q) && *q != '-' && *q != '_' && *q != '.')
                            bad = q;
                    if (!*a->id || bad || a->id[0] == '.')
                        err_at(x, val,
                               "agent 'id' must be letters, digits, '-', '_' or '.' (it names "
                               "directories), got '%.40s'",
                               a->id);
                }
            } else if (!strcmp(k, "target_override")) {
                if (get_str(x, k, val, &a->target_override) == 0 &&
                    check_uri(x, k, val, a->target_override) == 0 &&
                    is_net_uri(a->target_override))
                    x->saw_net = 1;
            } else if (!strcmp(k, "concurrency_override")) {
                get_u32(x, k, val, 1, MAX_CONCURRENCY, &a->concurrency_override);
            } else if (!strcmp(k, "tls_fingerprint")) {
                get_str(x, k, val, &a->tls_fingerprint);
            } else if (!strcmp(k, "listen_port")) {
                uint64_t p;
                if (get_uint(x, k, val, 1, 65535, &p) == 0)
                    a->listen_port = (int)p;
            } else if (!strcmp(k, "env")) {
                get_env_map(x, k, val, &a->env, &a->nenv);
            } else if (!strcmp(k, "volumes")) {
                get_str_list(x, k, val, &a->volumes, &a->nvolumes);
                check_volumes(x, val, a->volumes, a->nvolumes);
            } else {
                unknown_key(x, kn, &ks);
            }
        }
    }
    if (!a->address) {
        if (m->kind == N_MAP)
            err_at(x, m, "agents entry %zu has no 'address' (host:port)", pos + 1);
        return;
    }
    char host[256], e[200];
    if (wl_agent_address_parse(a->address, host, sizeof(host), &a->port, e, sizeof(e)) < 0) {
        err_at(x, m, "%s", e);
        return;
    }
    if (!(a->host = strdup(host)))
        x->nomem = 1;
    {
        /* did the address carry a port? (bare IPv6 addresses have none) */
        const char *rb = strrchr(a->address, ']');
        const char *c1 = strchr(a->address, ':');
        a->port_given = a->address[0] == '[' ? (rb && rb[1] == ':')
                                             : (c1 && !strchr(c1 + 1, ':'));
    }
    if (!a->id) {
        char id[32];
        snprintf(id, sizeof(id), "agent-%zu", pos + 1);
        if (!(a->id = strdup(id)))
            x->nomem = 1;
    }
    if (a->listen_port) {
        if (a->port_given && a->port != a->listen_port)
            err_at(x, m,
                   "agent '%s': 'listen_port' %d differs from the port of its address '%s' (give "
                   "one of them)",
                   a->id ? a->id : "?", a->listen_port, a->address);
        a->port = a->listen_port;
    }
}

static const char *const stage_keys[] = {"name",    "type",     "duration",         "command",
                                         "args",    "timeout",  "optional",         "expected_objects",
                                         "order",   "barrier",  NULL};
static const char *const stage_unsup[] = {"completion", "timeout_secs", "max_duration",
                                          "expected_tasks", NULL};

static void walk_stage(ctx_t *x, const node_t *m, void *item, size_t pos)
{
    wl_stage_cfg_t *st = item;
    static const char *const tnames[] = {"prepare", "execute", "cleanup", "custom", NULL};
    static const int tvals[] = {WL_STAGE_PREPARE, WL_STAGE_EXECUTE, WL_STAGE_CLEANUP,
                                WL_STAGE_CUSTOM};
    char b[96];
    st->line = m->line;
    st->col = m->col;
    if (m->kind != N_MAP) {
        err_at(x, m, "each stages entry must be a mapping such as {name: run, type: execute}, %s",
               describe(m, b, sizeof(b)));
        return;
    }
    keyset_t ks = {"in stages entry", stage_keys, stage_unsup};
    const node_t *ntype = NULL, *ndur = NULL, *ncmd = NULL, *nargs = NULL, *nexp = NULL;
    for (size_t i = 0; i < npairs(m); i++) {
        const char *k = pair_key(x, m, i);
        const node_t *val = pair_v(m, i);
        const node_t *kn = m->kids[2 * i];
        if (!k)
            continue;
        if (!strcmp(k, "name")) {
            get_str(x, k, val, &st->name);
        } else if (!strcmp(k, "type")) {
            int t;
            ntype = val;
            if (get_enum(x, "stage type", val, tnames, tvals, tnames, &t) == 0)
                st->type = (wl_stage_type_t)t;
        } else if (!strcmp(k, "duration")) {
            ndur = val;
            if (get_duration(x, k, val, &st->duration_ns) == 0 && st->duration_ns == 0)
                err_at(x, val, "'duration' must be greater than 0");
        } else if (!strcmp(k, "command")) {
            ncmd = val;
            get_str(x, k, val, &st->command);
        } else if (!strcmp(k, "args")) {
            nargs = val;
            if (is_null(val))
                continue;
            if (val->kind != N_SEQ) {
                err_at(x, val, "'args' must be a list of strings, %s", describe(val, b, sizeof(b)));
                continue;
            }
            if (st->args)
                continue;
            st->args = calloc(val->n + 1, sizeof(char *));
            if (!st->args) {
                x->nomem = 1;
                continue;
            }
            st->nargs = val->n;
            for (size_t j = 0; j < val->n; j++)
                get_str(x, "args", val->kids[j], &st->args[j]);
        } else if (!strcmp(k, "timeout")) {
            get_duration(x, k, val, &st->timeout_ns);
        } else if (!strcmp(k, "optional")) {
            get_bool(x, k, val, &st->optional);
        } else if (!strcmp(k, "expected_objects")) {
            nexp = val;
            get_uint(x, k, val, 0, UINT64_MAX, &st->expected_objects);
        } else if (!strcmp(k, "order")) {
            uint64_t o;
            if (get_uint(x, k, val, 0, UINT32_MAX, &o) == 0 && o != pos + 1)
                err_at(x, val,
                       "'order' is %llu but this is stage %zu: stages run in the order they are "
                       "listed (drop 'order' or list the stages in order)",
                       (unsigned long long)o, pos + 1);
        } else if (!strcmp(k, "barrier")) {
            int yes;
            if (get_bool(x, k, val, &yes) == 0 && !yes)
                err_at(x, val,
                       "'barrier: false' is not supported: every stage ends at a barrier "
                       "(choose the rule with distributed.barrier)");
        } else {
            unknown_key(x, kn, &ks);
        }
    }
    if (!st->name)
        err_at(x, m, "stage %zu has no 'name'", pos + 1);
    if (!ntype) {
        err_at(x, m, "stage %zu has no 'type' (prepare, execute, cleanup or custom)", pos + 1);
        return;
    }
    if (ndur && st->type != WL_STAGE_EXECUTE)
        err_at(x, ndur, "'duration' applies to execute stages only");
    if (nexp && st->type != WL_STAGE_PREPARE && st->type != WL_STAGE_CLEANUP)
        err_at(x, nexp, "'expected_objects' applies to prepare and cleanup stages only");
    if (st->type == WL_STAGE_CUSTOM && !st->command)
        err_at(x, m, "custom stage '%s' needs a 'command'", st->name ? st->name : "?");
    if (st->type != WL_STAGE_CUSTOM && (ncmd || nargs))
        err_at(x, ncmd ? ncmd : nargs, "'command' and 'args' apply to custom stages only");
}

/* Walks a non-empty sequence of entries of esz bytes with fn and reports names (the char * at
 * name_off in each entry) used twice. Returns the calloc'd array (*n entries) or NULL. */
static void *walk_named_list(ctx_t *x, const node_t *val, size_t esz,
                             void (*fn)(ctx_t *, const node_t *, void *, size_t), size_t name_off,
                             const char *what, size_t *n)
{
    if (!val->n)
        return NULL;
    char *v = calloc(val->n, esz);
    if (!v) {
        x->nomem = 1;
        return NULL;
    }
    *n = val->n;
    for (size_t j = 0; j < val->n; j++)
        fn(x, val->kids[j], v + j * esz, j);
    for (size_t j = 0; j < val->n; j++) {
        const char *nj = *(char **)(v + j * esz + name_off);
        for (size_t q = 0; q < j && nj; q++) {
            const char *nq = *(char **)(v + q * esz + name_off);
            if (nq && !strcmp(nj, nq)) {
                err_at(x, val->kids[j], "%s '%s' is used twice (also entry %zu)", what, nj, q + 1);
                break;
            }
        }
    }
    return v;
}

static const char *const dtls_keys[] = {"enabled",     "ca",          "fingerprint",
                                        "server_name", "client_cert", "client_key", NULL};

static void walk_dtls(ctx_t *x, const node_t *v, wl_dist_cfg_t *d)
{
    int en = -1;
    if (is_null(v))
        return;
    if (need_map(x, "tls", v, "a mapping (enabled, ca, fingerprint, ...)") < 0)
        return;
    keyset_t ks = {"in distributed.tls", dtls_keys, NULL};
    for (size_t i = 0; i < npairs(v); i++) {
        const char *k = pair_key(x, v, i);
        const node_t *val = pair_v(v, i);
        const node_t *kn = v->kids[2 * i];
        if (!k)
            continue;
        if (!strcmp(k, "enabled"))
            get_bool(x, k, val, &en);
        else if (!strcmp(k, "ca"))
            get_str(x, k, val, &d->tls_ca);
        else if (!strcmp(k, "fingerprint"))
            get_str(x, k, val, &d->tls_fingerprint);
        else if (!strcmp(k, "server_name"))
            get_str(x, k, val, &d->tls_server_name);
        else if (!strcmp(k, "client_cert"))
            get_str(x, k, val, &d->tls_client_cert);
        else if (!strcmp(k, "client_key"))
            get_str(x, k, val, &d->tls_client_key);
        else
            unknown_key(x, kn, &ks);
    }
    d->tls = en == -1 ? 1 : en;
    if (en == 0 && (d->tls_ca || d->tls_fingerprint || d->tls_client_cert))
        err_at(x, v, "distributed.tls has 'enabled: false' but also TLS settings");
    if (!d->tls_client_cert != !d->tls_client_key)
        err_at(x, v, "distributed.tls needs both 'client_cert' and 'client_key' (or neither)");
}

static const char *const ssh_keys[] = {"enabled",     "user",    "key_path", "port",
                                       "known_hosts", "timeout", NULL};

static void walk_ssh(ctx_t *x, const node_t *v, wl_ssh_cfg_t *h)
{
    h->present = 1;
    h->line = v->line;
    h->col = v->col;
    if (is_null(v))
        return;
    if (need_map(x, "ssh", v, "a mapping (enabled, user, key_path, port, known_hosts, timeout)") < 0)
        return;
    keyset_t ks = {"in distributed.ssh", ssh_keys, NULL};
    for (size_t i = 0; i < npairs(v); i++) {
        const char *k = pair_key(x, v, i);
        const node_t *val = pair_v(v, i);
        const node_t *kn = v->kids[2 * i];
        if (!k)
            continue;
        if (!strcmp(k, "enabled")) {
            get_bool(x, k, val, &h->enabled);
        } else if (!strcmp(k, "user")) {
            if (get_str(x, k, val, &h->user) == 0 &&
                (!h->user[0] || strpbrk(h->user, "@:/ \t")))
                err_at(x, val, "'user' must be a user name (no '@', ':', '/' or spaces), got '%.40s'",
                       h->user);
        } else if (!strcmp(k, "key_path")) {
            if (get_str(x, k, val, &h->key_path) == 0 && !h->key_path[0])
                err_at(x, val, "'key_path' is empty");
        } else if (!strcmp(k, "port")) {
            uint64_t p;
            if (get_uint(x, k, val, 1, 65535, &p) == 0)
                h->port = (int)p;
        } else if (!strcmp(k, "known_hosts")) {
            if (get_str(x, k, val, &h->known_hosts) == 0 && !h->known_hosts[0])
                err_at(x, val,
                       "'known_hosts' is empty: host keys are always checked (leave the key out "
                       "for ~/.ssh/known_hosts)");
        } else if (!strcmp(k, "timeout")) {
            if (get_duration(x, k, val, &h->timeout_ns) == 0 &&
                (h->timeout_ns < 100 * MS_NS || h->timeout_ns > DAY_NS))
                err_at(x, val, "'timeout' must be between 100ms and 1 day");
        } else {
            unknown_key(x, kn, &ks);
        }
    }
}

static const char *const deploy_keys[] = {"type",        "deploy_type", "container_runtime",
                                          "image",       "network_mode", "pull_policy",
                                          "binary_path", "docker_args", "agent_args",
                                          "env",         "volumes",     "log_dir",
                                          NULL};

static void walk_deploy(ctx_t *x, const node_t *v, wl_deploy_cfg_t *dp)
{
    static const char *const tnames[] = {"binary", "docker", NULL};
    static const int tvals[] = {WL_DEPLOY_BINARY, WL_DEPLOY_DOCKER};
    static const char *const pnames[] = {"if_not_present", "always", "never", NULL};
    static const int pvals[] = {WL_PULL_IF_NOT_PRESENT, WL_PULL_ALWAYS, WL_PULL_NEVER};
    dp->present = 1;
    dp->line = v->line;
    dp->col = v->col;
    if (is_null(v))
        return;
    if (need_map(x, "deployment", v, "a mapping (type, image, network_mode, ...)") < 0)
        return;
    keyset_t ks = {"in distributed.deployment", deploy_keys, NULL};
    const node_t *ntype = NULL, *nvol = NULL, *nimg = NULL;
    for (size_t i = 0; i < npairs(v); i++) {
        const char *k = pair_key(x, v, i);
        const node_t *val = pair_v(v, i);
        const node_t *kn = v->kids[2 * i];
        if (!k)
            continue;
        if (!strcmp(k, "type") || !strcmp(k, "deploy_type")) {
            int t;
            if (ntype)
                err_at(x, kn, "give 'type' or 'deploy_type', not both");
            ntype = val;
            if (get_enum(x, "deployment type", val, tnames, tvals, tnames, &t) == 0)
                dp->type = (wl_deploy_type_t)t;
        } else if (!strcmp(k, "container_runtime")) {
            if (get_str(x, k, val, &dp->runtime) == 0 && strcmp(dp->runtime, "docker") &&
                strcmp(dp->runtime, "podman"))
                err_at(x, val, "'container_runtime' must be docker or podman, got '%.40s'",
                       dp->runtime);
        } else if (!strcmp(k, "image")) {
            nimg = val;
            if (get_str(x, k, val, &dp->image) == 0 &&
                (!dp->image[0] || strpbrk(dp->image, " \t'\"$`;&|<>")))
                err_at(x, val, "'image' must be an image reference such as "
                               "registry/sai3-bench:v1, got '%.60s'",
                       dp->image);
        } else if (!strcmp(k, "network_mode")) {
            if (get_str(x, k, val, &dp->network_mode) == 0 &&
                (!dp->network_mode[0] || strpbrk(dp->network_mode, " \t'\"$`;&|<>")))
                err_at(x, val, "'network_mode' must be a docker network name such as host, got "
                               "'%.40s'",
                       dp->network_mode);
        } else if (!strcmp(k, "pull_policy")) {
            int pp;
            if (get_enum(x, k, val, pnames, pvals, pnames, &pp) == 0)
                dp->pull_policy = (wl_pull_policy_t)pp;
        } else if (!strcmp(k, "binary_path")) {
            if (get_str(x, k, val, &dp->binary_path) == 0 && !dp->binary_path[0])
                err_at(x, val, "'binary_path' is empty");
        } else if (!strcmp(k, "docker_args")) {
            get_str_list(x, k, val, &dp->docker_args, &dp->ndocker_args);
        } else if (!strcmp(k, "agent_args")) {
            get_str_list(x, k, val, &dp->agent_args, &dp->nagent_args);
        } else if (!strcmp(k, "env")) {
            get_env_map(x, k, val, &dp->env, &dp->nenv);
        } else if (!strcmp(k, "volumes")) {
            nvol = val;
            get_str_list(x, k, val, &dp->volumes, &dp->nvolumes);
            check_volumes(x, val, dp->volumes, dp->nvolumes);
        } else if (!strcmp(k, "log_dir")) {
            if (get_str(x, k, val, &dp->log_dir) == 0 && !dp->log_dir[0])
                err_at(x, val, "'log_dir' is empty");
        } else {
            unknown_key(x, kn, &ks);
        }
    }
    if (dp->type != WL_DEPLOY_DOCKER) {
        if (nvol)
            err_at(x, nvol, "'volumes' applies to 'type: docker' deployments only");
        if (nimg)
            err_at(x, nimg, "'image' applies to 'type: docker' deployments only");
        if (dp->ndocker_args || dp->runtime || dp->network_mode)
            err_at(x, v,
                   "docker_args, container_runtime and network_mode apply to 'type: docker' "
                   "deployments only");
    }
}

static const char *const dist_keys[] = {"agents",
                                        "shared_filesystem",
                                        "start_delay",
                                        "on_agent_failure",
                                        "barrier",
                                        "barrier_timeout",
                                        "stages",
                                        "path_template",
                                        "tls",
                                        "auth_token_file",
                                        "allow_plaintext_credentials",
                                        "grpc_keepalive_interval",
                                        "grpc_keepalive_timeout",
                                        "agent_ready_timeout",
                                        "connect_timeout",
                                        "ssh",
                                        "deployment",
                                        NULL};
static const char *const dist_unsup[] = {"tree_creation_mode", "path_selection",
                                         "partition_overlap",  "barrier_sync",
                                         "kv_cache_dir",       NULL};

static void walk_distributed(ctx_t *x, const node_t *v, wl_config_t *c)
{
    static const char *const fnames[] = {"continue", "abort", NULL};
    static const int fvals[] = {0, 1};
    static const char *const bnames[] = {"best_effort", "all_or_nothing", "majority", NULL};
    static const int bvals[] = {WL_BARRIER_BEST_EFFORT, WL_BARRIER_ALL_OR_NOTHING,
                                WL_BARRIER_MAJORITY};
    wl_dist_cfg_t *d = &c->dist;
    char b[96];
    d->present = 1;
    d->line = v->line;
    d->col = v->col;
    if (need_map(x, "distributed", v, "a mapping (agents, shared_filesystem, stages, ...)") < 0)
        return;
    keyset_t ks = {"in distributed", dist_keys, dist_unsup};
    const node_t *nagents = NULL, *nssh = NULL, *ndeploy = NULL;
    for (size_t i = 0; i < npairs(v); i++) {
        const char *k = pair_key(x, v, i);
        const node_t *val = pair_v(v, i);
        const node_t *kn = v->kids[2 * i];
        if (!k)
            continue;
        if (!strcmp(k, "agents")) {
            nagents = val;
            if (is_null(val))
                continue;
            if (val->kind != N_SEQ) {
                err_at(x, val, "'agents' must be a list of {address, id, ...} entries, %s",
                       describe(val, b, sizeof(b)));
                continue;
            }
            if (!d->agents)
                d->agents = walk_named_list(x, val, sizeof(*d->agents), walk_agent,
                                            offsetof(wl_agent_cfg_t, id), "agent id",
                                            &d->nagents);
        } else if (!strcmp(k, "shared_filesystem")) {
            get_bool(x, k, val, &d->shared_filesystem);
        } else if (!strcmp(k, "start_delay")) {
            get_duration(x, k, val, &d->start_delay_ns);
        } else if (!strcmp(k, "on_agent_failure")) {
            get_enum(x, k, val, fnames, fvals, fnames, &d->abort_on_agent_failure);
        } else if (!strcmp(k, "barrier")) {
            int r;
            if (get_enum(x, "barrier rule", val, bnames, bvals, bnames, &r) == 0)
                d->barrier = (wl_barrier_rule_t)r;
        } else if (!strcmp(k, "barrier_timeout")) {
            get_duration(x, k, val, &d->barrier_timeout_ns);
        } else if (!strcmp(k, "stages")) {
            if (is_null(val))
                continue;
            if (val->kind != N_SEQ || !val->n) {
                err_at(x, val, "'stages' must be a non-empty list of {name, type, ...} entries, %s",
                       describe(val, b, sizeof(b)));
                continue;
            }
            if (!d->stages)
                d->stages = walk_named_list(x, val, sizeof(*d->stages), walk_stage,
                                            offsetof(wl_stage_cfg_t, name), "stage name",
                                            &d->nstages);
        } else if (!strcmp(k, "path_template")) {
            if (get_str(x, k, val, &d->path_template) == 0 &&
                (!strstr(d->path_template, "{id}") || d->path_template[0] == '/' ||
                 strstr(d->path_template, "..")))
                err_at(x, val,
                       "'path_template' must be a relative path containing {id}, such as "
                       "agent-{id}/");
        } else if (!strcmp(k, "tls")) {
            walk_dtls(x, val, d);
        } else if (!strcmp(k, "auth_token_file")) {
            get_str(x, k, val, &d->auth_token_file);
        } else if (!strcmp(k, "allow_plaintext_credentials")) {
            get_bool(x, k, val, &d->allow_plaintext_credentials);
        } else if (!strcmp(k, "grpc_keepalive_interval")) {
            if (get_duration(x, k, val, &d->keepalive_interval_ns) == 0 &&
                d->keepalive_interval_ns < 100 * MS_NS)
                err_at(x, val, "'grpc_keepalive_interval' must be at least 100ms");
        } else if (!strcmp(k, "grpc_keepalive_timeout")) {
            if (get_duration(x, k, val, &d->keepalive_timeout_ns) == 0 &&
                d->keepalive_timeout_ns < 100 * MS_NS)
                err_at(x, val, "'grpc_keepalive_timeout' must be at least 100ms");
        } else if (!strcmp(k, "agent_ready_timeout")) {
            get_duration(x, k, val, &d->agent_ready_timeout_ns);
        } else if (!strcmp(k, "connect_timeout")) {
            if (get_duration(x, k, val, &d->connect_timeout_ns) == 0 &&
                (d->connect_timeout_ns < MS_NS || d->connect_timeout_ns > DAY_NS))
                err_at(x, val, "'connect_timeout' must be between 1ms and 1 day");
        } else if (!strcmp(k, "ssh")) {
            nssh = val;
            walk_ssh(x, val, &d->ssh);
        } else if (!strcmp(k, "deployment")) {
            ndeploy = val;
            walk_deploy(x, val, &d->deploy);
        } else {
            unknown_key(x, kn, &ks);
        }
    }
    if (nagents && !d->nagents && !x->nomem)
        err_at(x, nagents, "'agents' is empty (leave it out to give agents with --agents)");
    for (size_t j = 0; j < d->nagents; j++) {
        const wl_agent_cfg_t *a = &d->agents[j];
        if (a->tls_fingerprint && !d->tls)
            d->tls = 1;
        /* keys that only mean something when the controller starts the agents */
        if (!d->ssh.enabled && (a->listen_port || a->nenv || a->nvolumes))
            err_at_lc(x, a->line, a->col,
                      "agent '%s': listen_port, env and volumes apply only when the controller "
                      "starts the agents (distributed.ssh.enabled: true)",
                      a->id ? a->id : "?");
        else if (a->nvolumes && d->deploy.type != WL_DEPLOY_DOCKER)
            err_at_lc(x, a->line, a->col,
                      "agent '%s': volumes apply to 'deployment: {type: docker}' only",
                      a->id ? a->id : "?");
    }
    if (ndeploy && !d->ssh.enabled)
        err_at(x, ndeploy,
               "'deployment' needs 'ssh: {enabled: true}': agents are deployed over SSH");
    if (nssh && d->ssh.enabled && nagents == NULL)
        err_at(x, nssh,
               "'ssh' is enabled but there is no 'agents' list (the hosts to start agents on)");
}

void wl_dist_free(wl_dist_cfg_t *d)
{
    for (size_t i = 0; i < d->nagents; i++) {
        wl_agent_cfg_t *a = &d->agents[i];
        free(a->address);
        free(a->host);
        free(a->id);
        free(a->target_override);
        free(a->tls_fingerprint);
        free_kv(a->env, a->nenv);
        free_strs(a->volumes, a->nvolumes);
    }
    free(d->agents);
    free(d->ssh.user);
    free(d->ssh.key_path);
    free(d->ssh.known_hosts);
    free(d->deploy.runtime);
    free(d->deploy.image);
    free(d->deploy.network_mode);
    free(d->deploy.binary_path);
    free_strs(d->deploy.docker_args, d->deploy.ndocker_args);
    free_strs(d->deploy.agent_args, d->deploy.nagent_args);
    free_kv(d->deploy.env, d->deploy.nenv);
    free_strs(d->deploy.volumes, d->deploy.nvolumes);
    free(d->deploy.log_dir);
    for (size_t i = 0; i < d->nstages; i++) {
        wl_stage_cfg_t *s = &d->stages[i];
        free(s->name);
        free(s->command);
        for (size_t j = 0; j < s->nargs; j++)
            free(s->args[j]);
        free(s->args);
    }
    free(d->stages);
    free(d->path_template);
    free(d->tls_ca);
    free(d->tls_fingerprint);
    free(d->tls_server_name);
    free(d->tls_client_cert);
    free(d->tls_client_key);
    free(d->auth_token_file);
    memset(d, 0, sizeof(*d));
}

void wl_dist_defaults(wl_dist_cfg_t *d)
{
    memset(d, 0, sizeof(*d));
    d->shared_filesystem = -1;
    d->start_delay_ns = 2ULL * 1000000000ULL;
    d->keepalive_interval_ns = 5ULL * 1000000000ULL;
    d->keepalive_timeout_ns = 10ULL * 1000000000ULL;
    d->agent_ready_timeout_ns = 120ULL * 1000000000ULL;
    d->connect_timeout_ns = 5ULL * 1000000000ULL;
    d->ssh.port = 22;
    d->ssh.timeout_ns = 10ULL * 1000000000ULL;
}

/* ---------------------------------------------------------------- top level ----------------- */

static const char *const top_keys[] = {"target",   "duration", "concurrency",    "workload",
                                       "prepare",  "io_rate",  "error_handling", "perf_log",
                                       "endpoint", "s3",       "http",           "distributed",
                                       NULL};
static const char *const top_unsup[] = {"multi_endpoint",
                                        "range_engine",
                                        "page_cache_mode",
                                        "processes",
                                        "processing_mode",
                                        "op_log_path",
                                        "warmup_period",
                                        "cache_checkpoint_interval_secs",
                                        "enable_metadata_cache",
                                        "s3dlio_optimization",
                                        "dynamic_put_pool",
                                        "autotune",
                                        "distributed_env",
                                        NULL};

static void walk_top(ctx_t *x, const node_t *root, wl_config_t *c)
{
    char b[96];
    if (!root || is_null(root)) {
        err_at_lc(x, 1, 1, "the config is empty; it needs at least a 'workload' list");
        return;
    }
    if (root->kind != N_MAP) {
        err_at(x, root, "the top level must be a mapping of keys (target, workload, ...), %s",
               describe(root, b, sizeof(b)));
        return;
    }
    keyset_t ks = {"at top level", top_keys, top_unsup};
    const node_t *nwl = NULL, *nprep = NULL, *nepk = NULL;
    /* The endpoint first: s3:// URIs that name their own are checked against it. */
    node_t *epk = NULL, *epv = find_key(root, "endpoint", &epk);
    if (epv && epv->kind == N_SCALAR && !is_null(epv))
        x->ep_top = epk;
    /* The target next: op paths are checked against it. */
    node_t *tv = find_key(root, "target", NULL);
    if (tv && get_str(x, "target", tv, &c->target) == 0) {
        if (is_net_uri(c->target))
            x->saw_net = 1;
        if (check_uri(x, "target", tv, c->target) < 0) {
            free(c->target);
            c->target = strdup("file:///invalid/"); /* keeps op checks quiet */
            if (!c->target)
                x->nomem = 1;
        } else if (x->ep_top && s3_names_endpoint(c->target)) {
            uri_vs_endpoint(x, "target", tv, c->target, x->ep_top, "the top-level");
        }
    }
    for (size_t i = 0; i < npairs(root); i++) {
        const char *k = pair_key(x, root, i);
        const node_t *v = pair_v(root, i);
        const node_t *kn = root->kids[2 * i];
        if (!k)
            continue;
        if (!strcmp(k, "target")) {
            continue;
        } else if (!strcmp(k, "duration")) {
            uint64_t ns;
            if (get_duration(x, k, v, &ns) < 0)
                continue;
            if (ns == 0)
                err_at(x, v, "'duration' must be greater than 0");
            else
                c->duration_ns = ns;
        } else if (!strcmp(k, "concurrency")) {
            get_u32(x, k, v, 1, MAX_CONCURRENCY, &c->concurrency);
        } else if (!strcmp(k, "workload")) {
            nwl = v;
        } else if (!strcmp(k, "prepare")) {
            nprep = v;
            walk_prepare(x, v, c);
        } else if (!strcmp(k, "io_rate")) {
            walk_io_rate(x, v, c);
        } else if (!strcmp(k, "error_handling")) {
            walk_errh(x, v, c);
        } else if (!strcmp(k, "perf_log")) {
            walk_perf_log(x, v, c);
        } else if (!strcmp(k, "endpoint")) {
            nepk = kn;
            if (get_str(x, k, v, &c->net.endpoint) == 0)
                check_endpoint(x, v, c->net.endpoint);
        } else if (!strcmp(k, "s3")) {
            walk_s3(x, v, c);
        } else if (!strcmp(k, "http")) {
            walk_http(x, v, c);
        } else if (!strcmp(k, "distributed")) {
            walk_distributed(x, v, c);
        } else {
            unknown_key(x, kn, &ks);
        }
    }
    if (nwl)
        walk_workload(x, nwl, c);
    if (nepk && c->net.endpoint && !x->saw_net)
        err_at(x, nepk, "'endpoint' applies to s3://, az:// and gs:// URIs only; this config has "
                        "none");
    if (!nwl && !nprep)
        err_at(x, root,
               "nothing to run: the config needs a 'workload' list (or a 'prepare' block)");
    else if (nwl && !nprep && (is_null(nwl) || (nwl->kind == N_SEQ && nwl->n == 0)))
        err_at(x, nwl, "'workload' is empty and there is no 'prepare' block: nothing to run");
}

/* ---------------------------------------------------------------- load / free --------------- */

void wl_config_defaults(wl_config_t *c)
{
    memset(c, 0, sizeof(*c));
    c->duration_ns = 60ULL * 1000000000ULL;
    c->concurrency = 16;
    c->prepare.cleanup_mode = WL_CLEANUP_TOLERANT;
    c->io_rate.distribution = WL_RATE_EXPONENTIAL;
    c->errh.max_total_errors = 100;
    c->errh.error_rate_threshold = 5.0;
    c->errh.backoff_duration_ns = 5ULL * 1000000000ULL;
    c->errh.error_rate_window_ns = 1000000000ULL;
    c->errh.retry_on_error = 0;
    c->errh.max_retries = 3;
    c->errh.initial_retry_delay_ms = 100;
    c->errh.max_retry_delay_ms = 5000;
    c->errh.retry_backoff_multiplier = 2.0;
    c->errh.retry_jitter_factor = 0.25;
    c->perf_log.interval_ns = 1000000000ULL;
    c->net.create_bucket = 1;
    c->net.multipart_threshold = 64ULL << 20;
    c->net.part_size = 16ULL << 20;
    c->net.part_concurrency = 8;
    c->net.connect_timeout_ns = 5ULL * 1000000000ULL;
    c->net.io_timeout_ns = 30ULL * 1000000000ULL;
    c->net.h2_max_streams = 100;
    c->net.h2_stream_window = 4ULL << 20;
    wl_dist_defaults(&c->dist);
}

void wl_config_free(wl_config_t *c)
{
    if (!c)
        return;
    free(c->source);
    free(c->target);
    for (size_t i = 0; i < c->nops; i++)
        free(c->ops[i].path);
    free(c->ops);
    for (size_t i = 0; i < c->prepare.nensure; i++) {
        free(c->prepare.ensure[i].base_uri);
        free(c->prepare.ensure[i].endpoint);
    }
    free(c->net.endpoint);
    free(c->net.ca_bundle);
    free(c->prepare.ensure);
    wl_dist_free(&c->dist);
    memset(c, 0, sizeof(*c));
}

static int diag_cmp(const wl_diag_t *a, const wl_diag_t *b)
{
    if (a->line != b->line)
        return a->line < b->line ? -1 : 1;
    if (a->col != b->col)
        return a->col < b->col ? -1 : 1;
    return 0;
}

/* Stable sort of this load's diagnostics by position, dropping exact repeats (a node reached
 * twice through an alias reports the same problem twice). */
static void diags_finish(ctx_t *x)
{
    wl_diags_t *d = x->d;
    if (d->n == x->first)
        return; /* also: d->v may be NULL */
    wl_diag_t *v = d->v + x->first;
    size_t n = d->n - x->first;
    for (size_t i = 1; i < n; i++) {
        wl_diag_t t = v[i];
        size_t j = i;
        while (j > 0 && diag_cmp(&v[j - 1], &t) > 0) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = t;
    }
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        int dup = 0;
        for (size_t j = out; j-- > 0 && !diag_cmp(&v[j], &v[i]);)
            if (!strcmp(v[j].msg, v[i].msg))
                dup = 1;
        if (dup)
            free(v[i].msg);
        else
            v[out++] = v[i];
    }
    d->n = x->first + out;
    if (x->dropped)
        err_at_lc(x, 0, 0, "too many errors; %zu more were not shown", x->dropped);
}

static int set_source(wl_diags_t *d, const char *source)
{
    char *s = strdup(source ? source : "<config>");
    if (!s)
        return -ENOMEM;
    free(d->source);
    d->source = s;
    return 0;
}

int wl_config_load_string(const char *source, const char *text, size_t len, wl_config_t *c,
                          wl_diags_t *d)
{
    wl_diags_t local;
    if (!d) {
        wl_diags_init(&local);
        d = &local;
    }
    ctx_t x;
    memset(&x, 0, sizeof(x));
    x.d = d;
    x.first = d->n;
    wl_config_defaults(c);
    int rc = set_source(d, source);
    if (rc == 0) {
        int bad;
        node_t *root = parse_tree(&x, text ? text : "", text ? len : 0, &bad);
        if (!bad && !x.nomem)
            walk_top(&x, root, c);
        tree_free(&x);
        if (!x.nomem)
            diags_finish(&x);
        if (x.nomem)
            rc = -ENOMEM;
        else if (d->n > x.first)
            rc = WL_ECONFIG;
        else if (!(c->source = strdup(source ? source : "<config>")))
            rc = -ENOMEM;
    }
    if (rc != 0)
        wl_config_free(c);
    if (d == &local)
        wl_diags_free(&local);
    return rc;
}

int wl_config_load_file(const char *path, wl_config_t *c, wl_diags_t *d)
{
    wl_diags_t local;
    if (!d) {
        wl_diags_init(&local);
        d = &local;
    }
    memset(c, 0, sizeof(*c));
    int rc = 0;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        rc = -errno;
    } else {
        size_t cap = 0;
        for (;;) {
            if (len == cap) {
                size_t ncap = cap ? cap * 2 : 65536;
                char *nb = realloc(buf, ncap + 1);
                if (!nb) {
                    rc = -ENOMEM;
                    break;
                }
                buf = nb;
                cap = ncap;
            }
            size_t r = fread(buf + len, 1, cap - len, f);
            len += r;
            if (r == 0) {
                if (ferror(f))
                    rc = -(errno ? errno : EIO);
                break;
            }
        }
        fclose(f);
    }
    if (rc != 0) {
        ctx_t x;
        memset(&x, 0, sizeof(x));
        x.d = d;
        x.first = d->n;
        if (set_source(d, path) == 0)
            err_at_lc(&x, 0, 0, "cannot read config: %s", strerror(-rc));
        free(buf);
        if (d == &local)
            wl_diags_free(&local);
        return rc;
    }
    rc = wl_config_load_string(path, buf ? buf : "", len, c, d);
    free(buf);
    if (d == &local)
        wl_diags_free(&local);
    return rc;
}

int wl_config_op_uri(const wl_config_t *c, const wl_op_cfg_t *op, char *out, size_t len)
{
    const char *path = op->path ? op->path : "";
    int n;
    if (strstr(path, "://")) {
        n = snprintf(out, len, "%s", path);
    } else {
        if (!c->target)
            return -EINVAL;
        size_t tl = strlen(c->target);
        int tslash = tl > 0 && c->target[tl - 1] == '/';
        while (*path == '/')
            path++;
        if (!*path)
            n = snprintf(out, len, "%s", c->target);
        else
            n = snprintf(out, len, "%s%s%s", c->target, tslash ? "" : "/", path);
    }
    if (n < 0 || (size_t)n >= len)
        return -EINVAL;
    return 0;
}

/* ---------------------------------------------------------------- per-agent view ------------ */

/* Replaces the leading `from` of *u by `to` (both directory URIs). */
static int rebase(char **u, const char *from, const char *to)
{
    size_t fl = strlen(from);
    if (!*u || strncmp(*u, from, fl))
        return 0;
    char *n = NULL;
    if (asprintf(&n, "%s%s", to, *u + fl) < 0)
        return -ENOMEM;
    free(*u);
    *u = n;
    return 0;
}

static int with_slash(const char *s, char **out)
{
    size_t l = strlen(s);
    return asprintf(out, "%s%s", s, l && s[l - 1] == '/' ? "" : "/") < 0 ? -ENOMEM : 0;
}

int wl_config_apply_agent(wl_config_t *c, const char *target_override, uint32_t concurrency,
                          const char *prefix)
{
    int rc = 0;
    if (concurrency)
        c->concurrency = concurrency;
    /* Every directory a URI may live under, longest first, with its new place. */
    size_t nd = c->prepare.nensure + 1;
    char **from = calloc(nd, sizeof(char *)), **to = calloc(nd, sizeof(char *));
    if (!from || !to) {
        free(from);
        free(to);
        return -ENOMEM;
    }
    size_t k = 0;
    if (c->target) {
        if ((rc = with_slash(c->target, &from[k])) < 0)
            goto out;
        const char *t = target_override ? target_override : c->target;
        if (prefix) {
            char *b = NULL;
            if ((rc = with_slash(t, &b)) < 0)
                goto out;
            rc = asprintf(&to[k], "%s%s", b, prefix) < 0 ? -ENOMEM : 0;
            free(b);
        } else {
            rc = with_slash(t, &to[k]);
        }
        if (rc < 0)
            goto out;
        k++;
    }
    for (size_t i = 0; i < c->prepare.nensure; i++) {
        if ((rc = with_slash(c->prepare.ensure[i].base_uri, &from[k])) < 0)
            goto out;
        /* a set under the target moves with it; one elsewhere gets the prefix itself */
        char *moved = strdup(from[k]);
        if (!moved || (k > 0 && c->target && (rc = rebase(&moved, from[0], to[0])) < 0)) {
            free(moved);
            rc = rc ? rc : -ENOMEM;
            goto out;
        }
        if (prefix && (!c->target || strcmp(moved, from[k]) == 0)) {
            char *p = NULL;
            if (asprintf(&p, "%s%s", moved, prefix) < 0) {
                free(moved);
                rc = -ENOMEM;
                goto out;
            }
            free(moved);
            moved = p;
        }
        to[k++] = moved;
    }
    /* sort longest `from` first so the most specific directory wins */
    for (size_t i = 1; i < k; i++)
        for (size_t j = i; j > 0 && strlen(from[j]) > strlen(from[j - 1]); j--) {
            char *t = from[j];
            from[j] = from[j - 1];
            from[j - 1] = t;
            t = to[j];
            to[j] = to[j - 1];
            to[j - 1] = t;
        }
    for (size_t i = 0; i < c->nops; i++) {
        if (!strstr(c->ops[i].path, "://"))
            continue;
        for (size_t j = 0; j < k; j++) {
            size_t l = strlen(from[j]);
            if (!strncmp(c->ops[i].path, from[j], l) ||
                (strlen(c->ops[i].path) == l - 1 && !strncmp(c->ops[i].path, from[j], l - 1))) {
                char *n = NULL;
                const char *rest = strlen(c->ops[i].path) >= l ? c->ops[i].path + l : "";
                if (asprintf(&n, "%s%s", to[j], rest) < 0) {
                    rc = -ENOMEM;
                    goto out;
                }
                free(c->ops[i].path);
                c->ops[i].path = n;
                break;
            }
        }
    }
    for (size_t i = 0; i < c->prepare.nensure; i++) {
        char *b = c->prepare.ensure[i].base_uri, *w = NULL;
        if ((rc = with_slash(b, &w)) < 0)
            goto out;
        for (size_t j = 0; j < k; j++)
            if (!strcmp(w, from[j])) {
                char *n = strdup(to[j]);
                if (!n) {
                    free(w);
                    rc = -ENOMEM;
                    goto out;
                }
                free(c->prepare.ensure[i].base_uri);
                c->prepare.ensure[i].base_uri = n;
                break;
            }
        free(w);
    }
    if (c->target) {
        for (size_t j = 0; j < k; j++) {
            char *w = NULL;
            if ((rc = with_slash(c->target, &w)) < 0)
                goto out;
            int same = !strcmp(w, from[j]);
            free(w);
            if (same) {
                char *n = strdup(to[j]);
                if (!n) {
                    rc = -ENOMEM;
                    goto out;
                }
                free(c->target);
                c->target = n;
                break;
            }
        }
    }
out:
    for (size_t i = 0; i < nd; i++) {
        free(from[i]);
        free(to[i]);
    }
    free(from);
    free(to);
    return rc;
}
