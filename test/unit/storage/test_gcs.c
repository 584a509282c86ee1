/* Unit tests for the gs:// pieces: base64url and JWT assertions (checked against signatures
 * made by openssl), service-account key files, credentials and endpoint resolution, object-name
 * encoding, the JSON API parsers (whole, truncated and malformed), the token cache, and the
 * backend's refusals. */
#include <errno.h>
#include <jansson.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
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
#include "sto/gcsauth.h"
#include "sto/gcsjson.h"

/* A throw-away RSA key made for these tests: openssl genpkey -algorithm RSA
 * -pkeyopt rsa_keygen_bits:2048 -out key.pem; openssl rsa -in key.pem -pubout -out pub.pem */
static const char TEST_KEY[] = "-----BEGIN PRIVATE KEY-----\n"
                               "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQClZ5WW/kJxKAgd\n"
                               "c/yjLusyHWTPl70UPiHHK0d83Q+Pcwm6G5atmrPL0/IkDiE8oeTLuVQ7Ojo7VDQ9\n"
                               "z8za2/6FJYXiVQVbx7yDOrtpU7hlEQD/IkCOeSbaEHMkPgwXX9b3cchdTVQGaVes\n"
                               "y9rqywFYSnenpzO91B3yXUnQYLZ1fcncUVuHWGlR9hLph7oHDqSyNaa0o5obG2MW\n"
                               "iMrzTcccLPD8Ndf2dBvXaryHOuJBUpOT3Nz7KBXWOJyKnO0ptm67ikEr829NVDm5\n"
                               "bC0OFWJg0YBFldP6YBrN9/c277OSyJvu0V7HnH4Ali4C+fENGR5zSBTs9kknN8Rs\n"
                               "icC8kHVlAgMBAAECggEACxfw8QEZnLRGIw+R7LHrZV+SUNgI/vAR3OVatJWxAvqA\n"
                               "twI9r2QWVf/fmCp4cTQcf8tsylIj8LG7lT+4Kh+iKPT0z1LLerXhP13zjuNmFSU4\n"
                               "T2RRNx0KDYsX5eDhd7neVZdEjHlwvsNW9YhwpNm7u9u2vcBZmIw+++/k0PyDkEql\n"
                               "VLtq3v1TNRu0cB0kkbFxTkhegMkkY8/0TmoTFEAHXjXI2dVjXyr8dgNjDEOhR48k\n"
                               "f7G3TIfcH00FEyqpHBVL9RdluSwT6Wdx1ut1txvsSVwwevLh+bCLxQDrJxgsiV/C\n"
                               "ABsuMAwjYgcwLE44O6ZHLq4HGRoqNUcGqFOqzcrKYQKBgQDbBTWobR0Rch09V09C\n"
                               "BmhFJrMNy7P/IAo+MyPfILHcSPdlYjs3KtEbeOooNt37sL9URRx/FpD86h592Z7A\n"
                               "pAfabhIIUAcJNGgGd1eWsdKd66arzV8GbqDd3GlocDQpVuIk1ioFPDaKD3YBzBj6\n"
                               "B5WFw6XZPPO1wqvOp1oqlH1mFQKBgQDBVOya/vai1b9K8CjDFdHooc5wp/WQnc1u\n"
                               "e+CJ9VCLylGG2RHTSZeMrDSDNhXuVDZoO1C/X+g3/BS9Y2bRTU9LRkGSx5vYmdkr\n"
                               "lAI0Tphb9MaMLxmZamcQH7s4QgoogIy4+aikoi5HN6bfka7u7wDLy5tB0w5Z/836\n"
                               "/c6FCTN2EQKBgHsNqUEQ1PUZTS5KoKAy42B+xrjoix+7C6Y4q13Qi719TWorz6NG\n"
                               "LigmPkEL2ppvin+5OLJ6pklC7JC+tP/86OCjWQRMmjdkt1FyucZT8EaDwKfkAhCm\n"
                               "FUGxdZOU/ul/BB24KfG5C9dzqlSGLD5GBo8aBlNQeIjVcBvyUKl9thqlAoGAFafa\n"
                               "nP4ESHci51UBa+DM038UbcASnLFgaojLvQhSjmYKPc2g1ob+x84eT7hGOp0KPyCt\n"
                               "ydIHZAYDmLdCtB0xzZ/ABp3/UgLhtaTtnkhTfrFrcBZyiqHFi6PSR9n141WK7clh\n"
                               "X5efEXElaxOZgcAZ2boj2Pq4N9KUkxHNCU/fiNECgYEAkiiNtm4Dly0EaWPmYKyx\n"
                               "z3MirAKsPgmKbD/BQLl47j2/SllL7gpHBrHZNZyMPyl9fwC4AZOWSYyL2UnxERJt\n"
                               "lY48986u13QgSIaA5GcmKDofhN63JfINW0nagfs6qbmtvU4GASYOp5ApGTgmXpm2\n"
                               "1LJffTi/PDA8AGOa/tFb14Q=\n"
                               "-----END PRIVATE KEY-----\n";

static const char TEST_PUB[] = "-----BEGIN PUBLIC KEY-----\n"
                               "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEApWeVlv5CcSgIHXP8oy7r\n"
                               "Mh1kz5e9FD4hxytHfN0Pj3MJuhuWrZqzy9PyJA4hPKHky7lUOzo6O1Q0Pc/M2tv+\n"
                               "hSWF4lUFW8e8gzq7aVO4ZREA/yJAjnkm2hBzJD4MF1/W93HIXU1UBmlXrMva6ssB\n"
                               "WEp3p6czvdQd8l1J0GC2dX3J3FFbh1hpUfYS6Ye6Bw6ksjWmtKOaGxtjFojK803H\n"
                               "HCzw/DXX9nQb12q8hzriQVKTk9zc+ygV1jicipztKbZuu4pBK/NvTVQ5uWwtDhVi\n"
                               "YNGARZXT+mAazff3Nu+zksib7tFex5x+AJYuAvnxDRkec0gU7PZJJzfEbInAvJB1\n"
                               "ZQIDAQAB\n"
                               "-----END PUBLIC KEY-----\n";

static const char TEST_EC_KEY[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQggmpEYf3uc+hBTLq3\n"
    "d8moSImnqwflgzUEey1xIiQ//k6hRANCAAQ+A47BsgSbWbJRbXpuqu7XooBzrrGC\n"
    "37s3P2txb1Cb3MPUNALzDgkqTfeWL6CsIzF4E+DiqskCL1cjfMf9hMDd\n"
    "-----END PRIVATE KEY-----\n";

#define EMAIL "bench@demo-bench.iam.gserviceaccount.com"
#define TOKEN_URI "https://oauth2.googleapis.com/token"

/* The signing input for kid "k1", EMAIL, the read_write scope, TOKEN_URI and iat 1700000000,
 * computed independently of our code:
 *   H=$(printf '%s' '{"alg":"RS256","typ":"JWT","kid":"k1"}' | basenc --base64url | tr -d '=\n')
 *   C=$(printf '%s' '{"iss":"bench@demo-bench.iam.gserviceaccount.com","scope":"https://www.
 *       googleapis.com/auth/devstorage.read_write","aud":"https://oauth2.googleapis.com/token",
 *       "iat":1700000000,"exp":1700003600}' | basenc --base64url | tr -d '=\n')   (one line)
 * and its signature (PKCS#1 v1.5 is deterministic):
 *   printf '%s' "$H.$C" | openssl dgst -sha256 -sign key.pem | basenc --base64url | tr -d '=\n' */
static const char JWT_INPUT[] =
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImsxIn0."
    "eyJpc3MiOiJiZW5jaEBkZW1vLWJlbmNoLmlhbS5nc2VydmljZWFjY291bnQuY29tIiwic2NvcGUiOiJodHRwczovL3"
    "d3dy5nb29nbGVhcGlzLmNvbS9hdXRoL2RldnN0b3JhZ2UucmVhZF93cml0ZSIsImF1ZCI6Imh0dHBzOi8vb2F1dGgy"
    "Lmdvb2dsZWFwaXMuY29tL3Rva2VuIiwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjE3MDAwMDM2MDB9";
static const char JWT_SIG[] =
    "CV9IKU4TPETg98NUCGrC-MbCx57fCRln7Sla7ltUonspqHu5lkOKwzX5JTVh3_BSYJ2RfuKzTqBUO5EYpk2JpJIu5d"
    "GEu5x0USJR6OTZPIMfnDVnjS16tO8SH_aCD9_T6xn8yTpX7Sec28YyTo_LNsJaviXfhYUY4kPV-uXldV1ljbmNtShX"
    "-Nyeo3PCCxEF2okTQIBQtdH0YgI_35QAvwBN_r-5WWTf7wQdCqZFurzwMCgT8rBfl_WA1S-R2Z27b1PbOlLEM7hxQG"
    "ORrbP5JTytiPw2PGOylIuozLUbdc0bU0aLn8UlmLgAFnYqb3wFTv3dHj50h_Pu7-DB3k2mkg";

/* A service-account document; fields named in `drop` are left out, `over` replaces one. */
static char *sa_json(const char *drop, const char *over_key, const char *over_val)
{
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("service_account"));
    json_object_set_new(o, "project_id", json_string("demo-bench"));
    json_object_set_new(o, "private_key_id", json_string("k1"));
    json_object_set_new(o, "private_key", json_string(TEST_KEY));
    json_object_set_new(o, "client_email", json_string(EMAIL));
    json_object_set_new(o, "client_id", json_string("1234"));
    json_object_set_new(o, "token_uri", json_string(TOKEN_URI));
    if (drop)
        json_object_del(o, drop);
    if (over_key)
        json_object_set_new(o, over_key, json_string(over_val));
    char *s = json_dumps(o, JSON_INDENT(2));
    json_decref(o);
    assert_non_null(s);
    return s;
}

static int parse_sa(const char *drop, const char *k, const char *v, sto_gcs_sa_t *sa, char *err,
                    size_t errlen)
{
    char *js = sa_json(drop, k, v);
    int rc = sto_gcs_sa_parse(js, strlen(js), "/keys/sa.json", sa, err, errlen);
    free(js);
    return rc;
}

/* ---- base64url, JWT ---- */

static void t_b64url(void **st)
{
    (void)st;
    char out[64];
    struct {
        const char *in;
        size_t n;
        const char *want;
    } v[] = {
        {"", 0, ""},
        {"f", 1, "Zg"},
        {"fo", 2, "Zm8"},
        {"foo", 3, "Zm9v"},
        {"foob", 4, "Zm9vYg"},
        {"fooba", 5, "Zm9vYmE"},
        {"foobar", 6, "Zm9vYmFy"},
        {"\xfb\xff", 2, "-_8"},
        {"\xfb\xef\xbe", 3, "----"},
        {"\xff\xff\xff", 3, "____"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        int n = sto_b64url_encode(v[i].in, v[i].n, out, sizeof(out));
        assert_int_equal(n, (int)strlen(v[i].want));
        assert_string_equal(out, v[i].want);
    }
    /* exact fit (unpadded length + NUL) works even where the padded form would not */
    assert_int_equal(sto_b64url_encode("f", 1, out, 3), 2);
    assert_string_equal(out, "Zg");
    assert_int_equal(sto_b64url_encode("f", 1, out, 2), -ENOSPC);
    assert_int_equal(sto_b64url_encode("foobar", 6, out, 8), -ENOSPC);
    assert_int_equal(sto_b64url_encode("foobar", 6, out, 9), 8);
}

static void t_jwt_input(void **st)
{
    (void)st;
    char out[2048];
    int n = sto_gcs_jwt_input(EMAIL, "k1", STO_GCS_SCOPE_READ_WRITE, TOKEN_URI, 1700000000, out,
                              sizeof(out));
    assert_int_equal(n, (int)strlen(JWT_INPUT));
    assert_string_equal(out, JWT_INPUT);
    /* without kid: {"alg":"RS256","typ":"JWT"} */
    n = sto_gcs_jwt_input(EMAIL, "", STO_GCS_SCOPE_READ_WRITE, TOKEN_URI, 1700000000, out,
                          sizeof(out));
    assert_true(n > 0);
    assert_memory_equal(out, "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.", 37);
    /* JSON escaping of odd strings survives a round trip */
    n = sto_gcs_jwt_input("a\"b\\c@x", NULL, "s", "https://t/\u00e9", 5, out, sizeof(out));
    assert_true(n > 0);
    char *dot = strchr(out, '.');
    assert_non_null(dot);
    /* decode the claims back with jansson through a base64 round trip */
    char b64[1024];
    snprintf(b64, sizeof(b64), "%s", dot + 1);
    for (char *p = b64; *p; p++)
        *p = *p == '-' ? '+' : *p == '_' ? '/' : *p;
    while (strlen(b64) % 4)
        strcat(b64, "=");
    unsigned char dec[1024];
    size_t dl = 0;
    extern int mbedtls_base64_decode(unsigned char *, size_t, size_t *, const unsigned char *,
                                     size_t);
    assert_int_equal(
        mbedtls_base64_decode(dec, sizeof(dec), &dl, (unsigned char *)b64, strlen(b64)), 0);
    json_error_t je;
    json_t *c = json_loadb((char *)dec, dl, 0, &je);
    assert_non_null(c);
    assert_string_equal(json_string_value(json_object_get(c, "iss")), "a\"b\\c@x");
    assert_string_equal(json_string_value(json_object_get(c, "aud")), "https://t/\u00e9");
    assert_int_equal(json_integer_value(json_object_get(c, "iat")), 5);
    assert_int_equal(json_integer_value(json_object_get(c, "exp")), 3605);
    json_decref(c);
    /* too small */
    assert_int_equal(sto_gcs_jwt_input(EMAIL, "k1", "s", TOKEN_URI, 1, out, 20), -ENOSPC);
    assert_int_equal(sto_gcs_jwt_input(EMAIL, "k1", "s", TOKEN_URI, 1, out, 60), -ENOSPC);
}

static void t_jwt_sign(void **st)
{
    (void)st;
    sto_gcs_sa_t sa;
    char err[300];
    assert_int_equal(parse_sa(NULL, NULL, NULL, &sa, err, sizeof(err)), 0);
    char jwt[STO_GCS_JWT_MAX];
    int n = sto_gcs_jwt_sign(&sa, STO_GCS_SCOPE_READ_WRITE, 1700000000, jwt, sizeof(jwt), err,
                             sizeof(err));
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(jwt));
    /* the independent vector: openssl's signature over the same input */
    char want[2048];
    snprintf(want, sizeof(want), "%s.%s", JWT_INPUT, JWT_SIG);
    assert_string_equal(jwt, want);
    /* and mbedtls verifies it with the public key */
    mbedtls_pk_context pub;
    mbedtls_pk_init(&pub);
    assert_int_equal(
        mbedtls_pk_parse_public_key(&pub, (const unsigned char *)TEST_PUB, sizeof(TEST_PUB)), 0);
    unsigned char hash[32];
    mbedtls_sha256_ret((const unsigned char *)jwt, strlen(JWT_INPUT), hash, 0);
    const char *s = jwt + strlen(JWT_INPUT) + 1;
    char b64[600];
    snprintf(b64, sizeof(b64), "%s", s);
    for (char *p = b64; *p; p++)
        *p = *p == '-' ? '+' : *p == '_' ? '/' : *p;
    while (strlen(b64) % 4)
        strcat(b64, "=");
    unsigned char sig[512];
    size_t sl = 0;
    extern int mbedtls_base64_decode(unsigned char *, size_t, size_t *, const unsigned char *,
                                     size_t);
    assert_int_equal(
        mbedtls_base64_decode(sig, sizeof(sig), &sl, (unsigned char *)b64, strlen(b64)), 0);
    assert_int_equal(sl, 256);
    assert_int_equal(mbedtls_pk_verify(&pub, MBEDTLS_MD_SHA256, hash, 32, sig, sl), 0);
    /* a changed claim does not verify with the same signature */
    hash[0] ^= 1;
    assert_int_not_equal(mbedtls_pk_verify(&pub, MBEDTLS_MD_SHA256, hash, 32, sig, sl), 0);
    mbedtls_pk_free(&pub);
    /* a fresh assertion at another time differs and is well formed: three parts */
    n = sto_gcs_jwt_sign(&sa, STO_GCS_SCOPE_FULL_CONTROL, 1700000001, jwt, sizeof(jwt), err,
                         sizeof(err));
    assert_true(n > 0);
    assert_string_not_equal(jwt, want);
    assert_non_null(strchr(strchr(jwt, '.') + 1, '.'));
    /* too small for the signature */
    assert_true(sto_gcs_jwt_sign(&sa, STO_GCS_SCOPE_READ_WRITE, 1, jwt, 400, err, sizeof(err)) < 0);
    sto_gcs_sa_free(&sa);
    sto_gcs_sa_free(&sa); /* idempotent */
    char form[STO_GCS_JWT_MAX + 128];
    n = sto_gcs_token_form("aa.bb.cc", form, sizeof(form));
    assert_string_equal(form, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
                              "&assertion=aa.bb.cc");
    assert_int_equal(n, (int)strlen(form));
    assert_int_equal(sto_gcs_token_form("a b", form, sizeof(form)), -EINVAL);
    assert_int_equal(sto_gcs_token_form("aa.bb", form, 10), -ENOSPC);
}

/* ---- service accounts ---- */

static void expect_sa_error(const char *drop, const char *k, const char *v, const char *needle)
{
    sto_gcs_sa_t sa;
    char err[400] = "";
    int rc = parse_sa(drop, k, v, &sa, err, sizeof(err));
    if (rc != -EINVAL || !strstr(err, needle) || !strstr(err, "/keys/sa.json"))
        fail_msg("drop=%s %s=%s: rc %d err '%s' lacks '%s'", drop ? drop : "-", k ? k : "-",
                 v ? v : "-", rc, err, needle);
    assert_null(sa.pk);
}

static void t_sa_parse(void **st)
{
    (void)st;
    sto_gcs_sa_t sa;
    char err[400];
    assert_int_equal(parse_sa(NULL, NULL, NULL, &sa, err, sizeof(err)), 0);
    assert_string_equal(sa.client_email, EMAIL);
    assert_string_equal(sa.private_key_id, "k1");
    assert_string_equal(sa.project_id, "demo-bench");
    assert_string_equal(sa.token_uri, TOKEN_URI);
    assert_int_equal(sa.token_url.tls, 1);
    assert_string_equal(sa.token_url.host, "oauth2.googleapis.com");
    assert_int_equal(sa.token_url.port, 443);
    assert_string_equal(sa.token_url.path, "/token");
    assert_non_null(sa.pk);
    unsigned char h[32];
    mbedtls_sha256_ret((const unsigned char *)TEST_KEY, strlen(TEST_KEY), h, 0);
    assert_memory_equal(sa.key_hash, h, 32);
    sto_gcs_sa_free(&sa);
    /* optional fields */
    assert_int_equal(parse_sa("project_id", NULL, NULL, &sa, err, sizeof(err)), 0);
    assert_string_equal(sa.project_id, "");
    sto_gcs_sa_free(&sa);
    assert_int_equal(parse_sa("type", NULL, NULL, &sa, err, sizeof(err)), 0);
    sto_gcs_sa_free(&sa);
    assert_int_equal(
        parse_sa(NULL, "token_uri", "http://127.0.0.1:8123/t?x=1", &sa, err, sizeof(err)), 0);
    assert_int_equal(sa.token_url.port, 8123);
    assert_int_equal(sa.token_url.tls, 0);
    assert_string_equal(sa.token_url.path, "/t?x=1");
    sto_gcs_sa_free(&sa);
    /* required fields and bad values: the message names the file and the field */
    expect_sa_error("client_email", NULL, NULL, "missing \"client_email\"");
    expect_sa_error("private_key", NULL, NULL, "missing \"private_key\"");
    expect_sa_error("token_uri", NULL, NULL, "missing \"token_uri\"");
    expect_sa_error(NULL, "client_email", "", "\"client_email\" is empty");
    expect_sa_error(NULL, "private_key", "not a key", "not a readable PEM key");
    expect_sa_error(NULL, "private_key", TEST_EC_KEY, "not an RSA key");
    expect_sa_error(NULL, "private_key", TEST_PUB, "not a readable PEM key");
    expect_sa_error(NULL, "token_uri", "ftp://x/token", "token_uri");
    expect_sa_error(NULL, "type", "authorized_user", "only service-account keys");
    /* not JSON, not an object, a field of the wrong type */
    static const char wrong_type[] =
        "{\"client_email\": 5, \"private_key\": \"x\", \"token_uri\": \"https://a/t\"}";
    const char *bad[] = {"", "{", "[]", wrong_type, "null"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(sto_gcs_sa_parse(bad[i], strlen(bad[i]), "x.json", &sa, err, sizeof(err)),
                         -EINVAL);
        assert_non_null(strstr(err, "x.json"));
        assert_null(sa.pk);
    }
    /* every truncation of a good document fails cleanly */
    char *js = sa_json(NULL, NULL, NULL);
    size_t L = strlen(js);
    for (size_t n = 0; n < L; n += 7) {
        assert_int_equal(sto_gcs_sa_parse(js, n, "t.json", &sa, err, sizeof(err)), -EINVAL);
        assert_null(sa.pk);
    }
    free(js);
}

static char tmpdir_[64];

static char *write_tmp(const char *name, const char *text)
{
    static char path[160];
    if (!tmpdir_[0]) {
        snprintf(tmpdir_, sizeof(tmpdir_), "/tmp/test_gcs.XXXXXX");
        assert_non_null(mkdtemp(tmpdir_));
    }
    snprintf(path, sizeof(path), "%s/%s", tmpdir_, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void t_creds(void **st)
{
    (void)st;
    char err[1200];
    sto_gcs_creds_t c;
    unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
    unsetenv("GOOGLE_CLOUD_PROJECT");
    unsetenv("GCLOUD_PROJECT");
    assert_int_equal(sto_gcs_creds_load(&c, err, sizeof(err)), 0);
    assert_int_equal(c.anonymous, 1);
    assert_non_null(strstr(c.source, "anonymous"));
    assert_string_equal(c.scope, STO_GCS_SCOPE_READ_WRITE);
    assert_string_equal(c.project, "");
    sto_gcs_creds_free(&c);

    char *js = sa_json(NULL, NULL, NULL);
    char *path = write_tmp("sa.json", js);
    free(js);
    setenv("GOOGLE_APPLICATION_CREDENTIALS", path, 1);
    assert_int_equal(sto_gcs_creds_load(&c, err, sizeof(err)), 0);
    assert_int_equal(c.anonymous, 0);
    assert_string_equal(c.sa.client_email, EMAIL);
    assert_string_equal(c.project, "demo-bench");
    assert_non_null(strstr(c.source, EMAIL));
    assert_non_null(strstr(c.source, path));
    sto_gcs_creds_free(&c);
    setenv("GOOGLE_CLOUD_PROJECT", "other-proj", 1);
    assert_int_equal(sto_gcs_creds_load(&c, err, sizeof(err)), 0);
    assert_string_equal(c.project, "other-proj");
    sto_gcs_creds_free(&c);
    unsetenv("GOOGLE_CLOUD_PROJECT");

    setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/sa.json", 1);
    assert_int_equal(sto_gcs_creds_load(&c, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/sa.json"));
    assert_non_null(strstr(err, "No such file"));
    sto_gcs_creds_free(&c);
    js = sa_json("client_email", NULL, NULL);
    path = write_tmp("bad.json", js);
    free(js);
    setenv("GOOGLE_APPLICATION_CREDENTIALS", path, 1);
    assert_int_equal(sto_gcs_creds_load(&c, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "client_email"));
    sto_gcs_creds_free(&c);
    unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
}

/* ---- endpoint, URLs, names ---- */

static void t_endpoint(void **st)
{
    (void)st;
    sto_gcs_endpoint_t ep;
    char err[300], host[300];
    unsetenv("STORAGE_EMULATOR_HOST");
    assert_int_equal(sto_gcs_endpoint_resolve(NULL, &ep, err, sizeof(err)), 0);
    assert_string_equal(ep.source, "google");
    assert_string_equal(ep.url.host, "storage.googleapis.com");
    assert_int_equal(ep.url.port, 443);
    assert_int_equal(ep.url.tls, 1);
    sto_gcs_host_header(&ep.url, host, sizeof(host));
    assert_string_equal(host, "storage.googleapis.com");

    setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:9199", 1);
    assert_int_equal(sto_gcs_endpoint_resolve("", &ep, err, sizeof(err)), 0);
    assert_string_equal(ep.source, "STORAGE_EMULATOR_HOST");
    assert_string_equal(ep.url.host, "127.0.0.1");
    assert_int_equal(ep.url.port, 9199);
    assert_int_equal(ep.url.tls, 0);
    sto_gcs_host_header(&ep.url, host, sizeof(host));
    assert_string_equal(host, "127.0.0.1:9199");
    setenv("STORAGE_EMULATOR_HOST", "http://localhost:9199/", 1);
    assert_int_equal(sto_gcs_endpoint_resolve(NULL, &ep, err, sizeof(err)), 0);
    assert_string_equal(ep.url.host, "localhost");
    setenv("STORAGE_EMULATOR_HOST", "https://[::1]:8443", 1);
    assert_int_equal(sto_gcs_endpoint_resolve(NULL, &ep, err, sizeof(err)), 0);
    assert_string_equal(ep.url.host, "::1");
    assert_int_equal(ep.url.tls, 1);
    sto_gcs_host_header(&ep.url, host, sizeof(host));
    assert_string_equal(host, "[::1]:8443");
    /* the config wins */
    assert_int_equal(sto_gcs_endpoint_resolve("http://10.0.0.1:80", &ep, err, sizeof(err)), 0);
    assert_string_equal(ep.source, "config");
    assert_string_equal(ep.url.host, "10.0.0.1");
    sto_gcs_host_header(&ep.url, host, sizeof(host));
    assert_string_equal(host, "10.0.0.1");
    /* bad forms */
    setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:99999", 1);
    assert_int_equal(sto_gcs_endpoint_resolve(NULL, &ep, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "STORAGE_EMULATOR_HOST"));
    unsetenv("STORAGE_EMULATOR_HOST");
    assert_int_equal(sto_gcs_endpoint_resolve("127.0.0.1:9199", &ep, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "http://"));
    assert_int_equal(sto_gcs_endpoint_resolve("http://h/storage", &ep, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "path"));
    const char *bad[] = {"http://",    "http://:80", "http://a b", "https://[::1",
                         "http://h:0", "http://h:x", "http://h?x"};
    sto_gcs_url_t u;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (sto_gcs_url_parse(bad[i], 1, 1, &u, err, sizeof(err)) != -EINVAL)
            fail_msg("%s accepted", bad[i]);
    assert_int_equal(sto_gcs_url_parse("http://h/a b", 0, 1, &u, err, sizeof(err)), -EINVAL);
    assert_int_equal(sto_gcs_url_parse("HTTPS://H.example:444/x/y", 0, 1, &u, err, sizeof(err)), 0);
    assert_int_equal(u.port, 444);
    assert_string_equal(u.path, "/x/y");
}

static void t_encode(void **st)
{
    (void)st;
    char out[128];
    assert_int_equal(sto_gcs_encode("dir/sub/prepared-00000001.dat", out, sizeof(out)), 33);
    assert_string_equal(out, "dir%2Fsub%2Fprepared-00000001.dat");
    sto_gcs_encode("a b+c%d&e=f?g#h~i_j.k-l", out, sizeof(out));
    assert_string_equal(out, "a%20b%2Bc%25d%26e%3Df%3Fg%23h~i_j.k-l");
    sto_gcs_encode("\xc3\xa9\x01\x7f", out, sizeof(out));
    assert_string_equal(out, "%C3%A9%01%7F");
    assert_int_equal(sto_gcs_encode("", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(sto_gcs_encode("abc", out, 4), 3);
    assert_int_equal(sto_gcs_encode("abc", out, 3), -ENOSPC);
    assert_int_equal(sto_gcs_encode("a/", out, 4), -ENOSPC);
    assert_int_equal(sto_gcs_encode("a/", out, 5), 4);
    assert_int_equal(sto_gcs_encode(NULL, out, 5), -EINVAL);
}

/* ---- JSON ---- */

struct lrec {
    char buf[4096];
    size_t len;
    int n, abort_at;
};

static int rec_item(void *ud, const sto_gcsjson_item_t *it)
{
    struct lrec *r = ud;
    assert_int_equal(strlen(it->name), it->name_len);
    r->len += (size_t)snprintf(r->buf + r->len, sizeof(r->buf) - r->len, "O[%s]%llu\n", it->name,
                               (unsigned long long)it->size);
    return ++r->n == r->abort_at ? -42 : 0;
}

static int rec_prefix(void *ud, const char *p, size_t len)
{
    struct lrec *r = ud;
    assert_int_equal(strlen(p), len);
    r->len += (size_t)snprintf(r->buf + r->len, sizeof(r->buf) - r->len, "P[%s]\n", p);
    return ++r->n == r->abort_at ? -42 : 0;
}

static const char LIST_DOC[] =
    "{\"kind\":\"storage#objects\",\"nextPageToken\":\"CgVhL2IvYw==\",\"prefixes\":[\"a/c/\","
    "\"a/d/\"],\"items\":[{\"kind\":\"storage#object\",\"name\":\"a/b\",\"size\":\"123\","
    "\"generation\":\"1700\"},{\"name\":\"a/\\u00e9 x\",\"size\":\"18446744073709551615\"},"
    "{\"name\":\"a/z\",\"size\":7,\"metadata\":{\"k\":[1,2,{\"x\":null}]}}]}";

static int list(const char *doc, size_t len, struct lrec *r, char *tok, size_t tokcap, char *err)
{
    memset(r->buf, 0, sizeof(r->buf));
    r->len = 0;
    r->n = 0;
    sto_gcsjson_list_cb_t cb = {rec_item, rec_prefix, r};
    return sto_gcsjson_list(doc, len, &cb, tok, tokcap, err, 200);
}

static void t_list(void **st)
{
    (void)st;
    struct lrec r = {.abort_at = 0};
    char tok[STO_GCSJSON_TOKEN_MAX + 1], err[200];
    assert_int_equal(list(LIST_DOC, strlen(LIST_DOC), &r, tok, sizeof(tok), err), 0);
    assert_string_equal(r.buf, "O[a/b]123\nO[a/\xc3\xa9 x]18446744073709551615\nO[a/z]7\n"
                               "P[a/c/]\nP[a/d/]\n");
    assert_string_equal(tok, "CgVhL2IvYw==");
    /* the last page: no token; an empty listing */
    const char *last = "{\"kind\":\"storage#objects\",\"items\":[{\"name\":\"x\",\"size\":\"0\"}]}";
    assert_int_equal(list(last, strlen(last), &r, tok, sizeof(tok), err), 0);
    assert_string_equal(tok, "");
    assert_string_equal(r.buf, "O[x]0\n");
    assert_int_equal(list("{}", 2, &r, tok, sizeof(tok), err), 0);
    assert_int_equal(r.n, 0);
    assert_int_equal(list("{\"nextPageToken\":null}", 22, &r, tok, sizeof(tok), err), 0);
    /* NULL callbacks: validation only */
    assert_int_equal(
        sto_gcsjson_list(LIST_DOC, strlen(LIST_DOC), NULL, tok, sizeof(tok), err, sizeof(err)), 0);
    /* a callback stops the parse with its code */
    r.abort_at = 2;
    assert_int_equal(list(LIST_DOC, strlen(LIST_DOC), &r, tok, sizeof(tok), err), -42);
    r.abort_at = 0;
    /* every truncation fails and delivers nothing */
    for (size_t n = 0; n < strlen(LIST_DOC); n++) {
        int rc = list(LIST_DOC, n, &r, tok, sizeof(tok), err);
        if (rc != -EINVAL || r.n != 0)
            fail_msg("truncated at %zu: rc %d, %d events", n, rc, r.n);
        assert_true(err[0] != '\0');
    }
    /* malformed documents */
    struct {
        const char *doc;
        const char *needle;
    } bad[] = {
        {"[]", "not a JSON object"},
        {"{\"items\":{}}", "\"items\" is not an array"},
        {"{\"prefixes\":\"a/\"}", "\"prefixes\" is not an array"},
        {"{\"prefixes\":[\"\"]}", "prefixes[0]"},
        {"{\"prefixes\":[3]}", "prefixes[0]"},
        {"{\"nextPageToken\":5}", "nextPageToken"},
        {"{\"items\":[5]}", "items[0] is not an object"},
        {"{\"items\":[{\"size\":\"1\"}]}", "\"name\""},
        {"{\"items\":[{\"name\":\"\",\"size\":\"1\"}]}", "\"name\""},
        {"{\"items\":[{\"name\":\"a\"}]}", "\"size\""},
        {"{\"items\":[{\"name\":\"a\",\"size\":\"12a\"}]}", "\"size\""},
        {"{\"items\":[{\"name\":\"a\",\"size\":\"\"}]}", "\"size\""},
        {"{\"items\":[{\"name\":\"a\",\"size\":\"-1\"}]}", "\"size\""},
        {"{\"items\":[{\"name\":\"a\",\"size\":-1}]}", "\"size\""},
        {"{\"items\":[{\"name\":\"a\",\"size\":1.5}]}", "\"size\""},
        {"{\"items\":[{\"name\":\"a\",\"size\":\"18446744073709551616\"}]}", "\"size\""},
        {"{\"items\":[{\"name\":\"a\",\"size\":\"99999999999999999999\"}]}", "\"size\""},
        {"{\"items\":[{\"name\":\"a\\u0000b\",\"size\":\"1\"}]}", "invalid JSON"},
        {"{\"items\":[{\"name\":\"ok\",\"size\":\"1\"},{\"name\":7,\"size\":\"1\"}]}", "items[1]"},
        {"{\"a\":1,\"a\":2}", "invalid JSON"},
        {"{\"items\":[]} x", "invalid JSON"},
        {"{\"items\":[\xff]}", "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = list(bad[i].doc, strlen(bad[i].doc), &r, tok, sizeof(tok), err);
        if (rc != -EINVAL || r.n != 0 || !strstr(err, bad[i].needle))
            fail_msg("%s: rc %d, %d events, err '%s' lacks '%s'", bad[i].doc, rc, r.n, err,
                     bad[i].needle);
    }
    /* deep nesting is refused without a crash */
    char *deep = malloc(20001);
    memset(deep, '[', 20000);
    deep[0] = '{';
    memcpy(deep + 1, "\"x\":", 4);
    deep[20000] = '\0';
    assert_int_equal(list(deep, 20000, &r, tok, sizeof(tok), err), -EINVAL);
    free(deep);
    /* limits: body size, token size */
    assert_int_equal(list(LIST_DOC, STO_GCSJSON_MAX_BODY + 1, &r, tok, sizeof(tok), err),
                     -EMSGSIZE);
    assert_int_equal(list(LIST_DOC, strlen(LIST_DOC), &r, tok, 5, err), -ENOSPC);
    assert_int_equal(r.n, 0);
    char *big = malloc(STO_GCSJSON_TOKEN_MAX + 64);
    int n = sprintf(big, "{\"nextPageToken\":\"");
    memset(big + n, 'A', STO_GCSJSON_TOKEN_MAX + 1);
    strcpy(big + n + STO_GCSJSON_TOKEN_MAX + 1, "\"}");
    assert_int_equal(list(big, strlen(big), &r, tok, sizeof(tok), err), -ENOSPC);
    big[n + STO_GCSJSON_TOKEN_MAX] = '"';
    big[n + STO_GCSJSON_TOKEN_MAX + 1] = '}';
    big[n + STO_GCSJSON_TOKEN_MAX + 2] = '\0';
    assert_int_equal(list(big, strlen(big), &r, tok, sizeof(tok), err), 0);
    assert_int_equal(strlen(tok), STO_GCSJSON_TOKEN_MAX);
    free(big);
}

static void t_object(void **st)
{
    (void)st;
    sto_gcsjson_object_t o;
    char err[200];
    const char *doc = "{\"kind\":\"storage#object\",\"name\":\"dir/a.bin\",\"bucket\":\"bench\","
                      "\"generation\":\"1795945160394\",\"size\":\"11\",\"md5Hash\":\"x\"}";
    assert_int_equal(sto_gcsjson_object(doc, strlen(doc), &o, err, sizeof(err)), 0);
    assert_string_equal(o.name, "dir/a.bin");
    assert_int_equal(o.size, 11);
    assert_int_equal(o.generation, 1795945160394ull);
    assert_int_equal(sto_gcsjson_object("{\"size\":\"5000000000\"}", 21, &o, err, sizeof(err)), 0);
    assert_int_equal(o.size, 5000000000ull);
    assert_string_equal(o.name, "");
    const char *bad[] = {"{}",
                         "{\"name\":\"a\"}",
                         "{\"size\":true}",
                         "{\"size\":\"1\",\"name\":1}",
                         "{\"size\":\"1\",\"generation\":\"x\"}",
                         "\"size\"",
                         "{\"size\":\"1\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (sto_gcsjson_object(bad[i], strlen(bad[i]), &o, err, sizeof(err)) != -EINVAL ||
            !err[0] || o.size != 0)
            fail_msg("%s accepted", bad[i]);
    }
    for (size_t n = 0; n < strlen(doc); n++)
        assert_int_equal(sto_gcsjson_object(doc, n, &o, err, sizeof(err)), -EINVAL);
}

static void t_error(void **st)
{
    (void)st;
    sto_gcsjson_error_t e;
    const char *doc = "{\"error\":{\"code\":403,\"message\":\"bench@x does not have "
                      "storage.objects.get access\",\"errors\":[{\"message\":\"m2\",\"domain\":"
                      "\"global\",\"reason\":\"forbidden\"}]}}";
    assert_int_equal(sto_gcsjson_error(doc, strlen(doc), &e), 0);
    assert_int_equal(e.code, 403);
    assert_string_equal(e.reason, "forbidden");
    assert_string_equal(e.message, "bench@x does not have storage.objects.get access");
    /* emulator-style 404 */
    const char *nf = "{\"error\":{\"code\":404,\"message\":\"No such object: bench/nope\","
                     "\"errors\":[{\"message\":\"No such object: bench/nope\",\"domain\":"
                     "\"global\",\"reason\":\"notFound\"}]}}";
    assert_int_equal(sto_gcsjson_error(nf, strlen(nf), &e), 0);
    assert_string_equal(e.reason, "notFound");
    /* fallbacks: status when no errors[], errors[0].message when no message */
    const char *st2 = "{\"error\":{\"code\":429,\"status\":\"RESOURCE_EXHAUSTED\","
                      "\"errors\":[{\"message\":\"slow\"}]}}";
    assert_int_equal(sto_gcsjson_error(st2, strlen(st2), &e), 0);
    assert_string_equal(e.reason, "RESOURCE_EXHAUSTED");
    assert_string_equal(e.message, "slow");
    assert_int_equal(e.code, 429);
    assert_int_equal(sto_gcsjson_error("{\"error\":{}}", 12, &e), 0);
    assert_int_equal(e.code, 0);
    assert_string_equal(e.reason, "");
    /* OAuth2 */
    const char *oa =
        "{\"error\":\"invalid_grant\",\"error_description\":\"Invalid JWT Signature.\"}";
    assert_int_equal(sto_gcsjson_error(oa, strlen(oa), &e), 0);
    assert_string_equal(e.reason, "invalid_grant");
    assert_string_equal(e.message, "Invalid JWT Signature.");
    /* long strings are cut */
    char big[2000];
    int n = snprintf(big, sizeof(big), "{\"error\":{\"code\":500,\"message\":\"");
    memset(big + n, 'm', 1000);
    snprintf(big + n + 1000, sizeof(big) - (size_t)n - 1000,
             "\",\"errors\":[{\"reason\":\"%s\"}]}}",
             "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr");
    assert_int_equal(sto_gcsjson_error(big, strlen(big), &e), 0);
    assert_int_equal(strlen(e.message), sizeof(e.message) - 1);
    assert_int_equal(strlen(e.reason), sizeof(e.reason) - 1);
    /* not error documents */
    const char *bad[] = {"", "Bad Request", "{}", "{\"error\":5}", "[\"error\"]", "{\"error\":{"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sto_gcsjson_error(bad[i], strlen(bad[i]), &e), -EINVAL);
        assert_int_equal(e.code, 0);
        assert_string_equal(e.reason, "");
    }
    for (size_t k = 0; k < strlen(doc); k++)
        assert_int_equal(sto_gcsjson_error(doc, k, &e), -EINVAL);
}

static void t_token(void **st)
{
    (void)st;
    sto_gcsjson_token_t t;
    char err[300];
    const char *ok = "{\"access_token\":\"ya29.c.AbC-_12\",\"expires_in\":3599,"
                     "\"token_type\":\"Bearer\"}";
    assert_int_equal(sto_gcsjson_token(ok, strlen(ok), &t, err, sizeof(err)), 0);
    assert_string_equal(t.access_token, "ya29.c.AbC-_12");
    assert_int_equal(t.expires_in, 3599);
    assert_string_equal(t.token_type, "Bearer");
    const char *ok2 = "{\"access_token\":\"t\",\"expires_in\":\"60\"}";
    assert_int_equal(sto_gcsjson_token(ok2, strlen(ok2), &t, err, sizeof(err)), 0);
    assert_int_equal(t.expires_in, 60);
    const char *oa =
        "{\"error\":\"invalid_grant\",\"error_description\":\"Invalid JWT Signature.\"}";
    assert_int_equal(sto_gcsjson_token(oa, strlen(oa), &t, err, sizeof(err)), -EACCES);
    assert_string_equal(err, "invalid_grant: Invalid JWT Signature.");
    assert_string_equal(t.access_token, "");
    assert_int_equal(sto_gcsjson_token("{\"error\":\"x\"}", 13, &t, err, sizeof(err)), -EACCES);
    assert_string_equal(err, "x");
    struct {
        const char *doc;
        int rc;
        const char *needle;
    } bad[] = {
        {"{\"expires_in\":5}", -EINVAL, "access_token"},
        {"{\"access_token\":\"\",\"expires_in\":5}", -EINVAL, "access_token"},
        {"{\"access_token\":\"t\"}", -EINVAL, "expires_in"},
        {"{\"access_token\":\"t\",\"expires_in\":0}", -EINVAL, "expires_in"},
        {"{\"access_token\":\"t\",\"expires_in\":-5}", -EINVAL, "expires_in"},
        {"{\"access_token\":\"t\",\"expires_in\":\"x\"}", -EINVAL, "expires_in"},
        {"{\"access_token\":\"t\",\"expires_in\":5,\"token_type\":\"mac\"}", -EINVAL, "Bearer"},
        {"{\"access_token\":\"t\",\"expires_in\":5,\"token_type\":1}", -EINVAL, "token_type"},
        {"{\"access_token\":\"a b\",\"expires_in\":5}", -ENOSPC, "header"},
        {"{\"access_token\":\"a\\r\\nX: y\",\"expires_in\":5}", -ENOSPC, "header"},
        {"{\"access_token\":7,\"expires_in\":5}", -EINVAL, "access_token"},
        {"{\"error\":7}", -EINVAL, "error"},
        {"<html>", -EINVAL, "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        int rc = sto_gcsjson_token(bad[i].doc, strlen(bad[i].doc), &t, err, sizeof(err));
        if (rc != bad[i].rc || !strstr(err, bad[i].needle) || t.access_token[0])
            fail_msg("%s: rc %d err '%s'", bad[i].doc, rc, err);
    }
    char *big = malloc(STO_GCSJSON_TOKEN_MAX + 100);
    int n = sprintf(big, "{\"expires_in\":1,\"access_token\":\"");
    memset(big + n, 'a', STO_GCSJSON_TOKEN_MAX + 1);
    strcpy(big + n + STO_GCSJSON_TOKEN_MAX + 1, "\"}");
    assert_int_equal(sto_gcsjson_token(big, strlen(big), &t, err, sizeof(err)), -ENOSPC);
    free(big);
    for (size_t k = 0; k < strlen(ok); k++)
        assert_int_equal(sto_gcsjson_token(ok, k, &t, err, sizeof(err)), -EINVAL);
}

/* ---- token cache ---- */

#define S_NS 1000000000ull

static void t_tokcache(void **st)
{
    (void)st;
    sto_gcs_sa_t sa, sa2;
    char err[300];
    assert_int_equal(parse_sa(NULL, NULL, NULL, &sa, err, sizeof(err)), 0);
    assert_int_equal(parse_sa(NULL, "client_email", "other@x", &sa2, err, sizeof(err)), 0);
    sto_gcs_tokcache_t *c = sto_gcs_tokcache_get(&sa, STO_GCS_SCOPE_READ_WRITE);
    assert_non_null(c);
    assert_ptr_equal(sto_gcs_tokcache_get(&sa, STO_GCS_SCOPE_READ_WRITE), c);
    assert_ptr_not_equal(sto_gcs_tokcache_get(&sa, STO_GCS_SCOPE_FULL_CONTROL), c);
    assert_ptr_not_equal(sto_gcs_tokcache_get(&sa2, STO_GCS_SCOPE_READ_WRITE), c);

    uint64_t t0 = 1000 * S_NS;
    sto_gcs_tok_t a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    assert_int_equal(sto_gcs_tokcache_peek(c, t0, &a), STO_GCS_TOK_NONE);
    assert_int_equal(sto_gcs_tokcache_wait(c, 10), 0); /* nothing claimed: at once */
    assert_int_equal(sto_gcs_tokcache_claim(c, t0), 1);
    assert_int_equal(sto_gcs_tokcache_claim(c, t0 + S_NS), 0);
    assert_int_equal(sto_gcs_tokcache_wait(c, 20), -ETIMEDOUT);
    /* a failure: recorded, claims refused for 1 s */
    sto_gcs_tokcache_fail(c, "HTTP 400 invalid_grant", t0, 1);
    sto_gcs_tokcache_last_error(c, err, sizeof(err));
    assert_string_equal(err, "HTTP 400 invalid_grant");
    assert_int_equal(sto_gcs_tokcache_claim(c, t0 + S_NS / 2), 0);
    assert_int_equal(sto_gcs_tokcache_claim(c, t0 + S_NS), 1);
    /* a token for 3600 s: fresh until 3300 s, refresh due after, gone at 3600 s */
    sto_gcs_tokcache_put(c, "tok1", 3600, t0 + S_NS, 1);
    sto_gcs_tokcache_last_error(c, err, sizeof(err));
    assert_string_equal(err, "");
    assert_int_equal(sto_gcs_tokcache_peek(c, t0 + 2 * S_NS, &a), STO_GCS_TOK_FRESH);
    assert_string_equal(a.value, "tok1");
    uint64_t g1 = a.gen;
    assert_true(g1 > 0);
    assert_int_equal(a.refresh_ns, t0 + S_NS + 3300 * S_NS);
    assert_int_equal(a.expires_ns, t0 + S_NS + 3600 * S_NS);
    assert_int_equal(sto_gcs_tokcache_peek(c, t0 + 3400 * S_NS, &a), STO_GCS_TOK_REFRESH);
    assert_int_equal(sto_gcs_tokcache_peek(c, t0 + 3601 * S_NS, &a), STO_GCS_TOK_NONE);
    /* another copy sees the same */
    assert_int_equal(sto_gcs_tokcache_peek(c, t0 + 2 * S_NS, &b), STO_GCS_TOK_FRESH);
    assert_int_equal(b.gen, g1);
    /* an older token (shorter life) does not replace a newer one */
    assert_int_equal(sto_gcs_tokcache_claim(c, t0 + 3400 * S_NS), 1);
    sto_gcs_tokcache_put(c, "short", 10, t0 + 3400 * S_NS, 1);
    assert_int_equal(sto_gcs_tokcache_peek(c, t0 + 3400 * S_NS, &a), STO_GCS_TOK_REFRESH);
    assert_string_equal(a.value, "tok1");
    assert_int_equal(sto_gcs_tokcache_claim(c, t0 + 3400 * S_NS), 1);
    sto_gcs_tokcache_put(c, "tok2", 3600, t0 + 3400 * S_NS, 1);
    assert_int_equal(sto_gcs_tokcache_peek(c, t0 + 3400 * S_NS, &a), STO_GCS_TOK_FRESH);
    assert_string_equal(a.value, "tok2");
    assert_true(a.gen > g1);
    /* a stale claim (2 minutes) is taken over; unclaim releases */
    assert_int_equal(sto_gcs_tokcache_claim(c, t0), 1);
    assert_int_equal(sto_gcs_tokcache_claim(c, t0 + 100 * S_NS), 0);
    assert_int_equal(sto_gcs_tokcache_claim(c, t0 + 121 * S_NS), 1);
    sto_gcs_tokcache_unclaim(c);
    assert_int_equal(sto_gcs_tokcache_claim(c, t0), 1);
    sto_gcs_tokcache_unclaim(c);
    /* refresh points: 5 minutes early, or half the life of short tokens */
    assert_int_equal(sto_gcs_refresh_at(0, 3600), 3300 * S_NS);
    assert_int_equal(sto_gcs_refresh_at(5, 600), 5 + 300 * S_NS);
    assert_int_equal(sto_gcs_refresh_at(0, 4), 2 * S_NS);
    assert_int_equal(sto_gcs_refresh_at(0, 1), S_NS / 2);
    assert_true(sto_gcs_refresh_at(0, UINT64_MAX) > 1000000 * S_NS);
    sto_gcs_sa_free(&sa);
    sto_gcs_sa_free(&sa2);
}

/* ---- the backend's refusals (no network) ---- */

static void t_backend(void **st)
{
    (void)st;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
    setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:1", 1);
    sto_store_t *s = NULL;
    char err[600];
    assert_int_equal(sto_store_open(&loop, "gs://bench/pre/", 0, &s, err, sizeof(err)), 0);
    assert_string_equal(sto_store_backend(s)->name, "gcs");
    unsigned caps = sto_store_backend(s)->caps;
    assert_true(caps & STO_CAP_RANGE);
    assert_true(caps & STO_CAP_MULTIPART);
    assert_true(caps & STO_CAP_LIST_PAGES);
    assert_false(caps & STO_CAP_BATCH_DELETE);
    assert_false(caps & STO_CAP_DIRECTORIES);
    sto_req_t r;
    memset(&r, 0, sizeof(r));
    r.done = (sto_done_fn)abort;
    r.op = STO_OP_MKDIR;
    r.key = "d";
    assert_int_equal(sto_submit(s, &r), STO_ENOTSUP);
    r.op = STO_OP_RMDIR;
    assert_int_equal(sto_submit(s, &r), STO_ENOTSUP);
    const char *keys[] = {"a"};
    r.op = STO_OP_DEL_BATCH;
    r.keys = keys;
    r.nkeys = 1;
    assert_int_equal(sto_submit(s, &r), STO_ENOTSUP);
    /* names longer than GCS allows are refused before any request */
    char longkey[1100];
    memset(longkey, 'k', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    r.op = STO_OP_HEAD;
    r.key = longkey;
    assert_int_equal(sto_submit(s, &r), STO_EURI);
    sto_store_close(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    /* gcs:// is the same backend */
    assert_int_equal(sto_store_open(&loop, "gcs://bench/", 0, &s, err, sizeof(err)), 0);
    sto_store_close(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    /* unreachable endpoint with create_base: the open fails saying so */
    assert_true(sto_store_open(&loop, "gs://bench/", 1, &s, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "cannot reach the GCS endpoint http://127.0.0.1:1"));
    /* bad endpoint, bad credentials */
    setenv("STORAGE_EMULATOR_HOST", "ftp://x", 1);
    assert_int_equal(sto_store_open(&loop, "gs://bench/", 0, &s, err, sizeof(err)), STO_EURI);
    assert_non_null(strstr(err, "STORAGE_EMULATOR_HOST"));
    setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:1", 1);
    setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json", 1);
    assert_int_equal(sto_store_open(&loop, "gs://bench/", 0, &s, err, sizeof(err)), STO_EPERM);
    assert_non_null(strstr(err, "/nonexistent/key.json"));
    /* a key whose token endpoint cannot be reached: the open fails with that */
    char *js = sa_json(NULL, "token_uri", "http://127.0.0.1:1/token");
    char *path = write_tmp("unreach.json", js);
    free(js);
    setenv("GOOGLE_APPLICATION_CREDENTIALS", path, 1);
    sto_opts_t o;
    memset(&o, 0, sizeof(o));
    o.connect_timeout_ms = 500;
    o.io_timeout_ms = 1000;
    assert_true(sto_store_open_opts(&loop, "gs://bench/", 0, &o, &s, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "cannot get an access token for " EMAIL));
    assert_non_null(strstr(err, "127.0.0.1:1"));
    unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
    unsetenv("STORAGE_EMULATOR_HOST");
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static int cleanup(void **st)
{
    (void)st;
    if (tmpdir_[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir_);
        if (system(cmd) != 0)
            return -1;
    }
    return 0;
}

int main(void)
{
    sto_err_register();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_b64url),   cmocka_unit_test(t_jwt_input), cmocka_unit_test(t_jwt_sign),
        cmocka_unit_test(t_sa_parse), cmocka_unit_test(t_creds),     cmocka_unit_test(t_endpoint),
        cmocka_unit_test(t_encode),   cmocka_unit_test(t_list),      cmocka_unit_test(t_object),
        cmocka_unit_test(t_error),    cmocka_unit_test(t_token),     cmocka_unit_test(t_tokcache),
        cmocka_unit_test(t_backend),
    };
    return cmocka_run_group_tests(tests, NULL, cleanup);
}
