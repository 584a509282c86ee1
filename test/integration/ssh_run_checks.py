"""Runs with `distributed.ssh.enabled`: sai3bench-ctl starts the agents over SSH (real OpenSSH
sshd, test/integration/sshd.py), runs the workload, and stops exactly the agents it started.

usage: ssh_run_checks.py CHECK CTL AGENT SRCROOT

The agents run as the test user sai3run on the "hosts": loopback (one sshd, agents on two
ports) or two network namespaces with their own sshd at 10.200.S.2:22 (blackhole route first,
see sshd.NetnsHosts). The controller gets its own HOME with an ed25519 key (ssh-keygen) that the
user's authorized_keys holds, and a known_hosts with the servers' keys. Checks:
  loopback   two agents: start, run, stop; no agent process of the user left; logs in
             ~/sai3-logs/agent-<id>.log; the defaults ~/.ssh/sai3bench_id_rsa and ~/.ssh/known_hosts
  tls-token  `tls: {enabled: true}` with SAI3_AUTH_TOKEN: each agent makes its certificate, the
             controller pins the fingerprint its log shows; the token reaches the agents in a
             0600 file that is removed afterwards and is printed nowhere
  fail       an agent that cannot listen (port taken), an unknown host key, a missing binary,
             a key the host does not accept: exit 1, clear messages, nothing left running
  interrupt  Ctrl-C during execute: exit 130, every agent stopped
  kill-ctl   SIGKILL the controller: the agents exit by themselves (--exit-on-disconnect)
  netns      two hosts in network namespaces: a full run, then an interrupted one; no agent
             left in either namespace
"""
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itlib import check, fail, read_tsv, results_dir, tmpdir, write  # noqa: E402
import sshd as sshfix  # noqa: E402

CHECK, CTL, AGENT, SRC = sys.argv[1:5]
USER = "sai3run"  # not the ssh-setup tests' user: their resets must not meet these runs
SAN_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def free_ports(n, host="127.0.0.1"):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind((host, 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class Env:
    """The controller's HOME (key pair, known_hosts), the test user, a data dir it can write."""

    def __init__(self, base):
        self.base = base
        self.home = os.path.join(base, "home")
        self.ssh_dir = os.path.join(self.home, ".ssh")
        os.makedirs(self.ssh_dir, mode=0o700)
        self.key = os.path.join(self.ssh_dir, "sai3bench_id_rsa")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sai3-test",
                        "-f", self.key], check=True)
        self.known = os.path.join(self.ssh_dir, "known_hosts")
        self.user, self.user_home, _ = sshfix.ensure_user(USER)
        sshfix.reset_user_ssh(USER)
        for d in (".sai3bench",):
            subprocess.run(["rm", "-rf", os.path.join(self.user_home, d)], check=True)
        pw = pwd.getpwnam(USER)
        udir = os.path.join(self.user_home, ".ssh")
        os.makedirs(udir, mode=0o700)
        with open(self.key + ".pub") as f:
            pub = f.read()
        ak = os.path.join(udir, "authorized_keys")
        with open(ak, "w") as f:
            f.write(pub)
        os.chmod(ak, 0o600)
        for p in (udir, ak):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        self.data = os.path.join(base, "data")
        os.makedirs(self.data)
        os.chmod(base, 0o755)
        os.chmod(self.data, 0o777)
        self.env = dict(os.environ)
        self.env["HOME"] = self.home
        self.env.pop("SAI3_AUTH_TOKEN", None)

    def trust(self, *servers):
        with open(self.known, "a") as f:
            for s in servers:
                f.write(s.known_hosts_line() + "\n")

    def log(self, agent_id):
        p = os.path.join(self.user_home, "sai3-logs", f"agent-{agent_id}.log")
        if not os.path.exists(p):
            return ""
        with open(p, errors="replace") as f:
            return f.read()


def config(env, agents, ssh_port, extra_ssh="", extra_dist="", extra_deploy="", duration="3s",
           name="ssh-run.yaml"):
    alist = "\n".join(f"    - {{address: '{addr}', id: {aid}}}" for aid, addr in agents)
    data = env.data
    return write(os.path.join(env.base, name), f"""target: "file://{data}/"
duration: {duration}
concurrency: 4
prepare:
  cleanup: true
  ensure_objects:
    - {{base_uri: "file://{data}/data/", count: 100, min_size: 4KiB, max_size: 4KiB}}
workload:
  - {{op: get, path: 'data/', weight: 3}}
  - {{op: put, path: 'new/', weight: 1, object_size: 4KiB}}
distributed:
  start_delay: 1s
  ssh:
    enabled: true
    user: {USER}
    port: {ssh_port}
    timeout: 15s
{extra_ssh}  deployment:
    binary_path: '{AGENT}'
    agent_args: [--cores, '1']
{extra_deploy}  agents:
{alist}
{extra_dist}""")


def run(env, cfg, expect, extra_env=None, timeout=240):
    e = dict(env.env)
    e.update(extra_env or {})
    p = subprocess.run([CTL, "run", "--config", cfg], cwd=env.base, env=e, capture_output=True,
                       text=True, timeout=timeout)
    if p.returncode != expect:
        print(p.stdout[-6000:])
        print(p.stderr[-6000:])
        fail(f"run {cfg}: exit {p.returncode}, expected {expect}")
    return p


def no_agents_left(user=USER, netns=None, within=10.0, what=""):
    deadline = time.time() + within
    while True:
        left = sshfix.agent_pids(user=user, netns=netns)
        if not left:
            return
        if time.time() > deadline:
            fail(f"agent processes left{what}: {left}")
        time.sleep(0.2)


def check_logs(env, ids):
    for aid in ids:
        log = env.log(aid)
        check("sai3bench-agent listening" in log, f"~{USER}/sai3-logs/agent-{aid}.log has no "
              f"banner: {log[-1500:]!r}")
        check(f"starts agent {aid}" in log, f"agent-{aid}.log lacks the start marker")
        for m in SAN_MARKERS:
            check(m not in log, f"agent-{aid}.log reports a sanitizer error: {log[-3000:]}")


def started_pids(out, ids):
    pids = {}
    for aid in ids:
        m = re.search(rf"^  {re.escape(aid)}: started on \S+ \(pid (\d+)\), listening on port "
                      r"(\d+)", out, re.M)
        check(m, f"no 'started' line for {aid} in:\n{out[-3000:]}")
        pids[aid] = int(m.group(1))
    return pids


def show_start_time(out):
    """Prints the controller's 'All N agents started over SSH in X s' line (a figure for notes)."""
    m = re.search(r"^All \d+ agents? started over SSH in [\d.]+ s$", out, re.M)
    check(m, f"no 'All ... started over SSH in' line:\n{out[-3000:]}")
    print(m.group(0))


def check_stopped(out, ids):
    check(re.search(r"^Stopping the \d+ agents? started over SSH$", out, re.M),
          f"no 'Stopping' line:\n{out[-3000:]}")
    for aid in ids:
        check(re.search(rf"^  {re.escape(aid)} on \S+ \(pid \d+\): (stopped|had exited already)$",
                        out, re.M), f"{aid} not reported stopped:\n{out[-3000:]}")


def all_ops(d):
    hdr, rows = read_tsv(os.path.join(d, "results.tsv"))
    bi, ci = hdr.index("bucket_idx"), hdr.index("count")
    return {r[bi]: int(r[ci]) for r in rows}


# ------------------------------------------------------------------------------------------- #

def check_loopback(base):
    env = Env(base)
    with sshfix.Sshd(os.path.join(base, "sshd")) as srv:
        env.trust(srv)
        p1, p2 = free_ports(2)
        agents = [("a1", f"127.0.0.1:{p1}"), ("a2", f"127.0.0.1:{p2}")]
        cfg = config(env, agents, srv.port)  # key_path and known_hosts: the defaults under HOME
        p = run(env, cfg, 0)
        out = p.stdout
        check("Starting 2 agents over SSH" in out, f"no start line:\n{out[-3000:]}")
        for aid, addr in agents:
            check(f"{aid}: '{AGENT}' --listen 0.0.0.0:{addr.split(':')[1]} "
                  "--exit-on-disconnect --cores 1" in out or
                  f"{aid}: {AGENT} --listen 0.0.0.0:{addr.split(':')[1]} "
                  "--exit-on-disconnect --cores 1" in out,
                  f"command line of {aid} not shown:\n{out[:3000]}")
        pids = started_pids(out, ["a1", "a2"])
        show_start_time(out)
        check_stopped(out, ["a1", "a2"])
        check(out.rstrip().splitlines()[-1].startswith("Results saved to: "),
              "last line is not 'Results saved to:'")
        d = results_dir(p, base)
        ops = all_ops(d)
        check(ops.get("98", 0) > 0 and ops.get("99", 0) > 0, f"no GET/PUT in results.tsv: {ops}")
        for aid in ("a1", "a2"):
            check(os.path.exists(os.path.join(d, "agents", aid, "results.tsv")),
                  f"agents/{aid}/results.tsv missing")
        with open(os.path.join(d, "console_log.txt")) as f:
            check("started over SSH" in f.read(), "console_log.txt lacks the SSH lines")
        no_agents_left(what=" after a completed run")
        live = sshfix.agent_pids()  # zombies (exited, not yet reaped) do not count
        for aid, pid in pids.items():
            check(pid not in live, f"agent {aid} (pid {pid}) still runs")
        check_logs(env, ["a1", "a2"])
        # the agents really ran as the SSH user: their results dirs are theirs
        check(any(pwd.getpwuid(os.stat(os.path.join("/tmp", n)).st_uid).pw_name == USER
                  for n in os.listdir("/tmp") if n.startswith("sai3-") and n.endswith("-a1")),
              "no /tmp/sai3-*-a1 results directory owned by the SSH user")
        # validate shows the commands without running anything
        v = subprocess.run([CTL, "validate", "--config", cfg], cwd=base, env=env.env,
                           capture_output=True, text=True)
        check(v.returncode == 0, f"validate failed: {v.stdout}{v.stderr}")
        check(f"agents started over SSH: user {USER}" in v.stdout and
              "agent commands (over SSH):" in v.stdout, f"validate output:\n{v.stdout}")
        no_agents_left(what=" after validate")


def check_tls_token(base):
    env = Env(base)
    token = "tok-" + os.urandom(8).hex()
    with sshfix.Sshd(os.path.join(base, "sshd")) as srv:
        env.trust(srv)
        p1, p2 = free_ports(2)
        agents = [("t1", f"127.0.0.1:{p1}"), ("t2", f"127.0.0.1:{p2}")]
        cfg = config(env, agents, srv.port, extra_dist="  tls: {enabled: true}\n")
        proc = subprocess.Popen([CTL, "run", "--config", cfg], cwd=base,
                                env=dict(env.env, SAI3_AUTH_TOKEN=token),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # while the run is on: the token file is private, and no process shows the token
        tokfile = os.path.join(env.user_home, ".sai3bench", "agent-t1.token")
        seen = False
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            if sshfix.agent_pids(user=USER) and os.path.exists(tokfile):
                seen = True
                st = os.stat(tokfile)
                check(st.st_mode & 0o777 == 0o600, f"token file mode {oct(st.st_mode)}")
                for pid in os.listdir("/proc"):
                    if pid.isdigit():
                        try:
                            with open(f"/proc/{pid}/cmdline", "rb") as f:
                                check(token.encode() not in f.read(),
                                      f"the token is in the arguments of pid {pid}")
                        except OSError:
                            pass
                break
            time.sleep(0.1)
        out, err = proc.communicate(timeout=240)
        if proc.returncode != 0:
            print(out[-5000:], err[-5000:])
            fail(f"TLS+token run: exit {proc.returncode}")
        check(seen, "never saw the agents running with their token file")
        for aid in ("t1", "t2"):
            m = re.search(rf"^  {aid}: started on \S+ \(pid \d+\), listening on port \d+, TLS "
                          r"(\S+)$", out, re.M)
            check(m, f"{aid}: no TLS fingerprint on its start line:\n{out[-3000:]}")
            log = env.log(aid)
            check(f"SHA-256 fingerprint: {m.group(1)}" in log,
                  f"{aid}: the pinned fingerprint is not the one its log shows")
            check(not os.path.exists(os.path.join(env.user_home, ".sai3bench",
                                                  f"agent-{aid}.token")),
                  f"{aid}: token file left behind")
            check(token not in log, f"{aid}: the token is in the agent log")
        check(token not in out and token not in err, "the token is in the controller output")
        d = results_dir(subprocess.CompletedProcess([], 0, out, err), base)
        for root, _, files in os.walk(d):
            for fn in files:
                with open(os.path.join(root, fn), errors="replace") as f:
                    check(token not in f.read(), f"the token is in {fn}")
        check_stopped(out, ["t1", "t2"])
        no_agents_left(what=" after the TLS run")
        check_logs(env, ["t1", "t2"])


def check_fail(base):
    env = Env(base)
    with sshfix.Sshd(os.path.join(base, "sshd")) as srv:
        env.trust(srv)
        # 1. the second agent's port is taken: it exits at start; the first one is stopped again
        p1, p2 = free_ports(2)
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", p2))
        blocker.listen(1)
        try:
            cfg = config(env, [("f1", f"127.0.0.1:{p1}"), ("f2", f"127.0.0.1:{p2}")], srv.port)
            p = run(env, cfg, 1)
        finally:
            blocker.close()
        check(re.search(r"f2: 127\.0\.0\.1 \(pid \d+\): the agent exited at start: .*port "
                        rf"{p2} is already in use", p.stderr),
              f"no clear message for the port in use:\n{p.stderr[-3000:]}")
        check("could not be started over SSH; nothing was run" in p.stderr,
              f"no summary error:\n{p.stderr[-2000:]}")
        check_stopped(p.stdout, ["f1"])
        check(re.search(r"^  f2 on \S+ \(pid \d+\): had exited already$", p.stdout, re.M),
              "f2 not reported as exited")
        no_agents_left(what=" after a failed start")
        d = results_dir(p, base)
        with open(os.path.join(d, "STATUS.txt")) as f:
            st = f.read()
        check(st.startswith("FAILURE"), f"STATUS.txt: {st}")

        # 2. an unknown host key: refused before anything starts
        os.rename(env.known, env.known + ".bak")
        open(env.known, "w").close()
        p = run(env, cfg, 1)
        check("known_hosts" in p.stderr and "ssh-setup" in p.stderr,
              f"unknown host key: unclear message:\n{p.stderr[-2000:]}")
        check("Stopping" not in p.stdout, "something was stopped although nothing started")
        os.rename(env.known + ".bak", env.known)

        # 3. a changed host key: refused
        srv.rotate_host_key()
        p = run(env, cfg, 1)
        check("host key" in p.stderr and "changed" in p.stderr,
              f"changed host key: unclear message:\n{p.stderr[-2000:]}")
        with open(env.known, "w") as f:
            f.write(srv.known_hosts_line() + "\n")

        # 4. a missing binary
        cfg2 = config(env, [("m1", f"127.0.0.1:{p1}")], srv.port, name="missing.yaml")
        with open(cfg2) as f:
            text = f.read().replace(f"binary_path: '{AGENT}'",
                                    "binary_path: /nonexistent/sai3bench-agent")
        write(cfg2, text)
        p = run(env, cfg2, 1)
        check("/nonexistent/sai3bench-agent not found" in p.stderr,
              f"missing binary: unclear message:\n{p.stderr[-2000:]}")

        # 5. a key the host does not accept
        os.unlink(os.path.join(env.user_home, ".ssh", "authorized_keys"))
        p = run(env, cfg, 1)
        check("ssh-setup" in p.stderr and "authentication" in p.stderr.lower(),
              f"refused key: unclear message:\n{p.stderr[-2000:]}")
        no_agents_left(what=" after the failures")


def run_and_signal(env, cfg, sig, after_s, extra_env=None):
    """Starts the run; `after_s` seconds after all agents started, sends sig to the controller.
    Returns (returncode, stdout, stderr, pids of the agents)."""
    e = dict(env.env)
    e.update(extra_env or {})
    proc = subprocess.Popen([CTL, "run", "--config", cfg], cwd=env.base, env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.time() + 90
    while time.time() < deadline:
        l = proc.stdout.readline()
        if not l:
            break
        lines.append(l)
        if re.match(r"^All \d+ agents? started over SSH", l):
            break
    else:
        proc.kill()
        fail("the agents did not start within 90 s")
    check(lines and lines[-1].startswith("All "), f"no start: {''.join(lines)}")
    time.sleep(after_s)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    out = "".join(lines) + out
    return proc.returncode, out, err


def check_interrupt(base):
    env = Env(base)
    with sshfix.Sshd(os.path.join(base, "sshd")) as srv:
        env.trust(srv)
        p1, p2 = free_ports(2)
        cfg = config(env, [("i1", f"127.0.0.1:{p1}"), ("i2", f"127.0.0.1:{p2}")], srv.port,
                     duration="60s")
        rc, out, err = run_and_signal(env, cfg, signal.SIGINT, 4)
        if rc != 130:
            print(out[-4000:], err[-4000:])
            fail(f"interrupted run: exit {rc}, expected 130")
        check_stopped(out, ["i1", "i2"])
        check(out.rstrip().splitlines()[-1].startswith("Results saved to: "),
              "last line is not 'Results saved to:'")
        no_agents_left(what=" after Ctrl-C")
        check_logs(env, ["i1", "i2"])


def check_kill_ctl(base):
    env = Env(base)
    with sshfix.Sshd(os.path.join(base, "sshd")) as srv:
        env.trust(srv)
        p1, p2 = free_ports(2)
        cfg = config(env, [("k1", f"127.0.0.1:{p1}"), ("k2", f"127.0.0.1:{p2}")], srv.port,
                     duration="60s")
        rc, out, err = run_and_signal(env, cfg, signal.SIGKILL, 3)
        check(rc == -signal.SIGKILL, f"controller exit {rc}")
        t_kill = time.time()
        # nobody stops them: they leave by themselves once their controller connection is gone
        no_agents_left(within=25.0, what=" 25 s after the controller was killed")
        print(f"agents exited {time.time() - t_kill:.1f} s after the controller was killed")
        for aid in ("k1", "k2"):
            log = env.log(aid)
            check("the controller is gone (--exit-on-disconnect)" in log,
                  f"{aid}: the log does not say why it exited:\n{log[-2000:]}")


def check_netns(base):
    env = Env(base)
    with sshfix.NetnsHosts(2) as hosts:
        servers = []
        try:
            for k, (h, ns) in enumerate(zip(hosts.hosts, hosts.names)):
                s = sshfix.Sshd(os.path.join(base, f"sshd{k}"), listen=h, netns=ns)
                s.start()
                servers.append(s)
            env.trust(*servers)
            agents = [("n1", f"{hosts.hosts[0]}:7761"), ("n2", f"{hosts.hosts[1]}:7761")]
            cfg = config(env, agents, 22)
            p = run(env, cfg, 0)
            started_pids(p.stdout, ["n1", "n2"])
            show_start_time(p.stdout)
            check_stopped(p.stdout, ["n1", "n2"])
            d = results_dir(p, base)
            check(all_ops(d).get("98", 0) > 0, "no GETs")
            for ns in hosts.names:
                no_agents_left(netns=ns, user=None, what=f" in {ns} after the run")
            check_logs(env, ["n1", "n2"])
            # interrupted: still nothing left on either host
            cfg = config(env, agents, 22, duration="60s", name="ssh-run-long.yaml")
            rc, out, err = run_and_signal(env, cfg, signal.SIGINT, 3)
            if rc != 130:
                print(out[-4000:], err[-4000:])
                fail(f"interrupted netns run: exit {rc}, expected 130")
            check_stopped(out, ["n1", "n2"])
            for ns in hosts.names:
                no_agents_left(netns=ns, user=None, what=f" in {ns} after Ctrl-C")
        finally:
            for s in servers:
                s.stop()


CHECKS = {
    "loopback": check_loopback,
    "tls-token": check_tls_token,
    "fail": check_fail,
    "interrupt": check_interrupt,
    "kill-ctl": check_kill_ctl,
    "netns": check_netns,
}

if __name__ == "__main__":
    if CHECK not in CHECKS:
        fail(f"unknown check {CHECK}")
    base = tmpdir(prefix="sai3-sshrun-")
    try:
        CHECKS[CHECK](base)
    finally:
        # stop only the agents this test's user runs (the test user exists only for these tests)
        for pid in sshfix.agent_pids(user=USER):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        subprocess.run(["rm", "-rf", base])
    print(f"ok: ssh-run {CHECK}")
