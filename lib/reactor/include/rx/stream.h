/* rx/stream.h — TCP and TLS client streams over libuv, and TCP or TLS listeners whose accepted
 * connections are the same streams.
 *
 * One stream is one connection (made by rx_stream_connect, or accepted by an rx_listener_t). It is
 * created on, and owned by, one loop thread: every function here, every callback and
 * rx_stream_close() run on that loop's thread. Nothing in this header is thread-safe; a stream (or
 * a TLS context) must never be touched from another thread.
 *
 * Lifecycle:
 *   rx_stream_connect() → resolve (uv_getaddrinfo, IPv4 and IPv6; addresses are tried in the order
 *   the resolver returns them until one connects) → uv_tcp_connect → TLS handshake (when enabled)
 *   → on_connect(s, 0). The connect timeout covers all three steps. On failure on_connect(s, code)
 *   runs once and the stream can only be closed. Whatever happens, the caller owns the stream
 *   from rx_stream_connect() on and must eventually call rx_stream_close() (idempotent); its
 *   memory is freed after on_closed returned. If the stream is closed before on_connect ran,
 *   on_connect is not called.
 *
 * Callbacks never run from inside the call that registered them (rx_stream_connect,
 * rx_stream_write, rx_stream_read_start); they run later from the loop. Every callback may call
 * rx_stream_close() on its stream.
 *
 * Errors: negative codes. libuv codes pass through (UV_ECONNREFUSED, UV_EAI_NONAME,
 * UV_EOF, ...), and the rx codes of rx/err.h: RX_ETIMEDOUT (connect deadline), RX_ECANCELED
 * (pending write at close), RX_ESTATE (operation on a closed or not yet connected stream),
 * RX_ETLS (handshake or record-layer failure, including a fatal alert from the peer),
 * RX_ETLSVERIFY (certificate verification failed, or the certificate pin did not match),
 * RX_ETLSCA (the CA bundle could not be loaded). rx_stream_error_detail() gives the text behind the
 * last failure (the address that refused, mbedtls' error text, the peer's alert name, mbedtls'
 * verify-info lines, or the expected and received fingerprints).
 *
 * Writes to a peer that closed raise SIGPIPE: applications must ignore SIGPIPE.
 */
#ifndef RX_STREAM_H
#define RX_STREAM_H

#include <stddef.h>
#include <sys/uio.h>
#include <uv.h>

typedef struct rx_stream rx_stream_t;
typedef struct rx_tls_ctx rx_tls_ctx_t;

/* ---- TLS context: parsed CA chain (and optionally our own certificate) plus a DRBG, shared by
 * the TLS streams of one loop. Client contexts come from rx_tls_ctx_create, server contexts
 * (for rx_listen only) from rx_tls_server_ctx_create; each kind is RX_EINVAL where the other is
 * expected. ---- */

/* Default CA bundle when neither a path nor AWS_CA_BUNDLE is given. */
#define RX_TLS_DEFAULT_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

enum rx_tls_ctx_flags {
    /* Do not load any CA: the context can only serve streams with tls_insecure_skip_verify
     * (verifying streams fail to connect with RX_ETLSCA). */
    RX_TLS_CTX_NO_CA = 1u << 0,
};

/* Loop thread. Loads the CA bundle ca_file (PEM or DER file; NULL or "" = the environment variable
 * AWS_CA_BUNDLE if set and non-empty, else RX_TLS_DEFAULT_CA_FILE) and seeds an mbedtls CTR-DRBG.
 * Parsing the system bundle takes milliseconds: create one context per loop at start and pass it
 * to every stream through rx_stream_opts_t.tls_ctx. The context belongs to the loop thread that
 * created it. Entries of the bundle that mbedtls cannot parse are skipped; at least one must parse.
 * Returns 0, RX_EINVAL, RX_ENOMEM, RX_ETLSCA (file missing or no certificate in it) or RX_ETLS
 * (DRBG seeding failed). */
int rx_tls_ctx_create(const char *ca_file, unsigned flags, rx_tls_ctx_t **out);
/* Loop thread. Drops the creator's reference; the context is freed when the last stream using it
 * has been freed too, so it may be called while streams are still open. NULL is ignored. */
void rx_tls_ctx_destroy(rx_tls_ctx_t *ctx);
/* The CA file the context loaded ("" with RX_TLS_CTX_NO_CA; for a server context the client CA
 * file, "" without one). Valid while the context lives. */
const char *rx_tls_ctx_ca_file(const rx_tls_ctx_t *ctx);

/* Loop thread. Client contexts: the certificate chain and private key (PEM or DER files; the key
 * unencrypted) this client presents when a server asks (mutual TLS). Applies to streams connected
 * afterwards. Once per context. err (may be NULL) gets "" or the reason. Returns 0, RX_ETLSCA
 * (cannot read/parse; err says which file and why), RX_EINVAL (key does not match the
 * certificate, a server context, NULL/empty argument, or the context already has a
 * certificate), RX_ENOMEM. */
int rx_tls_ctx_use_cert(rx_tls_ctx_t *ctx, const char *cert_file, const char *key_file, char *err,
                        size_t errlen);

/* Loop thread. A server context for rx_listen (opts.tls = 1, opts.tls_ctx = it): certificate chain
 * and private key from PEM (or DER) files, the key unencrypted and matching the certificate;
 * ALPN protocols the server accepts, in its order of preference, NULL-terminated, each 1..255
 * bytes (NULL or empty = no ALPN; with a list, a client that offers none of them, or no ALPN at
 * all, fails the handshake with the alert no_application_protocol); client_ca_file non-NULL and
 * non-empty: clients must present a certificate that verifies against it (mutual TLS; the
 * client certificate's chain and dates are checked, not its names), else no client certificate is
 * requested. TLS 1.2, mbedtls' default suites (ECDHE-ECDSA/RSA with AES-GCM, ChaCha20, ...); no
 * session resumption. Same lifetime rules as client contexts: a listener holds its own reference.
 * err (may be NULL) gets "" or the reason. Returns 0, RX_ETLSCA (a file missing or unparsable; err
 * names it), RX_EINVAL (NULL/empty argument, bad ALPN name, key does not match the certificate),
 * RX_ENOMEM, RX_ETLS (DRBG, mbedtls setup). */
int rx_tls_server_ctx_create(const char *cert_file, const char *key_file, const char *const *alpn,
                             const char *client_ca_file, rx_tls_ctx_t **out, char *err,
                             size_t errlen);

/* SHA-256 of the peer's leaf certificate (DER) of a handshaken TLS stream: the server's for client
 * streams, the client's for accepted streams of a mutual-TLS listener. Still readable after
 * rx_stream_close until on_closed returned. Returns 0, or RX_ESTATE (NULL, not TLS, not
 * handshaken, or the peer sent no certificate). */
int rx_stream_peer_cert_sha256(const rx_stream_t *s, uint8_t out[32]);

/* ---- certificates (any thread; blocking file I/O) ---- */

/* Makes a self-signed certificate with a new ECDSA P-256 key (SHA-256 signature): subject and
 * issuer CN=cn (1..64 bytes, no backslash or control characters), SAN DNS entries dns_names
 * (NULL-terminated, each 1..253 bytes; may be NULL: no SAN), serial 16 random bytes, valid from
 * now - 1 day for `days` days (1..36500), basicConstraints CA:TRUE, keyUsage digitalSignature +
 * keyCertSign (so the file also serves as its own trust anchor), subject/authority key ids.
 * Writes the key (SEC1 PEM, mode 0600) and the certificate (PEM, mode 0644), each through a
 * temporary file "<file>.tmp.XXXXXX" in the same directory, fsync and rename(2), key first;
 * existing files are replaced. err (may be NULL) gets "" or the reason. Returns 0, RX_EINVAL,
 * RX_ENOMEM, RX_ETLS (mbedtls failure; err says which step) or -errno (e.g. -ENOENT for a missing
 * directory; err names the file). */
int rx_tls_cert_generate(const char *cert_file, const char *key_file, const char *cn,
                         const char *const *dns_names, unsigned days, char *err, size_t errlen);

/* SHA-256 of the first certificate of a PEM or DER file (DER form). err (may be NULL) gets "" or
 * the reason. Returns 0, RX_EINVAL (NULL argument), RX_ENOMEM, RX_ETLSCA (cannot read or parse;
 * err names the file and says why). */
int rx_tls_cert_file_sha256(const char *cert_file, uint8_t out[32], char *err, size_t errlen);

/* Formats a fingerprint as 32 uppercase hex pairs separated by ':' (95 chars + NUL). */
void rx_tls_fingerprint_format(const uint8_t fp[32], char out[96]);
/* Parses a fingerprint: optional "sha256:" or "SHA256:" prefix, then 64 hex digits, either case,
 * optionally separated by ':' between pairs (all separators or none). Returns 0 or RX_EINVAL. */
int rx_tls_fingerprint_parse(const char *s, uint8_t out[32]);

/* ---- streams ---- */

typedef struct rx_stream_opts {
    /* Deadline for resolve + TCP connect + TLS handshake, in ms. Default 5000. 0 means "already
     * expired": the connect fails with RX_ETIMEDOUT on the next loop iteration (used by tests to
     * reach the timeout path without waiting). Negative: no deadline. */
    int connect_timeout_ms;
    int nodelay;     /* TCP_NODELAY; default 1 */
    int keepalive_s; /* TCP keepalive idle seconds; default 30; 0 = off */

    /* TLS (mbedtls 2.28, TLS 1.2 only). */
    int tls; /* default 0 */
    /* Name sent as SNI and checked against the certificate (SAN DNS entries, else CN).
     * NULL = the host passed to rx_stream_connect. mbedtls 2.28 cannot match IP-address SANs: when
     * connecting to an IP literal (say 127.0.0.1) pass the certificate's DNS name here (say
     * "localhost"), or verification fails with RX_ETLSVERIFY. Copied at connect. */
    const char *server_name;
    /* ALPN protocols to offer, most preferred first, terminated by NULL (e.g.
     * {"h2", "http/1.1", NULL}). NULL = no ALPN extension. Copied at connect. */
    const char *const *alpn;
    /* Shared context (recommended). NULL: the stream creates a private one from ca_file, which
     * parses the bundle again for every connection. */
    rx_tls_ctx_t *tls_ctx;
    /* Only when tls_ctx is NULL: CA bundle path (NULL = AWS_CA_BUNDLE, else the system bundle). */
    const char *ca_file;
    /* TEST RIGS ONLY: accept any certificate, any name. Never set this in production paths. */
    int tls_insecure_skip_verify;
    /* Client streams: SHA-256 of the server's leaf certificate (DER), 32 bytes, copied at connect.
     * When set, the certificate must match it exactly; the CA chain, validity dates and name are
     * then not checked (a pinned self-signed certificate, as sai3bench-agent makes), no CA bundle
     * is needed (a private context is made without one; a shared one may be RX_TLS_CTX_NO_CA),
     * and tls_insecure_skip_verify is ignored. The handshake stops at the server's certificate on
     * a mismatch: RX_ETLSVERIFY, detail "certificate pin mismatch: expected SHA256:<fp>, got
     * SHA256:<fp>" (rx_tls_fingerprint_format). server_name is still sent as SNI unless it is an
     * IP literal. NULL = normal CA verification. */
    const uint8_t *tls_pin_sha256;
} rx_stream_opts_t;

/* Fills the defaults above. Always initialise options with it before setting fields. */
void rx_stream_opts_init(rx_stream_opts_t *o);

/* status: 0 connected (and handshaken), or a negative code (see the top of this file). */
typedef void (*rx_stream_connect_cb)(rx_stream_t *s, int status);
/* A slice of plaintext, valid only during the call (zero-copy: the read buffer for TCP, the
 * decrypted buffer for TLS). */
typedef void (*rx_stream_data_cb)(rx_stream_t *s, const char *data, size_t len);
/* Reading ended: UV_EOF for an orderly end (TCP FIN, or TLS close_notify; a TLS peer that just
 * closes the TCP connection also gives UV_EOF), else a negative error. Reading is stopped. */
typedef void (*rx_stream_end_cb)(rx_stream_t *s, int status);
/* status: 0 all bytes handed to the kernel, RX_ECANCELED when the stream was closed first, or a
 * negative libuv code. */
typedef void (*rx_stream_write_cb)(rx_stream_t *s, int status, void *ud);
/* Runs once after every handle is closed; the stream's memory is freed when it returns. */
typedef void (*rx_stream_close_cb)(rx_stream_t *s);

/* Loop thread. host: DNS name or IP literal ("::1" or "[::1]"); port 1..65535. opts may be NULL
 * (defaults). On success *out is the new stream, and on_connect will run (unless it is closed
 * first). Returns 0, RX_EINVAL (also: a server context in opts->tls_ctx), RX_ENOMEM,
 * RX_ETLSCA/RX_ETLS (private TLS context could not be created; RX_ETLSCA also for a context
 * without CA when neither a pin nor tls_insecure_skip_verify is set), or a libuv code; on failure
 * *out is NULL and nothing will be called. */
int rx_stream_connect(uv_loop_t *loop, const char *host, int port, const rx_stream_opts_t *opts,
                      rx_stream_connect_cb on_connect, void *ud, rx_stream_t **out);

/* User pointer given to rx_stream_connect (and changed by rx_stream_set_ud). */
void *rx_stream_ud(const rx_stream_t *s);
void rx_stream_set_ud(rx_stream_t *s, void *ud);
uv_loop_t *rx_stream_loop(const rx_stream_t *s);

/* Starts delivering data. Only after a successful connect. Returns 0, RX_EINVAL or RX_ESTATE
 * (not connected, closed, or reading already ended). Calling it while reading is a no-op that
 * updates the callbacks. */
int rx_stream_read_start(rx_stream_t *s, rx_stream_data_cb on_data, rx_stream_end_cb on_end);
/* Stops delivering data (no callback runs until read_start again). Returns 0 or RX_ESTATE. */
int rx_stream_read_stop(rx_stream_t *s);

/* Queues iov[0..n) to be sent in order after earlier writes. Only after a successful connect.
 * Plain TCP sends the caller's buffers directly: they must stay valid and unchanged until
 * on_written. TLS encrypts them during the call (the buffers may be reused when it returns);
 * on_written still runs after the ciphertext went to the kernel. on_written may be NULL.
 * Returns 0 (on_written will run exactly once), RX_EINVAL, RX_ESTATE (not connected or closed),
 * RX_ENOMEM, RX_ETLS, or a libuv code (then on_written will not run). */
int rx_stream_write(rx_stream_t *s, const struct iovec *iov, int n, rx_stream_write_cb on_written,
                    void *ud);

/* Closes the stream: stops reading, sends TLS close_notify best-effort, cancels pending writes
 * (their callbacks get RX_ECANCELED) and closes the socket. on_closed (may be NULL) runs from the
 * loop once everything is closed; then the memory is freed. Idempotent: later calls do nothing
 * (the first on_closed stays). NULL is ignored. */
void rx_stream_close(rx_stream_t *s, rx_stream_close_cb on_closed);

/* 1 once on_connect(s, 0) ran and until rx_stream_close. */
int rx_stream_is_open(const rx_stream_t *s);
int rx_stream_is_tls(const rx_stream_t *s);
/* Negotiated ALPN protocol ("h2"), or NULL (no TLS, none offered, or the server chose none).
 * Valid until the stream is freed. */
const char *rx_stream_alpn(const rx_stream_t *s);
/* Remote end as "ip:port" ("[ip]:port" for IPv6; an IPv4 client of a dual-stack "::" listener
 * shows as "[::ffff:a.b.c.d]:port"), for client streams once the TCP connect succeeded and for
 * accepted streams; "" before that or if the address could not be read. Valid until the stream is
 * freed (it stays readable after rx_stream_close, until on_closed returned). */
const char *rx_stream_peer(const rx_stream_t *s);
/* Text behind the last failure ("" if none): e.g. "connect 127.0.0.1:443: connection refused",
 * mbedtls' error string, or mbedtls_x509_crt_verify_info() lines for RX_ETLSVERIFY. Valid until
 * the next operation on the stream. */
const char *rx_stream_error_detail(const rx_stream_t *s);

/* ---- listeners (server side) ----
 *
 * TLS: opts->tls = 1 with opts->tls_ctx = a server context (rx_tls_server_ctx_create; a client
 * context or NULL is RX_EINVAL). The listener takes its own reference on the context, so the
 * creator may rx_tls_ctx_destroy() it right after rx_listen. Each accepted connection then does
 * the TLS handshake first (deadline opts->connect_timeout_ms, default 5 s; negative = none);
 * on_accept runs only for connections whose handshake succeeded (rx_stream_is_tls() 1,
 * rx_stream_alpn() the selected protocol or NULL, rx_stream_peer_cert_sha256() the client's
 * certificate with mutual TLS). A failed handshake gives on_accept(l, NULL, status, ud) with
 * status RX_ETLS (bad data, the client's fatal alert, no common ALPN, the client closed),
 * RX_ETLSVERIFY (client certificate missing or not verified), RX_ETIMEDOUT, RX_ENOMEM or a libuv
 * read error (UV_ECONNRESET), and "peer: reason" in rx_listener_error_detail(); the connection is
 * closed (after a fatal alert where there is one) and the listener keeps listening. Connections
 * still in their handshake belong to the listener: rx_listener_close closes them, and they never
 * reach on_accept.
 *
 * A listener belongs to the loop thread that created it, like a stream. Each accepted connection
 * becomes an rx_stream_t that behaves exactly like a connected plain client stream:
 * rx_stream_read_start/read_stop/write/close/ud/peer/error_detail work the same, pending writes get
 * RX_ECANCELED at close, an orderly peer close gives on_end(UV_EOF), close is idempotent and the
 * memory is freed after on_closed. It has no on_connect (it is open from the start) and its user
 * pointer starts as NULL (set it with rx_stream_set_ud). For plain listeners rx_stream_is_tls() is
 * 0 and rx_stream_alpn() NULL; TLS streams send close_notify at close like client ones. */
typedef struct rx_listener rx_listener_t;

/* on_accept(l, s, 0, ud): s is a connected, open stream (rx_stream_is_open(s) == 1) owned by the
 * callee from now on, who must eventually rx_stream_close() it (it may do so right away).
 * status < 0: an accept failed (s is NULL; e.g. UV_EMFILE, RX_ENOMEM); the listener keeps
 * listening. ud is the pointer given to rx_listen. May call rx_listener_close(l). */
typedef void (*rx_accept_cb)(rx_listener_t *l, rx_stream_t *s, int status, void *ud);

/* Loop thread. Binds and listens, one socket: host is an IP literal or a name ("0.0.0.0",
 * "127.0.0.1", "::", "::1", "[::1]", "localhost"), resolved synchronously with getaddrinfo
 * (AI_PASSIVE | AI_NUMERICSERV); the addresses are tried in the resolver's order and the first that
 * binds and listens is used. port 0..65535 (0 = an ephemeral port, see rx_listener_port).
 * backlog: 0 = 511; negative is RX_EINVAL. SO_REUSEADDR is set (libuv does). opts may be NULL
 * (defaults); nodelay (TCP_NODELAY), keepalive_s, and tls/tls_ctx/connect_timeout_ms (see above)
 * apply to every accepted stream (the client-only fields are ignored). err/errlen (err may be NULL)
 * receive the text behind a failure, e.g. "listen 127.0.0.1:7761: address already in use". Returns
 * 0 and *out, or RX_EINVAL, RX_ENOMEM, UV_EADDRINUSE, UV_EACCES, UV_EADDRNOTAVAIL, UV_EAI_*
 * (resolution) or another libuv code; on failure *out is NULL and no callback will run (a handle
 * that was opened may still need one loop iteration to finish closing). */
int rx_listen(uv_loop_t *loop, const char *host, int port, const rx_stream_opts_t *opts,
              int backlog, rx_accept_cb on_accept, void *ud, rx_listener_t **out, char *err,
              size_t errlen);
/* Text behind the last failed accept or handshake, e.g. "127.0.0.1:4711: TLS handshake: the peer
 * sent the fatal alert unknown_ca (48)" ("" if none; NULL gives ""). Read it in on_accept: valid
 * until the next callback of the listener. */
const char *rx_listener_error_detail(const rx_listener_t *l);
/* The bound port (the chosen one when rx_listen got port 0). */
int rx_listener_port(const rx_listener_t *l);
/* Loop thread. Stops accepting and closes the listening socket; on_closed (may be NULL) runs from
 * the loop after the handle closed, then the memory is freed. Streams already accepted are not
 * touched (they stay open and owned by whoever accepted them). Idempotent: later calls do nothing
 * (the first on_closed stays). NULL is ignored. No on_accept runs after this call. */
void rx_listener_close(rx_listener_t *l, void (*on_closed)(rx_listener_t *l, void *ud));

#endif
