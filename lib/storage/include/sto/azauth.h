/* sto/azauth.h — Azure Blob Storage addressing, credentials and request signing, sans-I/O.
 *
 * Credentials, first match wins (sto_az_creds_load):
 *   1. AZURE_STORAGE_CONNECTION_STRING: "Key=Value;..." with AccountName, AccountKey,
 *      SharedAccessSignature, BlobEndpoint, DefaultEndpointsProtocol, EndpointSuffix, or
 *      UseDevelopmentStorage=true (the emulator's well-known account devstoreaccount1, its key and
 *      http://127.0.0.1:10000/devstoreaccount1, or DevelopmentStorageProxyUri's host instead);
 *      an AccountKey is used when both AccountKey and SharedAccessSignature are given;
 *   2. AZURE_STORAGE_KEY (SharedKey; AZURE_STORAGE_ACCOUNT names the account, else the URI does);
 *   3. AZURE_STORAGE_SAS_TOKEN (a SAS query string, with or without the leading '?');
 *   4. none: anonymous requests (public containers only).
 * The account of a URI (az://account/container/prefix/) must match the account the credentials
 * name, when they name one (a SharedKey signature is bound to its account).
 *
 * Endpoint, first match wins (sto_az_endpoint_resolve):
 *   1. the config's `endpoint:` (or util --endpoint);
 *   2. the connection string's BlobEndpoint (or the one it implies: DefaultEndpointsProtocol,
 *      AccountName and EndpointSuffix; or the development storage);
 *   3. https://<account>.blob.core.windows.net.
 * An endpoint URL is http[s]://host[:port][/path]. With a path (BlobEndpoint of the emulator,
 * "http://127.0.0.1:10000/devstoreaccount1"), requests go to <path>/<container>/<blob>. Without
 * one, an IP-address or "localhost" host is an emulator addressed path-style, and the account is
 * the first path segment: "http://127.0.0.1:10000" reaches /<account>/<container>/<blob> (as the
 * Azure SDKs treat such "IP-style" URLs); any other host names the account itself
 * (https://account.blob.core.windows.net, a custom domain, a private endpoint):
 * /<container>/<blob>.
 *
 * Signing: SharedKey for x-ms-version 2021-08-06 (STO_AZ_VERSION) as the Azure Storage REST
 * reference specifies ("Authorize with Shared Key"):
 *   StringToSign = VERB \n Content-Encoding \n Content-Language \n Content-Length (empty when 0)
 *                  \n Content-MD5 \n Content-Type \n Date \n If-Modified-Since \n If-Match \n
 *                  If-None-Match \n If-Unmodified-Since \n Range \n CanonicalizedHeaders
 *                  CanonicalizedResource
 *   CanonicalizedHeaders: every x-ms-* header, name lowercased, sorted by name, value trimmed with
 *   inner runs of spaces/tabs collapsed to one space, "name:value\n" each.
 *   CanonicalizedResource: "/" account encoded-path, then for each query parameter, sorted by its
 *   lowercased name: "\nname:value" (values of a repeated name sorted and joined with ',').
 *   Authorization: "SharedKey account:" base64(HMAC-SHA256(base64-decoded key, StringToSign)).
 * With a SAS the request is not signed: the token is appended to the query string as given.
 *
 * Threads: every function is reentrant; sto_az_creds_load reads the environment (call it before
 * starting threads that setenv). Nothing here allocates, prints or does other I/O.
 * Errors: 0 (or a length) on success; -EINVAL (bad input, reason in err where there is one),
 * -ENOSPC (an output buffer or fixed field is too small), STO_EURI / STO_EPERM where stated.
 * Credentials hold secret material: clear them (memset) when done where that matters.
 */
#ifndef STO_AZAUTH_H
#define STO_AZAUTH_H

#include <stddef.h>
#include <stdint.h>

#define STO_AZ_VERSION "2021-08-06"
#define STO_AZ_ACCOUNT_MAX 63   /* account names are 3..24 on Azure; emulators accept more */
#define STO_AZ_KEY_MAX 128      /* decoded account key bytes (Azure keys are 64) */
#define STO_AZ_SAS_MAX 2048     /* SAS query string, without '?' */
#define STO_AZ_URL_MAX 511      /* endpoint URLs */
#define STO_AZ_SIG_LEN 44       /* base64 of a 32-byte HMAC */
#define STO_AZ_DATE_LEN 29      /* "Sun, 06 Nov 1994 08:49:37 GMT" */
#define STO_AZ_MAX_HEADERS 16   /* request headers (ours and the caller's) */
#define STO_AZ_MAX_QUERY 16     /* query parameters to sign */
#define STO_AZ_TARGET_MAX 12288 /* request target: path, query and SAS */
#define STO_AZ_STS_MAX 8192     /* StringToSign */
#define STO_AZ_ARENA 2048       /* header values of one request */
/* A block id: 24 bytes before base64, 32 after (all ids of a blob must be the same length). */
#define STO_AZ_BLOCK_ID_RAW 24
#define STO_AZ_BLOCK_ID_LEN 32

/* The emulator's documented development account. */
#define STO_AZ_DEV_ACCOUNT "devstoreaccount1"
#define STO_AZ_DEV_KEY                                                                             \
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#define STO_AZ_DEV_ENDPOINT "http://127.0.0.1:10000/devstoreaccount1"

typedef enum sto_az_auth {
    STO_AZ_ANONYMOUS = 0,
    STO_AZ_SHARED_KEY,
    STO_AZ_SAS,
} sto_az_auth_t;

typedef struct sto_az_creds {
    sto_az_auth_t auth;
    char account[STO_AZ_ACCOUNT_MAX + 1]; /* "" when the source names none */
    unsigned char key[STO_AZ_KEY_MAX];    /* SharedKey: the decoded account key */
    size_t key_len;
    char sas[STO_AZ_SAS_MAX + 1];           /* SAS: query string without the leading '?' */
    char blob_endpoint[STO_AZ_URL_MAX + 1]; /* from a connection string; "" otherwise */
    char source[64]; /* "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_KEY", ... , "none" */
} sto_az_creds_t;

/* Parses a connection string into c (source left "", auth set from what it holds). Keys are
 * case-insensitive; values may contain '='; empty segments and spaces around keys are ignored.
 * Returns 0 or -EINVAL with the reason in err (unknown protocol, a bad AccountKey, an AccountKey
 * without an AccountName, a SAS or URL too long, nothing usable). Unknown keys (QueueEndpoint,
 * TableEndpoint, ...) are ignored. */
int sto_az_connstr_parse(const char *cs, sto_az_creds_t *c, char *err, size_t errlen);

/* Loads credentials from the environment as described at the top. Returns 0, or STO_EPERM with
 * the reason in err (a malformed connection string or key). */
int sto_az_creds_load(sto_az_creds_t *c, char *err, size_t errlen);

/* Decodes a base64 account key into c->key. Returns 0 or -EINVAL (not base64, empty, longer
 * than STO_AZ_KEY_MAX bytes). */
int sto_az_key_set(sto_az_creds_t *c, const char *b64);

/* Checks that the credentials fit the URI's account: sets c->account when the source named none.
 * Returns 0 or STO_EPERM with a reason in err. */
int sto_az_creds_bind(sto_az_creds_t *c, const char *account, char *err, size_t errlen);

typedef struct sto_az_endpoint {
    int tls;        /* https */
    char host[256]; /* host name or address, IPv6 without brackets */
    int port;
    char base_path[256]; /* "" or "/devstoreaccount1" (already percent-encoded, no trailing
                            '/'): prefix of every request path */
    char source[40];     /* "config", "connection string", "azure" */
} sto_az_endpoint_t;

/* Parses an endpoint URL for account (see the top for the path rule). Returns 0 or STO_EURI
 * with a reason in err. */
int sto_az_endpoint_parse(const char *url, const char *account, sto_az_endpoint_t *out, char *err,
                          size_t errlen);

/* Resolves the endpoint of account: config_endpoint (may be NULL), else c->blob_endpoint, else
 * Azure's public cloud. Returns 0 or STO_EURI. */
int sto_az_endpoint_resolve(const char *account, const char *config_endpoint,
                            const sto_az_creds_t *c, sto_az_endpoint_t *out, char *err,
                            size_t errlen);

/* Host header: "host" or "host:port" when the port is not the scheme's; IPv6 in brackets. */
void sto_az_host_header(const sto_az_endpoint_t *e, char *out, size_t len);

/* A query parameter or header. Query names and values are raw (not percent-encoded). */
typedef struct sto_az_kv {
    const char *name;
    const char *value;
} sto_az_kv_t;

/* What SharedKey signs. */
typedef struct sto_az_sign_in {
    const char *method;         /* "GET", ... as sent */
    const char *account;        /* the account the key belongs to */
    const char *path;           /* the request path as sent (percent-encoded), starting with '/' */
    const sto_az_kv_t *query;   /* raw names and values, any order, names may repeat */
    size_t nquery;              /* at most STO_AZ_MAX_QUERY */
    const sto_az_kv_t *headers; /* every header sent, any case: the standard ones are picked by
                                   name, x-ms-* ones canonicalised; others are ignored */
    size_t nheaders;            /* at most STO_AZ_MAX_HEADERS */
} sto_az_sign_in_t;

/* Writes the StringToSign (NUL-terminated) into out. Returns its length, -EINVAL (missing method,
 * account or path; a CR, LF or other control character in a value; an x-ms-* header given twice;
 * too many headers or parameters) or -ENOSPC. */
int sto_az_string_to_sign(const sto_az_sign_in_t *in, char *out, size_t cap);

/* base64(HMAC-SHA256(key, msg)) into sig (STO_AZ_SIG_LEN + 1 bytes). Returns 0 or -EINVAL. */
int sto_az_signature(const unsigned char *key, size_t key_len, const char *msg, size_t len,
                     char sig[STO_AZ_SIG_LEN + 1]);

/* RFC 1123 date of UTC seconds t ("Sun, 06 Nov 1994 08:49:37 GMT"), locale-independent. */
void sto_az_date(int64_t t, char out[STO_AZ_DATE_LEN + 1]);

/* Appends a SAS token to a request target: '?' or '&' (whichever the target needs) and the token
 * without a leading '?'. An empty token leaves the target as it is. Returns the new length or
 * -ENOSPC (target unchanged). */
int sto_az_sas_append(char *target, size_t cap, const char *sas);

/* Block id n (0-based) of an upload tagged nonce: base64 of the 24 bytes
 * "sai3" <8 hex digits of nonce> "-" <11 decimal digits of n>, 32 characters without padding.
 * Every id has the same length, as Azure requires of the blocks of one blob. */
void sto_az_block_id(uint32_t nonce, uint32_t n, char out[STO_AZ_BLOCK_ID_LEN + 1]);

/* A request to build. */
typedef struct sto_az_req_in {
    const char *method;       /* "GET", "PUT", "HEAD", "DELETE" */
    const char *container;    /* required */
    const char *blob;         /* raw blob name (UTF-8, unencoded); NULL or "" = the container */
    const sto_az_kv_t *query; /* raw names and values, sent in this order */
    size_t nquery;
    const sto_az_kv_t *headers; /* extra headers, sent (and signed): x-ms-blob-type, x-ms-range */
    size_t nheaders;
    int64_t content_length; /* >= 0: Content-Length; < 0: no body, no header */
    int64_t time;           /* UTC seconds, for x-ms-date */
} sto_az_req_in_t;

/* A built request: the target ("/base/container/blob?query[&sas]", percent-encoded) and the
 * headers to send (Host, the caller's, x-ms-date, x-ms-version, Authorization when signed).
 * Content-Length is signed (in->content_length) but not listed: the HTTP layer writes it from
 * the body length, which must be the same. All strings live inside the struct (about 22 KiB). */
typedef struct sto_az_request {
    char target[STO_AZ_TARGET_MAX];
    char string_to_sign[STO_AZ_STS_MAX]; /* "" unless signed; for 403 diagnostics */
    sto_az_kv_t headers[STO_AZ_MAX_HEADERS];
    size_t nheaders;
    char arena[STO_AZ_ARENA];
    size_t used;
} sto_az_request_t;

/* Builds (and signs, or appends the SAS to) a request for account on endpoint e with
 * credentials c. Returns 0, -EINVAL (reason in err) or -ENOSPC (a name or header too long). */
int sto_az_request_build(const sto_az_endpoint_t *e, const sto_az_creds_t *c, const char *account,
                         const sto_az_req_in_t *in, sto_az_request_t *out, char *err,
                         size_t errlen);

#endif
