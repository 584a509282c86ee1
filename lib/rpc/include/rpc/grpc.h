/* rpc/grpc.h — the gRPC wire codec: message framing, grpc-timeout, grpc-status, grpc-message and
 * content-type, as the gRPC over HTTP/2 protocol spec (PROTOCOL-HTTP2.md) defines them.
 *
 * Sans-I/O: the deframer takes bytes and delivers messages through a callback; everything else
 * is a pure function on buffers. Nothing here touches a socket, a loop, a clock or nghttp2, so
 * the codec is unit-tested and fuzzed on plain buffers. It uses libc only (and rx/err.h for the
 * error table). The gRPC server and client build on it over the reactor's HTTP/2 glue.
 *
 * Threads: a deframer belongs to the thread that uses it; nothing here is shared or locked. All
 * other functions are pure and may be called from any thread.
 *
 * Errors: negative codes. The codec's own codes come from RPC_ERR_LIST (rpc/err.h, range
 * -13001..-13999); functions also return -EINVAL, -ENOSPC, -EMSGSIZE and -ENOMEM where stated,
 * and the deframer whatever negative value its callback returned to abort.
 */
#ifndef RPC_GRPC_H
#define RPC_GRPC_H

#include <stddef.h>
#include <stdint.h>

#include "rpc/err.h"

/* ------------------------------------------------------------------------------------------- */
/* Message framing                                                                              */

/* Each message on a gRPC stream is Length-Prefixed-Message: one flag byte (0 plain, 1
 * compressed with the stream's grpc-encoding), a 4-byte big-endian length, then the message. */
#define RPC_FRAME_HEADER_LEN 5u

/* Default (and usual) maximum message size a receiver accepts, as in gRPC implementations. */
#define RPC_DEFAULT_MAX_MESSAGE (4u * 1024u * 1024u)

/* Writes the 5-byte prefix of a message of len bytes; compressed != 0 sets the flag to 1.
 * Returns 0, or -EMSGSIZE when len does not fit the 32-bit length (out is then untouched). */
int rpc_frame_header(uint8_t out[5], size_t len, int compressed);

/* rpc_deframer_init() flag: compressed messages (flag 1) are delivered (with compressed = 1)
 * instead of failing with RPC_ECOMPRESSED. Set it only when a grpc-encoding other than identity
 * was negotiated for the stream; decompressing is the caller's job. */
#define RPC_DEFRAMER_ACCEPT_COMPRESSED 0x1u

/* Called once per complete message, in stream order. msg is borrowed for the call only: it
 * points into the caller's input when the whole message lay inside one rpc_deframer_feed()
 * slice (zero-copy), otherwise into the deframer's own buffer. msg is never NULL; with len 0 it
 * must not be read. compressed is 0 or 1 (1 only with RPC_DEFRAMER_ACCEPT_COMPRESSED).
 * Return 0 to go on, or a negative value to abort: rpc_deframer_feed() then returns that value
 * and the deframer is failed. Positive values are reserved and act as 0. The callback must not
 * call rpc_deframer_feed(), rpc_deframer_finish(), rpc_deframer_reset() or rpc_deframer_fini()
 * on its own deframer. */
typedef int (*rpc_on_message_fn)(void *ud, const uint8_t *msg, size_t len, int compressed);

/* Caller-allocated; the fields are private (use the functions). */
typedef struct rpc_deframer {
    rpc_on_message_fn on_message;
    void *ud;
    size_t max_message;
    unsigned flags;

    int error;      /* sticky once failed */
    uint8_t hdr[5]; /* prefix of the current message */
    size_t hdr_len; /* prefix bytes so far (0..5); 5: inside the message body */
    uint32_t msg_len;

    uint8_t *buf; /* a message that spans inputs; owned, at most msg_len bytes */
    size_t buf_len;
    size_t buf_cap;

    char detail[128];
} rpc_deframer_t;

/* Prepares d for the first message of a stream. max_message is the largest message accepted
 * (length == max_message is fine; 0 means RPC_DEFAULT_MAX_MESSAGE; values above 2^32-1 mean no
 * limit beyond the wire's). flags: 0 or RPC_DEFRAMER_ACCEPT_COMPRESSED. on_message is required.
 * Allocates nothing. Returns 0 or -EINVAL. */
int rpc_deframer_init(rpc_deframer_t *d, size_t max_message, unsigned flags,
                      rpc_on_message_fn on_message, void *ud);

/* Frees the message buffer. d may be initialized again afterwards. */
void rpc_deframer_fini(rpc_deframer_t *d);

/* Forgets a partial message and a failure: d then expects the first message of a new stream.
 * Keeps the callback, the limit, the flags and the buffer. */
void rpc_deframer_reset(rpc_deframer_t *d);

/* Feeds len bytes of the stream's DATA, in any fragmentation (one byte at a time works);
 * several messages in one slice are delivered in order. data may be NULL when len is 0.
 *
 * Checks, in stream order: the flag byte is 0 or 1 (RPC_EFRAME, as soon as that byte arrives),
 * a flag of 1 is allowed (RPC_ECOMPRESSED), the length is at most the maximum (RPC_ETOOBIG, as
 * soon as the prefix is complete, before any of the body is buffered). A body that spans
 * inputs is gathered in an owned buffer that grows with the bytes received (never beyond the
 * message's length), so a peer that announces a large message and sends little costs little;
 * a buffer above 64 KiB is released once its message is delivered.
 *
 * Returns 0 or a negative code (RPC_EFRAME, RPC_ECOMPRESSED, RPC_ETOOBIG, -ENOMEM, a callback's
 * abort value); after a failure every call returns the same code until rpc_deframer_reset(). */
int rpc_deframer_feed(rpc_deframer_t *d, const void *data, size_t len);

/* The stream ended (END_STREAM). Returns 0 when it ended between messages; inside a prefix or a
 * body the deframer fails with RPC_ETRUNCATED. Returns the sticky code of a failed deframer.
 * Changes nothing on success: d may be fed again (after a reset, say). */
int rpc_deframer_finish(rpc_deframer_t *d);

/* 1 when d holds part of a message (prefix or body bytes), 0 between messages. */
int rpc_deframer_partial(const rpc_deframer_t *d);

/* Text of the last failure (for example "message of 5242880 bytes exceeds the maximum of
 * 4194304"); "" when d has not failed. Valid until the next call on d. */
const char *rpc_deframer_error_detail(const rpc_deframer_t *d);

/* ------------------------------------------------------------------------------------------- */
/* grpc-timeout                                                                                 */

/* Parses a grpc-timeout value: 1 to 8 ASCII digits (leading zeros and 0 allowed), then exactly
 * one unit: H hours, M minutes, S seconds, m milliseconds, u microseconds, n nanoseconds. No
 * sign, no blanks. Sets *ns; a value beyond 2^64-1 ns (above 5124095H) saturates to UINT64_MAX
 * (about 584 years). Returns 0 or RPC_ETIMEOUT_FMT (*ns untouched). */
int rpc_timeout_parse(const char *v, size_t len, uint64_t *ns);

/* Writes the grpc-timeout value for ns, NUL-terminated, and returns its length (2..9). The unit
 * is the finest whose count fits 8 digits; the count is rounded up, so the peer's deadline is
 * never earlier than ours and at most one unit later. Every uint64_t has a form
 * (UINT64_MAX gives "5124096H"). Never fails. */
int rpc_timeout_format(uint64_t ns, char out[16]);

/* ------------------------------------------------------------------------------------------- */
/* Status                                                                                       */

/* The canonical gRPC status codes (grpc/doc/statuscodes.md). */
typedef enum rpc_status {
    RPC_STATUS_OK = 0,
    RPC_STATUS_CANCELLED = 1,
    RPC_STATUS_UNKNOWN = 2,
    RPC_STATUS_INVALID_ARGUMENT = 3,
    RPC_STATUS_DEADLINE_EXCEEDED = 4,
    RPC_STATUS_NOT_FOUND = 5,
    RPC_STATUS_ALREADY_EXISTS = 6,
    RPC_STATUS_PERMISSION_DENIED = 7,
    RPC_STATUS_RESOURCE_EXHAUSTED = 8,
    RPC_STATUS_FAILED_PRECONDITION = 9,
    RPC_STATUS_ABORTED = 10,
    RPC_STATUS_OUT_OF_RANGE = 11,
    RPC_STATUS_UNIMPLEMENTED = 12,
    RPC_STATUS_INTERNAL = 13,
    RPC_STATUS_UNAVAILABLE = 14,
    RPC_STATUS_DATA_LOSS = 15,
    RPC_STATUS_UNAUTHENTICATED = 16,
} rpc_status_t;

#define RPC_STATUS_COUNT 17

/* "OK", "CANCELLED", ..., "UNAUTHENTICATED"; "UNKNOWN" for a code outside 0..16. Static. */
const char *rpc_status_name(int code);

/* Parses a grpc-status value: one or more ASCII digits (nothing else, no sign, no blanks), at
 * most INT_MAX. Codes above 16 are returned as they are (callers may treat them as UNKNOWN; a
 * status name lookup does). Returns 0 with *code set, or RPC_ESTATUS_FMT (*code untouched). */
int rpc_status_parse(const char *v, size_t len, int *code);

/* The gRPC status a client reports for a response whose HTTP status is not 200 and that carries
 * no grpc-status (doc/http-grpc-status-mapping.md): 400 INTERNAL, 401 UNAUTHENTICATED,
 * 403 PERMISSION_DENIED, 404 UNIMPLEMENTED, 429/502/503/504 UNAVAILABLE, anything else UNKNOWN. */
rpc_status_t rpc_status_from_http(int http_status);

/* ------------------------------------------------------------------------------------------- */
/* grpc-message                                                                                 */

/* grpc-message carries the status message (UTF-8 text, arbitrary bytes in practice)
 * percent-encoded: bytes 0x20..0x7E except '%' stay as they are, every other byte becomes
 * "%XX" with uppercase hex digits.
 *
 * Bounded outputs: both functions write a NUL-terminated result and fail with -ENOSPC when it
 * (with its NUL) does not fit cap; they never truncate. *out_len (may be NULL) gets the length
 * without the NUL. The contents of out are unspecified after -ENOSPC. */

/* Length of the encoded form of len bytes (without the NUL): len + 2 per escaped byte. */
size_t rpc_message_encoded_len(const void *msg, size_t len);

/* Encodes len bytes of msg (may hold NULs). Needs cap >= rpc_message_encoded_len() + 1.
 * Returns 0, -ENOSPC, or -EINVAL (out NULL, or msg NULL with len > 0). */
int rpc_message_encode(char *out, size_t cap, size_t *out_len, const void *msg, size_t len);

/* Decodes a received grpc-message value. Tolerant, as the spec asks: "%" followed by two hex
 * digits (either case) gives that byte; a '%' not followed by two hex digits is kept literally,
 * and the bytes after it are decoded normally; every other byte is copied as it is. The result
 * is never longer than the input, so cap = len + 1 always suffices; it may contain NULs (from
 * "%00"), in which case the terminating NUL is for convenience only. Returns 0, -ENOSPC, or
 * -EINVAL (out NULL, or v NULL with len > 0). */
int rpc_message_decode(char *out, size_t cap, size_t *out_len, const char *v, size_t len);

/* ------------------------------------------------------------------------------------------- */
/* content-type                                                                                 */

/* 1 when v is a gRPC content-type this codec speaks: "application/grpc" or
 * "application/grpc+proto", either optionally followed by parameters (optional blanks, then ';'
 * and anything), and optional trailing blanks. Letters are compared case-insensitively (media
 * types are case-insensitive). Other subtypes ("+json", ...) and anything else give 0. */
int rpc_content_type_ok(const char *v, size_t len);

#endif
