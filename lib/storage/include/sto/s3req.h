/* sto/s3req.h — builds signed S3 requests (request line target and headers), sans-I/O.
 *
 * The result is what an HTTP/1.1 or HTTP/2 writer needs: method, the request target (path-style
 * "/bucket/key?query" or virtual-host "/key?query", percent-encoded exactly as it was signed) and
 * the header list (Host, x-amz-date, x-amz-content-sha256, Authorization, x-amz-security-token,
 * the caller's extra headers, Content-Length). All strings live inside the sto_s3_request_t.
 * Anonymous credentials produce an unsigned request.
 *
 * Threads: reentrant; the sigv4 cache passed in belongs to the calling core.
 */
#ifndef STO_S3REQ_H
#define STO_S3REQ_H

#include <stddef.h>
#include <stdint.h>

#include "sto/s3conf.h"
#include "sto/sigv4.h"

#define STO_S3_MAX_HEADERS 16
#define STO_S3_TARGET_MAX 4096
#define STO_S3_ARENA 8192

typedef struct sto_s3_req_in {
    const char *method;            /* "GET", "PUT", "HEAD", "DELETE", "POST" */
    const char *bucket;            /* required */
    const char *key;               /* raw object key (UTF-8, unencoded); NULL or "" for the bucket */
    const sto_sigv4_kv_t *query;   /* raw names/values ("list-type"="2", "delete"="") */
    size_t nquery;
    const sto_sigv4_kv_t *headers; /* extra headers, sent and signed (range, content-md5, ...) */
    size_t nheaders;
    int64_t content_length;        /* >= 0: send Content-Length; < 0: no body, no header */
    const char *payload_hash;      /* hex SHA-256 of the body; NULL: the empty-body hash when
                                      there is no body, else UNSIGNED-PAYLOAD */
    int64_t time;                  /* UTC seconds */
} sto_s3_req_in_t;

typedef struct sto_s3_request {
    const char *method;
    char target[STO_S3_TARGET_MAX];
    sto_sigv4_kv_t headers[STO_S3_MAX_HEADERS];
    size_t nheaders;
    char signature[STO_SHA256_HEX_LEN + 1]; /* "" when anonymous */
    char string_to_sign[STO_SIGV4_STS_MAX]; /* for 403 diagnostics */
    char arena[STO_S3_ARENA];               /* storage for header values */
    size_t used;
} sto_s3_request_t;

/* Returns 0, -EINVAL (bad input, reason in err) or -ENOSPC (a key or header too long). */
int sto_s3_request_build(const sto_s3_endpoint_t *e, const sto_s3_creds_t *c,
                         sto_sigv4_cache_t *cache, const sto_s3_req_in_t *in,
                         sto_s3_request_t *out, char *err, size_t errlen);

#endif
