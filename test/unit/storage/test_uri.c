/* Unit tests for lib/storage URIs: parsing of every scheme, relative forms, normalisation,
 * errors with their messages, joining. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "rx/err.h"
#include "sto/backend.h"
#include "sto/err.h"
#include "sto/uri.h"

typedef struct good_case {
    const char *uri;
    sto_scheme_t scheme;
    const char *authority;
    const char *endpoint;
    const char *path;
    int trailing_slash;
} good_case_t;

static const good_case_t good[] = {
    {"file:///data/bench/", STO_SCHEME_FILE, "", "", "/data/bench", 1},
    {"file:///data/bench", STO_SCHEME_FILE, "", "", "/data/bench", 0},
    {"file:///", STO_SCHEME_FILE, "", "", "/", 1},
    {"FILE:///x", STO_SCHEME_FILE, "", "", "/x", 0},
    {"direct:///mnt/nvme/t/", STO_SCHEME_DIRECT, "", "", "/mnt/nvme/t", 1},
    /* normalisation */
    {"file:///a//b///c/", STO_SCHEME_FILE, "", "", "/a/b/c", 1},
    {"file:///a/./b/.", STO_SCHEME_FILE, "", "", "/a/b", 0},
    {"file:///a/b/../c", STO_SCHEME_FILE, "", "", "/a/c", 0},
    {"file:///a/b/../../..", STO_SCHEME_FILE, "", "", "/", 0},
    {"file:///../x", STO_SCHEME_FILE, "", "", "/x", 0},
    {"direct:////a/../b//", STO_SCHEME_DIRECT, "", "", "/b", 1},
    {"file:///a/b..c/.d", STO_SCHEME_FILE, "", "", "/a/b..c/.d", 0},
    /* cloud */
    {"s3://bucket/prefix/", STO_SCHEME_S3, "bucket", "", "prefix", 1},
    {"s3://bucket/a/b/c", STO_SCHEME_S3, "bucket", "", "a/b/c", 0},
    {"s3://bucket", STO_SCHEME_S3, "bucket", "", "", 0},
    {"s3://bucket/", STO_SCHEME_S3, "bucket", "", "", 1},
    {"s3://my.bucket.name/p", STO_SCHEME_S3, "my.bucket.name", "", "p", 0},
    {"s3://127.0.0.1:9000/bkt/pre/", STO_SCHEME_S3, "bkt", "127.0.0.1:9000", "pre", 1},
    {"s3://minio:9000/bkt", STO_SCHEME_S3, "bkt", "minio:9000", "", 0},
    {"az://acct/cont/pre/fix/", STO_SCHEME_AZ, "acct/cont", "", "pre/fix", 1},
    {"az://acct/cont", STO_SCHEME_AZ, "acct/cont", "", "", 0},
    {"gs://bkt/x/", STO_SCHEME_GS, "bkt", "", "x", 1},
    {"gcs://bkt/x/y", STO_SCHEME_GS, "bkt", "", "x/y", 0},
};

static void test_good(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const good_case_t *c = &good[i];
        sto_uri_t u;
        char err[256] = "x";
        int rc = sto_uri_parse(c->uri, &u, err, sizeof(err));
        if (rc != 0)
            fail_msg("%s: rc %d: %s", c->uri, rc, err);
        assert_string_equal(err, "");
        assert_int_equal(u.scheme, c->scheme);
        assert_string_equal(u.authority, c->authority);
        assert_string_equal(u.endpoint, c->endpoint);
        if (strcmp(u.path, c->path) != 0)
            fail_msg("%s: path \"%s\", expected \"%s\"", c->uri, u.path, c->path);
        assert_int_equal(u.trailing_slash, c->trailing_slash);
    }
}

static void test_relative(void **state)
{
    (void)state;
    char cwd[STO_PATH_MAX], want[STO_PATH_MAX + 64];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    sto_uri_t u;
    char err[256];

    assert_int_equal(sto_uri_parse("file://./dir", &u, err, sizeof(err)), 0);
    snprintf(want, sizeof(want), "%s/dir", strcmp(cwd, "/") ? cwd : "");
    assert_string_equal(u.path, want);
    assert_int_equal(u.trailing_slash, 0);

    assert_int_equal(sto_uri_parse("file://dir/sub/", &u, err, sizeof(err)), 0);
    snprintf(want, sizeof(want), "%s/dir/sub", strcmp(cwd, "/") ? cwd : "");
    assert_string_equal(u.path, want);
    assert_int_equal(u.trailing_slash, 1);

    assert_int_equal(sto_uri_parse("direct://./a/../b/./", &u, err, sizeof(err)), 0);
    assert_int_equal(u.scheme, STO_SCHEME_DIRECT);
    snprintf(want, sizeof(want), "%s/b", strcmp(cwd, "/") ? cwd : "");
    assert_string_equal(u.path, want);

    assert_int_equal(sto_uri_parse("file://.", &u, err, sizeof(err)), 0);
    assert_string_equal(u.path, cwd);

    /* Going up from the cwd stays lexical. */
    assert_int_equal(chdir("/tmp"), 0);
    assert_int_equal(sto_uri_parse("file://../etc/x", &u, err, sizeof(err)), 0);
    assert_string_equal(u.path, "/etc/x");
    assert_int_equal(chdir(cwd), 0);
}

typedef struct bad_case {
    const char *uri;
    int rc;
    const char *msg; /* substring of err */
} bad_case_t;

static const bad_case_t bad[] = {
    {"", STO_EURI, "empty URI"},
    {"/data/bench", STO_EURI, "missing scheme \"://\""},
    {"data", STO_EURI, "supported: file://"},
    {"://x", STO_EURI, "missing scheme"},
    {"file:/x", STO_EURI, "missing scheme"},
    {"ftp://host/x", STO_ESCHEME, "unknown scheme \"ftp://\""},
    {"http://host/x", STO_ESCHEME, "supported: file://, direct://, s3://, az://, gs://"},
    {"file://", STO_EURI, "empty path"},
    {"direct://", STO_EURI, "empty path"},
    {"file:///a\tb", STO_EURI, "control character 0x09 at offset 9"},
    {"file:///a\nb", STO_EURI, "control character 0x0a"},
    {"s3://bucket/a\x7f", STO_EURI, "control character 0x7f"},
    {"s3://", STO_EURI, "missing bucket"},
    {"s3:///prefix", STO_EURI, "missing bucket"},
    {"gs://", STO_EURI, "missing bucket"},
    {"s3://host:9000/", STO_EURI, "missing bucket after endpoint"},
    {"s3://host:9000", STO_EURI, "missing bucket after endpoint"},
    {"s3://host:abc/b", STO_EURI, "bad endpoint"},
    {"s3://host:70000/b", STO_EURI, "bad endpoint"},
    {"s3://:9000/b", STO_EURI, "bad endpoint"},
    {"az://", STO_EURI, "missing storage account"},
    {"az://acct", STO_EURI, "missing container"},
    {"az://acct/", STO_EURI, "missing container"},
};

static void test_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sto_uri_t u;
        char err[512] = "";
        int rc = sto_uri_parse(bad[i].uri, &u, err, sizeof(err));
        if (rc != bad[i].rc)
            fail_msg("\"%s\": rc %d, expected %d (%s)", bad[i].uri, rc, bad[i].rc, err);
        if (!strstr(err, bad[i].msg))
            fail_msg("\"%s\": error \"%s\" lacks \"%s\"", bad[i].uri, err, bad[i].msg);
    }
    /* NULL err is allowed. */
    sto_uri_t u;
    assert_int_equal(sto_uri_parse("nope", &u, NULL, 0), STO_EURI);
    assert_int_equal(sto_uri_parse(NULL, &u, NULL, 0), STO_EURI);
}

static void test_too_long(void **state)
{
    (void)state;
    size_t n = STO_PATH_MAX + 10;
    char *uri = malloc(n + 1);
    assert_non_null(uri);
    memcpy(uri, "file:///", 8);
    memset(uri + 8, 'a', n - 8);
    uri[n] = '\0';
    sto_uri_t u;
    char err[256];
    assert_int_equal(sto_uri_parse(uri, &u, err, sizeof(err)), STO_EURI);
    assert_non_null(strstr(err, "too long"));

    /* An authority that does not fit. */
    memcpy(uri, "s3://", 5);
    memset(uri + 5, 'b', 300);
    uri[305] = '\0';
    assert_int_equal(sto_uri_parse(uri, &u, err, sizeof(err)), STO_EURI);
    assert_non_null(strstr(err, "too long"));

    /* A small err buffer is truncated, not overrun. */
    char small[8];
    assert_int_equal(sto_uri_parse("ftp://x", &u, small, sizeof(small)), STO_ESCHEME);
    assert_int_equal(strlen(small), 7);
    free(uri);
}

typedef struct join_case {
    const char *base, *rel, *want;
} join_case_t;

static const join_case_t joins[] = {
    {"file:///data/", "x.dat", "file:///data/x.dat"},
    {"file:///data", "x.dat", "file:///data/x.dat"},
    {"file:///data//", "//x.dat", "file:///data/x.dat"},
    {"file:///data/", "/sub/x.dat", "file:///data/sub/x.dat"},
    {"file:///", "x", "file:///x"},
    {"file:///", "/x", "file:///x"},
    {"s3://bucket/pre/", "obj", "s3://bucket/pre/obj"},
    {"s3://bucket", "obj", "s3://bucket/obj"},
    {"s3://", "bucket/obj", "s3://bucket/obj"},
    {"s3://bucket/pre/", "", "s3://bucket/pre/"},
    {"s3://bucket/pre/", "gs://other/x", "gs://other/x"},
    {"dir", "x", "dir/x"},
    {"dir/", "x/", "dir/x/"},
    {"/", "x", "/x"},
    {"", "x", "x"},
};

static void test_join(void **state)
{
    (void)state;
    char out[256];
    for (size_t i = 0; i < sizeof(joins) / sizeof(joins[0]); i++) {
        assert_int_equal(sto_uri_join(joins[i].base, joins[i].rel, out, sizeof(out)), 0);
        if (strcmp(out, joins[i].want) != 0)
            fail_msg("join(\"%s\", \"%s\") = \"%s\", expected \"%s\"", joins[i].base, joins[i].rel,
                     out, joins[i].want);
    }
    /* Exactly fitting and one byte short. */
    char fit[13];
    assert_int_equal(sto_uri_join("s3://b", "abcde", fit, sizeof(fit)), 0);
    assert_string_equal(fit, "s3://b/abcde");
    assert_int_equal(sto_uri_join("s3://b", "abcdef", fit, sizeof(fit)), RX_EINVAL);
    assert_int_equal(sto_uri_join("s3://b", "gs://abcdefgh", fit, sizeof(fit)), RX_EINVAL);
    assert_int_equal(sto_uri_join(NULL, "x", out, sizeof(out)), RX_EINVAL);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(sto_scheme_name(STO_SCHEME_FILE), "file");
    assert_string_equal(sto_scheme_name(STO_SCHEME_DIRECT), "direct");
    assert_string_equal(sto_scheme_name(STO_SCHEME_S3), "s3");
    assert_string_equal(sto_scheme_name(STO_SCHEME_AZ), "az");
    assert_string_equal(sto_scheme_name(STO_SCHEME_GS), "gs");
    assert_string_equal(sto_op_name(STO_OP_GET), "GET");
    assert_string_equal(sto_op_name(STO_OP_DEL), "DELETE");
    assert_string_equal(sto_op_name(STO_OP__COUNT), "?");
}

static void test_errors(void **state)
{
    (void)state;
    sto_err_register();
    sto_err_register();
    assert_string_equal(sto_strerror(STO_ENOTFOUND), "object not found");
    assert_string_equal(rx_strerror(STO_ENODIRECT), "filesystem does not support O_DIRECT");
    assert_string_equal(rx_strerror(STO_ECANCELED), "request canceled");
    assert_string_equal(sto_strerror(RX_EINVAL), "invalid argument");
    assert_int_equal(sto_err_from_errno(0), 0);
    assert_int_equal(sto_err_from_errno(ENOENT), STO_ENOTFOUND);
    assert_int_equal(sto_err_from_errno(EEXIST), STO_EEXIST);
    assert_int_equal(sto_err_from_errno(EACCES), STO_EPERM);
    assert_int_equal(sto_err_from_errno(EPERM), STO_EPERM);
    assert_int_equal(sto_err_from_errno(ENOSPC), STO_ENOSPC);
    assert_int_equal(sto_err_from_errno(ENOTEMPTY), STO_ENOTEMPTY);
    assert_int_equal(sto_err_from_errno(EIO), STO_EIO);
    assert_int_equal(sto_err_from_errno(ECANCELED), STO_ECANCELED);
    assert_int_equal(sto_err_from_errno(EINVAL), UV_EINVAL);
    assert_int_equal(sto_err_from_errno(EISDIR), UV_EISDIR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),   cmocka_unit_test(test_relative),
        cmocka_unit_test(test_bad),    cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_join),   cmocka_unit_test(test_names),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
