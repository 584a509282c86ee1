/* S3 XML response parsers (expat) and request body writers. See sto/s3xml.h.
 *
 * The parser keeps a stack of "contexts": each open element is a known container (the root, a
 * <Contents>, a <Part>, ...), a leaf whose text is collected (<Key>, <Size>, ...), or a skipped
 * element (anything unknown, with its whole subtree). A rules table says which child of which
 * container is what; only one leaf can be open at a time, so one text buffer serves them all. */
#include <errno.h>
#include <expat.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rx/err.h"
#include "sto/s3xml.h"

/* ---- errors ------------------------------------------------------------------------------- */

RX_ERR_TABLE(STO_S3XML_ERR_LIST, STO_S3XML_ERR_BASE, s3xml_err_msg, s3xml_err_table);

const char *sto_s3xml_strerror(int code)
{
    return s3xml_err_msg(code);
}

void sto_s3xml_err_register(void)
{
    rx_err_register(&s3xml_err_table);
}

/* ---- element names ------------------------------------------------------------------------ */

enum elem {
    E_UNKNOWN,
    E_Bucket,
    E_Buckets,
    E_Code,
    E_CommonPrefixes,
    E_CompleteMultipartUploadResult,
    E_CompleteMultipartUploadResponse, /* moto's name for the root */
    E_Contents,
    E_ContinuationToken,
    E_CreationDate,
    E_DeleteResult,
    E_Deleted,
    E_Delimiter,
    E_ETag,
    E_EncodingType,
    E_Error,
    E_HostId,
    E_InitiateMultipartUploadResult,
    E_IsTruncated,
    E_Key,
    E_KeyCount,
    E_LastModified,
    E_ListAllMyBucketsResult,
    E_ListBucketResult,
    E_ListPartsResult,
    E_Location,
    E_Marker,
    E_MaxKeys,
    E_MaxParts,
    E_Message,
    E_Name,
    E_NextContinuationToken,
    E_NextMarker,
    E_NextPartNumberMarker,
    E_Part,
    E_PartNumber,
    E_PartNumberMarker,
    E_Prefix,
    E_RequestId,
    E_Resource,
    E_Size,
    E_StartAfter,
    E_StorageClass,
    E_UploadId,
    E_COUNT
};

static const char *const elem_names[E_COUNT] = {
#define N(x) [E_##x] = #x
    [E_UNKNOWN] = "?",
    N(Bucket),
    N(Buckets),
    N(Code),
    N(CommonPrefixes),
    N(CompleteMultipartUploadResult),
    N(CompleteMultipartUploadResponse),
    N(Contents),
    N(ContinuationToken),
    N(CreationDate),
    N(DeleteResult),
    N(Deleted),
    N(Delimiter),
    N(ETag),
    N(EncodingType),
    N(Error),
    N(HostId),
    N(InitiateMultipartUploadResult),
    N(IsTruncated),
    N(Key),
    N(KeyCount),
    N(LastModified),
    N(ListAllMyBucketsResult),
    N(ListBucketResult),
    N(ListPartsResult),
    N(Location),
    N(Marker),
    N(MaxKeys),
    N(MaxParts),
    N(Message),
    N(Name),
    N(NextContinuationToken),
    N(NextMarker),
    N(NextPartNumberMarker),
    N(Part),
    N(PartNumber),
    N(PartNumberMarker),
    N(Prefix),
    N(RequestId),
    N(Resource),
    N(Size),
    N(StartAfter),
    N(StorageClass),
    N(UploadId),
#undef N
};

static enum elem elem_lookup(const char *s)
{
    for (int i = 1; i < E_COUNT; i++) {
        if (elem_names[i][0] == s[0] && strcmp(elem_names[i], s) == 0)
            return (enum elem)i;
    }
    return E_UNKNOWN;
}

/* ---- contexts, fields and rules ----------------------------------------------------------- */

enum ctx {
    C_NONE,
    C_LIST,
    C_CONTENTS,
    C_CPREFIX,
    C_ERROR,
    C_DELETE,
    C_DELETED,
    C_DELERR,
    C_INIT,
    C_COMPLETE,
    C_PARTS,
    C_PART,
    C_BUCKETS_ROOT,
    C_BUCKETS,
    C_BUCKET,
    C_LEAF,
    C_SKIP,
};

enum field {
    F_NONE,
    /* ListBucketResult */
    F_LIST_NAME,
    F_LIST_PREFIX,
    F_LIST_DELIM,
    F_LIST_MAXKEYS,
    F_LIST_KEYCOUNT,
    F_TRUNC, /* IsTruncated of every listing */
    F_CTOKEN,
    F_LIST_NCTOKEN,
    F_LIST_STARTAFTER,
    F_LIST_ENCTYPE,
    F_LIST_MARKER,
    F_LIST_NMARKER,
    /* entries */
    F_OBJ_KEY,
    F_CP_PREFIX,
    F_E_SIZE,
    F_E_ETAG,
    F_E_LM,
    F_E_SC,
    F_E_KEY,
    F_E_CODE,
    F_E_MSG,
    F_E_PARTNUM,
    F_E_NAME,
    F_E_DATE,
    /* Error */
    F_ERR_CODE,
    F_ERR_MSG,
    F_ERR_RID,
    F_ERR_HID,
    F_ERR_RES,
    /* multipart */
    F_DOC_BUCKET,
    F_DOC_KEY,
    F_DOC_UPLOADID,
    F_DOC_ETAG,
    F_DOC_LOCATION,
    F_LP_PNM,
    F_LP_NPNM,
    F_LP_MAXPARTS,
    F_COUNT
};

_Static_assert(F_COUNT <= 64, "seen bits are one uint64_t");

enum {
    FL_URL = 1,   /* URL-decoded when the listing is encoded */
    FL_TRUNC = 2, /* truncated to max instead of failing */
};

static const struct field_desc {
    unsigned short max;
    unsigned char flags;
} fields[F_COUNT] = {
    [F_LIST_NAME] = {STO_S3XML_BUCKET_MAX, 0},
    [F_LIST_PREFIX] = {STO_S3XML_KEY_MAX, FL_URL},
    [F_LIST_DELIM] = {STO_S3XML_KEY_MAX, FL_URL},
    [F_LIST_MAXKEYS] = {32, 0},
    [F_LIST_KEYCOUNT] = {32, 0},
    [F_TRUNC] = {32, 0},
    [F_CTOKEN] = {STO_S3XML_TOKEN_MAX, 0},
    [F_LIST_NCTOKEN] = {STO_S3XML_TOKEN_MAX, 0},
    [F_LIST_STARTAFTER] = {STO_S3XML_KEY_MAX, FL_URL},
    [F_LIST_ENCTYPE] = {STO_S3XML_SHORT_MAX, 0},
    [F_LIST_MARKER] = {STO_S3XML_KEY_MAX, FL_URL},
    [F_LIST_NMARKER] = {STO_S3XML_KEY_MAX, FL_URL},
    [F_OBJ_KEY] = {STO_S3XML_KEY_MAX, FL_URL},
    [F_CP_PREFIX] = {STO_S3XML_KEY_MAX, FL_URL},
    [F_E_SIZE] = {32, 0},
    [F_E_ETAG] = {STO_S3XML_ETAG_MAX, 0},
    [F_E_LM] = {STO_S3XML_SHORT_MAX, 0},
    [F_E_SC] = {STO_S3XML_SHORT_MAX, 0},
    [F_E_KEY] = {STO_S3XML_KEY_MAX, 0},
    [F_E_CODE] = {STO_S3XML_CODE_MAX, FL_TRUNC},
    [F_E_MSG] = {STO_S3XML_MESSAGE_MAX, FL_TRUNC},
    [F_E_PARTNUM] = {32, 0},
    [F_E_NAME] = {STO_S3XML_BUCKET_MAX, 0},
    [F_E_DATE] = {STO_S3XML_SHORT_MAX, 0},
    [F_ERR_CODE] = {STO_S3XML_CODE_MAX, FL_TRUNC},
    [F_ERR_MSG] = {STO_S3XML_MESSAGE_MAX, FL_TRUNC},
    [F_ERR_RID] = {STO_S3XML_REQUEST_ID_MAX, FL_TRUNC},
    [F_ERR_HID] = {STO_S3XML_HOST_ID_MAX, FL_TRUNC},
    [F_ERR_RES] = {STO_S3XML_RESOURCE_MAX, FL_TRUNC},
    [F_DOC_BUCKET] = {STO_S3XML_BUCKET_MAX, 0},
    [F_DOC_KEY] = {STO_S3XML_KEY_MAX, 0},
    [F_DOC_UPLOADID] = {STO_S3XML_UPLOAD_ID_MAX, 0},
    [F_DOC_ETAG] = {STO_S3XML_ETAG_MAX, 0},
    [F_DOC_LOCATION] = {STO_S3XML_LOCATION_MAX, 0},
    [F_LP_PNM] = {32, 0},
    [F_LP_NPNM] = {32, 0},
    [F_LP_MAXPARTS] = {32, 0},
};

/* The raw text of a URL-encoded field may be three times its decoded bound. */
#define TEXT_CAP                                                                                   \
    (STO_S3XML_LOCATION_MAX > 3 * STO_S3XML_KEY_MAX ? STO_S3XML_LOCATION_MAX                       \
                                                    : 3 * STO_S3XML_KEY_MAX)

/* In container `ctx`, element `elem` opens container `child` or is leaf `field`. */
static const struct rule {
    unsigned char ctx, elem, child, field;
} rules[] = {
    {C_LIST, E_Name, C_LEAF, F_LIST_NAME},
    {C_LIST, E_Prefix, C_LEAF, F_LIST_PREFIX},
    {C_LIST, E_Delimiter, C_LEAF, F_LIST_DELIM},
    {C_LIST, E_MaxKeys, C_LEAF, F_LIST_MAXKEYS},
    {C_LIST, E_KeyCount, C_LEAF, F_LIST_KEYCOUNT},
    {C_LIST, E_IsTruncated, C_LEAF, F_TRUNC},
    {C_LIST, E_ContinuationToken, C_LEAF, F_CTOKEN},
    {C_LIST, E_NextContinuationToken, C_LEAF, F_LIST_NCTOKEN},
    {C_LIST, E_StartAfter, C_LEAF, F_LIST_STARTAFTER},
    {C_LIST, E_EncodingType, C_LEAF, F_LIST_ENCTYPE},
    {C_LIST, E_Marker, C_LEAF, F_LIST_MARKER},
    {C_LIST, E_NextMarker, C_LEAF, F_LIST_NMARKER},
    {C_LIST, E_Contents, C_CONTENTS, F_NONE},
    {C_LIST, E_CommonPrefixes, C_CPREFIX, F_NONE},
    {C_CONTENTS, E_Key, C_LEAF, F_OBJ_KEY},
    {C_CONTENTS, E_Size, C_LEAF, F_E_SIZE},
    {C_CONTENTS, E_ETag, C_LEAF, F_E_ETAG},
    {C_CONTENTS, E_LastModified, C_LEAF, F_E_LM},
    {C_CONTENTS, E_StorageClass, C_LEAF, F_E_SC},
    {C_CPREFIX, E_Prefix, C_LEAF, F_CP_PREFIX},
    {C_ERROR, E_Code, C_LEAF, F_ERR_CODE},
    {C_ERROR, E_Message, C_LEAF, F_ERR_MSG},
    {C_ERROR, E_RequestId, C_LEAF, F_ERR_RID},
    {C_ERROR, E_HostId, C_LEAF, F_ERR_HID},
    {C_ERROR, E_Resource, C_LEAF, F_ERR_RES},
    {C_DELETE, E_Deleted, C_DELETED, F_NONE},
    {C_DELETE, E_Error, C_DELERR, F_NONE},
    {C_DELETED, E_Key, C_LEAF, F_E_KEY},
    {C_DELERR, E_Key, C_LEAF, F_E_KEY},
    {C_DELERR, E_Code, C_LEAF, F_E_CODE},
    {C_DELERR, E_Message, C_LEAF, F_E_MSG},
    {C_INIT, E_Bucket, C_LEAF, F_DOC_BUCKET},
    {C_INIT, E_Key, C_LEAF, F_DOC_KEY},
    {C_INIT, E_UploadId, C_LEAF, F_DOC_UPLOADID},
    {C_COMPLETE, E_Location, C_LEAF, F_DOC_LOCATION},
    {C_COMPLETE, E_Bucket, C_LEAF, F_DOC_BUCKET},
    {C_COMPLETE, E_Key, C_LEAF, F_DOC_KEY},
    {C_COMPLETE, E_ETag, C_LEAF, F_DOC_ETAG},
    {C_PARTS, E_Bucket, C_LEAF, F_DOC_BUCKET},
    {C_PARTS, E_Key, C_LEAF, F_DOC_KEY},
    {C_PARTS, E_UploadId, C_LEAF, F_DOC_UPLOADID},
    {C_PARTS, E_PartNumberMarker, C_LEAF, F_LP_PNM},
    {C_PARTS, E_NextPartNumberMarker, C_LEAF, F_LP_NPNM},
    {C_PARTS, E_MaxParts, C_LEAF, F_LP_MAXPARTS},
    {C_PARTS, E_IsTruncated, C_LEAF, F_TRUNC},
    {C_PARTS, E_Part, C_PART, F_NONE},
    {C_PART, E_PartNumber, C_LEAF, F_E_PARTNUM},
    {C_PART, E_ETag, C_LEAF, F_E_ETAG},
    {C_PART, E_Size, C_LEAF, F_E_SIZE},
    {C_PART, E_LastModified, C_LEAF, F_E_LM},
    {C_BUCKETS_ROOT, E_Buckets, C_BUCKETS, F_NONE},
    {C_BUCKETS_ROOT, E_ContinuationToken, C_LEAF, F_CTOKEN},
    {C_BUCKETS_ROOT, E_IsTruncated, C_LEAF, F_TRUNC},
    {C_BUCKETS, E_Bucket, C_BUCKET, F_NONE},
    {C_BUCKET, E_Name, C_LEAF, F_E_NAME},
    {C_BUCKET, E_CreationDate, C_LEAF, F_E_DATE},
};

static const struct rule *rule_find(enum ctx c, enum elem e)
{
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        if (rules[i].ctx == c && rules[i].elem == e)
            return &rules[i];
    }
    return NULL;
}

/* Elements whose appearance in the wrong place means the document is not what it claims to be
 * (anything else unknown is skipped as an extension). */
static bool elem_structural(enum elem e)
{
    switch (e) {
    case E_Contents:
    case E_CommonPrefixes:
    case E_Deleted:
    case E_Part:
    case E_ListBucketResult:
    case E_DeleteResult:
    case E_InitiateMultipartUploadResult:
    case E_CompleteMultipartUploadResult:
    case E_CompleteMultipartUploadResponse:
    case E_ListPartsResult:
    case E_ListAllMyBucketsResult:
        return true;
    default:
        return false;
    }
}

static const struct root {
    unsigned char elem, ctx, kind;
} roots[] = {
    {E_ListBucketResult, C_LIST, STO_S3XML_LIST_OBJECTS},
    {E_Error, C_ERROR, STO_S3XML_ERROR},
    {E_DeleteResult, C_DELETE, STO_S3XML_DELETE_RESULT},
    {E_InitiateMultipartUploadResult, C_INIT, STO_S3XML_INITIATE_MPU},
    {E_CompleteMultipartUploadResult, C_COMPLETE, STO_S3XML_COMPLETE_MPU},
    {E_CompleteMultipartUploadResponse, C_COMPLETE, STO_S3XML_COMPLETE_MPU},
    {E_ListPartsResult, C_PARTS, STO_S3XML_LIST_PARTS},
    {E_ListAllMyBucketsResult, C_BUCKETS_ROOT, STO_S3XML_LIST_BUCKETS},
};

/* ---- the parser --------------------------------------------------------------------------- */

#define NS_SEP '|'

struct state {
    int err;        /* sticky error, 0 if none */
    bool done;      /* root closed */
    bool finished;  /* final feed succeeded */
    bool enc_url;   /* <EncodingType>url</EncodingType> seen */
    bool undecoded; /* an entry that URL decoding would change went out undecoded */
    int depth;
    unsigned char ctx[STO_S3XML_DEPTH_MAX];
    unsigned char elem[STO_S3XML_DEPTH_MAX];
    enum field field; /* the open leaf */
    uint64_t seen;    /* fields seen in the open containers */
    uint32_t raw_url; /* doc-level F_LIST_* fields stored without URL decoding (bit = field) */
    size_t text_len;
    bool text_trunc;
    /* the entry being built */
    uint64_t e_size;
    uint32_t e_num;
    size_t e_key_len;
    char e_key[STO_S3XML_KEY_MAX + 1];
    char e_etag[STO_S3XML_ETAG_MAX + 1];
    char e_lm[STO_S3XML_SHORT_MAX + 1];
    char e_sc[STO_S3XML_SHORT_MAX + 1];
    char e_code[STO_S3XML_CODE_MAX + 1];
    char e_msg[STO_S3XML_MESSAGE_MAX + 1];
    char e_name[STO_S3XML_BUCKET_MAX + 1];
    char text[TEXT_CAP + 1];
    char detail[STO_S3XML_DETAIL_MAX + 1];
    sto_s3xml_doc_t doc;
};

struct sto_s3xml_parser {
    XML_Parser xp;
    sto_s3xml_config_t cfg;
    struct state s;
};

static void set_detail(sto_s3xml_parser_t *p, const char *fmt, va_list ap)
{
    int n = snprintf(p->s.detail, sizeof(p->s.detail),
                     "line %lu, column %lu: ", (unsigned long)XML_GetCurrentLineNumber(p->xp),
                     (unsigned long)XML_GetCurrentColumnNumber(p->xp));
    if (n < 0 || (size_t)n >= sizeof(p->s.detail))
        return;
    vsnprintf(p->s.detail + n, sizeof(p->s.detail) - (size_t)n, fmt, ap);
}

/* Records the first error and stops expat; called from handlers only. */
static void fail(sto_s3xml_parser_t *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(sto_s3xml_parser_t *p, int code, const char *fmt, ...)
{
    if (p->s.err)
        return;
    p->s.err = code;
    va_list ap;
    va_start(ap, fmt);
    set_detail(p, fmt, ap);
    va_end(ap);
    XML_StopParser(p->xp, XML_FALSE);
}

static bool decoding(const sto_s3xml_parser_t *p)
{
    return p->cfg.url_decode || p->s.enc_url;
}

static const char *local_name(const char *name)
{
    const char *sep = strrchr(name, NS_SEP);
    return sep ? sep + 1 : name;
}

static bool xml_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Trims XML whitespace; returns the start, sets *len. */
static const char *trim(const char *s, size_t *len)
{
    size_t n = *len;
    while (n && xml_space(*s)) {
        s++;
        n--;
    }
    while (n && xml_space(s[n - 1]))
        n--;
    *len = n;
    return s;
}

static int parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    s = trim(s, &len);
    if (len == 0)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int parse_bool(const char *s, size_t len, bool *out)
{
    s = trim(s, &len);
    if (len == 4 && strncasecmp(s, "true", 4) == 0)
        *out = true;
    else if (len == 5 && strncasecmp(s, "false", 5) == 0)
        *out = false;
    else
        return -1;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* In place; '+' is a space (S3 encodes like a form). Refuses bad escapes and %00. */
static int url_decode(char *s, size_t *len)
{
    size_t o = 0, n = *len;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            if (h < 0 || l < 0 || (h == 0 && l == 0))
                return -1;
            c = (char)(h * 16 + l);
            i += 2;
        }
        s[o++] = c;
    }
    s[o] = '\0';
    *len = o;
    return 0;
}

static bool needs_decoding(const char *s)
{
    return strpbrk(s, "%+") != NULL;
}

/* Cuts a truncated UTF-8 string at the last complete character. */
static size_t utf8_trim(const char *s, size_t n)
{
    size_t i = n, back = 0;
    while (i > 0 && back < 4) {
        unsigned char c = (unsigned char)s[i - 1];
        if ((c & 0xC0) != 0x80) {
            size_t need = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
            return back + 1 >= need ? n : i - 1;
        }
        i--;
        back++;
    }
    return n;
}

static void copy_str(char *dst, const char *src, size_t len)
{
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static int call_result(sto_s3xml_parser_t *p, int rc)
{
    if (rc < 0)
        fail(p, rc, "callback returned %d", rc);
    return rc < 0 ? rc : 0;
}

/* ---- leaf and container ends -------------------------------------------------------------- */

static void leaf_end(sto_s3xml_parser_t *p)
{
    struct state *s = &p->s;
    sto_s3xml_doc_t *d = &s->doc;
    enum field f = s->field;
    const struct field_desc *fd = &fields[f];
    const char *name = elem_names[s->elem[s->depth]];
    char *t = s->text;
    size_t n = s->text_len;
    t[n] = '\0';
    uint64_t v = 0;

    if ((fd->flags & FL_URL) && decoding(p)) {
        if (url_decode(t, &n) != 0) {
            fail(p, STO_S3XML_EVALUE, "bad URL encoding in <%s>", name);
            return;
        }
    }
    if (fd->flags & FL_TRUNC) {
        n = s->text_trunc ? utf8_trim(t, n) : n;
        t[n] = '\0';
        if (s->text_trunc && f >= F_ERR_CODE && f <= F_ERR_RES)
            d->error.truncated = true;
    } else if (n > fd->max) {
        fail(p, STO_S3XML_ETOOLONG, "<%s> longer than %u bytes", name, (unsigned)fd->max);
        return;
    }
    if ((fd->flags & FL_URL) && !decoding(p) && f >= F_LIST_NAME && f <= F_LIST_NMARKER)
        s->raw_url |= 1u << f;

    switch (f) {
    case F_LIST_MAXKEYS:
    case F_LIST_KEYCOUNT:
    case F_LP_PNM:
    case F_LP_NPNM:
    case F_LP_MAXPARTS:
    case F_E_PARTNUM:
        if (parse_u64(t, n, UINT32_MAX, &v) != 0 || (f == F_E_PARTNUM && v == 0)) {
            fail(p, STO_S3XML_EVALUE, "<%s> is not a valid number", name);
            return;
        }
        break;
    case F_E_SIZE:
        if (parse_u64(t, n, UINT64_MAX, &v) != 0) {
            fail(p, STO_S3XML_EVALUE, "<%s> is not a valid size", name);
            return;
        }
        break;
    default:
        break;
    }

    switch (f) {
    case F_LIST_NAME:
        copy_str(d->name, t, n);
        break;
    case F_LIST_PREFIX:
        copy_str(d->prefix, t, n);
        break;
    case F_LIST_DELIM:
        copy_str(d->delimiter, t, n);
        break;
    case F_LIST_MAXKEYS:
        d->max_keys = (uint32_t)v;
        d->has_max_keys = true;
        break;
    case F_LIST_KEYCOUNT:
        d->key_count = (uint32_t)v;
        d->has_key_count = true;
        break;
    case F_TRUNC:
        if (parse_bool(t, n, &d->is_truncated) != 0)
            fail(p, STO_S3XML_EVALUE, "<%s> is not true or false", name);
        break;
    case F_CTOKEN:
        copy_str(d->continuation_token, t, n);
        break;
    case F_LIST_NCTOKEN:
        copy_str(d->next_continuation_token, t, n);
        break;
    case F_LIST_STARTAFTER:
        copy_str(d->start_after, t, n);
        break;
    case F_LIST_ENCTYPE:
        copy_str(d->encoding_type, t, n);
        if (strcasecmp(d->encoding_type, "url") == 0) {
            if (s->undecoded && !p->cfg.url_decode) {
                fail(p, STO_S3XML_EENCODING,
                     "<EncodingType>url after entries that needed "
                     "decoding; set url_decode");
                return;
            }
            s->enc_url = true;
            d->url_encoded = true;
        }
        break;
    case F_LIST_MARKER:
        copy_str(d->marker, t, n);
        break;
    case F_LIST_NMARKER:
        copy_str(d->next_marker, t, n);
        break;
    case F_OBJ_KEY:
    case F_CP_PREFIX:
    case F_E_KEY:
        copy_str(s->e_key, t, n);
        s->e_key_len = n;
        break;
    case F_E_SIZE:
        s->e_size = v;
        break;
    case F_E_ETAG:
        copy_str(s->e_etag, t, n);
        break;
    case F_E_LM:
    case F_E_DATE:
        copy_str(s->e_lm, t, n);
        break;
    case F_E_SC:
        copy_str(s->e_sc, t, n);
        break;
    case F_E_CODE:
        copy_str(s->e_code, t, n);
        break;
    case F_E_MSG:
        copy_str(s->e_msg, t, n);
        break;
    case F_E_PARTNUM:
        s->e_num = (uint32_t)v;
        break;
    case F_E_NAME:
        copy_str(s->e_name, t, n);
        break;
    case F_ERR_CODE:
        copy_str(d->error.code, t, n);
        break;
    case F_ERR_MSG:
        copy_str(d->error.message, t, n);
        break;
    case F_ERR_RID:
        copy_str(d->error.request_id, t, n);
        break;
    case F_ERR_HID:
        copy_str(d->error.host_id, t, n);
        break;
    case F_ERR_RES:
        copy_str(d->error.resource, t, n);
        break;
    case F_DOC_BUCKET:
        copy_str(d->bucket, t, n);
        break;
    case F_DOC_KEY:
        copy_str(d->key, t, n);
        break;
    case F_DOC_UPLOADID:
        copy_str(d->upload_id, t, n);
        break;
    case F_DOC_ETAG:
        copy_str(d->etag, t, n);
        break;
    case F_DOC_LOCATION:
        copy_str(d->location, t, n);
        break;
    case F_LP_PNM:
        d->part_number_marker = (uint32_t)v;
        break;
    case F_LP_NPNM:
        d->next_part_number_marker = (uint32_t)v;
        d->has_next_part_number_marker = true;
        break;
    case F_LP_MAXPARTS:
        d->max_parts = (uint32_t)v;
        break;
    case F_NONE:
    case F_COUNT:
        break;
    }
}

static bool seen(const sto_s3xml_parser_t *p, enum field f)
{
    return (p->s.seen >> f) & 1;
}

static void missing(sto_s3xml_parser_t *p, const char *child, enum elem in)
{
    fail(p, STO_S3XML_EMISSING, "<%s> without <%s>", elem_names[in], child);
}

static void container_start(sto_s3xml_parser_t *p, enum ctx c)
{
    struct state *s = &p->s;
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        if (rules[i].ctx == c && rules[i].field != F_NONE)
            s->seen &= ~((uint64_t)1 << rules[i].field);
    }
    s->e_size = 0;
    s->e_num = 0;
    s->e_key_len = 0;
    s->e_key[0] = s->e_etag[0] = s->e_lm[0] = s->e_sc[0] = '\0';
    s->e_code[0] = s->e_msg[0] = s->e_name[0] = '\0';
}

static void decode_doc_field(sto_s3xml_parser_t *p, enum field f, char *v, const char *name)
{
    if (!(p->s.raw_url & (1u << f)))
        return;
    size_t n = strlen(v);
    if (url_decode(v, &n) != 0)
        fail(p, STO_S3XML_EVALUE, "bad URL encoding in <%s>", name);
}

static void container_end(sto_s3xml_parser_t *p, enum ctx c, enum elem e)
{
    struct state *s = &p->s;
    sto_s3xml_doc_t *d = &s->doc;
    const sto_s3xml_callbacks_t *cb = &p->cfg.cb;
    switch (c) {
    case C_CONTENTS: {
        if (!seen(p, F_OBJ_KEY) || s->e_key_len == 0) {
            missing(p, "Key", e);
            return;
        }
        if (!decoding(p) && needs_decoding(s->e_key))
            s->undecoded = true;
        sto_s3xml_object_t o = {
            .key = s->e_key,
            .key_len = s->e_key_len,
            .size = s->e_size,
            .has_size = seen(p, F_E_SIZE),
            .etag = s->e_etag,
            .last_modified = s->e_lm,
            .storage_class = s->e_sc,
        };
        d->n_objects++;
        if (cb->object)
            call_result(p, cb->object(p->cfg.ud, &o));
        break;
    }
    case C_CPREFIX:
        if (!seen(p, F_CP_PREFIX)) {
            missing(p, "Prefix", e);
            return;
        }
        if (!decoding(p) && needs_decoding(s->e_key))
            s->undecoded = true;
        d->n_prefixes++;
        if (cb->common_prefix)
            call_result(p, cb->common_prefix(p->cfg.ud, s->e_key, s->e_key_len));
        break;
    case C_DELETED:
        if (!seen(p, F_E_KEY)) {
            missing(p, "Key", e);
            return;
        }
        d->n_deleted++;
        if (cb->deleted)
            call_result(p, cb->deleted(p->cfg.ud, s->e_key, s->e_key_len));
        break;
    case C_DELERR: {
        if (!seen(p, F_E_CODE)) {
            missing(p, "Code", e);
            return;
        }
        sto_s3xml_delete_error_t de = {
            .key = s->e_key, .key_len = s->e_key_len, .code = s->e_code, .message = s->e_msg};
        d->n_delete_errors++;
        if (cb->delete_error)
            call_result(p, cb->delete_error(p->cfg.ud, &de));
        break;
    }
    case C_PART: {
        if (!seen(p, F_E_PARTNUM)) {
            missing(p, "PartNumber", e);
            return;
        }
        if (!seen(p, F_E_ETAG)) {
            missing(p, "ETag", e);
            return;
        }
        sto_s3xml_part_t pt = {
            .part_number = s->e_num,
            .etag = s->e_etag,
            .size = s->e_size,
            .has_size = seen(p, F_E_SIZE),
            .last_modified = s->e_lm,
        };
        d->n_parts++;
        if (cb->part)
            call_result(p, cb->part(p->cfg.ud, &pt));
        break;
    }
    case C_BUCKET: {
        if (!seen(p, F_E_NAME) || s->e_name[0] == '\0') {
            missing(p, "Name", e);
            return;
        }
        sto_s3xml_bucket_t b = {.name = s->e_name, .creation_date = s->e_lm};
        d->n_buckets++;
        if (cb->bucket)
            call_result(p, cb->bucket(p->cfg.ud, &b));
        break;
    }
    case C_LIST:
        if (s->enc_url && !p->cfg.url_decode) {
            decode_doc_field(p, F_LIST_PREFIX, d->prefix, "Prefix");
            decode_doc_field(p, F_LIST_DELIM, d->delimiter, "Delimiter");
            decode_doc_field(p, F_LIST_STARTAFTER, d->start_after, "StartAfter");
            decode_doc_field(p, F_LIST_MARKER, d->marker, "Marker");
            decode_doc_field(p, F_LIST_NMARKER, d->next_marker, "NextMarker");
        }
        break;
    case C_ERROR:
        if (!seen(p, F_ERR_CODE))
            missing(p, "Code", e);
        break;
    case C_INIT:
        if (!seen(p, F_DOC_UPLOADID) || d->upload_id[0] == '\0')
            missing(p, "UploadId", e);
        break;
    case C_COMPLETE:
        if (!seen(p, F_DOC_ETAG))
            missing(p, "ETag", e);
        break;
    default:
        break;
    }
}

/* ---- expat handlers ----------------------------------------------------------------------- */

static void XMLCALL on_start(void *ud, const XML_Char *qname, const XML_Char **atts)
{
    sto_s3xml_parser_t *p = ud;
    struct state *s = &p->s;
    (void)atts;
    if (s->err)
        return;
    if (s->depth >= STO_S3XML_DEPTH_MAX) {
        fail(p, STO_S3XML_EDEPTH, "more than %d nested elements", STO_S3XML_DEPTH_MAX);
        return;
    }
    const char *local = local_name(qname);
    enum elem e = elem_lookup(local);
    enum ctx c = C_SKIP;

    if (s->depth == 0) {
        const struct root *r = NULL;
        for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
            if (roots[i].elem == e)
                r = &roots[i];
        }
        if (r == NULL) {
            fail(p, STO_S3XML_EKIND, "unknown document <%.64s>", local);
            return;
        }
        if (p->cfg.expect != STO_S3XML_ANY && r->kind != p->cfg.expect &&
            r->kind != STO_S3XML_ERROR) {
            fail(p, STO_S3XML_EKIND, "unexpected document <%s>", elem_names[e]);
            return;
        }
        s->doc.kind = (sto_s3xml_kind_t)r->kind;
        s->doc.url_encoded = r->kind == STO_S3XML_LIST_OBJECTS && p->cfg.url_decode;
        c = (enum ctx)r->ctx;
        s->seen = 0;
        container_start(p, c);
    } else {
        enum ctx parent = (enum ctx)s->ctx[s->depth - 1];
        if (parent == C_LEAF) {
            fail(p, STO_S3XML_ESTRUCT, "element <%.64s> inside <%s>", local,
                 elem_names[s->elem[s->depth - 1]]);
            return;
        }
        if (parent != C_SKIP) {
            const struct rule *r = rule_find(parent, e);
            if (r == NULL && elem_structural(e)) {
                fail(p, STO_S3XML_ESTRUCT, "<%s> not expected inside <%s>", elem_names[e],
                     elem_names[s->elem[s->depth - 1]]);
                return;
            }
            if (r != NULL && r->field != F_NONE) {
                if (seen(p, (enum field)r->field)) {
                    fail(p, STO_S3XML_EDUP, "<%s> repeated in <%s>", elem_names[e],
                         elem_names[s->elem[s->depth - 1]]);
                    return;
                }
                s->seen |= (uint64_t)1 << r->field;
                s->field = (enum field)r->field;
                s->text_len = 0;
                s->text_trunc = false;
                c = C_LEAF;
            } else if (r != NULL) {
                c = (enum ctx)r->child;
                container_start(p, c);
            }
        }
    }
    s->ctx[s->depth] = (unsigned char)c;
    s->elem[s->depth] = (unsigned char)e;
    s->depth++;
}

static void XMLCALL on_end(void *ud, const XML_Char *qname)
{
    sto_s3xml_parser_t *p = ud;
    struct state *s = &p->s;
    (void)qname;
    if (s->err || s->depth == 0)
        return;
    s->depth--;
    enum ctx c = (enum ctx)s->ctx[s->depth];
    if (c == C_LEAF)
        leaf_end(p);
    else if (c != C_SKIP)
        container_end(p, c, (enum elem)s->elem[s->depth]);
    if (s->depth == 0 && !s->err)
        s->done = true;
}

static void XMLCALL on_text(void *ud, const XML_Char *txt, int len)
{
    sto_s3xml_parser_t *p = ud;
    struct state *s = &p->s;
    if (s->err || s->depth == 0 || s->ctx[s->depth - 1] != C_LEAF || len <= 0)
        return;
    const struct field_desc *fd = &fields[s->field];
    size_t cap = fd->max;
    if ((fd->flags & FL_URL) && decoding(p))
        cap = 3 * (size_t)fd->max;
    size_t n = (size_t)len;
    if (s->text_len + n > cap) {
        if (!(fd->flags & FL_TRUNC)) {
            fail(p, STO_S3XML_ETOOLONG, "<%s> longer than %u bytes",
                 elem_names[s->elem[s->depth - 1]], (unsigned)fd->max);
            return;
        }
        s->text_trunc = true;
        n = cap - s->text_len;
    }
    memcpy(s->text + s->text_len, txt, n);
    s->text_len += n;
}

static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal_subset)
{
    (void)name, (void)sysid, (void)pubid, (void)has_internal_subset;
    fail(ud, STO_S3XML_EDTD, "DOCTYPE refused");
}

static void XMLCALL on_entity_decl(void *ud, const XML_Char *name, int is_param,
                                   const XML_Char *value, int value_len, const XML_Char *base,
                                   const XML_Char *sysid, const XML_Char *pubid,
                                   const XML_Char *notation)
{
    (void)name, (void)is_param, (void)value, (void)value_len, (void)base, (void)sysid;
    (void)pubid, (void)notation;
    fail(ud, STO_S3XML_EDTD, "entity declaration refused");
}

static void expat_setup(sto_s3xml_parser_t *p)
{
    XML_SetUserData(p->xp, p);
    XML_SetElementHandler(p->xp, on_start, on_end);
    XML_SetCharacterDataHandler(p->xp, on_text);
    XML_SetStartDoctypeDeclHandler(p->xp, on_doctype);
    XML_SetEntityDeclHandler(p->xp, on_entity_decl);
    XML_SetParamEntityParsing(p->xp, XML_PARAM_ENTITY_PARSING_NEVER);
}

/* ---- public parser API -------------------------------------------------------------------- */

int sto_s3xml_new(const sto_s3xml_config_t *cfg, sto_s3xml_parser_t **out)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    if (cfg == NULL || cfg->expect < STO_S3XML_ANY || cfg->expect > STO_S3XML_LIST_BUCKETS)
        return -EINVAL;
    sto_s3xml_parser_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    p->cfg = *cfg;
    p->xp = XML_ParserCreateNS(NULL, NS_SEP);
    if (p->xp == NULL) {
        free(p);
        return -ENOMEM;
    }
    expat_setup(p);
    *out = p;
    return 0;
}

void sto_s3xml_free(sto_s3xml_parser_t *p)
{
    if (p == NULL)
        return;
    XML_ParserFree(p->xp);
    free(p);
}

int sto_s3xml_reset(sto_s3xml_parser_t *p)
{
    memset(&p->s, 0, sizeof(p->s));
    if (XML_ParserReset(p->xp, NULL) != XML_TRUE) {
        p->s.err = -ENOMEM;
        return -ENOMEM;
    }
    expat_setup(p);
    return 0;
}

static int expat_error(sto_s3xml_parser_t *p)
{
    enum XML_Error e = XML_GetErrorCode(p->xp);
    int code;
    switch (e) {
    case XML_ERROR_NO_MEMORY:
        code = -ENOMEM;
        break;
    case XML_ERROR_NO_ELEMENTS:
    case XML_ERROR_UNCLOSED_TOKEN:
    case XML_ERROR_PARTIAL_CHAR:
    case XML_ERROR_UNCLOSED_CDATA_SECTION:
        code = STO_S3XML_ETRUNCATED;
        break;
    default:
        code = STO_S3XML_ESYNTAX;
        break;
    }
    snprintf(p->s.detail, sizeof(p->s.detail), "line %lu, column %lu: %s",
             (unsigned long)XML_GetCurrentLineNumber(p->xp),
             (unsigned long)XML_GetCurrentColumnNumber(p->xp), XML_ErrorString(e));
    p->s.err = code;
    return code;
}

int sto_s3xml_feed(sto_s3xml_parser_t *p, const void *data, size_t len, bool is_final)
{
    if (p->s.err)
        return p->s.err;
    if (p->s.finished)
        return STO_S3XML_ESTATE;
    const char *d = data;
    do {
        size_t chunk = len > (size_t)INT_MAX / 2 ? (size_t)INT_MAX / 2 : len;
        bool last = chunk == len;
        if (XML_Parse(p->xp, d, (int)chunk, last && is_final) != XML_STATUS_OK)
            return p->s.err ? p->s.err : expat_error(p);
        if (last)
            break;
        d += chunk;
        len -= chunk;
    } while (len > 0);
    if (is_final) {
        if (!p->s.done) {
            /* expat reports an incomplete document itself; this is a safety net. */
            snprintf(p->s.detail, sizeof(p->s.detail), "document incomplete");
            p->s.err = STO_S3XML_ETRUNCATED;
            return p->s.err;
        }
        p->s.finished = true;
    }
    return 0;
}

bool sto_s3xml_done(const sto_s3xml_parser_t *p)
{
    return p->s.done;
}

const sto_s3xml_doc_t *sto_s3xml_doc(const sto_s3xml_parser_t *p)
{
    return &p->s.doc;
}

const char *sto_s3xml_detail(const sto_s3xml_parser_t *p)
{
    return p->s.detail;
}

/* ---- request bodies ----------------------------------------------------------------------- */

#define S3_NS "http://s3.amazonaws.com/doc/2006-03-01/"
#define XML_DECL "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"

struct wbuf {
    char *buf;
    size_t cap, len;
    bool over;
};

static void put(struct wbuf *w, const char *s, size_t n)
{
    if (w->over || n >= w->cap - w->len) { /* keep room for the NUL */
        w->over = true;
        return;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void puts_(struct wbuf *w, const char *s)
{
    put(w, s, strlen(s));
}

/* Escapes text content. Returns -EINVAL for control characters XML 1.0 cannot carry. */
static int put_escaped(struct wbuf *w, const char *s)
{
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        const char *rep = NULL;
        if (c == '&')
            rep = "&amp;";
        else if (c == '<')
            rep = "&lt;";
        else if (c == '>')
            rep = "&gt;";
        else if (c == '\r')
            rep = "&#13;";
        else if (c < 0x20 && c != '\t' && c != '\n')
            return -EINVAL;
        if (rep) {
            put(w, run, (size_t)(s - run));
            puts_(w, rep);
            run = s + 1;
        }
    }
    put(w, run, (size_t)(s - run));
    return 0;
}

static int wbuf_finish(struct wbuf *w)
{
    if (w->cap > 0)
        w->buf[w->over ? 0 : w->len] = '\0';
    if (w->over || w->len > INT_MAX)
        return -ENOSPC;
    return (int)w->len;
}

int sto_s3xml_delete_body(const char *const keys[], size_t n, bool quiet, char *buf, size_t cap)
{
    if ((keys == NULL && n > 0) || n == 0 || n > 1000 || (buf == NULL && cap > 0))
        return -EINVAL;
    struct wbuf w = {.buf = buf, .cap = cap};
    if (cap == 0)
        w.over = true;
    puts_(&w, XML_DECL "<Delete xmlns=\"" S3_NS "\">");
    if (quiet)
        puts_(&w, "<Quiet>true</Quiet>");
    for (size_t i = 0; i < n; i++) {
        if (keys[i] == NULL || keys[i][0] == '\0' || strlen(keys[i]) > STO_S3XML_KEY_MAX)
            return -EINVAL;
        puts_(&w, "<Object><Key>");
        if (put_escaped(&w, keys[i]) != 0)
            return -EINVAL;
        puts_(&w, "</Key></Object>");
    }
    puts_(&w, "</Delete>");
    return wbuf_finish(&w);
}

int sto_s3xml_complete_mpu_body(const sto_s3xml_part_ref_t parts[], size_t n, char *buf, size_t cap)
{
    if (parts == NULL || n == 0 || n > 10000 || (buf == NULL && cap > 0))
        return -EINVAL;
    struct wbuf w = {.buf = buf, .cap = cap};
    if (cap == 0)
        w.over = true;
    puts_(&w, XML_DECL "<CompleteMultipartUpload xmlns=\"" S3_NS "\">");
    uint32_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        const sto_s3xml_part_ref_t *pt = &parts[i];
        if (pt->part_number <= prev || pt->part_number > 10000 || pt->etag == NULL ||
            pt->etag[0] == '\0' || strlen(pt->etag) > STO_S3XML_ETAG_MAX)
            return -EINVAL;
        prev = pt->part_number;
        char num[16];
        int k = snprintf(num, sizeof(num), "%u", (unsigned)pt->part_number);
        puts_(&w, "<Part><PartNumber>");
        put(&w, num, (size_t)k);
        puts_(&w, "</PartNumber><ETag>");
        if (put_escaped(&w, pt->etag) != 0)
            return -EINVAL;
        puts_(&w, "</ETag></Part>");
    }
    puts_(&w, "</CompleteMultipartUpload>");
    return wbuf_finish(&w);
}
