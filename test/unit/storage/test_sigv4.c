/* Unit tests for lib/storage SigV4: AWS's published SigV4 test suite and the S3 API reference's
 * header-signing examples (files under test/data/sigv4/, see its README.md), the signing-key
 * cache, session tokens, UNSIGNED-PAYLOAD, URI encoding, and error returns. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "sto/sigv4.h"

#define DATA SRCDIR "/test/data/sigv4/"

#define SUITE_AKID "AKIDEXAMPLE"
#define SUITE_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_TIME INT64_C(1440938160) /* 20150830T123600Z */
#define S3_AKID "AKIAIOSFODNN7EXAMPLE"
#define S3_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define S3_TIME INT64_C(1369353600) /* 20130524T000000Z */
#define S3_HOST "examplebucket.s3.amazonaws.com"

/* ---- file helpers ------------------------------------------------------------------------ */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail_msg("cannot open %s", path);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    assert_true(n >= 0);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len) {
        *len = (size_t)n;
    }
    return buf;
}

/* Expected-output files carry no trailing newline in the suite; tolerate one added by an editor. */
static char *slurp_expected(const char *path)
{
    size_t n;
    char *s = slurp(path, &n);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r')) {
        s[--n] = '\0';
    }
    return s;
}

/* A parsed .req: "METHOD target HTTP/1.1", "Name:value" lines, blank line, body. */
#define MAXH 32
#define MAXQ 32
typedef struct parsed {
    char *text;
    const char *method;
    char *path;
    sto_sigv4_kv_t query[MAXQ];
    size_t nquery;
    sto_sigv4_kv_t headers[MAXH];
    size_t nheaders;
    const char *body;
    size_t body_len;
} parsed_t;

static void parse_query(parsed_t *p, char *qs)
{
    while (qs && *qs) {
        char *amp = strchr(qs, '&');
        if (amp) {
            *amp = '\0';
        }
        char *eq = strchr(qs, '=');
        if (eq) {
            *eq = '\0';
        }
        assert_true(p->nquery < MAXQ);
        p->query[p->nquery++] = (sto_sigv4_kv_t){qs, eq ? eq + 1 : NULL};
        qs = amp ? amp + 1 : NULL;
    }
}

static void parse_req(const char *file, parsed_t *p)
{
    size_t len;
    memset(p, 0, sizeof *p);
    p->text = slurp(file, &len);
    char *s = p->text;
    char *body = strstr(s, "\n\n");
    if (body) {
        *body = '\0';
        p->body = body + 2;
        p->body_len = len - (size_t)(p->body - p->text);
    } else {
        p->body = "";
    }
    char *line = strtok(s, "\n");
    assert_non_null(line);
    /* The target may contain spaces (get-space): method is up to the first space, the protocol
     * after the last one. */
    char *sp1 = strchr(line, ' ');
    char *sp2 = strrchr(line, ' ');
    assert_true(sp1 && sp2 && sp2 > sp1);
    *sp1 = '\0';
    *sp2 = '\0';
    assert_string_equal(sp2 + 1, "HTTP/1.1");
    p->method = line;
    p->path = sp1 + 1;
    char *qm = strchr(p->path, '?');
    if (qm) {
        *qm = '\0';
        parse_query(p, qm + 1);
    }
    while ((line = strtok(NULL, "\n")) != NULL) {
        assert_false(line[0] == ' ' || line[0] == '\t'); /* no folded headers in our cases */
        char *colon = strchr(line, ':');
        assert_non_null(colon);
        *colon = '\0';
        assert_true(p->nheaders < MAXH);
        p->headers[p->nheaders++] = (sto_sigv4_kv_t){line, colon + 1};
    }
}

/* Removes header `name` from the list and returns its (untrimmed) value, or NULL. */
static const char *take_header(parsed_t *p, const char *name)
{
    for (size_t i = 0; i < p->nheaders; i++) {
        if (strcasecmp(p->headers[i].name, name) == 0) {
            const char *v = p->headers[i].value;
            memmove(&p->headers[i], &p->headers[i + 1],
                    (p->nheaders - i - 1) * sizeof p->headers[0]);
            p->nheaders--;
            return v;
        }
    }
    return NULL;
}

/* ---- published vectors ------------------------------------------------------------------- */

typedef struct vec {
    const char *dir;  /* under test/data/sigv4/ */
    bool s3;          /* S3 API reference example (else the generic-service suite) */
    bool token_after; /* post-sts-header-after: token added after signing */
} vec_t;

static const vec_t vectors[] = {
    {"get-vanilla", false, false},
    {"get-vanilla-query", false, false},
    {"get-vanilla-empty-query-key", false, false},
    {"get-vanilla-query-order-key", false, false},
    {"get-vanilla-query-order-key-case", false, false},
    {"get-vanilla-query-order-value", false, false},
    {"get-vanilla-query-unreserved", false, false},
    {"get-vanilla-utf8-query", false, false},
    {"get-header-key-duplicate", false, false},
    {"get-header-value-order", false, false},
    {"get-header-value-trim", false, false},
    {"get-unreserved", false, false},
    {"get-utf8", false, false},
    {"get-space", false, false},
    {"get-slash", false, false},
    {"get-slashes", false, false},
    {"get-slash-dot-slash", false, false},
    {"get-slash-pointless-dot", false, false},
    {"get-relative", false, false},
    {"get-relative-relative", false, false},
    {"post-vanilla", false, false},
    {"post-vanilla-query", false, false},
    {"post-vanilla-empty-query-value", false, false},
    {"post-header-key-case", false, false},
    {"post-header-key-sort", false, false},
    {"post-header-value-case", false, false},
    {"post-x-www-form-urlencoded", false, false},
    {"post-x-www-form-urlencoded-parameters", false, false},
    {"post-sts-token/post-sts-header-before", false, false},
    {"post-sts-token/post-sts-header-after", false, true},
    {"s3-get-object", true, false},
    {"s3-put-object", true, false},
    {"s3-get-bucket-lifecycle", true, false},
    {"s3-get-bucket-list-objects", true, false},
};

static char *suite_token(void)
{
    parsed_t p;
    parse_req(DATA "post-sts-token/post-sts-header-before/post-sts-header-before.req", &p);
    const char *t = take_header(&p, "X-Amz-Security-Token");
    assert_non_null(t);
    char *dup = strdup(t);
    free(p.text);
    return dup;
}

static void run_vector(const vec_t *v, sto_sigv4_cache_t *cache)
{
    const char *base = strrchr(v->dir, '/') ? strrchr(v->dir, '/') + 1 : v->dir;
    char file[1024];
    parsed_t p;
    snprintf(file, sizeof file, DATA "%s/%s.req", v->dir, base);
    parse_req(file, &p);

    /* The signer adds these itself; the files show them as sent. */
    const char *amz_date = take_header(&p, "X-Amz-Date");
    const char *sha_hdr = take_header(&p, "X-Amz-Content-Sha256");
    const char *tok_hdr = take_header(&p, "X-Amz-Security-Token");
    char *token = v->token_after ? suite_token() : (tok_hdr ? strdup(tok_hdr) : NULL);

    char payload[STO_SHA256_HEX_LEN + 1];
    assert_int_equal(sto_sha256_hex(p.body, p.body_len, payload), 0);

    sto_sigv4_req_t r = {
        .method = p.method,
        .path = p.path,
        .query = p.query,
        .nquery = p.nquery,
        .headers = p.headers,
        .nheaders = p.nheaders,
        .payload_hash = payload,
        .region = "us-east-1",
    };
    sto_sigv4_creds_t c = {0};
    if (v->s3) {
        r.service = "s3";
        r.time = S3_TIME;
        c.access_key = S3_AKID;
        c.secret_key = S3_SECRET;
    } else {
        /* The suite is for a generic service: double encoding, normalised paths, and paths
         * given as they appear in the request line (as the AWS SDKs feed it). */
        r.service = "service";
        r.time = SUITE_TIME;
        r.double_encode = true;
        r.normalize_path = true;
        r.path_is_encoded = true;
        r.token_unsigned = v->token_after;
        c.access_key = SUITE_AKID;
        c.secret_key = SUITE_SECRET;
    }
    c.session_token = token;

    char creq[STO_SIGV4_CREQ_DEFAULT];
    sto_sigv4_out_t out;
    int rc = sto_sigv4_sign(cache, &r, &c, creq, sizeof creq, &out);
    if (rc != 0) {
        fail_msg("%s: sign returned %d", v->dir, rc);
    }

    snprintf(file, sizeof file, DATA "%s/%s.creq", v->dir, base);
    char *want_creq = slurp_expected(file);
    snprintf(file, sizeof file, DATA "%s/%s.sts", v->dir, base);
    char *want_sts = slurp_expected(file);
    snprintf(file, sizeof file, DATA "%s/%s.authz", v->dir, base);
    char *want_authz = slurp_expected(file);

    if (strcmp(creq, want_creq) != 0) {
        fail_msg("%s: canonical request\n--- got ---\n%s\n--- want ---\n%s", v->dir, creq,
                 want_creq);
    }
    assert_int_equal(out.creq_len, strlen(creq));
    if (strcmp(out.string_to_sign, want_sts) != 0) {
        fail_msg("%s: string to sign\n--- got ---\n%s\n--- want ---\n%s", v->dir,
                 out.string_to_sign, want_sts);
    }
    if (strcmp(out.authorization, want_authz) != 0) {
        fail_msg("%s: authorization\n got %s\nwant %s", v->dir, out.authorization, want_authz);
    }
    assert_non_null(strstr(want_authz, out.signature));
    assert_non_null(amz_date);
    assert_string_equal(out.amz_date, amz_date);
    if (v->s3) {
        assert_non_null(sha_hdr);
        assert_string_equal(out.content_sha256, sha_hdr);
    } else {
        assert_string_equal(out.content_sha256, "");
    }
    if (token) {
        assert_ptr_equal(out.security_token, token);
    } else {
        assert_null(out.security_token);
    }

    free(want_creq);
    free(want_sts);
    free(want_authz);
    free(token);
    free(p.text);
}

static void test_published_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        run_vector(&vectors[i], NULL);
    }
    /* Once more through one cache: the two credential sets alternate, so keys are re-derived,
     * and the results must not change. */
    sto_sigv4_cache_t cache;
    sto_sigv4_cache_init(&cache);
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        run_vector(&vectors[i], &cache);
    }
    assert_int_equal(cache.derivations, 2);
    sto_sigv4_cache_clear(&cache);
}

/* The S3 doc's GET Object example once more, written out by hand as the S3 backend would call
 * it, with the values quoted in the S3 API reference. */
static void test_s3_get_object_inline(void **state)
{
    (void)state;
    const sto_sigv4_kv_t h[] = {{"Host", S3_HOST}, {"Range", "bytes=0-9"}};
    sto_sigv4_req_t r = {.method = "GET",
                         .path = "/test.txt",
                         .headers = h,
                         .nheaders = 2,
                         .payload_hash = STO_SIGV4_EMPTY_SHA256,
                         .region = "us-east-1",
                         .service = "s3",
                         .time = S3_TIME};
    sto_sigv4_creds_t c = {S3_AKID, S3_SECRET, NULL};
    char creq[1024];
    sto_sigv4_out_t out;
    assert_int_equal(sto_sigv4_sign(NULL, &r, &c, creq, sizeof creq, &out), 0);
    assert_string_equal(out.signature,
                        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    assert_string_equal(
        out.authorization,
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
        "aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    assert_string_equal(out.amz_date, "20130524T000000Z");
    assert_string_equal(out.content_sha256, STO_SIGV4_EMPTY_SHA256);
    assert_null(out.security_token);
}

/* ---- key derivation and cache --------------------------------------------------------------- */

static void test_derive_key(void **state)
{
    (void)state;
    /* AWS General Reference, "Examples of how to derive a signing key for Signature Version 4". */
    unsigned char k[32];
    char hex[65];
    assert_int_equal(sto_sigv4_derive_key(SUITE_SECRET, "20120215", "us-east-1", "iam", k), 0);
    for (int i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", k[i]);
    }
    assert_string_equal(hex, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
    assert_int_equal(sto_sigv4_derive_key("", "20120215", "us-east-1", "iam", k), -EINVAL);
    assert_int_equal(sto_sigv4_derive_key(NULL, "20120215", "us-east-1", "iam", k), -EINVAL);
}

static void sign_get(sto_sigv4_cache_t *cache, const char *region, const char *service,
                     const char *secret, int64_t t, char sig[65])
{
    const sto_sigv4_kv_t h[] = {{"host", "example.amazonaws.com"}};
    sto_sigv4_req_t r = {.method = "GET",
                         .path = "/k",
                         .headers = h,
                         .nheaders = 1,
                         .region = region,
                         .service = service,
                         .time = t};
    sto_sigv4_creds_t c = {"AKID", secret, NULL};
    char creq[512];
    sto_sigv4_out_t out;
    assert_int_equal(sto_sigv4_sign(cache, &r, &c, creq, sizeof creq, &out), 0);
    memcpy(sig, out.signature, 65);
}

static void test_key_cache(void **state)
{
    (void)state;
    sto_sigv4_cache_t cache;
    sto_sigv4_cache_init(&cache);
    char a[65], b[65];
    const int64_t day = 86400;
    const int64_t t0 = SUITE_TIME;

    sign_get(&cache, "us-east-1", "s3", "secret1", t0, a);
    assert_int_equal(cache.derivations, 1);
    sign_get(&cache, "us-east-1", "s3", "secret1", t0 + 60, a);
    sign_get(&cache, "us-east-1", "s3", "secret1", t0 + 3600, a);
    assert_int_equal(cache.derivations, 1); /* same day: reused */
    sign_get(NULL, "us-east-1", "s3", "secret1", t0 + 3600, b);
    assert_string_equal(a, b); /* and the reused key is the right one */

    sign_get(&cache, "us-east-1", "s3", "secret1", t0 + day, a);
    assert_int_equal(cache.derivations, 2); /* date changed */
    sign_get(NULL, "us-east-1", "s3", "secret1", t0 + day, b);
    assert_string_equal(a, b);

    sign_get(&cache, "eu-west-1", "s3", "secret1", t0 + day, a);
    assert_int_equal(cache.derivations, 3); /* region changed */
    sign_get(NULL, "eu-west-1", "s3", "secret1", t0 + day, b);
    assert_string_equal(a, b);

    sign_get(&cache, "eu-west-1", "sts", "secret1", t0 + day, a);
    assert_int_equal(cache.derivations, 4); /* service changed */
    sign_get(&cache, "eu-west-1", "sts", "secret2", t0 + day, a);
    assert_int_equal(cache.derivations, 5); /* secret changed (rotated credentials) */
    sign_get(NULL, "eu-west-1", "sts", "secret2", t0 + day, b);
    assert_string_equal(a, b);
    sign_get(&cache, "eu-west-1", "sts", "secret2", t0 + day + 1, a);
    assert_int_equal(cache.derivations, 5);

    sto_sigv4_cache_clear(&cache);
    assert_false(cache.valid);
    assert_int_equal(cache.secret[0], 0);
    sign_get(&cache, "eu-west-1", "sts", "secret2", t0 + day + 1, b);
    assert_int_equal(cache.derivations, 6); /* cleared: derived again */
    assert_string_equal(a, b);
    sto_sigv4_cache_clear(&cache);
}

/* ---- session token, UNSIGNED-PAYLOAD ------------------------------------------------------ */

static void test_session_token(void **state)
{
    (void)state;
    const char *tok = "FwoGZXIvYXdzEXAMPLE//token+with/odd=chars";
    const sto_sigv4_kv_t h[] = {{"Host", S3_HOST}};
    sto_sigv4_req_t r = {.method = "GET",
                         .path = "/test.txt",
                         .headers = h,
                         .nheaders = 1,
                         .region = "us-east-1",
                         .service = "s3",
                         .time = S3_TIME};
    sto_sigv4_creds_t c = {S3_AKID, S3_SECRET, tok};
    char creq[1024];
    sto_sigv4_out_t out;
    assert_int_equal(sto_sigv4_sign(NULL, &r, &c, creq, sizeof creq, &out), 0);
    assert_ptr_equal(out.security_token, tok);
    assert_non_null(
        strstr(creq, "\nx-amz-security-token:FwoGZXIvYXdzEXAMPLE//token+with/odd=chars\n"));
    assert_non_null(
        strstr(creq, "\n\nhost;x-amz-content-sha256;x-amz-date;x-amz-security-token\n"));
    assert_non_null(
        strstr(out.authorization,
               "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"));
    char signed_sig[65];
    memcpy(signed_sig, out.signature, 65);

    /* Unsigned token: still returned for sending, absent from the signature. */
    r.token_unsigned = true;
    assert_int_equal(sto_sigv4_sign(NULL, &r, &c, creq, sizeof creq, &out), 0);
    assert_ptr_equal(out.security_token, tok);
    assert_null(strstr(creq, "security-token"));
    assert_string_not_equal(out.signature, signed_sig);

    /* Empty token = no token. */
    r.token_unsigned = false;
    c.session_token = "";
    assert_int_equal(sto_sigv4_sign(NULL, &r, &c, creq, sizeof creq, &out), 0);
    assert_null(out.security_token);
    assert_null(strstr(creq, "security-token"));
}

static void test_unsigned_payload(void **state)
{
    (void)state;
    const sto_sigv4_kv_t h[] = {{"Host", S3_HOST}};
    sto_sigv4_req_t r = {.method = "PUT",
                         .path = "/test$file.text",
                         .headers = h,
                         .nheaders = 1,
                         .payload_hash = STO_SIGV4_UNSIGNED_PAYLOAD,
                         .region = "us-east-1",
                         .service = "s3",
                         .time = S3_TIME};
    sto_sigv4_creds_t c = {S3_AKID, S3_SECRET, NULL};
    char creq[1024];
    sto_sigv4_out_t out;
    assert_int_equal(sto_sigv4_sign(NULL, &r, &c, creq, sizeof creq, &out), 0);
    assert_string_equal(creq, "PUT\n/test%24file.text\n\n"
                              "host:examplebucket.s3.amazonaws.com\n"
                              "x-amz-content-sha256:UNSIGNED-PAYLOAD\n"
                              "x-amz-date:20130524T000000Z\n\n"
                              "host;x-amz-content-sha256;x-amz-date\n"
                              "UNSIGNED-PAYLOAD");
    assert_string_equal(out.content_sha256, "UNSIGNED-PAYLOAD");
    /* Cross-checked with an independent implementation (Python hashlib/hmac). */
    assert_string_equal(out.signature,
                        "6ceb47458d4728e0e0ae7d09c7a5405740d7c1055544c8467c96a900b42f7409");
}

/* ---- paths and encoding -------------------------------------------------------------------- */

static void test_uri_encode(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        bool slash;
        const char *out;
    } t[] = {
        {"", false, ""},
        {"abcXYZ019-._~", false, "abcXYZ019-._~"},
        {"a b", false, "a%20b"},
        {"a+b=c&d", false, "a%2Bb%3Dc%26d"},
        {"/a/b/", false, "/a/b/"},
        {"/a/b/", true, "%2Fa%2Fb%2F"},
        {"100%", false, "100%25"},
        {"$@!*'();:,?#[]", false, "%24%40%21%2A%27%28%29%3B%3A%2C%3F%23%5B%5D"},
        {"\xe1\x88\xb4", false, "%E1%88%B4"},
        {"\x01\x7f\xff", true, "%01%7F%FF"},
    };
    char out[128];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int n = sto_uri_encode(t[i].in, out, sizeof out, t[i].slash);
        assert_int_equal(n, (int)strlen(t[i].out));
        assert_string_equal(out, t[i].out);
    }
    /* exact fit and one short */
    assert_int_equal(sto_uri_encode("a b", out, 6, false), 5);
    assert_int_equal(sto_uri_encode("a b", out, 5, false), -ENOSPC);
    assert_int_equal(sto_uri_encode("a b", out, 0, false), -ENOSPC);
    assert_int_equal(sto_uri_encode(NULL, out, 5, false), -EINVAL);

    char hex[65];
    assert_int_equal(sto_sha256_hex("", 0, hex), 0);
    assert_string_equal(hex, STO_SIGV4_EMPTY_SHA256);
    assert_int_equal(sto_sha256_hex(NULL, 0, hex), 0);
    assert_string_equal(hex, STO_SIGV4_EMPTY_SHA256);
    assert_int_equal(sto_sha256_hex("Welcome to Amazon S3.", 21, hex), 0);
    assert_string_equal(hex, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    assert_int_equal(sto_sha256_hex(NULL, 1, hex), -EINVAL);
}

/* Returns the canonical URI line of the canonical request for path under the given options. */
static void canon_path(const char *path, bool dbl, bool norm, bool enc, char *line, size_t cap)
{
    const sto_sigv4_kv_t h[] = {{"host", "h"}};
    sto_sigv4_req_t r = {.method = "GET",
                         .path = path,
                         .double_encode = dbl,
                         .normalize_path = norm,
                         .path_is_encoded = enc,
                         .headers = h,
                         .nheaders = 1,
                         .region = "r",
                         .service = "s3",
                         .time = 0};
    sto_sigv4_creds_t c = {"A", "S", NULL};
    char creq[1024];
    sto_sigv4_out_t out;
    assert_int_equal(sto_sigv4_sign(NULL, &r, &c, creq, sizeof creq, &out), 0);
    char *a = strchr(creq, '\n') + 1;
    char *b = strchr(a, '\n');
    snprintf(line, cap, "%.*s", (int)(b - a), a);
}

static void test_paths(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        bool dbl, norm, enc;
        const char *want;
    } t[] = {
        /* S3: encode once, never normalise */
        {"/bucket/my key.txt", false, false, false, "/bucket/my%20key.txt"},
        {"/b/a//b/./c/../d", false, false, false, "/b/a//b/./c/../d"},
        {"/b/100%.txt", false, false, false, "/b/100%25.txt"},
        {"/b/k~-_.", false, false, false, "/b/k~-_."},
        {"", false, false, false, "/"},
        {NULL, false, false, false, "/"},
        {"nolead", false, false, false, "/nolead"},
        /* S3 with a pre-encoded path: used as is */
        {"/b/my%20key.txt", false, false, true, "/b/my%20key.txt"},
        /* generic services: double encoding of a raw path */
        {"/a b/c", true, false, false, "/a%2520b/c"},
        {"/a%b", true, false, false, "/a%2525b"},
        /* ... or one more pass over an encoded one */
        {"/a%20b", true, false, true, "/a%2520b"},
        /* normalisation */
        {"//", false, true, false, "/"},
        {"//example//", false, true, false, "/example/"},
        {"/./", false, true, false, "/"},
        {"/./example", false, true, false, "/example"},
        {"/example/..", false, true, false, "/"},
        {"/a/b/../../..", false, true, false, "/"},
        {"/a/b/../c/", false, true, false, "/a/c/"},
        {"/a/b/..", false, true, false, "/a"},
        {"/a b/../c d", true, true, false, "/c%2520d"},
        {"/..a/.b./...", false, true, false, "/..a/.b./..."},
    };
    char line[256];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        canon_path(t[i].in, t[i].dbl, t[i].norm, t[i].enc, line, sizeof line);
        if (strcmp(line, t[i].want) != 0) {
            fail_msg("path '%s' (dbl=%d norm=%d enc=%d): got '%s' want '%s'",
                     t[i].in ? t[i].in : "(null)", t[i].dbl, t[i].norm, t[i].enc, line, t[i].want);
        }
    }
}

static void test_query_and_headers(void **state)
{
    (void)state;
    /* Query: sorted by encoded name then value; names and values encoded with '/' encoded;
     * a bare name signs as "name=". Headers: lowercased, trimmed, merged, sorted. */
    const sto_sigv4_kv_t q[] = {{"prefix", "a/b c"}, {"list-type", "2"}, {"delimiter", "/"},
                                {"uploads", NULL},   {"a", "2"},         {"a", "10"},
                                {"B", "x"}};
    const sto_sigv4_kv_t h[] = {{"X-Amz-Meta-B", "  two   words  "},
                                {"host", "h.example"},
                                {"X-AMZ-META-a", "1"},
                                {"x-amz-meta-b", "\tsecond\t"}};
    sto_sigv4_req_t r = {.method = "GET",
                         .path = "/bkt/",
                         .query = q,
                         .nquery = sizeof q / sizeof q[0],
                         .headers = h,
                         .nheaders = sizeof h / sizeof h[0],
                         .region = "us-east-1",
                         .service = "s3",
                         .time = S3_TIME};
    sto_sigv4_creds_t c = {S3_AKID, S3_SECRET, NULL};
    char creq[1024];
    sto_sigv4_out_t out;
    assert_int_equal(sto_sigv4_sign(NULL, &r, &c, creq, sizeof creq, &out), 0);
    assert_string_equal(
        creq,
        "GET\n/bkt/\n"
        "B=x&a=10&a=2&delimiter=%2F&list-type=2&prefix=a%2Fb%20c&uploads=\n"
        "host:h.example\n"
        "x-amz-content-sha256:" STO_SIGV4_EMPTY_SHA256 "\n"
        "x-amz-date:20130524T000000Z\n"
        "x-amz-meta-a:1\n"
        "x-amz-meta-b:two words,second\n\n"
        "host;x-amz-content-sha256;x-amz-date;x-amz-meta-a;x-amz-meta-b\n" STO_SIGV4_EMPTY_SHA256);
}

static void test_content_sha256_flag(void **state)
{
    (void)state;
    const sto_sigv4_kv_t h[] = {{"host", "h"}};
    sto_sigv4_req_t r = {.method = "GET",
                         .headers = h,
                         .nheaders = 1,
                         .region = "us-east-1",
                         .service = "execute-api",
                         .time = SUITE_TIME};
    sto_sigv4_creds_t c = {"A", "S", NULL};
    char creq[512];
    sto_sigv4_out_t out;
    assert_int_equal(sto_sigv4_sign(NULL, &r, &c, creq, sizeof creq, &out), 0);
    assert_string_equal(out.content_sha256, "");
    assert_null(strstr(creq, "x-amz-content-sha256"));
    r.content_sha256_header = true;
    assert_int_equal(sto_sigv4_sign(NULL, &r, &c, creq, sizeof creq, &out), 0);
    assert_string_equal(out.content_sha256, STO_SIGV4_EMPTY_SHA256);
    assert_non_null(strstr(creq, "\nx-amz-content-sha256:" STO_SIGV4_EMPTY_SHA256 "\n"));
}

/* ---- errors -------------------------------------------------------------------------------- */

static void test_errors(void **state)
{
    (void)state;
    const sto_sigv4_kv_t h[] = {{"host", "h"}};
    sto_sigv4_req_t r = {.method = "GET",
                         .path = "/a",
                         .headers = h,
                         .nheaders = 1,
                         .region = "us-east-1",
                         .service = "s3",
                         .time = S3_TIME};
    sto_sigv4_creds_t c = {"A", "S", NULL};
    char creq[512];
    sto_sigv4_out_t out;
    assert_int_equal(sto_sigv4_sign(NULL, &r, &c, creq, sizeof creq, &out), 0);
    size_t need = out.creq_len + 1;

    /* scratch too small, by one byte and entirely */
    assert_int_equal(sto_sigv4_sign(NULL, &r, &c, creq, need, &out), 0);
    assert_int_equal(sto_sigv4_sign(NULL, &r, &c, creq, need - 1, &out), -ENOSPC);
    assert_int_equal(sto_sigv4_sign(NULL, &r, &c, creq, 0, &out), -ENOSPC);

    /* Authorization overflow: a signed-headers list longer than the fixed field. */
    static char names[60][40];
    static char big[64 * 1024];
    sto_sigv4_kv_t many[61];
    many[0] = (sto_sigv4_kv_t){"host", "h"};
    for (int i = 0; i < 60; i++) {
        snprintf(names[i], sizeof names[i], "x-amz-meta-a-rather-long-name-%02d", i);
        many[i + 1] = (sto_sigv4_kv_t){names[i], "v"};
    }
    sto_sigv4_req_t rm = r;
    rm.headers = many;
    rm.nheaders = 61;
    assert_int_equal(sto_sigv4_sign(NULL, &rm, &c, big, sizeof big, &out), -ENOSPC);
    rm.nheaders = 20;
    assert_int_equal(sto_sigv4_sign(NULL, &rm, &c, big, sizeof big, &out), 0);

    /* invalid arguments */
    assert_int_equal(sto_sigv4_sign(NULL, NULL, &c, creq, sizeof creq, &out), -EINVAL);
    assert_int_equal(sto_sigv4_sign(NULL, &r, NULL, creq, sizeof creq, &out), -EINVAL);
    assert_int_equal(sto_sigv4_sign(NULL, &r, &c, NULL, sizeof creq, &out), -EINVAL);
    assert_int_equal(sto_sigv4_sign(NULL, &r, &c, creq, sizeof creq, NULL), -EINVAL);

    sto_sigv4_req_t bad = r;
    bad.nheaders = 0; /* no host */
    assert_int_equal(sto_sigv4_sign(NULL, &bad, &c, creq, sizeof creq, &out), -EINVAL);
    const sto_sigv4_kv_t dated[] = {{"host", "h"}, {"X-Amz-Date", "20130524T000000Z"}};
    bad = r;
    bad.headers = dated;
    bad.nheaders = 2;
    assert_int_equal(sto_sigv4_sign(NULL, &bad, &c, creq, sizeof creq, &out), -EINVAL);
    const sto_sigv4_kv_t crlf[] = {{"host", "h\r\nx-evil: 1"}};
    bad.headers = crlf;
    bad.nheaders = 1;
    assert_int_equal(sto_sigv4_sign(NULL, &bad, &c, creq, sizeof creq, &out), -EINVAL);
    const sto_sigv4_kv_t badname[] = {{"host", "h"}, {"bad name", "v"}};
    bad.headers = badname;
    bad.nheaders = 2;
    assert_int_equal(sto_sigv4_sign(NULL, &bad, &c, creq, sizeof creq, &out), -EINVAL);
    bad = r;
    bad.nheaders = STO_SIGV4_MAX_HEADERS + 1;
    assert_int_equal(sto_sigv4_sign(NULL, &bad, &c, creq, sizeof creq, &out), -EINVAL);
    bad = r;
    bad.region = "us/east";
    assert_int_equal(sto_sigv4_sign(NULL, &bad, &c, creq, sizeof creq, &out), -EINVAL);
    bad.region = "";
    assert_int_equal(sto_sigv4_sign(NULL, &bad, &c, creq, sizeof creq, &out), -EINVAL);
    bad = r;
    bad.service = NULL;
    assert_int_equal(sto_sigv4_sign(NULL, &bad, &c, creq, sizeof creq, &out), -EINVAL);
    bad = r;
    bad.payload_hash = "has space";
    assert_int_equal(sto_sigv4_sign(NULL, &bad, &c, creq, sizeof creq, &out), -EINVAL);
    bad = r;
    bad.time = -1;
    assert_int_equal(sto_sigv4_sign(NULL, &bad, &c, creq, sizeof creq, &out), -EINVAL);
    bad.time = INT64_C(253402300800); /* year 10000 */
    assert_int_equal(sto_sigv4_sign(NULL, &bad, &c, creq, sizeof creq, &out), -EINVAL);
    bad = r;
    bad.method = "";
    assert_int_equal(sto_sigv4_sign(NULL, &bad, &c, creq, sizeof creq, &out), -EINVAL);

    sto_sigv4_creds_t bc = c;
    bc.secret_key = "";
    assert_int_equal(sto_sigv4_sign(NULL, &r, &bc, creq, sizeof creq, &out), -EINVAL);
    bc = c;
    bc.access_key = NULL;
    assert_int_equal(sto_sigv4_sign(NULL, &r, &bc, creq, sizeof creq, &out), -EINVAL);
    bc = c;
    bc.session_token = "tok\nen";
    assert_int_equal(sto_sigv4_sign(NULL, &r, &bc, creq, sizeof creq, &out), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_published_vectors),
        cmocka_unit_test(test_s3_get_object_inline),
        cmocka_unit_test(test_derive_key),
        cmocka_unit_test(test_key_cache),
        cmocka_unit_test(test_session_token),
        cmocka_unit_test(test_unsigned_payload),
        cmocka_unit_test(test_uri_encode),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_query_and_headers),
        cmocka_unit_test(test_content_sha256_flag),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
