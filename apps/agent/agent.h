/* sai3bench-agent internals.
 *
 * Threads: the main thread runs one libuv loop with the gRPC server (Ping, Run, Abort) and owns
 * every rpc object. A run gets a runner thread that parses the config, owns the rx engine and the
 * wl_run, and blocks in the workload's phase functions; it talks to the loop only through the
 * agent's outbox (a locked queue + uv_async), and the loop talks to it through the run's command
 * queue (mutex + condition variable) and wl_run_abort(), which is thread-safe.
 */
#ifndef AGT_H
#define AGT_H

#include <stdint.h>
#include <uv.h>

#include "rpc/server.h"

typedef struct agt_opts {
    char listen_host[256];
    int listen_port;
    const char *listen_text; /* as given (for the banner) */
    int verbose;
    int cores;               /* 0 = all */
    int io_threads;          /* libuv pool size for file I/O */
    int allow_commands;
    const char *results_root; /* default /tmp */
    /* TLS */
    int tls;
    const char *tls_cert, *tls_key; /* own files, or NULL = state dir */
    const char *tls_client_ca;      /* mutual TLS */
    const char *state_dir;
    /* token */
    const char *auth_token_file;
    char token[512];
    uint64_t keepalive_interval_ns, keepalive_timeout_ns;
} agt_opts_t;

typedef struct agt agt_t;

/* Creates the agent on loop: registers the three methods on srv. */
int agt_create(uv_loop_t *loop, rpc_server_t *srv, const agt_opts_t *o, agt_t **out);
/* Aborts the active run (if any) with reason; on_idle runs (on the loop) once no run is active. */
void agt_shutdown(agt_t *a, const char *reason, void (*on_idle)(void *ud), void *ud);
void agt_destroy(agt_t *a);
/* Runs accepted since start, and 1 while a run is active (loop thread). */
uint64_t agt_runs_started(const agt_t *a);
int agt_busy(const agt_t *a);

#endif
