/* sto/s3xml.h — streaming parsers for S3 XML response bodies (expat), and writers for the two
 * XML request bodies (DeleteObjects, CompleteMultipartUpload). Sans-I/O: bytes in, events out.
 *
 * Documents understood (the kind is decided by the root element's local name; any namespace or
 * none is accepted, so both xmlns="http://s3.amazonaws.com/doc/2006-03-01/" and plain documents
 * work):
 *   ListBucketResult                (ListObjectsV2, and v1 with Marker/NextMarker)
 *   Error                           (any failed request; also a 200 CompleteMultipartUpload)
 *   DeleteResult                    (DeleteObjects)
 *   InitiateMultipartUploadResult   (CreateMultipartUpload)
 *   CompleteMultipartUploadResult
 *   ListPartsResult
 *   ListAllMyBucketsResult          (ListBuckets)
 * Repeated entries (objects, common prefixes, deleted keys, per-key delete errors, parts,
 * buckets) are delivered by callbacks as they complete; single-valued fields are collected into a
 * sto_s3xml_doc_t read with sto_s3xml_doc(). Elements this parser does not know (Owner,
 * ChecksumAlgorithm, RestoreStatus, ...) are skipped with their content.
 *
 * Limits: each element's text is collected in a bounded buffer (STO_S3XML_*_MAX below; a longer
 * Key, Prefix, ETag, ... is STO_S3XML_ETOOLONG), nesting is at most STO_S3XML_DEPTH_MAX. Error
 * document fields (Code, Message, RequestId, HostId, Resource; flagged in error.truncated) and
 * the Code/Message of a delete error are truncated to their bounds instead, at a UTF-8 character
 * boundary.
 *
 * Security: DTDs are refused. Any <!DOCTYPE ...> stops the parser with STO_S3XML_EDTD before its
 * internal subset is read, so no entity is ever declared or expanded (billion laughs, external
 * entities); parameter entity parsing is off.
 *
 * Ownership and threads: a parser belongs to one thread at a time; separate parsers are
 * independent. Callbacks run synchronously inside sto_s3xml_feed(); the strings they receive are
 * NUL-terminated, contain no NUL, and are valid only during the callback. The config (including
 * the callbacks table) is copied by sto_s3xml_new(). Nothing here does I/O or prints.
 *
 * Errors: functions return 0 or a negative code: one of STO_S3XML_ERR_LIST below (name it with
 * rx_strerror() after sto_s3xml_err_register(), or sto_s3xml_strerror()), -ENOMEM, -EINVAL, or
 * the negative value returned by a callback. A parser's error is sticky: later feeds return it
 * again until sto_s3xml_reset(). sto_s3xml_detail() says what and where ("line 3, column 7: ...").
 * Entries delivered before a failure came from the start of the body; how many of them arrive
 * before a malformed byte is noticed can depend on how the body was chunked, so a failed parse
 * means the page is not trustworthy as a whole.
 */
#ifndef STO_S3XML_H
#define STO_S3XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sto/err.h"

/* Error codes: -11100..-11199 (STO_S3XML_ERR_BASE - offset). */
#define STO_S3XML_ERR_BASE (STO_ERR_BASE - 100)

#define STO_S3XML_ERR_LIST(X)                                                                      \
    X(STO_S3XML_ESYNTAX, 1, "malformed XML")                                                       \
    X(STO_S3XML_ETRUNCATED, 2, "XML document ends before it is complete")                          \
    X(STO_S3XML_EDTD, 3, "XML DOCTYPE or entity declaration refused")                              \
    X(STO_S3XML_EKIND, 4, "unexpected S3 XML document type")                                       \
    X(STO_S3XML_ESTRUCT, 5, "unexpected S3 XML document structure")                                \
    X(STO_S3XML_EMISSING, 6, "required S3 XML element missing")                                    \
    X(STO_S3XML_EDUP, 7, "S3 XML element repeated")                                                \
    X(STO_S3XML_ETOOLONG, 8, "S3 XML element text too long")                                       \
    X(STO_S3XML_EVALUE, 9, "invalid value in S3 XML element")                                      \
    X(STO_S3XML_EDEPTH, 10, "XML nesting too deep")                                                \
    X(STO_S3XML_EENCODING, 11, "EncodingType=url announced after entries were delivered")          \
    X(STO_S3XML_ESTATE, 12, "S3 XML parser already finished; reset it")

enum sto_s3xml_err {
#define STO_S3XML_ERR_ENUM(name, off, msg) name = STO_S3XML_ERR_BASE - (off),
    STO_S3XML_ERR_LIST(STO_S3XML_ERR_ENUM)
#undef STO_S3XML_ERR_ENUM
};

/* Registers the range with rx_strerror(). Idempotent; call once from main. */
void sto_s3xml_err_register(void);
/* Message for a code of this range, else NULL. Never depends on registration. */
const char *sto_s3xml_strerror(int code);

/* Bounds, in bytes, excluding the terminating NUL. Keys and prefixes are checked after URL
 * decoding. */
#define STO_S3XML_KEY_MAX 1024       /* Key, Prefix, Delimiter, StartAfter, Marker, NextMarker */
#define STO_S3XML_TOKEN_MAX 2048     /* ContinuationToken, NextContinuationToken */
#define STO_S3XML_BUCKET_MAX 255     /* Name, Bucket */
#define STO_S3XML_ETAG_MAX 128       /* ETag */
#define STO_S3XML_SHORT_MAX 64       /* LastModified, CreationDate, StorageClass, EncodingType */
#define STO_S3XML_UPLOAD_ID_MAX 1024 /* UploadId */
#define STO_S3XML_LOCATION_MAX 4096  /* Location */
#define STO_S3XML_CODE_MAX 64        /* Error Code (truncated) */
#define STO_S3XML_MESSAGE_MAX 512    /* Error Message (truncated) */
#define STO_S3XML_REQUEST_ID_MAX 128 /* Error RequestId (truncated) */
#define STO_S3XML_HOST_ID_MAX 256    /* Error HostId (truncated) */
#define STO_S3XML_RESOURCE_MAX 1024  /* Error Resource (truncated) */
#define STO_S3XML_DEPTH_MAX 16       /* element nesting, root = 1 */
#define STO_S3XML_DETAIL_MAX 255     /* sto_s3xml_detail() */

typedef enum sto_s3xml_kind {
    STO_S3XML_ANY = 0, /* as `expect`: accept any kind below; as a result: no root seen yet */
    STO_S3XML_LIST_OBJECTS,
    STO_S3XML_ERROR,
    STO_S3XML_DELETE_RESULT,
    STO_S3XML_INITIATE_MPU,
    STO_S3XML_COMPLETE_MPU,
    STO_S3XML_LIST_PARTS,
    STO_S3XML_LIST_BUCKETS,
} sto_s3xml_kind_t;

/* One <Contents> of a ListBucketResult. Absent optional fields are "". */
typedef struct sto_s3xml_object {
    const char *key; /* URL-decoded when the listing is URL-encoded */
    size_t key_len;
    uint64_t size; /* 0 when !has_size */
    bool has_size;
    const char *etag; /* as sent, quotes included */
    const char *last_modified;
    const char *storage_class;
} sto_s3xml_object_t;

/* One <Error> of a DeleteResult. */
typedef struct sto_s3xml_delete_error {
    const char *key; /* "" when the server sent none */
    size_t key_len;
    const char *code;    /* truncated to STO_S3XML_CODE_MAX */
    const char *message; /* truncated to STO_S3XML_MESSAGE_MAX */
} sto_s3xml_delete_error_t;

/* One <Part> of a ListPartsResult. */
typedef struct sto_s3xml_part {
    uint32_t part_number;
    const char *etag;
    uint64_t size;
    bool has_size;
    const char *last_modified;
} sto_s3xml_part_t;

/* One <Bucket> of a ListAllMyBucketsResult. */
typedef struct sto_s3xml_bucket {
    const char *name;
    const char *creation_date; /* "" when absent */
} sto_s3xml_bucket_t;

/* Each callback returns 0 to go on or a negative code, which aborts the parse and is returned by
 * sto_s3xml_feed(). NULL callbacks are skipped. */
typedef struct sto_s3xml_callbacks {
    int (*object)(void *ud, const sto_s3xml_object_t *obj);
    int (*common_prefix)(void *ud, const char *prefix, size_t len);
    int (*deleted)(void *ud, const char *key, size_t len);
    int (*delete_error)(void *ud, const sto_s3xml_delete_error_t *err);
    int (*part)(void *ud, const sto_s3xml_part_t *part);
    int (*bucket)(void *ud, const sto_s3xml_bucket_t *bucket);
} sto_s3xml_callbacks_t;

typedef struct sto_s3xml_config {
    /* The document kind the request expects; STO_S3XML_ANY accepts all. An Error document is
     * always accepted (S3 may answer 200 with an Error body); any other root is STO_S3XML_EKIND. */
    sto_s3xml_kind_t expect;
    /* Set when the request carried encoding-type=url. Keys, prefixes, Delimiter, StartAfter,
     * Marker and NextMarker are then URL-decoded ('+' is a space). Without it they are decoded
     * only if <EncodingType>url</EncodingType> precedes the first entry; announced after an
     * entry was delivered undecoded, it is STO_S3XML_EENCODING (some servers put it last). */
    bool url_decode;
    sto_s3xml_callbacks_t cb;
    void *ud;
} sto_s3xml_config_t;

/* Error document fields, truncated to their bounds. */
typedef struct sto_s3xml_error {
    char code[STO_S3XML_CODE_MAX + 1];
    char message[STO_S3XML_MESSAGE_MAX + 1];
    char request_id[STO_S3XML_REQUEST_ID_MAX + 1];
    char host_id[STO_S3XML_HOST_ID_MAX + 1];
    char resource[STO_S3XML_RESOURCE_MAX + 1];
    bool truncated; /* some field was longer than its bound */
} sto_s3xml_error_t;

/* Single-valued fields of the document; "" / 0 / false when absent (see the has_* flags). Only
 * complete once sto_s3xml_feed(..., is_final) returned 0; Prefix, Delimiter, StartAfter, Marker
 * and NextMarker are URL-decoded at the end of the document when the listing is encoded. */
typedef struct sto_s3xml_doc {
    sto_s3xml_kind_t kind; /* from the root element; STO_S3XML_ANY until it is seen */

    /* ListBucketResult, ListPartsResult, ListAllMyBucketsResult */
    bool is_truncated;
    /* ListBucketResult */
    bool url_encoded; /* keys were URL-decoded */
    bool has_key_count, has_max_keys;
    uint32_t key_count, max_keys;
    char name[STO_S3XML_BUCKET_MAX + 1];
    char prefix[STO_S3XML_KEY_MAX + 1];
    char delimiter[STO_S3XML_KEY_MAX + 1];
    char start_after[STO_S3XML_KEY_MAX + 1];
    char marker[STO_S3XML_KEY_MAX + 1];      /* v1 */
    char next_marker[STO_S3XML_KEY_MAX + 1]; /* v1 */
    char encoding_type[STO_S3XML_SHORT_MAX + 1];
    char continuation_token[STO_S3XML_TOKEN_MAX + 1]; /* also ListAllMyBucketsResult */
    char next_continuation_token[STO_S3XML_TOKEN_MAX + 1];

    /* multipart documents */
    char bucket[STO_S3XML_BUCKET_MAX + 1];
    char key[STO_S3XML_KEY_MAX + 1];
    char upload_id[STO_S3XML_UPLOAD_ID_MAX + 1];
    char etag[STO_S3XML_ETAG_MAX + 1];         /* CompleteMultipartUploadResult */
    char location[STO_S3XML_LOCATION_MAX + 1]; /* CompleteMultipartUploadResult */
    bool has_next_part_number_marker;          /* ListPartsResult */
    uint32_t part_number_marker, next_part_number_marker, max_parts;

    /* Error */
    sto_s3xml_error_t error;

    /* entries delivered so far */
    size_t n_objects, n_prefixes, n_deleted, n_delete_errors, n_parts, n_buckets;
} sto_s3xml_doc_t;

typedef struct sto_s3xml_parser sto_s3xml_parser_t;

/* Creates a parser for one document. Returns 0, -EINVAL (cfg or out NULL, bad kind) or -ENOMEM.
 * The parser is about 25 KiB plus expat's buffers. */
int sto_s3xml_new(const sto_s3xml_config_t *cfg, sto_s3xml_parser_t **out);
/* Frees the parser (NULL is fine). Not from inside one of its callbacks. */
void sto_s3xml_free(sto_s3xml_parser_t *p);
/* Makes the parser ready for a new document with the same config. Returns 0 or -ENOMEM. Not
 * from inside one of its callbacks. */
int sto_s3xml_reset(sto_s3xml_parser_t *p);

/* Feeds the next len bytes (any split: one byte at a time works). is_final marks the end of the
 * body; only then is an incomplete document (STO_S3XML_ETRUNCATED) or an empty body detected.
 * Returns 0 or a negative code (see the top of this file). After a successful final feed, more
 * feeding is STO_S3XML_ESTATE. len may be 0. */
int sto_s3xml_feed(sto_s3xml_parser_t *p, const void *data, size_t len, bool is_final);

/* True once the root element has been closed. */
bool sto_s3xml_done(const sto_s3xml_parser_t *p);
/* The document's fields; valid until the parser is reset or freed. */
const sto_s3xml_doc_t *sto_s3xml_doc(const sto_s3xml_parser_t *p);
/* The last error's description with its position, "" when there was none. Same lifetime. */
const char *sto_s3xml_detail(const sto_s3xml_parser_t *p);

/* Request bodies. Both write a NUL-terminated document into buf and return its length without
 * the NUL (so cap must exceed it), or -ENOSPC when cap is too small (buf is then unspecified but
 * NUL-terminated when cap > 0), or -EINVAL. Element text is XML-escaped (& < > and CR); other
 * C0 control characters cannot be carried by XML 1.0 and are -EINVAL.
 *
 * DeleteObjects body: 1..1000 non-empty keys, <Quiet>true</Quiet> when quiet:
 *   <?xml version="1.0" encoding="UTF-8"?>\n
 *   <Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>true</Quiet>
 *   <Object><Key>k</Key></Object>...</Delete>                      (one line after the decl.) */
int sto_s3xml_delete_body(const char *const keys[], size_t n, bool quiet, char *buf, size_t cap);

/* A part for CompleteMultipartUpload: number 1..10000, strictly ascending across the list, and
 * the ETag as the UploadPart response gave it (quotes included). */
typedef struct sto_s3xml_part_ref {
    uint32_t part_number;
    const char *etag;
} sto_s3xml_part_ref_t;

/* CompleteMultipartUpload body for 1..10000 parts:
 *   <?xml version="1.0" encoding="UTF-8"?>\n
 *   <CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
 *   <Part><PartNumber>1</PartNumber><ETag>"..."</ETag></Part>...</CompleteMultipartUpload> */
int sto_s3xml_complete_mpu_body(const sto_s3xml_part_ref_t parts[], size_t n, char *buf,
                                size_t cap);

#endif
