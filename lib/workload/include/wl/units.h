/* wl/units.h — sizes, durations and counts as users write them. Pure, thread-safe.
 *
 * Sizes: "4096", "8MiB", "1.5GB", "64k", "512 KiB", "1_048_576". Suffixes: B; k/K/KB/M/MB/G/GB/
 *   T/TB/P/PB are decimal (10^3n); KiB/MiB/GiB/TiB/PiB (and Ki/Mi/Gi/Ti/Pi) binary. Fractions are
 *   allowed with a suffix when the result is a whole number of bytes after rounding down.
 * Durations: "30s", "5m", "2h", "1d", "500ms", "250us", "100ns", "1m30s", plain number = seconds
 *   (fractions allowed: "1.5" = 1.5 s). Result in nanoseconds.
 * Counts: "1000000", "1_000_000", "1,000,000", "1 000 000".
 * All return 0, or -EINVAL / -ERANGE with a message in err (may be NULL).
 */
#ifndef WL_UNITS_H
#define WL_UNITS_H

#include <stddef.h>
#include <stdint.h>

int wl_parse_size(const char *s, uint64_t *out, char *err, size_t errlen);
int wl_parse_duration_ns(const char *s, uint64_t *out, char *err, size_t errlen);
int wl_parse_count(const char *s, uint64_t *out, char *err, size_t errlen);
/* Formats bytes as "1.50 MiB" / "512 B". Returns buf. */
char *wl_fmt_bytes(uint64_t bytes, char *buf, size_t len);
/* Formats ns as "1.23 ms" / "850 ns" / "2.0 s". Returns buf. */
char *wl_fmt_ns(uint64_t ns, char *buf, size_t len);

#endif
