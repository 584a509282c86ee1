/* wire.h — what sai3bench-ctl and sai3bench-agent share: the conversion between the workload's
 * statistics (wl_stats_t) and the protocol's OpStats messages, message packing helpers, the
 * protocol constants and the version string. Prefix app_ (application glue shared by the two
 * apps; the libraries stay free of protobuf).
 *
 * Threads: every function is pure or works on caller-owned memory; any thread.
 * Memory: functions that return protobuf-c messages allocate them with malloc; free them with the
 * matching *_free function here (never protobuf_c_message_free_unpacked: these were not unpacked).
 */
#ifndef APP_WIRE_H
#define APP_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "sai3bench.pb-c.h"
#include "wl/stats.h"

#define APP_PROTOCOL_VERSION 1u
#define APP_METHOD_PING "/sai3bench.Agent/Ping"
#define APP_METHOD_RUN "/sai3bench.Agent/Run"
#define APP_METHOD_ABORT "/sai3bench.Agent/Abort"
#define APP_AGENT_DEFAULT_PORT 7761

/* wl_stats_t → OpStats list: one entry per op kind that has ops, errors or retries. Returns 0 and
 * a malloc'd array (*out, *n; NULL/0 when nothing to report) or -ENOMEM. */
int app_stats_to_pb(const wl_stats_t *s, Sai3bench__OpStats ***out, size_t *n);
void app_pb_ops_free(Sai3bench__OpStats **v, size_t n);

/* Merges an OpStats list into dst (initialised by the caller): histograms merge exactly, counts
 * add, error kinds join by (code, name). Validates everything (kind, bucket range, duplicate
 * buckets, histogram bytes); on a malformed list returns -EINVAL with err explaining, and dst may
 * hold part of the list (merge into a scratch copy if that matters). */
int app_stats_merge_pb(wl_stats_t *dst, Sai3bench__OpStats *const *v, size_t n, char *err,
                       size_t errlen);

/* Packs any message into a malloc'd buffer. Returns NULL on ENOMEM. */
uint8_t *app_pack(const ProtobufCMessage *m, size_t *len);

/* Wall clock, ns since the epoch (CLOCK_REALTIME). */
int64_t app_wall_ns(void);

/* Reads a token file: the first line, without trailing blanks/newline. Returns 0, -errno, or
 * -EINVAL for an empty token (err explains). */
int app_read_token(const char *path, char *out, size_t cap, char *err, size_t errlen);

/* The AWS_*, AZURE_STORAGE_* and GOOGLE_APPLICATION_CREDENTIALS variables forwarded to agents. */
int app_env_forwardable(const char *name);

#endif
