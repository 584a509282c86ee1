/* Signed S3 requests: the published S3 examples (virtual-host style), path style, anonymous. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sto/s3req.h"

#define T_20130524 1369353600 /* 20130524T000000Z */

static void example_endpoint(sto_s3_endpoint_t *e, sto_s3_creds_t *c)
{
    memset(e, 0, sizeof(*e));
    e->tls = 1;
    e->port = 443;
    snprintf(e->host, sizeof(e->host), "s3.amazonaws.com");
    snprintf(e->region, sizeof(e->region), "us-east-1");
    e->virtual_host = 1;
    memset(c, 0, sizeof(*c));
    snprintf(c->access_key, sizeof(c->access_key), "AKIAIOSFODNN7EXAMPLE");
    snprintf(c->secret_key, sizeof(c->secret_key), "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
}

static const char *hdr(const sto_s3_request_t *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0) return r->headers[i].value;
    return NULL;
}

static void test_get_object_example(void **s)
{
    (void)s;
    sto_s3_endpoint_t e;
    sto_s3_creds_t c;
    example_endpoint(&e, &c);
    sto_sigv4_kv_t range = {"Range", "bytes=0-9"};
    sto_s3_req_in_t in = {.method = "GET", .bucket = "examplebucket", .key = "test.txt",
                          .headers = &range, .nheaders = 1, .content_length = -1,
                          .time = T_20130524};
    sto_s3_request_t r;
    char err[128];
    assert_int_equal(sto_s3_request_build(&e, &c, NULL, &in, &r, err, sizeof(err)), 0);
    assert_string_equal(r.target, "/test.txt");
    assert_string_equal(hdr(&r, "Host"), "examplebucket.s3.amazonaws.com");
    assert_string_equal(r.signature,
                        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    assert_string_equal(hdr(&r, "x-amz-date"), "20130524T000000Z");
    assert_string_equal(hdr(&r, "x-amz-content-sha256"), STO_SIGV4_EMPTY_SHA256);
    assert_non_null(strstr(hdr(&r, "Authorization"),
                           "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date"));
    assert_null(hdr(&r, "Content-Length"));
}

static void test_put_object_example(void **s)
{
    (void)s;
    sto_s3_endpoint_t e;
    sto_s3_creds_t c;
    example_endpoint(&e, &c);
    const char *body = "Welcome to Amazon S3.";
    char hash[65];
    sto_sha256_hex(body, strlen(body), hash);
    sto_sigv4_kv_t h[] = {{"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                          {"x-amz-storage-class", "REDUCED_REDUNDANCY"}};
    sto_s3_req_in_t in = {.method = "PUT", .bucket = "examplebucket", .key = "test$file.text",
                          .headers = h, .nheaders = 2, .content_length = (int64_t)strlen(body),
                          .payload_hash = hash, .time = T_20130524};
    sto_s3_request_t r;
    assert_int_equal(sto_s3_request_build(&e, &c, NULL, &in, &r, NULL, 0), 0);
    assert_string_equal(r.target, "/test%24file.text");
    assert_string_equal(r.signature,
                        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
    assert_string_equal(hdr(&r, "Content-Length"), "21");
}

static void test_list_example(void **s)
{
    (void)s;
    sto_s3_endpoint_t e;
    sto_s3_creds_t c;
    example_endpoint(&e, &c);
    sto_sigv4_kv_t q[] = {{"max-keys", "2"}, {"prefix", "J"}};
    sto_s3_req_in_t in = {.method = "GET", .bucket = "examplebucket", .query = q, .nquery = 2,
                          .content_length = -1, .time = T_20130524};
    sto_s3_request_t r;
    sto_sigv4_cache_t cache;
    sto_sigv4_cache_init(&cache);
    assert_int_equal(sto_s3_request_build(&e, &c, &cache, &in, &r, NULL, 0), 0);
    assert_string_equal(r.target, "/?max-keys=2&prefix=J");
    assert_string_equal(r.signature,
                        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
    /* the cached key gives the same signature */
    assert_int_equal(sto_s3_request_build(&e, &c, &cache, &in, &r, NULL, 0), 0);
    assert_string_equal(r.signature,
                        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
    assert_int_equal(cache.derivations, 1);
}

static void test_path_style_and_anonymous(void **s)
{
    (void)s;
    sto_s3_endpoint_t e;
    sto_s3_creds_t c;
    char err[128];
    assert_int_equal(sto_s3_endpoint_parse("http://127.0.0.1:4569", &e, err, sizeof(err)), 0);
    memset(&c, 0, sizeof(c));
    c.anonymous = 1;
    sto_sigv4_kv_t q[] = {{"list-type", "2"}, {"prefix", "a b/ü"}, {"continuation-token", "x+y="}};
    sto_s3_req_in_t in = {.method = "GET", .bucket = "bench", .key = "dir/my key+1.dat",
                          .query = q, .nquery = 3, .content_length = -1, .time = T_20130524};
    sto_s3_request_t r;
    assert_int_equal(sto_s3_request_build(&e, &c, NULL, &in, &r, err, sizeof(err)), 0);
    assert_string_equal(r.target, "/bench/dir/my%20key%2B1.dat?list-type=2&prefix=a%20b%2F%C3%BC"
                                  "&continuation-token=x%2By%3D");
    assert_string_equal(hdr(&r, "Host"), "127.0.0.1:4569");
    assert_null(hdr(&r, "Authorization"));
    assert_string_equal(r.signature, "");
    /* signed, with a session token; a PUT body defaults to UNSIGNED-PAYLOAD */
    c.anonymous = 0;
    snprintf(c.access_key, sizeof(c.access_key), "S3RVER");
    snprintf(c.secret_key, sizeof(c.secret_key), "S3RVER");
    snprintf(c.session_token, sizeof(c.session_token), "TOKEN");
    in.method = "PUT";
    in.nquery = 0;
    in.content_length = 4096;
    assert_int_equal(sto_s3_request_build(&e, &c, NULL, &in, &r, err, sizeof(err)), 0);
    assert_string_equal(r.target, "/bench/dir/my%20key%2B1.dat");
    assert_string_equal(hdr(&r, "x-amz-content-sha256"), "UNSIGNED-PAYLOAD");
    assert_string_equal(hdr(&r, "x-amz-security-token"), "TOKEN");
    assert_non_null(strstr(hdr(&r, "Authorization"), "x-amz-security-token"));
    assert_string_equal(hdr(&r, "Content-Length"), "4096");
    /* bucket-level request, bad input */
    in.key = NULL;
    in.method = "PUT";
    in.content_length = 0;
    assert_int_equal(sto_s3_request_build(&e, &c, NULL, &in, &r, err, sizeof(err)), 0);
    assert_string_equal(r.target, "/bench");
    in.bucket = "";
    assert_int_equal(sto_s3_request_build(&e, &c, NULL, &in, &r, err, sizeof(err)), -EINVAL);
    char big[5000];
    memset(big, 'k', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    in.bucket = "b";
    in.key = big;
    assert_int_equal(sto_s3_request_build(&e, &c, NULL, &in, &r, err, sizeof(err)), -ENOSPC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_object_example),
        cmocka_unit_test(test_put_object_example),
        cmocka_unit_test(test_list_example),
        cmocka_unit_test(test_path_style_and_anonymous),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
