/* wl/config.h — the YAML workload model (the original sai3-bench schema, strict).
 *
 * Loading is all-or-nothing: every unknown key, wrong type and bad value in the file is reported
 * in one pass as a diagnostic "file:line:col: message" (with "did you mean 'x'?" for near misses),
 * and the config is usable only when no diagnostic was produced. Keys of the original schema that
 * this build does not implement yet (distributed, multi_endpoint, range_engine, ...) are errors
 * that say so, never silently ignored. The `distributed:` block is parsed into cfg->dist.
 *
 * Ownership: wl_config_t owns every string and array in it; free with wl_config_free().
 * Thread-safety: a loaded config is immutable and may be read from any thread.
 */
#ifndef WL_CONFIG_H
#define WL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "wl/datagen.h"

typedef enum wl_op_kind {
    WL_OP_GET = 0,
    WL_OP_PUT,
    WL_OP_LIST,
    WL_OP_STAT,
    WL_OP_DELETE,
    WL_OP_MKDIR,
    WL_OP_RMDIR,
    WL_OP__COUNT
} wl_op_kind_t;

const char *wl_op_name(wl_op_kind_t op);  /* "GET", "PUT", "LIST", ... */

typedef enum wl_size_kind { WL_SIZE_FIXED = 0, WL_SIZE_UNIFORM, WL_SIZE_LOGNORMAL } wl_size_kind_t;

typedef struct wl_size_spec {
    wl_size_kind_t kind;
    uint64_t fixed;       /* WL_SIZE_FIXED */
    uint64_t min, max;    /* uniform: inclusive bounds; lognormal: clamp bounds */
    double mean, std_dev; /* lognormal, linear space (bytes) */
} wl_size_spec_t;

/* Draws a size. Deterministic for a given rng state. */
uint64_t wl_size_sample(const wl_size_spec_t *s, wl_rng_t *rng);
/* Size of prepared object `index` under a set seeded with set_seed: a pure function of both. */
uint64_t wl_size_for_index(const wl_size_spec_t *s, uint64_t set_seed, uint64_t index);
/* Expected mean size (for plans): exact for fixed/uniform, clamped estimate for lognormal. */
double wl_size_mean(const wl_size_spec_t *s);

typedef struct wl_op_cfg {
    wl_op_kind_t op;
    char *path;            /* as written; relative to target unless it contains "://" */
    uint32_t weight;       /* > 0 */
    wl_size_spec_t size;   /* PUT only: object_size or size_spec */
    wl_fill_t fill;        /* PUT: default random */
    uint32_t dedup_factor;    /* PUT: default 1 */
    uint32_t compress_factor; /* PUT: default 1 */
    uint32_t concurrency;  /* 0 = no per-op limit */
    int recursive;         /* RMDIR */
    int line, col;         /* where the entry starts, for messages */
} wl_op_cfg_t;

typedef struct wl_ensure_cfg {
    char *base_uri;           /* absolute URI */
    uint64_t count;
    wl_size_spec_t size;      /* size_spec, or min_size/max_size (equal = fixed); default 1 MiB */
    wl_fill_t fill;           /* default random */
    uint32_t dedup_factor;    /* default 1 */
    uint32_t compress_factor; /* default 1 */
    char *endpoint;           /* `endpoint:` of this entry (s3:// only); NULL = the top level's */
    int line, col;
} wl_ensure_cfg_t;

typedef enum wl_cleanup_mode {
    WL_CLEANUP_TOLERANT = 0, /* default: not-found is fine, other errors fail */
    WL_CLEANUP_STRICT,       /* any error fails */
    WL_CLEANUP_BESTEFFORT,   /* never fails */
} wl_cleanup_mode_t;

typedef struct wl_prepare_cfg {
    int present;
    wl_ensure_cfg_t *ensure;
    size_t nensure;
    int cleanup;
    wl_cleanup_mode_t cleanup_mode;
    int skip_verification;
    int force_overwrite;
    uint64_t post_prepare_delay_ns;
} wl_prepare_cfg_t;

typedef enum wl_rate_dist {
    WL_RATE_EXPONENTIAL = 0,
    WL_RATE_UNIFORM,
    WL_RATE_DETERMINISTIC,
} wl_rate_dist_t;

typedef struct wl_rate_cfg {
    int present;
    double iops;          /* 0 = unlimited ("max") */
    wl_rate_dist_t distribution;
} wl_rate_cfg_t;

typedef struct wl_errh_cfg {
    uint64_t max_total_errors;      /* default 100 */
    double error_rate_threshold;    /* errors/s, default 5.0 */
    uint64_t backoff_duration_ns;   /* default 5 s */
    uint64_t error_rate_window_ns;  /* default 1 s */
    int retry_on_error;             /* default 0 */
    uint32_t max_retries;           /* default 3 */
    uint64_t initial_retry_delay_ms;/* default 100 */
    uint64_t max_retry_delay_ms;    /* default 5000 */
    double retry_backoff_multiplier;/* default 2.0 */
    double retry_jitter_factor;     /* default 0.25, in [0,1] */
} wl_errh_cfg_t;

typedef struct wl_perf_log_cfg {
    int present;
    uint64_t interval_ns; /* default 1 s */
} wl_perf_log_cfg_t;

/* Network storage options: top-level `endpoint:`, the `s3:` block and the `http:` block. */
typedef struct wl_net_cfg {
    char *endpoint;               /* `endpoint:` URL for s3:// URIs without host; NULL = none */
    /* s3: */
    int virtual_host;             /* s3.addressing: virtual (default path) */
    int sign_payload;             /* s3.sign_payload (default false: UNSIGNED-PAYLOAD) */
    int create_bucket;            /* s3.create_bucket (default true): prepare creates it */
    uint64_t multipart_threshold; /* s3.multipart_threshold (default 64 MiB) */
    uint64_t part_size;           /* s3.part_size (default 16 MiB) */
    uint32_t part_concurrency;    /* s3.part_concurrency (default 8) */
    /* http: */
    uint32_t max_connections;     /* http.max_connections per core and store; 0 = automatic */
    uint64_t connect_timeout_ns;  /* http.connect_timeout (default 5 s) */
    uint64_t io_timeout_ns;       /* http.io_timeout (default 30 s) */
    char *ca_bundle;              /* http.ca_bundle; NULL = AWS_CA_BUNDLE or the system bundle */
    int insecure_skip_verify;     /* http.insecure_skip_verify (default false) */
    int version;                  /* http.version: 0 "1.1" (default), 1 "2", 2 "auto" */
    uint32_t h2_max_streams;      /* http.h2_max_streams per connection (default 100) */
    uint64_t h2_stream_window;    /* http.h2_stream_window (default 4 MiB) */
    uint64_t h2_conn_window;      /* http.h2_conn_window (default 4 x stream window) */
} wl_net_cfg_t;

/* `distributed:` — read by the controller; agents parse it too (it must be valid) but act only on
 * what the controller sends them. */
typedef enum wl_stage_type {
    WL_STAGE_PREPARE = 1, /* values match proto StageType */
    WL_STAGE_EXECUTE = 2,
    WL_STAGE_CLEANUP = 3,
    WL_STAGE_CUSTOM = 4,
} wl_stage_type_t;

typedef enum wl_barrier_rule {
    WL_BARRIER_BEST_EFFORT = 0, /* default: every agent still in the run reached it */
    WL_BARRIER_ALL_OR_NOTHING,  /* every agent reached it and none failed, else abort */
    WL_BARRIER_MAJORITY,        /* more than half of all agents reached it */
} wl_barrier_rule_t;

typedef struct wl_stage_cfg {
    char *name;
    wl_stage_type_t type;
    uint64_t duration_ns;   /* execute: 0 = the top-level duration */
    char *command;          /* custom */
    char **args;            /* custom */
    size_t nargs;
    uint64_t timeout_ns;    /* 0 = none */
    int optional;
    uint64_t expected_objects;
    int line, col;
} wl_stage_cfg_t;

/* A NAME=value pair (env of agents started over SSH). */
typedef struct wl_kv {
    char *key, *value;
} wl_kv_t;

typedef struct wl_agent_cfg {
    char *address;          /* as written */
    char *host;             /* without brackets */
    int port;               /* default WL_AGENT_DEFAULT_PORT */
    char *id;               /* default "agent-<n>" (1-based position) */
    char *target_override;  /* NULL = none */
    uint32_t concurrency_override; /* 0 = none */
    char *tls_fingerprint;  /* per-agent pin (overrides distributed.tls.fingerprint) */
    int port_given;         /* the address had ":port" */
    int listen_port;        /* listen_port (SSH mode): 0 = not given */
    wl_kv_t *env;           /* env (SSH mode): added to the agent's environment */
    size_t nenv;
    char **volumes;         /* volumes (docker deployment): host:container[:mode] */
    size_t nvolumes;
    int line, col;
} wl_agent_cfg_t;

/* distributed.ssh: the controller starts (and stops) the agents over SSH. */
typedef struct wl_ssh_cfg {
    int present;
    int enabled;
    char *user;          /* NULL = the local user name */
    char *key_path;      /* NULL = ~/.ssh/sai3bench_id_rsa */
    int port;            /* default 22 */
    char *known_hosts;   /* NULL = ~/.ssh/known_hosts (host keys are always checked) */
    uint64_t timeout_ns; /* per SSH step and for the agent to listen; default 10 s */
    int line, col;
} wl_ssh_cfg_t;

typedef enum wl_deploy_type {
    WL_DEPLOY_BINARY = 0, /* the agent binary on the host (default) */
    WL_DEPLOY_DOCKER,     /* a container (docker or podman) */
} wl_deploy_type_t;

typedef enum wl_pull_policy {
    WL_PULL_IF_NOT_PRESENT = 0,
    WL_PULL_ALWAYS,
    WL_PULL_NEVER,
} wl_pull_policy_t;

/* distributed.deployment: how the agent is started over SSH. */
typedef struct wl_deploy_cfg {
    int present;
    wl_deploy_type_t type;      /* type (or deploy_type) */
    char *runtime;              /* container_runtime: "docker" (default) or "podman" */
    char *image;                /* default "sai3bench:latest" */
    char *network_mode;         /* default "host" */
    wl_pull_policy_t pull_policy;
    char *binary_path;          /* default "sai3bench-agent" (PATH, /usr/local/bin, ~/.local/bin) */
    char **docker_args;         /* extra arguments of `docker run` */
    size_t ndocker_args;
    char **agent_args;          /* extra arguments of the agent */
    size_t nagent_args;
    wl_kv_t *env;               /* env for every agent (an agent's own env wins) */
    size_t nenv;
    char **volumes;             /* docker only */
    size_t nvolumes;
    char *log_dir;              /* default "~/sai3-logs" on the agent host */
    int line, col;
} wl_deploy_cfg_t;

#define WL_AGENT_DEFAULT_PORT 7761

typedef struct wl_dist_cfg {
    int present;
    wl_agent_cfg_t *agents;
    size_t nagents;
    int shared_filesystem;        /* -1 = not given: true for s3/az/gs targets, else false */
    uint64_t start_delay_ns;      /* default 2 s */
    int abort_on_agent_failure;   /* on_agent_failure: abort (default continue) */
    wl_barrier_rule_t barrier;    /* barrier: rule applied at every stage end */
    uint64_t barrier_timeout_ns;  /* barrier_timeout: default 0 = none */
    wl_stage_cfg_t *stages;       /* NULL = prepare (if any), execute, cleanup (if any) */
    size_t nstages;
    char *path_template;          /* default "agent-{id}/" (shared_filesystem false) */
    /* tls: */
    int tls;                      /* tls.enabled, or implied by ca/fingerprint */
    char *tls_ca;                 /* tls.ca: PEM file to verify agents against */
    char *tls_fingerprint;        /* tls.fingerprint: SHA-256 pin for every agent */
    char *tls_server_name;        /* tls.server_name (default "sai3bench-agent" with ca) */
    char *tls_client_cert, *tls_client_key; /* mutual TLS */
    char *auth_token_file;
    int allow_plaintext_credentials;
    uint64_t keepalive_interval_ns; /* grpc_keepalive_interval, default 5 s */
    uint64_t keepalive_timeout_ns;  /* grpc_keepalive_timeout, default 10 s */
    uint64_t agent_ready_timeout_ns;/* default 120 s */
    uint64_t connect_timeout_ns;    /* connect_timeout, default 5 s */
    wl_ssh_cfg_t ssh;
    wl_deploy_cfg_t deploy;
    int line, col;
} wl_dist_cfg_t;

/* Parses "host:port", "host" (default port), "[v6]:port", "[v6]", "v6::addr" (no port). Writes the
 * host without brackets. Returns 0 or -EINVAL (err explains). */
int wl_agent_address_parse(const char *s, char *host, size_t hostlen, int *port, char *err,
                           size_t errlen);

void wl_dist_defaults(wl_dist_cfg_t *d);
void wl_dist_free(wl_dist_cfg_t *d);

typedef struct wl_config {
    char *source;         /* file name used in diagnostics */
    char *target;         /* may be NULL */
    uint64_t duration_ns; /* default 60 s */
    uint32_t concurrency; /* default 16 */
    wl_op_cfg_t *ops;
    size_t nops;
    wl_prepare_cfg_t prepare;
    wl_rate_cfg_t io_rate;
    wl_errh_cfg_t errh;
    wl_perf_log_cfg_t perf_log;
    wl_net_cfg_t net;
    wl_dist_cfg_t dist;
} wl_config_t;

typedef struct wl_diag {
    int line, col; /* 1-based; 0 when not tied to a place */
    char *msg;
} wl_diag_t;

typedef struct wl_diags {
    char *source;
    wl_diag_t *v;
    size_t n, cap;
} wl_diags_t;

void wl_diags_init(wl_diags_t *d);
void wl_diags_free(wl_diags_t *d);
/* Formats diagnostic i as "source:line:col: message" into buf. */
void wl_diag_format(const wl_diags_t *d, size_t i, char *buf, size_t len);

void wl_config_defaults(wl_config_t *c);
/* Loads and validates. Returns 0 when valid; WL_ECONFIG when d has diagnostics; -ENOMEM/-errno
 * when the file cannot be read (also recorded in d). On failure *c is freed and zeroed. */
int wl_config_load_file(const char *path, wl_config_t *c, wl_diags_t *d);
int wl_config_load_string(const char *source, const char *text, size_t len, wl_config_t *c,
                          wl_diags_t *d);
void wl_config_free(wl_config_t *c);

/* Turns the config into one agent's view of it: concurrency (0 = keep) replaces `concurrency`;
 * target_override (NULL = none) replaces `target`, and prepared sets and absolute op paths under
 * the old target move with it; prefix (NULL = none; e.g. "agent-a1/", ends with '/') is appended
 * to the target and to every prepared set's base_uri, and absolute op paths under any of them
 * follow. Returns 0 or -ENOMEM (the config is then partly rewritten: free it). */
int wl_config_apply_agent(wl_config_t *c, const char *target_override, uint32_t concurrency,
                          const char *prefix);

/* Resolves an op path against target into a full URI. Returns 0 or -EINVAL. */
int wl_config_op_uri(const wl_config_t *c, const wl_op_cfg_t *op, char *out, size_t len);

/* The resolved plan as text (stages, ops with percent shares, object counts and bytes, target),
 * as printed by `validate` and `run --dry-run`. cores: the core count the run would use.
 * Returns a malloc'd string or NULL on ENOMEM. */
char *wl_plan_format(const wl_config_t *c, int cores);

#endif
