/* libFuzzer target for the gRPC wire codec (rpc/grpc.h).
 *
 * Input: one option byte, three split bytes, then the bytes of a gRPC stream's DATA. The stream
 * is deframed whole, in four pieces whose split points come from the split bytes, and (when
 * short) one byte at a time; the runs must give the same messages and the same result. Checked
 * on every message: its length is within the maximum, it is compressed only when that was
 * allowed, its bytes lie inside the input when it points there, and the messages with their
 * prefixes never add up to more than the input. The same bytes (and slices of them) go through
 * the grpc-timeout, grpc-status, grpc-message and content-type functions, whose results are
 * checked against their contracts.
 *
 * Option byte: bit 0 accept compressed messages, bit 1 small maximum (64 bytes), bit 2 call
 * rpc_deframer_finish() at the end, bits 3-5 a (when non-zero, the callback aborts on message
 * a - 1). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/grpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

#define ABORT_CODE (-1234)

typedef struct run {
    const uint8_t *lo, *hi;
    uint64_t hash;
    size_t msgs;
    size_t bytes;
    size_t max;
    unsigned opt;
} run_t;

static void mix(run_t *r, const void *d, size_t n)
{
    const uint8_t *b = d;
    for (size_t i = 0; i < n; i++) {
        r->hash ^= b[i];
        r->hash *= 0x100000001b3ull;
    }
}

static int on_message(void *ud, const uint8_t *msg, size_t len, int compressed)
{
    run_t *r = ud;
    CHECK(msg != NULL);
    CHECK(len <= r->max);
    CHECK(compressed == 0 || (compressed == 1 && (r->opt & 1u)));
    if (msg >= r->lo && msg < r->hi)
        CHECK(len <= (size_t)(r->hi - msg));
    r->bytes += len + RPC_FRAME_HEADER_LEN;
    CHECK(r->bytes <= (size_t)(r->hi - r->lo));
    mix(r, &len, sizeof(len));
    mix(r, &compressed, sizeof(compressed));
    mix(r, msg, len);
    unsigned a = (r->opt >> 3) & 7u;
    return (a != 0 && r->msgs++ == a - 1) ? ABORT_CODE : 0;
}

static int deframe(const uint8_t *in, size_t n, const size_t *cuts, size_t ncuts, unsigned opt,
                   run_t *r)
{
    rpc_deframer_t d;
    memset(r, 0, sizeof(*r));
    r->lo = in;
    r->hi = in + n;
    r->hash = 0xcbf29ce484222325ull;
    r->opt = opt;
    r->max = (opt & 2u) ? 64 : RPC_DEFAULT_MAX_MESSAGE;
    CHECK(rpc_deframer_init(&d, (opt & 2u) ? 64 : 0,
                            (opt & 1u) ? RPC_DEFRAMER_ACCEPT_COMPRESSED : 0, on_message, r) == 0);
    int rc = 0;
    size_t start = 0;
    for (size_t i = 0; i <= ncuts && rc == 0; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        rc = rpc_deframer_feed(&d, in + start, end - start);
        start = end;
    }
    if (rc == 0 && (opt & 4u))
        rc = rpc_deframer_finish(&d);
    if (rc != 0) {
        CHECK(rc < 0);
        CHECK(rc == ABORT_CODE || rc == -ENOMEM ||
              (rc <= RPC_ERR_BASE - 1 && rc >= RPC_ERR_BASE - 4));
        CHECK(rpc_deframer_error_detail(&d)[0] != '\0');
        CHECK(rpc_deframer_feed(&d, in, n) == rc); /* sticky */
        CHECK(rpc_deframer_finish(&d) == rc);
    } else {
        CHECK(rpc_deframer_error_detail(&d)[0] == '\0');
        int partial = rpc_deframer_partial(&d);
        CHECK(partial == (rpc_deframer_finish(&d) != 0));
    }
    rpc_deframer_reset(&d);
    CHECK(rpc_deframer_error_detail(&d)[0] == '\0');
    rpc_deframer_fini(&d);
    mix(r, &rc, sizeof(rc));
    return rc;
}

static void check_timeout(const char *v, size_t n)
{
    uint64_t ns = 0;
    if (rpc_timeout_parse(v, n, &ns) != 0)
        return;
    CHECK(n >= 2 && n <= 9);
    for (size_t i = 0; i + 1 < n; i++)
        CHECK(v[i] >= '0' && v[i] <= '9');
    CHECK(v[n - 1] != '\0' && strchr("HMSmun", v[n - 1]) != NULL);
    char out[16];
    int len = rpc_timeout_format(ns, out);
    CHECK(len >= 2 && len <= 9 && (size_t)len == strlen(out));
    uint64_t back = 0;
    CHECK(rpc_timeout_parse(out, (size_t)len, &back) == 0);
    CHECK(back >= ns);
}

static void check_status(const char *v, size_t n)
{
    int code = -1;
    if (rpc_status_parse(v, n, &code) != 0)
        return;
    CHECK(n > 0 && code >= 0);
    for (size_t i = 0; i < n; i++)
        CHECK(v[i] >= '0' && v[i] <= '9');
    CHECK(rpc_status_name(code) != NULL);
}

static void check_message(const char *v, size_t n)
{
    char *dec = malloc(n + 1);
    size_t elen = rpc_message_encoded_len(v, n);
    char *enc = malloc(elen + 1);
    char *back = malloc(n + 1);
    if (dec == NULL || enc == NULL || back == NULL)
        goto out;
    size_t dlen = 0, got = 0;
    CHECK(rpc_message_decode(dec, n + 1, &dlen, v, n) == 0);
    CHECK(dlen <= n && dec[dlen] == '\0');
    if (n > 0)
        CHECK(rpc_message_decode(dec, dlen, &got, v, n) == -ENOSPC);
    /* encoding then decoding gives the bytes back, whatever they are */
    CHECK(rpc_message_encode(enc, elen + 1, &got, v, n) == 0 && got == elen);
    for (size_t i = 0; i < elen; i++)
        CHECK(enc[i] >= 0x20 && enc[i] <= 0x7e);
    CHECK(rpc_message_encode(enc, elen, &got, v, n) == -ENOSPC);
    CHECK(rpc_message_decode(back, n + 1, &got, enc, elen) == 0 && got == n);
    CHECK(n == 0 || memcmp(back, v, n) == 0);
out:
    free(dec);
    free(enc);
    free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    unsigned opt = data[0];
    size_t n = size - 4;
    /* an exact copy so that reads past the stream bytes are caught */
    uint8_t *in = malloc(n ? n : 1);
    if (in == NULL)
        return 0;
    memcpy(in, data + 4, n);

    run_t whole, split;
    int rc = deframe(in, n, NULL, 0, opt, &whole);

    size_t cuts[3];
    for (int i = 0; i < 3; i++)
        cuts[i] = (size_t)data[1 + i] * (n + 1) / 256;
    for (int i = 0; i < 3; i++) /* sort the three */
        for (int j = i + 1; j < 3; j++)
            if (cuts[j] < cuts[i]) {
                size_t t = cuts[i];
                cuts[i] = cuts[j];
                cuts[j] = t;
            }
    CHECK(deframe(in, n, cuts, 3, opt, &split) == rc);
    CHECK(split.hash == whole.hash && split.bytes == whole.bytes);

    if (n <= 4096) {
        size_t *every = malloc((n ? n : 1) * sizeof(*every));
        if (every != NULL) {
            for (size_t i = 1; i < n; i++)
                every[i - 1] = i;
            CHECK(deframe(in, n, every, n ? n - 1 : 0, opt, &split) == rc);
            CHECK(split.hash == whole.hash && split.bytes == whole.bytes);
            free(every);
        }
    }

    /* header-value functions on the whole input and on short slices at the split points */
    const char *v = (const char *)in;
    check_message(v, n);
    rpc_content_type_ok(v, n);
    check_status(v, n);
    check_timeout(v, n);
    for (int i = 0; i < 3; i++) {
        size_t at = cuts[i];
        for (size_t len = 0; len <= 10 && at + len <= n; len++) {
            check_timeout(v + at, len);
            check_status(v + at, len);
            check_message(v + at, len);
            rpc_content_type_ok(v + at, len);
        }
    }
    free(in);
    return 0;
}
