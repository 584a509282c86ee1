/* gRPC wire codec. See rpc/grpc.h for the contract.
 *
 * The deframer takes the 5-byte prefix one byte at a time (so its checks fire on the same byte
 * whatever the split) and bodies in bulk: a body that lies inside the current input is handed
 * out in place, one that spans inputs is gathered first. Since the prefix is checked before any
 * body byte is stored, and the buffer grows only with bytes actually received, a peer cannot
 * make us allocate much more than it sends. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/grpc.h"

/* Buffers above this are released after their message so an idle stream holds little. */
#define KEEP_BUF_BYTES (64u * 1024u)
#define MIN_BUF_BYTES 256u

/* ---- framing -------------------------------------------------------------------------------- */

int rpc_frame_header(uint8_t out[5], size_t len, int compressed)
{
    if ((uint64_t)len > UINT32_MAX)
        return -EMSGSIZE;
    out[0] = compressed ? 1 : 0;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
    return 0;
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
fail(rpc_deframer_t *d, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->detail, sizeof(d->detail), fmt, ap);
    va_end(ap);
    d->error = code;
    return code;
}

int rpc_deframer_init(rpc_deframer_t *d, size_t max_message, unsigned flags,
                      rpc_on_message_fn on_message, void *ud)
{
    if (d == NULL || on_message == NULL || (flags & ~RPC_DEFRAMER_ACCEPT_COMPRESSED) != 0)
        return -EINVAL;
    memset(d, 0, sizeof(*d));
    d->on_message = on_message;
    d->ud = ud;
    d->max_message = max_message != 0 ? max_message : RPC_DEFAULT_MAX_MESSAGE;
    d->flags = flags;
    return 0;
}

void rpc_deframer_fini(rpc_deframer_t *d)
{
    if (d == NULL)
        return;
    free(d->buf);
    d->buf = NULL;
    d->buf_len = 0;
    d->buf_cap = 0;
}

void rpc_deframer_reset(rpc_deframer_t *d)
{
    d->error = 0;
    d->hdr_len = 0;
    d->msg_len = 0;
    d->buf_len = 0;
    d->detail[0] = '\0';
}

int rpc_deframer_partial(const rpc_deframer_t *d)
{
    return d->hdr_len != 0;
}

const char *rpc_deframer_error_detail(const rpc_deframer_t *d)
{
    return d->error != 0 ? d->detail : "";
}

/* Hands one complete message to the callback and gets ready for the next prefix. */
static int deliver(rpc_deframer_t *d, const uint8_t *msg, size_t len)
{
    int compressed = d->hdr[0];
    d->hdr_len = 0;
    d->buf_len = 0;
    int rc = d->on_message(d->ud, msg, len, compressed);
    if (msg == d->buf && d->buf_cap > KEEP_BUF_BYTES) {
        free(d->buf);
        d->buf = NULL;
        d->buf_cap = 0;
    }
    if (rc < 0)
        return fail(d, rc, "message callback aborted with %d", rc);
    return 0;
}

/* One prefix byte; delivers a zero-length message at once. */
static int prefix_byte(rpc_deframer_t *d, uint8_t c, const uint8_t *here)
{
    if (d->hdr_len == 0) {
        if (c > 1)
            return fail(d, RPC_EFRAME, "message flag byte is 0x%02x, not 0 or 1", c);
        if (c == 1 && !(d->flags & RPC_DEFRAMER_ACCEPT_COMPRESSED))
            return fail(d, RPC_ECOMPRESSED,
                        "message is compressed but no compression was negotiated");
    }
    d->hdr[d->hdr_len++] = c;
    if (d->hdr_len < RPC_FRAME_HEADER_LEN)
        return 0;
    d->msg_len = (uint32_t)d->hdr[1] << 24 | (uint32_t)d->hdr[2] << 16 | (uint32_t)d->hdr[3] << 8 |
                 (uint32_t)d->hdr[4];
    if ((uint64_t)d->msg_len > (uint64_t)d->max_message)
        return fail(d, RPC_ETOOBIG, "message of %lu bytes exceeds the maximum of %zu bytes",
                    (unsigned long)d->msg_len, d->max_message);
    if (d->msg_len == 0)
        return deliver(d, here, 0);
    return 0;
}

/* Appends n body bytes to the buffer, growing it geometrically up to the message length. */
static int gather(rpc_deframer_t *d, const uint8_t *p, size_t n)
{
    size_t want = d->buf_len + n;
    if (want > d->buf_cap) {
        size_t cap = d->buf_cap * 2;
        if (cap < MIN_BUF_BYTES)
            cap = MIN_BUF_BYTES;
        if (cap < want)
            cap = want;
        if (cap > d->msg_len)
            cap = d->msg_len;
        uint8_t *nb = realloc(d->buf, cap);
        if (nb == NULL)
            return fail(d, -ENOMEM, "no memory for a message of %lu bytes",
                        (unsigned long)d->msg_len);
        d->buf = nb;
        d->buf_cap = cap;
    }
    memcpy(d->buf + d->buf_len, p, n);
    d->buf_len += n;
    return 0;
}

int rpc_deframer_feed(rpc_deframer_t *d, const void *data, size_t len)
{
    if (d->error != 0)
        return d->error;
    if (len == 0)
        return 0;
    const uint8_t *p = data;
    const uint8_t *end = p + len;
    while (p < end) {
        int rc;
        if (d->hdr_len < RPC_FRAME_HEADER_LEN) {
            uint8_t c = *p++;
            rc = prefix_byte(d, c, p);
            if (rc < 0)
                return rc;
            continue;
        }
        size_t need = d->msg_len - d->buf_len;
        size_t avail = (size_t)(end - p);
        if (d->buf_len == 0 && avail >= need) {
            rc = deliver(d, p, need); /* zero-copy: the whole body is in this input */
            p += need;
        } else {
            size_t take = avail < need ? avail : need;
            rc = gather(d, p, take);
            p += take;
            if (rc == 0 && d->buf_len == d->msg_len)
                rc = deliver(d, d->buf, d->buf_len);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

int rpc_deframer_finish(rpc_deframer_t *d)
{
    if (d->error != 0)
        return d->error;
    if (d->hdr_len == 0)
        return 0;
    if (d->hdr_len < RPC_FRAME_HEADER_LEN)
        return fail(d, RPC_ETRUNCATED, "stream ended after %zu of 5 message prefix bytes",
                    d->hdr_len);
    return fail(d, RPC_ETRUNCATED, "stream ended after %zu of %lu message bytes", d->buf_len,
                (unsigned long)d->msg_len);
}

/* ---- grpc-timeout --------------------------------------------------------------------------- */

#define TIMEOUT_MAX_DIGITS 8
#define TIMEOUT_MAX_COUNT 99999999u

static const struct {
    char unit;
    uint64_t ns;
} timeout_units[] = {
    {'n', 1u},
    {'u', 1000u},
    {'m', 1000000u},
    {'S', 1000000000u},
    {'M', 60ull * 1000000000u},
    {'H', 3600ull * 1000000000u},
};

#define NUNITS (sizeof(timeout_units) / sizeof(timeout_units[0]))

int rpc_timeout_parse(const char *v, size_t len, uint64_t *ns)
{
    if (v == NULL || len < 2 || len > TIMEOUT_MAX_DIGITS + 1)
        return RPC_ETIMEOUT_FMT;
    uint64_t count = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return RPC_ETIMEOUT_FMT;
        count = count * 10 + (uint64_t)(v[i] - '0');
    }
    for (size_t u = 0; u < NUNITS; u++) {
        if (v[len - 1] == timeout_units[u].unit) {
            uint64_t unit = timeout_units[u].ns;
            *ns = count > UINT64_MAX / unit ? UINT64_MAX : count * unit;
            return 0;
        }
    }
    return RPC_ETIMEOUT_FMT;
}

int rpc_timeout_format(uint64_t ns, char out[16])
{
    size_t u = 0;
    uint64_t count = ns;
    for (; u < NUNITS; u++) {
        uint64_t unit = timeout_units[u].ns;
        count = ns / unit + (ns % unit != 0); /* round up: never shorten the deadline */
        if (count <= TIMEOUT_MAX_COUNT)
            break;
    }
    /* Hours always fit: UINT64_MAX ns is 5124096H rounded up. */
    if (u == NUNITS)
        u = NUNITS - 1;
    return snprintf(out, 16, "%" PRIu64 "%c", count, timeout_units[u].unit);
}

/* ---- status --------------------------------------------------------------------------------- */

static const char *const status_names[RPC_STATUS_COUNT] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

const char *rpc_status_name(int code)
{
    if (code < 0 || code >= RPC_STATUS_COUNT)
        return "UNKNOWN";
    return status_names[code];
}

int rpc_status_parse(const char *v, size_t len, int *code)
{
    if (v == NULL || len == 0)
        return RPC_ESTATUS_FMT;
    int val = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return RPC_ESTATUS_FMT;
        int digit = v[i] - '0';
        if (val > (INT_MAX - digit) / 10)
            return RPC_ESTATUS_FMT;
        val = val * 10 + digit;
    }
    *code = val;
    return 0;
}

rpc_status_t rpc_status_from_http(int http_status)
{
    switch (http_status) {
    case 400:
        return RPC_STATUS_INTERNAL;
    case 401:
        return RPC_STATUS_UNAUTHENTICATED;
    case 403:
        return RPC_STATUS_PERMISSION_DENIED;
    case 404:
        return RPC_STATUS_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
        return RPC_STATUS_UNAVAILABLE;
    default:
        return RPC_STATUS_UNKNOWN;
    }
}

/* ---- grpc-message --------------------------------------------------------------------------- */

static int must_escape(unsigned char c)
{
    return c < 0x20 || c > 0x7e || c == '%';
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

size_t rpc_message_encoded_len(const void *msg, size_t len)
{
    const unsigned char *m = msg;
    size_t n = len;
    for (size_t i = 0; i < len; i++)
        n += must_escape(m[i]) ? 2 : 0;
    return n;
}

int rpc_message_encode(char *out, size_t cap, size_t *out_len, const void *msg, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    if (out == NULL || (msg == NULL && len > 0))
        return -EINVAL;
    const unsigned char *m = msg;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = m[i];
        size_t w = must_escape(c) ? 3 : 1;
        if (cap - o <= w) /* o < cap always holds: room for w bytes plus the NUL */
            return -ENOSPC;
        if (w == 1) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 0xf];
        }
    }
    if (cap == 0)
        return -ENOSPC;
    out[o] = '\0';
    if (out_len != NULL)
        *out_len = o;
    return 0;
}

int rpc_message_decode(char *out, size_t cap, size_t *out_len, const char *v, size_t len)
{
    if (out == NULL || (v == NULL && len > 0))
        return -EINVAL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (cap - o < 2) /* o < cap always holds: room for one byte plus the NUL */
            return -ENOSPC;
        unsigned char c = (unsigned char)v[i];
        int hi, lo;
        if (c == '%' && len - i >= 3 && (hi = hexval((unsigned char)v[i + 1])) >= 0 &&
            (lo = hexval((unsigned char)v[i + 2])) >= 0) {
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = (char)c;
        }
    }
    if (cap == 0)
        return -ENOSPC;
    out[o] = '\0';
    if (out_len != NULL)
        *out_len = o;
    return 0;
}

/* ---- content-type --------------------------------------------------------------------------- */

/* 1 when s[0..n) starts with lit, ignoring ASCII case. */
static int iprefix(const char *s, size_t n, const char *lit)
{
    size_t k = strlen(lit);
    if (n < k)
        return 0;
    for (size_t i = 0; i < k; i++) {
        unsigned char x = (unsigned char)s[i];
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x - 'A' + 'a');
        if (x != (unsigned char)lit[i])
            return 0;
    }
    return 1;
}

int rpc_content_type_ok(const char *v, size_t len)
{
    static const char type[] = "application/grpc";
    static const char proto[] = "+proto";
    if (v == NULL || !iprefix(v, len, type))
        return 0;
    size_t i = sizeof(type) - 1;
    if (iprefix(v + i, len - i, proto))
        i += sizeof(proto) - 1;
    while (i < len && (v[i] == ' ' || v[i] == '\t'))
        i++;
    return i == len || v[i] == ';';
}
