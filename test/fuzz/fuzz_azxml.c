/* Fuzz target for the Azure Blob XML parsers (sto/azxml.h) and the Put Block List writer.
 *
 * Each input is parsed whole, in two chunks split at a point derived from the input, and (for
 * small inputs) one byte at a time, expecting a listing, an error, or either. Every way must give
 * the same return code, the same events (hashed) and the same document fields; invariants on the
 * events, error codes, sticky errors and the writer are checked. A violation aborts. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rx/err.h"
#include "sto/azxml.h"
#include "sto/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);                  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct events {
    uint64_t h;
    size_t n_blobs, n_prefixes;
};

static void mix(struct events *e, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        e->h ^= b[i];
        e->h *= 0x100000001b3ULL;
    }
}

static void mix_str(struct events *e, const char *s, size_t max)
{
    CHECK(s != NULL);
    size_t n = strlen(s);
    CHECK(n <= max);
    mix(e, s, n + 1);
}

static int on_blob(void *ud, const sto_azxml_blob_t *b)
{
    struct events *e = ud;
    CHECK(b->name_len > 0 && b->name_len <= STO_AZXML_NAME_MAX && strlen(b->name) == b->name_len);
    CHECK(b->has_size || b->size == 0);
    mix(e, "B", 1);
    mix_str(e, b->name, STO_AZXML_NAME_MAX);
    mix(e, &b->size, sizeof(b->size));
    mix(e, &b->has_size, sizeof(b->has_size));
    mix_str(e, b->etag, STO_AZXML_SHORT_MAX);
    mix_str(e, b->last_modified, STO_AZXML_SHORT_MAX);
    e->n_blobs++;
    return 0;
}

static int on_prefix(void *ud, const char *name, size_t len)
{
    struct events *e = ud;
    CHECK(len > 0 && len <= STO_AZXML_NAME_MAX && strlen(name) == len);
    mix(e, "P", 1);
    mix(e, name, len);
    e->n_prefixes++;
    return 0;
}

struct outcome {
    int rc;
    struct events ev;
    sto_azxml_doc_t doc;
};

static void check_outcome(sto_azxml_parser_t *p, const sto_azxml_config_t *cfg, int rc,
                          struct outcome *out)
{
    const sto_azxml_doc_t *d = sto_azxml_doc(p);
    if (rc == 0) {
        CHECK(sto_azxml_done(p));
        CHECK(d->kind != STO_AZXML_ANY);
        CHECK(cfg->expect == STO_AZXML_ANY || d->kind == cfg->expect || d->kind == STO_AZXML_ERROR);
        CHECK(sto_azxml_detail(p)[0] == '\0');
        CHECK(sto_azxml_feed(p, "x", 1, true) == RX_ESTATE);
    } else {
        CHECK(rc == STO_EPROTO || rc == -ENOMEM);
        CHECK(sto_azxml_detail(p)[0] != '\0');
        CHECK(strlen(sto_azxml_detail(p)) <= STO_AZXML_DETAIL_MAX);
        CHECK(sto_azxml_feed(p, "<", 1, false) == rc); /* sticky */
    }
    CHECK(d->n_blobs == out->ev.n_blobs && d->n_prefixes == out->ev.n_prefixes);
    CHECK(strlen(d->prefix) <= STO_AZXML_MARKER_MAX && strlen(d->marker) <= STO_AZXML_MARKER_MAX);
    CHECK(strlen(d->next_marker) <= STO_AZXML_MARKER_MAX);
    CHECK(strlen(d->delimiter) <= STO_AZXML_MARKER_MAX);
    CHECK(strlen(d->error.code) <= STO_AZXML_CODE_MAX);
    CHECK(strlen(d->error.message) <= STO_AZXML_MESSAGE_MAX);
    CHECK(strlen(d->error.auth_detail) <= STO_AZXML_AUTH_MAX);
    out->rc = rc;
    memcpy(&out->doc, d, sizeof(*d));
}

static void same(const struct outcome *a, const struct outcome *b)
{
    /* Where expat notices malformed input depends on the chunks (text before a bad byte is
     * delivered, and may hit a length limit, only when a chunk ends inside it), so two failed
     * runs need only both fail. */
    if (a->rc != 0 && b->rc != 0)
        return;
    CHECK(a->rc == b->rc);
    CHECK(a->ev.h == b->ev.h);
    CHECK(memcmp(&a->doc, &b->doc, sizeof(a->doc)) == 0);
}

/* mode 0: whole; 1: two chunks split at `split`; 2: one byte at a time. */
static void parse(sto_azxml_parser_t *p, const sto_azxml_config_t *cfg, struct outcome *out,
                  const uint8_t *data, size_t size, int mode, size_t split)
{
    int rc = 0;
    if (mode == 0) {
        rc = sto_azxml_feed(p, data, size, true);
    } else if (mode == 1) {
        rc = sto_azxml_feed(p, data, split, false);
        if (rc == 0)
            rc = sto_azxml_feed(p, data + split, size - split, true);
    } else {
        for (size_t i = 0; i < size && rc == 0; i++)
            rc = sto_azxml_feed(p, data + i, 1, false);
        if (rc == 0)
            rc = sto_azxml_feed(p, NULL, 0, true);
    }
    check_outcome(p, cfg, rc, out);
}

static void run_config(sto_azxml_kind_t expect, const uint8_t *data, size_t size, size_t split,
                       bool bytewise)
{
    static struct outcome whole, other;
    sto_azxml_config_t cfg = {.expect = expect, .cb = {on_blob, on_prefix}};
    sto_azxml_parser_t *p = NULL;
    memset(&whole, 0, sizeof(whole));
    memset(&other, 0, sizeof(other));
    cfg.ud = &whole.ev;
    if (sto_azxml_new(&cfg, &p) != 0)
        return;
    parse(p, &cfg, &whole, data, size, 0, 0);
    sto_azxml_free(p);

    cfg.ud = &other.ev;
    if (sto_azxml_new(&cfg, &p) != 0)
        return;
    parse(p, &cfg, &other, data, size, 1, split);
    same(&whole, &other);
    if (bytewise) {
        CHECK(sto_azxml_reset(p) == 0);
        memset(&other, 0, sizeof(other));
        parse(p, &cfg, &other, data, size, 2, 0);
        same(&whole, &other);
    }
    sto_azxml_free(p);
}

static void writer(const uint8_t *data, size_t size)
{
    /* up to 8 ids separated by NUL bytes in the input */
    static char idbuf[1024];
    static char out[4096], out2[4096];
    size_t n = size < sizeof(idbuf) - 1 ? size : sizeof(idbuf) - 1;
    memcpy(idbuf, data, n);
    idbuf[n] = '\0';
    const char *ids[8];
    size_t nk = 0;
    for (size_t i = 0; i <= n && nk < 8;) {
        ids[nk++] = idbuf + i;
        i += strlen(idbuf + i) + 1;
    }
    int rc = sto_azxml_block_list_body(ids, nk, out, sizeof(out));
    CHECK(rc == -EINVAL || rc == -ENOSPC || rc >= 0);
    if (rc >= 0) {
        CHECK(strlen(out) == (size_t)rc);
        CHECK(sto_azxml_block_list_body(ids, nk, out2, (size_t)rc) == -ENOSPC);
        CHECK(sto_azxml_block_list_body(ids, nk, out2, (size_t)rc + 1) == rc);
        CHECK(memcmp(out, out2, (size_t)rc + 1) == 0);
        /* with ASCII ids, what we write is well-formed XML: the parser gets as far as refusing
         * its (unknown) root */
        bool ascii = true;
        for (size_t i = 0; i < (size_t)rc; i++)
            ascii = ascii && (unsigned char)out[i] < 0x80;
        if (!ascii)
            return;
        sto_azxml_config_t cfg = {.expect = STO_AZXML_ANY};
        sto_azxml_parser_t *p = NULL;
        if (sto_azxml_new(&cfg, &p) == 0) {
            int prc = sto_azxml_feed(p, out, (size_t)rc, true);
            CHECK(prc == STO_EPROTO && strstr(sto_azxml_detail(p), "unknown document"));
            sto_azxml_free(p);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 0x100000001b3ULL;
    size_t split = size ? (size_t)(h % (size + 1)) : 0;
    bool bytewise = size <= 4096;
    run_config(STO_AZXML_ANY, data, size, split, bytewise);
    run_config(STO_AZXML_LIST_BLOBS, data, size, size - split, false);
    run_config(STO_AZXML_ERROR, data, size, split / 2, false);
    writer(data, size);
    return 0;
}
