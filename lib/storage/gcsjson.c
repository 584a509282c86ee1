/* GCS JSON API and OAuth2 token documents (sto/gcsjson.h), parsed with jansson.
 *
 * Each body is loaded whole (it is bounded) and checked completely before any callback runs, so
 * a list page is either delivered whole or refused: a half-delivered page would make the caller
 * count entries it then reports as failed. */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sto/gcsjson.h"

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Loads an object document; NULL with a reason (and *rc) otherwise. */
static json_t *load(const char *body, size_t len, int *rc, char *err, size_t errlen)
{
    if (!body && len) {
        *rc = -EINVAL;
        set_err(err, errlen, "no body");
        return NULL;
    }
    if (len > STO_GCSJSON_MAX_BODY) {
        *rc = -EMSGSIZE;
        set_err(err, errlen, "body of %zu bytes is larger than %u", len, STO_GCSJSON_MAX_BODY);
        return NULL;
    }
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        *rc = -EINVAL;
        set_err(err, errlen, "invalid JSON at byte %d: %s", je.position, je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        *rc = -EINVAL;
        set_err(err, errlen, "the document is not a JSON object");
        return NULL;
    }
    *rc = 0;
    return root;
}

/* A string without embedded NUL (jansson keeps \u0000 only with JSON_ALLOW_NUL, but be sure). */
static int clean_string(const json_t *s)
{
    return json_is_string(s) && strlen(json_string_value(s)) == json_string_length(s);
}

/* "size": a decimal string of at most 20 digits that fits 64 bits, or a non-negative integer. */
static int get_u64(const json_t *v, uint64_t *out)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0)
            return -1;
        *out = (uint64_t)i;
        return 0;
    }
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 || n > 20)
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *out = x;
    return 0;
}

static void copy_cut(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* ---- list ---- */

static int check_item(const json_t *it, size_t i, char *err, size_t errlen)
{
    if (!json_is_object(it)) {
        set_err(err, errlen, "items[%zu] is not an object", i);
        return -EINVAL;
    }
    const json_t *name = json_object_get(it, "name");
    if (!clean_string(name) || json_string_length(name) == 0) {
        set_err(err, errlen, "items[%zu]: \"name\" is missing or not a non-empty string", i);
        return -EINVAL;
    }
    if (json_string_length(name) > STO_GCSJSON_NAME_MAX) {
        set_err(err, errlen, "items[%zu]: name longer than %d bytes", i, STO_GCSJSON_NAME_MAX);
        return -EINVAL;
    }
    uint64_t sz;
    const json_t *size = json_object_get(it, "size");
    if (!size || get_u64(size, &sz) != 0) {
        set_err(err, errlen, "items[%zu] (%.100s): \"size\" is missing or not a number", i,
                json_string_value(name));
        return -EINVAL;
    }
    return 0;
}

int sto_gcsjson_list(const char *body, size_t len, const sto_gcsjson_list_cb_t *cb,
                     char *next_token, size_t tokcap, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (next_token && tokcap)
        next_token[0] = '\0';
    int rc;
    json_t *root = load(body, len, &rc, err, errlen);
    if (!root)
        return rc;
    const json_t *items = json_object_get(root, "items");
    const json_t *prefixes = json_object_get(root, "prefixes");
    const json_t *tok = json_object_get(root, "nextPageToken");
    if (items && !json_is_array(items)) {
        set_err(err, errlen, "\"items\" is not an array");
        rc = -EINVAL;
        goto out;
    }
    if (prefixes && !json_is_array(prefixes)) {
        set_err(err, errlen, "\"prefixes\" is not an array");
        rc = -EINVAL;
        goto out;
    }
    if (tok && !json_is_null(tok)) {
        if (!clean_string(tok)) {
            set_err(err, errlen, "\"nextPageToken\" is not a string");
            rc = -EINVAL;
            goto out;
        }
        if (json_string_length(tok) > STO_GCSJSON_TOKEN_MAX || !next_token ||
            json_string_length(tok) >= tokcap) {
            set_err(err, errlen, "\"nextPageToken\" is too long (%zu bytes)",
                    json_string_length(tok));
            rc = -ENOSPC;
            goto out;
        }
    }
    size_t i;
    const json_t *v;
    json_array_foreach(items, i, v)
    {
        if ((rc = check_item(v, i, err, errlen)) < 0)
            goto out;
    }
    json_array_foreach(prefixes, i, v)
    {
        if (!clean_string(v) || json_string_length(v) == 0 ||
            json_string_length(v) > STO_GCSJSON_NAME_MAX) {
            set_err(err, errlen, "prefixes[%zu] is not a non-empty string of at most %d bytes", i,
                    STO_GCSJSON_NAME_MAX);
            rc = -EINVAL;
            goto out;
        }
    }
    /* the document is sound: deliver it */
    json_array_foreach(items, i, v)
    {
        if (!cb || !cb->item)
            break;
        const json_t *name = json_object_get(v, "name");
        sto_gcsjson_item_t it = {json_string_value(name), json_string_length(name), 0};
        get_u64(json_object_get(v, "size"), &it.size);
        if ((rc = cb->item(cb->ud, &it)) < 0)
            goto out;
    }
    json_array_foreach(prefixes, i, v)
    {
        if (!cb || !cb->prefix)
            break;
        if ((rc = cb->prefix(cb->ud, json_string_value(v), json_string_length(v))) < 0)
            goto out;
    }
    if (tok && json_is_string(tok))
        memcpy(next_token, json_string_value(tok), json_string_length(tok) + 1);
    rc = 0;
out:
    json_decref(root);
    return rc;
}

/* ---- object metadata ---- */

int sto_gcsjson_object(const char *body, size_t len, sto_gcsjson_object_t *out, char *err,
                       size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (err && errlen)
        err[0] = '\0';
    int rc;
    json_t *root = load(body, len, &rc, err, errlen);
    if (!root)
        return rc;
    rc = -EINVAL;
    const json_t *name = json_object_get(root, "name");
    const json_t *size = json_object_get(root, "size");
    const json_t *gen = json_object_get(root, "generation");
    if (name) {
        if (!clean_string(name)) {
            set_err(err, errlen, "\"name\" is not a string");
            goto out;
        }
        if (json_string_length(name) > STO_GCSJSON_NAME_MAX) {
            set_err(err, errlen, "\"name\" is longer than %d bytes", STO_GCSJSON_NAME_MAX);
            rc = -ENOSPC;
            goto out;
        }
        memcpy(out->name, json_string_value(name), json_string_length(name) + 1);
    }
    if (!size || get_u64(size, &out->size) != 0) {
        set_err(err, errlen, "\"size\" is missing or not a number");
        goto out;
    }
    if (gen && get_u64(gen, &out->generation) != 0) {
        set_err(err, errlen, "\"generation\" is not a number");
        goto out;
    }
    rc = 0;
out:
    if (rc < 0)
        memset(out, 0, sizeof(*out));
    json_decref(root);
    return rc;
}

/* ---- errors ---- */

int sto_gcsjson_error(const char *body, size_t len, sto_gcsjson_error_t *out)
{
    memset(out, 0, sizeof(*out));
    int rc;
    json_t *root = load(body, len, &rc, NULL, 0);
    if (!root)
        return rc;
    const json_t *e = json_object_get(root, "error");
    rc = -EINVAL;
    if (clean_string(e)) {
        /* OAuth2: {"error": "invalid_grant", "error_description": "..."} */
        copy_cut(out->reason, sizeof(out->reason), json_string_value(e));
        const json_t *d = json_object_get(root, "error_description");
        if (clean_string(d))
            copy_cut(out->message, sizeof(out->message), json_string_value(d));
        rc = 0;
    } else if (json_is_object(e)) {
        const json_t *code = json_object_get(e, "code");
        if (json_is_integer(code) && json_integer_value(code) > 0 &&
            json_integer_value(code) < 1000)
            out->code = (int)json_integer_value(code);
        const json_t *msg = json_object_get(e, "message");
        if (clean_string(msg))
            copy_cut(out->message, sizeof(out->message), json_string_value(msg));
        const json_t *errs = json_object_get(e, "errors");
        const json_t *first = json_is_array(errs) ? json_array_get(errs, 0) : NULL;
        if (json_is_object(first)) {
            const json_t *r = json_object_get(first, "reason");
            if (clean_string(r))
                copy_cut(out->reason, sizeof(out->reason), json_string_value(r));
            const json_t *m = json_object_get(first, "message");
            if (!out->message[0] && clean_string(m))
                copy_cut(out->message, sizeof(out->message), json_string_value(m));
        }
        const json_t *status = json_object_get(e, "status");
        if (!out->reason[0] && clean_string(status))
            copy_cut(out->reason, sizeof(out->reason), json_string_value(status));
        rc = 0;
    }
    json_decref(root);
    if (rc < 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

/* ---- OAuth2 token ---- */

int sto_gcsjson_token(const char *body, size_t len, sto_gcsjson_token_t *out, char *err,
                      size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (err && errlen)
        err[0] = '\0';
    int rc;
    json_t *root = load(body, len, &rc, err, errlen);
    if (!root)
        return rc;
    const json_t *at = json_object_get(root, "access_token");
    const json_t *ex = json_object_get(root, "expires_in");
    const json_t *tt = json_object_get(root, "token_type");
    const json_t *e = json_object_get(root, "error");
    rc = -EINVAL;
    if (!at && e) {
        sto_gcsjson_error_t ge;
        if (sto_gcsjson_error(body, len, &ge) == 0) {
            if (ge.message[0])
                set_err(err, errlen, "%s: %s", ge.reason[0] ? ge.reason : "error", ge.message);
            else
                set_err(err, errlen, "%s", ge.reason[0] ? ge.reason : "error");
            rc = -EACCES;
        } else {
            set_err(err, errlen, "\"error\" is neither a string nor an object");
        }
        goto out;
    }
    if (!clean_string(at) || json_string_length(at) == 0) {
        set_err(err, errlen, "\"access_token\" is missing or not a non-empty string");
        goto out;
    }
    if (json_string_length(at) > STO_GCSJSON_TOKEN_MAX) {
        set_err(err, errlen, "\"access_token\" is longer than %d bytes", STO_GCSJSON_TOKEN_MAX);
        rc = -ENOSPC;
        goto out;
    }
    const char *s = json_string_value(at);
    for (size_t i = 0; s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f) {
            set_err(err, errlen, "\"access_token\" has a character that cannot go in a header");
            rc = -ENOSPC;
            goto out;
        }
    }
    if (!ex || get_u64(ex, &out->expires_in) != 0 || out->expires_in == 0) {
        set_err(err, errlen, "\"expires_in\" is missing or not a positive number");
        goto out;
    }
    if (tt) {
        if (!clean_string(tt) || strcasecmp(json_string_value(tt), "Bearer") != 0) {
            if (clean_string(tt))
                set_err(err, errlen, "\"token_type\" is \"%.20s\", not Bearer",
                        json_string_value(tt));
            else
                set_err(err, errlen, "\"token_type\" is not a string");
            goto out;
        }
        copy_cut(out->token_type, sizeof(out->token_type), json_string_value(tt));
    }
    memcpy(out->access_token, s, json_string_length(at) + 1);
    rc = 0;
out:
    if (rc < 0)
        memset(out, 0, sizeof(*out));
    json_decref(root);
    return rc;
}
