#!/usr/bin/env python3
"""A real OpenSSH server for the SSH tests (test-servers.md section 6), a test user, network
namespaces as extra "hosts" (section 8 and its blackhole-route rule), and a way to find the agents
that tests started over SSH.

Standard library only; needs root (useradd, chpasswd, sshd, ip netns). Nothing here touches
/etc/ssh or the system sshd, and nothing talks to an address that is not loopback or inside a
namespace made by NetnsHosts. A process is stopped only by the PID it wrote (sshd's PidFile).
A missing /usr/sbin/sshd raises MissingServer: a hard failure, never a skip.

    TEST_USER = "sai3ssh"
    ensure_user(name=TEST_USER) -> (name, home, password)
        useradd -m -s /bin/bash NAME when missing; a fresh random password on every call
        (chpasswd); the password lives only in memory.
    reset_user_ssh(name=TEST_USER)
        removes ~NAME/.ssh and ~NAME/sai3-logs.

    Sshd(workdir, listen="127.0.0.1", port=None, netns=None, options=None)
        listen: one address or a list (all get the same port); host = the first one.
        port None: a free port on the listen address(es); 22 inside a netns.
        options: {keyword: value} overriding or adding sshd_config lines (value None drops the
            keyword, a list gives one line per item), e.g. {"PasswordAuthentication": "no",
            "KbdInteractiveAuthentication": "yes"}.
        start(): own ed25519 host key and sshd_config in workdir, `sshd -t`, then sshd (via
            `ip netns exec NS` with netns); ready when the port sends "SSH-2.0" (10 s, else
            ServerError with the log tail).
        stop(): SIGTERM to the PID in its PidFile (only that PID, checked to be this sshd), waits
            until it is gone (5 s, then SIGKILL). Idempotent. Open sessions keep running until
            their clients disconnect, as with any sshd.
        rotate_host_key(): a new host key and a restart on the same port; known_hosts entries
            for it become stale.
        host, port, log (path), config (path), hostkey (path of the private host key)
        known_hosts_line() -> "[host]:port ssh-ed25519 AAAA..." ("host ssh-ed25519 ..." on 22)
        host_fingerprint() -> "SHA256:..." (ssh-keygen -lf of the host key)
        context manager: __enter__ starts, __exit__ stops.

    NetnsHosts(n, tag=None)
        start(): the blackhole route 10.200.0.0/16 first (when it cannot be installed and none
            exists: ServerError, nothing created), then per host a netns, a veth pair with
            10.200.S.1/24 on the root side and 10.200.S.2/24 inside, lo up. S is chosen from the
            PID and skips /24s already in use.
        close(): deletes what it made (stop anything running inside first); removes the route
            only if it added it. Context manager.
        hosts (["10.200.S.2", ...]), names (netns names), root_veths
        cut(k): `ip link set down` on host k's root-side veth (packets then fall into the
            blackhole); heal(k) brings it back up.

    agent_pids(user=None, netns=None) -> [pid, ...]
        processes named sai3bench-agent (/proc/PID/comm or argv[0]'s basename), optionally only
        those of `user` (name or uid) and/or inside netns `netns`.
"""
import atexit
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time

from servers import MissingServer, ServerError

TEST_USER = "sai3ssh"
SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
LOG_TAIL = 2000
AGENT_NAME = "sai3bench-agent"

_running = []


def _need_root(what):
    if os.geteuid() != 0:
        raise ServerError(f"{what} needs root (CI runs the tests as root)")


def _run(cmd, input=None, timeout=60):
    p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise ServerError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()}")
    return p


def ensure_user(name=TEST_USER):
    """Creates NAME when missing and gives it a fresh random password; returns
    (name, home, password)."""
    _need_root("ensure_user")
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        _run(["useradd", "-m", "-s", "/bin/bash", name])
        pw = pwd.getpwnam(name)
    if not os.path.isdir(pw.pw_dir):
        os.makedirs(pw.pw_dir, mode=0o750)
        os.chown(pw.pw_dir, pw.pw_uid, pw.pw_gid)
    password = secrets.token_urlsafe(18)
    _run(["chpasswd"], input=f"{name}:{password}\n")
    return name, pw.pw_dir, password


def reset_user_ssh(name=TEST_USER):
    """Removes NAME's ~/.ssh and ~/sai3-logs so that each test starts clean."""
    home = pwd.getpwnam(name).pw_dir
    for d in (".ssh", "sai3-logs"):
        p = os.path.join(home, d)
        if os.path.islink(p) or os.path.isfile(p):
            os.unlink(p)
        else:
            shutil.rmtree(p, ignore_errors=True)


def _free_port(addrs):
    """A TCP port free on every address in addrs (bound at once, then released)."""
    for _ in range(50):
        socks = []
        try:
            port = 0
            for a in addrs:
                fam = socket.AF_INET6 if ":" in a else socket.AF_INET
                s = socket.socket(fam, socket.SOCK_STREAM)
                socks.append(s)
                s.bind((a, port))
                port = s.getsockname()[1]
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise ServerError(f"no free port on {addrs}")


def _banner(host, port, timeout=1.0):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        data = b""
        while b"\n" not in data and len(data) < 256:
            chunk = s.recv(256)
            if not chunk:
                break
            data += chunk
        return data.decode("latin-1")


class Sshd:
    def __init__(self, workdir, listen="127.0.0.1", port=None, netns=None, options=None):
        if not os.path.exists(SSHD):
            raise MissingServer(f"{SSHD} is missing: apt-get install openssh-server")
        if not os.path.exists(SSH_KEYGEN):
            raise MissingServer(f"{SSH_KEYGEN} is missing: apt-get install openssh-client")
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.listen = [listen] if isinstance(listen, str) else list(listen)
        self.host = self.listen[0]
        self.netns = netns
        self.port = port if port else (22 if netns else _free_port(self.listen))
        self.options = dict(options or {})
        self.config = os.path.join(self.workdir, "sshd_config")
        self.hostkey = os.path.join(self.workdir, "ssh_host_ed25519_key")
        self.pidfile = os.path.join(self.workdir, "sshd.pid")
        self.log = os.path.join(self.workdir, "sshd.log")
        self.pid = None

    # -- config and keys --
    def _make_hostkey(self):
        for p in (self.hostkey, self.hostkey + ".pub"):
            if os.path.exists(p):
                os.unlink(p)
        _run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", self.hostkey])

    def _write_config(self):
        opts = {
            "Port": str(self.port),
            "ListenAddress": self.listen,
            "HostKey": self.hostkey,
            "PidFile": self.pidfile,
            "PasswordAuthentication": "yes",
            "KbdInteractiveAuthentication": "no",
            "PubkeyAuthentication": "yes",
            "AuthorizedKeysFile": ".ssh/authorized_keys",
            "UsePAM": "yes",
            "PermitRootLogin": "no",
            "StrictModes": "yes",
            "Subsystem": "sftp internal-sftp",
            "LogLevel": "VERBOSE",
        }
        opts.update(self.options)
        lines = []
        for k, v in opts.items():
            if v is None:
                continue
            for item in (v if isinstance(v, (list, tuple)) else [v]):
                lines.append(f"{k} {item}")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def _prefix(self):
        return ["ip", "netns", "exec", self.netns] if self.netns else []

    def _log_tail(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-LOG_TAIL:]
        except OSError:
            return "(no log)"

    # -- lifecycle --
    def start(self):
        _need_root("Sshd")
        os.makedirs("/run/sshd", exist_ok=True)
        os.chmod("/run/sshd", 0o755)
        if not os.path.exists(self.hostkey):
            self._make_hostkey()
        self._write_config()
        t = subprocess.run([SSHD, "-t", "-f", self.config], capture_output=True, text=True)
        if t.returncode != 0:
            raise ServerError(f"sshd -t -f {self.config}: {t.stderr.strip()}")
        if os.path.exists(self.pidfile):
            os.unlink(self.pidfile)
        p = subprocess.run(self._prefix() + [SSHD, "-f", self.config, "-E", self.log],
                           capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise ServerError(f"sshd did not start (exit {p.returncode}): {p.stderr.strip()}\n"
                              f"{self._log_tail()}")
        end = time.time() + READY_TIMEOUT
        last = ""
        while time.time() < end:
            if self.pid is None:
                self.pid = self._read_pid()
            if self.pid is not None:
                try:
                    last = _banner(self.host, self.port)
                    if last.startswith("SSH-2.0"):
                        _running.append(self)
                        return self
                except OSError as e:
                    last = str(e)
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"sshd on {self.host}:{self.port} not ready after {READY_TIMEOUT} s "
                          f"({last!r}); log:\n{self._log_tail()}")

    def _read_pid(self):
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            return None
        return pid if pid > 0 else None

    def _is_ours(self, pid):
        """The PID still runs sshd with our config (not a recycled PID, not a zombie)."""
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, IndexError):
            return False
        # sshd rewrites its title to one string: "sshd: /usr/sbin/sshd -f CONFIG ... [listener]"
        return (state != "Z" and comm == "sshd" and
                (b" -f " + self.config.encode() + b" ") in cmdline.replace(b"\0", b" ") + b" ")

    def stop(self):
        pid = self.pid if self.pid is not None else self._read_pid()
        self.pid = None
        if self in _running:
            _running.remove(self)
        if pid is None or not self._is_ours(pid):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        end = time.time() + STOP_TIMEOUT
        while time.time() < end and self._is_ours(pid):
            time.sleep(0.02)
        if self._is_ours(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            end = time.time() + STOP_TIMEOUT
            while time.time() < end and self._is_ours(pid):
                time.sleep(0.02)

    def rotate_host_key(self):
        """A new host key, then a restart on the same port."""
        self.stop()
        self._make_hostkey()
        self.start()

    # -- what clients should know --
    def _pub(self):
        with open(self.hostkey + ".pub") as f:
            return f.read().split()

    def known_hosts_line(self):
        ktype, key = self._pub()[:2]
        name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return f"{name} {ktype} {key}"

    def host_fingerprint(self):
        out = _run([SSH_KEYGEN, "-lf", self.hostkey + ".pub"]).stdout.split()
        return out[1]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


class NetnsHosts:
    def __init__(self, n, tag=None):
        self.n = n
        self.tag = tag or f"s3s{os.getpid() % 100000}"
        self.hosts = []
        self.names = []
        self.root_veths = []
        self._added_route = False
        self._made_ns = []
        self._made_links = []

    @staticmethod
    def _ip(*args, check=True):
        p = subprocess.run(["ip"] + list(args), capture_output=True, text=True)
        if check and p.returncode != 0:
            raise ServerError(f"ip {' '.join(args)}: {p.stderr.strip()}")
        return p

    def _used_subnets(self):
        used = set()
        for cmd in (["-4", "addr", "show"], ["-4", "route", "show", "table", "all"]):
            for tok in self._ip(*cmd, check=False).stdout.split():
                if tok.startswith("10.200."):
                    parts = tok.split("/")[0].split(".")
                    if len(parts) == 4 and parts[2].isdigit():
                        used.add(int(parts[2]))
        return used

    def _pick_subnets(self):
        used = self._used_subnets()
        span = 240 - self.n
        start = 10 + (os.getpid() * 7) % span
        for off in range(span):
            base = 10 + (start - 10 + off) % span
            cand = list(range(base, base + self.n))
            if not used.intersection(cand):
                return cand
        raise ServerError("no free 10.200.S.0/24 subnets")

    def start(self):
        _need_root("NetnsHosts")
        p = self._ip("route", "add", "blackhole", "10.200.0.0/16", check=False)
        if p.returncode == 0:
            self._added_route = True
        elif "blackhole" not in self._ip("route", "show", "10.200.0.0/16", check=False).stdout:
            raise ServerError(f"cannot install the blackhole route 10.200.0.0/16 "
                              f"({p.stderr.strip()}): refusing to create namespaces")
        try:
            for k, s in enumerate(self._pick_subnets()):
                ns, rv, nv = f"{self.tag}h{k}", f"{self.tag}r{k}", f"{self.tag}n{k}"
                self._ip("netns", "add", ns)
                self._made_ns.append(ns)
                self._ip("link", "add", rv, "type", "veth", "peer", "name", nv)
                self._made_links.append(rv)
                self._ip("link", "set", nv, "netns", ns)
                self._ip("addr", "add", f"10.200.{s}.1/24", "dev", rv)
                self._ip("-n", ns, "addr", "add", f"10.200.{s}.2/24", "dev", nv)
                self._ip("link", "set", rv, "up")
                self._ip("-n", ns, "link", "set", nv, "up")
                self._ip("-n", ns, "link", "set", "lo", "up")
                self.names.append(ns)
                self.root_veths.append(rv)
                self.hosts.append(f"10.200.{s}.2")
        except Exception:
            self.close()
            raise
        return self

    def cut(self, k):
        self._ip("link", "set", self.root_veths[k], "down")

    def heal(self, k):
        self._ip("link", "set", self.root_veths[k], "up")

    def close(self):
        for ns in self._made_ns:
            self._ip("netns", "del", ns, check=False)  # takes its veth and the root peer along
        for rv in self._made_links:
            if os.path.exists(f"/sys/class/net/{rv}"):
                self._ip("link", "del", rv, check=False)
        self._made_ns, self._made_links = [], []
        self.hosts, self.names, self.root_veths = [], [], []
        if self._added_route:
            self._ip("route", "del", "blackhole", "10.200.0.0/16", check=False)
            self._added_route = False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False


def agent_pids(user=None, netns=None):
    """PIDs of live processes named sai3bench-agent, optionally only `user`'s (name or uid)
    and/or only those inside netns `netns`."""
    uid = None
    if user is not None:
        uid = user if isinstance(user, int) else pwd.getpwnam(user).pw_uid
    in_ns = None
    if netns is not None:
        p = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
        in_ns = {int(x) for x in p.stdout.split() if x.isdigit()}
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        pid = int(d)
        try:
            with open(f"/proc/{d}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0")[0].decode(errors="replace")
            with open(f"/proc/{d}/status") as f:
                status = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
        except (OSError, ValueError):
            continue
        if status.get("State", "").strip().startswith("Z"):
            continue
        if comm != AGENT_NAME[:15] and os.path.basename(argv0) != AGENT_NAME:
            continue
        if uid is not None and int(status["Uid"].split()[0]) != uid:
            continue
        if in_ns is not None and pid not in in_ns:
            continue
        pids.append(pid)
    return sorted(pids)


@atexit.register
def _stop_all():
    for s in list(_running):
        s.stop()
