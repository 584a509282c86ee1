/* Unit tests for sto/s3xml.h: S3 response parsers fed whole and in every split, limits, hostile
 * input, and the request body writers. Sample documents live in test/data/s3xml/. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "rx/err.h"
#include "sto/s3xml.h"

#ifndef SRCDIR
#define SRCDIR "."
#endif

/* ---- event recorder ----------------------------------------------------------------------- */

struct rec {
    char *buf;
    size_t len, cap;
    int abort_at; /* return -42 from the abort_at-th event (1-based), 0 never */
    int events;
};

static void rec_printf(struct rec *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rec_printf(struct rec *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    if (r->len + (size_t)n + 1 > r->cap) {
        r->cap = (r->len + (size_t)n + 1) * 2;
        r->buf = realloc(r->buf, r->cap);
        assert_non_null(r->buf);
    }
    va_start(ap, fmt);
    vsnprintf(r->buf + r->len, r->cap - r->len, fmt, ap);
    va_end(ap);
    r->len += (size_t)n;
}

static int rec_event(struct rec *r)
{
    r->events++;
    return r->abort_at && r->events == r->abort_at ? -42 : 0;
}

static int rec_object(void *ud, const sto_s3xml_object_t *o)
{
    assert_int_equal(strlen(o->key), o->key_len);
    if (o->has_size)
        rec_printf(ud, "O[%s] %llu %s %s %s\n", o->key, (unsigned long long)o->size, o->etag,
                   o->last_modified, o->storage_class);
    else
        rec_printf(ud, "O[%s] - %s %s %s\n", o->key, o->etag, o->last_modified, o->storage_class);
    return rec_event(ud);
}

static int rec_prefix(void *ud, const char *prefix, size_t len)
{
    assert_int_equal(strlen(prefix), len);
    rec_printf(ud, "P[%s]\n", prefix);
    return rec_event(ud);
}

static int rec_deleted(void *ud, const char *key, size_t len)
{
    assert_int_equal(strlen(key), len);
    rec_printf(ud, "D[%s]\n", key);
    return rec_event(ud);
}

static int rec_delete_error(void *ud, const sto_s3xml_delete_error_t *e)
{
    rec_printf(ud, "E[%s] %s: %s\n", e->key, e->code, e->message);
    return rec_event(ud);
}

static int rec_part(void *ud, const sto_s3xml_part_t *pt)
{
    rec_printf(ud, "T%u %s %llu %s\n", (unsigned)pt->part_number, pt->etag,
               (unsigned long long)pt->size, pt->last_modified);
    return rec_event(ud);
}

static int rec_bucket(void *ud, const sto_s3xml_bucket_t *b)
{
    rec_printf(ud, "B[%s] %s\n", b->name, b->creation_date);
    return rec_event(ud);
}

static const sto_s3xml_callbacks_t rec_cb = {rec_object,       rec_prefix, rec_deleted,
                                             rec_delete_error, rec_part,   rec_bucket};

/* One parse: its events, return code and document. */
struct run {
    struct rec rec;
    int rc;
    sto_s3xml_doc_t *doc;
    char detail[STO_S3XML_DETAIL_MAX + 1];
};

static void run_free(struct run *r)
{
    free(r->rec.buf);
    free(r->doc);
    memset(r, 0, sizeof(*r));
}

/* chunk == 0: whole; otherwise split at `split` first, then feed in `chunk`-byte pieces. */
static void parse_into(struct run *r, sto_s3xml_kind_t expect, bool url, const char *doc,
                       size_t len, size_t split, size_t chunk)
{
    memset(r, 0, sizeof(*r));
    sto_s3xml_config_t cfg = {.expect = expect, .url_decode = url, .cb = rec_cb, .ud = &r->rec};
    sto_s3xml_parser_t *p = NULL;
    assert_int_equal(sto_s3xml_new(&cfg, &p), 0);
    int rc = 0;
    if (chunk == 0) {
        rc = sto_s3xml_feed(p, doc, len, true);
    } else {
        if (split > 0)
            rc = sto_s3xml_feed(p, doc, split, false);
        for (size_t off = split; rc == 0 && off < len; off += chunk)
            rc = sto_s3xml_feed(p, doc + off, len - off < chunk ? len - off : chunk, false);
        if (rc == 0)
            rc = sto_s3xml_feed(p, "", 0, true);
    }
    r->rc = rc;
    r->doc = malloc(sizeof(*r->doc));
    assert_non_null(r->doc);
    memcpy(r->doc, sto_s3xml_doc(p), sizeof(*r->doc));
    snprintf(r->detail, sizeof(r->detail), "%s", sto_s3xml_detail(p));
    if (rc == 0)
        assert_true(sto_s3xml_done(p));
    sto_s3xml_free(p);
}

static const char *events(const struct run *r)
{
    return r->rec.buf ? r->rec.buf : "";
}

static void assert_same_run(const struct run *a, const struct run *b)
{
    assert_int_equal(a->rc, b->rc);
    assert_string_equal(events(a), events(b));
    assert_memory_equal(a->doc, b->doc, sizeof(*a->doc));
}

/* Parses whole, then at every two-chunk split (or `stride`-spaced ones), then one byte at a time,
 * asserting identical results; returns the whole run in *out. */
static void parse_all_ways(struct run *out, sto_s3xml_kind_t expect, bool url, const char *doc,
                           size_t len, size_t stride)
{
    parse_into(out, expect, url, doc, len, 0, 0);
    struct run other;
    for (size_t split = 0; split <= len; split += stride) {
        parse_into(&other, expect, url, doc, len, split, len + 1);
        assert_same_run(out, &other);
        run_free(&other);
    }
    parse_into(&other, expect, url, doc, len, 0, 1);
    assert_same_run(out, &other);
    run_free(&other);
    parse_into(&other, expect, url, doc, len, 3, 7);
    assert_same_run(out, &other);
    run_free(&other);
}

static char *load(const char *name, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/test/data/s3xml/%s", SRCDIR, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Loads a sample and parses it every way; the whole-document run is returned. */
static void sample(struct run *r, const char *name, sto_s3xml_kind_t expect, bool url)
{
    size_t len;
    char *doc = load(name, &len);
    parse_all_ways(r, expect, url, doc, len, 1);
    free(doc);
}

/* Parses a string whole (and in 1-byte pieces, which must agree); returns the code. */
static int parse_str(struct run *r, sto_s3xml_kind_t expect, const char *doc)
{
    parse_into(r, expect, false, doc, strlen(doc), 0, 0);
    struct run other;
    parse_into(&other, expect, false, doc, strlen(doc), 0, 1);
    assert_same_run(r, &other);
    run_free(&other);
    return r->rc;
}

static int parse_code(sto_s3xml_kind_t expect, const char *doc)
{
    struct run r;
    int rc = parse_str(&r, expect, doc);
    if (rc != 0)
        assert_true(r.detail[0] != '\0');
    run_free(&r);
    return rc;
}

/* ---- documents from the S3 API reference and from test servers ---------------------------- */

static void test_list_v2_aws(void **state)
{
    (void)state;
    struct run r;
    sample(&r, "list_v2_aws.xml", STO_S3XML_LIST_OBJECTS, false);
    assert_int_equal(r.rc, 0);
    assert_string_equal(events(&r), "O[my-image.jpg] 434234 \"fba9dede5f27731c9771645a39863328\" "
                                    "2009-10-12T17:50:30.000Z STANDARD\n"
                                    "O[my-zipped-file.zip] 0 \"d41d8cd98f00b204e9800998ecf8427e\" "
                                    "2009-10-12T17:50:30.000Z STANDARD_IA\n");
    const sto_s3xml_doc_t *d = r.doc;
    assert_int_equal(d->kind, STO_S3XML_LIST_OBJECTS);
    assert_string_equal(d->name, "bucket");
    assert_string_equal(d->prefix, "");
    assert_true(d->has_key_count);
    assert_int_equal(d->key_count, 205);
    assert_true(d->has_max_keys);
    assert_int_equal(d->max_keys, 1000);
    assert_false(d->is_truncated);
    assert_false(d->url_encoded);
    assert_int_equal(d->n_objects, 2);
    assert_int_equal(d->n_prefixes, 0);
    run_free(&r);
}

static void test_list_v2_delimiter(void **state)
{
    (void)state;
    struct run r;
    sample(&r, "list_v2_delimiter_aws.xml", STO_S3XML_ANY, false);
    assert_int_equal(r.rc, 0);
    assert_string_equal(events(&r), "O[photos/2006/index.html] 1048576 "
                                    "\"d41d8cd98f00b204e9800998ecf8427e\" "
                                    "2016-04-30T23:51:29.000Z STANDARD\n"
                                    "P[photos/2006/February/]\n"
                                    "P[photos/2006/January/]\n");
    const sto_s3xml_doc_t *d = r.doc;
    assert_string_equal(d->name, "example-bucket");
    assert_string_equal(d->prefix, "photos/2006/");
    assert_string_equal(d->delimiter, "/");
    assert_string_equal(d->start_after, "photos/2006/a");
    assert_string_equal(d->continuation_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
    assert_string_equal(d->next_continuation_token,
                        "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwN=");
    assert_true(d->is_truncated);
    assert_int_equal(d->key_count, 3);
    assert_int_equal(d->max_keys, 3);
    assert_int_equal(d->n_objects, 1);
    assert_int_equal(d->n_prefixes, 2);
    run_free(&r);
}

static void test_list_v2_moto(void **state)
{
    (void)state;
    struct run r;
    sample(&r, "list_v2_moto.xml", STO_S3XML_LIST_OBJECTS, false);
    assert_int_equal(r.rc, 0);
    assert_string_equal(events(&r),
                        "O[prepared-00000000.dat] 1048576 \"9e107d9d372bb6826bd81d3542a419d6\" "
                        "2024-05-01T10:00:00.000Z STANDARD\n"
                        "O[prepared-00000001.dat] 16777216 "
                        "\"e4d909c290d0fb1ca068ffaddf22cbd0-2\" 2024-05-01T10:00:01.000Z "
                        "STANDARD\n");
    assert_string_equal(r.doc->prefix, "prepared-");
    assert_int_equal(r.doc->key_count, 2);
    run_free(&r);
}

static void test_list_v2_s3rver(void **state)
{
    (void)state;
    struct run r;
    /* another namespace URI, fields in another order, no KeyCount, an entry without a class */
    sample(&r, "list_v2_s3rver.xml", STO_S3XML_LIST_OBJECTS, false);
    assert_int_equal(r.rc, 0);
    assert_string_equal(events(&r), "O[a.txt] 5 \"5d41402abc4b2a76b9719d911017c592\" "
                                    "2024-05-01T10:00:00.000Z STANDARD\n"
                                    "O[b.txt] 5 \"7d793037a0760186574b0282f2f435e7\" "
                                    "2024-05-01T10:00:02.000Z \n");
    assert_false(r.doc->has_key_count);
    assert_string_equal(r.doc->name, "bucket");
    run_free(&r);
}

static void test_list_v1(void **state)
{
    (void)state;
    struct run r;
    sample(&r, "list_v1_aws.xml", STO_S3XML_LIST_OBJECTS, false);
    assert_int_equal(r.rc, 0);
    assert_string_equal(events(&r), "O[Nelson] 5 \"828ef3fdfa96f00ad9f27c383fc9ac7f\" "
                                    "2006-01-01T12:00:00.000Z STANDARD\n"
                                    "O[Neo] 4 \"828ef3fdfa96f00ad9f27c383fc9ac7f\" "
                                    "2006-01-01T12:00:00.000Z STANDARD\n");
    assert_string_equal(r.doc->marker, "Ned");
    assert_string_equal(r.doc->next_marker, "Nelson");
    assert_true(r.doc->is_truncated);
    assert_int_equal(r.doc->max_keys, 40);
    run_free(&r);
}

static void test_list_url_first(void **state)
{
    (void)state;
    struct run r;
    /* EncodingType precedes the entries: decoded without being asked */
    sample(&r, "list_v2_url_first.xml", STO_S3XML_LIST_OBJECTS, false);
    assert_int_equal(r.rc, 0);
    assert_string_equal(events(&r), "O[a b/\xE2\x82\xAC 100%.txt] 100   \n"
                                    "O[a b/line\nbreak] 7   \n");
    assert_true(r.doc->url_encoded);
    assert_string_equal(r.doc->encoding_type, "url");
    assert_string_equal(r.doc->prefix, "a b/");
    assert_string_equal(r.doc->start_after, "a b/0");
    run_free(&r);
}

static void test_list_url_last(void **state)
{
    (void)state;
    struct run r;
    /* MinIO puts EncodingType last: the caller that asked for encoding-type=url says so */
    sample(&r, "list_v2_minio_url.xml", STO_S3XML_LIST_OBJECTS, true);
    assert_int_equal(r.rc, 0);
    assert_string_equal(events(&r), "O[dir/a b+c.txt] 1 \"0cc175b9c0f1b6a831c399e269772661\" "
                                    "2024-05-01T10:00:00.000Z STANDARD\n"
                                    "P[dir/sub\xE2\x82\xAC/]\n");
    assert_true(r.doc->url_encoded);
    assert_string_equal(r.doc->prefix, "dir/");
    assert_string_equal(r.doc->delimiter, "/");
    run_free(&r);

    /* ... otherwise keys that decoding would change went out raw: refused */
    size_t len;
    char *doc = load("list_v2_minio_url.xml", &len);
    parse_into(&r, STO_S3XML_LIST_OBJECTS, false, doc, len, 0, 0);
    assert_int_equal(r.rc, STO_S3XML_EENCODING);
    run_free(&r);
    free(doc);

    /* ... but plain keys are fine, and document fields are decoded at the end */
    const char *plain =
        "<ListBucketResult><Prefix>p%2F</Prefix><Contents><Key>k1</Key><Size>1</Size>"
        "</Contents><CommonPrefixes><Prefix>p/q/</Prefix></CommonPrefixes>"
        "<EncodingType>url</EncodingType></ListBucketResult>";
    assert_int_equal(parse_str(&r, STO_S3XML_LIST_OBJECTS, plain), 0);
    assert_string_equal(events(&r), "O[k1] 1   \nP[p/q/]\n");
    assert_string_equal(r.doc->prefix, "p/");
    run_free(&r);
}

static void test_list_url_bad(void **state)
{
    (void)state;
    const char *docs[] = {
        "<ListBucketResult><EncodingType>url</EncodingType><Contents><Key>a%</Key></Contents>"
        "</ListBucketResult>",
        "<ListBucketResult><EncodingType>url</EncodingType><Contents><Key>a%2</Key></Contents>"
        "</ListBucketResult>",
        "<ListBucketResult><EncodingType>url</EncodingType><Contents><Key>a%zz</Key>"
        "</Contents></ListBucketResult>",
        "<ListBucketResult><EncodingType>url</EncodingType><Contents><Key>a%00b</Key>"
        "</Contents></ListBucketResult>",
    };
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++)
        assert_int_equal(parse_code(STO_S3XML_LIST_OBJECTS, docs[i]), STO_S3XML_EVALUE);
}

static void test_list_escapes(void **state)
{
    (void)state;
    struct run r;
    sample(&r, "list_v2_escapes.xml", STO_S3XML_LIST_OBJECTS, false);
    assert_int_equal(r.rc, 0);
    assert_string_equal(events(&r), "O[a&b<c>d\"e'f] 1   \n"
                                    "O[price \xE2\x82\xAC"
                                    "5 \xE2\x82\xAC"
                                    "6] 2   \n"
                                    "O[\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E/"
                                    "\xD0\xBA\xD0\xBB\xD1\x8E\xD1\x87.txt] 3   \n"
                                    "O[cdata <raw> & stuff] 4   \n"
                                    "O[  spaced key  ] 5   \n"
                                    "O[emoji-\xF0\x9F\x98\x80] 6   \n");
    run_free(&r);
}

static void test_list_1000(void **state)
{
    (void)state;
    size_t cap = 1 << 20, len = 0;
    char *doc = malloc(cap);
    assert_non_null(doc);
    len += (size_t)snprintf(doc + len, cap - len,
                            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult "
                            "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name>"
                            "<Prefix>prepared-</Prefix><KeyCount>1000</KeyCount><MaxKeys>1000"
                            "</MaxKeys><IsTruncated>true</IsTruncated><NextContinuationToken>"
                            "tok==</NextContinuationToken>");
    for (int i = 0; i < 1000; i++)
        len +=
            (size_t)snprintf(doc + len, cap - len,
                             "<Contents><Key>prepared-%08d.dat</Key><LastModified>2024-05-"
                             "01T10:00:00.000Z</LastModified><ETag>&quot;%032x&quot;</ETag>"
                             "<Size>%llu</Size><StorageClass>STANDARD</StorageClass>"
                             "</Contents>\n",
                             i, (unsigned)i * 2654435761u, (unsigned long long)i * 1048576ULL + 17);
    len += (size_t)snprintf(doc + len, cap - len, "</ListBucketResult>\n");
    assert_true(len < cap);

    struct run r;
    parse_all_ways(&r, STO_S3XML_LIST_OBJECTS, false, doc, len, 4099);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.doc->n_objects, 1000);
    assert_int_equal(r.rec.events, 1000);
    assert_true(r.doc->is_truncated);
    assert_string_equal(r.doc->next_continuation_token, "tok==");
    /* spot-check the entries in order */
    const char *line = r.rec.buf;
    for (int i = 0; i < 1000; i++) {
        char want[160];
        snprintf(want, sizeof(want),
                 "O[prepared-%08d.dat] %llu \"%032x\" 2024-05-01T10:00:00.000Z STANDARD\n", i,
                 (unsigned long long)i * 1048576ULL + 17, (unsigned)i * 2654435761u);
        assert_memory_equal(line, want, strlen(want));
        line += strlen(want);
    }
    assert_int_equal(*line, '\0');
    run_free(&r);
    free(doc);
}

static void test_error_docs(void **state)
{
    (void)state;
    struct run r;
    sample(&r, "error_aws.xml", STO_S3XML_ANY, false);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.doc->kind, STO_S3XML_ERROR);
    assert_string_equal(r.doc->error.code, "NoSuchKey");
    assert_string_equal(r.doc->error.message, "The resource you requested does not exist");
    assert_string_equal(r.doc->error.resource, "/mybucket/myfoto.jpg");
    assert_string_equal(r.doc->error.request_id, "4442587FB7D0A2F9");
    assert_false(r.doc->error.truncated);
    assert_string_equal(events(&r), "");
    run_free(&r);

    /* an Error answers any request */
    sample(&r, "error_minio.xml", STO_S3XML_LIST_OBJECTS, false);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.doc->kind, STO_S3XML_ERROR);
    assert_string_equal(r.doc->error.code, "NoSuchBucket");
    assert_string_equal(r.doc->error.request_id, "17C9E1B9A3A1B2C3");
    assert_string_equal(r.doc->error.host_id,
                        "dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8");
    run_free(&r);

    sample(&r, "error_sigv4.xml", STO_S3XML_COMPLETE_MPU, false);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.doc->kind, STO_S3XML_ERROR);
    assert_string_equal(r.doc->error.code, "SignatureDoesNotMatch");
    assert_string_equal(r.doc->error.request_id, "8A5D9C5F5C7F6B4E");
    run_free(&r);

    /* an Error without a Code is not one */
    assert_int_equal(parse_code(STO_S3XML_ANY, "<Error><Message>x</Message></Error>"),
                     STO_S3XML_EMISSING);
}

static void test_error_truncation(void **state)
{
    (void)state;
    /* Message of 600 bytes ending in a 3-byte character straddling the 512 bound; Code 70 */
    char doc[4096];
    char msg[700];
    memset(msg, 'm', 510);
    memcpy(msg + 510, "\xE2\x82\xAC", 3); /* bytes 510..512 */
    memset(msg + 513, 'n', 87);
    msg[600] = '\0';
    char code[80];
    memset(code, 'C', 70);
    code[70] = '\0';
    char rid[200];
    memset(rid, 'R', 150);
    rid[150] = '\0';
    snprintf(doc, sizeof(doc),
             "<Error><Code>%s</Code><Message>%s</Message><RequestId>%s</RequestId></Error>", code,
             msg, rid);
    struct run r;
    assert_int_equal(parse_str(&r, STO_S3XML_ANY, doc), 0);
    assert_true(r.doc->error.truncated);
    assert_int_equal(strlen(r.doc->error.code), STO_S3XML_CODE_MAX);
    assert_int_equal(strlen(r.doc->error.message), 510); /* cut before the partial euro sign */
    assert_int_equal(strlen(r.doc->error.request_id), STO_S3XML_REQUEST_ID_MAX);
    run_free(&r);
}

static void test_delete_result(void **state)
{
    (void)state;
    struct run r;
    sample(&r, "delete_result_aws.xml", STO_S3XML_DELETE_RESULT, false);
    assert_int_equal(r.rc, 0);
    assert_string_equal(events(&r), "D[sample1.txt]\nE[sample2.txt] AccessDenied: Access Denied\n");
    assert_int_equal(r.doc->n_deleted, 1);
    assert_int_equal(r.doc->n_delete_errors, 1);
    run_free(&r);

    sample(&r, "delete_result_versioned.xml", STO_S3XML_DELETE_RESULT, false);
    assert_int_equal(r.rc, 0);
    assert_string_equal(events(&r), "D[SampleDocument.txt]\nD[SampleDocument2.txt]\nD[a & b]\n");
    run_free(&r);

    /* quiet mode with nothing failed: an empty result */
    assert_int_equal(parse_code(STO_S3XML_DELETE_RESULT,
                                "<DeleteResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\""
                                "/>"),
                     0);
}

static void test_multipart_docs(void **state)
{
    (void)state;
    struct run r;
    sample(&r, "initiate_mpu_aws.xml", STO_S3XML_INITIATE_MPU, false);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.doc->kind, STO_S3XML_INITIATE_MPU);
    assert_string_equal(r.doc->bucket, "example-bucket");
    assert_string_equal(r.doc->key, "example-object");
    assert_string_equal(r.doc->upload_id,
                        "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA");
    run_free(&r);

    sample(&r, "complete_mpu_aws.xml", STO_S3XML_COMPLETE_MPU, false);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.doc->location,
                        "http://Example-Bucket.s3.us-east-1.amazonaws.com/Example-Object");
    assert_string_equal(r.doc->bucket, "Example-Bucket");
    assert_string_equal(r.doc->key, "Example-Object");
    assert_string_equal(r.doc->etag, "\"3858f62230ac3c915f300c664312c11f-9\"");
    run_free(&r);

    sample(&r, "list_parts_aws.xml", STO_S3XML_LIST_PARTS, false);
    assert_int_equal(r.rc, 0);
    assert_string_equal(events(&r), "T2 \"7778aef83f66abc1fa1e8477f296d394\" 10485760 "
                                    "2010-11-10T20:48:34.000Z\n"
                                    "T3 \"aaaa18db4cc2f85cedef654fccc4a4x8\" 10485760 "
                                    "2010-11-10T20:48:33.000Z\n");
    assert_true(r.doc->is_truncated);
    assert_true(r.doc->has_next_part_number_marker);
    assert_int_equal(r.doc->next_part_number_marker, 3);
    assert_int_equal(r.doc->part_number_marker, 1);
    assert_int_equal(r.doc->max_parts, 2);
    assert_string_equal(r.doc->upload_id,
                        "XXBsb2FkIElEIGZvciBlbHZpbmcncyVcdS1tb3ZpZS5tMnRzEEEwbG9hZA");
    run_free(&r);

    assert_int_equal(parse_code(STO_S3XML_INITIATE_MPU,
                                "<InitiateMultipartUploadResult><Bucket>b</Bucket>"
                                "</InitiateMultipartUploadResult>"),
                     STO_S3XML_EMISSING);
    assert_int_equal(parse_code(STO_S3XML_LIST_PARTS,
                                "<ListPartsResult><Part><PartNumber>0</PartNumber><ETag>x</ETag>"
                                "</Part></ListPartsResult>"),
                     STO_S3XML_EVALUE);
    assert_int_equal(parse_code(STO_S3XML_LIST_PARTS,
                                "<ListPartsResult><Part><PartNumber>1</PartNumber></Part>"
                                "</ListPartsResult>"),
                     STO_S3XML_EMISSING);
}

static void test_list_buckets(void **state)
{
    (void)state;
    struct run r;
    sample(&r, "list_buckets_aws.xml", STO_S3XML_LIST_BUCKETS, false);
    assert_int_equal(r.rc, 0);
    assert_string_equal(events(&r), "B[quotes] 2006-02-03T16:45:09.000Z\n"
                                    "B[samples] 2006-02-03T16:41:58.000Z\n");
    assert_int_equal(r.doc->n_buckets, 2);
    run_free(&r);
}

/* ---- values and limits -------------------------------------------------------------------- */

static int size_doc(const char *size)
{
    char doc[512];
    snprintf(doc, sizeof(doc),
             "<ListBucketResult><Contents><Key>k</Key><Size>%s</Size></Contents>"
             "</ListBucketResult>",
             size);
    return parse_code(STO_S3XML_LIST_OBJECTS, doc);
}

static void test_size_values(void **state)
{
    (void)state;
    assert_int_equal(size_doc("18446744073709551615"), 0);
    assert_int_equal(size_doc(" 42\n"), 0);
    assert_int_equal(size_doc("0000000000000000000000000001"), 0);
    assert_int_equal(size_doc("18446744073709551616"), STO_S3XML_EVALUE);
    assert_int_equal(size_doc("99999999999999999999"), STO_S3XML_EVALUE);
    assert_int_equal(size_doc("12a"), STO_S3XML_EVALUE);
    assert_int_equal(size_doc("-1"), STO_S3XML_EVALUE);
    assert_int_equal(size_doc("+1"), STO_S3XML_EVALUE);
    assert_int_equal(size_doc("1 2"), STO_S3XML_EVALUE);
    assert_int_equal(size_doc(""), STO_S3XML_EVALUE);
    assert_int_equal(size_doc("0x10"), STO_S3XML_EVALUE);

    struct run r;
    assert_int_equal(parse_str(&r, STO_S3XML_ANY,
                               "<ListBucketResult><Contents><Key>k</Key><Size>"
                               "18446744073709551615</Size></Contents></ListBucketResult>"),
                     0);
    assert_string_equal(events(&r), "O[k] 18446744073709551615   \n");
    run_free(&r);

    assert_int_equal(parse_code(STO_S3XML_ANY, "<ListBucketResult><IsTruncated>maybe"
                                               "</IsTruncated></ListBucketResult>"),
                     STO_S3XML_EVALUE);
    assert_int_equal(parse_code(STO_S3XML_ANY, "<ListBucketResult><KeyCount>4294967296"
                                               "</KeyCount></ListBucketResult>"),
                     STO_S3XML_EVALUE);
    assert_int_equal(parse_code(STO_S3XML_ANY, "<ListBucketResult><IsTruncated> TRUE "
                                               "</IsTruncated></ListBucketResult>"),
                     0);
}

static void test_key_length(void **state)
{
    (void)state;
    char *doc = malloc(8192);
    char *key = malloc(2048);
    assert_non_null(doc);
    assert_non_null(key);
    memset(key, 'k', STO_S3XML_KEY_MAX);
    key[STO_S3XML_KEY_MAX] = '\0';
    snprintf(doc, 8192, "<ListBucketResult><Contents><Key>%s</Key></Contents></ListBucketResult>",
             key);
    struct run r;
    assert_int_equal(parse_str(&r, STO_S3XML_ANY, doc), 0);
    assert_int_equal(r.doc->n_objects, 1);
    run_free(&r);

    key[STO_S3XML_KEY_MAX] = 'k';
    key[STO_S3XML_KEY_MAX + 1] = '\0';
    snprintf(doc, 8192, "<ListBucketResult><Contents><Key>%s</Key></Contents></ListBucketResult>",
             key);
    assert_int_equal(parse_str(&r, STO_S3XML_ANY, doc), STO_S3XML_ETOOLONG);
    assert_non_null(strstr(r.detail, "<Key> longer than 1024 bytes"));
    assert_int_equal(r.doc->n_objects, 0);
    run_free(&r);

    /* URL-encoded: the bound applies to the decoded key (1024 x "%41" is fine) */
    size_t n = (size_t)snprintf(doc, 8192,
                                "<ListBucketResult><EncodingType>url</EncodingType>"
                                "<Contents><Key>");
    for (int i = 0; i < STO_S3XML_KEY_MAX; i++)
        n += (size_t)snprintf(doc + n, 8192 - n, "%%41");
    snprintf(doc + n, 8192 - n, "</Key></Contents></ListBucketResult>");
    assert_int_equal(parse_str(&r, STO_S3XML_ANY, doc), 0);
    assert_int_equal(r.doc->n_objects, 1);
    run_free(&r);

    /* an over-long ETag, StorageClass or UploadId fails too */
    memset(key, 'e', 200);
    key[200] = '\0';
    snprintf(doc, 8192,
             "<ListBucketResult><Contents><Key>k</Key><ETag>%s</ETag></Contents>"
             "</ListBucketResult>",
             key);
    assert_int_equal(parse_code(STO_S3XML_ANY, doc), STO_S3XML_ETOOLONG);
    free(key);
    free(doc);
}

/* ---- broken and hostile input ------------------------------------------------------------- */

static void test_truncated(void **state)
{
    (void)state;
    size_t len;
    char *doc = load("list_v2_delimiter_aws.xml", &len);
    /* every proper prefix that has begun the root element, fed with is_final, is refused */
    const char *root = strstr(doc, "<ListBucketResult");
    assert_non_null(root);
    size_t end = len;
    while (end > 0 && (doc[end - 1] == '\n'))
        end--;
    for (size_t cut = 0; cut < end; cut++) {
        struct run r;
        parse_into(&r, STO_S3XML_LIST_OBJECTS, false, doc, cut, 0, 0);
        if (r.rc != STO_S3XML_ETRUNCATED)
            fail_msg("cut %zu: rc %d (%s)", cut, r.rc, r.detail);
        run_free(&r);
    }
    free(doc);
    assert_int_equal(parse_code(STO_S3XML_ANY, ""), STO_S3XML_ETRUNCATED);
    assert_int_equal(parse_code(STO_S3XML_ANY, "   \n"), STO_S3XML_ETRUNCATED);
    /* a partial UTF-8 character at the very end */
    assert_int_equal(parse_code(STO_S3XML_ANY, "<Error><Code>\xE2\x82"), STO_S3XML_ETRUNCATED);
}

static void test_garbage(void **state)
{
    (void)state;
    assert_int_equal(parse_code(STO_S3XML_ANY, "hello"), STO_S3XML_ESYNTAX);
    assert_int_equal(parse_code(STO_S3XML_ANY, "\x01\x02<"), STO_S3XML_ESYNTAX);
    assert_int_equal(parse_code(STO_S3XML_ANY, "<html><body>502 Bad Gateway</body></html>"),
                     STO_S3XML_EKIND);
    assert_int_equal(parse_code(STO_S3XML_LIST_OBJECTS, "<DeleteResult/>"), STO_S3XML_EKIND);
    assert_int_equal(parse_code(STO_S3XML_ANY, "<ListBucketResult></ListBucketResult>junk"),
                     STO_S3XML_ESYNTAX);
    assert_int_equal(parse_code(STO_S3XML_ANY, "<ListBucketResult><Contents></ListBucketResult>"),
                     STO_S3XML_ESYNTAX);
    assert_int_equal(parse_code(STO_S3XML_ANY, "<ListBucketResult><Name>\xff</Name>"
                                               "</ListBucketResult>"),
                     STO_S3XML_ESYNTAX);
    assert_int_equal(parse_code(STO_S3XML_ANY, "<s3:ListBucketResult/>"), STO_S3XML_ESYNTAX);
    /* structure */
    assert_int_equal(parse_code(STO_S3XML_ANY, "<ListBucketResult><Contents><Contents>"
                                               "</Contents></Contents></ListBucketResult>"),
                     STO_S3XML_ESTRUCT);
    assert_int_equal(parse_code(STO_S3XML_ANY, "<ListBucketResult><Contents><Key><b>k</b></Key>"
                                               "</Contents></ListBucketResult>"),
                     STO_S3XML_ESTRUCT);
    assert_int_equal(parse_code(STO_S3XML_ANY, "<ListBucketResult><Part/></ListBucketResult>"),
                     STO_S3XML_ESTRUCT);
    assert_int_equal(parse_code(STO_S3XML_ANY, "<DeleteResult><ListBucketResult/>"
                                               "</DeleteResult>"),
                     STO_S3XML_ESTRUCT);
    assert_int_equal(parse_code(STO_S3XML_ANY, "<ListBucketResult><Contents><Key>a</Key>"
                                               "<Key>b</Key></Contents></ListBucketResult>"),
                     STO_S3XML_EDUP);
    assert_int_equal(parse_code(STO_S3XML_ANY, "<ListBucketResult><Name>a</Name><Name>b</Name>"
                                               "</ListBucketResult>"),
                     STO_S3XML_EDUP);
    assert_int_equal(parse_code(STO_S3XML_ANY, "<ListBucketResult><Contents><Size>1</Size>"
                                               "</Contents></ListBucketResult>"),
                     STO_S3XML_EMISSING);
    assert_int_equal(parse_code(STO_S3XML_ANY, "<ListBucketResult><Contents><Key></Key>"
                                               "</Contents></ListBucketResult>"),
                     STO_S3XML_EMISSING);
    /* unknown elements are skipped whole, including known names inside them */
    struct run r;
    assert_int_equal(parse_str(&r, STO_S3XML_ANY,
                               "<ListBucketResult><Future><Key>x</Key><Contents/></Future>"
                               "<Contents><Key>k</Key><Owner><ID>1</ID></Owner></Contents>"
                               "</ListBucketResult>"),
                     0);
    assert_string_equal(events(&r), "O[k] -   \n");
    run_free(&r);

    /* nesting depth */
    char deep[1024];
    size_t n = (size_t)snprintf(deep, sizeof(deep), "<ListBucketResult>");
    for (int i = 0; i < STO_S3XML_DEPTH_MAX; i++)
        n += (size_t)snprintf(deep + n, sizeof(deep) - n, "<x>");
    assert_int_equal(parse_code(STO_S3XML_ANY, deep), STO_S3XML_EDEPTH);

    /* expat's message and position are in the detail */
    assert_int_equal(parse_str(&r, STO_S3XML_ANY, "<Error>\n  <Code>a</Code>\n  <<\n</Error>"),
                     STO_S3XML_ESYNTAX);
    assert_string_equal(r.detail, "line 3, column 3: not well-formed (invalid token)");
    run_free(&r);

    /* random bytes never crash and always fail */
    srand(12345);
    char junk[300];
    for (int i = 0; i < 200; i++) {
        for (size_t j = 0; j < sizeof(junk) - 1; j++)
            junk[j] = (char)(1 + rand() % 255);
        junk[sizeof(junk) - 1] = '\0';
        assert_true(parse_code(STO_S3XML_ANY, junk) < 0);
    }
}

static void test_doctype_refused(void **state)
{
    (void)state;
    /* billion laughs: refused at the DOCTYPE, before any entity is declared */
    char doc[4096];
    size_t n = (size_t)snprintf(doc, sizeof(doc),
                                "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n"
                                "<!ENTITY lol \"lol\">\n");
    for (int i = 1; i < 10; i++) {
        n += (size_t)snprintf(doc + n, sizeof(doc) - n, "<!ENTITY lol%d \"", i);
        for (int j = 0; j < 10; j++)
            n += (size_t)snprintf(doc + n, sizeof(doc) - n, "&lol%.0d;", i - 1);
        n += (size_t)snprintf(doc + n, sizeof(doc) - n, "\">\n");
    }
    snprintf(doc + n, sizeof(doc) - n, "]>\n<Error><Code>&lol9;</Code></Error>\n");
    clock_t t0 = clock();
    struct run r;
    assert_int_equal(parse_str(&r, STO_S3XML_ANY, doc), STO_S3XML_EDTD);
    assert_non_null(strstr(r.detail, "DOCTYPE"));
    assert_string_equal(r.doc->error.code, "");
    run_free(&r);
    assert_true(clock() - t0 < 5 * CLOCKS_PER_SEC); /* generous: it is microseconds */

    assert_int_equal(parse_code(STO_S3XML_ANY,
                                "<!DOCTYPE Error SYSTEM \"file:///etc/passwd\"><Error><Code>x"
                                "</Code></Error>"),
                     STO_S3XML_EDTD);
    assert_int_equal(parse_code(STO_S3XML_ANY,
                                "<!DOCTYPE Error [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>"
                                "<Error><Code>&xxe;</Code></Error>"),
                     STO_S3XML_EDTD);
    assert_int_equal(parse_code(STO_S3XML_ANY, "<!DOCTYPE Error><Error><Code>x</Code></Error>"),
                     STO_S3XML_EDTD);
    /* without a DTD an entity reference is simply undefined */
    assert_int_equal(parse_code(STO_S3XML_ANY, "<Error><Code>&lol;</Code></Error>"),
                     STO_S3XML_ESYNTAX);
}

/* ---- API behaviour ------------------------------------------------------------------------ */

static void test_callback_abort_and_state(void **state)
{
    (void)state;
    size_t len;
    char *doc = load("list_v2_delimiter_aws.xml", &len);
    struct rec rec = {.abort_at = 2};
    sto_s3xml_config_t cfg = {.expect = STO_S3XML_LIST_OBJECTS, .cb = rec_cb, .ud = &rec};
    sto_s3xml_parser_t *p = NULL;
    assert_int_equal(sto_s3xml_new(&cfg, &p), 0);
    assert_int_equal(sto_s3xml_feed(p, doc, len, true), -42);
    assert_int_equal(rec.events, 2); /* nothing after the abort */
    assert_int_equal(sto_s3xml_feed(p, doc, len, true), -42);
    assert_non_null(strstr(sto_s3xml_detail(p), "callback returned -42"));

    /* reset: the same parser reads the next document */
    free(rec.buf);
    memset(&rec, 0, sizeof(rec));
    assert_int_equal(sto_s3xml_reset(p), 0);
    assert_string_equal(sto_s3xml_detail(p), "");
    assert_int_equal(sto_s3xml_doc(p)->kind, STO_S3XML_ANY);
    assert_false(sto_s3xml_done(p));
    assert_int_equal(sto_s3xml_feed(p, doc, 100, false), 0);
    assert_int_equal(sto_s3xml_feed(p, doc + 100, len - 100, false), 0);
    assert_true(sto_s3xml_done(p));
    assert_int_equal(sto_s3xml_feed(p, NULL, 0, true), 0);
    assert_int_equal(rec.events, 3);
    assert_int_equal(sto_s3xml_feed(p, "x", 1, false), STO_S3XML_ESTATE);
    assert_int_equal(sto_s3xml_feed(p, NULL, 0, true), STO_S3XML_ESTATE);
    assert_int_equal(sto_s3xml_reset(p), 0);
    assert_int_equal(sto_s3xml_feed(p, doc, len, true), 0);
    assert_int_equal(rec.events, 6);
    sto_s3xml_free(p);
    free(rec.buf);
    free(doc);

    /* no callbacks at all is fine */
    sto_s3xml_config_t bare = {.expect = STO_S3XML_ANY};
    assert_int_equal(sto_s3xml_new(&bare, &p), 0);
    const char *one = "<ListBucketResult><Contents><Key>k</Key></Contents></ListBucketResult>";
    assert_int_equal(sto_s3xml_feed(p, one, strlen(one), true), 0);
    assert_int_equal(sto_s3xml_doc(p)->n_objects, 1);
    sto_s3xml_free(p);
    sto_s3xml_free(NULL);

    assert_int_equal(sto_s3xml_new(NULL, &p), -EINVAL);
    assert_null(p);
    sto_s3xml_config_t bad = {.expect = (sto_s3xml_kind_t)99};
    assert_int_equal(sto_s3xml_new(&bad, &p), -EINVAL);
}

static void test_strerror(void **state)
{
    (void)state;
    assert_int_equal(STO_S3XML_ESYNTAX, -11101);
    assert_true(STO_S3XML_ESTATE >= -11199);
    assert_string_equal(sto_s3xml_strerror(STO_S3XML_EDTD),
                        "XML DOCTYPE or entity declaration refused");
    assert_null(sto_s3xml_strerror(-11100));
    assert_null(sto_s3xml_strerror(STO_EURI));
    sto_s3xml_err_register();
    sto_s3xml_err_register();
    assert_string_equal(rx_strerror(STO_S3XML_ETOOLONG), "S3 XML element text too long");
    assert_string_equal(rx_strerror(STO_S3XML_ESTATE), "S3 XML parser already finished; reset it");
}

/* ---- request body writers ----------------------------------------------------------------- */

#define DECL "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
#define NS "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\""

static void test_delete_body(void **state)
{
    (void)state;
    char buf[1024];
    const char *keys[] = {"prepared-00000000.dat", "a&b<c>d\"e'f", "cr\rlf\ntab\t",
                          "\xE2\x82\xAC/\xE6\x97\xA5"};
    const char *want = DECL "<Delete " NS "><Quiet>true</Quiet>"
                            "<Object><Key>prepared-00000000.dat</Key></Object>"
                            "<Object><Key>a&amp;b&lt;c&gt;d\"e'f</Key></Object>"
                            "<Object><Key>cr&#13;lf\ntab\t</Key></Object>"
                            "<Object><Key>\xE2\x82\xAC/\xE6\x97\xA5</Key></Object>"
                            "</Delete>";
    int n = sto_s3xml_delete_body(keys, 4, true, buf, sizeof(buf));
    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(buf, want);

    n = sto_s3xml_delete_body(keys, 1, false, buf, sizeof(buf));
    assert_string_equal(buf, DECL "<Delete " NS "><Object><Key>prepared-00000000.dat</Key>"
                                  "</Object></Delete>");
    /* exactly enough room needs one byte for the NUL */
    size_t need = (size_t)n + 1;
    char small[512];
    assert_int_equal(sto_s3xml_delete_body(keys, 1, false, small, need), n);
    assert_string_equal(small, buf);
    assert_int_equal(sto_s3xml_delete_body(keys, 1, false, small, need - 1), -ENOSPC);
    assert_int_equal(small[0], '\0');
    assert_int_equal(sto_s3xml_delete_body(keys, 1, false, small, 10), -ENOSPC);
    assert_int_equal(sto_s3xml_delete_body(keys, 1, false, NULL, 0), -ENOSPC);

    const char *ctl[] = {"bell\x07"};
    assert_int_equal(sto_s3xml_delete_body(ctl, 1, false, buf, sizeof(buf)), -EINVAL);
    const char *empty[] = {""};
    assert_int_equal(sto_s3xml_delete_body(empty, 1, false, buf, sizeof(buf)), -EINVAL);
    const char *null[] = {NULL};
    assert_int_equal(sto_s3xml_delete_body(null, 1, false, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(sto_s3xml_delete_body(keys, 0, false, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(sto_s3xml_delete_body(keys, 1001, false, buf, sizeof(buf)), -EINVAL);

    /* 1000 keys of the maximum length, every byte escaped, fit a computed bound */
    char *big = malloc(STO_S3XML_KEY_MAX + 1);
    assert_non_null(big);
    memset(big, '&', STO_S3XML_KEY_MAX);
    big[STO_S3XML_KEY_MAX] = '\0';
    const char **many = malloc(1000 * sizeof(*many));
    assert_non_null(many);
    for (int i = 0; i < 1000; i++)
        many[i] = big;
    size_t cap = 200 + 1000 * (30 + 5 * STO_S3XML_KEY_MAX);
    char *out = malloc(cap);
    assert_non_null(out);
    n = sto_s3xml_delete_body(many, 1000, true, out, cap);
    assert_true(n > 1000 * 5 * STO_S3XML_KEY_MAX);
    assert_int_equal(strlen(out), (size_t)n);
    char *toolong = malloc(STO_S3XML_KEY_MAX + 2);
    assert_non_null(toolong);
    memset(toolong, 'z', STO_S3XML_KEY_MAX + 1);
    toolong[STO_S3XML_KEY_MAX + 1] = '\0';
    const char *tl[] = {toolong};
    assert_int_equal(sto_s3xml_delete_body(tl, 1, false, out, cap), -EINVAL);
    free(toolong);
    free(out);
    free(many);
    free(big);
}

static void test_complete_mpu_body(void **state)
{
    (void)state;
    char buf[1024];
    const sto_s3xml_part_ref_t parts[] = {
        {1, "\"a54357aff0632cce46d942af68356b38\""},
        {2, "\"0c78aef83f66abc1fa1e8477f296d394\""},
        {10000, "\"acbd18db4cc2f85cedef654fccc4a4d8-3\""},
    };
    const char *want = DECL "<CompleteMultipartUpload " NS ">"
                            "<Part><PartNumber>1</PartNumber>"
                            "<ETag>\"a54357aff0632cce46d942af68356b38\"</ETag></Part>"
                            "<Part><PartNumber>2</PartNumber>"
                            "<ETag>\"0c78aef83f66abc1fa1e8477f296d394\"</ETag></Part>"
                            "<Part><PartNumber>10000</PartNumber>"
                            "<ETag>\"acbd18db4cc2f85cedef654fccc4a4d8-3\"</ETag></Part>"
                            "</CompleteMultipartUpload>";
    int n = sto_s3xml_complete_mpu_body(parts, 3, buf, sizeof(buf));
    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(buf, want);
    assert_int_equal(sto_s3xml_complete_mpu_body(parts, 3, buf, (size_t)n + 1), n);
    assert_int_equal(sto_s3xml_complete_mpu_body(parts, 3, buf, (size_t)n), -ENOSPC);

    const sto_s3xml_part_ref_t amp[] = {{7, "a&b"}};
    n = sto_s3xml_complete_mpu_body(amp, 1, buf, sizeof(buf));
    assert_int_equal(n, (int)strlen(buf));
    assert_non_null(strstr(buf, "<Part><PartNumber>7</PartNumber><ETag>a&amp;b</ETag></Part>"));

    const sto_s3xml_part_ref_t unordered[] = {{2, "x"}, {1, "y"}};
    assert_int_equal(sto_s3xml_complete_mpu_body(unordered, 2, buf, sizeof(buf)), -EINVAL);
    const sto_s3xml_part_ref_t dup[] = {{2, "x"}, {2, "y"}};
    assert_int_equal(sto_s3xml_complete_mpu_body(dup, 2, buf, sizeof(buf)), -EINVAL);
    const sto_s3xml_part_ref_t zero[] = {{0, "x"}};
    assert_int_equal(sto_s3xml_complete_mpu_body(zero, 1, buf, sizeof(buf)), -EINVAL);
    const sto_s3xml_part_ref_t over[] = {{10001, "x"}};
    assert_int_equal(sto_s3xml_complete_mpu_body(over, 1, buf, sizeof(buf)), -EINVAL);
    const sto_s3xml_part_ref_t noetag[] = {{1, NULL}};
    assert_int_equal(sto_s3xml_complete_mpu_body(noetag, 1, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(sto_s3xml_complete_mpu_body(parts, 0, buf, sizeof(buf)), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_v2_aws),
        cmocka_unit_test(test_list_v2_delimiter),
        cmocka_unit_test(test_list_v2_moto),
        cmocka_unit_test(test_list_v2_s3rver),
        cmocka_unit_test(test_list_v1),
        cmocka_unit_test(test_list_url_first),
        cmocka_unit_test(test_list_url_last),
        cmocka_unit_test(test_list_url_bad),
        cmocka_unit_test(test_list_escapes),
        cmocka_unit_test(test_list_1000),
        cmocka_unit_test(test_error_docs),
        cmocka_unit_test(test_error_truncation),
        cmocka_unit_test(test_delete_result),
        cmocka_unit_test(test_multipart_docs),
        cmocka_unit_test(test_list_buckets),
        cmocka_unit_test(test_size_values),
        cmocka_unit_test(test_key_length),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_doctype_refused),
        cmocka_unit_test(test_callback_abort_and_state),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_delete_body),
        cmocka_unit_test(test_complete_mpu_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
