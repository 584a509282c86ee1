/* sto/uri.h — storage URIs. Pure functions, thread-safe; no I/O except getcwd() for relative
 * file:// and direct:// forms.
 *
 * file:///abs/dir/   direct:///abs/dir/   (relative forms file://./dir and file://dir/sub are
 * resolved against the current directory by sto_uri_parse)
 * s3://bucket/prefix/   s3://host:port/bucket/prefix/ (endpoint first; recognised by the ':port')
 * az://account/container/prefix/   gs://bucket/prefix/ (also gcs://)
 * Scheme names are case-insensitive.
 */
#ifndef STO_URI_H
#define STO_URI_H

#include <stddef.h>

typedef enum sto_scheme {
    STO_SCHEME_FILE = 0,
    STO_SCHEME_DIRECT,
    STO_SCHEME_S3,
    STO_SCHEME_AZ,
    STO_SCHEME_GS,
} sto_scheme_t;

#define STO_PATH_MAX 4096

typedef struct sto_uri {
    sto_scheme_t scheme;
    /* file/direct: empty. cloud: "bucket" or "account/container". */
    char authority[256];
    /* s3://host:port/bucket/...: "host:port"; otherwise empty. */
    char endpoint[256];
    /* file/direct: absolute path, normalised lexically ("//" collapsed, "." and ".." resolved,
     * never above "/"), without trailing slash (except "/" itself).
     * cloud: key prefix as written, without leading bucket and without trailing slash; may be
     * empty. */
    char path[STO_PATH_MAX];
    int trailing_slash; /* the URI ended in '/' */
} sto_uri_t;

/* Returns 0, STO_EURI (with a reason in err: missing "://", empty path, missing bucket/container,
 * control characters, too long) or STO_ESCHEME (unknown scheme; err lists the supported ones).
 * err may be NULL; it is set to "" on success. */
int sto_uri_parse(const char *uri, sto_uri_t *out, char *err, size_t errlen);
const char *sto_scheme_name(sto_scheme_t s);
/* Joins base and a relative path with exactly one '/' between them: trailing slashes of base and
 * leading slashes of rel are dropped ("file:///d/" + "/x" = "file:///d/x"). A rel containing
 * "://" is copied as is; an empty rel leaves base unchanged. Returns 0 or RX_EINVAL when out is
 * too small (or an argument is NULL). */
int sto_uri_join(const char *base, const char *rel, char *out, size_t outlen);

#endif
