/* Unit tests for the Azure Blob pieces: SharedKey StringToSign and signatures against vectors
 * computed independently (openssl), canonical headers and resource, request building, SAS,
 * connection strings and the environment, endpoints, block ids, the List Blobs and Error XML
 * parsers (split at every byte), the Put Block List writer, and the backend's refusals. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rx/err.h"
#include "sto/azauth.h"
#include "sto/azxml.h"
#include "sto/backend.h"
#include "sto/err.h"

#define DEV_KEY STO_AZ_DEV_KEY

static sto_az_creds_t dev_creds(void)
{
    sto_az_creds_t c;
    memset(&c, 0, sizeof(c));
    c.auth = STO_AZ_SHARED_KEY;
    snprintf(c.account, sizeof(c.account), "devstoreaccount1");
    assert_int_equal(sto_az_key_set(&c, DEV_KEY), 0);
    return c;
}

/* ---- SharedKey vectors ---------------------------------------------------------------------
 * The StringToSign texts below were written by hand from the Azure Storage REST reference
 * ("Authorize with Shared Key", version 2015-02-21 and later) and each signature computed with
 * openssl from the documented development key, independently of this code:
 *   HK=$(echo -n "$DEV_KEY" | base64 -d | xxd -p -c 256)
 *   printf '<StringToSign>' | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$HK" -binary |
 *       base64 -w0
 */

/* GET of a ranged blob, path-style (the account twice in the resource), a space in the name. */
static const char STS1[] = "GET\n\n\n\n\n\n\n\n\n\n\n\n"
                           "x-ms-date:Sun, 06 Nov 1994 08:49:37 GMT\n"
                           "x-ms-range:bytes=0-99\n"
                           "x-ms-version:2021-08-06\n"
                           "/devstoreaccount1/devstoreaccount1/bench/dir/a%20b.dat";
static const char SIG1[] = "guHk5Ydkvyz8mr3/3Swif/nwjfTZg2mPcn3IJ/K6jFc=";

/* Put Block: Content-Length signed, query parameters sorted by name. */
static const char STS2[] = "PUT\n\n\n5242880\n\n\n\n\n\n\n\n\n"
                           "x-ms-date:Mon, 01 Jan 2024 00:00:00 GMT\n"
                           "x-ms-version:2021-08-06\n"
                           "/myaccount/mycontainer/big.bin\n"
                           "blockid:c2FpMw==\n"
                           "comp:block";
static const char SIG2[] = "AVaVUlAC2yIf0a33igLBDDqmM/ehSWx7zlHUH+kT9tE=";

/* List: lowercased and sorted parameter names, a repeated name's values sorted and joined with
 * ',', decoded values; an x-ms header with runs of spaces collapsed. */
static const char STS3[] = "GET\n\n\n\n\n\n\n\n\n\n\n\n"
                           "x-ms-client-request-id:a b\n"
                           "x-ms-date:Mon, 01 Jan 2024 00:00:00 GMT\n"
                           "x-ms-version:2021-08-06\n"
                           "/myaccount/mycontainer\n"
                           "comp:list\n"
                           "include:metadata,snapshots\n"
                           "prefix:dir/a b\n"
                           "restype:container";
static const char SIG3[] = "2+DaENbzfA1VzUOH/lMh/KGnSeumJiNIN5xJJPQx/9E=";

static void check_sig(const char *sts, const char *want)
{
    sto_az_creds_t c = dev_creds();
    char sig[STO_AZ_SIG_LEN + 1];
    assert_int_equal(sto_az_signature(c.key, c.key_len, sts, strlen(sts), sig), 0);
    assert_string_equal(sig, want);
}

static void test_sts_vectors(void **s)
{
    (void)s;
    char out[2048];
    /* headers in any order and case; Host and others not in the StringToSign are ignored */
    sto_az_kv_t h1[] = {{"x-ms-version", "2021-08-06"},
                        {"Host", "127.0.0.1:10000"},
                        {"X-MS-Range", "bytes=0-99"},
                        {"x-ms-date", "Sun, 06 Nov 1994 08:49:37 GMT"},
                        {"User-Agent", "sai3bench"}};
    sto_az_sign_in_t in = {.method = "GET",
                           .account = "devstoreaccount1",
                           .path = "/devstoreaccount1/bench/dir/a%20b.dat",
                           .headers = h1,
                           .nheaders = 5};
    int n = sto_az_string_to_sign(&in, out, sizeof(out));
    assert_int_equal(n, (int)strlen(STS1));
    assert_string_equal(out, STS1);
    check_sig(out, SIG1);

    sto_az_kv_t h2[] = {{"x-ms-date", "Mon, 01 Jan 2024 00:00:00 GMT"},
                        {"Content-Length", "5242880"},
                        {"x-ms-version", "2021-08-06"}};
    sto_az_kv_t q2[] = {{"comp", "block"}, {"blockid", "c2FpMw=="}};
    sto_az_sign_in_t in2 = {.method = "PUT",
                            .account = "myaccount",
                            .path = "/mycontainer/big.bin",
                            .query = q2,
                            .nquery = 2,
                            .headers = h2,
                            .nheaders = 3};
    assert_int_equal(sto_az_string_to_sign(&in2, out, sizeof(out)), (int)strlen(STS2));
    assert_string_equal(out, STS2);
    check_sig(out, SIG2);

    sto_az_kv_t h3[] = {{"x-ms-version", "2021-08-06"},
                        {"x-ms-date", "Mon, 01 Jan 2024 00:00:00 GMT"},
                        {"X-Ms-Client-Request-Id", "  a  \t b  "}};
    sto_az_kv_t q3[] = {{"restype", "container"},
                        {"Include", "snapshots"},
                        {"comp", "list"},
                        {"PREFIX", "dir/a b"},
                        {"include", "metadata"}};
    sto_az_sign_in_t in3 = {.method = "GET",
                            .account = "myaccount",
                            .path = "/mycontainer",
                            .query = q3,
                            .nquery = 5,
                            .headers = h3,
                            .nheaders = 3};
    assert_int_equal(sto_az_string_to_sign(&in3, out, sizeof(out)), (int)strlen(STS3));
    assert_string_equal(out, STS3);
    check_sig(out, SIG3);
}

static void test_sts_standard_headers(void **s)
{
    (void)s;
    char out[1024];
    /* every standard header in its slot; a zero Content-Length is signed as empty */
    sto_az_kv_t h[] = {
        {"Range", "bytes=1-2"},         {"If-Unmodified-Since", "IUS"},
        {"If-None-Match", "INM"},       {"If-Match", "IM"},
        {"If-Modified-Since", "IMS"},   {"Date", "D"},
        {"content-type", "text/plain"}, {"Content-MD5", "MD5"},
        {"Content-Length", "0"},        {"Content-Language", "en"},
        {"Content-Encoding", "gzip"},
    };
    sto_az_sign_in_t in = {
        .method = "PUT", .account = "a", .path = "/c/b", .headers = h, .nheaders = 11};
    assert_true(sto_az_string_to_sign(&in, out, sizeof(out)) > 0);
    assert_string_equal(
        out, "PUT\ngzip\nen\n\nMD5\ntext/plain\nD\nIMS\nIM\nINM\nIUS\nbytes=1-2\n/a/c/b");

    /* errors */
    sto_az_kv_t dup[] = {{"x-ms-date", "x"}, {"X-MS-DATE", "y"}};
    in.headers = dup;
    in.nheaders = 2;
    assert_int_equal(sto_az_string_to_sign(&in, out, sizeof(out)), -EINVAL);
    sto_az_kv_t crlf[] = {{"x-ms-meta-a", "x\r\nInjected: 1"}};
    in.headers = crlf;
    in.nheaders = 1;
    assert_int_equal(sto_az_string_to_sign(&in, out, sizeof(out)), -EINVAL);
    sto_az_kv_t qnl[] = {{"comp", "list\nx:y"}};
    in.headers = NULL;
    in.nheaders = 0;
    in.query = qnl;
    in.nquery = 1;
    assert_int_equal(sto_az_string_to_sign(&in, out, sizeof(out)), -EINVAL);
    in.query = NULL;
    in.nquery = 0;
    assert_int_equal(sto_az_string_to_sign(&in, out, 10), -ENOSPC);
    in.path = "c/b"; /* must start with '/' */
    assert_int_equal(sto_az_string_to_sign(&in, out, sizeof(out)), -EINVAL);
    in.path = "/c/b";
    in.account = "";
    assert_int_equal(sto_az_string_to_sign(&in, out, sizeof(out)), -EINVAL);
}

static const char *find_hdr(const sto_az_request_t *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

static void test_request_build(void **s)
{
    (void)s;
    char err[256];
    static sto_az_request_t rq;
    sto_az_creds_t c = dev_creds();
    sto_az_endpoint_t e;
    /* an IP-style endpoint: path-style addressing with the account first */
    assert_int_equal(
        sto_az_endpoint_parse("http://127.0.0.1:10000", "devstoreaccount1", &e, err, sizeof(err)),
        0);
    sto_az_kv_t xh[] = {{"x-ms-range", "bytes=0-99"}};
    sto_az_req_in_t in = {.method = "GET",
                          .container = "bench",
                          .blob = "dir/a b.dat",
                          .headers = xh,
                          .nheaders = 1,
                          .content_length = -1,
                          .time = 784111777};
    assert_int_equal(sto_az_request_build(&e, &c, "devstoreaccount1", &in, &rq, err, sizeof(err)),
                     0);
    assert_string_equal(rq.target, "/devstoreaccount1/bench/dir/a%20b.dat");
    assert_string_equal(find_hdr(&rq, "Host"), "127.0.0.1:10000");
    assert_string_equal(find_hdr(&rq, "x-ms-date"), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_string_equal(find_hdr(&rq, "x-ms-version"), STO_AZ_VERSION);
    assert_string_equal(find_hdr(&rq, "x-ms-range"), "bytes=0-99");
    assert_string_equal(rq.string_to_sign, STS1);
    char want[128];
    snprintf(want, sizeof(want), "SharedKey devstoreaccount1:%s", SIG1);
    assert_string_equal(find_hdr(&rq, "Authorization"), want);
    assert_null(find_hdr(&rq, "Content-Length"));

    /* Put Block on Azure: account in the host name, the block id percent-encoded in the target,
     * Content-Length signed but left to the HTTP layer */
    sto_az_creds_t c2 = c;
    snprintf(c2.account, sizeof(c2.account), "myaccount");
    assert_int_equal(sto_az_endpoint_resolve("myaccount", NULL, NULL, &e, err, sizeof(err)), 0);
    sto_az_kv_t q[] = {{"comp", "block"}, {"blockid", "c2FpMw=="}};
    sto_az_req_in_t in2 = {.method = "PUT",
                           .container = "mycontainer",
                           .blob = "big.bin",
                           .query = q,
                           .nquery = 2,
                           .content_length = 5242880,
                           .time = 1704067200};
    assert_int_equal(sto_az_request_build(&e, &c2, "myaccount", &in2, &rq, err, sizeof(err)), 0);
    assert_string_equal(rq.target, "/mycontainer/big.bin?comp=block&blockid=c2FpMw%3D%3D");
    assert_string_equal(find_hdr(&rq, "Host"), "myaccount.blob.core.windows.net");
    assert_string_equal(rq.string_to_sign, STS2);
    snprintf(want, sizeof(want), "SharedKey myaccount:%s", SIG2);
    assert_string_equal(find_hdr(&rq, "Authorization"), want);
    assert_null(find_hdr(&rq, "Content-Length"));

    /* SAS: unsigned, the token appended after our own parameters */
    sto_az_creds_t sas;
    memset(&sas, 0, sizeof(sas));
    sas.auth = STO_AZ_SAS;
    snprintf(sas.sas, sizeof(sas.sas), "sv=2021-08-06&ss=b&sig=a%%2Bb%%3D");
    assert_int_equal(sto_az_request_build(&e, &sas, "myaccount", &in2, &rq, err, sizeof(err)), 0);
    assert_string_equal(rq.target, "/mycontainer/big.bin?comp=block&blockid=c2FpMw%3D%3D"
                                   "&sv=2021-08-06&ss=b&sig=a%2Bb%3D");
    assert_null(find_hdr(&rq, "Authorization"));
    assert_string_equal(rq.string_to_sign, "");
    in2.nquery = 0;
    assert_int_equal(sto_az_request_build(&e, &sas, "myaccount", &in2, &rq, err, sizeof(err)), 0);
    assert_string_equal(rq.target, "/mycontainer/big.bin?sv=2021-08-06&ss=b&sig=a%2Bb%3D");

    /* anonymous: neither */
    sto_az_creds_t anon;
    memset(&anon, 0, sizeof(anon));
    assert_int_equal(sto_az_request_build(&e, &anon, "myaccount", &in2, &rq, err, sizeof(err)), 0);
    assert_string_equal(rq.target, "/mycontainer/big.bin");
    assert_null(find_hdr(&rq, "Authorization"));

    /* refusals */
    in2.container = "";
    assert_int_equal(sto_az_request_build(&e, &c2, "myaccount", &in2, &rq, err, sizeof(err)),
                     -EINVAL);
    in2.container = "mycontainer";
    sto_az_kv_t bad[] = {{"x-ms-meta-x", "a\nb"}};
    in2.headers = bad;
    in2.nheaders = 1;
    assert_int_equal(sto_az_request_build(&e, &c2, "myaccount", &in2, &rq, err, sizeof(err)),
                     -EINVAL);
    static char longname[STO_AZ_TARGET_MAX];
    memset(longname, '%', sizeof(longname) - 1); /* 3 bytes each when encoded */
    longname[sizeof(longname) - 1] = '\0';
    in2.headers = NULL;
    in2.nheaders = 0;
    in2.blob = longname;
    assert_int_equal(sto_az_request_build(&e, &c2, "myaccount", &in2, &rq, err, sizeof(err)),
                     -ENOSPC);
}

static void test_sas_append(void **s)
{
    (void)s;
    char t[64] = "/c/b";
    assert_int_equal(sto_az_sas_append(t, sizeof(t), "?sv=1&sig=x"), 15);
    assert_string_equal(t, "/c/b?sv=1&sig=x");
    snprintf(t, sizeof(t), "/c?restype=container");
    assert_int_equal(sto_az_sas_append(t, sizeof(t), "sv=1"), 25);
    assert_string_equal(t, "/c?restype=container&sv=1");
    assert_int_equal(sto_az_sas_append(t, sizeof(t), ""), 25);
    assert_int_equal(sto_az_sas_append(t, sizeof(t), "?"), 25);
    assert_int_equal(sto_az_sas_append(t, sizeof(t), NULL), 25);
    assert_string_equal(t, "/c?restype=container&sv=1");
    char small[8] = "/c";
    assert_int_equal(sto_az_sas_append(small, sizeof(small), "sv=1234"), -ENOSPC);
    assert_string_equal(small, "/c");
    assert_int_equal(sto_az_sas_append(small, sizeof(small), "sv=1"), 7);
    assert_string_equal(small, "/c?sv=1");
}

/* ---- connection strings and the environment ---------------------------------------------- */

static void test_connstr(void **s)
{
    (void)s;
    sto_az_creds_t c;
    char err[256];
    assert_int_equal(sto_az_connstr_parse("DefaultEndpointsProtocol=https;AccountName=acct;"
                                          "AccountKey=" DEV_KEY
                                          ";EndpointSuffix=core.chinacloudapi.cn",
                                          &c, err, sizeof(err)),
                     0);
    assert_int_equal(c.auth, STO_AZ_SHARED_KEY);
    assert_string_equal(c.account, "acct");
    assert_int_equal(c.key_len, 64);
    assert_string_equal(c.blob_endpoint, "https://acct.blob.core.chinacloudapi.cn");

    /* the emulator: spaces, key case, '=' inside values, a trailing ';' and '/' */
    assert_int_equal(sto_az_connstr_parse(" defaultendpointsprotocol = http ; ACCOUNTNAME="
                                          "devstoreaccount1;AccountKey=" DEV_KEY
                                          ";BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1/;"
                                          "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;",
                                          &c, err, sizeof(err)),
                     0);
    assert_int_equal(c.auth, STO_AZ_SHARED_KEY);
    assert_string_equal(c.account, "devstoreaccount1");
    assert_string_equal(c.blob_endpoint, "http://127.0.0.1:10000/devstoreaccount1");
    sto_az_creds_t d = dev_creds();
    assert_int_equal(c.key_len, d.key_len);
    assert_memory_equal(c.key, d.key, d.key_len);

    /* development storage shortcuts */
    assert_int_equal(sto_az_connstr_parse("UseDevelopmentStorage=true", &c, err, sizeof(err)), 0);
    assert_int_equal(c.auth, STO_AZ_SHARED_KEY);
    assert_string_equal(c.account, "devstoreaccount1");
    assert_string_equal(c.blob_endpoint, "http://127.0.0.1:10000/devstoreaccount1");
    assert_memory_equal(c.key, d.key, d.key_len);
    assert_int_equal(sto_az_connstr_parse("UseDevelopmentStorage=true;"
                                          "DevelopmentStorageProxyUri=http://ipv4.fiddler/",
                                          &c, err, sizeof(err)),
                     0);
    assert_string_equal(c.blob_endpoint, "http://ipv4.fiddler:10000/devstoreaccount1");

    /* SAS only, with and without '?' */
    assert_int_equal(sto_az_connstr_parse("BlobEndpoint=https://x.blob.core.windows.net/;"
                                          "SharedAccessSignature=?sv=2021-08-06&sig=a%2Fb",
                                          &c, err, sizeof(err)),
                     0);
    assert_int_equal(c.auth, STO_AZ_SAS);
    assert_string_equal(c.sas, "sv=2021-08-06&sig=a%2Fb");
    assert_string_equal(c.account, "");
    assert_string_equal(c.blob_endpoint, "https://x.blob.core.windows.net");
    /* a key wins over a SAS */
    assert_int_equal(sto_az_connstr_parse("AccountName=a;AccountKey=" DEV_KEY
                                          ";SharedAccessSignature=sv=1",
                                          &c, err, sizeof(err)),
                     0);
    assert_int_equal(c.auth, STO_AZ_SHARED_KEY);
    assert_string_equal(c.sas, "");
    /* an account only: anonymous, endpoint implied */
    assert_int_equal(sto_az_connstr_parse("AccountName=pub", &c, err, sizeof(err)), 0);
    assert_int_equal(c.auth, STO_AZ_ANONYMOUS);
    assert_string_equal(c.blob_endpoint, "https://pub.blob.core.windows.net");

    /* errors */
    const char *bad[] = {"",
                         "garbage",
                         ("AccountKey=" DEV_KEY),
                         "AccountName=a;AccountKey=not*base64",
                         "DefaultEndpointsProtocol=ftp;AccountName=a",
                         "QueueEndpoint=http://x/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(sto_az_connstr_parse(bad[i], &c, err, sizeof(err)), -EINVAL);
        assert_true(err[0] != '\0');
        assert_int_equal(c.key_len, 0);
    }
}

static void clear_env(void)
{
    unsetenv("AZURE_STORAGE_CONNECTION_STRING");
    unsetenv("AZURE_STORAGE_ACCOUNT");
    unsetenv("AZURE_STORAGE_KEY");
    unsetenv("AZURE_STORAGE_SAS_TOKEN");
}

static void test_creds_env(void **s)
{
    (void)s;
    sto_az_creds_t c;
    char err[256];
    clear_env();
    assert_int_equal(sto_az_creds_load(&c, err, sizeof(err)), 0);
    assert_int_equal(c.auth, STO_AZ_ANONYMOUS);
    assert_int_equal(sto_az_creds_bind(&c, "anyone", err, sizeof(err)), 0);
    assert_string_equal(c.account, "anyone");

    setenv("AZURE_STORAGE_SAS_TOKEN", "?sv=2021&sig=x", 1);
    assert_int_equal(sto_az_creds_load(&c, err, sizeof(err)), 0);
    assert_int_equal(c.auth, STO_AZ_SAS);
    assert_string_equal(c.sas, "sv=2021&sig=x");
    assert_string_equal(c.source, "AZURE_STORAGE_SAS_TOKEN");

    setenv("AZURE_STORAGE_KEY", DEV_KEY, 1); /* a key wins over the SAS */
    assert_int_equal(sto_az_creds_load(&c, err, sizeof(err)), 0);
    assert_int_equal(c.auth, STO_AZ_SHARED_KEY);
    assert_string_equal(c.account, "");
    assert_int_equal(sto_az_creds_bind(&c, "fromuri", err, sizeof(err)), 0);
    assert_string_equal(c.account, "fromuri");

    setenv("AZURE_STORAGE_ACCOUNT", "devstoreaccount1", 1);
    assert_int_equal(sto_az_creds_load(&c, err, sizeof(err)), 0);
    assert_string_equal(c.account, "devstoreaccount1");
    assert_int_equal(sto_az_creds_bind(&c, "devstoreaccount1", err, sizeof(err)), 0);
    assert_int_equal(sto_az_creds_bind(&c, "other", err, sizeof(err)), STO_EPERM);
    assert_non_null(strstr(err, "other"));
    assert_non_null(strstr(err, "devstoreaccount1"));

    setenv("AZURE_STORAGE_KEY", "***", 1);
    assert_int_equal(sto_az_creds_load(&c, err, sizeof(err)), STO_EPERM);
    assert_non_null(strstr(err, "AZURE_STORAGE_KEY"));

    /* the connection string wins over everything */
    setenv("AZURE_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true", 1);
    assert_int_equal(sto_az_creds_load(&c, err, sizeof(err)), 0);
    assert_int_equal(c.auth, STO_AZ_SHARED_KEY);
    assert_string_equal(c.source, "AZURE_STORAGE_CONNECTION_STRING");
    assert_string_equal(c.blob_endpoint, STO_AZ_DEV_ENDPOINT);
    setenv("AZURE_STORAGE_CONNECTION_STRING", "AccountKey=x", 1);
    assert_int_equal(sto_az_creds_load(&c, err, sizeof(err)), STO_EPERM);
    assert_non_null(strstr(err, "AZURE_STORAGE_CONNECTION_STRING"));
    clear_env();
}

/* ---- endpoints ---------------------------------------------------------------------------- */

static void test_endpoints(void **s)
{
    (void)s;
    sto_az_endpoint_t e;
    char err[256], host[300];
    struct {
        const char *url;
        int tls, port;
        const char *host, *base, *hh;
    } ok[] = {
        {"http://127.0.0.1:10000", 0, 10000, "127.0.0.1", "/acct1", "127.0.0.1:10000"},
        {"http://localhost:10000/", 0, 10000, "localhost", "/acct1", "localhost:10000"},
        {"http://127.0.0.1:10000/devstoreaccount1/", 0, 10000, "127.0.0.1", "/devstoreaccount1",
         "127.0.0.1:10000"},
        {"https://acct1.blob.core.windows.net", 1, 443, "acct1.blob.core.windows.net", "",
         "acct1.blob.core.windows.net"},
        {"HTTPS://store.example.com:8443/", 1, 8443, "store.example.com", "",
         "store.example.com:8443"},
        {"http://[::1]:10000", 0, 10000, "::1", "/acct1", "[::1]:10000"},
        {"http://azurite/acct1", 0, 80, "azurite", "/acct1", "azurite"},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(sto_az_endpoint_parse(ok[i].url, "acct1", &e, err, sizeof(err)), 0);
        assert_int_equal(e.tls, ok[i].tls);
        assert_int_equal(e.port, ok[i].port);
        assert_string_equal(e.host, ok[i].host);
        assert_string_equal(e.base_path, ok[i].base);
        sto_az_host_header(&e, host, sizeof(host));
        assert_string_equal(host, ok[i].hh);
    }
    const char *bad[] = {"ftp://x",     "http://",      "http://h:99999",  "http://h/p?q=1",
                         "127.0.0.1:1", "http://h/a b", "http://bad host/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(sto_az_endpoint_parse(bad[i], "acct1", &e, err, sizeof(err)), STO_EURI);
    /* path-style needs an account */
    assert_int_equal(sto_az_endpoint_parse("http://127.0.0.1:10000", "", &e, err, sizeof(err)),
                     STO_EURI);

    /* resolution order */
    sto_az_creds_t c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(sto_az_endpoint_resolve("acct1", NULL, &c, &e, err, sizeof(err)), 0);
    assert_string_equal(e.host, "acct1.blob.core.windows.net");
    assert_string_equal(e.source, "azure");
    snprintf(c.blob_endpoint, sizeof(c.blob_endpoint), "http://127.0.0.1:10000/devstoreaccount1");
    assert_int_equal(sto_az_endpoint_resolve("devstoreaccount1", NULL, &c, &e, err, sizeof(err)),
                     0);
    assert_string_equal(e.source, "connection string");
    assert_string_equal(e.base_path, "/devstoreaccount1");
    assert_int_equal(
        sto_az_endpoint_resolve("devstoreaccount1", "http://127.0.0.1:9", &c, &e, err, sizeof(err)),
        0);
    assert_string_equal(e.source, "config");
    assert_int_equal(e.port, 9);
    assert_int_equal(sto_az_endpoint_resolve("not_an.account", NULL, NULL, &e, err, sizeof(err)),
                     STO_EURI);
}

static void test_date_and_block_ids(void **s)
{
    (void)s;
    char d[STO_AZ_DATE_LEN + 1];
    sto_az_date(784111777, d);
    assert_string_equal(d, "Sun, 06 Nov 1994 08:49:37 GMT");
    sto_az_date(0, d);
    assert_string_equal(d, "Thu, 01 Jan 1970 00:00:00 GMT");
    sto_az_date(1709251199, d);
    assert_string_equal(d, "Thu, 29 Feb 2024 23:59:59 GMT");

    /* expected values: echo -n "sai3000000ff-00000000007" | base64, and so on */
    char id[STO_AZ_BLOCK_ID_LEN + 1];
    sto_az_block_id(0xff, 7, id);
    assert_string_equal(id, "c2FpMzAwMDAwMGZmLTAwMDAwMDAwMDA3");
    sto_az_block_id(0xdeadbeef, 12345, id);
    assert_string_equal(id, "c2FpM2RlYWRiZWVmLTAwMDAwMDEyMzQ1");
    sto_az_block_id(UINT32_MAX, UINT32_MAX, id);
    assert_int_equal(strlen(id), STO_AZ_BLOCK_ID_LEN);
    char id2[STO_AZ_BLOCK_ID_LEN + 1];
    sto_az_block_id(UINT32_MAX, UINT32_MAX - 1, id2);
    assert_string_not_equal(id, id2);
}

/* ---- XML ---------------------------------------------------------------------------------- */

struct rec {
    char buf[8192];
    size_t len;
    int abort_at, events;
};

static void rec_add(struct rec *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rec_add(struct rec *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->buf + r->len, sizeof(r->buf) - r->len, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof(r->buf) - r->len);
    r->len += (size_t)n;
}

static int on_blob(void *ud, const sto_azxml_blob_t *b)
{
    struct rec *r = ud;
    assert_int_equal(strlen(b->name), b->name_len);
    rec_add(r, "B[%s|%llu|%d|%s|%s]", b->name, (unsigned long long)b->size, b->has_size, b->etag,
            b->last_modified);
    return ++r->events == r->abort_at ? -42 : 0;
}

static int on_prefix(void *ud, const char *name, size_t len)
{
    struct rec *r = ud;
    assert_int_equal(strlen(name), len);
    rec_add(r, "P[%s]", name);
    return ++r->events == r->abort_at ? -42 : 0;
}

/* Feeds doc in chunks: whole (split 0), two chunks at split, or byte by byte (split -1). */
static int parse_doc(const char *doc, size_t len, long split, sto_azxml_kind_t expect,
                     struct rec *r, sto_azxml_doc_t *out, char *detail, size_t dlen)
{
    sto_azxml_config_t cfg = {.expect = expect, .cb = {on_blob, on_prefix}, .ud = r};
    sto_azxml_parser_t *p = NULL;
    assert_int_equal(sto_azxml_new(&cfg, &p), 0);
    int rc = 0;
    if (split == 0) {
        rc = sto_azxml_feed(p, doc, len, true);
    } else if (split > 0) {
        rc = sto_azxml_feed(p, doc, (size_t)split, false);
        if (rc == 0)
            rc = sto_azxml_feed(p, doc + split, len - (size_t)split, true);
    } else {
        for (size_t i = 0; i < len && rc == 0; i++)
            rc = sto_azxml_feed(p, doc + i, 1, false);
        if (rc == 0)
            rc = sto_azxml_feed(p, NULL, 0, true);
    }
    if (out)
        *out = *sto_azxml_doc(p);
    if (detail)
        snprintf(detail, dlen, "%s", sto_azxml_detail(p));
    if (rc == 0) {
        assert_true(sto_azxml_done(p));
        assert_int_equal(sto_azxml_feed(p, "x", 1, true), RX_ESTATE);
    } else {
        assert_int_equal(sto_azxml_feed(p, "<", 1, false), rc); /* sticky */
    }
    sto_azxml_free(p);
    return rc;
}

/* The shape of the reference's example response and of azurite's, with the extras a real
 * service sends (Snapshot, Metadata, OrMetadata, attributes) and an encoded name. */
static const char LIST_DOC[] =
    "\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
    "<EnumerationResults ServiceEndpoint=\"http://127.0.0.1:10000/devstoreaccount1\" "
    "ContainerName=\"bench\">\n"
    "  <Prefix>run/p/</Prefix>\n"
    "  <Marker>m0</Marker>\n"
    "  <MaxResults>1000</MaxResults>\n"
    "  <Delimiter>/</Delimiter>\n"
    "  <Blobs>\n"
    "    <Blob>\n"
    "      <Name>run/p/prepared-00000000.dat</Name>\n"
    "      <Snapshot>2011-03-09T01:42:34.9360000Z</Snapshot>\n"
    "      <Properties>\n"
    "        <Creation-Time>Tue, 09 Mar 2021 01:42:34 GMT</Creation-Time>\n"
    "        <Last-Modified>Wed, 09 Sep 2009 09:20:02 GMT</Last-Modified>\n"
    "        <Etag>0x8CBFF45D8A29A19</Etag>\n"
    "        <Content-Length>  5242881 </Content-Length>\n"
    "        <Content-Type>application/octet-stream</Content-Type>\n"
    "        <BlobType>BlockBlob</BlobType>\n"
    "      </Properties>\n"
    "      <Metadata><Color>blue</Color><Name>not-the-blob</Name></Metadata>\n"
    "      <OrMetadata />\n"
    "    </Blob>\n"
    "    <BlobPrefix><Name>run/p/sub/</Name></BlobPrefix>\n"
    "    <Blob><Name Encoded=\"true\">run/p/a%20%26%EF%BF%BE.dat</Name>"
    "<Properties><Content-Length>0</Content-Length></Properties></Blob>\n"
    "    <Blob><Name>run/p/&lt;x&gt; &amp; y</Name><Properties /></Blob>\n"
    "    <BlobPrefix><Name>run/p/z/</Name></BlobPrefix>\n"
    "  </Blobs>\n"
    "  <NextMarker>2!96!MDAwMDI0IXJ1bi9wL3ByZXBhcmVkLTAwMDAwMDA0LmRhdCEwMDAw</NextMarker>\n"
    "</EnumerationResults>";

static const char LIST_EVENTS[] =
    "B[run/p/prepared-00000000.dat|5242881|1|0x8CBFF45D8A29A19|Wed, 09 Sep 2009 09:20:02 GMT]"
    "P[run/p/sub/]"
    "B[run/p/a &\xEF\xBF\xBE.dat|0|1||]"
    "B[run/p/<x> & y|0|0||]"
    "P[run/p/z/]";

static void check_list_doc(const sto_azxml_doc_t *d)
{
    assert_int_equal(d->kind, STO_AZXML_LIST_BLOBS);
    assert_string_equal(d->prefix, "run/p/");
    assert_string_equal(d->marker, "m0");
    assert_string_equal(d->delimiter, "/");
    assert_true(d->has_max_results);
    assert_int_equal(d->max_results, 1000);
    assert_string_equal(d->next_marker,
                        "2!96!MDAwMDI0IXJ1bi9wL3ByZXBhcmVkLTAwMDAwMDA0LmRhdCEwMDAw");
    assert_int_equal(d->n_blobs, 3);
    assert_int_equal(d->n_prefixes, 2);
}

static void test_list_xml_every_split(void **s)
{
    (void)s;
    size_t len = sizeof(LIST_DOC) - 1;
    static struct rec r;
    static sto_azxml_doc_t d;
    for (long split = -1; split <= (long)len; split++) {
        memset(&r, 0, sizeof(r));
        assert_int_equal(parse_doc(LIST_DOC, len, split, STO_AZXML_LIST_BLOBS, &r, &d, NULL, 0), 0);
        assert_string_equal(r.buf, LIST_EVENTS);
        check_list_doc(&d);
    }
    /* ANY accepts it too; the last page has an empty NextMarker */
    static const char last[] = "<EnumerationResults><Blobs/><NextMarker/></EnumerationResults>";
    memset(&r, 0, sizeof(r));
    assert_int_equal(parse_doc(last, sizeof(last) - 1, 0, STO_AZXML_ANY, &r, &d, NULL, 0), 0);
    assert_string_equal(d.next_marker, "");
    assert_int_equal(d.n_blobs + d.n_prefixes, 0);
    /* a callback's error stops the parse and comes back */
    memset(&r, 0, sizeof(r));
    r.abort_at = 2;
    assert_int_equal(parse_doc(LIST_DOC, len, 0, STO_AZXML_LIST_BLOBS, &r, NULL, NULL, 0), -42);
    assert_int_equal(r.events, 2);
}

static void test_error_xml(void **s)
{
    (void)s;
    static struct rec r;
    static sto_azxml_doc_t d;
    /* azurite's body for a bad signature */
    static const char az[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"
        "<Error>\n  <Code>AuthorizationFailure</Code>\n  <Message>Server failed to authenticate "
        "the request. Make sure the value of the Authorization header is formed correctly "
        "including the signature.\nRequestId:4a5f\nTime:2024-01-01T00:00:00.000Z</Message>\n"
        "</Error>";
    for (long split = -1; split <= (long)sizeof(az) - 1; split++) {
        memset(&r, 0, sizeof(r));
        assert_int_equal(parse_doc(az, sizeof(az) - 1, split, STO_AZXML_ERROR, &r, &d, NULL, 0), 0);
        assert_int_equal(d.kind, STO_AZXML_ERROR);
        assert_string_equal(d.error.code, "AuthorizationFailure");
        assert_non_null(strstr(d.error.message, "Server failed to authenticate"));
        assert_non_null(strstr(d.error.message, "\nRequestId:4a5f"));
        assert_false(d.error.truncated);
    }
    /* Azure's, with the detail element; accepted where a listing was expected */
    static const char azure[] =
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code>"
        "<Message>Server failed to authenticate the request.</Message>"
        "<AuthenticationErrorDetail>The MAC signature found in the HTTP request 'x' is not the "
        "same as any computed signature.</AuthenticationErrorDetail></Error>";
    memset(&r, 0, sizeof(r));
    assert_int_equal(parse_doc(azure, sizeof(azure) - 1, 0, STO_AZXML_LIST_BLOBS, &r, &d, NULL, 0),
                     0);
    assert_int_equal(d.kind, STO_AZXML_ERROR);
    assert_string_equal(d.error.code, "AuthenticationFailed");
    assert_non_null(strstr(d.error.auth_detail, "MAC signature"));

    /* a long message is truncated at a UTF-8 boundary, not refused */
    static char big[4096];
    int n = snprintf(big, sizeof(big), "<Error><Code>X</Code><Message>");
    for (int i = 0; i < 300; i++)
        n += snprintf(big + n, sizeof(big) - (size_t)n, "\xC3\xA9"); /* é: 600 bytes */
    n += snprintf(big + n, sizeof(big) - (size_t)n, "</Message></Error>");
    memset(&r, 0, sizeof(r));
    assert_int_equal(parse_doc(big, (size_t)n, 0, STO_AZXML_ERROR, &r, &d, NULL, 0), 0);
    assert_true(d.error.truncated);
    assert_int_equal(strlen(d.error.message), STO_AZXML_MESSAGE_MAX);
}

static void test_xml_errors(void **s)
{
    (void)s;
    static struct rec r;
    char detail[STO_AZXML_DETAIL_MAX + 1];
    struct {
        const char *doc;
        sto_azxml_kind_t expect;
        const char *detail;
    } bad[] = {
        {"", STO_AZXML_ANY, "no element"},
        {"<EnumerationResults><Blobs>", STO_AZXML_ANY, ""},
        {"<Error><Message>m</Message></Error>", STO_AZXML_ANY, "without <Code>"},
        {"<ListBucketResult/>", STO_AZXML_ANY, "unknown document"},
        {"<EnumerationResults/>", STO_AZXML_ERROR, "unexpected document"},
        {"<EnumerationResults><Blobs><Blob><Properties/></Blob></Blobs></EnumerationResults>",
         STO_AZXML_ANY, "<Blob> without <Name>"},
        {"<EnumerationResults><Blobs><Blob><Name>a</Name><Name>b</Name></Blob></Blobs>"
         "</EnumerationResults>",
         STO_AZXML_ANY, "repeated"},
        {"<EnumerationResults><Blobs><Blob><Name>a</Name><Properties><Content-Length>12x"
         "</Content-Length></Properties></Blob></Blobs></EnumerationResults>",
         STO_AZXML_ANY, "not a size"},
        {"<EnumerationResults><Blobs><Blob><Name></Name></Blob></Blobs></EnumerationResults>",
         STO_AZXML_ANY, "empty <Name>"},
        {"<EnumerationResults><Blobs><Blob><Name>a</Name><Properties><Content-Length>5"
         "</Content-Length></Properties><Properties/></Blob></Blobs></EnumerationResults>",
         STO_AZXML_ANY, "<Properties> repeated"},
        {"<EnumerationResults><Blob><Name>a</Name></Blob></EnumerationResults>", STO_AZXML_ANY,
         "not expected"},
        {"<EnumerationResults><Blobs><Blob><Name Encoded=\"true\">a%00b</Name></Blob></Blobs>"
         "</EnumerationResults>",
         STO_AZXML_ANY, "percent-encoding"},
        {"<EnumerationResults><Blobs><Blob><Name Encoded=\"true\">a%4</Name></Blob></Blobs>"
         "</EnumerationResults>",
         STO_AZXML_ANY, "percent-encoding"},
        {"<EnumerationResults><Prefix><x/></Prefix></EnumerationResults>", STO_AZXML_ANY, "inside"},
        {"<EnumerationResults><MaxResults>-1</MaxResults></EnumerationResults>", STO_AZXML_ANY,
         "MaxResults"},
        {"<!DOCTYPE x [<!ENTITY a \"b\">]><Error><Code>&a;</Code></Error>", STO_AZXML_ANY,
         "DOCTYPE"},
        {"<Error><Code>A</Code></Error><Error/>", STO_AZXML_ANY, ""},
        {"<a><b><c><d><e><f><g><h><i><j><k><l><m><n><o><p><q/></p></o></n></m></l></k></j></i>"
         "</h></g></f></e></d></c></b></a>",
         STO_AZXML_ANY, ""},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t len = strlen(bad[i].doc);
        for (long split = -1; split <= (long)len; split += (split < 0 ? 1 : 7)) {
            memset(&r, 0, sizeof(r));
            int rc =
                parse_doc(bad[i].doc, len, split, bad[i].expect, &r, NULL, detail, sizeof(detail));
            if (rc != STO_EPROTO)
                fail_msg("doc %zu split %ld: rc %d (%s)", i, split, rc, detail);
            assert_true(detail[0] != '\0');
            if (bad[i].detail[0] && !strstr(detail, bad[i].detail))
                fail_msg("doc %zu: detail '%s' lacks '%s'", i, detail, bad[i].detail);
        }
    }
    /* a name longer than the bound */
    static char lng[STO_AZXML_NAME_MAX + 200];
    int n = snprintf(lng, sizeof(lng), "<EnumerationResults><Blobs><Blob><Name>");
    memset(lng + n, 'a', STO_AZXML_NAME_MAX + 1);
    n += STO_AZXML_NAME_MAX + 1;
    n += snprintf(lng + n, sizeof(lng) - (size_t)n, "</Name></Blob></Blobs></EnumerationResults>");
    memset(&r, 0, sizeof(r));
    assert_int_equal(parse_doc(lng, (size_t)n, 0, STO_AZXML_ANY, &r, NULL, detail, sizeof(detail)),
                     STO_EPROTO);
    assert_non_null(strstr(detail, "longer than"));
    /* exactly the bound is fine */
    memmove(lng + n - 44 - 1, lng + n - 44, 45);
    memset(&r, 0, sizeof(r));
    assert_int_equal(parse_doc(lng, (size_t)n - 1, 0, STO_AZXML_ANY, &r, NULL, NULL, 0), 0);

    /* bad arguments, reset */
    sto_azxml_parser_t *p = NULL;
    assert_int_equal(sto_azxml_new(NULL, &p), -EINVAL);
    sto_azxml_config_t cfg = {.expect = (sto_azxml_kind_t)7};
    assert_int_equal(sto_azxml_new(&cfg, &p), -EINVAL);
    cfg.expect = STO_AZXML_ANY;
    assert_int_equal(sto_azxml_new(&cfg, &p), 0);
    assert_int_equal(sto_azxml_feed(p, "<x/>", 4, true), STO_EPROTO);
    assert_int_equal(sto_azxml_reset(p), 0);
    assert_string_equal(sto_azxml_detail(p), "");
    assert_int_equal(sto_azxml_feed(p, "<Error><Code>C</Code></Error>", 29, true), 0);
    assert_string_equal(sto_azxml_doc(p)->error.code, "C");
    sto_azxml_free(p);
    sto_azxml_free(NULL);
}

static void test_block_list_body(void **s)
{
    (void)s;
    char buf[256];
    const char *ids[] = {"c2FpMzAwMDAwMGZmLTAwMDAwMDAwMDA3", "QUJD"};
    static const char want[] = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<BlockList>"
                               "<Latest>c2FpMzAwMDAwMGZmLTAwMDAwMDAwMDA3</Latest>"
                               "<Latest>QUJD</Latest></BlockList>";
    int n = sto_azxml_block_list_body(ids, 2, buf, sizeof(buf));
    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(buf, want);
    assert_int_equal(sto_azxml_block_list_body(ids, 2, buf, (size_t)n), -ENOSPC);
    assert_int_equal(sto_azxml_block_list_body(ids, 2, buf, (size_t)n + 1), n);
    const char *amp[] = {"a&b<"};
    assert_true(sto_azxml_block_list_body(amp, 1, buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "<Latest>a&amp;b&lt;</Latest>"));
    const char *empty[] = {""};
    assert_int_equal(sto_azxml_block_list_body(empty, 1, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(sto_azxml_block_list_body(ids, 0, buf, sizeof(buf)), -EINVAL);
}

/* ---- the backend without a server ---------------------------------------------------------- */

static void done_cb(sto_req_t *r)
{
    (void)r;
}

static void test_backend_offline(void **s)
{
    (void)s;
    sto_err_register();
    clear_env();
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sto_store_t *st = NULL;
    char err[256];
    const sto_backend_t *be = sto_backend_for(STO_SCHEME_AZ);
    assert_non_null(be);
    assert_string_equal(be->name, "az");
    assert_true(be->caps & STO_CAP_RANGE);
    assert_true(be->caps & STO_CAP_MULTIPART);
    assert_false(be->caps & STO_CAP_BATCH_DELETE);
    assert_false(be->caps & STO_CAP_DIRECTORIES);

    /* credentials for another account than the URI's */
    setenv("AZURE_STORAGE_ACCOUNT", "someone", 1);
    setenv("AZURE_STORAGE_KEY", DEV_KEY, 1);
    assert_int_equal(
        sto_store_open(&loop, "az://devstoreaccount1/bench/", 0, &st, err, sizeof(err)), STO_EPERM);
    assert_non_null(strstr(err, "someone"));
    unsetenv("AZURE_STORAGE_ACCOUNT");
    sto_opts_t o;
    memset(&o, 0, sizeof(o));
    o.endpoint = "ftp://x";
    assert_int_equal(
        sto_store_open_opts(&loop, "az://devstoreaccount1/bench/", 0, &o, &st, err, sizeof(err)),
        STO_EURI);
    o.endpoint = "http://127.0.0.1:9";
    assert_int_equal(sto_store_open_opts(&loop, "az://devstoreaccount1/bench/pre/", 0, &o, &st, err,
                                         sizeof(err)),
                     0);
    sto_req_t r;
    memset(&r, 0, sizeof(r));
    r.done = done_cb;
    r.key = "d";
    r.op = STO_OP_MKDIR;
    assert_int_equal(sto_submit(st, &r), STO_ENOTSUP);
    r.op = STO_OP_RMDIR;
    assert_int_equal(sto_submit(st, &r), STO_ENOTSUP);
    const char *keys[] = {"a"};
    r.op = STO_OP_DEL_BATCH;
    r.keys = keys;
    r.nkeys = 1;
    assert_int_equal(sto_submit(st, &r), STO_ENOTSUP);
    sto_store_close(st);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    clear_env();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sts_vectors),
        cmocka_unit_test(test_sts_standard_headers),
        cmocka_unit_test(test_request_build),
        cmocka_unit_test(test_sas_append),
        cmocka_unit_test(test_connstr),
        cmocka_unit_test(test_creds_env),
        cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_date_and_block_ids),
        cmocka_unit_test(test_list_xml_every_split),
        cmocka_unit_test(test_error_xml),
        cmocka_unit_test(test_xml_errors),
        cmocka_unit_test(test_block_list_body),
        cmocka_unit_test(test_backend_offline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
