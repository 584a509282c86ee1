/* `ssh-setup`: passwordless SSH from this controller to the agent hosts (see ssh.h for the
 * client). Per host, in this order, so that a refused login leaves nothing behind on either side:
 *
 *   connect (host key checked against known_hosts; an unknown host is accepted but not recorded)
 *   -> key auth when the key pair already exists (a second run needs no password)
 *   -> otherwise password auth (file, environment or /dev/tty, asked once per host)
 *   -> only now: record the host key, generate the key pair when missing, install the public key
 *      with one idempotent remote command
 *   -> a new session with the key alone (and the host key now known): the verification
 *   -> look for sai3bench-agent and docker.
 *
 * Then a summary, and a runnable YAML template with distributed.ssh and distributed.agents.
 * The password is never printed, never written, and wiped from memory after use. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>



#include "cli.h"
#include "ctl.h"
#include "ssh.h"
#include "wl/units.h"

#define DEFAULT_KEY "~/.ssh/sai3bench_id_rsa"
#define DEFAULT_KNOWN_HOSTS "~/.ssh/known_hosts"
#define DEFAULT_TEMPLATE "sai3bench-ssh-template.yaml"
#define PW_MAX 1024

static const char sshsetup_usage[] =
    "usage: sai3bench-ctl ssh-setup --hosts [USER@]HOST[:PORT][,...] [options]\n"
    "\n"
    "Sets up passwordless SSH from this machine to the agent hosts, for distributed.ssh:\n"
    "  1. makes an RSA 4096 key pair (--key-path, and .pub) unless it exists;\n"
    "  2. logs in to each host with its password (asked once per host) and appends the public\n"
    "     key to ~/.ssh/authorized_keys there (creating ~/.ssh 0700 and the file 0600; a key\n"
    "     already there is not added again). Hosts that already accept the key need no password;\n"
    "  3. records the host key in known_hosts on first contact (its fingerprint is shown); a\n"
    "     host whose key CHANGED since it was recorded is refused;\n"
    "  4. verifies that the key alone logs in, and looks for sai3bench-agent and docker;\n"
    "  5. writes a workload template with distributed.ssh and distributed.agents filled in.\n"
    "Nothing is written (no key, no known_hosts entry, nothing remote) for a host whose login\n"
    "fails.\n"
    "\n"
    "options:\n"
    "  --hosts LIST          comma-separated [USER@]HOST[:PORT]; IPv6 as [ADDR]:PORT or bare ADDR\n"
    "  --user U              user for entries without USER@ (default: $USER)\n"
    "  --key-path P          private key (default ~/.ssh/sai3bench_id_rsa; public key P.pub)\n"
    "  --port N              SSH port for entries without :PORT (default 22)\n"
    "  --password-file F     the password (for every host) is the first line of F\n"
    "  --known-hosts F       known_hosts file (default ~/.ssh/known_hosts)\n"
    "  --template FILE       YAML template to write (default ./sai3bench-ssh-template.yaml; an\n"
    "                        existing file is never overwritten: FILE-1, FILE-2, ... instead)\n"
    "  --timeout DUR         limit per step: connect, handshake, login, each command (default "
    "10s)\n"
    "  --agent-port N        agent port written to the template's addresses (default 7761)\n"
    "  --install-agent[=FILE]\n"
    "                        copy the agent binary (default: the sai3bench-agent next to this\n"
    "                        sai3bench-ctl) to ~/.local/bin/sai3bench-agent on every host, check\n"
    "                        that it runs there, and point the template's\n"
    "                        deployment.binary_path at it\n"
    "  --test-only           only verify: key login, host key already known, the agent and "
    "docker;\n"
    "                        changes nothing anywhere and writes no template\n"
    "  -h, --help            this text\n"
    "\n"
    "password: --password-file F, else the environment variable SAI3_SSH_PASSWORD, else a prompt\n"
    "on the terminal (/dev/tty, not echoed). Without a terminal and without either of them, and\n"
    "without an existing key pair, ssh-setup stops before contacting any host.\n"
    "\n"
    "exit status: 0 every host ready, 1 any host failed, 2 bad usage, 130 interrupted\n";

typedef struct host {
    char *user;
    char *host; /* without brackets */
    int port;
    char disp[320];     /* "host", "[v6]", with ":port" when not 22 */
    char userhost[400]; /* "user@" disp */
    int ok;
    int agent_missing;
    char reason[128];
} host_t;

typedef struct setup {
    host_t *hosts;
    size_t nhosts;
    char *key_path;
    char *known_hosts;
    int known_hosts_default;
    const char *template_path;
    int timeout_ms;
    uint64_t timeout_ns;
    int agent_port;
    int test_only;
    char *install_agent; /* --install-agent: the local agent binary to copy, or NULL */
    char *agent_blob;    /* its contents */
    size_t agent_len;
    char *password;     /* from --password-file or SAI3_SSH_PASSWORD; NULL: prompt */
    const char *pw_src; /* where it came from, for messages */
    int tty_fd;         /* /dev/tty, or -1 */
    int key_exists;     /* both files of the pair exist */
    int key_announced;
} setup_t;

static volatile int cancelled;

static void on_signal(int sig)
{
    (void)sig;
    cancelled = 1;
}

static int usage_err(const char *fmt, const char *arg)
{
    fprintf(stderr, "sai3bench-ctl ssh-setup: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nrun 'sai3bench-ctl ssh-setup --help' for usage\n");
    return 2;
}

static void wipe(char *s)
{
    if (s)
        explicit_bzero(s, strlen(s));
}

/* "~/x" -> "$HOME/x"; relative -> absolute (the template must not depend on the cwd). */
static int parse_port(const char *s, size_t len, int *out)
{
    if (len == 0 || len > 5)
        return -1;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return -1;
    *out = v;
    return 0;
}

static int host_chars_ok(const char *s, size_t len, int v6)
{
    if (len == 0 || s[0] == '-')
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '-' || c == '_' || (v6 && (c == ':' || c == '%'));
        if (!ok)
            return 0;
    }
    return 1;
}

static int user_chars_ok(const char *s, size_t len)
{
    if (len == 0 || s[0] == '-')
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c <= ' ' || c == '@' || c == ':' || c == '/' || c == '\'' || c == '"' || c == '\\' ||
            c == 127)
            return 0;
    }
    return 1;
}

/* One "[USER@]HOST[:PORT]" entry (already trimmed, len > 0). */
static int parse_entry(const char *s, size_t len, const char *def_user, int def_port, host_t *h,
                       char *err, size_t errlen)
{
    const char *at = memchr(s, '@', len);
    const char *u = def_user;
    size_t ulen = strlen(def_user);
    const char *hp = s;
    size_t hlen = len;
    if (at) {
        u = s;
        ulen = (size_t)(at - s);
        hp = at + 1;
        hlen = len - ulen - 1;
        if (memchr(hp, '@', hlen)) {
            snprintf(err, errlen, "'%.*s': more than one '@'", (int)len, s);
            return -1;
        }
    }
    if (!user_chars_ok(u, ulen)) {
        snprintf(err, errlen, "'%.*s': bad user name '%.*s'", (int)len, s, (int)ulen, u);
        return -1;
    }
    const char *name = hp;
    size_t nlen = hlen;
    int port = def_port, v6 = 0;
    if (hlen > 0 && hp[0] == '[') {
        const char *rb = memchr(hp, ']', hlen);
        if (!rb) {
            snprintf(err, errlen, "'%.*s': '[' without ']'", (int)len, s);
            return -1;
        }
        name = hp + 1;
        nlen = (size_t)(rb - name);
        v6 = 1;
        const char *rest = rb + 1;
        size_t rlen = hlen - (size_t)(rest - hp);
        if (rlen > 0) {
            if (rest[0] != ':' || parse_port(rest + 1, rlen - 1, &port) != 0) {
                snprintf(err, errlen, "'%.*s': expected ':PORT' (1-65535) after ']'", (int)len, s);
                return -1;
            }
        }
    } else {
        size_t colons = 0;
        const char *last = NULL;
        for (size_t i = 0; i < hlen; i++)
            if (hp[i] == ':') {
                colons++;
                last = hp + i;
            }
        if (colons == 1) {
            nlen = (size_t)(last - hp);
            if (parse_port(last + 1, hlen - nlen - 1, &port) != 0) {
                snprintf(err, errlen, "'%.*s': bad port '%.*s' (1-65535)", (int)len, s,
                         (int)(hlen - nlen - 1), last + 1);
                return -1;
            }
        } else if (colons > 1) {
            v6 = 1; /* bare IPv6 address, no port */
        }
    }
    if (nlen == 0) {
        snprintf(err, errlen, "'%.*s': no host name", (int)len, s);
        return -1;
    }
    if (!host_chars_ok(name, nlen, v6)) {
        snprintf(err, errlen, "'%.*s': bad host name '%.*s'", (int)len, s, (int)nlen, name);
        return -1;
    }
    h->user = strndup(u, ulen);
    h->host = strndup(name, nlen);
    if (!h->user || !h->host) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    h->port = port;
    int is6 = strchr(h->host, ':') != NULL;
    if (port == 22)
        snprintf(h->disp, sizeof(h->disp), is6 ? "[%s]" : "%s", h->host);
    else
        snprintf(h->disp, sizeof(h->disp), is6 ? "[%s]:%d" : "%s:%d", h->host, port);
    snprintf(h->userhost, sizeof(h->userhost), "%s@%s", h->user, h->disp);
    return 0;
}

static int parse_hosts(const char *list, const char *def_user, int def_port, setup_t *st, char *err,
                       size_t errlen)
{
    size_t n = 1;
    for (const char *p = list; *p; p++)
        if (*p == ',')
            n++;
    st->hosts = calloc(n, sizeof(*st->hosts));
    if (!st->hosts) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *p = list;
    for (size_t i = 0; i < n; i++) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *s = p;
        while (len > 0 && (*s == ' ' || *s == '\t')) {
            s++;
            len--;
        }
        while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            len--;
        if (len == 0) {
            snprintf(err, errlen, "--hosts: empty entry (at position %zu of '%s')", i + 1, list);
            return -1;
        }
        char e2[400];
        if (parse_entry(s, len, def_user, def_port, &st->hosts[i], e2, sizeof(e2)) != 0) {
            snprintf(err, errlen, "--hosts: %s", e2);
            st->nhosts = i + 1;
            return -1;
        }
        st->nhosts = i + 1;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(st->hosts[j].userhost, st->hosts[i].userhost)) {
                snprintf(err, errlen, "--hosts: %s is listed twice", st->hosts[i].userhost);
                return -1;
            }
        p = e ? e + 1 : p + len;
    }
    return 0;
}

static void free_setup(setup_t *st)
{
    for (size_t i = 0; i < st->nhosts; i++) {
        free(st->hosts[i].user);
        free(st->hosts[i].host);
    }
    free(st->hosts);
    free(st->key_path);
    free(st->known_hosts);
    free(st->install_agent);
    free(st->agent_blob);
    if (st->password) {
        wipe(st->password);
        free(st->password);
    }
    if (st->tty_fd >= 0)
        close(st->tty_fd);
}

static int read_password_file(const char *path, char **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "--password-file %s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    fclose(f);
    if (n < 0) {
        free(line);
        snprintf(err, errlen, "--password-file %s: the file is empty", path);
        return -1;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = 0;
    if (n == 0) {
        wipe(line);
        free(line);
        snprintf(err, errlen, "--password-file %s: the first line is empty", path);
        return -1;
    }
    *out = line;
    return 0;
}

/* Prompts on the terminal with echo off; one line into buf. 0, -ECANCELED (signal) or -EIO. */
static int prompt_password(int fd, const char *prompt, char *buf, size_t len)
{
    struct termios old, quiet;
    if (tcgetattr(fd, &old) != 0)
        return -EIO;
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
    quiet.c_lflag |= ICANON;
    /* echo off before the prompt: whatever is typed after it must not be shown */
    if (tcsetattr(fd, TCSAFLUSH, &quiet) != 0)
        return -EIO;
    if (write(fd, prompt, strlen(prompt)) < 0) {
        tcsetattr(fd, TCSAFLUSH, &old);
        return -EIO;
    }
    size_t n = 0;
    int rc = 0;
    for (;;) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR) {
            if (cancelled) {
                rc = -ECANCELED;
                break;
            }
            continue;
        }
        if (r < 0) {
            rc = -EIO;
            break;
        }
        if (r == 0 || c == '\n' || c == '\r')
            break;
        if (n + 1 < len)
            buf[n++] = c;
    }
    buf[n] = 0;
    explicit_bzero(&n, sizeof(n));
    tcsetattr(fd, TCSAFLUSH, &old);
    if (write(fd, "\n", 1) < 0) { /* the newline the user typed was not echoed */
    }
    if (rc != 0)
        explicit_bzero(buf, len);
    return rc;
}

static const char *short_reason(int rc)
{
    switch (-rc) {
    case ECONNREFUSED:
        return "connection refused";
    case ETIMEDOUT:
        return "timed out";
    case EHOSTUNREACH:
        return "host unreachable or unknown";
    case ENETUNREACH:
        return "network unreachable";
    case EACCES:
        return "authentication failed";
    case EKEYREJECTED:
        return "host key changed";
    case ENOKEY:
        return "host key unknown";
    case ECANCELED:
        return "interrupted";
    case EPROTO:
        return "SSH error";
    default:
        return strerror(-rc);
    }
}

static void host_fail(host_t *h, const char *reason)
{
    h->ok = 0;
    snprintf(h->reason, sizeof(h->reason), "%s", reason);
}

static int open_session(const setup_t *st, const host_t *h, ctl_ssh_hostkey_policy_t pol,
                        ctl_ssh_t **s, char *err, size_t errlen)
{
    ctl_ssh_opts_t o;
    memset(&o, 0, sizeof(o));
    o.host = h->host;
    o.port = h->port;
    o.user = h->user;
    o.known_hosts = st->known_hosts;
    o.hostkey_policy = pol;
    o.timeout_ms = st->timeout_ms;
    o.cancel = &cancelled;
    return ctl_ssh_connect(&o, s, err, errlen);
}

/* Reports a failed connect; returns the host as failed. */
static void connect_failed(const setup_t *st, host_t *h, int rc, const char *err)
{
    if (rc == -EKEYREJECTED) {
        ctl_err("✗ REFUSED: the host key of %s has CHANGED since it was recorded in %s", h->disp,
                st->known_hosts);
        ctl_err("  %s", err);
        ctl_err("  Nothing was sent to the host and nothing was changed. A changed host key can "
                "mean a man-in-the-middle attack: remove the old entry only when you know why "
                "the key changed.");
    } else if (rc == -ENOKEY) {
        ctl_err("✗ the host key of %s is not in %s", h->disp, st->known_hosts);
        ctl_err("  %s", err);
    } else {
        ctl_err("✗ %s", err);
    }
    host_fail(h, short_reason(rc));
}

static const char install_script[] =
    "umask 077; d=\"$HOME/.ssh\"; f=\"$d/authorized_keys\"; "
    "mkdir -p \"$d\" && chmod 700 \"$d\" && touch \"$f\" && chmod 600 \"$f\" || exit 3; "
    "IFS= read -r k || [ -n \"$k\" ] || exit 4; "
    "case \"$k\" in ssh-*|ecdsa-*|sk-*) ;; *) exit 4;; esac; "
    "if grep -qxF -- \"$k\" \"$f\"; then echo sai3:present; exit 0; fi; "
    "if [ -s \"$f\" ] && [ -n \"$(tail -c 1 \"$f\")\" ]; then printf '\\n' >> \"$f\" || exit 5; "
    "fi; "
    "printf '%s\\n' \"$k\" >> \"$f\" || exit 5; "
    "if command -v restorecon >/dev/null 2>&1; then restorecon -F \"$d\" \"$f\" >/dev/null 2>&1; "
    "fi; "
    "echo sai3:added";

static const char detect_script[] =
    "PATH=\"$PATH:/usr/local/bin:/usr/local/sbin:$HOME/.local/bin\"; export PATH; "
    "a=$(command -v sai3bench-agent 2>/dev/null); "
    "if [ -z \"$a\" ]; then "
    "for p in /usr/local/bin/sai3bench-agent \"$HOME/.local/bin/sai3bench-agent\"; do "
    "if [ -x \"$p\" ]; then a=$p; break; fi; done; fi; "
    "echo \"sai3:agent=$a\"; "
    "if [ -n \"$a\" ]; then "
    "if command -v timeout >/dev/null 2>&1; then "
    "v=$(timeout 5 \"$a\" --version 2>/dev/null | head -n 1); "
    "else v=$(\"$a\" --version 2>/dev/null | head -n 1); fi; "
    "echo \"sai3:agentversion=$v\"; fi; "
    "v=$(docker --version 2>/dev/null | head -n 1); echo \"sai3:docker=$v\"";

/* "/bin/sh -c '<script>'": the login shell of the remote user may not be a POSIX shell. */
static char *sh_command(const char *script)
{
    char *q = ctl_sh_quote(script);
    if (!q)
        return NULL;
    char *cmd = NULL;
    if (asprintf(&cmd, "/bin/sh -c %s", q) < 0)
        cmd = NULL;
    free(q);
    return cmd;
}

static const char *find_value(const char *out, const char *key, char *buf, size_t len)
{
    size_t kl = strlen(key);
    for (const char *p = out; p && *p;) {
        const char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l >= kl && !memcmp(p, key, kl)) {
            size_t vl = l - kl;
            if (vl >= len)
                vl = len - 1;
            memcpy(buf, p + kl, vl);
            buf[vl] = 0;
            return buf;
        }
        p = e ? e + 1 : NULL;
    }
    return NULL;
}

static const char *first_line(const char *s, char *buf, size_t len)
{
    if (!s)
        s = "";
    while (*s == '\n' || *s == ' ')
        s++;
    size_t l = strcspn(s, "\n");
    if (l >= len)
        l = len - 1;
    memcpy(buf, s, l);
    buf[l] = 0;
    return buf;
}

/* ---- --install-agent ---------------------------------------------------------------------- */

/* The sai3bench-agent next to this program: installed side by side, or in the build tree
 * (build/apps/ctl/sai3bench-ctl and build/apps/agent/sai3bench-agent). malloc'd or NULL. */
static char *default_agent_path(void)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return NULL;
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (!slash)
        return NULL;
    *slash = 0;
    static const char *const rel[] = {"/sai3bench-agent", "/../agent/sai3bench-agent"};
    for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
        char cand[PATH_MAX + 32];
        snprintf(cand, sizeof(cand), "%s%s", self, rel[i]);
        if (access(cand, X_OK) == 0)
            return realpath(cand, NULL);
    }
    return NULL;
}

/* Reads the binary to copy (a regular executable file up to 1 GiB). 0 or -1 (err). */
static int load_agent(setup_t *st, const char *arg, char *err, size_t errlen)
{
    st->install_agent = arg ? strdup(arg) : default_agent_path();
    if (!st->install_agent) {
        snprintf(err, errlen, "--install-agent: no sai3bench-agent next to this sai3bench-ctl "
                              "(give its path: --install-agent=FILE)");
        return -1;
    }
    struct stat sb;
    int fd = open(st->install_agent, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || !(sb.st_mode & S_IXUSR) ||
        sb.st_size <= 0 || sb.st_size > (1 << 30)) {
        snprintf(err, errlen, "--install-agent: %s is not an executable file%s%s",
                 st->install_agent, fd < 0 ? ": " : "", fd < 0 ? strerror(errno) : "");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    st->agent_len = (size_t)sb.st_size;
    st->agent_blob = malloc(st->agent_len);
    size_t got = 0;
    while (st->agent_blob && got < st->agent_len) {
        ssize_t r = read(fd, st->agent_blob + got, st->agent_len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (!st->agent_blob || got != st->agent_len) {
        snprintf(err, errlen, "--install-agent: cannot read %s", st->install_agent);
        return -1;
    }
    return 0;
}

/* The binary arrives on stdin; it replaces ~/.local/bin/sai3bench-agent atomically (a run in
 * progress keeps its old file), then must answer --version. */
static const char agent_install_script[] =
    "umask 022; d=\"$HOME/.local/bin\"; mkdir -p \"$d\" || exit 3; "
    "t=\"$d/.sai3bench-agent.$$\"; "
    "cat > \"$t\" || { rm -f \"$t\"; exit 4; }; "
    "chmod 755 \"$t\" && mv -f \"$t\" \"$d/sai3bench-agent\" || { rm -f \"$t\"; exit 5; }; "
    "echo \"sai3:installed=$d/sai3bench-agent\"; "
    "v=$(\"$d/sai3bench-agent\" --version 2>&1 | head -n 3); "
    "echo \"sai3:version=$(printf '%s' \"$v\" | tr '\\n' ' ')\"";

/* Copies the agent binary to the host. 0 or -1 (reported; the host failed). */
static int install_agent(const setup_t *st, host_t *h, ctl_ssh_t *s)
{
    char err[2048];
    char *cmd = sh_command(agent_install_script);
    if (!cmd) {
        host_fail(h, "out of memory");
        return -1;
    }
    char *out = NULL, *eout = NULL;
    int status = -1;
    /* megabytes over a slow link: more time than one command gets */
    ctl_ssh_set_timeout(s, st->timeout_ms > 300000 ? st->timeout_ms : 300000);
    int rc = ctl_ssh_exec(s, cmd, st->agent_blob, st->agent_len, &out, &eout, &status, err,
                          sizeof(err));
    ctl_ssh_set_timeout(s, st->timeout_ms);
    free(cmd);
    char path[1024], ver[512], l[256];
    const char *p = rc == 0 && status == 0 ? find_value(out, "sai3:installed=", path, sizeof(path))
                                           : NULL;
    if (!p) {
        if (rc != 0)
            ctl_err("✗ copying sai3bench-agent to %s failed: %s", h->disp, err);
        else
            ctl_err("✗ copying sai3bench-agent to %s failed (exit status %d): %s", h->disp, status,
                    first_line(eout, l, sizeof(l)));
        host_fail(h, "agent copy failed");
        free(out);
        free(eout);
        return -1;
    }
    const char *v = find_value(out, "sai3:version=", ver, sizeof(ver));
    if (!v || strncmp(v, "sai3bench-agent ", 16) != 0) {
        ctl_err("✗ sai3bench-agent copied to %s:%s but it does not run there: %s", h->disp, p,
                v && *v ? v : "(no output)");
        ctl_err("  it needs its libraries on the host (Debian 12: apt-get install libuv1 "
                "libnghttp2-14 libmbedtls14 libmbedx509-1 libmbedcrypto7 libexpat1 libjansson4 "
                "libyaml-0-2 libzstd1 libprotobuf-c1 libssh2-1) and the same architecture");
        host_fail(h, "copied agent does not run");
        free(out);
        free(eout);
        return -1;
    }
    ctl_out("✓ sai3bench-agent installed: %s (%s, %zu bytes)", p, v, st->agent_len);
    free(out);
    free(eout);
    return 0;
}

/* Looks for sai3bench-agent and docker over an authenticated session. 0 or -1 (reported). */
static int detect(const setup_t *st, host_t *h, ctl_ssh_t *s)
{
    char err[2048];
    char *cmd = sh_command(detect_script);
    if (!cmd) {
        host_fail(h, "out of memory");
        return -1;
    }
    char *out = NULL, *eout = NULL;
    int status = -1;
    int rc = ctl_ssh_exec(s, cmd, NULL, 0, &out, &eout, &status, err, sizeof(err));
    free(cmd);
    if (rc != 0 || status != 0) {
        char l[256];
        if (rc != 0)
            ctl_err("✗ could not run a command on %s: %s", h->disp, err);
        else
            ctl_err("✗ could not run a command on %s: exit status %d: %s", h->disp, status,
                    first_line(eout, l, sizeof(l)));
        host_fail(h, rc != 0 ? short_reason(rc) : "remote command failed");
        free(out);
        free(eout);
        return -1;
    }
    char agent[1024], ver[256], docker[256];
    const char *a = find_value(out, "sai3:agent=", agent, sizeof(agent));
    const char *v = find_value(out, "sai3:agentversion=", ver, sizeof(ver));
    const char *d = find_value(out, "sai3:docker=", docker, sizeof(docker));
    if (a && *a) {
        if (v && *v)
            ctl_out("✓ sai3bench-agent found: %s (%s)", a, v);
        else
            ctl_out("✓ sai3bench-agent found: %s", a);
        if (v && *v && strcmp(v, "sai3bench-agent " SAI3_VERSION) != 0)
            ctl_out("! its version differs from this sai3bench-ctl %s: install the same version "
                    "on every host",
                    SAI3_VERSION);
    } else {
        h->agent_missing = 1;
        char port[32] = "";
        if (h->port != 22)
            snprintf(port, sizeof(port), "-P %d ", h->port);
        ctl_out("! sai3bench-agent not found on %s (looked in PATH, /usr/local/bin and "
                "~/.local/bin): install it, e.g. mkdir -p ~/.local/bin there, then scp "
                "%s-i %s sai3bench-agent %s@%s%s%s:.local/bin/ (or put it in /usr/local/bin)",
                h->disp, port, st->key_path, h->user, strchr(h->host, ':') ? "[" : "", h->host,
                strchr(h->host, ':') ? "]" : "");
    }
    if (d && *d)
        ctl_out("✓ docker found: %s", d);
    else
        ctl_out("- docker not found (only needed for distributed.deployment: docker)");
    free(out);
    free(eout);
    return 0;
}

/* Appends the public key to the remote authorized_keys unless it is there. 0 or -1 (reported). */
static int install_key(const setup_t *st, host_t *h, ctl_ssh_t *s)
{
    char err[2048];
    char *pub = NULL;
    int rc = ctl_ssh_read_pubkey(st->key_path, &pub, err, sizeof(err));
    if (rc != 0) {
        ctl_err("✗ %s", err);
        host_fail(h, "cannot read the public key");
        return -1;
    }
    char *cmd = sh_command(install_script);
    size_t plen = strlen(pub);
    char *in = malloc(plen + 2);
    if (!cmd || !in) {
        free(cmd);
        free(in);
        free(pub);
        host_fail(h, "out of memory");
        return -1;
    }
    memcpy(in, pub, plen);
    in[plen] = '\n';
    in[plen + 1] = 0;
    free(pub);
    char *out = NULL, *eout = NULL;
    int status = -1;
    rc = ctl_ssh_exec(s, cmd, in, plen + 1, &out, &eout, &status, err, sizeof(err));
    free(cmd);
    free(in);
    int ret = -1;
    char l[256];
    if (rc != 0) {
        ctl_err("✗ could not install the key on %s: %s", h->disp, err);
        host_fail(h, short_reason(rc));
    } else if (status != 0) {
        ctl_err("✗ could not install the key in ~/.ssh/authorized_keys on %s (exit status %d)%s%s",
                h->disp, status, eout && *eout ? ": " : "", first_line(eout, l, sizeof(l)));
        host_fail(h, "key install failed");
    } else if (out && strstr(out, "sai3:added")) {
        ctl_out("✓ SSH key copied to %s", h->disp);
        ret = 0;
    } else if (out && strstr(out, "sai3:present")) {
        ctl_out("✓ SSH key already authorized on %s", h->disp);
        ret = 0;
    } else {
        ctl_err("✗ could not install the key on %s: unexpected output '%s'", h->disp,
                first_line(out, l, sizeof(l)));
        host_fail(h, "key install failed");
    }
    free(out);
    free(eout);
    return ret;
}

/* ---- the key pair (ctl_ssh_keygen: RSA 4096, PKCS#1 PEM + OpenSSH public line) ------------ */

static int key_pair_state(const char *priv, int *exists, char *err, size_t errlen)
{
    struct stat sb;
    char pub[PATH_MAX + 8];
    snprintf(pub, sizeof(pub), "%s.pub", priv);
    int hp = stat(priv, &sb) == 0, hq = stat(pub, &sb) == 0;
    if (hp && hq) {
        char *line = NULL;
        int rc = ctl_ssh_read_pubkey(priv, &line, err, errlen);
        free(line);
        if (rc != 0)
            return -1;
        *exists = 1;
        return 0;
    }
    if (hp != hq) {
        if (hp)
            snprintf(err, errlen,
                     "%s exists but %s does not (recreate it: ssh-keygen -y -f %s > %s)", priv, pub,
                     priv, pub);
        else
            snprintf(err, errlen,
                     "%s exists but %s does not (remove %s, or use another --key-path)", pub, priv,
                     pub);
        return -1;
    }
    *exists = 0;
    return 0;
}

static void announce_key(setup_t *st)
{
    if (st->key_exists && !st->key_announced) {
        ctl_out("✓ Using existing SSH key: %s", st->key_path);
    }
    st->key_announced = 1;
}

/* Generates the key pair after the first successful password login. 0 or -1 (reported). */
static int ensure_key(setup_t *st, host_t *h)
{
    if (st->key_exists)
        return 0;
    char err[2048], hn[256] = "localhost", comment[400];
    gethostname(hn, sizeof(hn) - 1);
    hn[sizeof(hn) - 1] = 0;
    struct passwd *pw = getpwuid(getuid());
    snprintf(comment, sizeof(comment), "sai3bench-%s@%s", pw ? pw->pw_name : "user", hn);
    ctl_out("  generating an RSA 4096 key pair (this takes a few seconds)");
    int rc = ctl_ssh_keygen(st->key_path, 4096, comment, err, sizeof(err));
    if (rc != 0) {
        ctl_err("✗ SSH key generation failed: %s", err);
        host_fail(h, "key generation failed");
        return -1;
    }
    st->key_exists = 1;
    st->key_announced = 1;
    ctl_out("✓ SSH key generated: %s", st->key_path);
    return 0;
}

static void setup_host(setup_t *st, host_t *h)
{
    char err[2048];
    ctl_ssh_t *s = NULL;
    h->ok = 1;
    ctl_out("%s", "");
    ctl_out("=== %s SSH access to %s ===", st->test_only ? "Testing" : "Setting up", h->userhost);
    announce_key(st);
    int rc =
        open_session(st, h, st->test_only ? CTL_SSH_HOSTKEY_STRICT : CTL_SSH_HOSTKEY_ACCEPT_NEW, &s,
                     err, sizeof(err));
    if (rc != 0) {
        connect_failed(st, h, rc, err);
        return;
    }
    int is_new = ctl_ssh_hostkey_is_new(s);
    const char *fp = ctl_ssh_hostkey_fingerprint(s), *type = ctl_ssh_hostkey_type(s);
    if (!is_new)
        ctl_out("✓ Host key matches known_hosts (%s, %s)", fp, type);

    /* 1. the key, when there is one: a host that accepts it needs no password */
    int by_key = 0;
    if (st->key_exists) {
        rc = ctl_ssh_auth_key(s, st->key_path, err, sizeof(err));
        if (rc == 0) {
            by_key = 1;
        } else if (rc != -EACCES || st->test_only) {
            ctl_err("✗ %s", err);
            if (rc == -EACCES)
                ctl_err("  (the key is not authorized there: run ssh-setup "
                        "without --test-only)");
            host_fail(h, rc == -EACCES ? "key not accepted" : short_reason(rc));
            ctl_ssh_close(s);
            return;
        }
    }
    /* 2. the password */
    if (!by_key) {
        char pwbuf[PW_MAX];
        const char *pw = st->password;
        if (!pw) {
            if (st->tty_fd < 0) {
                ctl_err("✗ %s does not accept the key %s yet, and no password is available (no "
                        "terminal): set SAI3_SSH_PASSWORD or use --password-file",
                        h->userhost, st->key_path);
                host_fail(h, "no password");
                ctl_ssh_close(s);
                return;
            }
            if (is_new)
                ctl_out("- Host key of %s is new: %s (%s)", h->disp, fp, type);
            char prompt[512];
            snprintf(prompt, sizeof(prompt), "Password for %s: ", h->userhost);
            rc = prompt_password(st->tty_fd, prompt, pwbuf, sizeof(pwbuf));
            if (rc != 0) {
                ctl_err("✗ %s", rc == -ECANCELED ? "interrupted"
                                                 : "cannot read the password from the terminal");
                host_fail(h, short_reason(rc));
                ctl_ssh_close(s);
                return;
            }
            pw = pwbuf;
        }
        rc = ctl_ssh_auth_password(s, pw, err, sizeof(err));
        explicit_bzero(pwbuf, sizeof(pwbuf));
        if (rc != 0) {
            if (rc == -EACCES)
                ctl_err(strchr(h->host, ':') ? "✗ authentication failed for %s@[%s]:%d (wrong "
                                               "password?)"
                                             : "✗ authentication failed for %s@%s:%d (wrong "
                                               "password?)",
                        h->user, h->host, h->port);
            else
                ctl_err("✗ %s", err);
            if (rc == -EACCES && st->pw_src)
                ctl_err("  (the password came from %s, for every host)", st->pw_src);
            host_fail(h, short_reason(rc));
            ctl_ssh_close(s);
            return;
        }
    }
    /* 3. logged in: now, and only now, write things */
    if (is_new) {
        rc = ctl_ssh_record_hostkey(s, err, sizeof(err));
        if (rc != 0) {
            ctl_err("✗ cannot record the host key: %s", err);
            host_fail(h, "cannot record the host key");
            ctl_ssh_close(s);
            return;
        }
        ctl_out("✓ Host key of %s accepted and recorded: %s (%s) in %s", h->disp, fp, type,
                st->known_hosts);
    }
    if (by_key) {
        ctl_out("✓ SSH key already authorized on %s", h->disp);
        ctl_out("✓ Passwordless SSH access verified");
    } else {
        if (ensure_key(st, h) != 0 || install_key(st, h, s) != 0) {
            ctl_ssh_close(s);
            return;
        }
        ctl_ssh_close(s);
        /* the verification: a new session, the key alone, the host key now known */
        s = NULL;
        rc = open_session(st, h, CTL_SSH_HOSTKEY_STRICT, &s, err, sizeof(err));
        if (rc == 0)
            rc = ctl_ssh_auth_key(s, st->key_path, err, sizeof(err));
        if (rc != 0) {
            ctl_err("✗ Passwordless SSH login failed: %s", err);
            if (rc == -EACCES)
                ctl_err("  the key is in ~/.ssh/authorized_keys but sshd refused it: check the "
                        "permissions of the home directory and ~/.ssh on %s (sshd StrictModes) "
                        "and sshd's log there",
                        h->disp);
            host_fail(h, "passwordless login failed");
            ctl_ssh_close(s);
            return;
        }
        ctl_out("✓ Passwordless SSH access verified");
    }
    /* 4. the agent binary, when asked; then what the host has */
    if (st->install_agent && install_agent(st, h, s) != 0) {
        ctl_ssh_close(s);
        return;
    }
    if (detect(st, h, s) == 0) {
        if (h->agent_missing)
            ctl_out("✓ Host %s is ready (SSH only: install sai3bench-agent)", h->disp);
        else
            ctl_out("✓ Host %s is ready", h->disp);
    }
    ctl_ssh_close(s);
}

/* YAML scalars: plain when that is unambiguous, else double-quoted. */
static int yaml_plain_ok(const char *s)
{
    static const char *const words[] = {"y",    "n",     "yes",  "no", "on", "off",
                                        "true", "false", "null", "~",  NULL};
    if (!*s)
        return 0;
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '/' || *s == '.' || *s == '_'))
        return 0;
    int digits_only = 1;
    for (const char *p = s; *p; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '/' || c == '.' || c == '_' || c == '-' || c == '@' || c == '+' || c == ':';
        if (!ok)
            return 0;
        if (c == ':' && (p[1] == ' ' || p[1] == 0))
            return 0;
        if (!(c >= '0' && c <= '9') && c != '.')
            digits_only = 0;
    }
    if (digits_only)
        return 0;
    for (int i = 0; words[i]; i++)
        if (!strcasecmp(s, words[i]))
            return 0;
    return 1;
}

static void yaml_scalar(FILE *f, const char *s)
{
    if (yaml_plain_ok(s)) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void agent_address(const setup_t *st, const host_t *h, char *buf, size_t len)
{
    snprintf(buf, len, strchr(h->host, ':') ? "[%s]:%d" : "%s:%d", h->host, st->agent_port);
}

/* The distributed block, indented by `ind` spaces (the template and the Next Steps text). */
static void write_distributed(FILE *f, const setup_t *st, const char *ind)
{
    const host_t *first = NULL;
    for (size_t i = 0; i < st->nhosts; i++)
        if (st->hosts[i].ok && !first)
            first = &st->hosts[i];
    fprintf(f, "%sdistributed:\n%s  ssh:\n%s    enabled: true\n%s    user: ", ind, ind, ind, ind);
    yaml_scalar(f, first->user);
    fprintf(f, "\n%s    key_path: ", ind);
    yaml_scalar(f, st->key_path);
    fputc('\n', f);
    if (first->port != 22)
        fprintf(f, "%s    port: %d\n", ind, first->port);
    if (!st->known_hosts_default) {
        fprintf(f, "%s    known_hosts: ", ind);
        yaml_scalar(f, st->known_hosts);
        fputc('\n', f);
    }
    if (st->timeout_ms != 10000) {
        if (st->timeout_ms % 1000 == 0)
            fprintf(f, "%s    timeout: %ds\n", ind, st->timeout_ms / 1000);
        else
            fprintf(f, "%s    timeout: %dms\n", ind, st->timeout_ms);
    }
    for (size_t i = 0; i < st->nhosts; i++) {
        const host_t *h = &st->hosts[i];
        if (!h->ok || h == first)
            continue;
        if (strcmp(h->user, first->user) != 0 || h->port != first->port)
            fprintf(f,
                    "%s    # note: %s differs (user %s, port %d): distributed.ssh has one "
                    "user and port for all agents\n",
                    ind, h->disp, h->user, h->port);
    }
    if (st->install_agent)
        fprintf(f, "%s  deployment:\n%s    binary_path: ~/.local/bin/sai3bench-agent\n", ind, ind);
    fprintf(f, "%s  agents:\n", ind);
    int k = 0;
    for (size_t i = 0; i < st->nhosts; i++) {
        const host_t *h = &st->hosts[i];
        if (!h->ok)
            continue;
        char addr[400];
        agent_address(st, h, addr, sizeof(addr));
        fprintf(f, "%s    - address: ", ind);
        yaml_scalar(f, addr);
        fprintf(f, "\n%s      id: agent-%d\n", ind, ++k);
    }
    for (size_t i = 0; i < st->nhosts; i++)
        if (!st->hosts[i].ok)
            fprintf(f, "%s    # not included, setup failed: %s (%s)\n", ind, st->hosts[i].userhost,
                    st->hosts[i].reason);
}

/* Creates the template under a free name (never overwriting). 0 or -1 (reported). */
static int write_template(const setup_t *st, char *used, size_t usedlen)
{
    const char *p = st->template_path;
    const char *slash = strrchr(p, '/');
    const char *dot = strrchr(slash ? slash + 1 : p, '.');
    size_t stem = dot && dot != (slash ? slash + 1 : p) ? (size_t)(dot - p) : strlen(p);
    int fd = -1;
    for (int i = 0; i < 1000; i++) {
        if (i == 0)
            snprintf(used, usedlen, "%s", p);
        else
            snprintf(used, usedlen, "%.*s-%d%s", (int)stem, p, i, p + stem);
        fd = open(used, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0 || errno != EEXIST)
            break;
    }
    if (fd < 0) {
        ctl_err("✗ cannot write the template %s: %s", used, strerror(errno));
        return -1;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        ctl_err("✗ cannot write the template %s: %s", used, strerror(errno));
        return -1;
    }
    char date[64] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (localtime_r(&now, &tm))
        strftime(date, sizeof(date), "%Y-%m-%d %H:%M", &tm);
    fprintf(f,
            "# sai3bench workload written by `sai3bench-ctl ssh-setup` on %s.\n"
            "#\n"
            "# The agents below are the hosts set up for passwordless SSH. Check and run it with\n"
            "#   sai3bench-ctl validate --config %s\n"
            "#   sai3bench-ctl run --config %s\n"
            "#\n"
            "# CHANGE the target (and the prepare base_uri) to the storage you want to test:\n"
            "# file:// paths are local to each agent host; s3://, az:// and gs:// are shared.\n"
            "target: \"file:///tmp/sai3bench-ssh-test/\"\n"
            "duration: 30s\n"
            "concurrency: 8\n"
            "\n"
            "prepare:\n"
            "  ensure_objects:\n"
            "    - base_uri: \"file:///tmp/sai3bench-ssh-test/data/\"\n"
            "      count: 100\n"
            "      size_spec: 64KiB\n"
            "  cleanup: true\n"
            "\n"
            "workload:\n"
            "  - { op: get, path: \"data/*\", weight: 70 }\n"
            "  - { op: put, path: \"new/\", object_size: 64KiB, weight: 30 }\n"
            "\n",
            date, used, used);
    write_distributed(f, st, "");
    fprintf(f, "  shared_filesystem: false\n");
    int bad = ferror(f);
    if (fclose(f) != 0)
        bad = 1;
    if (bad) {
        ctl_err("✗ cannot write the template %s: %s", used, strerror(errno));
        return -1;
    }
    return 0;
}

static int print_next_steps(const setup_t *st, const char *tmpl)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m)
        return -1;
    write_distributed(m, st, "   ");
    fclose(m);
    ctl_out("%s", "");
    ctl_out("=== Next Steps ===");
    ctl_out("1. Update your workload YAML (a complete one is in %s):", tmpl);
    /* one ctl_out per line so the console log matches */
    char *save = NULL;
    for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
        ctl_out("%s", l);
    free(buf);
    ctl_out("%s", "");
    ctl_out("2. Run distributed test:");
    ctl_out("   sai3bench-ctl run --config %s", tmpl);
    return 0;
}

int ctl_cmd_ssh_setup(const ctl_opts_t *o, int argc, char **argv)
{
    (void)o;
    const char *hosts = NULL, *user = NULL, *key_path = DEFAULT_KEY, *pwfile = NULL;
    const char *known_hosts = NULL, *timeout = NULL, *install_arg = NULL;
    int install = 0;
    setup_t st;
    memset(&st, 0, sizeof(st));
    st.tty_fd = -1;
    st.template_path = DEFAULT_TEMPLATE;
    st.agent_port = 7761;
    int port = 22;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
#define NEED_VAL()                                                                                 \
    do {                                                                                           \
        if (app_opt_value(argc, argv, &i, &val) != 0)                                              \
            return usage_err("option '%s' needs a value", a);                                      \
    } while (0)
#define IS(name) app_opt_is(a, name)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(sshsetup_usage, stdout);
            return 0;
        } else if (IS("--hosts")) {
            NEED_VAL();
            hosts = val;
        } else if (IS("--user")) {
            NEED_VAL();
            user = val;
        } else if (IS("--key-path")) {
            NEED_VAL();
            key_path = val;
        } else if (IS("--port")) {
            NEED_VAL();
            if (parse_port(val, strlen(val), &port) != 0)
                return usage_err("--port wants a number from 1 to 65535, got '%s'", val);
        } else if (IS("--password-file")) {
            NEED_VAL();
            pwfile = val;
        } else if (IS("--known-hosts")) {
            NEED_VAL();
            known_hosts = val;
        } else if (IS("--template")) {
            NEED_VAL();
            st.template_path = val;
        } else if (IS("--timeout")) {
            NEED_VAL();
            timeout = val;
        } else if (IS("--agent-port")) {
            NEED_VAL();
            if (parse_port(val, strlen(val), &st.agent_port) != 0)
                return usage_err("--agent-port wants a number from 1 to 65535, got '%s'", val);
        } else if (!strcmp(a, "--test-only")) {
            st.test_only = 1;
        } else if (!strcmp(a, "--install-agent") || !strncmp(a, "--install-agent=", 16)) {
            install = 1;
            install_arg = a[15] == '=' ? a + 16 : NULL;
        } else if (a[0] == '-') {
            return usage_err("unknown option '%s'", a);
        } else {
            return usage_err("unexpected argument '%s'", a);
        }
#undef IS
#undef NEED_VAL
    }
    if (!hosts)
        return usage_err("%s", "--hosts is required, e.g. --hosts ubuntu@vm1,vm2");
    if (install && st.test_only)
        return usage_err("%s", "--install-agent changes the hosts: not with --test-only");
    if (!*key_path)
        return usage_err("%s", "--key-path is empty");
    if (!*st.template_path)
        return usage_err("%s", "--template is empty");
    st.timeout_ns = 10000000000ull;
    if (timeout) {
        char e[160];
        if (wl_parse_duration_ns(timeout, &st.timeout_ns, e, sizeof(e)) != 0)
            return usage_err("--timeout: %s", e);
        if (st.timeout_ns < 1000000ull || st.timeout_ns > 3600000000000ull)
            return usage_err("--timeout must be from 1ms to 1h, got '%s'", timeout);
    }
    st.timeout_ms = (int)(st.timeout_ns / 1000000ull);
    if (!user || !*user) {
        user = getenv("USER");
        if (!user || !*user) {
            struct passwd *pw = getpwuid(getuid());
            user = pw ? pw->pw_name : NULL;
        }
        if (!user)
            return usage_err("%s", "cannot tell the local user name: use --user");
    }

    char err[2048];
    int ret = 2;
    if (parse_hosts(hosts, user, port, &st, err, sizeof(err)) != 0) {
        usage_err("%s", err);
        goto out;
    }
    st.key_path = ctl_ssh_expand_path(key_path);
    st.known_hosts = ctl_ssh_expand_path(known_hosts ? known_hosts : DEFAULT_KNOWN_HOSTS);
    if (!st.key_path || !st.known_hosts) {
        usage_err("%s", "out of memory");
        goto out;
    }
    if (known_hosts) {
        char *def = ctl_ssh_expand_path(DEFAULT_KNOWN_HOSTS);
        st.known_hosts_default = def && !strcmp(def, st.known_hosts);
        free(def);
    } else {
        st.known_hosts_default = 1;
    }
    if (key_pair_state(st.key_path, &st.key_exists, err, sizeof(err)) != 0) {
        usage_err("%s", err);
        goto out;
    }
    if (install && load_agent(&st, install_arg, err, sizeof(err)) != 0) {
        usage_err("%s", err);
        goto out;
    }
    if (st.test_only && !st.key_exists) {
        usage_err("--test-only: there is no key pair at %s (run ssh-setup without --test-only "
                  "first)",
                  st.key_path);
        goto out;
    }
    if (!st.test_only) {
        if (pwfile) {
            if (read_password_file(pwfile, &st.password, err, sizeof(err)) != 0) {
                usage_err("%s", err);
                goto out;
            }
            st.pw_src = "--password-file";
        } else {
            const char *env = getenv("SAI3_SSH_PASSWORD");
            if (env && *env) {
                st.password = strdup(env);
                if (!st.password)
                    goto out;
                st.pw_src = "SAI3_SSH_PASSWORD";
            }
        }
        if (!st.password) {
            st.tty_fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
            if (st.tty_fd >= 0 && !isatty(st.tty_fd)) {
                close(st.tty_fd);
                st.tty_fd = -1;
            }
            if (st.tty_fd < 0 && !st.key_exists) {
                usage_err("%s", "no password: there is no terminal to ask on (/dev/tty), and "
                                "neither --password-file nor SAI3_SSH_PASSWORD is set");
                goto out;
            }
        }
    }

    /* Ctrl-C: ssh calls return -ECANCELED, a prompt is left with the terminal restored */
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: a blocked read of the password returns EINTR */
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    if (ctl_ssh_global_init() != 0) {
        ctl_err("sai3bench-ctl ssh-setup: cannot initialise libssh2");
        ret = 1;
        goto restore;
    }
    size_t ok = 0, nagent_missing = 0;
    for (size_t i = 0; i < st.nhosts && !cancelled; i++) {
        setup_host(&st, &st.hosts[i]);
        if (st.hosts[i].ok) {
            ok++;
            nagent_missing += (size_t)st.hosts[i].agent_missing;
        }
    }
    ctl_ssh_global_exit();
    if (cancelled) {
        ctl_err("sai3bench-ctl ssh-setup: interrupted");
        ret = 130;
        goto restore;
    }
    ctl_out("%s", "");
    ctl_out(st.test_only ? "=== Test Summary ===" : "=== Setup Summary ===");
    if (ok > 0)
        ctl_out("✓ %s: %zu/%zu%s", st.test_only ? "Ready" : "Successfully configured", ok,
                st.nhosts, nagent_missing ? " (sai3bench-agent missing on some: see above)" : "");
    if (ok < st.nhosts) {
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        if (m) {
            int first = 1;
            for (size_t i = 0; i < st.nhosts; i++) {
                if (st.hosts[i].ok)
                    continue;
                fprintf(m, "%s%s (%s)", first ? "" : ", ", st.hosts[i].disp, st.hosts[i].reason);
                first = 0;
            }
            fclose(m);
            ctl_out("✗ Failed: %zu/%zu: %s", st.nhosts - ok, st.nhosts, buf);
            free(buf);
        }
    }
    ret = ok == st.nhosts ? 0 : 1;
    if (!st.test_only && ok > 0) {
        char used[PATH_MAX + 16];
        if (write_template(&st, used, sizeof(used)) != 0) {
            ret = 1;
        } else {
            if (strcmp(used, st.template_path) != 0)
                ctl_out("✓ Config template written: %s (%s exists: not overwritten)", used,
                        st.template_path);
            else
                ctl_out("✓ Config template written: %s", used);
            print_next_steps(&st, used);
        }
    }
restore:
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
out:
    free_setup(&st);
    return ret;
}
