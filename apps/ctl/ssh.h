/* sai3bench-ctl: a small blocking SSH client over libssh2 (ssh-setup and agents started over SSH).
 *
 * Threading: a ctl_ssh_t belongs to one thread at a time; different sessions may be used from
 * different threads at once (ctl_ssh_global_init must have run first, on the main thread).
 * Every call blocks, but never longer than the session's timeout, and returns early with
 * -ECANCELED once *cancel (when given) becomes non-zero: sockets are non-blocking underneath and
 * waited on with poll() in slices of at most 100 ms.
 *
 * Errors: negative errno-style codes; err (when not NULL) gets a one-line message for a user
 * that names the host ("ssh user@host:port: ..."). Nothing here prints.
 *   -ETIMEDOUT     connect/handshake/auth/command exceeded the timeout
 *   -ECONNREFUSED  and other connect errnos as returned by connect()
 *   -EHOSTUNREACH  resolution failed (message has gai_strerror)
 *   -EACCES        authentication refused (wrong password or key not accepted)
 *   -EKEYREJECTED  the host key differs from the one known_hosts holds for this host
 *   -ENOKEY        the host is not in known_hosts and recording unknown hosts was not asked for
 *   -ECANCELED     *cancel became non-zero
 *   -ECONNRESET    the connection broke after the handshake (server gone, network cut)
 *   -EPROTO        any other SSH-level failure (message has libssh2's text)
 *   -ENOMEM
 */
#ifndef CTL_SSH_H
#define CTL_SSH_H

#include <stddef.h>

typedef struct ctl_ssh ctl_ssh_t;

/* How unknown host keys are handled. Changed keys are always refused. */
typedef enum ctl_ssh_hostkey_policy {
    CTL_SSH_HOSTKEY_STRICT = 0, /* unknown host: -ENOKEY */
    CTL_SSH_HOSTKEY_ACCEPT_NEW, /* unknown host: accepted; ctl_ssh_hostkey_is_new() says so and
                                   ctl_ssh_record_hostkey() appends it to known_hosts */
} ctl_ssh_hostkey_policy_t;

typedef struct ctl_ssh_opts {
    const char *host;        /* name or address (IPv6 without brackets) */
    int port;                /* 0 = 22 */
    const char *user;        /* required */
    const char *known_hosts; /* path; NULL = "$HOME/.ssh/known_hosts" */
    ctl_ssh_hostkey_policy_t hostkey_policy;
    int timeout_ms;          /* per step (connect, handshake, auth, each command); 0 = 10000 */
    const volatile int *cancel; /* NULL = never cancelled */
} ctl_ssh_opts_t;

/* Once per process, before any thread uses SSH (libssh2_init). 0 or -EPROTO. */
int ctl_ssh_global_init(void);
void ctl_ssh_global_exit(void);

/* TCP connect (every address getaddrinfo returns, in order), SSH handshake and the host key
 * check against known_hosts (OpenSSH format, hashed entries too; "[host]:port" entries when the
 * port is not 22). On success *out is an unauthenticated session. */
int ctl_ssh_connect(const ctl_ssh_opts_t *o, ctl_ssh_t **out, char *err, size_t errlen);

/* The server's host key as OpenSSH shows it: "SHA256:<base64 without padding>", and its type
 * ("ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa", ...). Valid until ctl_ssh_close. */
const char *ctl_ssh_hostkey_fingerprint(const ctl_ssh_t *s);
const char *ctl_ssh_hostkey_type(const ctl_ssh_t *s);
/* 1 when the host was not in known_hosts (only possible with CTL_SSH_HOSTKEY_ACCEPT_NEW). */
int ctl_ssh_hostkey_is_new(const ctl_ssh_t *s);
/* Appends the host's key to known_hosts as one OpenSSH line ("[host]:port" when port != 22),
 * creating the file (0600) and its directory (0700) when missing; never rewrites other lines.
 * A no-op returning 0 when the host was already known. */
int ctl_ssh_record_hostkey(ctl_ssh_t *s, char *err, size_t errlen);

/* Authentication. Password: "password" method (keyboard-interactive as a fallback that answers
 * every prompt with the password). Key: private key file in PEM (PKCS#1 RSA, SEC1 EC) or OpenSSH
 * format without passphrase; the public key is taken from "<path>.pub" when it exists.
 * RSA keys sign with rsa-sha2-512 (then rsa-sha2-256, then ssh-rsa), as OpenSSH >= 8.8 needs.
 * 0, -EACCES (refused), -ENOENT (no such file), -EINVAL (not a usable key, e.g. one with a
 * passphrase), or another error. */
int ctl_ssh_auth_password(ctl_ssh_t *s, const char *password, char *err, size_t errlen);
int ctl_ssh_auth_key(ctl_ssh_t *s, const char *privkey_path, char *err, size_t errlen);

/* Runs cmd with the remote user's shell (exec channel, no pty). in/inlen (NULL/0 = none) is
 * written to its stdin, then EOF. Stdout and stderr are collected (each capped at 1 MiB; the rest
 * is read and dropped) into malloc'd NUL-terminated strings the caller frees (out/errout may be
 * NULL to drop them). *exit_status gets the command's exit status, or -1 when it died by a signal
 * or none was reported. Returns 0 when the command ran (whatever its status), else an error
 * (-ETIMEDOUT when it did not finish within the session's timeout). */
int ctl_ssh_exec(ctl_ssh_t *s, const char *cmd, const void *in, size_t inlen, char **out,
                 char **errout, int *exit_status, char *err, size_t errlen);

/* Changes the per-step timeout of an open session (ms, > 0). */
void ctl_ssh_set_timeout(ctl_ssh_t *s, int timeout_ms);

/* Disconnects (best effort, bounded by the timeout) and frees. NULL is a no-op. */
void ctl_ssh_close(ctl_ssh_t *s);

/* Key pairs. ctl_ssh_keygen writes an RSA key of `bits` (2048..8192) made with mbedtls: the
 * private key as PKCS#1 PEM ("-----BEGIN RSA PRIVATE KEY-----", mode 0600) at priv_path and the
 * OpenSSH public line "ssh-rsa <base64> <comment>\n" (mode 0644) at "<priv_path>.pub". Both files
 * are written to temporary names and renamed into place, the public one last; an existing file
 * is never overwritten (-EEXIST). The directory is created (0700) when missing. */
int ctl_ssh_keygen(const char *priv_path, int bits, const char *comment, char *err,
                   size_t errlen);
/* The public key line of "<priv_path>.pub" (one line, without the trailing newline; malloc'd),
 * checked to look like "<type> <base64> [comment]". 0, -ENOENT, -EINVAL (err explains). */
int ctl_ssh_read_pubkey(const char *priv_path, char **line, char *err, size_t errlen);

/* A local path as the SSH tools take it: "~" and "~/x" under $HOME (else the passwd entry's
 * home), a relative path under the current directory, others as they are. malloc'd; NULL on
 * ENOMEM. Thread-safe. */
char *ctl_ssh_expand_path(const char *p);

/* Single-quotes s for a POSIX shell ('it'\''s'). malloc'd; NULL on ENOMEM. */
char *ctl_sh_quote(const char *s);

#endif
