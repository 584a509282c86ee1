/* sto/gcsauth.h — Google Cloud Storage addressing and credentials: the endpoint, object-name
 * encoding, service-account keys, OAuth2 JWT-bearer assertions (RFC 7523, signed RS256) and the
 * process-wide access-token cache. No network I/O here: the gs:// backend (gcs.c) sends the
 * token requests over its HTTP client.
 *
 * Endpoint, first match wins:
 *   1. the config's `endpoint:` / util --endpoint (sto_opts_t.endpoint), "http[s]://host[:port]"
 *   2. STORAGE_EMULATOR_HOST: "host:port" (plain HTTP) or "http[s]://host[:port]"
 *   3. https://storage.googleapis.com
 * Credentials: GOOGLE_APPLICATION_CREDENTIALS names a service-account key file (the JSON that
 * `gcloud iam service-accounts keys create` writes: client_email, private_key (PEM, RSA),
 * token_uri; project_id and private_key_id optional). Without it requests are anonymous (public
 * buckets, emulators). Other credential kinds (gcloud user credentials, metadata server) are not
 * supported. Project for bucket creation: GOOGLE_CLOUD_PROJECT, else GCLOUD_PROJECT, else the
 * key file's project_id.
 *
 * Tokens: a JWT {iss: client_email, scope, aud: token_uri, iat: now, exp: now + 3600} signed
 * with the key (RSASSA-PKCS1-v1_5 over SHA-256) is exchanged at token_uri (POST
 * grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT) for an access token
 * sent as "Authorization: Bearer <token>". Tokens are shared by every store of the process that
 * uses the same key, token_uri and scope, through one cache entry (sto_gcs_tokcache_*, locked:
 * stores on different cores use it at once). The backend's policy, built on these calls:
 *   - at store open, with no usable token in the cache, the opening thread fetches one
 *     blocking, on a private loop, for at most the connect + I/O timeouts (other threads
 *     opening at the same time wait for that fetch instead of sending their own); a refused
 *     assertion fails the open with the token endpoint's message;
 *   - a token is refreshed ahead of its expiry: from expires_in - min(5 min, expires_in / 2)
 *     on, the first request of any store that claims the refresh starts an asynchronous fetch
 *     on its own loop, and every store keeps sending the old, still valid token meanwhile;
 *   - a store that finds no valid token at all (a refresh failed or came too late) queues its
 *     requests behind a fetch of its own and fails them with the token endpoint's error if
 *     that fetch fails; after a failure the cache refuses new claims for 1 s.
 *
 * Threads: everything here is reentrant; the token cache is thread-safe. A sto_gcs_sa_t (its
 * key) belongs to one thread at a time.
 */
#ifndef STO_GCSAUTH_H
#define STO_GCSAUTH_H

#include <stddef.h>
#include <stdint.h>

#include "sto/gcsjson.h"

#define STO_GCS_SCOPE_READ_WRITE "https://www.googleapis.com/auth/devstorage.read_write"
#define STO_GCS_SCOPE_FULL_CONTROL "https://www.googleapis.com/auth/devstorage.full_control"
#define STO_GCS_DEFAULT_ENDPOINT "https://storage.googleapis.com"
#define STO_GCS_JWT_GRANT "urn:ietf:params:oauth:grant-type:jwt-bearer"
#define STO_GCS_JWT_LIFETIME 3600
#define STO_GCS_JWT_MAX 8192 /* a signed assertion with a 4096-bit key is about 1 KiB */

/* ---- URLs and the endpoint ---- */

typedef struct sto_gcs_url {
    int tls;        /* https */
    char host[256]; /* name or address; IPv6 without brackets */
    int port;
    char path[1024]; /* "/token"; "/" when the URL has none (query kept as written) */
} sto_gcs_url_t;

/* Parses "http[s]://host[:port][/path]". With allow_bare, "host[:port]" is plain HTTP (the
 * STORAGE_EMULATOR_HOST form); with !allow_path only "/" may follow the authority. Returns 0 or
 * -EINVAL with a reason in err. */
int sto_gcs_url_parse(const char *url, int allow_bare, int allow_path, sto_gcs_url_t *out,
                      char *err, size_t errlen);

typedef struct sto_gcs_endpoint {
    sto_gcs_url_t url;
    char source[32]; /* "config", "STORAGE_EMULATOR_HOST", "google" */
} sto_gcs_endpoint_t;

/* Resolves the endpoint as above; config_endpoint may be NULL. Returns 0 or -EINVAL. */
int sto_gcs_endpoint_resolve(const char *config_endpoint, sto_gcs_endpoint_t *out, char *err,
                             size_t errlen);

/* The Host header for u: "host" or "host:port" when the port is not the scheme's default; IPv6
 * in brackets. */
void sto_gcs_host_header(const sto_gcs_url_t *u, char *out, size_t len);

/* Percent-encodes an object name (or a query value) for a JSON API URL: A-Z a-z 0-9 - . _ ~
 * are kept, every other byte (also '/', as %2F) becomes %XY. Writes a NUL-terminated string.
 * Returns its length, or -ENOSPC when cap is too small (-EINVAL for NULL arguments). */
int sto_gcs_encode(const char *in, char *out, size_t cap);

/* ---- service accounts and JWTs ---- */

typedef struct sto_gcs_sa {
    char client_email[256];
    char private_key_id[128]; /* "" when absent; sent as the JWT header's kid */
    char project_id[128];     /* "" when absent */
    char token_uri[512];
    sto_gcs_url_t token_url;
    char source[1024];          /* the file, for messages */
    unsigned char key_hash[32]; /* SHA-256 of the PEM text: tells keys apart in the cache */
    void *pk;                   /* mbedtls_pk_context (RSA), owned */
} sto_gcs_sa_t;

/* Parses a service-account key document. source names it in messages (e.g. the path). Errors:
 * -EINVAL (not JSON, "type" is not "service_account", a required field missing or empty, a
 * token_uri that is not an http(s) URL, a private key that is not an RSA PEM key) with a reason
 * in err naming the file and the field; -ENOMEM. On success free it with sto_gcs_sa_free. */
int sto_gcs_sa_parse(const char *json, size_t len, const char *source, sto_gcs_sa_t *out, char *err,
                     size_t errlen);
/* Reads the file (at most 1 MiB) and parses it. -ENOENT/-EACCES/... when it cannot be read. */
int sto_gcs_sa_load(const char *path, sto_gcs_sa_t *out, char *err, size_t errlen);
void sto_gcs_sa_free(sto_gcs_sa_t *sa);

/* base64url (RFC 4648 section 5) without padding. Returns the length written (NUL-terminated)
 * or -ENOSPC. */
int sto_b64url_encode(const void *in, size_t n, char *out, size_t cap);

/* The signing input "b64url(header).b64url(claims)" of the assertion: header
 * {"alg":"RS256","typ":"JWT"[,"kid":private_key_id]}, claims {"iss","scope","aud","iat","exp"}
 * in that order, compact JSON. kid may be NULL or "". Returns the length or -ENOSPC/-ENOMEM. */
int sto_gcs_jwt_input(const char *client_email, const char *kid, const char *scope, const char *aud,
                      int64_t iat, char *out, size_t cap);

/* The signed assertion for sa at time iat (UTC seconds): signing input + "." + b64url(RS256
 * signature). Returns the length, or -ENOSPC, -ENOMEM, -EINVAL (signing failed; err says why). */
int sto_gcs_jwt_sign(const sto_gcs_sa_t *sa, const char *scope, int64_t iat, char *out, size_t cap,
                     char *err, size_t errlen);

/* The form body of the token request for jwt. Returns the length or -ENOSPC. */
int sto_gcs_token_form(const char *jwt, char *out, size_t cap);

/* ---- credentials ---- */

typedef struct sto_gcs_creds {
    int anonymous;
    sto_gcs_sa_t sa; /* valid when !anonymous */
    char scope[96];
    char project[128]; /* for bucket creation; "" when unknown */
    char source[1200]; /* "service account x@y (GOOGLE_APPLICATION_CREDENTIALS=/k.json)" or
                          "none (anonymous requests)" */
} sto_gcs_creds_t;

/* Loads credentials from the environment as described above. Returns 0 or the error of
 * sto_gcs_sa_load with a reason in err. Free with sto_gcs_creds_free (also after a failure). */
int sto_gcs_creds_load(sto_gcs_creds_t *c, char *err, size_t errlen);
void sto_gcs_creds_free(sto_gcs_creds_t *c);

/* ---- the process-wide token cache ---- */

typedef struct sto_gcs_tokcache sto_gcs_tokcache_t;

/* A caller's copy of the cached token. Zero it before the first peek. */
typedef struct sto_gcs_tok {
    char value[STO_GCSJSON_TOKEN_MAX + 1];
    uint64_t gen;        /* generation of the copy; 0: none yet */
    uint64_t refresh_ns; /* rx_now_ns() from which a refresh is due */
    uint64_t expires_ns; /* the token is not sent from then on */
} sto_gcs_tok_t;

enum sto_gcs_tok_state {
    STO_GCS_TOK_NONE = 0,    /* no usable token */
    STO_GCS_TOK_FRESH = 1,   /* usable, no refresh due */
    STO_GCS_TOK_REFRESH = 2, /* usable, a refresh is due */
};

/* The entry for sa's key, token_uri and scope; created on first use and kept for the life of
 * the process. NULL on -ENOMEM. */
sto_gcs_tokcache_t *sto_gcs_tokcache_get(const sto_gcs_sa_t *sa, const char *scope);
/* Refreshes *io when the cache holds another generation, and tells its state at now_ns. */
int sto_gcs_tokcache_peek(sto_gcs_tokcache_t *c, uint64_t now_ns, sto_gcs_tok_t *io);
/* Claims the next fetch: 1 when the caller now owns it (it must end it with put or fail), 0
 * when another fetch is in flight (claims older than 2 minutes are taken over) or the last one
 * failed less than 1 s ago. */
int sto_gcs_tokcache_claim(sto_gcs_tokcache_t *c, uint64_t now_ns);
/* Publishes a token valid for expires_in seconds from now_ns (kept only if it outlives the one
 * cached), releases the claim when claimed, and wakes sto_gcs_tokcache_wait. */
void sto_gcs_tokcache_put(sto_gcs_tokcache_t *c, const char *token, uint64_t expires_in,
                          uint64_t now_ns, int claimed);
/* Records a failed fetch (why: for sto_gcs_tokcache_last_error), releases the claim when
 * claimed, and wakes the waiters. */
void sto_gcs_tokcache_fail(sto_gcs_tokcache_t *c, const char *why, uint64_t now_ns, int claimed);
/* Releases a claim without recording anything (the fetch was cancelled). */
void sto_gcs_tokcache_unclaim(sto_gcs_tokcache_t *c);
/* Blocks until no fetch is claimed or timeout_ms passed. Returns 0, or -ETIMEDOUT. */
int sto_gcs_tokcache_wait(sto_gcs_tokcache_t *c, int timeout_ms);
/* The reason of the last failed fetch ("" when the last fetch succeeded). */
void sto_gcs_tokcache_last_error(sto_gcs_tokcache_t *c, char *out, size_t len);
/* When a token fetched now with the given lifetime is due for refresh: now + expires_in -
 * min(300 s, expires_in / 2), in nanoseconds. */
uint64_t sto_gcs_refresh_at(uint64_t now_ns, uint64_t expires_in);

#endif
