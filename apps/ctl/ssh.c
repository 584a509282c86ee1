/* sai3bench-ctl: the SSH client (see ssh.h).
 *
 * libssh2 runs in non-blocking mode so that every step can honour a deadline and the cancel flag:
 * each libssh2 call that says EAGAIN is retried after a poll() on the socket in the directions
 * libssh2_session_block_directions() names, in slices of at most 100 ms. */
#include "ssh.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libssh2.h>

#include <mbedtls/base64.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/md.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/rsa.h>

#define SLICE_MS 100
#define OUT_CAP (1024 * 1024)
#define IO_CHUNK 32768

struct ctl_ssh {
    LIBSSH2_SESSION *sess;
    int fd;
    char *host; /* lower case, as OpenSSH compares and records names */
    int port;
    char *user;
    char *known_hosts;
    int timeout_ms;
    const volatile int *cancel;
    ctl_ssh_hostkey_policy_t policy;
    char who[300];     /* "user@host:port" for messages */
    char kh_name[300]; /* the known_hosts name: "host" (port 22) or "[host]:port" */
    char fp[64];
    char keytype[64];
    unsigned char *hostkey;
    size_t hostkey_len;
    int hostkey_mask; /* LIBSSH2_KNOWNHOST_KEY_* */
    int is_new;
    char *authlist;           /* methods the server offers (after the "none" probe) */
    const char *kbd_password; /* only during ctl_ssh_auth_password */
};

/* ---- small helpers ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int seterr(char *err, size_t errlen, int rc, const char *who, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int seterr(char *err, size_t errlen, int rc, const char *who, const char *fmt, ...)
{
    if (err && errlen) {
        int n = 0;
        if (who)
            n = snprintf(err, errlen, "ssh %s: ", who);
        if (n < 0)
            n = 0;
        if ((size_t)n < errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return rc;
}

static const char *ssh2_msg(LIBSSH2_SESSION *sess)
{
    char *m = NULL;
    if (!sess)
        return "";
    libssh2_session_last_error(sess, &m, NULL, 0);
    return m ? m : "";
}

/* The error for a failed libssh2 call after the handshake: a broken connection or an SSH-level
 * failure. */
static int ssh2_rc(LIBSSH2_SESSION *sess)
{
    switch (libssh2_session_last_errno(sess)) {
    case LIBSSH2_ERROR_SOCKET_DISCONNECT:
    case LIBSSH2_ERROR_SOCKET_SEND:
    case LIBSSH2_ERROR_SOCKET_RECV:
    case LIBSSH2_ERROR_SOCKET_TIMEOUT:
        return -ECONNRESET;
    default:
        return -EPROTO;
    }
}

static int ssh2_fail(ctl_ssh_t *s, const char *what, char *err, size_t errlen)
{
    int rc = ssh2_rc(s->sess);
    if (rc == -ECONNRESET)
        return seterr(err, errlen, rc, s->who, "%s: the connection was lost (%s)", what,
                      ssh2_msg(s->sess));
    return seterr(err, errlen, rc, s->who, "%s: %s", what, ssh2_msg(s->sess));
}

/* Waits up to one slice for fd to become ready for `events`. 1 = ready, 0 = slice passed,
 * -ETIMEDOUT / -ECANCELED, or a poll() errno. */
static int wait_fd(int fd, short events, int64_t deadline, const volatile int *cancel)
{
    if (cancel && *cancel)
        return -ECANCELED;
    int64_t left = deadline - now_ms();
    if (left <= 0)
        return -ETIMEDOUT;
    struct pollfd p = {.fd = fd, .events = events};
    int r = poll(&p, 1, left < SLICE_MS ? (int)left : SLICE_MS);
    if (r < 0 && errno != EINTR)
        return -errno;
    if (cancel && *cancel)
        return -ECANCELED;
    return r > 0 ? 1 : 0;
}

static short block_events(LIBSSH2_SESSION *sess)
{
    int dir = libssh2_session_block_directions(sess);
    short ev = 0;
    if (dir & LIBSSH2_SESSION_BLOCK_INBOUND)
        ev |= POLLIN;
    if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
        ev |= POLLOUT;
    return ev;
}

/* After a libssh2 call returned EAGAIN. 0 = try again. */
static int wait_session(ctl_ssh_t *s, int64_t deadline, const volatile int *cancel)
{
    short ev = block_events(s->sess);
    int r = wait_fd(s->fd, ev ? ev : POLLIN, deadline, cancel);
    return r < 0 ? r : 0;
}

static int step_err(ctl_ssh_t *s, int rc, const char *what, char *err, size_t errlen)
{
    if (rc == -ETIMEDOUT)
        return seterr(err, errlen, rc, s->who, "%s timed out after %d ms", what, s->timeout_ms);
    if (rc == -ECANCELED)
        return seterr(err, errlen, rc, s->who, "%s cancelled", what);
    return seterr(err, errlen, rc, s->who, "%s: %s", what, strerror(-rc));
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* mkdir -p with mode for each directory created. */
static int mkdir_p(const char *dir, mode_t mode)
{
    char *p = strdup(dir);
    if (!p)
        return -ENOMEM;
    int rc = 0;
    for (char *q = p + 1;; q++) {
        if (*q == '/' || *q == '\0') {
            char c = *q;
            *q = '\0';
            if (mkdir(p, mode) != 0 && errno != EEXIST) {
                rc = -errno;
                break;
            }
            *q = c;
            if (!c)
                break;
        }
    }
    free(p);
    if (rc == 0) {
        struct stat st;
        if (stat(dir, &st) != 0)
            rc = -errno;
        else if (!S_ISDIR(st.st_mode))
            rc = -ENOTDIR;
    }
    return rc;
}

/* The directory part of path ("." when none); malloc'd. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static char *b64(const unsigned char *src, size_t len, int strip_pad)
{
    size_t olen = 0;
    mbedtls_base64_encode(NULL, 0, &olen, src, len);
    char *dst = malloc(olen + 1);
    if (!dst)
        return NULL;
    if (mbedtls_base64_encode((unsigned char *)dst, olen + 1, &olen, src, len) != 0) {
        free(dst);
        return NULL;
    }
    dst[olen] = '\0';
    if (strip_pad)
        while (olen && dst[olen - 1] == '=')
            dst[--olen] = '\0';
    return dst;
}

/* The first SSH string of a key blob (its algorithm name). */
static int blob_type(const unsigned char *blob, size_t len, char *out, size_t outlen)
{
    if (len < 4)
        return -EINVAL;
    uint32_t n =
        (uint32_t)blob[0] << 24 | (uint32_t)blob[1] << 16 | (uint32_t)blob[2] << 8 | blob[3];
    if (n == 0 || n > len - 4 || n >= outlen)
        return -EINVAL;
    memcpy(out, blob + 4, n);
    out[n] = '\0';
    for (uint32_t i = 0; i < n; i++)
        if (!isgraph((unsigned char)out[i]))
            return -EINVAL;
    return 0;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Appends an SSH mpint (big-endian, minimal, 0x00 in front when the top bit is set). */
static int put_mpint(unsigned char *blob, size_t cap, size_t *off, const mbedtls_mpi *x)
{
    size_t n = mbedtls_mpi_size(x);
    unsigned char tmp[1100];
    if (n > sizeof(tmp))
        return -EINVAL;
    if (n && mbedtls_mpi_write_binary(x, tmp, n) != 0)
        return -EINVAL;
    size_t lead = (n && (tmp[0] & 0x80)) ? 1 : 0;
    if (*off + 4 + lead + n > cap)
        return -EINVAL;
    put_u32(blob + *off, (uint32_t)(lead + n));
    *off += 4;
    if (lead)
        blob[(*off)++] = 0;
    memcpy(blob + *off, tmp, n);
    *off += n;
    return 0;
}

/* ---- global ---- */

int ctl_ssh_global_init(void)
{
    return libssh2_init(0) == 0 ? 0 : -EPROTO;
}

void ctl_ssh_global_exit(void)
{
    libssh2_exit();
}

/* ---- known_hosts ---- */

static const struct {
    int ssh2_type; /* LIBSSH2_HOSTKEY_TYPE_* */
    int kh_mask;   /* LIBSSH2_KNOWNHOST_KEY_* */
    const char *name;
    const char *algs; /* host key algorithms that prove this key type */
} key_types[] = {
    {LIBSSH2_HOSTKEY_TYPE_ED25519, LIBSSH2_KNOWNHOST_KEY_ED25519, "ssh-ed25519", "ssh-ed25519"},
    {LIBSSH2_HOSTKEY_TYPE_ECDSA_256, LIBSSH2_KNOWNHOST_KEY_ECDSA_256, "ecdsa-sha2-nistp256",
     "ecdsa-sha2-nistp256"},
    {LIBSSH2_HOSTKEY_TYPE_ECDSA_384, LIBSSH2_KNOWNHOST_KEY_ECDSA_384, "ecdsa-sha2-nistp384",
     "ecdsa-sha2-nistp384"},
    {LIBSSH2_HOSTKEY_TYPE_ECDSA_521, LIBSSH2_KNOWNHOST_KEY_ECDSA_521, "ecdsa-sha2-nistp521",
     "ecdsa-sha2-nistp521"},
    {LIBSSH2_HOSTKEY_TYPE_RSA, LIBSSH2_KNOWNHOST_KEY_SSHRSA, "ssh-rsa",
     "rsa-sha2-512,rsa-sha2-256,ssh-rsa"},
    {LIBSSH2_HOSTKEY_TYPE_DSS, LIBSSH2_KNOWNHOST_KEY_SSHDSS, "ssh-dss", "ssh-dss"},
};
#define N_KEY_TYPES (sizeof(key_types) / sizeof(key_types[0]))

typedef struct kh_set {
    LIBSSH2_KNOWNHOSTS *kh;
    char **revoked; /* base64 keys of "@revoked" lines */
    size_t n_revoked;
} kh_set_t;

static void kh_free(kh_set_t *k)
{
    if (k->kh)
        libssh2_knownhost_free(k->kh);
    for (size_t i = 0; i < k->n_revoked; i++)
        free(k->revoked[i]);
    free(k->revoked);
    memset(k, 0, sizeof(*k));
}

/* "salt|hash ..." of a hashed name: both base64, the hash a SHA-1 HMAC (20 bytes). libssh2 1.10
 * leaks an HMAC context on every check against an entry whose hash has another length, and
 * OpenSSH ignores such entries anyway. */
static int hashed_name_ok(const char *p)
{
    const char *bar = strchr(p, '|');
    if (!bar)
        return 0;
    size_t hl = strcspn(bar + 1, " \t");
    unsigned char out[64];
    size_t olen = 0;
    if (bar == p || hl == 0 ||
        mbedtls_base64_decode(out, sizeof(out), &olen, (const unsigned char *)p,
                              (size_t)(bar - p)) != 0 ||
        mbedtls_base64_decode(out, sizeof(out), &olen, (const unsigned char *)bar + 1, hl) != 0)
        return 0;
    return olen == 20;
}

/* Reads f line by line (libssh2_knownhost_readfile gives up on the first line it cannot parse,
 * e.g. a security-key type; OpenSSH skips such lines, and so do we). "@cert-authority" lines are
 * skipped; "@revoked" keys are remembered. */
static int kh_read(LIBSSH2_SESSION *sess, FILE *f, kh_set_t *k)
{
    k->kh = libssh2_knownhost_init(sess);
    if (!k->kh)
        return -ENOMEM;
    if (!f)
        return 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p || *p == '#')
            continue;
        if (*p == '@') {
            char marker[32], type[64];
            int off = 0;
            /* "@revoked <host patterns> <type> <base64>": the key is revoked for any host */
            if (strncmp(p, "@revoked", 8) == 0 &&
                sscanf(p, "%31s %*s %63s %n", marker, type, &off) == 2 && off > 0) {
                char *key = p + off;
                size_t kl = strcspn(key, " \t");
                char *dup = strndup(key, kl);
                char **nr = realloc(k->revoked, (k->n_revoked + 1) * sizeof(*nr));
                if (!dup || !nr) {
                    free(dup);
                    if (nr)
                        k->revoked = nr;
                    rc = -ENOMEM;
                    break;
                }
                k->revoked = nr;
                k->revoked[k->n_revoked++] = dup;
            }
            continue;
        }
        if (strncmp(p, "|1|", 3) == 0 && !hashed_name_ok(p + 3))
            continue;
        (void)libssh2_knownhost_readline(k->kh, p, strlen(p), LIBSSH2_KNOWNHOST_FILE_OPENSSH);
    }
    free(line);
    return rc;
}

static int kh_load(ctl_ssh_t *s, kh_set_t *k, char *err, size_t errlen)
{
    FILE *f = fopen(s->known_hosts, "re");
    if (!f && errno != ENOENT)
        return seterr(err, errlen, -errno, s->who, "cannot read %s: %s", s->known_hosts,
                      strerror(errno));
    int rc = kh_read(s->sess, f, k);
    if (f)
        fclose(f);
    if (rc)
        return seterr(err, errlen, rc, s->who, "reading %s: %s", s->known_hosts, strerror(-rc));
    return 0;
}

/* Key types (LIBSSH2_KNOWNHOST_KEY_* as bit 1<<index in key_types) known for this host. */
static unsigned kh_known_types(ctl_ssh_t *s, kh_set_t *k)
{
    unsigned known = 0;
    for (size_t i = 0; i < N_KEY_TYPES; i++) {
        /* A dummy key never matches; MISMATCH means an entry of this type exists. */
        int r = libssh2_knownhost_check(k->kh, s->kh_name, "x", 1,
                                        LIBSSH2_KNOWNHOST_TYPE_PLAIN |
                                            LIBSSH2_KNOWNHOST_KEYENC_BASE64 | key_types[i].kh_mask,
                                        NULL);
        if (r == LIBSSH2_KNOWNHOST_CHECK_MISMATCH)
            known |= 1u << i;
    }
    return known;
}

static int alg_supported(const char **algs, int n, const char *name, size_t len)
{
    for (int i = 0; i < n; i++)
        if (strlen(algs[i]) == len && strncmp(algs[i], name, len) == 0)
            return 1;
    return 0;
}

/* Host key algorithms in OpenSSH's order, with the types known_hosts already has for this host
 * first, so that a host with several keys proves the one we know (as OpenSSH does). Only names
 * this libssh2 supports are passed: 1.10 strips unknown ones with an overlapping memcpy. */
static void set_hostkey_prefs(ctl_ssh_t *s, unsigned known)
{
    const char **algs = NULL;
    int nalgs = libssh2_session_supported_algs(s->sess, LIBSSH2_METHOD_HOSTKEY, &algs);
    if (nalgs <= 0)
        return;
    char prefs[512];
    size_t n = 0;
    prefs[0] = '\0';
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < N_KEY_TYPES; i++) {
            int is_known = (known >> i) & 1;
            if (pass == 0 ? !is_known : is_known)
                continue;
            if (pass == 1 && key_types[i].kh_mask == LIBSSH2_KNOWNHOST_KEY_SSHDSS)
                continue; /* DSA only when known_hosts pins it */
            for (const char *a = key_types[i].algs; *a;) {
                size_t len = strcspn(a, ",");
                if (alg_supported(algs, nalgs, a, len) && n + len + 2 < sizeof(prefs)) {
                    if (n)
                        prefs[n++] = ',';
                    memcpy(prefs + n, a, len);
                    n += len;
                    prefs[n] = '\0';
                }
                a += len;
                if (*a == ',')
                    a++;
            }
        }
    }
    libssh2_free(s->sess, (void *)algs);
    if (n) /* a failure keeps libssh2's defaults */
        (void)libssh2_session_method_pref(s->sess, LIBSSH2_METHOD_HOSTKEY, prefs);
}

static const char *type_name_of_mask(unsigned known)
{
    for (size_t i = 0; i < N_KEY_TYPES; i++)
        if ((known >> i) & 1)
            return key_types[i].name;
    return "?";
}

static void removal_hint(const ctl_ssh_t *s, char *buf, size_t len)
{
    snprintf(buf, len, "ssh-keygen -R '%s' -f %s", s->kh_name, s->known_hosts);
}

static int check_hostkey(ctl_ssh_t *s, kh_set_t *k, unsigned known, char *err, size_t errlen)
{
    size_t klen = 0;
    int ktype = 0;
    const char *key = libssh2_session_hostkey(s->sess, &klen, &ktype);
    if (!key || !klen)
        return seterr(err, errlen, -EPROTO, s->who, "the server sent no host key: %s",
                      ssh2_msg(s->sess));
    s->hostkey = malloc(klen);
    if (!s->hostkey)
        return -ENOMEM;
    memcpy(s->hostkey, key, klen);
    s->hostkey_len = klen;
    s->hostkey_mask = LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
    snprintf(s->keytype, sizeof(s->keytype), "unknown");
    for (size_t i = 0; i < N_KEY_TYPES; i++)
        if (key_types[i].ssh2_type == ktype) {
            s->hostkey_mask = key_types[i].kh_mask;
            snprintf(s->keytype, sizeof(s->keytype), "%s", key_types[i].name);
        }
    char bt[64];
    if (blob_type(s->hostkey, klen, bt, sizeof(bt)) == 0) /* the name the key itself carries */
        snprintf(s->keytype, sizeof(s->keytype), "%s", bt);

    const unsigned char *h =
        (const unsigned char *)libssh2_hostkey_hash(s->sess, LIBSSH2_HOSTKEY_HASH_SHA256);
    if (!h)
        return seterr(err, errlen, -EPROTO, s->who, "cannot hash the host key: %s",
                      ssh2_msg(s->sess));
    char *f = b64(h, 32, 1);
    if (!f)
        return -ENOMEM;
    snprintf(s->fp, sizeof(s->fp), "SHA256:%s", f);
    free(f);

    char *key64 = b64(s->hostkey, klen, 0);
    if (!key64)
        return -ENOMEM;
    for (size_t i = 0; i < k->n_revoked; i++)
        if (strcmp(k->revoked[i], key64) == 0) {
            free(key64);
            return seterr(err, errlen, -EKEYREJECTED, s->who,
                          "the host key %s %s is marked @revoked in %s", s->fp, s->keytype,
                          s->known_hosts);
        }
    free(key64);

    char hint[700];
    removal_hint(s, hint, sizeof(hint));
    int r = libssh2_knownhost_check(
        k->kh, s->kh_name, key, klen,
        LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | s->hostkey_mask, NULL);
    switch (r) {
    case LIBSSH2_KNOWNHOST_CHECK_MATCH:
        s->is_new = 0;
        return 0;
    case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
        return seterr(err, errlen, -EKEYREJECTED, s->who,
                      "the host key changed (now %s %s); known_hosts %s has a different key for "
                      "this host: if the host was reinstalled, remove its line (%s) and run "
                      "ssh-setup again",
                      s->fp, s->keytype, s->known_hosts, hint);
    case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
        if (known)
            return seterr(err, errlen, -EKEYREJECTED, s->who,
                          "the host now offers a %s key (%s) but known_hosts %s has a %s key for "
                          "this host: if the host was reinstalled, remove its line (%s) and run "
                          "ssh-setup again",
                          s->keytype, s->fp, s->known_hosts, type_name_of_mask(known), hint);
        if (s->policy != CTL_SSH_HOSTKEY_ACCEPT_NEW)
            return seterr(err, errlen, -ENOKEY, s->who,
                          "unknown host key %s %s: %s has no entry for %s; run `sai3bench-ctl "
                          "ssh-setup` to record it (or append the output of `ssh-keyscan -p %d "
                          "%s` after checking the fingerprint)",
                          s->fp, s->keytype, s->known_hosts, s->kh_name, s->port, s->host);
        s->is_new = 1;
        return 0;
    default:
        return seterr(err, errlen, -EPROTO, s->who, "known_hosts check failed: %s",
                      ssh2_msg(s->sess));
    }
}

/* ---- connect ---- */

static int tcp_connect(ctl_ssh_t *s, int64_t deadline, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV; /* not AI_ADDRCONFIG: it hides ::1 without global IPv6 */
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", s->port);
    int g = getaddrinfo(s->host, portstr, &hints, &res);
    if (g != 0)
        return seterr(err, errlen, -EHOSTUNREACH, s->who, "cannot resolve %s: %s", s->host,
                      g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
    int last = -EHOSTUNREACH;
    char addr[INET6_ADDRSTRLEN + 8] = "";
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (getnameinfo(ai->ai_addr, ai->ai_addrlen, addr, sizeof(addr), NULL, 0, NI_NUMERICHOST) !=
            0)
            snprintf(addr, sizeof(addr), "?");
        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last = -errno;
            continue;
        }
        int rc = 0;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            if (errno != EINPROGRESS) {
                rc = -errno;
            } else {
                for (;;) {
                    int w = wait_fd(fd, POLLOUT, deadline, s->cancel);
                    if (w < 0) {
                        close(fd);
                        freeaddrinfo(res);
                        return w == -ETIMEDOUT
                                   ? seterr(err, errlen, w, s->who,
                                            "connect to %s port %d timed out after %d ms", addr,
                                            s->port, s->timeout_ms)
                                   : step_err(s, w, "connect", err, errlen);
                    }
                    if (w > 0)
                        break;
                }
                int soerr = 0;
                socklen_t sl = sizeof(soerr);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
                    soerr = errno;
                rc = -soerr;
            }
        }
        if (rc == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            s->fd = fd;
            freeaddrinfo(res);
            return 0;
        }
        close(fd);
        last = rc;
    }
    freeaddrinfo(res);
    return seterr(err, errlen, last, s->who, "connect to %s port %d: %s", addr, s->port,
                  strerror(-last));
}

char *ctl_ssh_expand_path(const char *p)
{
    char *out = NULL;
    if (p[0] == '~' && (p[1] == '/' || p[1] == 0)) {
        const char *home = getenv("HOME");
        struct passwd pw, *pwp = NULL;
        char buf[4096];
        if (!home || !*home)
            home = getpwuid_r(getuid(), &pw, buf, sizeof(buf), &pwp) == 0 && pwp ? pwp->pw_dir
                                                                                  : "/";
        if (asprintf(&out, "%s%s", home, p + 1) < 0)
            return NULL;
    } else if (p[0] != '/') {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof(cwd)))
            return strdup(p);
        if (asprintf(&out, "%s/%s", cwd, p[0] == '.' && p[1] == '/' ? p + 2 : p) < 0)
            return NULL;
    } else {
        out = strdup(p);
    }
    return out;
}

int ctl_ssh_connect(const ctl_ssh_opts_t *o, ctl_ssh_t **out, char *err, size_t errlen)
{
    if (out)
        *out = NULL;
    if (!o || !out || !o->host || !*o->host || !o->user || !*o->user || o->port < 0 ||
        o->port > 65535)
        return seterr(err, errlen, -EINVAL, NULL, "ssh: host and user are required");
    ctl_ssh_t *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->fd = -1;
    s->port = o->port ? o->port : 22;
    s->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 10000;
    s->cancel = o->cancel;
    s->policy = o->hostkey_policy;
    s->host = strdup(o->host);
    s->user = strdup(o->user);
    s->known_hosts = o->known_hosts ? strdup(o->known_hosts) : ctl_ssh_expand_path("~/.ssh/known_hosts");
    if (!s->host || !s->user || !s->known_hosts) {
        ctl_ssh_close(s);
        return -ENOMEM;
    }
    for (char *p = s->host; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    int v6 = strchr(s->host, ':') != NULL;
    snprintf(s->who, sizeof(s->who), v6 ? "%s@[%s]:%d" : "%s@%s:%d", s->user, s->host, s->port);
    if (s->port == 22)
        snprintf(s->kh_name, sizeof(s->kh_name), "%s", s->host);
    else
        snprintf(s->kh_name, sizeof(s->kh_name), "[%s]:%d", s->host, s->port);

    int rc;
    kh_set_t k = {0};
    int64_t deadline = now_ms() + s->timeout_ms;
    if (s->cancel && *s->cancel) {
        rc = step_err(s, -ECANCELED, "connect", err, errlen);
        goto fail;
    }
    if ((rc = tcp_connect(s, deadline, err, errlen)) != 0)
        goto fail;

    s->sess = libssh2_session_init_ex(NULL, NULL, NULL, s);
    if (!s->sess) {
        rc = -ENOMEM;
        goto fail;
    }
    libssh2_session_set_blocking(s->sess, 0);
    if ((rc = kh_load(s, &k, err, errlen)) != 0)
        goto fail;
    unsigned known = kh_known_types(s, &k);
    set_hostkey_prefs(s, known);

    deadline = now_ms() + s->timeout_ms;
    for (;;) {
        int r = libssh2_session_handshake(s->sess, s->fd);
        if (r == 0)
            break;
        if (r == LIBSSH2_ERROR_KEX_FAILURE) {
            rc = seterr(err, errlen, -EPROTO, s->who,
                        "SSH handshake failed: %s (no algorithms in common; a server with only "
                        "an RSA host key cannot be verified by libssh2 1.10, which knows only "
                        "ssh-rsa signatures, disabled by OpenSSH 8.8: give it an ed25519 or "
                        "ECDSA host key)",
                        ssh2_msg(s->sess));
            goto fail;
        }
        if (r != LIBSSH2_ERROR_EAGAIN) {
            rc =
                seterr(err, errlen, -EPROTO, s->who, "SSH handshake failed: %s", ssh2_msg(s->sess));
            goto fail;
        }
        if ((rc = wait_session(s, deadline, s->cancel)) != 0) {
            step_err(s, rc, "SSH handshake", err, errlen);
            goto fail;
        }
    }
    if ((rc = check_hostkey(s, &k, known, err, errlen)) != 0)
        goto fail;
    kh_free(&k);
    *out = s;
    return 0;
fail:
    kh_free(&k);
    ctl_ssh_close(s);
    return rc;
}

const char *ctl_ssh_hostkey_fingerprint(const ctl_ssh_t *s)
{
    return s->fp;
}

const char *ctl_ssh_hostkey_type(const ctl_ssh_t *s)
{
    return s->keytype;
}

int ctl_ssh_hostkey_is_new(const ctl_ssh_t *s)
{
    return s->is_new;
}

int ctl_ssh_record_hostkey(ctl_ssh_t *s, char *err, size_t errlen)
{
    if (!s->is_new)
        return 0;
    char *dir = dir_of(s->known_hosts);
    if (!dir)
        return -ENOMEM;
    int rc = mkdir_p(dir, 0700);
    free(dir);
    if (rc)
        return seterr(err, errlen, rc, s->who, "cannot create the directory of %s: %s",
                      s->known_hosts, strerror(-rc));
    int fd = open(s->known_hosts, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return seterr(err, errlen, -errno, s->who, "cannot open %s: %s", s->known_hosts,
                      strerror(errno));
    /* Another ctl may record the same host at the same time: lock, then look again. */
    int64_t deadline = now_ms() + s->timeout_ms;
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK && errno != EINTR)
            break; /* no locking on this filesystem: go on without */
        if (now_ms() > deadline) {
            close(fd);
            return seterr(err, errlen, -ETIMEDOUT, s->who, "%s stays locked by another process",
                          s->known_hosts);
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kh_set_t k = {0};
    int dfd = dup(fd);
    FILE *f = dfd >= 0 ? fdopen(dfd, "r") : NULL;
    if (!f) {
        rc = -errno;
        if (dfd >= 0)
            close(dfd);
        close(fd);
        return seterr(err, errlen, rc, s->who, "cannot read %s: %s", s->known_hosts, strerror(-rc));
    }
    rc = kh_read(s->sess, f, &k);
    fclose(f);
    int r = rc ? LIBSSH2_KNOWNHOST_CHECK_FAILURE
               : libssh2_knownhost_check(k.kh, s->kh_name, (const char *)s->hostkey, s->hostkey_len,
                                         LIBSSH2_KNOWNHOST_TYPE_PLAIN |
                                             LIBSSH2_KNOWNHOST_KEYENC_RAW | s->hostkey_mask,
                                         NULL);
    kh_free(&k);
    if (rc) {
        close(fd);
        return seterr(err, errlen, rc, s->who, "reading %s: %s", s->known_hosts, strerror(-rc));
    }
    if (r == LIBSSH2_KNOWNHOST_CHECK_MATCH) {
        close(fd);
        s->is_new = 0;
        return 0;
    }
    if (r == LIBSSH2_KNOWNHOST_CHECK_MISMATCH) {
        close(fd);
        return seterr(err, errlen, -EKEYREJECTED, s->who,
                      "%s got a different key for this host meanwhile; not recording %s",
                      s->known_hosts, s->fp);
    }
    char *key64 = b64(s->hostkey, s->hostkey_len, 0);
    if (!key64) {
        close(fd);
        return -ENOMEM;
    }
    /* A file whose last line lacks its newline would glue our line to it. */
    const char *lead = "";
    struct stat st;
    char last = '\n';
    if (fstat(fd, &st) == 0 && st.st_size > 0 && pread(fd, &last, 1, st.st_size - 1) == 1 &&
        last != '\n')
        lead = "\n";
    size_t n = strlen(lead) + strlen(s->kh_name) + strlen(s->keytype) + strlen(key64) + 4;
    char *line = malloc(n);
    if (!line) {
        free(key64);
        close(fd);
        return -ENOMEM;
    }
    int len = snprintf(line, n, "%s%s %s %s\n", lead, s->kh_name, s->keytype, key64);
    free(key64);
    rc = write_all(fd, line, (size_t)len);
    free(line);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc)
        return seterr(err, errlen, rc, s->who, "cannot write %s: %s", s->known_hosts,
                      strerror(-rc));
    s->is_new = 0;
    return 0;
}

/* ---- authentication ---- */

/* The methods the server offers, asked once ("none" request). 1 when "none" already
 * authenticated us, 0 with s->authlist set, or an error. */
static int auth_methods(ctl_ssh_t *s, int64_t deadline, char *err, size_t errlen)
{
    if (s->authlist)
        return 0;
    if (libssh2_userauth_authenticated(s->sess))
        return 1;
    for (;;) {
        char *l = libssh2_userauth_list(s->sess, s->user, (unsigned)strlen(s->user));
        if (l) {
            s->authlist = strdup(l);
            return s->authlist ? 0 : -ENOMEM;
        }
        if (libssh2_userauth_authenticated(s->sess))
            return 1;
        if (libssh2_session_last_errno(s->sess) != LIBSSH2_ERROR_EAGAIN)
            return ssh2_fail(s, "authentication failed", err, errlen);
        int rc = wait_session(s, deadline, s->cancel);
        if (rc)
            return step_err(s, rc, "authentication", err, errlen);
    }
}

static int offers(const ctl_ssh_t *s, const char *method)
{
    size_t ml = strlen(method);
    for (const char *p = s->authlist; p && *p;) {
        size_t n = strcspn(p, ",");
        if (n == ml && strncmp(p, method, ml) == 0)
            return 1;
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

static void kbd_callback(const char *name, int name_len, const char *instruction,
                         int instruction_len, int num_prompts,
                         const LIBSSH2_USERAUTH_KBDINT_PROMPT *prompts,
                         LIBSSH2_USERAUTH_KBDINT_RESPONSE *responses, void **abstract)
{
    ctl_ssh_t *s = *abstract;
    for (int i = 0; i < num_prompts; i++) {
        /* libssh2 frees responses with its allocator, which is malloc/free here */
        responses[i].text = s->kbd_password ? strdup(s->kbd_password) : NULL;
        responses[i].length = responses[i].text ? (unsigned)strlen(responses[i].text) : 0;
    }
}

int ctl_ssh_auth_password(ctl_ssh_t *s, const char *password, char *err, size_t errlen)
{
    if (!password)
        password = "";
    int64_t deadline = now_ms() + s->timeout_ms;
    int rc = auth_methods(s, deadline, err, errlen);
    if (rc == 1)
        return 0;
    if (rc < 0)
        return rc;
    int kbd = 0;
    if (!offers(s, "password")) {
        if (!offers(s, "keyboard-interactive"))
            return seterr(err, errlen, -EACCES, s->who,
                          "the server does not accept passwords (it offers: %s)", s->authlist);
        kbd = 1;
    }
    s->kbd_password = password;
    for (;;) {
        int r = kbd ? libssh2_userauth_keyboard_interactive_ex(
                          s->sess, s->user, (unsigned)strlen(s->user), kbd_callback)
                    : libssh2_userauth_password_ex(s->sess, s->user, (unsigned)strlen(s->user),
                                                   password, (unsigned)strlen(password), NULL);
        if (r == 0)
            break;
        if (r == LIBSSH2_ERROR_AUTHENTICATION_FAILED) {
            s->kbd_password = NULL;
            return seterr(err, errlen, -EACCES, s->who, "authentication failed (password refused)");
        }
        if (r == LIBSSH2_ERROR_PASSWORD_EXPIRED) {
            s->kbd_password = NULL;
            return seterr(err, errlen, -EACCES, s->who,
                          "authentication failed (the password has expired; change it first)");
        }
        if (r != LIBSSH2_ERROR_EAGAIN) {
            s->kbd_password = NULL;
            return ssh2_fail(s, "password authentication failed", err, errlen);
        }
        if ((rc = wait_session(s, deadline, s->cancel)) != 0) {
            s->kbd_password = NULL;
            return step_err(s, rc, "password authentication", err, errlen);
        }
    }
    s->kbd_password = NULL;
    return 0;
}

/* RSA user keys. libssh2 1.10 signs RSA authentication only with "ssh-rsa" (SHA-1), which
 * OpenSSH refuses since 8.8. It takes the algorithm name it sends from the first string of the
 * public key blob we pass, so we pass the RSA blob under the name "rsa-sha2-512" (OpenSSH parses
 * such a blob as the RSA key it is and matches it against authorized_keys as usual) and sign with
 * SHA-512 ourselves (mbedtls). "rsa-sha2-256" and then plain "ssh-rsa" follow for servers that
 * refuse it. Other key types go to libssh2 unchanged. */
typedef struct rsa_signer {
    mbedtls_pk_context pk;
    mbedtls_entropy_context ent;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_md_type_t md;
} rsa_signer_t;

static int get_u32(const unsigned char **p, size_t *left, uint32_t *v)
{
    if (*left < 4)
        return -1;
    const unsigned char *q = *p;
    *v = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
    *p += 4;
    *left -= 4;
    return 0;
}

static int get_str(const unsigned char **p, size_t *left, const unsigned char **str, size_t *len)
{
    uint32_t n;
    if (get_u32(p, left, &n) != 0 || n > *left)
        return -1;
    *str = *p;
    *len = n;
    *p += n;
    *left -= n;
    return 0;
}

/* An unencrypted RSA key in OpenSSH's own format ("openssh-key-v1") into pk. 1 = loaded,
 * 0 = not RSA, -EINVAL = malformed or encrypted (*why says which). */
static int load_openssh_rsa(const char *pem, mbedtls_pk_context *pk, const char **why)
{
    static const char begin[] = "-----BEGIN OPENSSH PRIVATE KEY-----";
    static const char end[] = "-----END OPENSSH PRIVATE KEY-----";
    const char *b = strstr(pem, begin), *e = b ? strstr(b, end) : NULL;
    *why = "not a valid OpenSSH private key";
    if (!b || !e)
        return -EINVAL;
    b += sizeof(begin) - 1;
    size_t n64 = 0;
    char *b64buf = malloc((size_t)(e - b) + 1);
    if (!b64buf)
        return -ENOMEM;
    for (const char *c = b; c < e; c++)
        if (!isspace((unsigned char)*c))
            b64buf[n64++] = *c;
    size_t rawlen = 0;
    mbedtls_base64_decode(NULL, 0, &rawlen, (unsigned char *)b64buf, n64);
    unsigned char *raw = malloc(rawlen + 1);
    int rc = -EINVAL;
    if (!raw || mbedtls_base64_decode(raw, rawlen + 1, &rawlen, (unsigned char *)b64buf, n64)) {
        rc = raw ? -EINVAL : -ENOMEM;
        goto out;
    }
    const unsigned char *p = raw, *cipher, *kdf, *kdfopt, *pub, *priv, *type;
    size_t left = rawlen, lcipher, lkdf, lkdfopt, lpub, lpriv, ltype;
    uint32_t nkeys, c1, c2;
    if (left < 15 || memcmp(p, "openssh-key-v1", 15) != 0)
        goto out;
    p += 15;
    left -= 15;
    if (get_str(&p, &left, &cipher, &lcipher) || get_str(&p, &left, &kdf, &lkdf) ||
        get_str(&p, &left, &kdfopt, &lkdfopt) || get_u32(&p, &left, &nkeys) || nkeys < 1 ||
        get_str(&p, &left, &pub, &lpub))
        goto out;
    for (uint32_t i = 1; i < nkeys; i++)
        if (get_str(&p, &left, &pub, &lpub))
            goto out;
    if (get_str(&p, &left, &priv, &lpriv))
        goto out;
    if (lcipher != 4 || memcmp(cipher, "none", 4) != 0) {
        *why = "the key is protected by a passphrase (not supported: use an unencrypted key)";
        goto out;
    }
    p = priv;
    left = lpriv;
    if (get_u32(&p, &left, &c1) || get_u32(&p, &left, &c2) || c1 != c2 ||
        get_str(&p, &left, &type, &ltype))
        goto out;
    if (ltype != 7 || memcmp(type, "ssh-rsa", 7) != 0) {
        rc = 0;
        goto out;
    }
    const unsigned char *mp[6]; /* n e d iqmp p q */
    size_t ml[6];
    for (int i = 0; i < 6; i++)
        if (get_str(&p, &left, &mp[i], &ml[i]))
            goto out;
    if (mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA)) != 0 ||
        mbedtls_rsa_import_raw(mbedtls_pk_rsa(*pk), mp[0], ml[0], mp[4], ml[4], mp[5], ml[5], mp[2],
                               ml[2], mp[1], ml[1]) != 0 ||
        mbedtls_rsa_complete(mbedtls_pk_rsa(*pk)) != 0 ||
        mbedtls_rsa_check_privkey(mbedtls_pk_rsa(*pk)) != 0)
        goto out;
    rc = 1;
out:
    if (raw) {
        mbedtls_platform_zeroize(raw, rawlen);
        free(raw);
    }
    mbedtls_platform_zeroize(b64buf, n64);
    free(b64buf);
    return rc;
}

/* Loads an RSA private key (PEM PKCS#1 / PKCS#8, or OpenSSH format) into pk: 1 = loaded,
 * 0 = another key type or a format for libssh2 to try, <0 = unusable (*why). */
static int load_rsa_key(const char *data, size_t len, mbedtls_pk_context *pk, const char **why)
{
    *why = NULL;
    if (strstr(data, "-----BEGIN OPENSSH PRIVATE KEY-----"))
        return load_openssh_rsa(data, pk, why);
    int r = mbedtls_pk_parse_key(pk, (const unsigned char *)data, len + 1, NULL, 0);
    if (r == MBEDTLS_ERR_PK_PASSWORD_REQUIRED || r == MBEDTLS_ERR_PK_PASSWORD_MISMATCH) {
        *why = "the key is protected by a passphrase (not supported: use an unencrypted key)";
        return -EINVAL;
    }
    if (r != 0)
        return 0;
    if (mbedtls_pk_get_type(pk) != MBEDTLS_PK_RSA) {
        mbedtls_pk_free(pk);
        mbedtls_pk_init(pk);
        return 0;
    }
    return 1;
}

static int rsa_sign_cb(LIBSSH2_SESSION *session, unsigned char **sig, size_t *sig_len,
                       const unsigned char *data, size_t data_len, void **abstract)
{
    rsa_signer_t *r = *abstract;
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(r->md);
    unsigned char hash[64];
    if (!md || mbedtls_md(md, data, data_len, hash) != 0)
        return -1;
    /* freed by libssh2 with its allocator: malloc/free here */
    unsigned char *out = malloc(MBEDTLS_MPI_MAX_SIZE);
    size_t olen = 0;
    if (!out)
        return -1;
    if (mbedtls_pk_sign(&r->pk, r->md, hash, mbedtls_md_get_size(md), out, &olen,
                        mbedtls_ctr_drbg_random, &r->drbg) != 0) {
        free(out);
        return -1;
    }
    *sig = out;
    *sig_len = olen;
    return 0;
}

/* string name, mpint e, mpint n */
static int rsa_pub_blob(mbedtls_pk_context *pk, const char *name, unsigned char *blob, size_t cap,
                        size_t *len)
{
    mbedtls_mpi N, E;
    mbedtls_mpi_init(&N);
    mbedtls_mpi_init(&E);
    size_t nl = strlen(name), off = 4 + nl;
    int rc = -EINVAL;
    if (off <= cap && mbedtls_rsa_export(mbedtls_pk_rsa(*pk), &N, NULL, NULL, NULL, &E) == 0) {
        put_u32(blob, (uint32_t)nl);
        memcpy(blob + 4, name, nl);
        rc = put_mpint(blob, cap, &off, &E);
        if (!rc)
            rc = put_mpint(blob, cap, &off, &N);
        *len = off;
    }
    mbedtls_mpi_free(&N);
    mbedtls_mpi_free(&E);
    return rc;
}

static int auth_key_rsa(ctl_ssh_t *s, rsa_signer_t *r, const char *path, int64_t deadline,
                        char *err, size_t errlen)
{
    static const struct {
        const char *name;
        mbedtls_md_type_t md;
    } algs[] = {
        {"rsa-sha2-512", MBEDTLS_MD_SHA512},
        {"rsa-sha2-256", MBEDTLS_MD_SHA256},
        {"ssh-rsa", MBEDTLS_MD_SHA1},
    };
    static const char pers[] = "sai3bench-ctl ssh auth";
    if (mbedtls_ctr_drbg_seed(&r->drbg, mbedtls_entropy_func, &r->ent, (const unsigned char *)pers,
                              sizeof(pers) - 1) != 0)
        return seterr(err, errlen, -EPROTO, s->who, "no random numbers for signing");
    unsigned char blob[2200];
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        size_t blen = 0;
        if (rsa_pub_blob(&r->pk, algs[i].name, blob, sizeof(blob), &blen) != 0)
            return seterr(err, errlen, -EINVAL, s->who, "private key %s: RSA key too large", path);
        r->md = algs[i].md;
        void *abstract = r;
        for (;;) {
            int rc =
                libssh2_userauth_publickey(s->sess, s->user, blob, blen, rsa_sign_cb, &abstract);
            if (rc == 0)
                return 0;
            if (rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED ||
                rc == LIBSSH2_ERROR_AUTHENTICATION_FAILED)
                break; /* refused with this algorithm: try the next one */
            if (rc != LIBSSH2_ERROR_EAGAIN)
                return ssh2_fail(s, "key authentication failed", err, errlen);
            if ((rc = wait_session(s, deadline, s->cancel)) != 0)
                return step_err(s, rc, "key authentication", err, errlen);
        }
    }
    return seterr(err, errlen, -EACCES, s->who, "authentication failed (key %s refused)", path);
}

static int auth_key_libssh2(ctl_ssh_t *s, const char *path, int64_t deadline, char *err,
                            size_t errlen)
{
    size_t n = strlen(path) + 5;
    char *pub = malloc(n);
    if (!pub)
        return -ENOMEM;
    snprintf(pub, n, "%s.pub", path);
    if (access(pub, R_OK) != 0) {
        free(pub);
        pub = NULL; /* libssh2 derives it from the private key */
    }
    int rc = 0;
    for (;;) {
        /* "" rather than NULL: libssh2 1.10 calls strlen() on the passphrase */
        int r = libssh2_userauth_publickey_fromfile_ex(s->sess, s->user, (unsigned)strlen(s->user),
                                                       pub, path, "");
        if (r == 0)
            break;
        if (r == LIBSSH2_ERROR_AUTHENTICATION_FAILED || r == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED) {
            rc = seterr(err, errlen, -EACCES, s->who, "authentication failed (key %s refused)",
                        path);
            break;
        }
        if (r == LIBSSH2_ERROR_FILE || r == LIBSSH2_ERROR_METHOD_NOT_SUPPORTED) {
            rc = seterr(err, errlen, -EINVAL, s->who,
                        "cannot use private key %s (not a key without passphrase in a "
                        "supported format?): %s",
                        path, ssh2_msg(s->sess));
            break;
        }
        if (r != LIBSSH2_ERROR_EAGAIN) {
            rc = ssh2_fail(s, "key authentication failed", err, errlen);
            break;
        }
        if ((rc = wait_session(s, deadline, s->cancel)) != 0) {
            step_err(s, rc, "key authentication", err, errlen);
            break;
        }
    }
    free(pub);
    return rc;
}

int ctl_ssh_auth_key(ctl_ssh_t *s, const char *privkey_path, char *err, size_t errlen)
{
    if (!privkey_path || !*privkey_path)
        return seterr(err, errlen, -EINVAL, s->who, "no private key given");
    FILE *f = fopen(privkey_path, "re");
    if (!f)
        return seterr(err, errlen, -errno, s->who, "cannot read private key %s: %s", privkey_path,
                      strerror(errno));
    size_t cap = 1 << 16;
    char *data = malloc(cap + 1);
    size_t len = data ? fread(data, 1, cap, f) : 0;
    int toobig = data && len == cap && fgetc(f) != EOF;
    fclose(f);
    if (!data)
        return -ENOMEM;
    data[len] = '\0';
    int rc;
    if (toobig) {
        rc = seterr(err, errlen, -EINVAL, s->who, "private key %s: file too large", privkey_path);
        goto out;
    }
    int64_t deadline = now_ms() + s->timeout_ms;
    rc = auth_methods(s, deadline, err, errlen);
    if (rc != 0) {
        rc = rc < 0 ? rc : 0;
        goto out;
    }
    if (!offers(s, "publickey")) {
        rc = seterr(err, errlen, -EACCES, s->who, "the server does not accept keys (it offers: %s)",
                    s->authlist);
        goto out;
    }
    rsa_signer_t *r = calloc(1, sizeof(*r));
    if (!r) {
        rc = -ENOMEM;
        goto out;
    }
    mbedtls_pk_init(&r->pk);
    mbedtls_entropy_init(&r->ent);
    mbedtls_ctr_drbg_init(&r->drbg);
    const char *why = NULL;
    int kind = load_rsa_key(data, len, &r->pk, &why);
    if (kind < 0)
        rc = seterr(err, errlen, kind, s->who, "cannot use private key %s: %s", privkey_path,
                    why ? why : strerror(-kind));
    else if (kind == 1)
        rc = auth_key_rsa(s, r, privkey_path, deadline, err, errlen);
    else
        rc = auth_key_libssh2(s, privkey_path, deadline, err, errlen);
    mbedtls_pk_free(&r->pk);
    mbedtls_ctr_drbg_free(&r->drbg);
    mbedtls_entropy_free(&r->ent);
    free(r);
out:
    mbedtls_platform_zeroize(data, cap + 1);
    free(data);
    return rc;
}

/* ---- exec ---- */

typedef struct obuf {
    char *p;
    size_t len, cap;
} obuf_t;

static int obuf_add(obuf_t *b, const char *src, size_t n)
{
    if (b->len >= OUT_CAP)
        return 0;
    if (n > OUT_CAP - b->len)
        n = OUT_CAP - b->len;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->len + n + 1)
            nc *= 2;
        if (nc > OUT_CAP + 1)
            nc = OUT_CAP + 1;
        char *np = realloc(b->p, nc);
        if (!np)
            return -ENOMEM;
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static char *obuf_take(obuf_t *b)
{
    if (!b->p)
        return strdup("");
    char *p = b->p;
    b->p = NULL;
    return p;
}

/* Gives up on a channel (timeout, cancel, error, or done). The server answers our CLOSE only
 * once the command's output is closed, which may be never: so we send the CLOSE (bounded), free
 * the channel when the answer is already there, and otherwise leave it to
 * libssh2_session_free (ctl_ssh_close), which no longer waits once the socket is shut down. */
static void channel_abandon(ctl_ssh_t *s, LIBSSH2_CHANNEL *ch)
{
    int64_t deadline = now_ms() + (s->timeout_ms < 200 ? s->timeout_ms : 200);
    for (;;) {
        int r = libssh2_channel_close(ch);
        if (r != LIBSSH2_ERROR_EAGAIN)
            break;
        if (!(libssh2_session_block_directions(s->sess) & LIBSSH2_SESSION_BLOCK_OUTBOUND))
            return; /* CLOSE sent; the answer may take as long as the command */
        if (wait_session(s, deadline, NULL) != 0)
            return;
    }
    while (libssh2_channel_free(ch) == LIBSSH2_ERROR_EAGAIN)
        if (wait_session(s, deadline, NULL) != 0)
            return;
}

int ctl_ssh_exec(ctl_ssh_t *s, const char *cmd, const void *in, size_t inlen, char **out,
                 char **errout, int *exit_status, char *err, size_t errlen)
{
    if (out)
        *out = NULL;
    if (errout)
        *errout = NULL;
    if (exit_status)
        *exit_status = -1;
    if (!cmd)
        return seterr(err, errlen, -EINVAL, s->who, "no command");
    if (!in)
        inlen = 0;
    int64_t deadline = now_ms() + s->timeout_ms;
    LIBSSH2_CHANNEL *ch = NULL;
    obuf_t ob = {0}, eb = {0};
    int rc = 0;
    char *buf = NULL;

    while (!(ch = libssh2_channel_open_session(s->sess))) {
        if (libssh2_session_last_errno(s->sess) != LIBSSH2_ERROR_EAGAIN)
            return ssh2_fail(s, "cannot open a channel", err, errlen);
        if ((rc = wait_session(s, deadline, s->cancel)) != 0)
            return step_err(s, rc, "opening a channel", err, errlen);
    }
    for (;;) {
        int r = libssh2_channel_exec(ch, cmd);
        if (r == 0)
            break;
        if (r != LIBSSH2_ERROR_EAGAIN) {
            rc = ssh2_fail(s, "the server refused to run the command", err, errlen);
            goto fail;
        }
        if ((rc = wait_session(s, deadline, s->cancel)) != 0) {
            step_err(s, rc, "starting the command", err, errlen);
            goto fail;
        }
    }

    buf = malloc(IO_CHUNK);
    if (!buf) {
        rc = -ENOMEM;
        goto fail;
    }
    size_t inoff = 0;
    int eof_sent = 0, out_eof = 0, err_eof = 0;
    /* Write stdin and read both streams in one loop: a command that echoes its input (cat)
     * would otherwise fill our receive window while we still write, and both sides stall. */
    while (!(eof_sent && out_eof && err_eof)) {
        int progress = 0;
        short ev = 0;
        if (inoff < inlen) {
            size_t n = inlen - inoff < IO_CHUNK ? inlen - inoff : IO_CHUNK;
            ssize_t w = libssh2_channel_write(ch, (const char *)in + inoff, n);
            if (w > 0) {
                inoff += (size_t)w;
                progress = 1;
            } else if (w == LIBSSH2_ERROR_EAGAIN) {
                ev |= block_events(s->sess);
            } else {
                inoff = inlen; /* the command stopped reading: like a broken pipe */
                progress = 1;
            }
        } else if (!eof_sent) {
            int r = libssh2_channel_send_eof(ch);
            if (r == LIBSSH2_ERROR_EAGAIN) {
                ev |= block_events(s->sess);
            } else {
                eof_sent = 1; /* an error here means the channel is already closing */
                progress = 1;
            }
        }
        for (int stream = 0; stream < 2; stream++) {
            int *eof = stream ? &err_eof : &out_eof;
            if (*eof)
                continue;
            ssize_t r =
                libssh2_channel_read_ex(ch, stream ? SSH_EXTENDED_DATA_STDERR : 0, buf, IO_CHUNK);
            if (r > 0) {
                obuf_t *b = stream ? &eb : &ob;
                if ((stream ? errout : out) && (rc = obuf_add(b, buf, (size_t)r)) != 0)
                    goto fail;
                progress = 1;
            } else if (r == 0) {
                if (libssh2_channel_eof(ch)) {
                    *eof = 1;
                    progress = 1;
                }
            } else if (r == LIBSSH2_ERROR_EAGAIN) {
                ev |= block_events(s->sess);
            } else {
                rc = ssh2_fail(s, "reading the command's output", err, errlen);
                goto fail;
            }
        }
        if (progress) {
            if (s->cancel && *s->cancel) {
                rc = step_err(s, -ECANCELED, "the command", err, errlen);
                goto fail;
            }
            if (now_ms() >= deadline) {
                rc = seterr(err, errlen, -ETIMEDOUT, s->who,
                            "the command did not finish within %d ms: %s", s->timeout_ms, cmd);
                goto fail;
            }
            continue;
        }
        int w = wait_fd(s->fd, ev ? ev : POLLIN, deadline, s->cancel);
        if (w < 0) {
            rc = w == -ETIMEDOUT
                     ? seterr(err, errlen, w, s->who, "the command did not finish within %d ms: %s",
                              s->timeout_ms, cmd)
                     : step_err(s, w, "the command", err, errlen);
            goto fail;
        }
    }
    /* The exit status usually follows the EOF: wait for the server's CLOSE. */
    for (;;) {
        int r = libssh2_channel_close(ch);
        if (r == 0)
            break;
        if (r != LIBSSH2_ERROR_EAGAIN)
            break;
        if ((rc = wait_session(s, deadline, s->cancel)) != 0) {
            step_err(s, rc, "closing the channel", err, errlen);
            goto fail;
        }
    }
    for (;;) {
        int r = libssh2_channel_wait_closed(ch);
        if (r == 0 || r != LIBSSH2_ERROR_EAGAIN)
            break;
        if ((rc = wait_session(s, deadline, s->cancel)) != 0) {
            step_err(s, rc, "closing the channel", err, errlen);
            goto fail;
        }
    }
    char *signame = NULL;
    size_t siglen = 0;
    int status = libssh2_channel_get_exit_status(ch);
    if (libssh2_channel_get_exit_signal(ch, &signame, &siglen, NULL, NULL, NULL, NULL) == 0 &&
        signame) {
        status = -1;
        libssh2_free(s->sess, signame);
    }
    if (exit_status)
        *exit_status = status;
    channel_abandon(s, ch);
    free(buf);
    if (out && !(*out = obuf_take(&ob))) {
        free(eb.p);
        return -ENOMEM;
    }
    if (errout && !(*errout = obuf_take(&eb))) {
        if (out) {
            free(*out);
            *out = NULL;
        }
        return -ENOMEM;
    }
    free(ob.p);
    free(eb.p);
    return 0;
fail:
    free(buf);
    free(ob.p);
    free(eb.p);
    if (ch)
        channel_abandon(s, ch);
    if (exit_status)
        *exit_status = -1;
    return rc;
}

void ctl_ssh_set_timeout(ctl_ssh_t *s, int timeout_ms)
{
    if (s && timeout_ms > 0)
        s->timeout_ms = timeout_ms;
}

void ctl_ssh_close(ctl_ssh_t *s)
{
    if (!s)
        return;
    if (s->sess) {
        int64_t deadline = now_ms() + (s->timeout_ms < 2000 ? s->timeout_ms : 2000);
        if (s->fd >= 0)
            while (libssh2_session_disconnect(s->sess, "bye") == LIBSSH2_ERROR_EAGAIN)
                if (wait_session(s, deadline, NULL) != 0)
                    break;
        /* With the socket shut down, whatever libssh2 still wants to send fails at once
         * instead of waiting, so the free below cannot hang. */
        if (s->fd >= 0)
            shutdown(s->fd, SHUT_RDWR);
        int tries = 0;
        while (libssh2_session_free(s->sess) == LIBSSH2_ERROR_EAGAIN && ++tries < 20) {
            struct pollfd p = {.fd = s->fd, .events = POLLIN | POLLOUT};
            poll(&p, 1, 10);
        }
    }
    if (s->fd >= 0)
        close(s->fd);
    free(s->host);
    free(s->user);
    free(s->known_hosts);
    free(s->hostkey);
    free(s->authlist);
    free(s);
}

/* ---- key pairs ---- */

/* Writes data to a fresh temporary file next to final; *tmp_out gets its name. */
static int write_temp(const char *final, const void *data, size_t len, mode_t mode, char **tmp_out)
{
    size_t n = strlen(final) + 16;
    char *tmp = malloc(n);
    if (!tmp)
        return -ENOMEM;
    snprintf(tmp, n, "%s.tmp.XXXXXX", final);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        int e = -errno;
        free(tmp);
        return e;
    }
    int rc = fchmod(fd, mode) != 0 ? -errno : 0;
    if (!rc)
        rc = write_all(fd, data, len);
    if (!rc && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && !rc)
        rc = -errno;
    if (rc) {
        unlink(tmp);
        free(tmp);
        return rc;
    }
    *tmp_out = tmp;
    return 0;
}

/* rename() that refuses to replace an existing file. */
static int rename_noreplace(const char *from, const char *to)
{
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
        return -errno;
    /* filesystems without RENAME_NOREPLACE: link() fails on an existing name too */
    if (link(from, to) != 0)
        return -errno;
    unlink(from);
    return 0;
}

int ctl_ssh_keygen(const char *priv_path, int bits, const char *comment, char *err, size_t errlen)
{
    if (!priv_path || !*priv_path)
        return seterr(err, errlen, -EINVAL, NULL, "keygen: no key path");
    if (bits < 2048 || bits > 8192 || bits % 2)
        return seterr(err, errlen, -EINVAL, NULL,
                      "keygen: %d bits: an RSA key has 2048..8192 bits (an even number)", bits);
    if (comment && strpbrk(comment, "\r\n"))
        return seterr(err, errlen, -EINVAL, NULL, "keygen: the comment must be one line");
    size_t pn = strlen(priv_path) + 5;
    char *pub_path = malloc(pn);
    if (!pub_path)
        return -ENOMEM;
    snprintf(pub_path, pn, "%s.pub", priv_path);
    struct stat st;
    if (lstat(priv_path, &st) == 0 || lstat(pub_path, &st) == 0) {
        int rc = seterr(err, errlen, -EEXIST, NULL, "keygen: %s already exists; not overwriting",
                        lstat(priv_path, &st) == 0 ? priv_path : pub_path);
        free(pub_path);
        return rc;
    }
    char *dir = dir_of(priv_path);
    int rc = dir ? mkdir_p(dir, 0700) : -ENOMEM;
    if (rc) {
        seterr(err, errlen, rc, NULL, "keygen: cannot create directory %s: %s",
               dir ? dir : priv_path, strerror(-rc));
        free(dir);
        free(pub_path);
        return rc;
    }
    free(dir);

    mbedtls_entropy_context ent;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_pk_context pk;
    mbedtls_mpi N, E;
    mbedtls_entropy_init(&ent);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_pk_init(&pk);
    mbedtls_mpi_init(&N);
    mbedtls_mpi_init(&E);
    size_t pem_cap = 16384, blob_cap = 2200;
    unsigned char *pem = calloc(1, pem_cap);
    unsigned char *blob = malloc(blob_cap);
    char *publine = NULL, *key64 = NULL, *tmp_priv = NULL, *tmp_pub = NULL;
    static const char pers[] = "sai3bench-ctl ssh keygen";
    int mr;
    if (!pem || !blob) {
        rc = -ENOMEM;
        goto out;
    }
    if ((mr = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &ent, (const unsigned char *)pers,
                                    sizeof(pers) - 1)) != 0 ||
        (mr = mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA))) != 0 ||
        (mr = mbedtls_rsa_gen_key(mbedtls_pk_rsa(pk), mbedtls_ctr_drbg_random, &drbg,
                                  (unsigned)bits, 65537)) != 0 ||
        (mr = mbedtls_pk_write_key_pem(&pk, pem, pem_cap)) != 0 ||
        (mr = mbedtls_rsa_export(mbedtls_pk_rsa(pk), &N, NULL, NULL, NULL, &E)) != 0) {
        rc = seterr(err, errlen, mr == MBEDTLS_ERR_RSA_KEY_GEN_FAILED ? -EIO : -EPROTO, NULL,
                    "keygen: mbedtls error -0x%04x", (unsigned)-mr);
        goto out;
    }
    /* public blob: string "ssh-rsa", mpint e, mpint n */
    size_t off = 0;
    put_u32(blob, 7);
    memcpy(blob + 4, "ssh-rsa", 7);
    off = 11;
    if ((rc = put_mpint(blob, blob_cap, &off, &E)) != 0 ||
        (rc = put_mpint(blob, blob_cap, &off, &N)) != 0) {
        seterr(err, errlen, rc, NULL, "keygen: cannot encode the public key");
        goto out;
    }
    key64 = b64(blob, off, 0);
    if (!key64) {
        rc = -ENOMEM;
        goto out;
    }
    size_t ln = strlen(key64) + (comment ? strlen(comment) : 0) + 16;
    publine = malloc(ln);
    if (!publine) {
        rc = -ENOMEM;
        goto out;
    }
    int plen = snprintf(publine, ln, "ssh-rsa %s%s%s\n", key64, comment && *comment ? " " : "",
                        comment && *comment ? comment : "");

    if ((rc = write_temp(priv_path, pem, strlen((char *)pem), 0600, &tmp_priv)) != 0 ||
        (rc = write_temp(pub_path, publine, (size_t)plen, 0644, &tmp_pub)) != 0) {
        seterr(err, errlen, rc, NULL, "keygen: cannot write next to %s: %s", priv_path,
               strerror(-rc));
        goto out;
    }
    if ((rc = rename_noreplace(tmp_priv, priv_path)) != 0) {
        seterr(err, errlen, rc, NULL, "keygen: cannot create %s: %s", priv_path, strerror(-rc));
        goto out;
    }
    if ((rc = rename_noreplace(tmp_pub, pub_path)) != 0) {
        unlink(priv_path); /* ours: just placed; a pair without its .pub is useless here */
        seterr(err, errlen, rc, NULL, "keygen: cannot create %s: %s", pub_path, strerror(-rc));
        goto out;
    }
out:
    if (tmp_priv) {
        unlink(tmp_priv); /* fails harmlessly once renamed */
        free(tmp_priv);
    }
    if (tmp_pub) {
        unlink(tmp_pub);
        free(tmp_pub);
    }
    if (pem) {
        mbedtls_platform_zeroize(pem, pem_cap);
        free(pem);
    }
    free(blob);
    free(key64);
    free(publine);
    free(pub_path);
    mbedtls_mpi_free(&N);
    mbedtls_mpi_free(&E);
    mbedtls_pk_free(&pk);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&ent);
    return rc;
}

int ctl_ssh_read_pubkey(const char *priv_path, char **line, char *err, size_t errlen)
{
    if (line)
        *line = NULL;
    if (!priv_path || !line)
        return -EINVAL;
    size_t pn = strlen(priv_path) + 5;
    char *path = malloc(pn);
    if (!path)
        return -ENOMEM;
    snprintf(path, pn, "%s.pub", priv_path);
    FILE *f = fopen(path, "re");
    if (!f) {
        int e = -errno;
        seterr(err, errlen, e, NULL, "cannot read public key %s: %s", path, strerror(-e));
        free(path);
        return e;
    }
    char *l = NULL;
    size_t cap = 0;
    ssize_t n = getline(&l, &cap, f);
    fclose(f);
    int rc = 0;
    if (n < 0) {
        rc = seterr(err, errlen, -EINVAL, NULL, "public key %s is empty", path);
        goto out;
    }
    while (n > 0 && (l[n - 1] == '\n' || l[n - 1] == '\r' || l[n - 1] == ' ' || l[n - 1] == '\t'))
        l[--n] = '\0';
    if (n > 65536) {
        rc = seterr(err, errlen, -EINVAL, NULL, "public key %s: line too long", path);
        goto out;
    }
    /* "<type> <base64> [comment]", the blob's own type equal to <type> */
    size_t tl = strspn(l, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@.-_");
    size_t sp = strspn(l + tl, " \t");
    size_t kl =
        strspn(l + tl + sp, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=");
    char c = l[tl + sp + kl];
    if (!tl || !sp || kl < 16 || (c && c != ' ' && c != '\t')) {
        rc = seterr(err, errlen, -EINVAL, NULL,
                    "%s does not look like an OpenSSH public key (\"<type> <base64> [comment]\")",
                    path);
        goto out;
    }
    size_t blen = 0;
    const unsigned char *k64 = (const unsigned char *)l + tl + sp;
    unsigned char *blob = NULL;
    char type[64];
    if (mbedtls_base64_decode(NULL, 0, &blen, k64, kl) == MBEDTLS_ERR_BASE64_INVALID_CHARACTER ||
        !(blob = malloc(blen ? blen : 1)) ||
        mbedtls_base64_decode(blob, blen, &blen, k64, kl) != 0 ||
        blob_type(blob, blen, type, sizeof(type)) != 0 || strlen(type) != tl ||
        strncmp(type, l, tl) != 0) {
        free(blob);
        rc = seterr(err, errlen, -EINVAL, NULL, "%s: the key data is not a valid %.*s key", path,
                    (int)tl, l);
        goto out;
    }
    free(blob);
    *line = l;
    l = NULL;
out:
    free(l);
    free(path);
    return rc;
}

char *ctl_sh_quote(const char *s)
{
    if (!s)
        s = "";
    size_t n = 3;
    for (const char *p = s; *p; p++)
        n += *p == '\'' ? 4 : 1;
    char *q = malloc(n);
    if (!q)
        return NULL;
    char *o = q;
    *o++ = '\'';
    for (const char *p = s; *p; p++) {
        if (*p == '\'') {
            memcpy(o, "'\\''", 4);
            o += 4;
        } else {
            *o++ = *p;
        }
    }
    *o++ = '\'';
    *o = '\0';
    return q;
}
