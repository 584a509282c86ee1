#!/usr/bin/env python3
"""The SSH client library (apps/ctl/ssh.c) against real OpenSSH servers on loopback.

usage: ssh_lib_checks.py TEST_SSH SRCROOT

Starts six sshd (test/integration/sshd.py): the main one on 127.0.0.1 (password + keys), one on
::1, one with keyboard-interactive instead of password, one with keys only, one with ed25519 and
ECDSA host keys, one with only an RSA host key; plus three scripted
peers: a closed port, a port that accepts and stays silent, a port that answers with a non-SSH
line. Then runs `TEST_SSH PHASE` (test/unit/ctl/test_ssh.c, parameters in SAI3_TEST_SSH_*), and
between phases does what only the outside can: cross-checks with OpenSSH's own ssh and
ssh-keygen, and rotates the host key. A missing sshd fails the test (never a skip).
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from itlib import check, fail, tmpdir  # noqa: E402
import sshd as fx  # noqa: E402

TEST_SSH, SRC = sys.argv[1:3]


class Silent:
    """Accepts TCP (the kernel does, from the backlog) and never says a word."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


class Garbage:
    """Answers every connection with an HTTP error line and closes."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def loop(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            try:
                c.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
            except OSError:
                pass
            c.close()

    def close(self):
        self.stop = True
        self.t.join(timeout=2)
        self.sock.close()


def closed_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def phase(name, env):
    t0 = time.time()
    p = subprocess.run([TEST_SSH, name], env=env, capture_output=True, text=True, timeout=240)
    print(f"--- test_ssh {name}: exit {p.returncode} in {time.time() - t0:.1f} s")
    sys.stdout.write(p.stdout)
    sys.stdout.write(p.stderr)
    check(p.returncode == 0, f"test_ssh {name} failed")
    return p.stdout


def run(cmd, env=None, input=None, timeout=60):
    return subprocess.run(cmd, env=env, input=input, capture_output=True, text=True,
                          timeout=timeout)


def ssh_cmd(srv, user, known_hosts, extra):
    return (["ssh", "-F", "/dev/null", "-o", f"UserKnownHostsFile={known_hosts}",
             "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
             "-o", "ConnectTimeout=10", "-p", str(srv.port)] + extra +
            [f"{user}@{srv.host}", "id -un"])


def check_key_files(priv, bits, comment):
    """OpenSSH agrees with what ctl_ssh_keygen wrote."""
    pub = open(priv + ".pub").read()
    derived = run(["ssh-keygen", "-y", "-f", priv])
    check(derived.returncode == 0, f"ssh-keygen -y -f {priv}: {derived.stderr}")
    check(derived.stdout.split()[:2] == pub.split()[:2],
          f"ssh-keygen -y gives\n{derived.stdout}but the .pub file has\n{pub}")
    for path in (priv, priv + ".pub"):
        lf = run(["ssh-keygen", "-lf", path])
        check(lf.returncode == 0, f"ssh-keygen -lf {path}: {lf.stderr}")
        f = lf.stdout.split()
        check(f[0] == str(bits) and f[1].startswith("SHA256:") and f[-1] == "(RSA)",
              f"ssh-keygen -lf {path}: {lf.stdout}")
    if comment:
        check(pub.rstrip("\n").endswith(" " + comment), pub)
    return run(["ssh-keygen", "-lf", priv + ".pub"]).stdout.split()[1]


def main():
    if os.geteuid() != 0:
        fail("ssh-lib needs root (a test user and sshd); CI runs as root")
    if not os.path.exists(fx.SSHD):
        fail(f"{fx.SSHD} is missing: apt-get install openssh-server (scripts/deps.sh)")
    for prog in ("ssh", "ssh-keygen", "sshpass"):
        if run(["sh", "-c", f"command -v {prog}"]).returncode != 0:
            fail(f"{prog} is missing (scripts/deps.sh installs it)")
    user, home, password = fx.ensure_user()
    fx.reset_user_ssh(user)
    base = tmpdir(prefix="sai3-sshlib-")
    work = os.path.join(base, "work")
    os.makedirs(work)
    known_hosts = os.path.join(work, "kh", "known_hosts")  # its directory does not exist yet

    servers = []
    silent = Silent()
    garbage = Garbage()
    try:
        main_srv = fx.Sshd(os.path.join(base, "sshd-main")).start()
        servers.append(main_srv)
        v6 = fx.Sshd(os.path.join(base, "sshd-v6"), listen="::1").start()
        servers.append(v6)
        kbd = fx.Sshd(os.path.join(base, "sshd-kbd"),
                      options={"PasswordAuthentication": "no",
                               "KbdInteractiveAuthentication": "yes"}).start()
        servers.append(kbd)
        keyonly = fx.Sshd(os.path.join(base, "sshd-keyonly"),
                          options={"PasswordAuthentication": "no"}).start()
        servers.append(keyonly)
        # LeakSanitizer (sanitized builds): libssh2 1.10 leaks one BIGNUM (56 bytes) per login
        # with an ECDSA key in OpenSSH's format (gen_publickey_from_ecdsa_openssh_priv_data
        # never frees the private exponent); libssh2 is stripped, so the suppression names its
        # exported entry point, and the stack must be unwound without frame pointers
        # (libcrypto has none) for that frame to be seen. Nothing of ours runs under it.
        supp = os.path.join(base, "lsan.supp")
        with open(supp, "w") as f:
            f.write("leak:libssh2_userauth_publickey_fromfile_ex\n")
        lsan = os.environ.get("LSAN_OPTIONS", "")
        lsan = (lsan + ":" if lsan else "") + f"suppressions={supp}:print_suppressions=0"
        mdir = os.path.join(base, "sshd-multi")
        os.makedirs(mdir)
        ecdsa_key = os.path.join(mdir, "ssh_host_ecdsa_key")
        check(run(["ssh-keygen", "-q", "-t", "ecdsa", "-b", "256", "-N", "", "-C", "",
                   "-f", ecdsa_key]).returncode == 0, "ssh-keygen ecdsa host key")
        multi = fx.Sshd(mdir)
        multi.options["HostKey"] = [multi.hostkey, ecdsa_key]
        multi.start()
        servers.append(multi)
        ecdsa_pub = open(ecdsa_key + ".pub").read().split()
        rdir = os.path.join(base, "sshd-rsahost")
        os.makedirs(rdir)
        rsa_key = os.path.join(rdir, "ssh_host_rsa_key")
        check(run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-C", "",
                   "-f", rsa_key]).returncode == 0, "ssh-keygen rsa host key")
        rsahost = fx.Sshd(rdir, options={"HostKey": rsa_key}).start()
        servers.append(rsahost)
        asan = os.environ.get("ASAN_OPTIONS", "")
        asan = (asan + ":" if asan else "") + "fast_unwind_on_malloc=0"
        env = dict(os.environ,
                   ASAN_OPTIONS=asan,
                   LSAN_OPTIONS=lsan,
                   SAI3_TEST_SSH_HOST=main_srv.host,
                   SAI3_TEST_SSH_PORT=str(main_srv.port),
                   SAI3_TEST_SSH_USER=user,
                   SAI3_TEST_SSH_PASSWORD=password,
                   SAI3_TEST_SSH_HOSTKEY_FP=main_srv.host_fingerprint(),
                   SAI3_TEST_SSH_KNOWN_HOSTS=known_hosts,
                   SAI3_TEST_SSH_DIR=work,
                   SAI3_TEST_SSH_HOST6=v6.host,
                   SAI3_TEST_SSH_PORT6=str(v6.port),
                   SAI3_TEST_SSH_KBD_PORT=str(kbd.port),
                   SAI3_TEST_SSH_KEYONLY_PORT=str(keyonly.port),
                   SAI3_TEST_SSH_CLOSED_PORT=str(closed_port()),
                   SAI3_TEST_SSH_SILENT_PORT=str(silent.port),
                   SAI3_TEST_SSH_GARBAGE_PORT=str(garbage.port),
                   SAI3_TEST_SSH_MULTI_PORT=str(multi.port),
                   SAI3_TEST_SSH_RSAHOST_PORT=str(rsahost.port),
                   SAI3_TEST_SSH_MULTI_ECDSA_LINE=(f"[{multi.host}]:{multi.port} "
                                                   f"{ecdsa_pub[0]} {ecdsa_pub[1]}"),
                   SAI3_TEST_SSH_MULTI_ECDSA_FP=run(["ssh-keygen", "-lf", ecdsa_key + ".pub"])
                   .stdout.split()[1])

        # keys
        phase("keygen", env)
        check_key_files(os.path.join(work, "keys/nested/deeper/id_rsa"), 2048,
                        "sai3bench-ctl@test")
        check_key_files(os.path.join(work, "keys/plain"), 3072, None)
        out = phase("keygen4096", env)
        secs = re.search(r"KEYGEN4096_SECONDS ([\d.]+)", out).group(1)
        check_key_files(os.path.join(work, "keys/id_rsa4096"), 4096, "big")
        phase("quote", env)

        # host keys, and OpenSSH accepts what we recorded
        phase("hostkeys", env)
        line = open(known_hosts).read()
        check(line == main_srv.known_hosts_line() + "\n",
              f"recorded {line!r}, OpenSSH form {main_srv.known_hosts_line()!r}")
        p = run(["sshpass", "-e"] + ssh_cmd(main_srv, user, known_hosts,
                                            ["-o", "PubkeyAuthentication=no",
                                             "-o", "PreferredAuthentications=password"]),
                env=dict(os.environ, SSHPASS=password))
        check(p.returncode == 0 and p.stdout.strip() == user,
              f"OpenSSH ssh with our known_hosts: exit {p.returncode}\n{p.stderr}")

        # logins and commands
        phase("auth", env)
        phase("exec", env)
        phase("keyauth", env)
        priv = os.path.join(work, "auth/id_rsa")
        p = run(ssh_cmd(main_srv, user, known_hosts,
                        ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", priv]))
        check(p.returncode == 0 and p.stdout.strip() == user,
              f"OpenSSH ssh -i (key from ctl_ssh_keygen): exit {p.returncode}\n{p.stderr}")
        with open(main_srv.log) as f:
            accepted = sorted({re.sub(r" from .* ssh2", "", re.sub(r" SHA256:\S+", "", l.strip()))
                               for l in f if "Accepted " in l})
        print("sshd accepted: " + "; ".join(accepted))
        with open(main_srv.log) as f:
            refused_algs = [l.strip() for l in f if "not in PubkeyAcceptedAlgorithms" in l]
        # Only the two unauthorized RSA keys of the keyauth phase get as far as the last
        # fallback (plain ssh-rsa); every accepted RSA login used rsa-sha2-512 at once.
        check(len(refused_algs) == 2, "RSA logins should use rsa-sha2-512 at once:\n" +
              "\n".join(refused_algs))

        phase("ipv6", env)
        phase("kbd", env)
        phase("neterr", env)
        phase("multikey", env)

        # the host key changes: refused by us, and by OpenSSH too
        main_srv.rotate_host_key()
        env["SAI3_TEST_SSH_HOSTKEY_FP"] = main_srv.host_fingerprint()
        phase("rotated", env)
        p = run(["sshpass", "-e"] + ssh_cmd(main_srv, user, known_hosts,
                                            ["-o", "PubkeyAuthentication=no"]),
                env=dict(os.environ, SSHPASS=password))
        check(p.returncode != 0 and "IDENTIFICATION HAS CHANGED" in p.stderr,
              f"OpenSSH accepted a stale known_hosts?\n{p.stderr}")
        print(f"keygen 4096 bits took {secs} s")
    finally:
        for s in servers:
            s.stop()
        silent.close()
        garbage.close()
        fx.reset_user_ssh(user)
    shutil.rmtree(base, ignore_errors=True)  # kept when a check failed, for its logs
    print("PASS ssh-lib")


main()
