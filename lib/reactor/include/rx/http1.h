/* rx/http1.h — HTTP/1.1 client codec: a response parser and a request writer.
 *
 * Sans-I/O: the parser takes bytes and raises events through callbacks; the writer fills a
 * caller's buffer and an iovec array. Nothing here touches a socket, a loop or a clock, so the
 * codec is unit-tested and fuzzed on plain buffers. It uses libc only.
 *
 * Threads: a parser belongs to the thread that uses it; nothing here is shared or locked. The
 * writer functions are pure and may be called from any thread. rx_http1_strerror() is
 * thread-safe; rx_http1_err_register() must be called from main at start (see rx/err.h).
 *
 * Errors: negative codes. The codec's own codes come from RX_HTTP1_ERR_LIST below, in the range
 * -10101..-10199 (the reactor's base is -10000); the writer also returns -EINVAL and -ENOSPC, the
 * parser -ENOMEM, and whatever negative value a callback returned to abort.
 */
#ifndef RX_HTTP1_H
#define RX_HTTP1_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* ------------------------------------------------------------------------------------------- */
/* Errors                                                                                        */

#define RX_HTTP1_ERR_BASE (-10100)

/* X(name, value-offset, message); codes are RX_HTTP1_ERR_BASE - offset. */
#define RX_HTTP1_ERR_LIST(X)                                                                       \
    X(RX_HTTP1_ESTATUS, 1, "malformed HTTP status line")                                           \
    X(RX_HTTP1_EVERSION, 2, "malformed or unsupported HTTP version")                               \
    X(RX_HTTP1_EHEADER, 3, "malformed HTTP header line")                                           \
    X(RX_HTTP1_EOBSFOLD, 4, "obsolete line folding in an HTTP header")                             \
    X(RX_HTTP1_EHEADERSIZE, 5, "HTTP header block too large")                                      \
    X(RX_HTTP1_ETOOMANY, 6, "too many HTTP header fields")                                         \
    X(RX_HTTP1_ECONTENTLEN, 7, "invalid Content-Length")                                           \
    X(RX_HTTP1_ETRANSFER, 8, "invalid or conflicting Transfer-Encoding")                           \
    X(RX_HTTP1_ECHUNK, 9, "malformed chunked body")                                                \
    X(RX_HTTP1_EEOF, 10, "connection closed before the HTTP response was complete")                \
    X(RX_HTTP1_EEXTRA, 11, "data after an HTTP response that closes the connection")

enum rx_http1_err {
#define RX_HTTP1_ERR_ENUM(name, off, msg) name = RX_HTTP1_ERR_BASE - (off),
    RX_HTTP1_ERR_LIST(RX_HTTP1_ERR_ENUM)
#undef RX_HTTP1_ERR_ENUM
};

/* Registers the codec's table with rx_err_register() so rx_strerror() names its codes.
 * Idempotent; call from main at start. */
void rx_http1_err_register(void);

/* Message for a code of RX_HTTP1_ERR_LIST; NULL for any other code. Static strings. */
const char *rx_http1_strerror(int code);

/* ------------------------------------------------------------------------------------------- */
/* Response parser                                                                              */

/* Bits a callback may return (all callbacks return int):
 *   0                    go on;
 *   RX_HTTP1_PAUSE       stop after this event: rx_http1_parse() returns 0 with *consumed just
 *                        past the bytes of the event (for on_body: past the slice); feed the
 *                        rest later. Nothing is delivered twice.
 *   RX_HTTP1_NO_BODY     (on_headers_done only) this response has no body whatever its headers
 *                        say: set it for responses to HEAD requests.
 *   a negative value     abort: rx_http1_parse() returns that value and the parser is failed. */
#define RX_HTTP1_PAUSE 0x1
#define RX_HTTP1_NO_BODY 0x2

/* Event callbacks. Any may be NULL. Slices (reason, names, values, body) are borrowed for the call
 * only: they point into the caller's input or into the parser's line buffer. Callbacks must not
 * call rx_http1_parse(), rx_http1_eof(), rx_http1_reset() or rx_http1_parser_fini() on their own
 * parser; the accessors below are fine.
 *
 * Order per response: on_status, on_header*, on_headers_done, on_body*, on_trailer*,
 * on_message_done. An interim 1xx response (other than 101) gives on_status, on_header* and
 * on_headers_done only (never a body, never on_message_done; its RX_HTTP1_NO_BODY bit is
 * ignored); the final response of the same request follows. 101 Switching Protocols is a final
 * response without body after which the connection does not carry HTTP/1.1 (keep-alive false). */
typedef struct rx_http1_callbacks {
    /* code is 100..999; the reason phrase may be empty. */
    int (*on_status)(void *user, int code, const char *reason, size_t reason_len);
    /* name as received (compare case-insensitively); value without leading/trailing SP/HT. */
    int (*on_header)(void *user, const char *name, size_t name_len, const char *value,
                     size_t value_len);
    /* End of the header block. rx_http1_status(), rx_http1_content_length(), rx_http1_chunked()
     * and (for final responses) rx_http1_keep_alive() are valid from here on. May return
     * RX_HTTP1_NO_BODY. */
    int (*on_headers_done)(void *user);
    /* Body bytes after chunked framing is removed, as zero-copy slices of the input. Any split. */
    int (*on_body)(void *user, const uint8_t *data, size_t len);
    /* Trailer fields of a chunked body. NULL: trailers are checked against the limits and
     * syntax, then skipped. Content-Length or Connection in trailers have no effect. */
    int (*on_trailer)(void *user, const char *name, size_t name_len, const char *value,
                      size_t value_len);
    /* The final response is complete; rx_http1_keep_alive() tells whether the connection may
     * carry the next one. */
    int (*on_message_done)(void *user);
} rx_http1_callbacks_t;

/* Zero fields take the defaults. */
typedef struct rx_http1_limits {
    /* Bytes of the status line plus all header lines plus the empty line, CRLFs included
     * (default 64 KiB, at least 64). Trailer sections have the same limit, counted separately.
     * Also caps one chunk-size line with its extensions. */
    size_t max_header_bytes;
    /* Header fields per response (default 100); trailer fields counted separately. */
    size_t max_headers;
} rx_http1_limits_t;

#define RX_HTTP1_DEFAULT_MAX_HEADER_BYTES (64u * 1024u)
#define RX_HTTP1_DEFAULT_MAX_HEADERS 100u

/* Caller-allocated; the fields are private (use the functions). */
typedef struct rx_http1_parser {
    const rx_http1_callbacks_t *cb;
    void *user;
    size_t max_header_bytes;
    size_t max_headers;

    int state;
    int error;              /* sticky once failed */
    unsigned flags;         /* per message: connection tokens, framing headers seen */
    int status;             /* of the current response */
    int minor;              /* HTTP/1.<minor> */
    int keep_alive;         /* decided at the end of a final response's header block */
    int expect_final;       /* a 1xx has been seen: the final response is still owed */
    int64_t content_length; /* -1 when absent */
    uint64_t remaining;     /* body bytes left of a Content-Length body or of the current chunk */
    size_t block_bytes;     /* header (or trailer, or chunk-size line) bytes so far */
    size_t nfields;         /* header (or trailer) fields so far */

    uint8_t *buf; /* a line that spans inputs; owned, grows up to max_header_bytes */
    size_t buf_len;
    size_t buf_cap;

    char detail[160];
} rx_http1_parser_t;

/* Prepares p for the first response of a connection. cb (required) and the limits (NULL for the
 * defaults) are read now; cb must stay valid while p is used. Allocates nothing. Returns 0 or
 * -EINVAL. */
int rx_http1_parser_init(rx_http1_parser_t *p, const rx_http1_callbacks_t *cb, void *user,
                         const rx_http1_limits_t *limits);

/* Frees the line buffer. p may be initialized again afterwards. */
void rx_http1_parser_fini(rx_http1_parser_t *p);

/* Forgets the current connection's state, including a failure: p then expects the first
 * response of a new connection. Keeps callbacks, limits and the buffer. */
void rx_http1_reset(rx_http1_parser_t *p);

/* Feeds len bytes received on the connection, in any fragmentation (one byte at a time works).
 * *consumed (may be NULL) tells how many were used: all of them on success unless a callback
 * paused; on failure the offset where parsing stopped. Several responses on one keep-alive
 * connection (pipelining) are parsed in sequence, in one call or across calls; bytes after a
 * response whose connection is not kept alive fail with RX_HTTP1_EEXTRA. A Content-Length or
 * chunked body ends exactly where its framing says: what follows is the next response.
 *
 * A bare LF is accepted wherever CRLF is expected (RFC 9112 §2.2); a CR not followed by LF is
 * an error. Returns 0 or a negative code (RX_HTTP1_E*, -ENOMEM, a callback's abort value); after
 * a failure every call returns the same code until rx_http1_reset(). */
int rx_http1_parse(rx_http1_parser_t *p, const void *data, size_t len, size_t *consumed);

/* The peer closed the connection. Completes a body delimited by the close (on_message_done) and
 * returns 0; returns 0 as well between responses. Anywhere else — inside a status line, header
 * block, Content-Length or chunked body, or after a 1xx without its final response — the parser
 * fails with RX_HTTP1_EEOF. */
int rx_http1_eof(rx_http1_parser_t *p);

/* 1 when the connection may carry another request/response after the current final response
 * (HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with "Connection: keep-alive"; never when
 * the body is delimited by the close, nor after 101). Valid from on_headers_done of a final
 * response until the next response starts. */
int rx_http1_keep_alive(const rx_http1_parser_t *p);

/* Status code of the current (or last) response; 0 before its status line. */
int rx_http1_status(const rx_http1_parser_t *p);
/* HTTP minor version of the current response (0 or 1; higher minors are reported as given). */
int rx_http1_version_minor(const rx_http1_parser_t *p);
/* Content-Length of the current response, -1 when absent. */
int64_t rx_http1_content_length(const rx_http1_parser_t *p);
/* 1 when the current response's body is chunked. */
int rx_http1_chunked(const rx_http1_parser_t *p);

/* Text of the last failure (for example "Content-Length '12x' is not a number"); "" when the
 * parser has not failed. Valid until the next call on p. */
const char *rx_http1_error_detail(const rx_http1_parser_t *p);

/* ------------------------------------------------------------------------------------------- */
/* Request writer                                                                               */

/* A header field as counted bytes (no NUL terminator needed). */
typedef struct rx_http1_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} rx_http1_header_t;

/* Writes "METHOD SP target SP HTTP/1.1 CRLF", then each header as "name: value CRLF" in the given
 * order, then "Content-Length: <body_len> CRLF" when body_len >= 0, then CRLF. No terminating NUL.
 * Host is not added: the caller passes it (and Expect: 100-continue, Connection, ... as needed).
 * With body_len < 0 no length is added (no body, or the caller's own Transfer-Encoding).
 *
 * Checks: method is a non-empty token; target is non-empty without SP, CTL or DEL; names are
 * non-empty tokens; values contain no CR, LF, NUL or other CTL except HT; a "Content-Length"
 * header is refused when body_len >= 0. Returns the number of bytes written, -EINVAL on a
 * check (nothing useful written), or -ENOSPC when cap is too small (buf contents unspecified). */
int rx_http1_request_head(char *buf, size_t cap, const char *method, const char *target,
                          const rx_http1_header_t *headers, size_t nheaders, int64_t body_len);

/* Fills iov with [head, body[0], body[1], ...] without copying anything; body iovecs of length 0
 * are left out. Returns the number of iovecs used, or -ENOSPC when iov_cap is too small, or
 * -EINVAL (NULL head with head_len > 0, or NULL body with nbody > 0). */
int rx_http1_request_iov(struct iovec *iov, size_t iov_cap, const void *head, size_t head_len,
                         const struct iovec *body, size_t nbody);

#endif
