/* sto/azxml.h — streaming parsers for Azure Blob XML response bodies (expat), and the writer of
 * the Put Block List body. Sans-I/O: bytes in, events out.
 *
 * Documents understood (the kind is decided by the root element's local name, any namespace):
 *   EnumerationResults   List Blobs (restype=container&comp=list): Prefix, Marker, MaxResults,
 *                        Delimiter, NextMarker; Blobs/Blob (Name, Properties/Content-Length,
 *                        Properties/Etag, Properties/Last-Modified) and Blobs/BlobPrefix (Name)
 *                        delivered by callbacks as each one closes.
 *   Error                any failed request: Code, Message, AuthenticationErrorDetail.
 * Unknown elements (Snapshot, Metadata, Tags, Content-Type, ...) are skipped with their content.
 * A <Name Encoded="true"> (names with characters XML cannot carry) is percent-decoded.
 *
 * Limits: a Name is at most STO_AZXML_NAME_MAX bytes (after decoding), a marker or prefix at most
 * STO_AZXML_MARKER_MAX; longer is an error. Error fields are truncated to their bounds instead,
 * at a UTF-8 character boundary. Nesting is at most STO_AZXML_DEPTH_MAX.
 *
 * Security: any <!DOCTYPE> stops the parser before its internal subset is read (no entity is
 * declared or expanded); parameter entities are never parsed.
 *
 * Ownership and threads: a parser belongs to one thread at a time. Callbacks run synchronously
 * inside sto_azxml_feed(); their strings are NUL-terminated, contain no NUL, and live only during
 * the callback. The config is copied by sto_azxml_new(). Nothing here does I/O or prints.
 *
 * Errors: 0 or a negative code: STO_EPROTO (malformed, truncated, unexpected or too long; the
 * reason and position are in sto_azxml_detail()), -ENOMEM, -EINVAL, RX_ESTATE (feeding a parser
 * after its final feed succeeded), or the negative value a callback returned. Errors are sticky
 * until sto_azxml_reset(). Entries delivered before a failure came from the start of the body; a
 * failed parse means the page is not trustworthy as a whole.
 */
#ifndef STO_AZXML_H
#define STO_AZXML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STO_AZXML_NAME_MAX 1024   /* Blob and BlobPrefix Name, decoded */
#define STO_AZXML_MARKER_MAX 2048 /* Prefix, Marker, NextMarker, Delimiter */
#define STO_AZXML_SHORT_MAX 64    /* Etag, Last-Modified, MaxResults */
#define STO_AZXML_CODE_MAX 64     /* Error Code (truncated) */
#define STO_AZXML_MESSAGE_MAX 512 /* Error Message (truncated) */
#define STO_AZXML_AUTH_MAX 512    /* Error AuthenticationErrorDetail (truncated) */
#define STO_AZXML_DEPTH_MAX 16
#define STO_AZXML_DETAIL_MAX 255

typedef enum sto_azxml_kind {
    STO_AZXML_ANY = 0, /* as `expect`: any; as a result: no root seen yet */
    STO_AZXML_LIST_BLOBS,
    STO_AZXML_ERROR,
} sto_azxml_kind_t;

/* One <Blob>. */
typedef struct sto_azxml_blob {
    const char *name;
    size_t name_len;
    uint64_t size; /* Properties/Content-Length; 0 when !has_size */
    bool has_size;
    const char *etag;          /* "" when absent */
    const char *last_modified; /* "" when absent */
} sto_azxml_blob_t;

/* Callbacks return 0 to go on or a negative code that stops the parse and is returned by
 * sto_azxml_feed(). NULL callbacks are skipped. */
typedef struct sto_azxml_callbacks {
    int (*blob)(void *ud, const sto_azxml_blob_t *b);
    int (*prefix)(void *ud, const char *name, size_t len); /* a <BlobPrefix> */
} sto_azxml_callbacks_t;

typedef struct sto_azxml_config {
    /* The kind the request expects; STO_AZXML_ANY accepts both. An Error document is always
     * accepted; any other root is STO_EPROTO. */
    sto_azxml_kind_t expect;
    sto_azxml_callbacks_t cb;
    void *ud;
} sto_azxml_config_t;

typedef struct sto_azxml_error {
    char code[STO_AZXML_CODE_MAX + 1];
    char message[STO_AZXML_MESSAGE_MAX + 1];
    char auth_detail[STO_AZXML_AUTH_MAX + 1];
    bool truncated;
} sto_azxml_error_t;

/* Single-valued fields; "" / 0 when absent. Complete once the final feed returned 0. */
typedef struct sto_azxml_doc {
    sto_azxml_kind_t kind;
    char prefix[STO_AZXML_MARKER_MAX + 1];
    char marker[STO_AZXML_MARKER_MAX + 1];
    char delimiter[STO_AZXML_MARKER_MAX + 1];
    char next_marker[STO_AZXML_MARKER_MAX + 1]; /* "" on the last page */
    uint32_t max_results;
    bool has_max_results;
    sto_azxml_error_t error;
    size_t n_blobs, n_prefixes; /* delivered so far */
} sto_azxml_doc_t;

typedef struct sto_azxml_parser sto_azxml_parser_t;

/* Creates a parser for one document. Returns 0, -EINVAL or -ENOMEM. About 16 KiB plus expat's. */
int sto_azxml_new(const sto_azxml_config_t *cfg, sto_azxml_parser_t **out);
/* NULL is fine. Not from inside a callback. */
void sto_azxml_free(sto_azxml_parser_t *p);
/* Ready for a new document with the same config. Returns 0 or -ENOMEM. Not from a callback. */
int sto_azxml_reset(sto_azxml_parser_t *p);
/* Feeds the next len bytes (any split works). is_final marks the end of the body; only then is
 * an incomplete or empty document detected. len may be 0. */
int sto_azxml_feed(sto_azxml_parser_t *p, const void *data, size_t len, bool is_final);
/* True once the root element has closed. */
bool sto_azxml_done(const sto_azxml_parser_t *p);
/* Valid until reset or free. */
const sto_azxml_doc_t *sto_azxml_doc(const sto_azxml_parser_t *p);
/* The last error with its position ("line 3, column 7: ..."), "" when none. */
const char *sto_azxml_detail(const sto_azxml_parser_t *p);

/* Put Block List body for 1..50000 block ids (non-empty, at most 64 bytes, no control
 * characters), each committed as <Latest>:
 *   <?xml version="1.0" encoding="utf-8"?>\n<BlockList><Latest>id</Latest>...</BlockList>
 * Writes a NUL-terminated document into buf and returns its length (cap must exceed it), or
 * -ENOSPC, or -EINVAL. */
int sto_azxml_block_list_body(const char *const ids[], size_t n, char *buf, size_t cap);

#endif
