/* Result files: results directory, results TSVs, perf_log.tsv, metadata.json, CPU sampling. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "wl/results.h"

const char *const wl_results_tsv_header =
    "operation\tsize_bucket\tbucket_idx\tmean_us\tp50_us\tp90_us\tp95_us\tp99_us\tmax_us\t"
    "avg_bytes\tops_per_sec\tthroughput_mibps\tcount";

const char *const wl_perflog_header =
    "agent_id\ttimestamp_epoch_ms\telapsed_s\tstage\tget_ops\tget_bytes\tget_iops\tget_mbps\t"
    "get_mean_us\tget_p50_us\tget_p90_us\tget_p99_us\tput_ops\tput_bytes\tput_iops\tput_mbps\t"
    "put_mean_us\tput_p50_us\tput_p90_us\tput_p99_us\tmeta_ops\tmeta_iops\tmeta_mean_us\t"
    "meta_p50_us\tmeta_p90_us\tmeta_p99_us\tcpu_user_pct\tcpu_system_pct\tcpu_iowait_pct\terrors";

int wl_results_dir_create(const char *parent, const char *stem, char *out, size_t len)
{
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char base[64];
    strftime(base, sizeof(base), "sai3-%Y%m%d-%H%M-", &tm);
    for (int n = 1; n < 1000; n++) {
        char suffix[16] = "";
        if (n > 1) snprintf(suffix, sizeof(suffix), "-%d", n);
        int w = snprintf(out, len, "%s%s%s%s%s", parent && parent[0] ? parent : "",
                         parent && parent[0] ? "/" : "", base, stem, suffix);
        if (w < 0 || (size_t)w >= len) return -ENAMETOOLONG;
        if (mkdir(out, 0755) == 0) return 0;
        if (errno != EEXIST) return -errno;
    }
    return -EEXIST;
}

typedef struct row {
    const char *op;
    const char *bucket;
    int idx;
    wl_hist_t h;
    uint64_t ops, bytes;
} row_t;

static void write_row(FILE *f, const row_t *r, double wall_s)
{
    double us = 1e3;
    fprintf(f, "%s\t%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.0f\t%.2f\t%.2f\t%" PRIu64 "\n",
            r->op, r->bucket, r->idx, wl_hist_mean(&r->h) / us,
            (double)wl_hist_quantile(&r->h, 0.50) / us, (double)wl_hist_quantile(&r->h, 0.90) / us,
            (double)wl_hist_quantile(&r->h, 0.95) / us, (double)wl_hist_quantile(&r->h, 0.99) / us,
            (double)r->h.max / us, r->ops ? (double)r->bytes / (double)r->ops : 0.0,
            wall_s > 0 ? (double)r->ops / wall_s : 0.0,
            wall_s > 0 ? (double)r->bytes / 1048576.0 / wall_s : 0.0, r->ops);
}

int wl_results_write_tsv(FILE *f, const wl_stats_t *s, uint64_t wall_ns, int prepare_only)
{
    double wall_s = (double)wall_ns / 1e9;
    fprintf(f, "%s\n", wl_results_tsv_header);
    /* per class and bucket, sorted by bucket index; within a bucket GET, PUT, META as the
     * original (its sort is stable over GET, PUT, META insertion order) */
    static const wl_class_t order[] = {WL_CLASS_GET, WL_CLASS_PUT, WL_CLASS_META};
    for (int b = 0; b < WL_NBUCKETS; b++) {
        for (int k = 0; k < 3; k++) {
            wl_class_t c = order[k];
            if (prepare_only && c != WL_CLASS_PUT) continue;
            row_t r = {wl_class_name(c), wl_bucket_label(b), b, {0}, 0, 0};
            wl_hist_init(&r.h);
            r.ops = wl_stats_class_ops(s, c, b);
            if (!r.ops) continue;
            r.bytes = wl_stats_class_bytes(s, c, b);
            if (wl_stats_class_hist(s, c, b, &r.h) != 0) return -ENOMEM;
            write_row(f, &r, wall_s);
            wl_hist_free(&r.h);
        }
    }
    /* per-op ALL rows for the metadata ops, then class ALL rows */
    if (!prepare_only) {
        static const struct {
            wl_op_kind_t op;
            int idx;
        } meta[] = {{WL_OP_LIST, 92}, {WL_OP_STAT, 93}, {WL_OP_DELETE, 94}, {WL_OP_MKDIR, 95},
                    {WL_OP_RMDIR, 96}};
        for (size_t i = 0; i < sizeof(meta) / sizeof(meta[0]); i++) {
            row_t r = {wl_op_name(meta[i].op), "ALL", meta[i].idx, {0}, 0, 0};
            wl_hist_init(&r.h);
            r.ops = wl_stats_ops(s, meta[i].op);
            if (!r.ops) continue;
            r.bytes = wl_stats_bytes(s, meta[i].op);
            if (wl_stats_op_hist(s, meta[i].op, -1, &r.h) != 0) return -ENOMEM;
            write_row(f, &r, wall_s);
            wl_hist_free(&r.h);
        }
    }
    static const struct {
        wl_class_t c;
        int idx;
    } all[] = {{WL_CLASS_META, 97}, {WL_CLASS_GET, 98}, {WL_CLASS_PUT, 99}};
    for (size_t i = 0; i < 3; i++) {
        if (prepare_only && all[i].c != WL_CLASS_PUT) continue;
        row_t r = {wl_class_name(all[i].c), "ALL", all[i].idx, {0}, 0, 0};
        wl_hist_init(&r.h);
        r.ops = wl_stats_class_ops(s, all[i].c, -1);
        if (!r.ops) continue;
        r.bytes = wl_stats_class_bytes(s, all[i].c, -1);
        if (wl_stats_class_hist(s, all[i].c, -1, &r.h) != 0) return -ENOMEM;
        write_row(f, &r, wall_s);
        wl_hist_free(&r.h);
    }
    return ferror(f) ? -EIO : 0;
}

int wl_results_write_tsv_file(const char *path, const wl_stats_t *s, uint64_t wall_ns,
                              int prepare_only)
{
    FILE *f = fopen(path, "w");
    if (!f) return -errno;
    int rc = wl_results_write_tsv(f, s, wall_ns, prepare_only);
    if (fclose(f) != 0 && rc == 0) rc = -errno;
    return rc;
}

int wl_copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) return -errno;
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        int e = errno;
        close(in);
        return -e;
    }
    char buf[65536];
    ssize_t n;
    int rc = 0;
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0) {
                if (errno == EINTR) continue;
                rc = -errno;
                goto done;
            }
            off += w;
        }
    }
    if (n < 0) rc = -errno;
done:
    close(in);
    if (close(out) != 0 && rc == 0) rc = -errno;
    return rc;
}

int wl_cpu_read(wl_cpu_sample_t *s)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -errno;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 5) return -EINVAL;
    s->user = v[0];
    s->nice = v[1];
    s->system = v[2];
    s->idle = v[3];
    s->iowait = v[4];
    s->irq = v[5];
    s->softirq = v[6];
    s->steal = v[7];
    return 0;
}

void wl_cpu_pct(const wl_cpu_sample_t *a, const wl_cpu_sample_t *b, double *user, double *sys,
                double *iowait)
{
    uint64_t ta = a->user + a->nice + a->system + a->idle + a->iowait + a->irq + a->softirq +
                  a->steal;
    uint64_t tb = b->user + b->nice + b->system + b->idle + b->iowait + b->irq + b->softirq +
                  b->steal;
    double d = tb > ta ? (double)(tb - ta) : 0;
    if (d <= 0) {
        *user = *sys = *iowait = 0;
        return;
    }
    *user = 100.0 * (double)((b->user + b->nice) - (a->user + a->nice)) / d;
    *sys = 100.0 * (double)((b->system + b->irq + b->softirq) - (a->system + a->irq + a->softirq)) /
           d;
    *iowait = 100.0 * (double)(b->iowait - a->iowait) / d;
}

int wl_perflog_open(wl_perflog_t *p, const char *path, const char *agent_id, uint64_t interval_ns)
{
    memset(p, 0, sizeof(*p));
    p->f = fopen(path, "w");
    if (!p->f) return -errno;
    p->agent_id = agent_id;
    p->interval_ns = interval_ns ? interval_ns : 1000000000ull;
    wl_stats_init(&p->acc);
    p->cpu_ok = wl_cpu_read(&p->cpu_prev) == 0;
    fprintf(p->f, "%s\n", wl_perflog_header);
    return 0;
}

static void class_cols(FILE *f, const wl_stats_t *s, wl_class_t c, double secs, int with_bytes)
{
    wl_hist_t h;
    wl_hist_init(&h);
    wl_stats_class_hist(s, c, -1, &h);
    uint64_t ops = wl_stats_class_ops(s, c, -1);
    uint64_t bytes = wl_stats_class_bytes(s, c, -1);
    if (with_bytes)
        fprintf(f, "\t%" PRIu64 "\t%" PRIu64 "\t%.2f\t%.2f", ops, bytes,
                secs > 0 ? (double)ops / secs : 0.0,
                secs > 0 ? (double)bytes / 1048576.0 / secs : 0.0);
    else
        fprintf(f, "\t%" PRIu64 "\t%.2f", ops, secs > 0 ? (double)ops / secs : 0.0);
    fprintf(f, "\t%.2f\t%.2f\t%.2f\t%.2f", wl_hist_mean(&h) / 1e3,
            (double)wl_hist_quantile(&h, 0.5) / 1e3, (double)wl_hist_quantile(&h, 0.9) / 1e3,
            (double)wl_hist_quantile(&h, 0.99) / 1e3);
    wl_hist_free(&h);
}

int wl_perflog_add(wl_perflog_t *p, const char *stage, uint64_t wall_ms, uint64_t elapsed_ns,
                   const wl_stats_t *delta, uint64_t interval_ns, int flush)
{
    if (!p->f) return 0;
    if (wl_stats_merge(&p->acc, delta) != 0) return -ENOMEM;
    p->acc_ns += interval_ns;
    /* ticks jitter by a few ms around their period: within 10% counts as a full interval */
    if (p->acc_ns * 10 < p->interval_ns * 9 && !flush) return 0;
    if (p->acc_ns == 0) return 0;
    double secs = (double)p->acc_ns / 1e9;
    double cu = 0, cs = 0, ci = 0;
    wl_cpu_sample_t now;
    if (p->cpu_ext) {
        if (p->cpu_ns) {
            cu = p->cpu_sum[0] / (double)p->cpu_ns;
            cs = p->cpu_sum[1] / (double)p->cpu_ns;
            ci = p->cpu_sum[2] / (double)p->cpu_ns;
        }
        p->cpu_sum[0] = p->cpu_sum[1] = p->cpu_sum[2] = 0;
        p->cpu_ns = 0;
    } else if (p->cpu_ok && wl_cpu_read(&now) == 0) {
        wl_cpu_pct(&p->cpu_prev, &now, &cu, &cs, &ci);
        p->cpu_prev = now;
    }
    fprintf(p->f, "%s\t%" PRIu64 "\t%.3f\t%s", p->agent_id, wall_ms, (double)elapsed_ns / 1e9,
            stage);
    class_cols(p->f, &p->acc, WL_CLASS_GET, secs, 1);
    class_cols(p->f, &p->acc, WL_CLASS_PUT, secs, 1);
    class_cols(p->f, &p->acc, WL_CLASS_META, secs, 0);
    fprintf(p->f, "\t%.2f\t%.2f\t%.2f\t%" PRIu64 "\n", cu, cs, ci, wl_stats_total_errors(&p->acc));
    fflush(p->f);
    wl_stats_reset(&p->acc);
    p->acc_ns = 0;
    return ferror(p->f) ? -EIO : 0;
}

void wl_perflog_cpu(wl_perflog_t *p, double user, double sys, double iowait, uint64_t ns)
{
    p->cpu_ext = 1;
    p->cpu_sum[0] += user * (double)ns;
    p->cpu_sum[1] += sys * (double)ns;
    p->cpu_sum[2] += iowait * (double)ns;
    p->cpu_ns += ns;
}

int wl_perflog_close(wl_perflog_t *p)
{
    int rc = 0;
    if (p->f && fclose(p->f) != 0) rc = -errno;
    p->f = NULL;
    wl_stats_free(&p->acc);
    return rc;
}

static void iso_time(uint64_t ns, char *buf, size_t len)
{
    time_t t = (time_t)(ns / 1000000000ull);
    struct tm tm;
    localtime_r(&t, &tm);
    char z[8];
    strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    strftime(z, sizeof(z), "%z", &tm);
    size_t n = strlen(buf);
    /* +hhmm -> +hh:mm as RFC 3339 wants */
    snprintf(buf + n, len - n, ".%03u%.3s:%.2s", (unsigned)(ns / 1000000ull % 1000), z, z + 3);
}

int wl_metadata_write(const char *path, const wl_metadata_t *m)
{
    json_t *o = json_object();
    if (!o) return -ENOMEM;
    char t0[64], t1[64], host[256] = "";
    iso_time(m->start_wall_ns, t0, sizeof(t0));
    iso_time(m->end_wall_ns, t1, sizeof(t1));
    gethostname(host, sizeof(host) - 1);
    json_t *argv = json_array();
    for (int i = 0; i < m->argc; i++) json_array_append_new(argv, json_string(m->argv[i]));
    json_object_set_new(o, "version", json_string(SAI3_VERSION));
    json_object_set_new(o, "test_name", json_string(m->test_name ? m->test_name : ""));
    json_object_set_new(o, "config_path", json_string(m->config_path ? m->config_path : ""));
    json_object_set_new(o, "results_dir", json_string(m->results_dir ? m->results_dir : ""));
    json_object_set_new(o, "start_time", json_string(t0));
    json_object_set_new(o, "end_time", json_string(t1));
    json_object_set_new(o, "duration_secs",
                        json_real((double)(m->end_wall_ns - m->start_wall_ns) / 1e9));
    json_object_set_new(o, "command_line", argv);
    json_object_set_new(o, "hostname", json_string(host));
    json_object_set_new(o, "distributed", json_false());
    json_object_set_new(o, "agents", json_array());
    json_object_set_new(o, "cores", json_integer(m->cores));
    json_object_set_new(o, "concurrency", json_integer(m->concurrency));
    json_object_set_new(o, "status", json_string(m->status ? m->status : ""));
    json_object_set_new(o, "error", m->error ? json_string(m->error) : json_null());
    json_object_set_new(o, "total_ops", json_integer((json_int_t)m->total_ops));
    json_object_set_new(o, "total_errors", json_integer((json_int_t)m->total_errors));
    int rc = json_dump_file(o, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) == 0 ? 0 : -EIO;
    json_decref(o);
    return rc;
}
