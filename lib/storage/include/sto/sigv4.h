/* sto/sigv4.h — AWS Signature Version 4 (header signing), sans-I/O.
 *
 * The caller describes a request (method, path, query parameters, headers to sign, payload hash,
 * region, service, time, credentials); sto_sigv4_sign() builds the canonical request and the
 * string to sign, derives (or reuses) the signing key and returns the values of the headers to
 * add: Authorization, x-amz-date, x-amz-content-sha256 (S3) and x-amz-security-token (when the
 * credentials carry a session token). Presigned URLs are not supported.
 *
 * Threads: every function is reentrant. A sto_sigv4_cache_t is NOT thread-safe: keep one per core
 * (per rx_core) and use it only from that core's thread. Nothing here does I/O, allocates, or
 * prints.
 *
 * Errors: 0 on success, negative errno on failure:
 *   -EINVAL  an argument is NULL, empty where a value is required, too long for its fixed limit,
 *            contains a control character (CR/LF in a header is refused: no header injection),
 *            or the headers lack "host" or contain one the signer adds itself;
 *   -ENOSPC  a caller buffer (canonical request scratch, sto_uri_encode output) or a fixed
 *            output field (authorization) is too small. Output is then unspecified.
 *
 * Ownership: all inputs are borrowed for the duration of the call, except that
 * out->security_token points into creds->session_token (valid as long as the credentials are).
 */
#ifndef STO_SIGV4_H
#define STO_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STO_SHA256_HEX_LEN 64
#define STO_SIGV4_AMZDATE_LEN 16    /* "YYYYMMDDTHHMMSSZ" */
#define STO_SIGV4_PAYLOAD_MAX 64    /* longest payload hash value accepted */
#define STO_SIGV4_AUTHZ_MAX 1024    /* sizeof out->authorization */
#define STO_SIGV4_STS_MAX 320       /* sizeof out->string_to_sign */
#define STO_SIGV4_REGION_MAX 63     /* region and service names: 1..63 bytes, no '/' or spaces */
#define STO_SIGV4_SECRET_MAX 128    /* secret access key: 1..128 bytes */
#define STO_SIGV4_MAX_HEADERS 64    /* caller headers per request */
#define STO_SIGV4_MAX_QUERY 64      /* query parameters per request */
#define STO_SIGV4_CREQ_DEFAULT 8192 /* a comfortable scratch size for the canonical request */

/* The literal payload "hash" for bodies that are not hashed (S3 over TLS). */
#define STO_SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
/* Hex SHA-256 of the empty string. */
#define STO_SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* One query parameter or header. Strings are NUL-terminated. Query names and values are raw
 * (not percent-encoded): the signer encodes them. A NULL query value is the same as "" and signs
 * as "name=". Header values are used as given, then trimmed and inner runs of spaces/tabs
 * collapsed to one space for the canonical form (send them as you like: the server does the
 * same). */
typedef struct sto_sigv4_kv {
    const char *name;
    const char *value;
} sto_sigv4_kv_t;

typedef struct sto_sigv4_creds {
    const char *access_key;    /* required */
    const char *secret_key;    /* required, at most STO_SIGV4_SECRET_MAX bytes */
    const char *session_token; /* NULL or "" when the credentials are not temporary */
} sto_sigv4_creds_t;

typedef struct sto_sigv4_req {
    const char *method; /* "GET", "PUT", ... (used as given) */
    /* The path, starting with '/'; NULL or "" means "/". By default (S3) it is the raw object path
     * ("/bucket/my key.txt") and the canonical URI is each segment URI-encoded once with '/' kept:
     * exactly the path to put in the request line (see sto_uri_encode(path, ..., false)). */
    const char *path;
    /* Services other than S3 encode each segment twice (AWS's "double encoding": '%' of the first
     * pass becomes "%25"). */
    bool double_encode;
    /* Services other than S3 normalise the path first: empty, "." and ".." segments are resolved
     * ("//a/./b/../" -> "/a/"). S3 must not: "a//b" and "a/./b" are distinct keys. */
    bool normalize_path;
    /* The path is already percent-encoded as it appears in the request line: one encoding pass
     * fewer is applied (none for S3, one with double_encode). This is how the AWS SigV4 test suite
     * and the AWS SDKs present paths. */
    bool path_is_encoded;
    /* Add x-amz-content-sha256 (signed) for a service other than "s3" (always added for "s3"). */
    bool content_sha256_header;
    /* Do not sign x-amz-security-token: the caller adds it after signing (a few services want
     * that; S3 wants it signed, the default). out->security_token is set either way. */
    bool token_unsigned;

    const sto_sigv4_kv_t *query; /* raw names/values, any order; may be NULL when nquery is 0 */
    size_t nquery;               /* at most STO_SIGV4_MAX_QUERY */
    /* The headers to sign, any order and case, duplicates allowed (merged with ',' in the order
     * given). Must include "host". Must not include x-amz-date, x-amz-content-sha256 or
     * x-amz-security-token (the signer adds them) nor "authorization". Headers you do not want
     * signed (user-agent, content-length, ...) are simply not listed. */
    const sto_sigv4_kv_t *headers;
    size_t nheaders; /* at most STO_SIGV4_MAX_HEADERS */

    /* Lowercase hex SHA-256 of the body (sto_sha256_hex), STO_SIGV4_UNSIGNED_PAYLOAD, or another
     * token the service defines (at most STO_SIGV4_PAYLOAD_MAX bytes, no spaces). NULL means the
     * empty body. */
    const char *payload_hash;
    const char *region;  /* "us-east-1" */
    const char *service; /* "s3" */
    int64_t time;        /* request time, UTC seconds since the epoch (years 1970..9999) */
} sto_sigv4_req_t;

typedef struct sto_sigv4_out {
    char authorization[STO_SIGV4_AUTHZ_MAX];        /* value of "Authorization" */
    char amz_date[STO_SIGV4_AMZDATE_LEN + 1];       /* value of "x-amz-date" */
    char content_sha256[STO_SIGV4_PAYLOAD_MAX + 1]; /* "x-amz-content-sha256", "" = don't send */
    /* "x-amz-security-token" (borrowed from creds), NULL = don't send */
    const char *security_token;
    char signature[STO_SHA256_HEX_LEN + 1]; /* the hex signature alone */
    char string_to_sign[STO_SIGV4_STS_MAX]; /* for tests and for debugging a 403 */
    size_t creq_len; /* length of the canonical request left in the caller's scratch buffer */
} sto_sigv4_out_t;

/* Signing-key cache: the derived key for one (date, region, service, secret). Recomputed only
 * when one of them changes. Not thread-safe: one per core. Holds secret material: call
 * sto_sigv4_cache_clear() before freeing it. A zero-filled cache is a valid empty cache. */
typedef struct sto_sigv4_cache {
    unsigned char key[32];
    char date[9];
    char region[STO_SIGV4_REGION_MAX + 1];
    char service[STO_SIGV4_REGION_MAX + 1];
    char secret[STO_SIGV4_SECRET_MAX + 1];
    bool valid;
    uint64_t derivations; /* read-only statistic: how many keys were derived through this cache */
} sto_sigv4_cache_t;

void sto_sigv4_cache_init(sto_sigv4_cache_t *cache);
/* Wipes the key and the copy of the secret; the cache is empty (and reusable) afterwards. */
void sto_sigv4_cache_clear(sto_sigv4_cache_t *cache);

/* Signs req. cache may be NULL (the key is then derived on every call). creq/creq_cap is caller
 * scratch for the canonical request, which is left there NUL-terminated (out->creq_len bytes);
 * STO_SIGV4_CREQ_DEFAULT is plenty for ordinary requests. Returns 0, -EINVAL or -ENOSPC. */
int sto_sigv4_sign(sto_sigv4_cache_t *cache, const sto_sigv4_req_t *req,
                   const sto_sigv4_creds_t *creds, char *creq, size_t creq_cap,
                   sto_sigv4_out_t *out);

/* Derives the SigV4 signing key: HMAC chain over "AWS4"+secret, date ("YYYYMMDD"), region,
 * service, "aws4_request". Returns 0 or -EINVAL. */
int sto_sigv4_derive_key(const char *secret, const char *date8, const char *region,
                         const char *service, unsigned char key[32]);

/* Lowercase hex SHA-256 of data[0..len) into out (65 bytes with the NUL). Returns 0 or -EINVAL. */
int sto_sha256_hex(const void *data, size_t len, char out[STO_SHA256_HEX_LEN + 1]);

/* RFC 3986 percent-encoding as SigV4 wants it: A-Z a-z 0-9 - . _ ~ are kept, every other byte
 * becomes %XY (uppercase hex); '/' is kept unless encode_slash. Writes a NUL-terminated string.
 * Returns its length, -ENOSPC when cap is too small, -EINVAL for NULL arguments. */
int sto_uri_encode(const char *in, char *out, size_t cap, bool encode_slash);

#endif
