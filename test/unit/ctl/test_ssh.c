/* The SSH client (apps/ctl/ssh.c) against a real OpenSSH server. Not a meson test by itself:
 * test/integration/ssh_lib_checks.py starts sshd, changes its state between phases (host key
 * rotation) and runs `test_ssh PHASE` with the parameters in the environment:
 *
 *   SAI3_TEST_SSH_HOST, _PORT, _USER, _PASSWORD   the server and the test user
 *   SAI3_TEST_SSH_HOSTKEY_FP                       "SHA256:..." of its host key
 *   SAI3_TEST_SSH_KNOWN_HOSTS                      known_hosts path kept across phases
 *   SAI3_TEST_SSH_DIR                              scratch directory
 *   SAI3_TEST_SSH_HOST6, _PORT6                    a second server on ::1
 *   SAI3_TEST_SSH_KBD_PORT                         password off, keyboard-interactive on
 *   SAI3_TEST_SSH_KEYONLY_PORT                     password and keyboard-interactive off
 *   SAI3_TEST_SSH_CLOSED_PORT                      nothing listens there
 *   SAI3_TEST_SSH_SILENT_PORT                      accepts TCP, never says anything
 *   SAI3_TEST_SSH_GARBAGE_PORT                     answers with a non-SSH line and closes
 *   SAI3_TEST_SSH_MULTI_PORT                       a server with ed25519 and ECDSA host keys,
 *   SAI3_TEST_SSH_MULTI_ECDSA_LINE, _ECDSA_FP      its ECDSA known_hosts line and fingerprint
 *   SAI3_TEST_SSH_RSAHOST_PORT                     a server with only an RSA host key
 *
 * Phases: keygen, keygen4096, quote, hostkeys, auth, exec, keyauth, rotated, ipv6, kbd, neterr,
 * multikey.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ssh.h"

static char err[1024];

static const char *env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        fprintf(stderr, "test_ssh: %s is not set\n", name);
        fail();
    }
    return v;
}

static int env_int(const char *name)
{
    return atoi(env(name));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *path_in_dir(const char *fmt, ...)
{
    char rel[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof(rel), fmt, ap);
    va_end(ap);
    char *p = malloc(1024);
    assert_non_null(p);
    snprintf(p, 1024, "%s/%s", env("SAI3_TEST_SSH_DIR"), rel);
    return p;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = calloc(1, 1 << 20);
    assert_non_null(buf);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int count_lines(const char *text)
{
    int n = 0;
    for (const char *p = text; p && *p; p++)
        n += *p == '\n';
    return n;
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    assert_int_equal(rc, 0);
}

typedef struct conn_args {
    const char *host;
    int port;
    const char *known_hosts;
    ctl_ssh_hostkey_policy_t policy;
    int timeout_ms;
    const volatile int *cancel;
} conn_args_t;

static int conn(const conn_args_t *a, ctl_ssh_t **s)
{
    ctl_ssh_opts_t o = {
        .host = a->host ? a->host : env("SAI3_TEST_SSH_HOST"),
        .port = a->port ? a->port : env_int("SAI3_TEST_SSH_PORT"),
        .user = env("SAI3_TEST_SSH_USER"),
        .known_hosts = a->known_hosts ? a->known_hosts : env("SAI3_TEST_SSH_KNOWN_HOSTS"),
        .hostkey_policy = a->policy,
        .timeout_ms = a->timeout_ms,
        .cancel = a->cancel,
    };
    err[0] = '\0';
    int rc = ctl_ssh_connect(&o, s, err, sizeof(err));
    if (rc)
        printf("  connect %s:%d -> %d (%s)\n", o.host, o.port, rc, err);
    return rc;
}

/* A logged-in session to the main server; known_hosts must know it. */
static ctl_ssh_t *login(void)
{
    ctl_ssh_t *s = NULL;
    conn_args_t a = {0};
    assert_int_equal(conn(&a, &s), 0);
    int rc = ctl_ssh_auth_password(s, env("SAI3_TEST_SSH_PASSWORD"), err, sizeof(err));
    if (rc)
        printf("  auth: %s\n", err);
    assert_int_equal(rc, 0);
    return s;
}

static int run(ctl_ssh_t *s, const char *cmd, const char *in, char **out, char **eout, int *status)
{
    err[0] = '\0';
    int rc = ctl_ssh_exec(s, cmd, in, in ? strlen(in) : 0, out, eout, status, err, sizeof(err));
    if (rc)
        printf("  exec %s -> %d (%s)\n", cmd, rc, err);
    return rc;
}

/* ------------------------------------------------------------------ keygen --------------- */

static void keygen_basic(void **st)
{
    char *dir = path_in_dir("keys/nested/deeper");
    char *priv = path_in_dir("keys/nested/deeper/id_rsa");
    char *pub = path_in_dir("keys/nested/deeper/id_rsa.pub");
    double t0 = now_s();
    int rc = ctl_ssh_keygen(priv, 2048, "sai3bench-ctl@test", err, sizeof(err));
    if (rc)
        printf("  keygen: %s\n", err);
    assert_int_equal(rc, 0);
    printf("  keygen 2048 bits: %.2f s\n", now_s() - t0);
    assert_int_equal(mode_of(priv), 0600);
    assert_int_equal(mode_of(pub), 0644);
    assert_int_equal(mode_of(dir), 0700);
    char *p = slurp(priv), *q = slurp(pub);
    assert_non_null(strstr(p, "-----BEGIN RSA PRIVATE KEY-----\n"));
    assert_non_null(strstr(p, "-----END RSA PRIVATE KEY-----"));
    assert_int_equal(strncmp(q, "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ", 38), 0);
    assert_int_equal(count_lines(q), 1);
    assert_non_null(strstr(q, " sai3bench-ctl@test\n"));

    char *line = NULL;
    assert_int_equal(ctl_ssh_read_pubkey(priv, &line, err, sizeof(err)), 0);
    q[strlen(q) - 1] = '\0';
    assert_string_equal(line, q);
    free(line);

    /* never overwrite: neither file changes */
    rc = ctl_ssh_keygen(priv, 2048, "again", err, sizeof(err));
    assert_int_equal(rc, -EEXIST);
    assert_non_null(strstr(err, "already exists"));
    char *p2 = slurp(priv), *q2 = slurp(pub);
    assert_string_equal(p, p2);
    q[strlen(q)] = '\n';
    assert_string_equal(q, q2);
    /* no temporary files left behind */
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "test $(ls -A %s | wc -l) -eq 2", dir);
    assert_int_equal(system(cmd), 0);
    free(p), free(q), free(p2), free(q2);

    /* only the .pub exists: refused too */
    char *lone = path_in_dir("keys/lone");
    char *lonepub = path_in_dir("keys/lone.pub");
    spit(lonepub, "ssh-rsa AAAA x\n");
    assert_int_equal(ctl_ssh_keygen(lone, 2048, NULL, err, sizeof(err)), -EEXIST);
    assert_int_equal(access(lone, F_OK), -1);

    assert_int_equal(ctl_ssh_keygen(lone, 1024, NULL, err, sizeof(err)), -EINVAL);
    assert_int_equal(ctl_ssh_keygen(lone, 16384, NULL, err, sizeof(err)), -EINVAL);
    free(dir), free(priv), free(pub), free(lone), free(lonepub);
    (void)st;
}

static void keygen_nocomment(void **st)
{
    char *priv = path_in_dir("keys/plain");
    assert_int_equal(ctl_ssh_keygen(priv, 3072, NULL, err, sizeof(err)), 0);
    char *line = NULL;
    assert_int_equal(ctl_ssh_read_pubkey(priv, &line, err, sizeof(err)), 0);
    assert_null(strchr(line + 8, ' ')); /* "ssh-rsa <b64>" without a comment */
    free(line);
    free(priv);
    (void)st;
}

static void read_pubkey_errors(void **st)
{
    char *missing = path_in_dir("keys/missing");
    char *line = (char *)1;
    assert_int_equal(ctl_ssh_read_pubkey(missing, &line, err, sizeof(err)), -ENOENT);
    assert_null(line);
    char *bad = path_in_dir("keys/bad");
    char *badpub = path_in_dir("keys/bad.pub");
    const char *cases[] = {
        "",
        "garbage\n",
        "ssh-rsa\n",
        "ssh-rsa !!!notbase64!!!\n",
        /* valid base64 of an ssh-ed25519 blob, labelled ssh-rsa */
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIEioFqC33X9stuwQQsUNSOIsV3bXAVPAIcxkReA11Syb c\n",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        spit(badpub, cases[i]);
        line = NULL;
        assert_int_equal(ctl_ssh_read_pubkey(bad, &line, err, sizeof(err)), -EINVAL);
        assert_null(line);
    }
    spit(badpub, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEioFqC33X9stuwQQsUNSOIsV3bXAVPAIcxkReA11Syb "
                 "me@host\r\n");
    assert_int_equal(ctl_ssh_read_pubkey(bad, &line, err, sizeof(err)), 0);
    assert_string_equal(line, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEioFqC33X9stuwQQsUNSOIsV3bXAVP"
                              "AIcxkReA11Syb me@host");
    free(line);
    free(missing), free(bad), free(badpub);
    (void)st;
}

static void keygen_4096(void **st)
{
    char *priv = path_in_dir("keys/id_rsa4096");
    double t0 = now_s();
    int rc = ctl_ssh_keygen(priv, 4096, "big", err, sizeof(err));
    double dt = now_s() - t0;
    assert_int_equal(rc, 0);
    printf("KEYGEN4096_SECONDS %.2f\n", dt);
    free(priv);
    (void)st;
}

/* ------------------------------------------------------------------ quoting -------------- */

static void quote_local(void **st)
{
    struct {
        const char *in, *out;
    } c[] = {
        {"", "''"},       {"abc", "'abc'"},         {"it's", "'it'\\''s'"},
        {"'", "''\\'''"}, {"a b\n$x", "'a b\n$x'"},
    };
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        char *q = ctl_sh_quote(c[i].in);
        assert_string_equal(q, c[i].out);
        free(q);
    }
    /* and through the local /bin/sh */
    const char *tricky = "it's \"$HOME\" `id` $(id) \\ ; | & * ? [a] ~ #x\n\ttab '' end'";
    char *q = ctl_sh_quote(tricky);
    char cmd[1024];
    char *out = path_in_dir("quote.out");
    snprintf(cmd, sizeof(cmd), "printf %%s %s > %s", q, out);
    assert_int_equal(system(cmd), 0);
    char *got = slurp(out);
    assert_string_equal(got, tricky);
    free(got), free(out), free(q);
    (void)st;
}

/* ------------------------------------------------------------------ host keys ------------ */

static void hostkeys(void **st)
{
    const char *kh = env("SAI3_TEST_SSH_KNOWN_HOSTS");
    const char *fp = env("SAI3_TEST_SSH_HOSTKEY_FP");
    ctl_ssh_t *s = NULL;
    conn_args_t a = {0};

    /* unknown, strict: refused, nothing written */
    a.policy = CTL_SSH_HOSTKEY_STRICT;
    assert_int_equal(conn(&a, &s), -ENOKEY);
    assert_null(s);
    assert_non_null(strstr(err, "ssh-setup"));
    assert_non_null(strstr(err, fp));
    assert_int_equal(access(kh, F_OK), -1);

    /* accept-new: the fingerprint OpenSSH shows; recorded once */
    a.policy = CTL_SSH_HOSTKEY_ACCEPT_NEW;
    assert_int_equal(conn(&a, &s), 0);
    assert_int_equal(ctl_ssh_hostkey_is_new(s), 1);
    assert_string_equal(ctl_ssh_hostkey_fingerprint(s), fp);
    assert_string_equal(ctl_ssh_hostkey_type(s), "ssh-ed25519");
    assert_int_equal(ctl_ssh_record_hostkey(s, err, sizeof(err)), 0);
    assert_int_equal(ctl_ssh_hostkey_is_new(s), 0);
    assert_int_equal(ctl_ssh_record_hostkey(s, err, sizeof(err)), 0);
    ctl_ssh_close(s);
    char *text = slurp(kh);
    assert_non_null(text);
    assert_int_equal(count_lines(text), 1);
    assert_int_equal(mode_of(kh), 0600);
    char khdir[1024];
    snprintf(khdir, sizeof(khdir), "%s", kh);
    *strrchr(khdir, '/') = '\0';
    assert_int_equal(mode_of(khdir), 0700);
    printf("  recorded: %s", text);

    /* accept-new again: known now, record is a no-op */
    assert_int_equal(conn(&a, &s), 0);
    assert_int_equal(ctl_ssh_hostkey_is_new(s), 0);
    assert_int_equal(ctl_ssh_record_hostkey(s, err, sizeof(err)), 0);
    ctl_ssh_close(s);
    char *text2 = slurp(kh);
    assert_string_equal(text, text2);
    free(text2);

    /* strict: accepted */
    a.policy = CTL_SSH_HOSTKEY_STRICT;
    assert_int_equal(conn(&a, &s), 0);
    assert_int_equal(ctl_ssh_hostkey_is_new(s), 0);
    ctl_ssh_close(s);

    /* two sessions accepting the same new host at once record it once */
    char *kh2 = path_in_dir("kh-race/known_hosts");
    ctl_ssh_t *s1 = NULL, *s2 = NULL;
    conn_args_t b = {.known_hosts = kh2, .policy = CTL_SSH_HOSTKEY_ACCEPT_NEW};
    assert_int_equal(conn(&b, &s1), 0);
    assert_int_equal(conn(&b, &s2), 0);
    assert_int_equal(ctl_ssh_record_hostkey(s1, err, sizeof(err)), 0);
    assert_int_equal(ctl_ssh_record_hostkey(s2, err, sizeof(err)), 0);
    ctl_ssh_close(s1);
    ctl_ssh_close(s2);
    char *t3 = slurp(kh2);
    assert_string_equal(t3, text);
    free(t3);
    free(kh2);

    /* the same line among junk, hashed entries, markers and a last line without newline */
    char *kh3 = path_in_dir("kh-junk");
    char *junk = malloc(8192);
    const char *line = text;
    snprintf(junk, 8192,
             "# comment\n\n"
             "   \n"
             "other.example sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t x\n"
             "@cert-authority *.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEioFqC33X9stuwQQsUNSOI"
             "sV3bXAVPAIcxkReA11Syb\n"
             "|1|Zm9vYmFyYmF6cXV4eHl6enk=|ZGVhZGJlZWZkZWFkYmVlZmRlYWRiZWVmZGU= ssh-ed25519 "
             "AAAAC3NzaC1lZDI1NTE5AAAAIEioFqC33X9stuwQQsUNSOIsV3bXAVPAIcxkReA11Syb\n"
             "garbage-line-without-key\n"
             "%.*s",
             (int)(strlen(line) - 1), line);
    spit(kh3, junk);
    conn_args_t c = {.known_hosts = kh3, .policy = CTL_SSH_HOSTKEY_STRICT};
    assert_int_equal(conn(&c, &s), 0);
    ctl_ssh_close(s);

    /* hashed by ssh-keygen -H: still known */
    spit(kh3, text);
    sh("ssh-keygen -q -H -f %s >/dev/null 2>&1 && rm -f %s.old", kh3, kh3);
    char *hashed = slurp(kh3);
    assert_null(strstr(hashed, "[127.0.0.1]"));
    free(hashed);
    assert_int_equal(conn(&c, &s), 0);
    ctl_ssh_close(s);

    /* accept-new on a file lacking its final newline appends a proper line */
    spit(kh3, "# no newline at the end");
    c.policy = CTL_SSH_HOSTKEY_ACCEPT_NEW;
    assert_int_equal(conn(&c, &s), 0);
    assert_int_equal(ctl_ssh_record_hostkey(s, err, sizeof(err)), 0);
    ctl_ssh_close(s);
    char *t4 = slurp(kh3);
    char want[4096];
    snprintf(want, sizeof(want), "# no newline at the end\n%s", text);
    assert_string_equal(t4, want);
    free(t4);

    /* a port-22 entry for the same address with another key is another server: unknown */
    char *keyb64 = strchr(strchr(text, ' ') + 1, ' ') + 1;
    snprintf(
        want, sizeof(want),
        "%s ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEioFqC33X9stuwQQsUNSOIsV3bXAVPAIcxkReA11Syb\n",
        env("SAI3_TEST_SSH_HOST"));
    spit(kh3, want);
    c.policy = CTL_SSH_HOSTKEY_STRICT;
    assert_int_equal(conn(&c, &s), -ENOKEY);

    /* the host known with another key type only: refused as a changed key */
    char *rsa = path_in_dir("keys/nested/deeper/id_rsa.pub");
    char *rsaline = slurp(rsa);
    snprintf(want, sizeof(want), "[%s]:%s %.*s\n", env("SAI3_TEST_SSH_HOST"),
             env("SAI3_TEST_SSH_PORT"), (int)(strchr(rsaline + 8, ' ') - rsaline), rsaline);
    spit(kh3, want);
    assert_int_equal(conn(&c, &s), -EKEYREJECTED);
    assert_non_null(strstr(err, "ssh-rsa"));
    c.policy = CTL_SSH_HOSTKEY_ACCEPT_NEW;
    assert_int_equal(conn(&c, &s), -EKEYREJECTED);
    free(rsaline), free(rsa);

    /* a revoked key is refused even when listed */
    snprintf(want, sizeof(want), "%s@revoked * ssh-ed25519 %s", text, keyb64);
    spit(kh3, want);
    c.policy = CTL_SSH_HOSTKEY_STRICT;
    assert_int_equal(conn(&c, &s), -EKEYREJECTED);
    assert_non_null(strstr(err, "revoked"));

    free(junk), free(kh3), free(text);
    (void)st;
}

static void rotated(void **st)
{
    ctl_ssh_t *s = NULL;
    conn_args_t a = {.policy = CTL_SSH_HOSTKEY_STRICT};
    assert_int_equal(conn(&a, &s), -EKEYREJECTED);
    assert_null(s);
    assert_non_null(strstr(err, "host key changed"));
    assert_non_null(strstr(err, "ssh-keygen -R"));
    assert_non_null(strstr(err, env("SAI3_TEST_SSH_HOSTKEY_FP"))); /* the new one */
    printf("  message: %s\n", err);
    a.policy = CTL_SSH_HOSTKEY_ACCEPT_NEW;
    assert_int_equal(conn(&a, &s), -EKEYREJECTED);
    (void)st;
}

/* ------------------------------------------------------------------ auth + exec ---------- */

static void auth_password(void **st)
{
    ctl_ssh_t *s = NULL;
    conn_args_t a = {0};
    assert_int_equal(conn(&a, &s), 0);
    int rc = ctl_ssh_auth_password(s, "definitely-wrong", err, sizeof(err));
    assert_int_equal(rc, -EACCES);
    assert_non_null(strstr(err, "password refused"));
    assert_non_null(strstr(err, env("SAI3_TEST_SSH_USER")));
    printf("  message: %s\n", err);
    ctl_ssh_close(s);

    s = login();
    char *out = NULL;
    int status = 99;
    assert_int_equal(run(s, "id -un", NULL, &out, NULL, &status), 0);
    assert_int_equal(status, 0);
    char want[128];
    snprintf(want, sizeof(want), "%s\n", env("SAI3_TEST_SSH_USER"));
    assert_string_equal(out, want);
    free(out);
    ctl_ssh_close(s);

    /* key auth on a session where password is what works */
    (void)st;
}

static void exec_cases(void **st)
{
    ctl_ssh_t *s = login();
    char *out = NULL, *eout = NULL;
    int status = 0;

    assert_int_equal(run(s, "exit 3", NULL, &out, &eout, &status), 0);
    assert_int_equal(status, 3);
    assert_string_equal(out, "");
    assert_string_equal(eout, "");
    free(out), free(eout);

    assert_int_equal(run(s, "echo to-out; echo to-err >&2; exit 1", NULL, &out, &eout, &status), 0);
    assert_int_equal(status, 1);
    assert_string_equal(out, "to-out\n");
    assert_string_equal(eout, "to-err\n");
    free(out), free(eout);

    /* stdin passthrough, larger than the channel windows */
    size_t n = 3 * 1024 * 1024 / 2;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    big[n] = '\0';
    assert_int_equal(run(s, "cat", "hello\nworld", &out, NULL, &status), 0);
    assert_string_equal(out, "hello\nworld");
    free(out);
    assert_int_equal(run(s, "wc -c", big, &out, NULL, &status), 0);
    assert_int_equal(strtoul(out, NULL, 10), n);
    free(out);
    /* cat of 1.5 MiB: written and read at once, capped at 1 MiB */
    assert_int_equal(run(s, "cat", big, &out, NULL, &status), 0);
    assert_int_equal(strlen(out), 1024 * 1024);
    assert_memory_equal(out, big, 1024 * 1024);
    free(out);
    /* a command that does not read its stdin */
    assert_int_equal(run(s, "true", big, &out, NULL, &status), 0);
    assert_int_equal(status, 0);
    free(out);
    free(big);

    /* more than 1 MiB on both streams: capped, the rest drained, status still there */
    assert_int_equal(run(s,
                         "head -c 3000000 /dev/zero | tr '\\0' x; "
                         "head -c 2000000 /dev/zero | tr '\\0' y >&2; exit 7",
                         NULL, &out, &eout, &status),
                     0);
    assert_int_equal(status, 7);
    assert_int_equal(strlen(out), 1024 * 1024);
    assert_int_equal(strlen(eout), 1024 * 1024);
    assert_int_equal(out[0], 'x');
    assert_int_equal(eout[1024 * 1024 - 1], 'y');
    free(out), free(eout);

    /* NULL out/errout drop the output */
    assert_int_equal(run(s, "echo dropped; echo dropped >&2; exit 4", NULL, NULL, NULL, &status),
                     0);
    assert_int_equal(status, 4);

    /* killed by a signal */
    assert_int_equal(run(s, "kill -9 $$", NULL, &out, NULL, &status), 0);
    assert_int_equal(status, -1);
    free(out);

    /* quoting through the remote shell */
    const char *tricky[] = {
        "",          "plain", "it's",  "'",        "''",       "a b  c", "$HOME",
        "`id`",      "$(id)", "\\",    "\\'",      "; exit 9", "| cat",  "& echo x",
        "*",         "?",     "[a-z]", "~",        "#hash",    "\"dq\"", "new\nline",
        "tab\there", "-n",    "--",    "%s %d %%", "ünïcødé",
    };
    for (size_t i = 0; i < sizeof(tricky) / sizeof(tricky[0]); i++) {
        char *q = ctl_sh_quote(tricky[i]);
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "printf %%s %s", q);
        assert_int_equal(run(s, cmd, NULL, &out, &eout, &status), 0);
        assert_int_equal(status, 0);
        assert_string_equal(out, tricky[i]);
        free(out), free(eout), free(q);
    }

    /* timeout: the command is abandoned, the session stays usable */
    ctl_ssh_set_timeout(s, 500);
    double t0 = now_s();
    assert_int_equal(run(s, "sleep 5", NULL, &out, &eout, &status), -ETIMEDOUT);
    double dt = now_s() - t0;
    printf("  sleep 5 with 500 ms timeout: %.2f s\n", dt);
    assert_true(dt < 2.0);
    assert_null(out);
    assert_null(eout);
    assert_int_equal(status, -1);
    ctl_ssh_set_timeout(s, 10000);
    assert_int_equal(run(s, "echo still-here", NULL, &out, NULL, &status), 0);
    assert_string_equal(out, "still-here\n");
    free(out);

    /* the server side of the session dies: an error at once, no hang, and close still works */
    t0 = now_s();
    int rc = run(s, "kill -9 $PPID; sleep 3", NULL, &out, NULL, &status);
    printf("  session killed: %d after %.2f s\n", rc, now_s() - t0);
    assert_int_equal(rc, -ECONNRESET);
    assert_true(now_s() - t0 < 2.5);
    assert_int_equal(run(s, "true", NULL, &out, NULL, &status), -ECONNRESET);
    ctl_ssh_close(s);
    (void)st;
}

static volatile int cancel_flag;

static void *set_cancel(void *arg)
{
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    cancel_flag = 1;
    return arg;
}

static void exec_cancel(void **st)
{
    cancel_flag = 0;
    ctl_ssh_t *s = NULL;
    conn_args_t a = {.cancel = &cancel_flag};
    assert_int_equal(conn(&a, &s), 0);
    assert_int_equal(ctl_ssh_auth_password(s, env("SAI3_TEST_SSH_PASSWORD"), err, sizeof(err)), 0);
    pthread_t t;
    pthread_create(&t, NULL, set_cancel, NULL);
    double t0 = now_s();
    char *out = NULL;
    int status = 0;
    assert_int_equal(run(s, "sleep 5", NULL, &out, NULL, &status), -ECANCELED);
    double dt = now_s() - t0;
    pthread_join(t, NULL);
    printf("  cancelled after %.2f s\n", dt);
    assert_true(dt < 1.5);
    assert_null(out);
    /* everything returns at once while the flag is set */
    assert_int_equal(run(s, "true", NULL, &out, NULL, &status), -ECANCELED);
    ctl_ssh_close(s);
    assert_int_equal(conn(&a, &s), -ECANCELED);
    assert_null(s);
    cancel_flag = 0;
    (void)st;
}

typedef struct par {
    int idx;
    int rc;
    char out[64];
} par_t;

static void *par_worker(void *arg)
{
    par_t *p = arg;
    ctl_ssh_opts_t o = {
        .host = getenv("SAI3_TEST_SSH_HOST"),
        .port = atoi(getenv("SAI3_TEST_SSH_PORT")),
        .user = getenv("SAI3_TEST_SSH_USER"),
        .known_hosts = getenv("SAI3_TEST_SSH_KNOWN_HOSTS"),
    };
    char e[512];
    ctl_ssh_t *s = NULL;
    p->rc = ctl_ssh_connect(&o, &s, e, sizeof(e));
    if (!p->rc)
        p->rc = ctl_ssh_auth_password(s, getenv("SAI3_TEST_SSH_PASSWORD"), e, sizeof(e));
    for (int i = 0; !p->rc && i < 5; i++) {
        char cmd[64], *out = NULL;
        int status;
        snprintf(cmd, sizeof(cmd), "echo w%d-%d", p->idx, i);
        p->rc = ctl_ssh_exec(s, cmd, NULL, 0, &out, NULL, &status, e, sizeof(e));
        if (!p->rc)
            snprintf(p->out, sizeof(p->out), "%s", out);
        free(out);
    }
    if (p->rc)
        printf("  worker %d: %s\n", p->idx, e);
    ctl_ssh_close(s);
    return NULL;
}

static void exec_threads(void **st)
{
    enum { N = 4 };
    pthread_t t[N];
    par_t p[N];
    for (int i = 0; i < N; i++) {
        memset(&p[i], 0, sizeof(p[i]));
        p[i].idx = i;
        pthread_create(&t[i], NULL, par_worker, &p[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(p[i].rc, 0);
        char want[64];
        snprintf(want, sizeof(want), "w%d-4\n", i);
        assert_string_equal(p[i].out, want);
    }
    (void)st;
}

/* ------------------------------------------------------------------ key auth ------------- */

static void authorize(ctl_ssh_t *s, const char *pubpath)
{
    char *line = slurp(pubpath);
    assert_non_null(line);
    char *out = NULL;
    int status = -1;
    assert_int_equal(run(s,
                         "umask 077 && mkdir -p ~/.ssh && chmod 700 ~/.ssh && "
                         "cat >> ~/.ssh/authorized_keys && chmod 600 ~/.ssh/authorized_keys",
                         line, &out, NULL, &status),
                     0);
    assert_int_equal(status, 0);
    free(out);
    free(line);
}

static void key_login(const char *priv, int want)
{
    ctl_ssh_t *s = NULL;
    conn_args_t a = {0};
    assert_int_equal(conn(&a, &s), 0);
    err[0] = '\0';
    int rc = ctl_ssh_auth_key(s, priv, err, sizeof(err));
    if (rc)
        printf("  auth_key %s -> %d (%s)\n", priv, rc, err);
    assert_int_equal(rc, want);
    if (!rc) {
        char *out = NULL;
        int status = -1;
        assert_int_equal(run(s, "id -un", NULL, &out, NULL, &status), 0);
        char w[128];
        snprintf(w, sizeof(w), "%s\n", env("SAI3_TEST_SSH_USER"));
        assert_string_equal(out, w);
        free(out);
    }
    ctl_ssh_close(s);
}

static void keyauth(void **st)
{
    char *priv = path_in_dir("auth/id_rsa");
    char *pub = path_in_dir("auth/id_rsa.pub");
    char *other = path_in_dir("auth/other_rsa");
    char *nopub = path_in_dir("auth/copy/id_rsa");
    char *ed = path_in_dir("auth/id_ed25519");
    char *edpub = path_in_dir("auth/id_ed25519.pub");
    assert_int_equal(ctl_ssh_keygen(priv, 2048, "sai3 test", err, sizeof(err)), 0);
    assert_int_equal(ctl_ssh_keygen(other, 2048, "not authorized", err, sizeof(err)), 0);

    key_login(priv, -EACCES); /* not authorized yet */
    printf("  message: %s\n", err);
    assert_non_null(strstr(err, "refused"));

    ctl_ssh_t *s = login();
    authorize(s, pub);
    sh("ssh-keygen -q -t ed25519 -N '' -C ed -f %s", ed);
    authorize(s, edpub);
    ctl_ssh_close(s);

    key_login(priv, 0);
    key_login(other, -EACCES);
    key_login(ed, 0); /* OpenSSH's own format */
    /* without a .pub file next to it: derived from the private key */
    sh("mkdir -p $(dirname %s) && cp %s %s", nopub, priv, nopub);
    key_login(nopub, 0);
    char *missing = path_in_dir("auth/missing");
    key_login(missing, -ENOENT);

    /* keys made by ssh-keygen: RSA in OpenSSH's format, PKCS#8 and PKCS#1 PEM; ECDSA */
    const char *fmt[][2] = {
        {"rsa_openssh", "-t rsa -b 2048"},
        {"rsa_pkcs8", "-t rsa -b 2048 -m PKCS8"},
        {"rsa_pem", "-t rsa -b 3072 -m PEM"},
        {"ecdsa", "-t ecdsa -b 256"},
    };
    s = login();
    for (size_t i = 0; i < sizeof(fmt) / sizeof(fmt[0]); i++) {
        char *k = path_in_dir("auth/%s", fmt[i][0]);
        char *kp = path_in_dir("auth/%s.pub", fmt[i][0]);
        sh("ssh-keygen -q %s -N '' -C %s -f %s", fmt[i][1], fmt[i][0], k);
        authorize(s, kp);
        free(k), free(kp);
    }
    ctl_ssh_close(s);
    for (size_t i = 0; i < sizeof(fmt) / sizeof(fmt[0]); i++) {
        char *k = path_in_dir("auth/%s", fmt[i][0]);
        key_login(k, 0);
        free(k);
    }
    /* passphrase-protected keys are refused with a clear reason */
    const char *enc[] = {"-t rsa -b 2048", "-t rsa -b 2048 -m PEM"};
    for (size_t i = 0; i < sizeof(enc) / sizeof(enc[0]); i++) {
        char *k = path_in_dir("auth/enc%zu", i);
        sh("ssh-keygen -q %s -N 'secret pass' -f %s", enc[i], k);
        key_login(k, -EINVAL);
        assert_non_null(strstr(err, "passphrase"));
        free(k);
    }
    /* not a key at all */
    char *junk = path_in_dir("auth/junk");
    spit(junk, "this is not a key\n");
    ctl_ssh_t *s2 = NULL;
    conn_args_t a = {0};
    assert_int_equal(conn(&a, &s2), 0);
    int rc = ctl_ssh_auth_key(s2, junk, err, sizeof(err));
    printf("  junk key -> %d (%s)\n", rc, err);
    assert_true(rc == -EINVAL || rc == -EACCES);
    ctl_ssh_close(s2);
    free(junk);
    free(priv), free(pub), free(other), free(nopub), free(ed), free(edpub), free(missing);
    (void)st;
}

/* ------------------------------------------------------------------ other servers -------- */

static void ipv6(void **st)
{
    char *kh = path_in_dir("kh6/known_hosts");
    ctl_ssh_t *s = NULL;
    conn_args_t a = {.host = env("SAI3_TEST_SSH_HOST6"),
                     .port = env_int("SAI3_TEST_SSH_PORT6"),
                     .known_hosts = kh,
                     .policy = CTL_SSH_HOSTKEY_ACCEPT_NEW};
    assert_int_equal(conn(&a, &s), 0);
    assert_int_equal(ctl_ssh_hostkey_is_new(s), 1);
    assert_int_equal(ctl_ssh_record_hostkey(s, err, sizeof(err)), 0);
    assert_int_equal(ctl_ssh_auth_password(s, env("SAI3_TEST_SSH_PASSWORD"), err, sizeof(err)), 0);
    char *out = NULL;
    int status = -1;
    assert_int_equal(run(s, "echo $SSH_CONNECTION", NULL, &out, NULL, &status), 0);
    assert_int_equal(strncmp(out, "::1 ", 4), 0);
    free(out);
    ctl_ssh_close(s);
    char *text = slurp(kh);
    char want[64];
    snprintf(want, sizeof(want), "[::1]:%s ssh-ed25519 ", env("SAI3_TEST_SSH_PORT6"));
    assert_int_equal(strncmp(text, want, strlen(want)), 0);
    free(text);
    a.policy = CTL_SSH_HOSTKEY_STRICT;
    assert_int_equal(conn(&a, &s), 0);
    ctl_ssh_close(s);
    free(kh);
    (void)st;
}

static void kbd(void **st)
{
    char *kh = path_in_dir("kh-kbd/known_hosts");
    ctl_ssh_t *s = NULL;
    conn_args_t a = {.port = env_int("SAI3_TEST_SSH_KBD_PORT"),
                     .known_hosts = kh,
                     .policy = CTL_SSH_HOSTKEY_ACCEPT_NEW};
    assert_int_equal(conn(&a, &s), 0);
    assert_int_equal(ctl_ssh_auth_password(s, "wrong-again", err, sizeof(err)), -EACCES);
    printf("  message: %s\n", err);
    ctl_ssh_close(s);
    assert_int_equal(conn(&a, &s), 0);
    int rc = ctl_ssh_auth_password(s, env("SAI3_TEST_SSH_PASSWORD"), err, sizeof(err));
    if (rc)
        printf("  kbd auth: %s\n", err);
    assert_int_equal(rc, 0);
    char *out = NULL;
    int status = -1;
    assert_int_equal(run(s, "echo kbd-ok", NULL, &out, NULL, &status), 0);
    assert_string_equal(out, "kbd-ok\n");
    free(out);
    ctl_ssh_close(s);

    a.port = env_int("SAI3_TEST_SSH_KEYONLY_PORT");
    assert_int_equal(conn(&a, &s), 0);
    assert_int_equal(ctl_ssh_auth_password(s, env("SAI3_TEST_SSH_PASSWORD"), err, sizeof(err)),
                     -EACCES);
    printf("  message: %s\n", err);
    assert_non_null(strstr(err, "publickey"));
    ctl_ssh_close(s);
    free(kh);
    (void)st;
}

/* A server with an ed25519 and an ECDSA host key: unknown, we prefer ed25519 (as OpenSSH does);
 * with only its ECDSA key in known_hosts, we ask for that one and accept it. */
static void multikey(void **st)
{
    char *kh = path_in_dir("kh-multi");
    char *kh_ecdsa = path_in_dir("kh-multi-ecdsa");
    ctl_ssh_t *s = NULL;
    conn_args_t a = {.port = env_int("SAI3_TEST_SSH_MULTI_PORT"),
                     .known_hosts = kh,
                     .policy = CTL_SSH_HOSTKEY_ACCEPT_NEW};
    assert_int_equal(conn(&a, &s), 0);
    assert_string_equal(ctl_ssh_hostkey_type(s), "ssh-ed25519");
    ctl_ssh_close(s);
    char line[4096];
    snprintf(line, sizeof(line), "%s\n", env("SAI3_TEST_SSH_MULTI_ECDSA_LINE"));
    spit(kh_ecdsa, line);
    a.known_hosts = kh_ecdsa;
    a.policy = CTL_SSH_HOSTKEY_STRICT;
    assert_int_equal(conn(&a, &s), 0);
    assert_string_equal(ctl_ssh_hostkey_type(s), "ecdsa-sha2-nistp256");
    assert_string_equal(ctl_ssh_hostkey_fingerprint(s), env("SAI3_TEST_SSH_MULTI_ECDSA_FP"));
    assert_int_equal(ctl_ssh_hostkey_is_new(s), 0);
    ctl_ssh_close(s);

    /* only an RSA host key: libssh2 1.10 cannot verify rsa-sha2 signatures; the message says
     * what to do (a later libssh2 simply connects) */
    a.port = env_int("SAI3_TEST_SSH_RSAHOST_PORT");
    a.policy = CTL_SSH_HOSTKEY_ACCEPT_NEW;
    int rc = conn(&a, &s);
    if (rc == 0) {
        assert_string_equal(ctl_ssh_hostkey_type(s), "ssh-rsa");
        ctl_ssh_close(s);
    } else {
        assert_int_equal(rc, -EPROTO);
        assert_non_null(strstr(err, "ed25519 or ECDSA host key"));
    }
    free(kh), free(kh_ecdsa);
    (void)st;
}

static void neterr(void **st)
{
    ctl_ssh_t *s = NULL;
    conn_args_t a = {.port = env_int("SAI3_TEST_SSH_CLOSED_PORT")};
    assert_int_equal(conn(&a, &s), -ECONNREFUSED);
    assert_null(s);
    assert_non_null(strstr(err, "refused"));
    a.host = "::1";
    assert_int_equal(conn(&a, &s), -ECONNREFUSED);

    /* "localhost" may give ::1 and 127.0.0.1: every address is tried */
    a.host = "localhost";
    a.port = env_int("SAI3_TEST_SSH_PORT");
    a.known_hosts = "/nonexistent/known_hosts";
    a.policy = CTL_SSH_HOSTKEY_ACCEPT_NEW;
    assert_int_equal(conn(&a, &s), 0);
    ctl_ssh_close(s);

    /* a server that accepts and never speaks: handshake timeout */
    conn_args_t b = {.port = env_int("SAI3_TEST_SSH_SILENT_PORT"), .timeout_ms = 500};
    double t0 = now_s();
    assert_int_equal(conn(&b, &s), -ETIMEDOUT);
    printf("  silent server: %.2f s\n", now_s() - t0);
    assert_true(now_s() - t0 < 2.0);
    /* and cancelled while waiting for it */
    cancel_flag = 0;
    pthread_t t;
    pthread_create(&t, NULL, set_cancel, NULL);
    b.timeout_ms = 10000;
    b.cancel = &cancel_flag;
    t0 = now_s();
    assert_int_equal(conn(&b, &s), -ECANCELED);
    pthread_join(t, NULL);
    assert_true(now_s() - t0 < 1.5);
    cancel_flag = 0;

    /* not SSH at all */
    conn_args_t c = {.port = env_int("SAI3_TEST_SSH_GARBAGE_PORT"), .timeout_ms = 3000};
    assert_int_equal(conn(&c, &s), -EPROTO);
    (void)st;
}

/* ------------------------------------------------------------------ main ----------------- */

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_ssh PHASE\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    if (ctl_ssh_global_init() != 0)
        return 1;
    const char *ph = argv[1];
    int rc = -1;
#define PHASE(name, ...)                                                                           \
    if (strcmp(ph, name) == 0) {                                                                   \
        const struct CMUnitTest t[] = {__VA_ARGS__};                                               \
        rc = cmocka_run_group_tests_name(name, t, NULL, NULL);                                     \
    }
    PHASE("keygen", cmocka_unit_test(keygen_basic), cmocka_unit_test(keygen_nocomment),
          cmocka_unit_test(read_pubkey_errors));
    PHASE("keygen4096", cmocka_unit_test(keygen_4096));
    PHASE("quote", cmocka_unit_test(quote_local));
    PHASE("hostkeys", cmocka_unit_test(hostkeys));
    PHASE("auth", cmocka_unit_test(auth_password));
    PHASE("exec", cmocka_unit_test(exec_cases), cmocka_unit_test(exec_cancel),
          cmocka_unit_test(exec_threads));
    PHASE("keyauth", cmocka_unit_test(keyauth));
    PHASE("rotated", cmocka_unit_test(rotated));
    PHASE("ipv6", cmocka_unit_test(ipv6));
    PHASE("kbd", cmocka_unit_test(kbd));
    PHASE("neterr", cmocka_unit_test(neterr));
    PHASE("multikey", cmocka_unit_test(multikey));
    ctl_ssh_global_exit();
    if (rc < 0) {
        fprintf(stderr, "test_ssh: unknown phase %s\n", ph);
        return 2;
    }
    return rc ? 1 : 0;
}
