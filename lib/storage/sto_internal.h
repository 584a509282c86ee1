/* sto_internal.h — shared between the storage library's .c files; not installed. */
#ifndef STO_INTERNAL_H
#define STO_INTERNAL_H

#include <stddef.h>
#include <uv.h>

#include "sto/backend.h"
#include "sto/uri.h"

struct sto_store {
    const sto_backend_t *backend;
    uv_loop_t *loop;
    int create_base; /* read by backend open() */
    sto_opts_t opts; /* defaults filled; strings point into the buffers below */
    char endpoint_buf[512];
    char ca_file_buf[1024];
    sto_uri_t uri;
    max_align_t priv[]; /* backend->store_size bytes */
};

extern const sto_backend_t sto__file_backend;
extern const sto_backend_t sto__direct_backend;
extern const sto_backend_t sto__s3_backend;

#endif
