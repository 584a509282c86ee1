"""Distributed-run benchmark (not a test): what the agent/controller split costs.

usage: test/bench/dist.sh [--secs N] [--conc N] [--agents32-secs N] [--build DIR]

1. The same file:// GET workload (4 KiB objects on tmpfs /dev/shm, total concurrency --conc) run
   in-process by `sai3bench-ctl run`, through one local agent, and through two local agents with
   half the concurrency each. Prints ops/s and the ratios agent/in-process.
2. 32 agents on loopback, each running a light rate-limited workload, stream 1-second interval
   stats to one controller: the controller's CPU time per wall second (utime + stime from
   /proc/<pid>/stat), i.e. what merging and printing 32 streams costs.

Every agent is started here on 127.0.0.1 with an ephemeral port and stopped by its PID.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("--secs", type=int, default=8)
ap.add_argument("--conc", type=int, default=8)
ap.add_argument("--agents32-secs", type=int, default=10)
ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                "build-test"))
a = ap.parse_args()
CTL = os.path.join(a.build, "apps", "ctl", "sai3bench-ctl")
AGENT = os.path.join(a.build, "apps", "agent", "sai3bench-agent")
TCK = os.sysconf("SC_CLK_TCK")
procs = []


def start_agent(base, name, cores=1):
    log = open(os.path.join(base, f"{name}.log"), "w")
    res = os.path.join(base, f"{name}-res")
    os.makedirs(res, exist_ok=True)
    p = subprocess.Popen([AGENT, "--listen", "127.0.0.1:0", "--results-root", res, "--cores",
                          str(cores)], stdout=subprocess.PIPE, stderr=log, text=True)
    procs.append(p)
    m = re.search(r"on (127\.0\.0\.1:\d+)$", p.stdout.readline().strip())
    if not m:
        sys.exit(f"{name}: no banner")
    return p, m.group(1)


def ops_per_s(results):
    rows = [l.split("\t") for l in open(os.path.join(results, "results.tsv")).read().splitlines()]
    h = rows[0]
    for r in rows[1:]:
        if r[h.index("bucket_idx")] == "98":
            return float(r[h.index("ops_per_sec")])
    return 0.0


def run(cfg, cwd):
    p = subprocess.run([CTL, "run", "--config", cfg], cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"run failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    m = re.search(r"Results saved to: (.+)$", p.stdout.strip())
    return os.path.join(cwd, m.group(1))


def cfg_text(data, conc, secs, agents=None, extra=""):
    t = f"""target: "file://{data}/"
duration: {secs}s
concurrency: {conc}
prepare:
  ensure_objects: [{{base_uri: "file://{data}/d/", count: 2000, min_size: 4KiB, max_size: 4KiB}}]
workload:
  - {{op: get, path: d/, weight: 1}}
{extra}"""
    if agents:
        t += "distributed:\n  shared_filesystem: true\n  start_delay: 500ms\n  agents:\n"
        t += "".join(f"    - {{address: '{ad}', id: a{i + 1}}}\n" for i, ad in enumerate(agents))
    return t


def part1(base):
    data = tempfile.mkdtemp(prefix="sai3-distbench-", dir="/dev/shm")
    try:
        res = {}
        c = os.path.join(base, "inproc.yaml")
        open(c, "w").write(cfg_text(data, a.conc, a.secs))
        res["in-process (--cores 2)"] = ops_per_s(run(c, base))
        p1, ad1 = start_agent(base, "one", cores=2)
        c = os.path.join(base, "one.yaml")
        open(c, "w").write(cfg_text(data, a.conc, a.secs, [ad1]))
        res["1 agent (2 cores)"] = ops_per_s(run(c, base))
        p2, ad2 = start_agent(base, "two-a", cores=1)
        p3, ad3 = start_agent(base, "two-b", cores=1)
        c = os.path.join(base, "two.yaml")
        open(c, "w").write(cfg_text(data, a.conc, a.secs, [ad2, ad3]))
        res["2 agents (1 core each)"] = ops_per_s(run(c, base))
        base_ops = res["in-process (--cores 2)"]
        print(f"\n1. file:// GET 4 KiB on tmpfs, total concurrency {a.conc}, {a.secs} s")
        for k, v in res.items():
            print(f"   {k:26s} {v:10.0f} ops/s   ratio to in-process {v / base_ops:5.2f}")
    finally:
        shutil.rmtree(data, ignore_errors=True)


def cpu_ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def part2(base):
    data = tempfile.mkdtemp(prefix="sai3-distbench32-", dir="/dev/shm")
    try:
        ads = [start_agent(base, f"x{i}")[1] for i in range(32)]
        c = os.path.join(base, "a32.yaml")
        t = cfg_text(data, 32, a.agents32_secs, ads, extra="io_rate: {iops: 640}\n")
        t = t.replace("count: 2000", "count: 320").replace("shared_filesystem: true",
                                                            "shared_filesystem: true")
        open(c, "w").write(t)
        ctl = subprocess.Popen([CTL, "run", "--config", c], cwd=base, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        procs.append(ctl)
        # sample the controller's CPU only while execute streams stats
        start = None
        lines = []
        for l in ctl.stdout:
            lines.append(l)
            if start is None and re.search(r"[Ee]xecute", l):
                t0, c0 = time.time(), cpu_ticks(ctl.pid)
                start = True
            if start and time.time() - t0 >= a.agents32_secs - 1:
                t1, c1 = time.time(), cpu_ticks(ctl.pid)
                break
        rest, _ = ctl.communicate()
        if ctl.returncode != 0:
            sys.exit("32-agent run failed:\n" + "".join(lines[-30:]) + rest[-2000:])
        pct = (c1 - c0) / TCK / (t1 - t0) * 100
        print(f"\n2. 32 agents on loopback streaming 1-s stats (io_rate 20 ops/s each): controller "
              f"CPU {pct:.1f}% of one core ({(c1 - c0) / TCK * 1000 / (t1 - t0):.1f} ms/s) "
              f"over {t1 - t0:.1f} s")
    finally:
        shutil.rmtree(data, ignore_errors=True)


base = tempfile.mkdtemp(prefix="sai3-distbench-")
try:
    part1(base)
    part2(base)
finally:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
    shutil.rmtree(base, ignore_errors=True)
