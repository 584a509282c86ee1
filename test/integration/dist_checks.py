"""Distributed runs on loopback: real sai3bench-agent processes driven by sai3bench-ctl.

usage: dist_checks.py CHECK CTL AGENT SRCROOT

Every agent listens on 127.0.0.1 with an ephemeral port (the banner says which); every process
started here is stopped by its PID. Checks:
  two        two agents, per-agent prefixes: merged counts = sum of the agents', start skew
  three      three agents on one shared directory: prepare split by index, nothing twice
  kill-agent SIGKILL one agent during execute: the run goes on, STATUS marks it, exit 1
  kill-ctl   SIGKILL the controller during execute: agents stop the workload, keep their
             results and serve the next controller
  busy       a second controller gets "busy"; the unary Abort RPC stops a run
  token      wrong and missing token: UNAUTHENTICATED, logged by the agent
  tls        agent --tls: pinned fingerprint (right and wrong), --agent-ca, mutual TLS
  ping       `ctl ping` against agents (one unreachable); agent CLI errors (port in use)
  custom     custom stages need --allow-commands; a failing command fails the stage
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itlib import check, fail, read_tsv, results_dir, run_ctl, tmpdir, write  # noqa: E402

CHECK, CTL, AGENT, SRC = sys.argv[1:5]
procs = []


class Agent:
    """A sai3bench-agent on 127.0.0.1:<ephemeral>; its stderr goes to a log file."""

    def __init__(self, base, name, args=(), env=None):
        self.name = name
        self.log_path = os.path.join(base, f"{name}.log")
        self.results = os.path.join(base, f"{name}-results")
        os.makedirs(self.results, exist_ok=True)
        self.log = open(self.log_path, "w")
        e = dict(os.environ)
        e.update(env or {})
        self.p = subprocess.Popen([AGENT, "--listen", "127.0.0.1:0", "--results-root", self.results,
                                   "--cores", "1"] + list(args),
                                  stdout=subprocess.PIPE, stderr=self.log, text=True, env=e)
        procs.append(self.p)
        self.out = []
        deadline = time.time() + 20
        self.port = None
        while time.time() < deadline:
            line = self.p.stdout.readline()
            if not line:
                break
            self.out.append(line)
            m = re.match(r"^sai3bench-agent listening \((PLAINTEXT|TLS)\) on 127\.0\.0\.1:(\d+)$",
                         line.strip())
            if m:
                self.port = int(m.group(2))
                self.mode = m.group(1)
                break
        if not self.port:
            self.stop()
            fail(f"{name}: no banner; stdout {''.join(self.out)!r}, log {self.read_log()[-2000:]}")
        self.addr = f"127.0.0.1:{self.port}"

    def read_log(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                fail(f"{self.name} did not stop within {timeout} s of signal {sig}")
        return self.p.returncode

    def fingerprint(self):
        for l in self.out:
            if l.startswith("SHA-256 fingerprint: "):
                return l.split(": ", 1)[1].strip()
        fail(f"{self.name}: no fingerprint line in {self.out}")


def cleanup_procs():
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def config(path, data_dir, agents, extra_dist="", count=200, duration="3s", conc=4,
           workload=None, cleanup=True):
    alist = "\n".join(f"    - {{address: '{a.addr}', id: {a.name}}}" for a in agents)
    wl = workload or ("  - {op: get, path: 'data/', weight: 3}\n"
                      "  - {op: put, path: 'new/', weight: 1, object_size: 4KiB}\n")
    return write(path, f"""target: "file://{data_dir}/"
duration: {duration}
concurrency: {conc}
prepare:
  cleanup: {'true' if cleanup else 'false'}
  ensure_objects:
    - {{base_uri: "file://{data_dir}/data/", count: {count}, min_size: 4KiB, max_size: 4KiB}}
workload:
{wl}distributed:
  start_delay: 1s
  agents:
{alist}
{extra_dist}""")


def all_row(rows, header, op):
    """The ops column of results.tsv's ALL row for a class (GET 98, PUT 99, META 97)."""
    idx = {"META": "97", "GET": "98", "PUT": "99"}[op]
    bi, oi = header.index("bucket_idx"), header.index("count")
    for r in rows:
        if r[bi] == idx:
            return int(r[oi])
    return 0


def status(d):
    with open(os.path.join(d, "STATUS.txt")) as f:
        return f.read()


def agent_start_ns(a, stage="execute"):
    """Wall time (ms resolution, from the log line) at which the agent entered RUNNING(stage)."""
    for l in a.read_log().splitlines():
        m = re.match(r"^(\S+)Z\s+INFO\s+agent: run \S+: AGENT_STATE_RUNNING: " + stage + "$", l)
        if m:
            t = time.strptime(m.group(1).split(".")[0], "%Y-%m-%dT%H:%M:%S")
            ms = int(m.group(1).split(".")[1])
            return (time.mktime(t) - time.timezone) * 1000 + ms
    return None


def check_two():
    base = tmpdir()
    data = os.path.join(base, "data")
    a1, a2 = Agent(base, "agent-1"), Agent(base, "agent-2")
    cfg = config(os.path.join(base, "two.yaml"), data, [a1, a2],
                 "  shared_filesystem: false\n")
    p = run_ctl(CTL, ["run", "--config", cfg], cwd=base)
    d = results_dir(p, base)
    st = status(d)
    check(st.splitlines()[0] == "SUCCESS", f"STATUS.txt: {st}")
    h, rows = read_tsv(os.path.join(d, "results.tsv"))
    total_get = all_row(rows, h, "GET")
    total_put = all_row(rows, h, "PUT")
    s_get = s_put = 0
    for a in (a1, a2):
        ah, arows = read_tsv(os.path.join(d, "agents", a.name, "results.tsv"))
        g = all_row(arows, ah, "GET")
        check(g > 0, f"{a.name} did no GETs")
        s_get += g
        s_put += all_row(arows, ah, "PUT")
        check(os.path.exists(os.path.join(d, "agents", a.name, "perf_log.tsv")),
              f"agents/{a.name}/perf_log.tsv missing")
        # each agent worked under its own prefix, and keeps its own results
        check(os.path.isdir(os.path.join(data, f"agent-{a.name}", "new")),
              f"{a.name}: nothing under its prefix agent-{a.name}/")
        local = [x for x in os.listdir(a.results) if x.startswith("sai3-") and x.endswith(a.name)]
        check(len(local) == 1, f"{a.name}: local results {os.listdir(a.results)}")
        check(os.path.exists(os.path.join(a.results, local[0], "results.tsv")),
              f"{a.name}: no local results.tsv")
    # the CPU columns carry the agents' host CPU (a busy loopback run is never at 0 %)
    ph, prows = read_tsv(os.path.join(d, "agents", "agent-1", "perf_log.tsv"))
    cu = ph.index("cpu_user_pct")
    check(any(float(r[cu]) > 0 for r in prows if r[ph.index("stage")] == "Workload"),
          f"agent-1's perf_log has no CPU figures: {prows}")
    check(total_get == s_get and total_put == s_put,
          f"merged GET/PUT {total_get}/{total_put} != sum of agents {s_get}/{s_put}")
    for f in ("perf_log.tsv", "metadata.json", "config.yaml", "console_log.txt",
              "prepare_results.tsv"):
        check(os.path.exists(os.path.join(d, f)), f"{f} missing from {d}")
    # prepare made 200 objects per agent under its own prefix; cleanup removed them
    for a in (a1, a2):
        pdir = os.path.join(data, f"agent-{a.name}", "data")
        left = os.listdir(pdir) if os.path.isdir(pdir) else []
        check(not [x for x in left if x.startswith("prepared-")],
              f"cleanup left {len(left)} objects in {pdir}")
    # one start instant: the agents' actual starts (StateChange RUNNING, in the controller's
    # clock) as metadata.json records them, and cross-checked against the agents' own logs
    md = json.load(open(os.path.join(d, "metadata.json")))
    ex = [st for st in md["stages"] if st["type"] == "execute"][0]
    check(set(ex["agent_start_unix_ns"]) == {"agent-1", "agent-2"}, f"metadata stages: {ex}")
    skew_ms = ex["start_skew_ns"] / 1e6
    t1, t2 = agent_start_ns(a1), agent_start_ns(a2)
    check(t1 is not None and t2 is not None, "agents did not log RUNNING execute")
    print(f"execute start skew between the agents: {skew_ms:.3f} ms (metadata.json), "
          f"{abs(t1 - t2):.0f} ms (agent logs, 1 ms resolution)")
    check(skew_ms <= 50 and abs(t1 - t2) <= 50, f"execute started {skew_ms} ms apart")
    check("started on 2 agents within" in p.stdout, "no start-skew line in the output")
    for a in (a1, a2):
        check(a.stop() == 0, f"{a.name} exit status after SIGTERM")
    print(f"two: merged GET {total_get} PUT {total_put} == agents' sum; {d}")


def check_three():
    base = tmpdir()
    data = os.path.join(base, "shared")
    agents = [Agent(base, f"agent-{i}") for i in (1, 2, 3)]
    cfg = config(os.path.join(base, "three.yaml"), data, agents,
                 "  shared_filesystem: true\n", count=301, cleanup=False,
                 workload="  - {op: get, path: 'data/', weight: 1}\n")
    p = run_ctl(CTL, ["run", "--config", cfg], cwd=base)
    d = results_dir(p, base)
    check(status(d).splitlines()[0] == "SUCCESS", status(d))
    objs = sorted(x for x in os.listdir(os.path.join(data, "data")) if x.startswith("prepared-"))
    check(len(objs) == 301, f"{len(objs)} prepared objects on the shared dir, expected 301")
    created = 0
    for a in agents:
        h, rows = read_tsv(os.path.join(d, "agents", a.name, "prepare_results.tsv"))
        n = all_row(rows, h, "PUT")
        check(100 <= n <= 101, f"{a.name} created {n} objects, expected about a third")
        created += n
    check(created == 301, f"agents created {created} objects in total, expected 301")
    h, rows = read_tsv(os.path.join(d, "prepare_results.tsv"))
    check(all_row(rows, h, "PUT") == 301, "merged prepare_results.tsv")
    for a in agents:
        a.stop()
    print("three: 301 objects prepared once across 3 agents")


def wait_for(pred, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.1)
    fail(f"timed out after {timeout} s waiting for {what}")


def check_kill_agent():
    base = tmpdir()
    data = os.path.join(base, "data")
    a1, a2 = Agent(base, "agent-1"), Agent(base, "agent-2")
    cfg = config(os.path.join(base, "k.yaml"), data, [a1, a2],
                 "  shared_filesystem: false\n  grpc_keepalive_interval: 500ms\n"
                 "  grpc_keepalive_timeout: 1s\n", duration="8s")
    ctl = subprocess.Popen([CTL, "run", "--config", cfg], cwd=base, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    procs.append(ctl)
    wait_for(lambda: agent_start_ns(a2) is not None, 60, "agent-2 RUNNING execute")
    time.sleep(2)
    t_kill = time.time()
    a2.p.kill()
    a2.p.wait()
    out, _ = ctl.communicate(timeout=120)
    check(ctl.returncode == 1, f"ctl exit {ctl.returncode} (expected 1)\n{out[-3000:]}")
    m = re.search(r"Results saved to: (.+)$", out.strip())
    check(m, f"no results line:\n{out[-2000:]}")
    d = os.path.join(base, m.group(1))
    st = status(d)
    check(st.splitlines()[0] == "FAILURE", st)
    check(re.search(r"agent-2.*(LOST|FAILED)", st), f"agent-2 not marked: {st}")
    check(re.search(r"agent-1.*DONE", st), f"agent-1 not DONE: {st}")
    # agent-2's stats up to its last interval are kept
    h, rows = read_tsv(os.path.join(d, "agents", "agent-2", "results.tsv"))
    check(all_row(rows, h, "GET") > 0, "agent-2's partial stats were dropped")
    h, rows = read_tsv(os.path.join(d, "results.tsv"))
    h1, r1 = read_tsv(os.path.join(d, "agents", "agent-1", "results.tsv"))
    h2, r2 = read_tsv(os.path.join(d, "agents", "agent-2", "results.tsv"))
    check(all_row(rows, h, "GET") == all_row(r1, h1, "GET") + all_row(r2, h2, "GET"),
          "merged GETs != agent-1 + agent-2 (partial)")
    a1.stop()
    print(f"kill-agent: run went on; STATUS marks agent-2; {time.time() - t_kill:.1f} s after kill")


def check_kill_ctl():
    base = tmpdir()
    data = os.path.join(base, "data")
    a1 = Agent(base, "agent-1", ["--keepalive-interval", "500ms", "--keepalive-timeout", "1s"])
    cfg = config(os.path.join(base, "k.yaml"), data, [a1], "  shared_filesystem: false\n",
                 duration="30s")
    ctl = subprocess.Popen([CTL, "run", "--config", cfg], cwd=base, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    procs.append(ctl)
    wait_for(lambda: agent_start_ns(a1) is not None, 60, "agent-1 RUNNING execute")
    time.sleep(1)
    ctl.kill()
    ctl.wait()
    t0 = time.time()
    wait_for(lambda: "idle" in a1.read_log().splitlines()[-1], 15,
             "agent-1 back to idle after the controller died")
    print(f"kill-ctl: agent idle {time.time() - t0:.1f} s after the controller was killed")
    log = a1.read_log()
    check("aborting: controller connection ended" in log, f"agent log: {log[-2000:]}")
    local = [x for x in os.listdir(a1.results) if x.startswith("sai3-")]
    check(len(local) == 1, f"local results: {os.listdir(a1.results)}")
    with open(os.path.join(a1.results, local[0], "STATUS.txt")) as f:
        check(f.readline().strip() == "ABORTED", "agent STATUS.txt")
    check(os.path.exists(os.path.join(a1.results, local[0], "perf_log.tsv")), "agent perf_log")
    # the next controller is served
    cfg2 = config(os.path.join(base, "k2.yaml"), data, [a1], "  shared_filesystem: false\n",
                  duration="1s")
    p = run_ctl(CTL, ["run", "--config", cfg2], cwd=base)
    check(status(results_dir(p, base)).startswith("SUCCESS"), "second run")
    a1.stop()


def check_busy():
    base = tmpdir()
    data = os.path.join(base, "data")
    a1 = Agent(base, "agent-1")
    cfg = config(os.path.join(base, "b.yaml"), data, [a1], "  shared_filesystem: false\n",
                 duration="60s")
    ctl = subprocess.Popen([CTL, "run", "--config", cfg], cwd=base, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    procs.append(ctl)
    wait_for(lambda: agent_start_ns(a1) is not None, 60, "agent-1 RUNNING execute")
    p = run_ctl(CTL, ["run", "--config", cfg], cwd=base, expect=1)
    check("busy" in (p.stdout + p.stderr), f"second controller not told busy:\n{p.stdout}\n{p.stderr}")
    p = run_ctl(CTL, ["ping", "--agents", a1.addr], cwd=base)
    check("busy" in p.stdout.lower() or "RUNNING" in p.stdout, f"ping while busy: {p.stdout}")
    ctl.send_signal(signal.SIGINT)
    out, _ = ctl.communicate(timeout=60)
    check(ctl.returncode == 130, f"Ctrl-C'd ctl exit {ctl.returncode}\n{out[-2000:]}")
    check("Results saved to:" in out, "no results after Ctrl-C")
    a1.stop()


def check_token():
    base = tmpdir()
    tok = write(os.path.join(base, "token"), "right-token\n")
    a1 = Agent(base, "agent-1", ["--auth-token-file", tok])
    data = os.path.join(base, "data")
    cfg = config(os.path.join(base, "t.yaml"), data, [a1], "  shared_filesystem: false\n",
                 duration="1s")
    env = dict(os.environ, SAI3_AUTH_TOKEN="wrong-token")
    p = run_ctl(CTL, ["run", "--config", cfg], cwd=base, env=env, expect=1)
    check("authentication failed" in p.stdout + p.stderr, f"wrong token:\n{p.stdout}\n{p.stderr}")
    env.pop("SAI3_AUTH_TOKEN")
    p = run_ctl(CTL, ["ping", "--agents", a1.addr], cwd=base, env=env, expect=1)
    check("authentication failed" in p.stdout + p.stderr, f"missing token:\n{p.stdout}\n{p.stderr}")
    log = a1.read_log()
    check("wrong token" in log and "missing token" in log, f"agent did not log refusals:\n{log}")
    env["SAI3_AUTH_TOKEN"] = "right-token"
    p = run_ctl(CTL, ["run", "--config", cfg], cwd=base, env=env)
    check(status(results_dir(p, base)).startswith("SUCCESS"), "run with the right token")
    a1.stop()


def check_tls():
    base = tmpdir()
    state = os.path.join(base, "state")
    a1 = Agent(base, "agent-1", ["--tls", "--state-dir", state])
    check(a1.mode == "TLS", "banner does not say TLS")
    fp = a1.fingerprint()
    check(os.stat(os.path.join(state, "agent_key.pem")).st_mode & 0o777 == 0o600, "key mode")
    data = os.path.join(base, "data")
    cfg = config(os.path.join(base, "t.yaml"), data, [a1],
                 f"  shared_filesystem: false\n  tls: {{fingerprint: '{fp}'}}\n", duration="1s")
    p = run_ctl(CTL, ["run", "--config", cfg], cwd=base)
    check(status(results_dir(p, base)).startswith("SUCCESS"), "pinned run")
    check("plaintext" not in p.stdout.lower(), "TLS run warns about plaintext")
    wrong = "00" + fp[2:] if not fp.startswith("00") else "11" + fp[2:]
    cfg = config(os.path.join(base, "w.yaml"), data, [a1],
                 f"  shared_filesystem: false\n  tls: {{fingerprint: '{wrong}'}}\n", duration="1s")
    p = run_ctl(CTL, ["run", "--config", cfg], cwd=base, expect=1)
    out = p.stdout + p.stderr
    check("fingerprint" in out.lower() and fp in out, f"wrong pin not explained:\n{out}")
    # the certificate is kept: a restarted agent has the same fingerprint
    a1.stop()
    a2 = Agent(base, "agent-1b", ["--tls", "--state-dir", state])
    check(a2.fingerprint() == fp, "fingerprint changed across restarts")
    # trust by CA file
    p = run_ctl(CTL, ["ping", "--agents", a2.addr, "--agent-ca",
                      os.path.join(state, "agent_cert.pem")], cwd=base)
    check("connected to" in p.stdout, p.stdout)
    # plaintext client against a TLS agent fails clearly
    p = run_ctl(CTL, ["ping", "--agents", a2.addr], cwd=base, expect=1)
    # credentials travel over TLS only, and are never printed or written
    secret = "sekrit-" + os.urandom(6).hex()
    env = dict(os.environ, AWS_SECRET_ACCESS_KEY=secret, AWS_ACCESS_KEY_ID="AKIDTEST")
    cfg = config(os.path.join(base, "cred.yaml"), data, [a2],
                 f"  shared_filesystem: false\n  tls: {{fingerprint: '{fp}'}}\n", duration="1s")
    p = run_ctl(CTL, ["run", "--config", cfg], cwd=base, env=env)
    d = results_dir(p, base)
    m = re.search(r"(\d+) credential variable\(s\) forwarded", a2.read_log())
    check(m and int(m.group(1)) >= 2, "credentials not forwarded over TLS")
    a2.stop()
    a3 = Agent(base, "agent-plain")
    cfg = config(os.path.join(base, "cred2.yaml"), data, [a3], "  shared_filesystem: false\n",
                 duration="1s")
    p = run_ctl(CTL, ["run", "--config", cfg], cwd=base, env=env)
    check("not forwarded" in p.stdout + p.stderr, "no notice that plaintext kept credentials back")
    check("credential variable(s) forwarded" not in a3.read_log(), "forwarded over plaintext")
    d2 = results_dir(p, base)
    a3.stop()
    for root in (base,):
        for dirpath, _, files in os.walk(root):
            for f in files:
                with open(os.path.join(dirpath, f), "rb") as fh:
                    check(secret.encode() not in fh.read(), f"the secret leaked into {dirpath}/{f}")
    check(secret not in p.stdout + p.stderr, "the secret was printed")
    # mutual TLS: the agent wants a client certificate signed by the CA it was given
    ck, cc = os.path.join(base, "ctl_key.pem"), os.path.join(base, "ctl_cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", ck, "-out", cc, "-days",
                    "2", "-subj", "/CN=sai3-ctl"], check=True, capture_output=True)
    a4 = Agent(base, "agent-mtls", ["--tls", "--state-dir", state, "--tls-client-ca", cc])
    cfg = config(os.path.join(base, "m1.yaml"), data, [a4],
                 f"  shared_filesystem: false\n  tls: {{fingerprint: '{fp}'}}\n", duration="1s")
    p = run_ctl(CTL, ["run", "--config", cfg], cwd=base, expect=1)
    cfg = config(os.path.join(base, "m2.yaml"), data, [a4],
                 f"  shared_filesystem: false\n  tls: {{fingerprint: '{fp}', client_cert: '{cc}', "
                 f"client_key: '{ck}'}}\n", duration="1s")
    p = run_ctl(CTL, ["run", "--config", cfg], cwd=base)
    check(status(results_dir(p, base)).startswith("SUCCESS"), "mutual TLS run")
    a4.stop()
    # the agent serves your own certificate with --tls-cert/--tls-key; its fingerprint is pinned
    a5 = Agent(base, "agent-own", ["--tls-cert", cc, "--tls-key", ck])
    out = subprocess.run(["openssl", "x509", "-in", cc, "-noout", "-fingerprint", "-sha256"],
                         capture_output=True, text=True, check=True).stdout
    own = out.strip().split("=", 1)[1]
    check(a5.fingerprint() == own, f"agent printed {a5.fingerprint()}, openssl says {own}")
    cfg = config(os.path.join(base, "o.yaml"), data, [a5],
                 f"  shared_filesystem: false\n  tls: {{fingerprint: '{own}'}}\n", duration="1s")
    p = run_ctl(CTL, ["run", "--config", cfg], cwd=base)
    check(status(results_dir(p, base)).startswith("SUCCESS"), "run against --tls-cert agent")
    a5.stop()
    print(f"tls: pinned {fp[:23]}..., wrong pin refused, CA trust, credentials over TLS only, mTLS")


def check_ping():
    base = tmpdir()
    a1 = Agent(base, "agent-1")
    p = run_ctl(CTL, ["ping", "--agents", a1.addr], cwd=base)
    check(re.search(r"connected to 127\.0\.0\.1:\d+ \(agent version \S+\)", p.stdout), p.stdout)
    # an unreachable agent is named; exit 1
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()[1]
    s.close()
    p = run_ctl(CTL, ["ping", "--agents", f"{a1.addr},127.0.0.1:{dead}"], cwd=base, expect=1)
    check(f"127.0.0.1:{dead}" in p.stdout + p.stderr, f"unreachable agent not named:\n{p.stdout}{p.stderr}")
    # a run with an unreachable agent starts nothing
    data = os.path.join(base, "data")
    cfg = write(os.path.join(base, "u.yaml"), f"""target: "file://{data}/"
duration: 1s
workload: [{{op: put, path: 'x/', weight: 1, object_size: 1KiB}}]
distributed:
  agents: [{{address: '{a1.addr}'}}, {{address: '127.0.0.1:{dead}'}}]
""")
    p = run_ctl(CTL, ["run", "--config", cfg], cwd=base, expect=1)
    check(f"127.0.0.1:{dead}" in p.stdout + p.stderr, "unreachable agent not named by run")
    check(not os.path.exists(data), "a run with an unreachable agent wrote data")
    # port in use: clear message naming the port, exit 1
    q = subprocess.run([AGENT, "--listen", a1.addr], capture_output=True, text=True, timeout=30)
    check(q.returncode == 1 and str(a1.port) in q.stderr and "in use" in q.stderr,
          f"port in use: rc {q.returncode} {q.stderr!r}")
    q = subprocess.run([AGENT, "--listen", "127.0.0.1:99999"], capture_output=True, text=True,
                       timeout=30)
    check(q.returncode == 2 and "port" in q.stderr, f"bad port: {q.returncode} {q.stderr!r}")
    q = subprocess.run([AGENT, "--bogus"], capture_output=True, text=True, timeout=30)
    check(q.returncode == 2 and "--bogus" in q.stderr, f"bad flag: {q.stderr!r}")
    # the seed's `docker run IMAGE sai3bench-agent --listen ...` with the agent as entrypoint
    q = subprocess.run([AGENT, "sai3bench-agent", "--version"], capture_output=True, text=True,
                       timeout=30)
    check(q.returncode == 0 and q.stdout.startswith("sai3bench-agent "),
          f"a leading program name is not skipped: {q.stdout!r} {q.stderr!r}")
    q = subprocess.run([AGENT, "sai3bench-ctl"], capture_output=True, text=True, timeout=30)
    check(q.returncode == 2 and "unexpected argument 'sai3bench-ctl'" in q.stderr,
          f"a stray argument: {q.stderr!r}")
    # --start-timeout needs --exit-on-disconnect; with it, an agent nobody uses leaves by itself
    q = subprocess.run([AGENT, "--start-timeout", "1s"], capture_output=True, text=True, timeout=30)
    check(q.returncode == 2 and "--exit-on-disconnect" in q.stderr, f"{q.stderr!r}")
    q = subprocess.run([AGENT, "--listen", "127.0.0.1:0", "--exit-on-disconnect",
                        "--start-timeout", "500ms"], capture_output=True, text=True, timeout=30)
    check(q.returncode == 0 and "no run arrived within --start-timeout" in q.stderr,
          f"--start-timeout: exit {q.returncode}, {q.stderr[-500:]!r}")
    # agents starting at once on one state dir (several per host) make one certificate together
    sd = tmpdir(prefix="sai3-it-state-")
    ps = [subprocess.Popen([AGENT, "--listen", "127.0.0.1:0", "--tls", "--state-dir", sd,
                            "--exit-on-disconnect", "--start-timeout", "1s"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for _ in range(4)]
    fps = set()
    for p in ps:
        out, err = p.communicate(timeout=60)
        check(p.returncode == 0 and "sai3bench-agent listening (TLS)" in out,
              f"concurrent TLS start: exit {p.returncode}, {out!r} {err[-600:]!r}")
        fps.update(l for l in out.splitlines() if l.startswith("SHA-256 fingerprint: "))
    check(len(fps) == 1, f"agents sharing a state dir show different certificates: {fps}")
    subprocess.run(["rm", "-rf", sd])
    # RUST_LOG=debug gives debug lines (a Ping is logged at debug)
    a2 = Agent(base, "agent-dbg", env={"RUST_LOG": "debug"})
    run_ctl(CTL, ["ping", "--agents", a2.addr], cwd=base)
    time.sleep(0.3)
    check("DEBUG" in a2.read_log(), "RUST_LOG=debug did not raise the log level")
    a2.stop()
    check(a1.stop(signal.SIGINT) == 0, "SIGINT exit status")


def check_custom():
    base = tmpdir()
    data = os.path.join(base, "data")
    a1 = Agent(base, "agent-1")
    stages = ("  stages:\n"
              "    - {name: hello, type: custom, command: /bin/sh, args: ['-c', 'echo hi; exit 0']}\n")
    cfg = config(os.path.join(base, "c.yaml"), data, [a1],
                 "  shared_filesystem: false\n" + stages, duration="1s")
    p = run_ctl(CTL, ["run", "--config", cfg], cwd=base, expect=1)
    check("--allow-commands" in p.stdout + p.stderr, f"no --allow-commands hint:\n{p.stdout}")
    a1.stop()
    a2 = Agent(base, "agent-2", ["--allow-commands"])
    cfg = config(os.path.join(base, "c2.yaml"), data, [a2], "  shared_filesystem: false\n" + stages,
                 duration="1s")
    p = run_ctl(CTL, ["run", "--config", cfg], cwd=base)
    check(status(results_dir(p, base)).startswith("SUCCESS"), "custom stage run")
    bad = ("  stages:\n"
           "    - {name: boom, type: custom, command: /bin/sh, args: ['-c', 'echo oops; exit 3']}\n")
    cfg = config(os.path.join(base, "c3.yaml"), data, [a2], "  shared_filesystem: false\n" + bad,
                 duration="1s")
    p = run_ctl(CTL, ["run", "--config", cfg], cwd=base, expect=1)
    out = p.stdout + p.stderr
    check("status 3" in out, f"exit status not reported:\n{out}")
    a2.stop()


try:
    {"two": check_two, "three": check_three, "kill-agent": check_kill_agent,
     "kill-ctl": check_kill_ctl, "busy": check_busy, "token": check_token, "tls": check_tls,
     "ping": check_ping, "custom": check_custom}[CHECK]()
finally:
    cleanup_procs()
print(f"PASS {CHECK}")
