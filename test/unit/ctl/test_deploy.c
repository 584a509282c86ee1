/* The scripts that start, probe and stop agents over SSH (apps/ctl/deploy_plan.c), run here with
 * the local /bin/sh in a scratch HOME: the binary deployment starts the real sai3bench-agent
 * (path in argv[1]); the docker deployment runs against a recording `docker` stand-in on PATH
 * (no container engine here), so what is checked there is the exact command line.
 * Also: the ssh/deployment config keys and the parse of the scripts' status lines. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ctl.h"

static const char *agent_path;
static char home[256];

static void load(const char *text, wl_config_t *c)
{
    wl_diags_t d;
    wl_diags_init(&d);
    int rc = wl_config_load_string("t.yaml", text, strlen(text), c, &d);
    if (rc) {
        char buf[512];
        for (size_t i = 0; i < d.n; i++) {
            wl_diag_format(&d, i, buf, sizeof(buf));
            fprintf(stderr, "%s\n", buf);
        }
    }
    wl_diags_free(&d);
    assert_int_equal(rc, 0);
}

/* Runs script with `sh -s` (HOME = the scratch home, PATH with extra first). Returns stdout. */
static char *run_sh(const char *script, const char *extra_path)
{
    char in[512], outp[512];
    snprintf(in, sizeof(in), "%s/script.sh", home);
    snprintf(outp, sizeof(outp), "%s/script.out", home);
    FILE *f = fopen(in, "w");
    assert_non_null(f);
    fputs(script, f);
    fclose(f);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "HOME=%s PATH=%s%s/usr/bin:/bin sh -s < %s > %s", home,
             extra_path ? extra_path : "", extra_path ? ":" : "", in, outp);
    int rc = system(cmd);
    assert_int_equal(WEXITSTATUS(rc), 0);
    f = fopen(outp, "r");
    assert_non_null(f);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    return strdup(buf);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    return strdup(buf);
}

/* A port nobody listens on right now (bound to 0 and released). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t l = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void test_parse(void **st)
{
    (void)st;
    char s[32], r[64];
    const char *next;
    assert_int_equal(ctl_deploy_parse("noise\nSAI3_STARTED 123 45\nrest\n", s, sizeof(s), r,
                                      sizeof(r), &next),
                     0);
    assert_string_equal(s, "STARTED");
    assert_string_equal(r, "123 45");
    assert_string_equal(next, "rest\n");
    assert_int_equal(ctl_deploy_parse("SAI3_READY\n", s, sizeof(s), r, sizeof(r), &next), 0);
    assert_string_equal(s, "READY");
    assert_string_equal(r, "");
    /* not at a line start, or missing */
    assert_int_equal(ctl_deploy_parse("xSAI3_READY\n", s, sizeof(s), r, sizeof(r), &next),
                     -EINVAL);
    assert_int_equal(ctl_deploy_parse("", s, sizeof(s), r, sizeof(r), &next), -EINVAL);
    assert_int_equal(ctl_deploy_parse(NULL, s, sizeof(s), r, sizeof(r), &next), -EINVAL);
}

static void test_config_keys(void **st)
{
    (void)st;
    wl_config_t c;
    load("target: file:///tmp/x/\n"
         "workload: [{op: get, path: a/*, weight: 1}]\n"
         "distributed:\n"
         "  ssh: {enabled: true, user: bench, key_path: ~/.ssh/k, port: 2222,\n"
         "        known_hosts: /tmp/kh, timeout: 3s}\n"
         "  deployment:\n"
         "    type: docker\n"
         "    container_runtime: podman\n"
         "    image: reg/sai3:v1\n"
         "    network_mode: bridge\n"
         "    pull_policy: always\n"
         "    env: {A: '1', B: two}\n"
         "    volumes: [/data:/data]\n"
         "    docker_args: [--ulimit, nofile=65536]\n"
         "  agents:\n"
         "    - {address: h1, id: a1, listen_port: 7000, env: {B: mine}, volumes: ['/x:/y:ro']}\n"
         "    - {address: 'h2:7100', id: a2}\n",
         &c);
    const wl_dist_cfg_t *d = &c.dist;
    assert_true(d->ssh.enabled);
    assert_string_equal(d->ssh.user, "bench");
    assert_string_equal(d->ssh.key_path, "~/.ssh/k");
    assert_int_equal(d->ssh.port, 2222);
    assert_string_equal(d->ssh.known_hosts, "/tmp/kh");
    assert_int_equal(d->ssh.timeout_ns, 3000000000ull);
    assert_int_equal(d->deploy.type, WL_DEPLOY_DOCKER);
    assert_string_equal(d->deploy.runtime, "podman");
    assert_int_equal(d->deploy.pull_policy, WL_PULL_ALWAYS);
    assert_int_equal(d->deploy.nenv, 2);
    assert_int_equal(d->agents[0].port, 7000);
    assert_int_equal(d->agents[0].nenv, 1);
    assert_int_equal(d->agents[1].port, 7100);
    assert_true(d->agents[1].port_given);
    assert_false(d->agents[0].port_given);

    ctl_deploy_spec_t s = {.dist = d, .agent_id = "a1", .run_id = "r1", .port = 7000,
                           .env = d->agents[0].env, .nenv = d->agents[0].nenv,
                           .volumes = d->agents[0].volumes, .nvolumes = d->agents[0].nvolumes};
    char *cl = ctl_deploy_command_line(&s);
    assert_non_null(cl);
    /* env by name only (values go through an env file); the agent's B wins over deployment B */
    assert_string_equal(cl, "podman run -d --name sai3bench-agent-a1 --network bridge -p 7000:7000"
                            " -e A -e B -v /data:/data -v /x:/y:ro --ulimit nofile=65536"
                            " reg/sai3:v1 --listen 0.0.0.0:7000 --exit-on-disconnect");
    free(cl);
    wl_config_free(&c);

    /* defaults */
    load("target: file:///tmp/x/\n"
         "workload: [{op: get, path: a/*, weight: 1}]\n"
         "distributed:\n"
         "  ssh: {enabled: true}\n"
         "  agents: ['[::1]:7200']\n",
         &c);
    assert_int_equal(c.dist.ssh.port, 22);
    assert_null(c.dist.ssh.user);
    assert_int_equal(c.dist.ssh.timeout_ns, 10000000000ull);
    assert_int_equal(c.dist.deploy.type, WL_DEPLOY_BINARY);
    ctl_deploy_spec_t s2 = {.dist = &c.dist, .agent_id = "agent-1", .run_id = "r", .port = 7200,
                            .ipv6 = 1, .token = "secret-token", .tls_auto = 1};
    cl = ctl_deploy_command_line(&s2);
    assert_string_equal(cl, "sai3bench-agent --listen [::]:7200 --exit-on-disconnect --tls "
                            "--state-dir ~/.sai3bench/tls --auth-token-file "
                            "~/.sai3bench/agent-agent-1.token");
    free(cl);
    /* the token is in the start script (fed on stdin), never in a command line */
    char *sc = ctl_deploy_start_script(&s2);
    assert_non_null(strstr(sc, "secret-token"));
    free(sc);
    wl_config_free(&c);
}

/* Runs the probe of the agent (pid, log offset) every 100 ms until its status is not WAIT (at
 * most 10 s). Returns the status; *text (malloc'd, may be NULL) gets what follows the line. */
static const char *probe_until(const ctl_deploy_spec_t *s, long long pid, long long off,
                               char **text)
{
    static char stt[32];
    char hs[32], rest[128];
    const char *next;
    snprintf(hs, sizeof(hs), "%lld", pid);
    char *probe = ctl_deploy_probe_script(s, hs, off);
    assert_non_null(probe);
    for (int i = 0; i < 100; i++) {
        char *out = run_sh(probe, NULL);
        assert_int_equal(ctl_deploy_parse(out, stt, sizeof(stt), rest, sizeof(rest), &next), 0);
        if (strcmp(stt, "WAIT") != 0) {
            if (text)
                *text = strdup(next);
            free(out);
            break;
        }
        free(out);
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    free(probe);
    return stt;
}

static void wait_gone(pid_t pid)
{
    for (int i = 0; i < 100; i++) {
        if (kill(pid, 0) != 0)
            return;
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
}

/* The binary deployment, end to end on this host with the real agent. */
static void test_binary_scripts(void **st)
{
    (void)st;
    wl_config_t c;
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "target: file:///tmp/x/\n"
             "workload: [{op: get, path: a/*, weight: 1}]\n"
             "distributed:\n"
             "  ssh: {enabled: true}\n"
             "  deployment: {binary_path: '%s', agent_args: [--results-root, /tmp]}\n"
             "  agents: [{address: 127.0.0.1, listen_port: %d, id: 'a-1', env: {SAI3_LOG: info, "
             "ODD: \"it's $HOME\"}}]\n",
             agent_path, free_port());
    load(yaml, &c);
    const wl_agent_cfg_t *ac = &c.dist.agents[0];
    ctl_deploy_spec_t s = {.dist = &c.dist, .agent_id = "a-1", .run_id = "run-x",
                           .port = ac->port, .env = ac->env, .nenv = ac->nenv,
                           .token = "tok-123"};
    char *sc = ctl_deploy_start_script(&s);
    char *out = run_sh(sc, NULL);
    free(sc);
    char stt[32], rest[128];
    const char *next;
    assert_int_equal(ctl_deploy_parse(out, stt, sizeof(stt), rest, sizeof(rest), &next), 0);
    if (strcmp(stt, "STARTED"))
        fprintf(stderr, "start output: %s\n", out);
    assert_string_equal(stt, "STARTED");
    long long pid = 0, off = -1;
    assert_int_equal(sscanf(rest, "%lld %lld", &pid, &off), 2);
    assert_true(pid > 1);
    assert_true(off > 0); /* after the start marker line */
    free(out);
    /* the token file: mode 0600, the token */
    char p[512];
    snprintf(p, sizeof(p), "%s/.sai3bench/agent-a-1.token", home);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    char *tk = slurp(p);
    assert_string_equal(tk, "tok-123\n");
    free(tk);

    /* probe until READY */
    char hs[32], *text = NULL;
    snprintf(hs, sizeof(hs), "%lld", pid);
    assert_string_equal(probe_until(&s, pid, off, &text), "READY");
    assert_non_null(strstr(text, "sai3bench-agent listening (PLAINTEXT) on 0.0.0.0:"));
    free(text);
    /* the environment reached the agent, odd characters intact */
    snprintf(p, sizeof(p), "/proc/%lld/environ", pid);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    char env[65536];
    size_t n = fread(env, 1, sizeof(env) - 1, f);
    fclose(f);
    int seen_odd = 0;
    for (size_t i = 0; i < n; i += strlen(env + i) + 1)
        seen_odd |= !strcmp(env + i, "ODD=it's $HOME");
    assert_true(seen_odd);

    /* stop: SIGTERM, it exits; the token file is removed; a second stop finds it gone */
    char *stop = ctl_deploy_stop_script(&s, hs);
    out = run_sh(stop, NULL);
    assert_int_equal(ctl_deploy_parse(out, stt, sizeof(stt), rest, sizeof(rest), &next), 0);
    if (strcmp(stt, "STOPPED"))
        fprintf(stderr, "stop output: %s\n", out);
    assert_string_equal(stt, "STOPPED");
    free(out);
    wait_gone((pid_t)pid);
    snprintf(p, sizeof(p), "%s/.sai3bench/agent-a-1.token", home);
    assert_int_not_equal(access(p, F_OK), 0);
    out = run_sh(stop, NULL);
    assert_int_equal(ctl_deploy_parse(out, stt, sizeof(stt), rest, sizeof(rest), &next), 0);
    assert_string_equal(stt, "GONE");
    free(out);
    /* the log: the start and stop markers and the banner */
    snprintf(p, sizeof(p), "%s/sai3-logs/agent-a-1.log", home);
    char *log = slurp(p);
    assert_non_null(log);
    assert_non_null(strstr(log, "sai3bench-ctl run run-x starts agent a-1"));
    assert_non_null(strstr(log, "sai3bench-agent listening"));
    assert_non_null(strstr(log, "sai3bench-ctl stopped the agent"));
    size_t loglen = strlen(log);
    free(log);

    /* a pid that is not an agent with our port is left alone */
    char *stop_other = ctl_deploy_stop_script(&s, "1");
    out = run_sh(stop_other, NULL);
    assert_int_equal(ctl_deploy_parse(out, stt, sizeof(stt), rest, sizeof(rest), &next), 0);
    assert_string_equal(stt, "NOTOURS");
    free(out);
    free(stop_other);
    /* a second start appends; the probe only looks after the new offset */
    sc = ctl_deploy_start_script(&s);
    out = run_sh(sc, NULL);
    free(sc);
    assert_int_equal(ctl_deploy_parse(out, stt, sizeof(stt), rest, sizeof(rest), &next), 0);
    assert_string_equal(stt, "STARTED");
    assert_int_equal(sscanf(rest, "%lld %lld", &pid, &off), 2);
    assert_true(off > (long long)loglen);
    free(out);
    snprintf(hs, sizeof(hs), "%lld", pid);
    free(stop);
    stop = ctl_deploy_stop_script(&s, hs);
    /* an agent that cannot start (port taken by the first one) is reported as EXITED */
    ctl_deploy_spec_t s3 = s;
    s3.agent_id = "a-2";
    s3.token = NULL;
    assert_string_equal(probe_until(&s, pid, off, NULL), "READY"); /* the first one listens */
    sc = ctl_deploy_start_script(&s3);
    out = run_sh(sc, NULL);
    free(sc);
    long long pid3, off3;
    assert_int_equal(ctl_deploy_parse(out, stt, sizeof(stt), rest, sizeof(rest), &next), 0);
    assert_int_equal(sscanf(rest, "%lld %lld", &pid3, &off3), 2);
    free(out);
    assert_string_equal(probe_until(&s3, pid3, off3, &text), "EXITED");
    assert_non_null(strstr(text, "already in use"));
    free(text);
    out = run_sh(stop, NULL);
    assert_int_equal(ctl_deploy_parse(out, stt, sizeof(stt), rest, sizeof(rest), &next), 0);
    assert_string_equal(stt, "STOPPED");
    free(out);
    wait_gone((pid_t)pid);
    free(stop);
    wl_config_free(&c);

    /* a missing binary is a clear failure */
    load("target: file:///tmp/x/\n"
         "workload: [{op: get, path: a/*, weight: 1}]\n"
         "distributed:\n"
         "  ssh: {enabled: true}\n"
         "  deployment: {binary_path: /nonexistent/sai3bench-agent}\n"
         "  agents: [h1]\n",
         &c);
    ctl_deploy_spec_t s4 = {.dist = &c.dist, .agent_id = "agent-1", .run_id = "r", .port = 7761};
    sc = ctl_deploy_start_script(&s4);
    out = run_sh(sc, NULL);
    free(sc);
    assert_int_equal(ctl_deploy_parse(out, stt, sizeof(stt), rest, sizeof(rest), &next), 0);
    assert_string_equal(stt, "FAILED");
    assert_non_null(strstr(rest, "/nonexistent/sai3bench-agent not found"));
    free(out);
    wl_config_free(&c);
}

/* The docker deployment against a recording stand-in: every invocation's argv goes to a file;
 * `run` succeeds, `inspect` says what the test wants. */
static void test_docker_scripts(void **st)
{
    (void)st;
    char bin[512], rec[512], p[600];
    snprintf(bin, sizeof(bin), "%s/fakebin", home);
    snprintf(rec, sizeof(rec), "%s/docker.calls", home);
    mkdir(bin, 0755);
    snprintf(p, sizeof(p), "%s/docker", bin);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f,
            "#!/bin/sh\n"
            "printf '%%s\\n' \"$*\" >> %s\n"
            "for a in \"$@\"; do case \"$a\" in --env-file) envf=1 ;; *) if [ \"${envf:-}\" = 1 ]; "
            "then cp \"$a\" %s/envfile.copy; envf=; fi ;; esac; done\n"
            "case \"$1 $2\" in\n"
            "  'container inspect') [ -f %s/running ] || exit 1; [ \"$3\" = -f ] && echo true; "
            "exit 0 ;;\n"
            "  'image inspect') exit 1 ;;\n"
            "esac\n"
            "case \"$1\" in\n"
            "  run) touch %s/running; echo 0123abcd ;;\n"
            "  logs) echo 'sai3bench-agent listening (PLAINTEXT) on 0.0.0.0:7761' ;;\n"
            "  rm) rm -f %s/running ;;\n"
            "esac\n"
            "exit 0\n",
            rec, home, home, home, home);
    fclose(f);
    chmod(p, 0755);
    unlink(rec);

    wl_config_t c;
    load("target: file:///tmp/x/\n"
         "workload: [{op: get, path: a/*, weight: 1}]\n"
         "distributed:\n"
         "  ssh: {enabled: true}\n"
         "  deployment:\n"
         "    type: docker\n"
         "    image: myregistry/sai3-bench:latest\n"
         "    env: {AWS_REGION: us-east-1}\n"
         "  agents: [{address: vm1, id: agent-1, env: {AWS_SECRET_ACCESS_KEY: 's3cr3t value'}}]\n",
         &c);
    const wl_agent_cfg_t *ac = &c.dist.agents[0];
    ctl_deploy_spec_t s = {.dist = &c.dist, .agent_id = "agent-1", .run_id = "r",
                           .port = 7761, .env = ac->env, .nenv = ac->nenv};
    char *sc = ctl_deploy_start_script(&s);
    char *out = run_sh(sc, bin);
    free(sc);
    char stt[32], rest[128];
    const char *next;
    assert_int_equal(ctl_deploy_parse(out, stt, sizeof(stt), rest, sizeof(rest), &next), 0);
    if (strcmp(stt, "STARTED"))
        fprintf(stderr, "docker start output: %s\n", out);
    assert_string_equal(stt, "STARTED");
    assert_string_equal(rest, "sai3bench-agent-agent-1 0");
    free(out);
    char *calls = slurp(rec);
    assert_non_null(calls);
    /* existing-name check, if_not_present pull, then the run line of the seed */
    assert_non_null(strstr(calls, "container inspect sai3bench-agent-agent-1\n"));
    assert_non_null(strstr(calls, "image inspect myregistry/sai3-bench:latest\n"));
    assert_non_null(strstr(calls, "pull myregistry/sai3-bench:latest\n"));
    const char *run = strstr(calls, "run -d ");
    assert_non_null(run);
    char want[600];
    snprintf(want, sizeof(want),
             "run -d --name sai3bench-agent-agent-1 --network host --env-file %s/.sai3bench/"
             "agent-agent-1.env myregistry/sai3-bench:latest --listen 0.0.0.0:7761 "
             "--exit-on-disconnect\n",
             home);
    assert_string_equal(run, want);
    /* the secret was never an argument; it was in the env file, which is gone now */
    assert_null(strstr(calls, "s3cr3t"));
    free(calls);
    snprintf(p, sizeof(p), "%s/envfile.copy", home);
    char *envf = slurp(p);
    assert_non_null(envf);
    assert_string_equal(envf, "AWS_REGION=us-east-1\nAWS_SECRET_ACCESS_KEY=s3cr3t value\n");
    free(envf);
    snprintf(p, sizeof(p), "%s/.sai3bench/agent-agent-1.env", home);
    assert_int_not_equal(access(p, F_OK), 0);

    /* probe: running and listening */
    char *probe = ctl_deploy_probe_script(&s, "sai3bench-agent-agent-1", 0);
    out = run_sh(probe, bin);
    assert_int_equal(ctl_deploy_parse(out, stt, sizeof(stt), rest, sizeof(rest), &next), 0);
    assert_string_equal(stt, "READY");
    free(out);
    free(probe);
    /* a second start refuses: a container of that name exists */
    sc = ctl_deploy_start_script(&s);
    out = run_sh(sc, bin);
    free(sc);
    assert_int_equal(ctl_deploy_parse(out, stt, sizeof(stt), rest, sizeof(rest), &next), 0);
    assert_string_equal(stt, "FAILED");
    assert_non_null(strstr(rest, "exists already"));
    free(out);
    /* stop: docker stop, logs into the log file, rm -f of exactly that name */
    unlink(rec);
    char *stop = ctl_deploy_stop_script(&s, "sai3bench-agent-agent-1");
    out = run_sh(stop, bin);
    assert_int_equal(ctl_deploy_parse(out, stt, sizeof(stt), rest, sizeof(rest), &next), 0);
    assert_string_equal(stt, "STOPPED");
    free(out);
    calls = slurp(rec);
    assert_non_null(strstr(calls, "stop -t 10 sai3bench-agent-agent-1\n"));
    assert_non_null(strstr(calls, "logs sai3bench-agent-agent-1\n"));
    assert_non_null(strstr(calls, "rm -f sai3bench-agent-agent-1\n"));
    free(calls);
    out = run_sh(stop, bin);
    assert_int_equal(ctl_deploy_parse(out, stt, sizeof(stt), rest, sizeof(rest), &next), 0);
    assert_string_equal(stt, "GONE");
    free(out);
    free(stop);
    wl_config_free(&c);

    /* pull_policy never / always, bridge network */
    load("target: file:///tmp/x/\n"
         "workload: [{op: get, path: a/*, weight: 1}]\n"
         "distributed:\n"
         "  ssh: {enabled: true}\n"
         "  deployment: {type: docker, pull_policy: never, network_mode: bridge}\n"
         "  agents: ['vm1:7800']\n",
         &c);
    ctl_deploy_spec_t s2 = {.dist = &c.dist, .agent_id = "agent-1", .run_id = "r", .port = 7800};
    sc = ctl_deploy_start_script(&s2);
    assert_null(strstr(sc, "pull"));
    free(sc);
    char *cl = ctl_deploy_command_line(&s2);
    assert_string_equal(cl, "docker run -d --name sai3bench-agent-agent-1 --network bridge -p "
                            "7800:7800 sai3bench:latest --listen 0.0.0.0:7800 "
                            "--exit-on-disconnect");
    free(cl);
    wl_config_free(&c);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_deploy AGENT_BINARY\n");
        return 2;
    }
    agent_path = argv[1];
    snprintf(home, sizeof(home), "/tmp/sai3-deploy-XXXXXX");
    if (!mkdtemp(home)) {
        perror("mkdtemp");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_config_keys),
        cmocka_unit_test(test_binary_scripts),
        cmocka_unit_test(test_docker_scripts),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", home);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", home);
    return rc;
}
