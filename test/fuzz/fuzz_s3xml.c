/* Fuzz target for the S3 XML parsers (sto/s3xml.h) and body writers.
 *
 * Each input is parsed as a whole, in two chunks split at a point derived from the input, and
 * (for small inputs) one byte at a time, with several parser configurations. Every way must give
 * the same return code, the same events (hashed) and the same document fields. Invariants on
 * events, error codes, sticky errors and the writers are checked; a violation aborts. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rx/err.h"
#include "sto/s3xml.h"

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
    size_t n_objects, n_prefixes, n_deleted, n_delete_errors, n_parts, n_buckets;
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

static int on_object(void *ud, const sto_s3xml_object_t *o)
{
    struct events *e = ud;
    CHECK(o->key_len > 0 && o->key_len <= STO_S3XML_KEY_MAX && strlen(o->key) == o->key_len);
    CHECK(o->has_size || o->size == 0);
    mix(e, "O", 1);
    mix_str(e, o->key, STO_S3XML_KEY_MAX);
    mix(e, &o->size, sizeof(o->size));
    mix_str(e, o->etag, STO_S3XML_ETAG_MAX);
    mix_str(e, o->last_modified, STO_S3XML_SHORT_MAX);
    mix_str(e, o->storage_class, STO_S3XML_SHORT_MAX);
    e->n_objects++;
    return 0;
}

static int on_prefix(void *ud, const char *prefix, size_t len)
{
    struct events *e = ud;
    CHECK(strlen(prefix) == len && len <= STO_S3XML_KEY_MAX);
    mix(e, "P", 1);
    mix(e, prefix, len);
    e->n_prefixes++;
    return 0;
}

static int on_deleted(void *ud, const char *key, size_t len)
{
    struct events *e = ud;
    CHECK(strlen(key) == len && len <= STO_S3XML_KEY_MAX);
    mix(e, "D", 1);
    mix(e, key, len);
    e->n_deleted++;
    return 0;
}

static int on_delete_error(void *ud, const sto_s3xml_delete_error_t *de)
{
    struct events *e = ud;
    CHECK(strlen(de->key) == de->key_len);
    mix(e, "E", 1);
    mix_str(e, de->key, STO_S3XML_KEY_MAX);
    mix_str(e, de->code, STO_S3XML_CODE_MAX);
    mix_str(e, de->message, STO_S3XML_MESSAGE_MAX);
    e->n_delete_errors++;
    return 0;
}

static int on_part(void *ud, const sto_s3xml_part_t *pt)
{
    struct events *e = ud;
    CHECK(pt->part_number > 0);
    mix(e, "T", 1);
    mix(e, &pt->part_number, sizeof(pt->part_number));
    mix(e, &pt->size, sizeof(pt->size));
    mix_str(e, pt->etag, STO_S3XML_ETAG_MAX);
    mix_str(e, pt->last_modified, STO_S3XML_SHORT_MAX);
    e->n_parts++;
    return 0;
}

static int on_bucket(void *ud, const sto_s3xml_bucket_t *b)
{
    struct events *e = ud;
    CHECK(b->name[0] != '\0');
    mix(e, "B", 1);
    mix_str(e, b->name, STO_S3XML_BUCKET_MAX);
    mix_str(e, b->creation_date, STO_S3XML_SHORT_MAX);
    e->n_buckets++;
    return 0;
}

struct outcome {
    int rc;
    struct events ev;
    sto_s3xml_doc_t doc;
};

static void check_outcome(sto_s3xml_parser_t *p, const sto_s3xml_config_t *cfg, int rc,
                          struct outcome *out)
{
    const sto_s3xml_doc_t *d = sto_s3xml_doc(p);
    if (rc == 0) {
        CHECK(sto_s3xml_done(p));
        CHECK(d->kind != STO_S3XML_ANY);
        CHECK(cfg->expect == STO_S3XML_ANY || d->kind == cfg->expect || d->kind == STO_S3XML_ERROR);
        CHECK(sto_s3xml_detail(p)[0] == '\0');
        CHECK(sto_s3xml_feed(p, "x", 1, true) == STO_S3XML_ESTATE);
    } else {
        CHECK(rc == -ENOMEM || (rc <= STO_S3XML_ERR_BASE - 1 && rc >= STO_S3XML_ERR_BASE - 99));
        CHECK(rc == -ENOMEM || sto_s3xml_strerror(rc) != NULL);
        CHECK(rc != STO_S3XML_ESTATE);
        CHECK(sto_s3xml_detail(p)[0] != '\0');
        CHECK(strlen(sto_s3xml_detail(p)) <= STO_S3XML_DETAIL_MAX);
        CHECK(sto_s3xml_feed(p, "<", 1, false) == rc); /* sticky */
    }
    CHECK(d->n_objects == out->ev.n_objects && d->n_prefixes == out->ev.n_prefixes);
    CHECK(d->n_deleted == out->ev.n_deleted && d->n_delete_errors == out->ev.n_delete_errors);
    CHECK(d->n_parts == out->ev.n_parts && d->n_buckets == out->ev.n_buckets);
    CHECK(strlen(d->error.code) <= STO_S3XML_CODE_MAX);
    CHECK(strlen(d->error.message) <= STO_S3XML_MESSAGE_MAX);
    CHECK(strlen(d->prefix) <= STO_S3XML_KEY_MAX && strlen(d->location) <= STO_S3XML_LOCATION_MAX);
    out->rc = rc;
    memcpy(&out->doc, d, sizeof(*d));
}

static bool malformed(int rc)
{
    return rc == STO_S3XML_ESYNTAX || rc == STO_S3XML_ETRUNCATED;
}

static void same(const struct outcome *a, const struct outcome *b)
{
    /* A malformed document fails however it is split, but where expat notices depends on the
     * chunks: "'\0" whole is an unclosed token, split after the quote an invalid token; text
     * before a "]]>" is delivered (and may hit a length limit first) only when a chunk ends
     * inside it. So when expat rejects either run, both must merely fail. */
    if (a->rc != 0 && b->rc != 0 && (malformed(a->rc) || malformed(b->rc)))
        return;
    CHECK(a->rc == b->rc);
    CHECK(a->ev.h == b->ev.h);
    CHECK(memcmp(&a->doc, &b->doc, sizeof(a->doc)) == 0);
}

/* mode 0: whole; 1: two chunks split at `split`; 2: one byte at a time. */
static void parse(sto_s3xml_parser_t *p, const sto_s3xml_config_t *cfg, struct outcome *out,
                  const uint8_t *data, size_t size, int mode, size_t split)
{
    int rc = 0;
    if (mode == 0) {
        rc = sto_s3xml_feed(p, data, size, true);
    } else if (mode == 1) {
        rc = sto_s3xml_feed(p, data, split, false);
        if (rc == 0)
            rc = sto_s3xml_feed(p, data + split, size - split, true);
    } else {
        for (size_t i = 0; i < size && rc == 0; i++)
            rc = sto_s3xml_feed(p, data + i, 1, false);
        if (rc == 0)
            rc = sto_s3xml_feed(p, NULL, 0, true);
    }
    check_outcome(p, cfg, rc, out);
}

static void run_config(sto_s3xml_kind_t expect, bool url, const uint8_t *data, size_t size,
                       size_t split, bool bytewise)
{
    /* outcomes are big (the doc is ~20 KiB): keep them off the stack */
    static struct outcome whole, other;
    sto_s3xml_config_t cfg = {
        .expect = expect,
        .url_decode = url,
        .cb = {on_object, on_prefix, on_deleted, on_delete_error, on_part, on_bucket},
    };
    sto_s3xml_parser_t *p = NULL;
    memset(&whole, 0, sizeof(whole));
    memset(&other, 0, sizeof(other));
    cfg.ud = &whole.ev;
    if (sto_s3xml_new(&cfg, &p) != 0)
        return;
    parse(p, &cfg, &whole, data, size, 0, 0);
    sto_s3xml_free(p);

    /* a fresh config pointing at the second event sink; the parser is reused after a reset */
    cfg.ud = &other.ev;
    if (sto_s3xml_new(&cfg, &p) != 0)
        return;
    parse(p, &cfg, &other, data, size, 1, split);
    same(&whole, &other);
    if (bytewise) {
        CHECK(sto_s3xml_reset(p) == 0);
        memset(&other, 0, sizeof(other));
        parse(p, &cfg, &other, data, size, 2, 0);
        same(&whole, &other);
    }
    sto_s3xml_free(p);
}

static void writers(const uint8_t *data, size_t size)
{
    /* up to 8 keys, separated by NUL bytes in the input */
    static char keybuf[4096];
    static char out[65536], out2[65536];
    size_t n = size < sizeof(keybuf) - 1 ? size : sizeof(keybuf) - 1;
    memcpy(keybuf, data, n);
    keybuf[n] = '\0';
    const char *keys[8];
    size_t nk = 0;
    for (size_t i = 0; i <= n && nk < 8;) {
        keys[nk++] = keybuf + i;
        i += strlen(keybuf + i) + 1;
    }
    int rc = sto_s3xml_delete_body(keys, nk, size & 1, out, sizeof(out));
    CHECK(rc == -EINVAL || rc >= 0);
    if (rc >= 0) {
        CHECK(strlen(out) == (size_t)rc);
        CHECK(sto_s3xml_delete_body(keys, nk, size & 1, out2, (size_t)rc) == -ENOSPC);
        CHECK(sto_s3xml_delete_body(keys, nk, size & 1, out2, (size_t)rc + 1) == rc);
        CHECK(memcmp(out, out2, (size_t)rc + 1) == 0);
    }
    sto_s3xml_part_ref_t parts[8];
    for (size_t i = 0; i < nk; i++) {
        parts[i].part_number = (uint32_t)(i + 1);
        parts[i].etag = keys[i];
    }
    rc = sto_s3xml_complete_mpu_body(parts, nk, out, sizeof(out));
    CHECK(rc == -EINVAL || rc >= 0);
    if (rc >= 0) {
        CHECK(strlen(out) == (size_t)rc);
        CHECK(sto_s3xml_complete_mpu_body(parts, nk, out2, (size_t)rc) == -ENOSPC);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 0x100000001b3ULL;
    size_t split = size ? (size_t)(h % (size + 1)) : 0;
    bool bytewise = size <= 4096;

    run_config(STO_S3XML_ANY, false, data, size, split, bytewise);
    run_config(STO_S3XML_ANY, true, data, size, size - split, false);
    /* one specific expectation per input, cycling through all kinds */
    run_config((sto_s3xml_kind_t)(1 + (h >> 32) % 7), (h >> 40) & 1, data, size, split / 2, false);
    writers(data, size);
    return 0;
}
