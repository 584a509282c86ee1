/* Fuzz target for the GCS JSON API and OAuth2 token parsers (sto/gcsjson.h).
 *
 * Every input goes through all four parsers. Invariants checked (a violation aborts): a list
 * page is delivered whole or not at all, twice the same way, with names whose length matches,
 * and only after the whole document was found sound; failures carry a reason; the outputs of
 * failed parses are zeroed; tokens are header-safe with a positive lifetime; error fields are
 * NUL-terminated within their arrays. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sto/gcsjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);                  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct events {
    uint64_t h;
    size_t items, prefixes;
    int stop_at; /* return -77 from this event (1-based); 0 never */
    int n;
};

static void mix(struct events *e, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        e->h ^= b[i];
        e->h *= 0x100000001b3ULL;
    }
}

static int on_item(void *ud, const sto_gcsjson_item_t *it)
{
    struct events *e = ud;
    CHECK(it->name && it->name_len > 0 && strlen(it->name) == it->name_len);
    CHECK(it->name_len <= STO_GCSJSON_NAME_MAX);
    mix(e, "I", 1);
    mix(e, it->name, it->name_len);
    mix(e, &it->size, sizeof(it->size));
    e->items++;
    return ++e->n == e->stop_at ? -77 : 0;
}

static int on_prefix(void *ud, const char *p, size_t len)
{
    struct events *e = ud;
    CHECK(p && len > 0 && strlen(p) == len && len <= STO_GCSJSON_NAME_MAX);
    mix(e, "P", 1);
    mix(e, p, len);
    e->prefixes++;
    return ++e->n == e->stop_at ? -77 : 0;
}

static void fuzz_list(const char *d, size_t n)
{
    static char tok1[STO_GCSJSON_TOKEN_MAX + 1], tok2[STO_GCSJSON_TOKEN_MAX + 1];
    char err[256];
    struct events a = {.h = 14695981039346656037ULL}, b = a;
    sto_gcsjson_list_cb_t cba = {on_item, on_prefix, &a}, cbb = {on_item, on_prefix, &b};
    int ra = sto_gcsjson_list(d, n, &cba, tok1, sizeof(tok1), err, sizeof(err));
    CHECK(ra == 0 || ra == -EINVAL || ra == -EMSGSIZE || ra == -ENOSPC || ra == -ENOMEM);
    if (ra < 0) {
        CHECK(a.items == 0 && a.prefixes == 0); /* nothing delivered from a bad document */
        CHECK(err[0] != '\0');
        CHECK(tok1[0] == '\0');
    } else {
        CHECK(strlen(tok1) <= STO_GCSJSON_TOKEN_MAX);
    }
    /* the same again: same outcome, same events */
    int rb = sto_gcsjson_list(d, n, &cbb, tok2, sizeof(tok2), err, sizeof(err));
    CHECK(ra == rb && a.h == b.h && a.items == b.items && a.prefixes == b.prefixes);
    CHECK(strcmp(tok1, tok2) == 0);
    /* validation only (no callbacks) agrees */
    int rv = sto_gcsjson_list(d, n, NULL, tok2, sizeof(tok2), err, sizeof(err));
    CHECK(rv == ra);
    /* a callback that stops: its code comes back, and no event after it */
    if (ra == 0 && a.items + a.prefixes > 0) {
        struct events c = {.stop_at = (int)((a.items + a.prefixes + 1) / 2)};
        sto_gcsjson_list_cb_t cbc = {on_item, on_prefix, &c};
        int rc = sto_gcsjson_list(d, n, &cbc, tok2, sizeof(tok2), err, sizeof(err));
        CHECK(rc == -77 && c.n == c.stop_at);
    }
    /* a token buffer too small for the page's token */
    if (ra == 0 && tok1[0]) {
        char small[4];
        struct events c = {0};
        sto_gcsjson_list_cb_t cbc = {on_item, on_prefix, &c};
        int rc = sto_gcsjson_list(d, n, &cbc, small, sizeof(small), err, sizeof(err));
        CHECK(strlen(tok1) < sizeof(small) ? rc == 0 : (rc == -ENOSPC && c.n == 0));
    }
}

static void fuzz_object(const char *d, size_t n)
{
    static sto_gcsjson_object_t o;
    char err[256];
    int rc = sto_gcsjson_object(d, n, &o, err, sizeof(err));
    CHECK(rc == 0 || rc == -EINVAL || rc == -EMSGSIZE || rc == -ENOSPC || rc == -ENOMEM);
    CHECK(memchr(o.name, '\0', sizeof(o.name)) != NULL);
    if (rc < 0) {
        CHECK(err[0] != '\0');
        CHECK(o.size == 0 && o.generation == 0 && o.name[0] == '\0');
    }
}

static void fuzz_error(const char *d, size_t n)
{
    sto_gcsjson_error_t e;
    int rc = sto_gcsjson_error(d, n, &e);
    CHECK(rc == 0 || rc == -EINVAL || rc == -EMSGSIZE || rc == -ENOMEM);
    CHECK(memchr(e.reason, '\0', sizeof(e.reason)) && memchr(e.message, '\0', sizeof(e.message)));
    CHECK(e.code >= 0 && e.code < 1000);
    if (rc < 0)
        CHECK(e.code == 0 && !e.reason[0] && !e.message[0]);
}

static void fuzz_token(const char *d, size_t n)
{
    static sto_gcsjson_token_t t;
    char err[256];
    int rc = sto_gcsjson_token(d, n, &t, err, sizeof(err));
    CHECK(rc == 0 || rc == -EINVAL || rc == -EACCES || rc == -EMSGSIZE || rc == -ENOSPC ||
          rc == -ENOMEM);
    if (rc == 0) {
        size_t l = strlen(t.access_token);
        CHECK(l > 0 && l <= STO_GCSJSON_TOKEN_MAX);
        for (size_t i = 0; i < l; i++)
            CHECK((unsigned char)t.access_token[i] > 0x20 &&
                  (unsigned char)t.access_token[i] < 0x7f);
        CHECK(t.expires_in > 0);
    } else {
        CHECK(err[0] != '\0' || rc == -EACCES);
        CHECK(t.access_token[0] == '\0' && t.expires_in == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *d = (const char *)data;
    fuzz_list(d, size);
    fuzz_object(d, size);
    fuzz_error(d, size);
    fuzz_token(d, size);
    return 0;
}
