/* sto/s3conf.h — S3 addressing and credentials, resolved from the URI, the config and the
 * environment. No I/O except reading the shared credentials file. Thread-safe (reads the
 * environment; call before starting threads that setenv).
 *
 * Endpoint, first match wins:
 *   1. inside the URI: s3://host:port/bucket/prefix (http, unless the port is 443)
 *   2. the config's `endpoint:` (top level or per ensure_objects), e.g. http://127.0.0.1:9000
 *   3. AWS_ENDPOINT_URL
 *   4. AWS: https://s3.<region>.amazonaws.com
 * Region: AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1.
 * Addressing: path-style (https://host/bucket/key) by default; virtual-host style
 * (https://bucket.host/key) when asked.
 * Credentials: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN); else the profile
 * AWS_PROFILE (default "default") of AWS_SHARED_CREDENTIALS_FILE (default ~/.aws/credentials);
 * else anonymous (unsigned requests).
 */
#ifndef STO_S3CONF_H
#define STO_S3CONF_H

#include <stddef.h>

#include "sto/uri.h"

typedef struct sto_s3_endpoint {
    int tls;             /* https */
    char host[256];      /* host name or address, IPv6 without brackets */
    int port;
    char region[64];
    int virtual_host;    /* bucket in the host name */
    char source[32];     /* "uri", "config", "AWS_ENDPOINT_URL", "aws" */
} sto_s3_endpoint_t;

typedef struct sto_s3_creds {
    int anonymous;
    char access_key[128];
    char secret_key[128];
    char session_token[4096];
    char source[160];    /* "environment", "profile default in /root/.aws/credentials", "none" */
} sto_s3_creds_t;

/* Parses an endpoint URL "http[s]://host[:port]" (a trailing '/' is allowed; a path is not).
 * Returns 0 or STO_EURI with a reason in err. */
int sto_s3_endpoint_parse(const char *url, sto_s3_endpoint_t *out, char *err, size_t errlen);

/* Resolves the endpoint for an s3:// URI. config_endpoint may be NULL. virtual_host selects the
 * addressing style (it is refused for IP-address hosts and for buckets with dots over TLS).
 * Returns 0 or STO_EURI. */
int sto_s3_endpoint_resolve(const sto_uri_t *u, const char *config_endpoint, int virtual_host,
                            sto_s3_endpoint_t *out, char *err, size_t errlen);

/* Loads credentials as described above. Returns 0, or STO_EPERM when the environment is
 * half-set (a key id without a secret) or the named profile is missing or incomplete. */
int sto_s3_creds_load(sto_s3_creds_t *c, char *err, size_t errlen);

/* The Host header value: "host" or "host:port" when the port is not the scheme's default;
 * IPv6 hosts in brackets; with virtual_host, "bucket.host". */
void sto_s3_host_header(const sto_s3_endpoint_t *e, const char *bucket, char *out, size_t len);

#endif
