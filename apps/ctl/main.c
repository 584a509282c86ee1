/* sai3bench-ctl: command line. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ctl.h"
#include "rx/engine.h"
#include "rx/http1.h"
#include "sto/err.h"
#include "sto/s3xml.h"
#include "wl/err.h"
#include "wl/units.h"

static const char usage[] =
    "usage: sai3bench-ctl [-v|-vv|-vvv] [--cores N] <command> [options]\n"
    "\n"
    "commands:\n"
    "  run --config FILE     run a workload (prepare -> execute -> cleanup): in-process, or on\n"
    "                        sai3bench-agent hosts when the config has a distributed: block or\n"
    "                        --agents is given\n"
    "      --dry-run           print the resolved plan and exit (same as validate)\n"
    "      --prepare-only      only create the prepared objects\n"
    "      --skip-prepare      do not run prepare (objects must exist)\n"
    "      --no-cleanup        keep prepared objects even if prepare.cleanup is true\n"
    "      --cleanup-only      only delete the prepared objects of the config\n"
    "      --results-dir DIR   create the results directory under DIR (default .)\n"
    "      --tsv-name NAME     use NAME instead of the config file stem in the directory name\n"
    "      --agents LIST       distributed: agents host:port,host:port (ids agent-1..N);\n"
    "                          replaces distributed.agents of the config\n"
    "      --agent-ca FILE     distributed: TLS, verify the agents against this CA file\n"
    "      --tls               distributed: TLS (trust from distributed.tls or the system CAs)\n"
    "      --start-delay DUR   distributed: delay before synchronized starts (default 2s)\n"
    "  validate --config FILE  check the config and print the resolved plan (with a\n"
    "                        distributed: block or --agents: also the agents and stages)\n"
    "  ping [--config FILE | --agents LIST] [--agent-ca FILE] [--tls]\n"
    "                        check that the agents answer: version, host, cores, state, clock\n"
    "  ssh-setup --hosts [USER@]HOST[,...] [options]\n"
    "                        passwordless SSH to agent hosts: key pair, authorized_keys,\n"
    "                        known_hosts, checks ('sai3bench-ctl ssh-setup --help')\n"
    "  util ls|stat|get|put|rm|health URI [options]\n"
    "                        storage utilities on any URI ('sai3bench-ctl util --help')\n"
    "  version               print the version\n"
    "\n"
    "global options:\n"
    "  -v, -vv, -vvv         more log output (warn, info, debug, trace)\n"
    "  --cores N             reactor cores (threads, one libuv loop each); default: all CPUs\n"
    "  -h, --help            this text\n"
    "\n"
    "exit status: 0 ok, 1 run failed (distributed: any agent failed, lost or unreachable),\n"
    "             2 bad usage or config, 130 interrupted\n"
    "environment: SAI3_AUTH_TOKEN  token sent to agents (else distributed.auth_token_file)\n";

static int bad(const char *fmt, const char *arg)
{
    fprintf(stderr, "sai3bench-ctl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nrun 'sai3bench-ctl --help' for usage\n");
    return 2;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    ctl_opts_t o;
    memset(&o, 0, sizeof(o));
    /* a peer closing a socket must fail that write, not kill the process */
    signal(SIGPIPE, SIG_IGN);
    /* every library's error codes get their names in rx_strerror() */
    rx_http1_err_register();
    sto_err_register();
    sto_s3xml_err_register();
    wl_err_register();
    o.argc = argc;
    o.argv = argv;
    o.results_parent = ".";
    const char *cmd = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
#define NEED_VAL()                                                                                 \
    do {                                                                                           \
        if (app_opt_value(argc, argv, &i, &val) != 0)                                              \
            return bad("option '%s' needs a value", a);                                            \
    } while (0)
#define IS(name) app_opt_is(a, name)
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
            printf("sai3bench-ctl %s\n", SAI3_VERSION);
            return 0;
        } else if (a[0] == '-' && a[1] == 'v' && strspn(a + 1, "v") == strlen(a + 1)) {
            o.verbose += (int)strlen(a + 1);
        } else if (strcmp(a, "--verbose") == 0) {
            o.verbose++;
        } else if (IS("--cores")) {
            NEED_VAL();
            if (parse_int(val, 1, 1024, &o.cores) != 0)
                return bad("--cores wants a number from 1 to 1024, got '%s'", val);
        } else if (IS("--config") || strcmp(a, "-c") == 0) {
            NEED_VAL();
            o.config = val;
        } else if (strcmp(a, "--dry-run") == 0) {
            o.dry_run = 1;
        } else if (strcmp(a, "--prepare-only") == 0) {
            o.prepare_only = 1;
        } else if (strcmp(a, "--skip-prepare") == 0) {
            o.skip_prepare = 1;
        } else if (strcmp(a, "--no-cleanup") == 0) {
            o.no_cleanup = 1;
        } else if (strcmp(a, "--cleanup-only") == 0) {
            o.cleanup_only = 1;
        } else if (IS("--results-dir")) {
            NEED_VAL();
            o.results_parent = val;
        } else if (IS("--tsv-name")) {
            NEED_VAL();
            o.tsv_name = val;
        } else if (IS("--agents")) {
            NEED_VAL();
            o.agents = val;
        } else if (IS("--agent-ca")) {
            NEED_VAL();
            o.agent_ca = val;
        } else if (strcmp(a, "--tls") == 0) {
            o.tls = 1;
        } else if (IS("--start-delay")) {
            NEED_VAL();
            char e[160];
            if (wl_parse_duration_ns(val, &o.start_delay_ns, e, sizeof(e)) != 0)
                return bad("--start-delay: %s", e);
            o.start_delay_set = 1;
        } else if (a[0] == '-') {
            return bad("unknown option '%s'", a);
        } else if (!cmd && strcmp(a, "util") == 0) {
            /* util parses its own arguments */
            return ctl_cmd_util(&o, argc - i - 1, argv + i + 1);
        } else if (!cmd && strcmp(a, "ssh-setup") == 0) {
            /* so does ssh-setup */
            ctl_console_init(o.verbose);
            return ctl_cmd_ssh_setup(&o, argc - i - 1, argv + i + 1);
        } else if (!cmd) {
            cmd = a;
        } else {
            return bad("unexpected argument '%s'", a);
        }
#undef IS
#undef NEED_VAL
    }
    if (!cmd) {
        fputs(usage, stderr);
        return 2;
    }
    if (strcmp(cmd, "version") == 0) {
        printf("sai3bench-ctl %s\n", SAI3_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    int is_run = strcmp(cmd, "run") == 0, is_validate = strcmp(cmd, "validate") == 0;
    if (strcmp(cmd, "ping") == 0) {
        if (!o.config && !o.agents) return bad("%s", "ping needs --agents LIST or --config FILE");
        if (o.dry_run || o.prepare_only || o.skip_prepare || o.no_cleanup || o.cleanup_only ||
            o.start_delay_set || o.tsv_name)
            return bad("%s", "ping takes only --config, --agents, --agent-ca and --tls");
        ctl_console_init(o.verbose);
        return ctl_cmd_ping(&o);
    }
    if (!is_run && !is_validate)
        return bad("unknown command '%s' (commands: run, validate, ping, ssh-setup, util, "
                   "version)",
                   cmd);
    if (!o.config) return bad("%s needs --config FILE", cmd);
    if (o.prepare_only + o.skip_prepare + o.cleanup_only > 1 ||
        (o.cleanup_only && o.no_cleanup))
        return bad("%s", "--prepare-only, --skip-prepare and --cleanup-only exclude each other "
                         "(and --cleanup-only excludes --no-cleanup)");
    if (is_validate && (o.prepare_only || o.skip_prepare || o.no_cleanup || o.cleanup_only))
        return bad("%s", "validate takes only --config, --cores and the distributed options");
    ctl_console_init(o.verbose);
    if (is_validate || o.dry_run) return ctl_cmd_validate(&o);
    return ctl_cmd_run(&o);
}
