/* Azure Blob XML response parsers (expat) and the Put Block List writer. See sto/azxml.h.
 *
 * As in s3xml.c, a stack of contexts follows the open elements: a known container, a leaf whose
 * text is collected, or a skipped subtree. A rules table says which child of which container is
 * what; one text buffer serves the one leaf open at a time. */
#include <errno.h>
#include <expat.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rx/err.h"
#include "sto/azxml.h"
#include "sto/err.h"

enum ctx { C_NONE, C_LIST, C_BLOBS, C_BLOB, C_PROPS, C_PREFIX, C_ERROR, C_LEAF, C_SKIP };

enum field {
    F_NONE,
    F_PREFIX,
    F_MARKER,
    F_MAXRES,
    F_DELIM,
    F_NMARKER,
    F_BLOB_NAME,
    F_SIZE,
    F_ETAG,
    F_LM,
    F_BP_NAME,
    F_CODE,
    F_MSG,
    F_AUTH,
    F_PROPS, /* not a leaf: <Properties> seen in this <Blob> */
    F_COUNT
};

static const char *const field_names[F_COUNT] = {
    [F_NONE] = "?",           [F_PREFIX] = "Prefix",
    [F_MARKER] = "Marker",    [F_MAXRES] = "MaxResults",
    [F_DELIM] = "Delimiter",  [F_NMARKER] = "NextMarker",
    [F_BLOB_NAME] = "Name",   [F_SIZE] = "Content-Length",
    [F_ETAG] = "Etag",        [F_LM] = "Last-Modified",
    [F_BP_NAME] = "Name",     [F_CODE] = "Code",
    [F_MSG] = "Message",      [F_AUTH] = "AuthenticationErrorDetail",
    [F_PROPS] = "Properties",
};

/* bound in bytes; truncated instead of failing when trunc */
static const struct field_desc {
    unsigned short max;
    unsigned char trunc;
} fields[F_COUNT] = {
    [F_PREFIX] = {STO_AZXML_MARKER_MAX, 0},  [F_MARKER] = {STO_AZXML_MARKER_MAX, 0},
    [F_MAXRES] = {STO_AZXML_SHORT_MAX, 0},   [F_DELIM] = {STO_AZXML_MARKER_MAX, 0},
    [F_NMARKER] = {STO_AZXML_MARKER_MAX, 0}, [F_BLOB_NAME] = {STO_AZXML_NAME_MAX, 0},
    [F_SIZE] = {STO_AZXML_SHORT_MAX, 0},     [F_ETAG] = {STO_AZXML_SHORT_MAX, 0},
    [F_LM] = {STO_AZXML_SHORT_MAX, 0},       [F_BP_NAME] = {STO_AZXML_NAME_MAX, 0},
    [F_CODE] = {STO_AZXML_CODE_MAX, 1},      [F_MSG] = {STO_AZXML_MESSAGE_MAX, 1},
    [F_AUTH] = {STO_AZXML_AUTH_MAX, 1},
};

/* An encoded Name may take three bytes of text per decoded byte. */
#define TEXT_CAP (3 * STO_AZXML_NAME_MAX)
_Static_assert(TEXT_CAP >= STO_AZXML_MARKER_MAX && TEXT_CAP >= STO_AZXML_MESSAGE_MAX,
               "one text buffer for every field");

static const struct rule {
    unsigned char ctx;
    const char *elem;
    unsigned char child, field;
} rules[] = {
    {C_LIST, "Prefix", C_LEAF, F_PREFIX},
    {C_LIST, "Marker", C_LEAF, F_MARKER},
    {C_LIST, "MaxResults", C_LEAF, F_MAXRES},
    {C_LIST, "Delimiter", C_LEAF, F_DELIM},
    {C_LIST, "NextMarker", C_LEAF, F_NMARKER},
    {C_LIST, "Blobs", C_BLOBS, F_NONE},
    {C_BLOBS, "Blob", C_BLOB, F_NONE},
    {C_BLOBS, "BlobPrefix", C_PREFIX, F_NONE},
    {C_BLOB, "Name", C_LEAF, F_BLOB_NAME},
    {C_BLOB, "Properties", C_PROPS, F_NONE},
    {C_PROPS, "Content-Length", C_LEAF, F_SIZE},
    {C_PROPS, "Etag", C_LEAF, F_ETAG},
    {C_PROPS, "Last-Modified", C_LEAF, F_LM},
    {C_PREFIX, "Name", C_LEAF, F_BP_NAME},
    {C_ERROR, "Code", C_LEAF, F_CODE},
    {C_ERROR, "Message", C_LEAF, F_MSG},
    {C_ERROR, "AuthenticationErrorDetail", C_LEAF, F_AUTH},
};

static const char *const ctx_names[] = {
    [C_NONE] = "?",           [C_LIST] = "EnumerationResults",
    [C_BLOBS] = "Blobs",      [C_BLOB] = "Blob",
    [C_PROPS] = "Properties", [C_PREFIX] = "BlobPrefix",
    [C_ERROR] = "Error",      [C_LEAF] = "leaf",
    [C_SKIP] = "skipped",
};

static const struct rule *rule_find(enum ctx c, const char *e)
{
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
        if (rules[i].ctx == c && strcmp(rules[i].elem, e) == 0)
            return &rules[i];
    return NULL;
}

/* Elements that mean the document is not what it claims when they appear in the wrong place. */
static bool structural(const char *e)
{
    return !strcmp(e, "Blobs") || !strcmp(e, "Blob") || !strcmp(e, "BlobPrefix") ||
           !strcmp(e, "EnumerationResults");
}

#define NS_SEP '|'

struct state {
    int err;
    bool done, finished;
    int depth;
    unsigned char ctx[STO_AZXML_DEPTH_MAX];
    enum field field; /* open leaf */
    bool encoded;     /* the open Name has Encoded="true" */
    uint32_t seen;    /* fields seen in the open containers */
    size_t text_len;
    bool text_trunc;
    /* the entry being built */
    uint64_t e_size;
    size_t e_name_len;
    char e_name[STO_AZXML_NAME_MAX + 1];
    char e_etag[STO_AZXML_SHORT_MAX + 1];
    char e_lm[STO_AZXML_SHORT_MAX + 1];
    char text[TEXT_CAP + 1];
    char detail[STO_AZXML_DETAIL_MAX + 1];
    sto_azxml_doc_t doc;
};

_Static_assert(F_COUNT <= 32, "seen bits are one uint32_t");

struct sto_azxml_parser {
    XML_Parser xp;
    sto_azxml_config_t cfg;
    struct state s;
};

static void fail(sto_azxml_parser_t *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(sto_azxml_parser_t *p, int code, const char *fmt, ...)
{
    if (p->s.err)
        return;
    p->s.err = code;
    int n = snprintf(p->s.detail, sizeof(p->s.detail),
                     "line %lu, column %lu: ", (unsigned long)XML_GetCurrentLineNumber(p->xp),
                     (unsigned long)XML_GetCurrentColumnNumber(p->xp));
    if (n >= 0 && (size_t)n < sizeof(p->s.detail)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->s.detail + n, sizeof(p->s.detail) - (size_t)n, fmt, ap);
        va_end(ap);
    }
    XML_StopParser(p->xp, XML_FALSE);
}

static const char *local_name(const char *name)
{
    const char *sep = strrchr(name, NS_SEP);
    return sep ? sep + 1 : name;
}

static bool seen(const sto_azxml_parser_t *p, enum field f)
{
    return (p->s.seen >> f) & 1u;
}

static int parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    while (len && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) {
        s++;
        len--;
    }
    while (len &&
           (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\n' || s[len - 1] == '\r'))
        len--;
    if (len == 0)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* In place, %XX only ('+' stays: Azure percent-encodes spaces). Refuses bad escapes and %00. */
static int pct_decode(char *s, size_t *len)
{
    size_t o = 0, n = *len;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            if (h < 0 || l < 0 || (h == 0 && l == 0))
                return -1;
            c = (char)(h * 16 + l);
            i += 2;
        }
        s[o++] = c;
    }
    s[o] = '\0';
    *len = o;
    return 0;
}

static size_t utf8_trim(const char *s, size_t n)
{
    size_t i = n, back = 0;
    while (i > 0 && back < 4) {
        unsigned char c = (unsigned char)s[i - 1];
        if ((c & 0xC0) != 0x80) {
            size_t need = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
            return back + 1 >= need ? n : i - 1;
        }
        i--;
        back++;
    }
    return n;
}

static void copy_str(char *dst, const char *src, size_t len)
{
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static void call_result(sto_azxml_parser_t *p, int rc)
{
    if (rc < 0)
        fail(p, rc, "callback returned %d", rc);
}

static void leaf_end(sto_azxml_parser_t *p)
{
    struct state *s = &p->s;
    sto_azxml_doc_t *d = &s->doc;
    enum field f = s->field;
    const struct field_desc *fd = &fields[f];
    char *t = s->text;
    size_t n = s->text_len;
    t[n] = '\0';
    uint64_t v = 0;
    if (s->encoded && pct_decode(t, &n) != 0) {
        fail(p, STO_EPROTO, "bad percent-encoding in an encoded <Name>");
        return;
    }
    if (fd->trunc) {
        n = s->text_trunc ? utf8_trim(t, n) : n;
        t[n] = '\0';
        if (s->text_trunc)
            d->error.truncated = true;
    } else if (n > fd->max) {
        fail(p, STO_EPROTO, "<%s> longer than %u bytes", field_names[f], (unsigned)fd->max);
        return;
    }
    switch (f) {
    case F_PREFIX:
        copy_str(d->prefix, t, n);
        break;
    case F_MARKER:
        copy_str(d->marker, t, n);
        break;
    case F_DELIM:
        copy_str(d->delimiter, t, n);
        break;
    case F_NMARKER:
        copy_str(d->next_marker, t, n);
        break;
    case F_MAXRES:
        if (parse_u64(t, n, UINT32_MAX, &v) != 0) {
            fail(p, STO_EPROTO, "<MaxResults> is not a number");
            return;
        }
        d->max_results = (uint32_t)v;
        d->has_max_results = true;
        break;
    case F_BLOB_NAME:
    case F_BP_NAME:
        if (n == 0) {
            fail(p, STO_EPROTO, "empty <Name>");
            return;
        }
        copy_str(s->e_name, t, n);
        s->e_name_len = n;
        break;
    case F_SIZE:
        if (parse_u64(t, n, UINT64_MAX, &v) != 0) {
            fail(p, STO_EPROTO, "<Content-Length> is not a size");
            return;
        }
        s->e_size = v;
        break;
    case F_ETAG:
        copy_str(s->e_etag, t, n);
        break;
    case F_LM:
        copy_str(s->e_lm, t, n);
        break;
    case F_CODE:
        copy_str(d->error.code, t, n);
        break;
    case F_MSG:
        copy_str(d->error.message, t, n);
        break;
    case F_AUTH:
        copy_str(d->error.auth_detail, t, n);
        break;
    case F_NONE:
    case F_PROPS:
    case F_COUNT:
        break;
    }
}

static void container_start(sto_azxml_parser_t *p, enum ctx c)
{
    struct state *s = &p->s;
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
        if (rules[i].ctx == c && rules[i].field != F_NONE)
            s->seen &= ~(1u << rules[i].field);
    if (c == C_BLOB || c == C_PREFIX) {
        s->seen &= ~(1u << F_PROPS);
        s->e_size = 0;
        s->e_name_len = 0;
        s->e_name[0] = s->e_etag[0] = s->e_lm[0] = '\0';
    }
}

static void container_end(sto_azxml_parser_t *p, enum ctx c)
{
    struct state *s = &p->s;
    sto_azxml_doc_t *d = &s->doc;
    const sto_azxml_callbacks_t *cb = &p->cfg.cb;
    switch (c) {
    case C_BLOB: {
        if (!seen(p, F_BLOB_NAME)) {
            fail(p, STO_EPROTO, "<Blob> without <Name>");
            return;
        }
        sto_azxml_blob_t b = {
            .name = s->e_name,
            .name_len = s->e_name_len,
            .size = s->e_size,
            .has_size = seen(p, F_SIZE),
            .etag = s->e_etag,
            .last_modified = s->e_lm,
        };
        d->n_blobs++;
        if (cb->blob)
            call_result(p, cb->blob(p->cfg.ud, &b));
        break;
    }
    case C_PREFIX:
        if (!seen(p, F_BP_NAME)) {
            fail(p, STO_EPROTO, "<BlobPrefix> without <Name>");
            return;
        }
        d->n_prefixes++;
        if (cb->prefix)
            call_result(p, cb->prefix(p->cfg.ud, s->e_name, s->e_name_len));
        break;
    case C_ERROR:
        if (!seen(p, F_CODE))
            fail(p, STO_EPROTO, "<Error> without <Code>");
        break;
    default:
        break;
    }
}

static void XMLCALL on_start(void *ud, const XML_Char *qname, const XML_Char **atts)
{
    sto_azxml_parser_t *p = ud;
    struct state *s = &p->s;
    if (s->err)
        return;
    if (s->depth >= STO_AZXML_DEPTH_MAX) {
        fail(p, STO_EPROTO, "more than %d nested elements", STO_AZXML_DEPTH_MAX);
        return;
    }
    const char *e = local_name(qname);
    enum ctx c = C_SKIP;
    if (s->depth == 0) {
        sto_azxml_kind_t k;
        if (!strcmp(e, "EnumerationResults")) {
            k = STO_AZXML_LIST_BLOBS;
            c = C_LIST;
        } else if (!strcmp(e, "Error")) {
            k = STO_AZXML_ERROR;
            c = C_ERROR;
        } else {
            fail(p, STO_EPROTO, "unknown document <%.64s>", e);
            return;
        }
        if (p->cfg.expect != STO_AZXML_ANY && k != p->cfg.expect && k != STO_AZXML_ERROR) {
            fail(p, STO_EPROTO, "unexpected document <%s>", e);
            return;
        }
        s->doc.kind = k;
        s->seen = 0;
        container_start(p, c);
    } else {
        enum ctx parent = (enum ctx)s->ctx[s->depth - 1];
        if (parent == C_LEAF) {
            fail(p, STO_EPROTO, "element <%.64s> inside <%s>", e, field_names[s->field]);
            return;
        }
        if (parent != C_SKIP) {
            const struct rule *r = rule_find(parent, e);
            if (!r && structural(e)) {
                fail(p, STO_EPROTO, "<%s> not expected inside <%s>", e, ctx_names[parent]);
                return;
            }
            if (r && r->field != F_NONE) {
                if (seen(p, (enum field)r->field)) {
                    fail(p, STO_EPROTO, "<%s> repeated in <%s>", e, ctx_names[parent]);
                    return;
                }
                s->seen |= 1u << r->field;
                s->field = (enum field)r->field;
                s->text_len = 0;
                s->text_trunc = false;
                s->encoded = false;
                if (s->field == F_BLOB_NAME || s->field == F_BP_NAME) {
                    for (size_t i = 0; atts && atts[i] && atts[i + 1]; i += 2)
                        if (!strcmp(local_name(atts[i]), "Encoded") &&
                            !strcasecmp(atts[i + 1], "true"))
                            s->encoded = true;
                }
                c = C_LEAF;
            } else if (r) {
                c = (enum ctx)r->child;
                if (c == C_PROPS) {
                    if (seen(p, F_PROPS)) {
                        fail(p, STO_EPROTO, "<Properties> repeated in <Blob>");
                        return;
                    }
                    s->seen |= 1u << F_PROPS;
                }
                container_start(p, c);
            }
        }
    }
    s->ctx[s->depth] = (unsigned char)c;
    s->depth++;
}

static void XMLCALL on_end(void *ud, const XML_Char *qname)
{
    sto_azxml_parser_t *p = ud;
    struct state *s = &p->s;
    (void)qname;
    if (s->err || s->depth == 0)
        return;
    s->depth--;
    enum ctx c = (enum ctx)s->ctx[s->depth];
    if (c == C_LEAF)
        leaf_end(p);
    else if (c != C_SKIP)
        container_end(p, c);
    if (s->depth == 0 && !s->err)
        s->done = true;
}

static void XMLCALL on_text(void *ud, const XML_Char *txt, int len)
{
    sto_azxml_parser_t *p = ud;
    struct state *s = &p->s;
    if (s->err || s->depth == 0 || s->ctx[s->depth - 1] != C_LEAF || len <= 0)
        return;
    const struct field_desc *fd = &fields[s->field];
    size_t cap = s->encoded ? 3 * (size_t)fd->max : fd->max;
    size_t n = (size_t)len;
    if (s->text_len + n > cap) {
        if (!fd->trunc) {
            fail(p, STO_EPROTO, "<%s> longer than %u bytes", field_names[s->field],
                 (unsigned)fd->max);
            return;
        }
        s->text_trunc = true;
        n = cap - s->text_len;
    }
    memcpy(s->text + s->text_len, txt, n);
    s->text_len += n;
}

static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal_subset)
{
    (void)name, (void)sysid, (void)pubid, (void)has_internal_subset;
    fail(ud, STO_EPROTO, "DOCTYPE refused");
}

static void XMLCALL on_entity_decl(void *ud, const XML_Char *name, int is_param,
                                   const XML_Char *value, int value_len, const XML_Char *base,
                                   const XML_Char *sysid, const XML_Char *pubid,
                                   const XML_Char *notation)
{
    (void)name, (void)is_param, (void)value, (void)value_len, (void)base, (void)sysid;
    (void)pubid, (void)notation;
    fail(ud, STO_EPROTO, "entity declaration refused");
}

static void expat_setup(sto_azxml_parser_t *p)
{
    XML_SetUserData(p->xp, p);
    XML_SetElementHandler(p->xp, on_start, on_end);
    XML_SetCharacterDataHandler(p->xp, on_text);
    XML_SetStartDoctypeDeclHandler(p->xp, on_doctype);
    XML_SetEntityDeclHandler(p->xp, on_entity_decl);
    XML_SetParamEntityParsing(p->xp, XML_PARAM_ENTITY_PARSING_NEVER);
}

int sto_azxml_new(const sto_azxml_config_t *cfg, sto_azxml_parser_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!cfg || cfg->expect < STO_AZXML_ANY || cfg->expect > STO_AZXML_ERROR)
        return -EINVAL;
    sto_azxml_parser_t *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->cfg = *cfg;
    p->xp = XML_ParserCreateNS(NULL, NS_SEP);
    if (!p->xp) {
        free(p);
        return -ENOMEM;
    }
    expat_setup(p);
    *out = p;
    return 0;
}

void sto_azxml_free(sto_azxml_parser_t *p)
{
    if (!p)
        return;
    XML_ParserFree(p->xp);
    free(p);
}

int sto_azxml_reset(sto_azxml_parser_t *p)
{
    memset(&p->s, 0, sizeof(p->s));
    if (XML_ParserReset(p->xp, NULL) != XML_TRUE) {
        p->s.err = -ENOMEM;
        return -ENOMEM;
    }
    expat_setup(p);
    return 0;
}

static int expat_error(sto_azxml_parser_t *p)
{
    enum XML_Error e = XML_GetErrorCode(p->xp);
    int code = e == XML_ERROR_NO_MEMORY ? -ENOMEM : STO_EPROTO;
    snprintf(p->s.detail, sizeof(p->s.detail), "line %lu, column %lu: %s",
             (unsigned long)XML_GetCurrentLineNumber(p->xp),
             (unsigned long)XML_GetCurrentColumnNumber(p->xp), XML_ErrorString(e));
    p->s.err = code;
    return code;
}

int sto_azxml_feed(sto_azxml_parser_t *p, const void *data, size_t len, bool is_final)
{
    if (p->s.err)
        return p->s.err;
    if (p->s.finished)
        return RX_ESTATE;
    const char *d = data;
    if (!d)
        len = 0;
    do {
        size_t chunk = len > (size_t)INT_MAX / 2 ? (size_t)INT_MAX / 2 : len;
        bool last = chunk == len;
        if (XML_Parse(p->xp, d, (int)chunk, last && is_final) != XML_STATUS_OK)
            return p->s.err ? p->s.err : expat_error(p);
        if (last)
            break;
        d += chunk;
        len -= chunk;
    } while (len > 0);
    if (is_final) {
        if (!p->s.done) {
            snprintf(p->s.detail, sizeof(p->s.detail), "document incomplete");
            p->s.err = STO_EPROTO;
            return p->s.err;
        }
        p->s.finished = true;
    }
    return 0;
}

bool sto_azxml_done(const sto_azxml_parser_t *p)
{
    return p->s.done;
}

const sto_azxml_doc_t *sto_azxml_doc(const sto_azxml_parser_t *p)
{
    return &p->s.doc;
}

const char *sto_azxml_detail(const sto_azxml_parser_t *p)
{
    return p->s.detail;
}

/* ---- Put Block List body ------------------------------------------------------------------ */

struct wbuf {
    char *buf;
    size_t cap, len;
    bool over;
};

static void put(struct wbuf *w, const char *s)
{
    size_t n = strlen(s);
    if (w->over || n >= w->cap - w->len) {
        w->over = true;
        return;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

/* Block ids are base64 in practice; escape the XML specials anyway. */
static void put_escaped(struct wbuf *w, const char *s)
{
    char one[2] = {0, 0};
    for (; *s; s++) {
        if (*s == '&')
            put(w, "&amp;");
        else if (*s == '<')
            put(w, "&lt;");
        else if (*s == '>')
            put(w, "&gt;");
        else {
            one[0] = *s;
            put(w, one);
        }
    }
}

int sto_azxml_block_list_body(const char *const ids[], size_t n, char *buf, size_t cap)
{
    if (!ids || n == 0 || n > 50000 || (!buf && cap > 0))
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!ids[i] || !ids[i][0] || strlen(ids[i]) > 64)
            return -EINVAL;
        for (const char *q = ids[i]; *q; q++)
            if ((unsigned char)*q < 0x20 || *q == 0x7f)
                return -EINVAL;
    }
    struct wbuf w = {buf, cap, 0, cap == 0};
    put(&w, "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<BlockList>");
    for (size_t i = 0; i < n; i++) {
        put(&w, "<Latest>");
        put_escaped(&w, ids[i]);
        put(&w, "</Latest>");
    }
    put(&w, "</BlockList>");
    if (cap > 0)
        buf[w.over ? 0 : w.len] = '\0';
    if (w.over || w.len > INT_MAX)
        return -ENOSPC;
    return (int)w.len;
}
