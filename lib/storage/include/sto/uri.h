/* sto/uri.h — storage URIs. Pure functions, thread-safe, no I/O.
 *
 * file:///abs/dir/   direct:///abs/dir/   (relative forms file://./dir and file://dir are resolved
 * against the current directory by sto_uri_parse)
 * s3://bucket/prefix/   az://account/container/prefix/   gs://bucket/prefix/ (also gcs://)
 * — cloud schemes are parsed (so validation can name them) but have no backend yet.
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
    /* file/direct: absolute, normalised path without trailing slash (except "/").
     * cloud: "bucket" or "account/container"; path = key prefix (may be empty). */
    char authority[256];
    char path[STO_PATH_MAX];
    int trailing_slash; /* the URI ended in '/' */
} sto_uri_t;

/* Returns 0, STO_EURI (with a reason in err) or STO_ESCHEME. err may be NULL. */
int sto_uri_parse(const char *uri, sto_uri_t *out, char *err, size_t errlen);
const char *sto_scheme_name(sto_scheme_t s);
/* Joins base and a relative path with exactly one '/'. A rel containing "://" is copied as is.
 * Returns 0 or RX_EINVAL when out is too small. */
int sto_uri_join(const char *base, const char *rel, char *out, size_t outlen);

#endif
