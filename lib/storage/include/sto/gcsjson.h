/* sto/gcsjson.h — parsers for the JSON documents of the Google Cloud Storage JSON API and of the
 * OAuth2 token endpoint. Sans-I/O: each parser takes one whole response body (bodies are small
 * and bounded: the caller collects them, up to STO_GCSJSON_MAX_BODY bytes) and never keeps a
 * pointer into it.
 *
 * Documents:
 *   object list page  {"items":[{"name":"a/b","size":"123",...}], "prefixes":["a/c/"],
 *                      "nextPageToken":"..."}            (GET /storage/v1/b/BUCKET/o)
 *   object metadata   {"name":"a/b","size":"123",...}    (GET /storage/v1/b/BUCKET/o/NAME)
 *   error             {"error":{"code":403,"message":"...","errors":[{"reason":"forbidden",
 *                      "message":"...","domain":"global"}]}}   (any JSON API failure)
 *   token             {"access_token":"ya29...","expires_in":3599,"token_type":"Bearer"} or
 *                      {"error":"invalid_grant","error_description":"..."}  (POST token_uri)
 * "size" is a decimal string in the JSON API (64-bit values do not fit a JSON double); a JSON
 * integer is accepted too. Unknown fields are ignored everywhere; a known field of the wrong
 * type, a malformed number, a name with an embedded NUL or a document that is not a JSON object
 * makes the parse fail with a reason.
 *
 * Errors (negative errno values): -EINVAL malformed or wrong shape (reason in err), -EMSGSIZE
 * body longer than STO_GCSJSON_MAX_BODY, -ENOSPC a string longer than its output field,
 * -ENOMEM, or a negative value returned by a callback (passed through).
 *
 * Threads: reentrant, no global state (jansson's allocator is the process default).
 */
#ifndef STO_GCSJSON_H
#define STO_GCSJSON_H

#include <stddef.h>
#include <stdint.h>

#define STO_GCSJSON_MAX_BODY (4u << 20) /* 1000 list items with full metadata are ~0.8 MiB */
#define STO_GCSJSON_TOKEN_MAX 4096      /* access tokens and page tokens, bytes */
#define STO_GCSJSON_NAME_MAX 1024       /* GCS object names are at most 1024 bytes of UTF-8 */

/* One object of a list page. name is NUL-terminated and valid for the callback only. */
typedef struct sto_gcsjson_item {
    const char *name;
    size_t name_len;
    uint64_t size;
} sto_gcsjson_item_t;

typedef struct sto_gcsjson_list_cb {
    /* Each item, in document order. May be NULL. Return <0 to stop the parse with that code. */
    int (*item)(void *ud, const sto_gcsjson_item_t *it);
    /* Each prefix ("directory", ends in the delimiter), in document order. May be NULL. */
    int (*prefix)(void *ud, const char *p, size_t len);
    void *ud;
} sto_gcsjson_list_cb_t;

/* Parses a list page. Items come before prefixes. next_token receives nextPageToken ("" when
 * the page is the last); its capacity is tokcap (STO_GCSJSON_TOKEN_MAX + 1 is always enough).
 * On failure no callback has run (the document is checked whole before any callback) unless a
 * callback itself returned the error. */
int sto_gcsjson_list(const char *body, size_t len, const sto_gcsjson_list_cb_t *cb,
                     char *next_token, size_t tokcap, char *err, size_t errlen);

typedef struct sto_gcsjson_object {
    char name[STO_GCSJSON_NAME_MAX + 1]; /* "" when the document has no name (fields=size) */
    uint64_t size;
    uint64_t generation; /* 0 when absent */
} sto_gcsjson_object_t;

/* Parses object metadata; "size" is required. */
int sto_gcsjson_object(const char *body, size_t len, sto_gcsjson_object_t *out, char *err,
                       size_t errlen);

typedef struct sto_gcsjson_error {
    int code;          /* error.code, 0 when absent */
    char reason[48];   /* error.errors[0].reason, else error.status, else "" (cut to fit) */
    char message[200]; /* error.message, else errors[0].message, else "" (cut to fit) */
} sto_gcsjson_error_t;

/* Parses a JSON API error body. Also accepts the OAuth2 form {"error":"invalid_grant",
 * "error_description":"..."} (reason = error, message = error_description). Returns 0 or
 * -EINVAL when the body is not an error document; out is zeroed first either way. Strings too
 * long for their field are cut, not refused. */
int sto_gcsjson_error(const char *body, size_t len, sto_gcsjson_error_t *out);

typedef struct sto_gcsjson_token {
    char access_token[STO_GCSJSON_TOKEN_MAX + 1];
    uint64_t expires_in; /* seconds, > 0 */
    char token_type[32]; /* "Bearer" (or "" when absent) */
} sto_gcsjson_token_t;

/* Parses a token endpoint answer. Returns 0 with a token; -EACCES for an OAuth2 error document
 * (err gets "invalid_grant: Invalid JWT Signature."); -EINVAL when access_token or a positive
 * expires_in is missing, or token_type is present and not Bearer; -ENOSPC for a token longer
 * than STO_GCSJSON_TOKEN_MAX or containing characters that cannot go in a header. */
int sto_gcsjson_token(const char *body, size_t len, sto_gcsjson_token_t *out, char *err,
                      size_t errlen);

#endif
