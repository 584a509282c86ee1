/* S3 endpoint and credential resolution. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sto/err.h"
#include "sto/s3conf.h"
#include "sto/uri.h"

static void clear_env(void)
{
    const char *vars[] = {"AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION",
                          "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                          "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) unsetenv(vars[i]);
    setenv("HOME", "/nonexistent-home-for-test", 1);
}

static void parse(const char *uri, sto_uri_t *u)
{
    char err[256];
    int rc = sto_uri_parse(uri, u, err, sizeof(err));
    if (rc) fail_msg("%s: %s", uri, err);
}

static void test_endpoint_sources(void **s)
{
    (void)s;
    clear_env();
    sto_uri_t u;
    sto_s3_endpoint_t e;
    char err[256], host[300];

    parse("s3://bucket/pre/", &u);
    assert_int_equal(sto_s3_endpoint_resolve(&u, NULL, 0, &e, err, sizeof(err)), 0);
    assert_string_equal(e.host, "s3.us-east-1.amazonaws.com");
    assert_true(e.tls);
    assert_int_equal(e.port, 443);
    assert_string_equal(e.source, "aws");
    setenv("AWS_DEFAULT_REGION", "eu-west-2", 1);
    assert_int_equal(sto_s3_endpoint_resolve(&u, NULL, 0, &e, err, sizeof(err)), 0);
    assert_string_equal(e.host, "s3.eu-west-2.amazonaws.com");
    setenv("AWS_REGION", "ap-south-1", 1); /* wins over AWS_DEFAULT_REGION */
    assert_int_equal(sto_s3_endpoint_resolve(&u, NULL, 0, &e, err, sizeof(err)), 0);
    assert_string_equal(e.region, "ap-south-1");

    setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000", 1);
    assert_int_equal(sto_s3_endpoint_resolve(&u, NULL, 0, &e, err, sizeof(err)), 0);
    assert_string_equal(e.host, "127.0.0.1");
    assert_int_equal(e.port, 9000);
    assert_false(e.tls);
    assert_string_equal(e.source, "AWS_ENDPOINT_URL");
    assert_string_equal(e.region, "ap-south-1");

    /* the config wins over the environment, the URI over both */
    assert_int_equal(sto_s3_endpoint_resolve(&u, "https://minio.local/", 0, &e, err, sizeof(err)),
                     0);
    assert_string_equal(e.host, "minio.local");
    assert_int_equal(e.port, 443);
    assert_true(e.tls);
    sto_s3_host_header(&e, "bucket", host, sizeof(host));
    assert_string_equal(host, "minio.local");
    parse("s3://10.1.2.3:8080/bkt/x/", &u);
    assert_int_equal(sto_s3_endpoint_resolve(&u, "https://minio.local", 0, &e, err, sizeof(err)),
                     0);
    assert_string_equal(e.host, "10.1.2.3");
    assert_int_equal(e.port, 8080);
    assert_false(e.tls);
    assert_string_equal(e.source, "uri");
    sto_s3_host_header(&e, "bkt", host, sizeof(host));
    assert_string_equal(host, "10.1.2.3:8080");
    parse("s3://store.example:443/bkt/", &u);
    assert_int_equal(sto_s3_endpoint_resolve(&u, NULL, 0, &e, err, sizeof(err)), 0);
    assert_true(e.tls);
    sto_s3_host_header(&e, "bkt", host, sizeof(host));
    assert_string_equal(host, "store.example");
    clear_env();
}

static void test_endpoint_parse(void **s)
{
    (void)s;
    clear_env();
    sto_s3_endpoint_t e;
    char err[256], host[300];
    assert_int_equal(sto_s3_endpoint_parse("http://[::1]:4569", &e, err, sizeof(err)), 0);
    assert_string_equal(e.host, "::1");
    assert_int_equal(e.port, 4569);
    sto_s3_host_header(&e, NULL, host, sizeof(host));
    assert_string_equal(host, "[::1]:4569");
    assert_int_equal(sto_s3_endpoint_parse("https://s3.example.com:8443/", &e, err, sizeof(err)),
                     0);
    assert_int_equal(e.port, 8443);
    const char *bad[] = {"ftp://x", "s3.example.com", "http://", "http://host:0",
                         "http://host:70000", "http://host:12x", "http://host/path",
                         "http://[::1", "http://ho st"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        if (sto_s3_endpoint_parse(bad[i], &e, err, sizeof(err)) != STO_EURI)
            fail_msg("accepted '%s'", bad[i]);
        assert_non_null(strstr(err, bad[i]));
    }
}

static void test_virtual_host(void **s)
{
    (void)s;
    clear_env();
    sto_uri_t u;
    sto_s3_endpoint_t e;
    char err[256], host[300];
    parse("s3://mybucket/p/", &u);
    assert_int_equal(sto_s3_endpoint_resolve(&u, NULL, 1, &e, err, sizeof(err)), 0);
    sto_s3_host_header(&e, "mybucket", host, sizeof(host));
    assert_string_equal(host, "mybucket.s3.us-east-1.amazonaws.com");
    parse("s3://my.bucket/p/", &u);
    assert_int_equal(sto_s3_endpoint_resolve(&u, NULL, 1, &e, err, sizeof(err)), STO_EURI);
    assert_non_null(strstr(err, "dots"));
    parse("s3://b/p/", &u);
    assert_int_equal(sto_s3_endpoint_resolve(&u, "http://127.0.0.1:9000", 1, &e, err, sizeof(err)),
                     STO_EURI);
    assert_non_null(strstr(err, "127.0.0.1"));
}

static void test_creds(void **s)
{
    (void)s;
    clear_env();
    sto_s3_creds_t c;
    char err[256];
    assert_int_equal(sto_s3_creds_load(&c, err, sizeof(err)), 0);
    assert_true(c.anonymous);

    setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
    assert_int_equal(sto_s3_creds_load(&c, err, sizeof(err)), STO_EPERM);
    assert_non_null(strstr(err, "AWS_SECRET_ACCESS_KEY"));
    setenv("AWS_SECRET_ACCESS_KEY", "SECRET", 1);
    setenv("AWS_SESSION_TOKEN", "TOKEN", 1);
    assert_int_equal(sto_s3_creds_load(&c, err, sizeof(err)), 0);
    assert_false(c.anonymous);
    assert_string_equal(c.access_key, "AKID");
    assert_string_equal(c.secret_key, "SECRET");
    assert_string_equal(c.session_token, "TOKEN");
    assert_string_equal(c.source, "environment");

    clear_env();
    char path[] = "/tmp/sai3-creds-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *ini = "# comment\n[default]\naws_access_key_id = DEFKEY\n"
                      "aws_secret_access_key=DEFSECRET\n\n[profile bench]\n"
                      "aws_access_key_id=BKEY\naws_secret_access_key = BSECRET \n"
                      "aws_session_token = BTOK\n[broken]\naws_access_key_id=X\n";
    assert_int_equal(write(fd, ini, strlen(ini)), (ssize_t)strlen(ini));
    close(fd);
    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    assert_int_equal(sto_s3_creds_load(&c, err, sizeof(err)), 0);
    assert_string_equal(c.access_key, "DEFKEY");
    assert_string_equal(c.secret_key, "DEFSECRET");
    assert_non_null(strstr(c.source, "profile default"));
    setenv("AWS_PROFILE", "bench", 1);
    assert_int_equal(sto_s3_creds_load(&c, err, sizeof(err)), 0);
    assert_string_equal(c.access_key, "BKEY");
    assert_string_equal(c.secret_key, "BSECRET");
    assert_string_equal(c.session_token, "BTOK");
    setenv("AWS_PROFILE", "broken", 1);
    assert_int_equal(sto_s3_creds_load(&c, err, sizeof(err)), STO_EPERM);
    assert_non_null(strstr(err, "broken"));
    setenv("AWS_PROFILE", "missing", 1);
    assert_int_equal(sto_s3_creds_load(&c, err, sizeof(err)), STO_EPERM);
    assert_non_null(strstr(err, "missing"));
    /* the environment wins over the file */
    setenv("AWS_ACCESS_KEY_ID", "ENVK", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "ENVS", 1);
    assert_int_equal(sto_s3_creds_load(&c, err, sizeof(err)), 0);
    assert_string_equal(c.access_key, "ENVK");
    unlink(path);
    clear_env();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoint_sources),
        cmocka_unit_test(test_endpoint_parse),
        cmocka_unit_test(test_virtual_host),
        cmocka_unit_test(test_creds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
