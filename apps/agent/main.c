/* sai3bench-agent: command line, logging, TLS material, the gRPC server and signals. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "agent.h"
#include "rpc/err.h"
#include "rpc/server.h"
#include "rx/engine.h"
#include "rx/err.h"
#include "rx/http1.h"
#include "rx/log.h"
#include "rx/stream.h"
#include "sto/err.h"
#include "sto/s3xml.h"
#include "wire.h"
#include "wl/err.h"
#include "wl/units.h"

static const char usage[] =
    "usage: sai3bench-agent [options]\n"
    "\n"
    "Serves sai3bench-ctl over gRPC: one distributed run at a time.\n"
    "\n"
    "options:\n"
    "  --listen ADDR          address to listen on (default 0.0.0.0:7761; [::]:7761 for IPv6)\n"
    "  -v, -vv                more log output (debug, trace); also SAI3_LOG or RUST_LOG\n"
    "                         (error, warn, info, debug, trace; default info)\n"
    "  --cores N              reactor cores for runs (default: all CPUs)\n"
    "  --io-threads N         libuv thread-pool size for file I/O (default 64)\n"
    "  --allow-commands       allow `custom` stages (runs their commands on this host)\n"
    "  --results-root DIR     where run results are kept (default /tmp): DIR/sai3-<time>-<id>/\n"
    "  --tls                  serve TLS; the certificate is made once and kept in the state dir\n"
    "  --tls-cert FILE --tls-key FILE\n"
    "                         serve TLS with your own certificate and key (PEM)\n"
    "  --tls-client-ca FILE   require client certificates signed by FILE (mutual TLS)\n"
    "  --state-dir DIR        where the generated certificate lives (default\n"
    "                         /var/lib/sai3bench-agent, or ~/.local/state/sai3bench-agent)\n"
    "  --auth-token-file F    require `authorization: Bearer <token>` with the token in F\n"
    "  --keepalive-interval D HTTP/2 PING after D without traffic (default 5s)\n"
    "  --keepalive-timeout D  drop the controller when no answer within D (default 10s)\n"
    "  --exit-on-disconnect   exit once the controller that started a run is gone: when that\n"
    "                         run has ended and no controller connection is left, or when no\n"
    "                         run arrives within --start-timeout (used when sai3bench-ctl\n"
    "                         starts agents over SSH)\n"
    "  --start-timeout D      with --exit-on-disconnect: how long to wait for the first run\n"
    "                         (default 120s)\n"
    "  -V, --version          print the version\n"
    "  -h, --help             this text\n";

/* ---------------------------------------------------------------- logging ---------------- */

static pthread_mutex_t g_logmu = PTHREAD_MUTEX_INITIALIZER;

static void logger(void *ud, rx_log_level_t level, const char *subsys, int core, const char *msg)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char t[40];
    strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%S", &tm);
    static const char *const names[] = {"ERROR", "WARN", "INFO", "DEBUG", "TRACE"};
    pthread_mutex_lock(&g_logmu);
    if (core >= 0)
        fprintf(stderr, "%s.%03ldZ %-5s %s[core %d]: %s\n", t, ts.tv_nsec / 1000000,
                names[level], subsys, core, msg);
    else
        fprintf(stderr, "%s.%03ldZ %-5s %s: %s\n", t, ts.tv_nsec / 1000000, names[level], subsys,
                msg);
    pthread_mutex_unlock(&g_logmu);
}

/* A level from SAI3_LOG / RUST_LOG: a bare level, or the last bare level in a comma list
 * ("sai3bench=debug,info" takes the first module-free or sai3 entry). -1 if none. */
static int env_level(const char *v)
{
    static const char *const names[] = {"error", "warn", "info", "debug", "trace"};
    if (!v || !*v)
        return -1;
    int lvl = -1;
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", v);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        const char *val = tok;
        if (eq) {
            *eq = 0;
            if (strncmp(tok, "sai3", 4))
                continue;
            val = eq + 1;
        }
        for (int i = 0; i < 5; i++)
            if (!strcasecmp(val, names[i]))
                lvl = i;
        if (!strcasecmp(val, "off"))
            lvl = RX_LOG_ERROR;
    }
    return lvl;
}

/* ---------------------------------------------------------------- server & signals ------- */

typedef struct app {
    uv_loop_t loop;
    rpc_server_t *srv;
    agt_t *agt;
    uv_signal_t sigint, sigterm;
    int signals;  /* SIGINT/SIGTERM received */
    int stopping; /* shutting down (a signal or --exit-on-disconnect) */
    /* --exit-on-disconnect */
    int exit_on_disconnect;
    uint64_t start_timeout_ns, started_ns;
    uv_timer_t watch;
} app_t;

static void srv_closed(void *ud)
{
    app_t *a = ud;
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    if (a->exit_on_disconnect)
        uv_close((uv_handle_t *)&a->watch, NULL);
    agt_destroy(a->agt);
    a->agt = NULL;
}

static void on_idle(void *ud)
{
    app_t *a = ud;
    rpc_server_close(a->srv, srv_closed, a);
}

static void on_signal(uv_signal_t *h, int sig)
{
    app_t *a = h->data;
    if (a->signals++) {
        rx_log(RX_LOG_WARN, "agent", "second signal: exiting at once");
        _exit(1);
    }
    if (a->stopping) /* already leaving (--exit-on-disconnect): nothing more to do */
        return;
    a->stopping = 1;
    rx_log(RX_LOG_INFO, "agent", "%s: stopping (an active run is aborted; its results are kept)",
           sig == SIGTERM ? "SIGTERM" : "SIGINT");
    agt_shutdown(a->agt, sig == SIGTERM ? "agent received SIGTERM" : "agent received SIGINT",
                 on_idle, a);
}

/* --exit-on-disconnect: checked every 200 ms. The agent leaves like on SIGTERM once a run was
 * accepted, no run is active any more and no connection is open (the controller finished and
 * hung up, was killed, or was dropped by the keepalive), or when no run came within the start
 * timeout (the controller that launched it died before connecting). */
static void on_watch(uv_timer_t *t)
{
    app_t *a = t->data;
    if (a->stopping)
        return;
    const char *why = NULL;
    if (agt_runs_started(a->agt) > 0) {
        if (!agt_busy(a->agt) && rpc_server_connections(a->srv) == 0)
            why = "the controller is gone (--exit-on-disconnect): exiting";
    } else if (uv_hrtime() - a->started_ns > a->start_timeout_ns &&
               rpc_server_connections(a->srv) == 0) {
        why = "no run arrived within --start-timeout (--exit-on-disconnect): exiting";
    }
    if (!why)
        return;
    a->stopping = 1;
    rx_log(RX_LOG_INFO, "agent", "%s", why);
    uv_timer_stop(t);
    agt_shutdown(a->agt, "agent exiting (--exit-on-disconnect)", on_idle, a);
}

/* Start-up failed after the loop existed: close what was made (the agent, the server, the loop)
 * so that nothing is left behind, and exit 1. */
static int fail_exit(app_t *a, rx_tls_ctx_t *tctx)
{
    if (a->agt)
        agt_destroy(a->agt);
    if (a->srv)
        rpc_server_close(a->srv, NULL, NULL);
    uv_run(&a->loop, UV_RUN_DEFAULT);
    uv_loop_close(&a->loop);
    rx_tls_ctx_destroy(tctx);
    return 1;
}

/* ---------------------------------------------------------------- TLS material ----------- */

static int mkdirs(const char *path, mode_t mode)
{
    char b[PATH_MAX];
    snprintf(b, sizeof(b), "%s", path);
    for (char *p = b + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(b, mode) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(b, mode) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static void default_state_dir(char *out, size_t len)
{
    const char *home = getenv("HOME");
    if (geteuid() == 0 || !home || !*home)
        snprintf(out, len, "/var/lib/sai3bench-agent");
    else
        snprintf(out, len, "%s/.local/state/sai3bench-agent", home);
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int bad(const char *fmt, const char *arg)
{
    fprintf(stderr, "sai3bench-agent: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nrun 'sai3bench-agent --help' for usage\n");
    return 2;
}

int main(int argc, char **argv)
{
    agt_opts_t o;
    memset(&o, 0, sizeof(o));
    signal(SIGPIPE, SIG_IGN);
    rx_http1_err_register();
    sto_err_register();
    sto_s3xml_err_register();
    wl_err_register();
    rpc_err_register();
    const char *listen = "0.0.0.0:7761";
    const char *ki = NULL, *kt = NULL, *st = NULL;
    int exit_on_disconnect = 0;
    uint64_t start_timeout_ns = 120000000000ull;
    o.results_root = "/tmp";
    o.io_threads = 64;
    o.keepalive_interval_ns = 5000000000ull;
    o.keepalive_timeout_ns = 10000000000ull;
    char statedir[PATH_MAX];
    default_state_dir(statedir, sizeof(statedir));
    o.state_dir = statedir;
    int first = 1;
    /* `docker run IMAGE sai3bench-agent --listen ...` (the seed's form) with an image whose
     * entrypoint is the agent: the repeated program name is not an argument */
    if (argc > 1) {
        const char *b = strrchr(argv[1], '/');
        if (!strcmp(b ? b + 1 : argv[1], "sai3bench-agent"))
            first = 2;
    }
    for (int i = first; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
#define NEED_VAL()                                                                                 \
    do {                                                                                           \
        if (app_opt_value(argc, argv, &i, &val) != 0)                                              \
            return bad("option '%s' needs a value", a);                                            \
    } while (0)
#define IS(name) app_opt_is(a, name)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            printf("sai3bench-agent %s\n", SAI3_VERSION);
            return 0;
        } else if (a[0] == '-' && a[1] == 'v' && strspn(a + 1, "v") == strlen(a + 1)) {
            o.verbose += (int)strlen(a + 1);
        } else if (IS("--listen")) {
            NEED_VAL();
            listen = val;
        } else if (IS("--cores")) {
            NEED_VAL();
            if (parse_int(val, 1, 1024, &o.cores))
                return bad("--cores wants a number from 1 to 1024, got '%s'", val);
        } else if (IS("--io-threads")) {
            NEED_VAL();
            if (parse_int(val, 1, 1024, &o.io_threads))
                return bad("--io-threads wants a number from 1 to 1024, got '%s'", val);
        } else if (!strcmp(a, "--allow-commands")) {
            o.allow_commands = 1;
        } else if (IS("--results-root")) {
            NEED_VAL();
            o.results_root = val;
        } else if (!strcmp(a, "--tls")) {
            o.tls = 1;
        } else if (IS("--tls-cert")) {
            NEED_VAL();
            o.tls_cert = val;
            o.tls = 1;
        } else if (IS("--tls-key")) {
            NEED_VAL();
            o.tls_key = val;
            o.tls = 1;
        } else if (IS("--tls-client-ca")) {
            NEED_VAL();
            o.tls_client_ca = val;
            o.tls = 1;
        } else if (IS("--state-dir")) {
            NEED_VAL();
            o.state_dir = val;
        } else if (IS("--auth-token-file")) {
            NEED_VAL();
            o.auth_token_file = val;
        } else if (!strcmp(a, "--exit-on-disconnect")) {
            exit_on_disconnect = 1;
        } else if (IS("--start-timeout")) {
            NEED_VAL();
            st = val;
        } else if (IS("--keepalive-interval")) {
            NEED_VAL();
            ki = val;
        } else if (IS("--keepalive-timeout")) {
            NEED_VAL();
            kt = val;
        } else {
            return bad(a[0] == '-' ? "unknown option '%s'" : "unexpected argument '%s'", a);
        }
#undef IS
#undef NEED_VAL
    }
    char e[512];
    if (ki && (wl_parse_duration_ns(ki, &o.keepalive_interval_ns, e, sizeof(e)) ||
               o.keepalive_interval_ns < 100000000ull))
        return bad("--keepalive-interval wants a duration of at least 100ms, got '%s'", ki);
    if (kt && (wl_parse_duration_ns(kt, &o.keepalive_timeout_ns, e, sizeof(e)) ||
               o.keepalive_timeout_ns < 100000000ull))
        return bad("--keepalive-timeout wants a duration of at least 100ms, got '%s'", kt);
    if (st && (wl_parse_duration_ns(st, &start_timeout_ns, e, sizeof(e)) ||
               start_timeout_ns < 100000000ull))
        return bad("--start-timeout wants a duration of at least 100ms, got '%s'", st);
    if (st && !exit_on_disconnect)
        return bad("%s", "--start-timeout applies only with --exit-on-disconnect");
    if (!o.tls_cert != !o.tls_key)
        return bad("%s", "--tls-cert and --tls-key go together");
    {
        /* port 0 (an ephemeral port, for tests) is fine here, unlike in agent addresses */
        char la[300];
        snprintf(la, sizeof(la), "%s", listen);
        size_t ll = strlen(la);
        int eph = ll > 2 && !strcmp(la + ll - 2, ":0");
        if (eph)
            la[ll - 1] = '1';
        if (wl_agent_address_parse(la, o.listen_host, sizeof(o.listen_host), &o.listen_port, e,
                                   sizeof(e)) != 0)
            return bad("--listen: %s", e);
        if (eph)
            o.listen_port = 0;
    }
    o.listen_text = listen;

    int lvl = RX_LOG_INFO;
    int el = env_level(getenv("SAI3_LOG"));
    if (el < 0)
        el = env_level(getenv("RUST_LOG"));
    if (el >= 0)
        lvl = el;
    lvl += o.verbose;
    if (lvl > RX_LOG_TRACE)
        lvl = RX_LOG_TRACE;
    rx_log_set(logger, NULL, (rx_log_level_t)lvl);

    if (o.auth_token_file && app_read_token(o.auth_token_file, o.token, sizeof(o.token), e,
                                            sizeof(e)) != 0) {
        fprintf(stderr, "sai3bench-agent: %s\n", e);
        return 1;
    }
    struct stat sb;
    if (stat(o.results_root, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "sai3bench-agent: --results-root %s is not a directory\n",
                o.results_root);
        return 1;
    }
    /* file I/O of runs goes to libuv's pool; its size is fixed at its first use */
    rx_threadpool_size(o.io_threads);

    app_t app;
    memset(&app, 0, sizeof(app));
    rpc_server_opts_t so;
    rpc_server_opts_init(&so);
    so.keepalive_interval_ns = o.keepalive_interval_ns;
    so.keepalive_timeout_ns = o.keepalive_timeout_ns;
    so.max_message = 64u << 20; /* RunSpecs carry whole configs */
    rx_tls_ctx_t *tctx = NULL;
    char cert[PATH_MAX], key[PATH_MAX];
    if (o.tls) {
        if (o.tls_cert) {
            snprintf(cert, sizeof(cert), "%s", o.tls_cert);
            snprintf(key, sizeof(key), "%s", o.tls_key);
        } else {
            snprintf(cert, sizeof(cert), "%s/agent_cert.pem", o.state_dir);
            snprintf(key, sizeof(key), "%s/agent_key.pem", o.state_dir);
            if (access(cert, R_OK) != 0 || access(key, R_OK) != 0) {
                int rc = mkdirs(o.state_dir, 0700);
                if (rc) {
                    fprintf(stderr, "sai3bench-agent: cannot create the state directory %s: %s\n",
                            o.state_dir, strerror(-rc));
                    return 1;
                }
                /* agents sharing a state dir (several on one host) make one certificate, not
                 * two halves of two: the first one makes it under the lock, the others use it */
                char lockp[PATH_MAX + 16];
                snprintf(lockp, sizeof(lockp), "%s/.cert.lock", o.state_dir);
                int lfd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
                if (lfd < 0 || flock(lfd, LOCK_EX) != 0) {
                    fprintf(stderr, "sai3bench-agent: cannot lock %s: %s\n", lockp,
                            strerror(errno));
                    if (lfd >= 0)
                        close(lfd);
                    return 1;
                }
                if (access(cert, R_OK) != 0 || access(key, R_OK) != 0) {
                    char host[256] = "localhost";
                    gethostname(host, sizeof(host) - 1);
                    const char *names[] = {"sai3bench-agent", "localhost", host, NULL};
                    if (!strcmp(host, "localhost"))
                        names[2] = NULL;
                    rc = rx_tls_cert_generate(cert, key, "sai3bench-agent", names, 3650, e,
                                              sizeof(e));
                    if (rc) {
                        close(lfd);
                        fprintf(stderr, "sai3bench-agent: cannot make a TLS certificate: %s\n", e);
                        return 1;
                    }
                    fprintf(stderr, "sai3bench-agent: made a new TLS certificate %s (key %s)\n",
                            cert, key);
                }
                close(lfd); /* releases the lock */
            }
        }
        uint8_t fp[32];
        char fps[96];
        if (rx_tls_cert_file_sha256(cert, fp, e, sizeof(e)) != 0) {
            fprintf(stderr, "sai3bench-agent: %s\n", e);
            return 1;
        }
        rx_tls_fingerprint_format(fp, fps);
        static const char *const alpn[] = {"h2", NULL};
        int rc = rx_tls_server_ctx_create(cert, key, alpn, o.tls_client_ca, &tctx, e, sizeof(e));
        if (rc) {
            fprintf(stderr, "sai3bench-agent: TLS: %s\n", e[0] ? e : rx_strerror(rc));
            return 1;
        }
        printf("TLS certificate: %s\nSHA-256 fingerprint: %s\n", cert, fps);
        so.stream.tls = 1;
        so.stream.tls_ctx = tctx;
    }
    int rc = uv_loop_init(&app.loop);
    if (rc) {
        fprintf(stderr, "sai3bench-agent: cannot create the event loop: %s\n", uv_strerror(rc));
        rx_tls_ctx_destroy(tctx);
        return 1;
    }
    if ((rc = rpc_server_create(&app.loop, &so, &app.srv)) != 0) {
        fprintf(stderr, "sai3bench-agent: cannot create the server: %s\n", rpc_strerror(rc));
        return fail_exit(&app, tctx);
    }
    if ((rc = agt_create(&app.loop, app.srv, &o, &app.agt)) != 0) {
        fprintf(stderr, "sai3bench-agent: %s\n", rpc_strerror(rc));
        return fail_exit(&app, tctx);
    }
    rc = rpc_server_listen(app.srv, o.listen_host, o.listen_port, e, sizeof(e));
    if (rc) {
        if (rc == UV_EADDRINUSE)
            fprintf(stderr,
                    "sai3bench-agent: port %d is already in use (%s); another agent may be "
                    "running: check with `ss -tlnp 'sport = :%d'`, or pick another port with "
                    "--listen\n",
                    o.listen_port, e, o.listen_port);
        else
            fprintf(stderr, "sai3bench-agent: cannot listen on %s: %s\n", listen,
                    e[0] ? e : rpc_strerror(rc));
        return fail_exit(&app, tctx);
    }
    char shown[300];
    if (o.listen_port == 0) /* ephemeral: show the port we got */
        snprintf(shown, sizeof(shown), "%s%s%s:%d", strchr(o.listen_host, ':') ? "[" : "",
                 o.listen_host, strchr(o.listen_host, ':') ? "]" : "", rpc_server_port(app.srv));
    else
        snprintf(shown, sizeof(shown), "%s", listen);
    printf("sai3bench-agent listening (%s) on %s\n", o.tls ? "TLS" : "PLAINTEXT", shown);
    fflush(stdout);
    if (!o.tls)
        rx_log(RX_LOG_WARN, "agent",
               "plaintext h2c: anyone who can reach this port can run workloads%s; use --tls "
               "(and --auth-token-file) on shared networks",
               o.token[0] ? " if they know the token" : "");
    uv_signal_init(&app.loop, &app.sigint);
    uv_signal_init(&app.loop, &app.sigterm);
    app.sigint.data = app.sigterm.data = &app;
    uv_signal_start(&app.sigint, on_signal, SIGINT);
    uv_signal_start(&app.sigterm, on_signal, SIGTERM);
    if (exit_on_disconnect) {
        app.exit_on_disconnect = 1;
        app.start_timeout_ns = start_timeout_ns;
        app.started_ns = uv_hrtime();
        uv_timer_init(&app.loop, &app.watch);
        app.watch.data = &app;
        uv_timer_start(&app.watch, on_watch, 200, 200);
    }
    uv_run(&app.loop, UV_RUN_DEFAULT);
    uv_loop_close(&app.loop);
    rx_tls_ctx_destroy(tctx);
    rx_log(RX_LOG_INFO, "agent", "stopped");
    return 0;
}
