/* `run` and `validate`: load the config, drive the workload library, print live lines and the
 * summary, and write the results directory. */
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "rx/engine.h"
#include "rx/err.h"
#include "rx/time.h"
#include "sto/err.h"
#include "wl/err.h"
#include "wl/results.h"
#include "wl/units.h"

static wl_run_t *volatile g_run;
static volatile sig_atomic_t g_signals;

static void on_signal(int sig)
{
    (void)sig;
    if (++g_signals > 1) _exit(130);
    static const char m[] = "\nstopping: waiting for in-flight operations (Ctrl-C again to quit "
                            "at once)\n";
    ssize_t w = write(STDERR_FILENO, m, sizeof(m) - 1);
    (void)w;
    if (g_run) wl_run_abort(g_run);
}

int ctl_load_config(const char *path, wl_config_t *cfg)
{
    wl_diags_t d;
    wl_diags_init(&d);
    int rc = wl_config_load_file(path, cfg, &d);
    if (rc != 0) {
        char buf[2048];
        for (size_t i = 0; i < d.n; i++) {
            wl_diag_format(&d, i, buf, sizeof(buf));
            fprintf(stderr, "%s\n", buf);
        }
        fprintf(stderr, "%s: %zu error%s; nothing was run\n", path, d.n, d.n == 1 ? "" : "s");
        wl_diags_free(&d);
        return 2;
    }
    wl_diags_free(&d);
    return 0;
}

static int effective_cores(const ctl_opts_t *o)
{
    int n = rx_cpu_count();
    return o->cores ? o->cores : (n > 0 ? n : 1);
}

int ctl_cmd_validate(const ctl_opts_t *o)
{
    wl_config_t cfg;
    int rc = ctl_load_config(o->config, &cfg);
    if (rc) return rc;
    char *plan = wl_plan_format(&cfg, effective_cores(o));
    if (plan) {
        fputs(plan, stdout);
        /* a distributed config also shows its agents and stages; no network is touched */
        if (ctl_dist_wanted(o, &cfg) && (rc = ctl_dist_validate(o, &cfg)) != 0) {
            free(plan);
            wl_config_free(&cfg);
            return rc;
        }
        printf("Config OK: %s\n", o->config);
    }
    free(plan);
    wl_config_free(&cfg);
    return plan ? 0 : 1;
}

/* ------------------------------------------------------------------ live output ---------- */

typedef struct runctx {
    const ctl_opts_t *o;
    const wl_config_t *cfg;
    wl_perflog_t perf;
    int perf_ok;
    wl_stats_t live;
    uint64_t live_ns;
    int classes_used[WL_CLASS__COUNT];
} runctx_t;

static const char *stage_label(wl_phase_t p)
{
    static const char *const n[] = {"Prepare", "Workload", "Cleanup"};
    return n[p];
}

void ctl_fmt_count(uint64_t v, char *buf, size_t len)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
    size_t o = 0;
    for (int i = 0; i < n && o + 2 < len; i++) {
        if (i && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = 0;
}

/* One line per error kind of an op: "error xN: message (S3 code)". */
static void print_errkinds(const wl_opstats_t *os, const char *label)
{
    for (int k = 0; k < WL_ERRKINDS && os->errk[k].code; k++)
        ctl_out("  %-6s   error x%" PRIu64 ": %s%s%s%s", label, os->errk[k].n,
                rx_strerror(os->errk[k].code), os->errk[k].name[0] ? " (" : "", os->errk[k].name,
                os->errk[k].name[0] ? ")" : "");
    if (os->err_other) ctl_out("  %-6s   other errors x%" PRIu64, label, os->err_other);
}

void ctl_print_phase_errors(const wl_stats_t *st)
{
    for (int o = 0; o < WL_OP__COUNT; o++)
        if (st->op[o].errors) print_errkinds(&st->op[o], wl_op_name((wl_op_kind_t)o));
}

void ctl_print_live(const wl_stats_t *live, uint64_t live_ns, uint64_t elapsed_ns,
                    const int classes_used[WL_CLASS__COUNT], const char *suffix)
{
    double secs = (double)live_ns / 1e9;
    if (secs <= 0) return;
    char line[1024];
    size_t n = (size_t)snprintf(line, sizeof(line), "[%4.0fs]", (double)elapsed_ns / 1e9);
    for (int c = 0; c < WL_CLASS__COUNT; c++) {
        if (!classes_used[c]) continue;
        wl_hist_t h;
        wl_hist_init(&h);
        wl_stats_class_hist(live, (wl_class_t)c, -1, &h);
        uint64_t ops = wl_stats_class_ops(live, (wl_class_t)c, -1);
        uint64_t bytes = wl_stats_class_bytes(live, (wl_class_t)c, -1);
        char p50[32], p99[32], ops_s[32];
        wl_fmt_ns(wl_hist_quantile(&h, 0.5), p50, sizeof(p50));
        wl_fmt_ns(wl_hist_quantile(&h, 0.99), p99, sizeof(p99));
        ctl_fmt_count((uint64_t)((double)ops / secs + 0.5), ops_s, sizeof(ops_s));
        char mibs[32] = "";
        if (c != WL_CLASS_META)
            snprintf(mibs, sizeof(mibs), " %.1f MiB/s", (double)bytes / 1048576.0 / secs);
        uint64_t errs = wl_stats_class_errors(live, (wl_class_t)c);
        n += (size_t)snprintf(line + n, sizeof(line) - n, "%s %s %s/s%s p50 %s p99 %s err %" PRIu64,
                              n > 8 ? " |" : "", wl_class_name((wl_class_t)c), ops_s, mibs, p50,
                              p99, errs);
        if (errs && n < sizeof(line)) {
            /* the most frequent kind of the interval, by its S3 code when there is one */
            const wl_errcount_t *top = NULL;
            for (int o = 0; o < WL_OP__COUNT; o++) {
                if (wl_op_class((wl_op_kind_t)o) != (wl_class_t)c) continue;
                const wl_opstats_t *os = &live->op[o];
                for (int k = 0; k < WL_ERRKINDS && os->errk[k].code; k++)
                    if (!top || os->errk[k].n > top->n) top = &os->errk[k];
            }
            if (top)
                n += (size_t)snprintf(line + n, sizeof(line) - n, " (%s)",
                                      top->name[0] ? top->name : rx_strerror(top->code));
        }
        wl_hist_free(&h);
        if (n >= sizeof(line)) break;
    }
    if (suffix && n < sizeof(line)) snprintf(line + n, sizeof(line) - n, "%s", suffix);
    ctl_out("%s", line);
}

void ctl_print_progress(const char *phase, uint64_t done, uint64_t total, uint64_t ops,
                        uint64_t live_ns)
{
    if (!total) return;
    double pct = 100.0 * (double)done / (double)total;
    double rate = live_ns ? (double)ops / ((double)live_ns / 1e9) : 0;
    uint64_t left = total > done ? total - done : 0;
    double eta = rate > 0 ? (double)left / rate : 0;
    char dn[32], tot[32];
    ctl_fmt_count(done, dn, sizeof(dn));
    ctl_fmt_count(total, tot, sizeof(tot));
    if (ctl_console_is_tty()) {
        char bar[31];
        int fill = (int)(pct * 30 / 100);
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '-';
        bar[30] = 0;
        ctl_status("%s [%s] %s/%s objects (%.1f%%) %.0f ops/s ETA %.0fs", phase, bar, dn, tot,
                   pct, rate, eta);
    } else {
        ctl_status("%s: %s/%s objects (%.1f%%) %.0f ops/s ETA %.0fs", phase, dn, tot, pct, rate,
                   eta);
    }
}

static void on_tick(void *ud, const wl_tick_t *t)
{
    runctx_t *rc = ud;
    uint64_t wall_ms = t->wall_ns / 1000000ull;
    if (rc->perf_ok)
        wl_perflog_add(&rc->perf, stage_label(t->phase), wall_ms, t->elapsed_ns, t->delta,
                       t->interval_ns, t->final);
    wl_stats_merge(&rc->live, t->delta);
    rc->live_ns += t->interval_ns;
    if (rc->live_ns < 900000000ull) return; /* ticks jitter around 1 s */
    if (t->phase == WL_PHASE_EXECUTE) {
        ctl_print_live(&rc->live, rc->live_ns, t->elapsed_ns, rc->classes_used, NULL);
    } else if (t->total) {
        ctl_print_progress(wl_phase_name(t->phase), t->done, t->total,
                           wl_stats_total_ops(&rc->live), rc->live_ns);
    }
    wl_stats_reset(&rc->live);
    rc->live_ns = 0;
}

static void on_message(void *ud, rx_log_level_t level, const char *text)
{
    (void)ud;
    if (level <= RX_LOG_WARN)
        ctl_err("%s: %s", level == RX_LOG_ERROR ? "error" : "warning", text);
    else
        ctl_out("%s", text);
}

/* ------------------------------------------------------------------ summary -------------- */

void ctl_print_summary(const char *title, const wl_stats_t *s, uint64_t wall_ns, int open_loop)
{
    double secs = (double)wall_ns / 1e9;
    ctl_out("%s (%.2f s):", title, secs);
    ctl_out("  %-6s %12s %11s %10s %10s %10s %10s %10s %10s %10s %8s", "op", "ops", "ops/s",
            "MiB/s", "mean", "p50", "p90", "p99", "p99.9", "max", "errors");
    for (int o = 0; o < WL_OP__COUNT; o++) {
        uint64_t ops = wl_stats_ops(s, (wl_op_kind_t)o), errs = wl_stats_errors(s, (wl_op_kind_t)o);
        if (!ops && !errs) continue;
        wl_hist_t h;
        wl_hist_init(&h);
        wl_stats_op_hist(s, (wl_op_kind_t)o, -1, &h);
        char cnt[32], mean[24], p50[24], p90[24], p99[24], p999[24], mx[24];
        ctl_fmt_count(ops, cnt, sizeof(cnt));
        wl_fmt_ns((uint64_t)wl_hist_mean(&h), mean, sizeof(mean));
        wl_fmt_ns(wl_hist_quantile(&h, 0.5), p50, sizeof(p50));
        wl_fmt_ns(wl_hist_quantile(&h, 0.9), p90, sizeof(p90));
        wl_fmt_ns(wl_hist_quantile(&h, 0.99), p99, sizeof(p99));
        wl_fmt_ns(wl_hist_quantile(&h, 0.999), p999, sizeof(p999));
        wl_fmt_ns(h.max, mx, sizeof(mx));
        ctl_out("  %-6s %12s %11.1f %10.2f %10s %10s %10s %10s %10s %10s %8" PRIu64,
                wl_op_name((wl_op_kind_t)o), cnt, secs > 0 ? (double)ops / secs : 0,
                secs > 0 ? (double)wl_stats_bytes(s, (wl_op_kind_t)o) / 1048576.0 / secs : 0, mean,
                p50, p90, p99, p999, mx, errs);
        const wl_opstats_t *os = &s->op[o];
        if (open_loop && os->lat_sched.total) {
            wl_fmt_ns(wl_hist_quantile(&os->lat_sched, 0.5), p50, sizeof(p50));
            wl_fmt_ns(wl_hist_quantile(&os->lat_sched, 0.99), p99, sizeof(p99));
            wl_fmt_ns(os->lat_sched.max, mx, sizeof(mx));
            ctl_out("  %-6s   from intended start: p50 %s  p99 %s  max %s", "", p50, p99, mx);
        }
        print_errkinds(os, "");
        if (os->retries) ctl_out("  %-6s   retries: %" PRIu64, "", os->retries);
        wl_hist_free(&h);
    }
}

/* ------------------------------------------------------------------ run ------------------ */

void ctl_config_stem(const char *path, char *out, size_t len)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s", path);
    const char *b = basename(tmp);
    snprintf(out, len, "%s", b);
    char *dot = strrchr(out, '.');
    if (dot && dot != out) *dot = 0;
}

int ctl_cmd_run(const ctl_opts_t *o)
{
    wl_config_t cfg;
    int rc = ctl_load_config(o->config, &cfg);
    if (rc) return rc;
    if (ctl_dist_wanted(o, &cfg)) {
        /* agents run the workload; this process only drives them */
        rc = ctl_dist_run(o, &cfg);
        wl_config_free(&cfg);
        return rc;
    }
    sto_err_register();
    wl_err_register();

    int exit_code = 0;
    uint64_t t_start = rx_wall_ns();
    char stem[256], dir[PATH_MAX], path[PATH_MAX + 64];
    if (o->tsv_name)
        snprintf(stem, sizeof(stem), "%s", o->tsv_name);
    else
        ctl_config_stem(o->config, stem, sizeof(stem));
    rc = wl_results_dir_create(o->results_parent, stem, dir, sizeof(dir));
    if (rc) {
        fprintf(stderr, "cannot create the results directory under %s: %s\n", o->results_parent,
                strerror(-rc));
        wl_config_free(&cfg);
        return 1;
    }
    snprintf(path, sizeof(path), "%s/console_log.txt", dir);
    ctl_console_open_log(path);
    snprintf(path, sizeof(path), "%s/config.yaml", dir);
    if ((rc = wl_copy_file(o->config, path)) != 0)
        ctl_err("warning: cannot copy the config to %s: %s", path, strerror(-rc));

    int cores = effective_cores(o);
    /* file I/O runs on libuv's pool: one thread per slot, so concurrency is real */
    int pool = rx_threadpool_size((int)cfg.concurrency + 4);
    rx_engine_opts_t eo;
    rx_engine_opts_init(&eo);
    eo.cores = cores;
    rx_engine_t *eng = NULL;
    wl_run_t *run = NULL;
    runctx_t rc_ = {0};
    rc_.o = o;
    rc_.cfg = &cfg;
    wl_stats_init(&rc_.live);
    for (size_t i = 0; i < cfg.nops; i++) rc_.classes_used[wl_op_class(cfg.ops[i].op)] = 1;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    const char *status = "completed";
    char errtext[1024] = "";
    if ((rc = rx_engine_create(&eo, &eng)) != 0 || (rc = rx_engine_start(eng)) != 0) {
        snprintf(errtext, sizeof(errtext), "cannot start the reactor: %s", rx_strerror(rc));
        goto fail;
    }
    ctl_out("sai3bench-ctl %s: %s, %d core%s, concurrency %u, I/O pool %d threads", SAI3_VERSION,
            o->config, cores, cores == 1 ? "" : "s", cfg.concurrency, pool);
    ctl_out("Results directory: %s", dir);
    snprintf(path, sizeof(path), "%s/perf_log.tsv", dir);
    uint64_t perf_iv = cfg.perf_log.present ? cfg.perf_log.interval_ns : 1000000000ull;
    rc_.perf_ok = wl_perflog_open(&rc_.perf, path, "local", perf_iv) == 0;
    if (!rc_.perf_ok) ctl_err("warning: cannot write %s", path);

    wl_run_opts_t ro = {0};
    ro.cfg = &cfg;
    ro.engine = eng;
    ro.seed = rx_wall_ns() ^ ((uint64_t)getpid() << 32);
    ro.tick_ns = perf_iv < 1000000000ull ? perf_iv : 1000000000ull;
    ro.cb.ud = &rc_;
    ro.cb.on_tick = on_tick;
    ro.cb.on_message = on_message;
    rc = wl_run_create(&ro, &run);
    if (rc) {
        snprintf(errtext, sizeof(errtext), "%s", run && wl_run_error_text(run)[0]
                                                     ? wl_run_error_text(run)
                                                     : rx_strerror(rc));
        goto fail;
    }
    g_run = run;
    if (g_signals) wl_run_abort(run);

    int do_prepare = cfg.prepare.present && cfg.prepare.nensure > 0 && !o->skip_prepare &&
                     !o->cleanup_only;
    int do_execute = !o->prepare_only && !o->cleanup_only && cfg.nops > 0;
    int do_cleanup = o->cleanup_only || (cfg.prepare.present && cfg.prepare.cleanup &&
                                         !o->no_cleanup && !o->prepare_only);

    if (do_prepare) {
        uint64_t total = 0;
        for (size_t i = 0; i < cfg.prepare.nensure; i++) total += cfg.prepare.ensure[i].count;
        char tc[32];
        ctl_fmt_count(total, tc, sizeof(tc));
        ctl_out("Prepare: ensuring %s objects in %zu set%s", tc, cfg.prepare.nensure,
                cfg.prepare.nensure == 1 ? "" : "s");
        rc = wl_run_prepare(run);
        ctl_status_clear();
        rc_.live_ns = 0;
        wl_stats_reset(&rc_.live);
        const wl_prepare_summary_t *ps = wl_run_prepare_summary(run);
        char cr[32], ex[32], by[32];
        ctl_fmt_count(ps->created, cr, sizeof(cr));
        ctl_fmt_count(ps->existed, ex, sizeof(ex));
        wl_fmt_bytes(ps->bytes_created, by, sizeof(by));
        ctl_out("Prepare: %s created (%s), %s already present, %" PRIu64 " failed attempts, %.2f s",
                cr, by, ex, ps->failed, (double)ps->wall_ns / 1e9);
        const wl_stats_t *st = wl_run_stats(run, WL_PHASE_PREPARE);
        if (st) ctl_print_phase_errors(st);
        if (st && wl_stats_total_ops(st)) {
            snprintf(path, sizeof(path), "%s/prepare_results.tsv", dir);
            if (wl_results_write_tsv_file(path, st, wl_run_wall_ns(run, WL_PHASE_PREPARE), 1))
                ctl_err("warning: cannot write %s", path);
        }
        if (rc) goto phase_failed;
    }
    if (do_execute) {
        char d[32];
        wl_fmt_ns(cfg.duration_ns, d, sizeof(d));
        ctl_out("Execute: %zu op%s for %s", cfg.nops, cfg.nops == 1 ? "" : "s", d);
        rc = wl_run_execute(run);
        const wl_stats_t *st = wl_run_stats(run, WL_PHASE_EXECUTE);
        if (st) {
            ctl_print_summary("Execute results", st, wl_run_wall_ns(run, WL_PHASE_EXECUTE),
                          cfg.io_rate.present && cfg.io_rate.iops > 0);
        }
        if (rc) goto phase_failed;
    }
    if (do_cleanup) {
        ctl_out("Cleanup: removing prepared objects%s (mode %s)",
                do_execute ? " and objects the run created" : "",
                cfg.prepare.cleanup_mode == WL_CLEANUP_STRICT     ? "strict"
                : cfg.prepare.cleanup_mode == WL_CLEANUP_TOLERANT ? "tolerant"
                                                                  : "besteffort");
        rc = wl_run_cleanup(run);
        ctl_status_clear();
        const wl_stats_t *st = wl_run_stats(run, WL_PHASE_CLEANUP);
        if (st) {
            char n[32];
            ctl_fmt_count(wl_stats_ops(st, WL_OP_DELETE) + wl_stats_ops(st, WL_OP_RMDIR), n,
                      sizeof(n));
            ctl_out("Cleanup: %s removed, %" PRIu64 " errors, %.2f s", n,
                    wl_stats_total_errors(st), (double)wl_run_wall_ns(run, WL_PHASE_CLEANUP) / 1e9);
            ctl_print_phase_errors(st);
        }
        if (rc) goto phase_failed;
    }
    goto write;

phase_failed:
    snprintf(errtext, sizeof(errtext), "%s", wl_run_error_text(run)[0] ? wl_run_error_text(run)
                                                                       : rx_strerror(rc));
    if (rc == WL_EABORTED) {
        status = "interrupted";
        exit_code = 130;
        ctl_err("Interrupted: partial results are written; cleanup was skipped (run with "
                "--cleanup-only to remove prepared objects)");
    } else {
        status = "failed";
        exit_code = 1;
        ctl_err("error: %s", errtext);
    }
    goto write;

fail:
    status = "failed";
    exit_code = 1;
    ctl_err("error: %s", errtext);

write:
    if (run) {
        const wl_stats_t *st = wl_run_stats(run, WL_PHASE_EXECUTE);
        wl_stats_t empty;
        wl_stats_init(&empty);
        snprintf(path, sizeof(path), "%s/results.tsv", dir);
        if (wl_results_write_tsv_file(path, st ? st : &empty, wl_run_wall_ns(run, WL_PHASE_EXECUTE),
                                      0))
            ctl_err("warning: cannot write %s", path);
        wl_stats_free(&empty);
    }
    if (rc_.perf_ok) wl_perflog_close(&rc_.perf);
    {
        wl_metadata_t md = {0};
        md.test_name = stem;
        md.config_path = o->config;
        md.results_dir = dir;
        md.start_wall_ns = t_start;
        md.end_wall_ns = rx_wall_ns();
        md.argc = o->argc;
        md.argv = o->argv;
        md.cores = cores;
        md.concurrency = cfg.concurrency;
        md.status = status;
        md.error = errtext[0] ? errtext : NULL;
        const wl_stats_t *st = run ? wl_run_stats(run, WL_PHASE_EXECUTE) : NULL;
        md.total_ops = st ? wl_stats_total_ops(st) : 0;
        md.total_errors = st ? wl_stats_total_errors(st) : 0;
        snprintf(path, sizeof(path), "%s/metadata.json", dir);
        if (wl_metadata_write(path, &md)) ctl_err("warning: cannot write %s", path);
    }
    g_run = NULL;
    wl_run_destroy(run);
    if (eng) rx_engine_destroy(eng);
    wl_stats_free(&rc_.live);
    wl_config_free(&cfg);
    ctl_out("Results saved to: %s", dir);
    ctl_console_close_log();
    return exit_code;
}
