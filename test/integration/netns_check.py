"""Multi-host run: two agents in their own network namespaces (10.200.x.y), the controller in the
root namespace; one host's link is cut mid-run (`ip link set ... down`).

usage: netns_check.py CTL AGENT SRCROOT

Network safety (reference/test-servers.md): the blackhole route for 10.200.0.0/16 is installed in
the root namespace before any namespace gets an address, and removed at the end if this test added
it; if it cannot be installed the test fails without creating namespaces. The controller reaches
each namespace through a root-side veth with its own /24, whose connected route beats the
blackhole; once a link is down, packets to that host fall into the blackhole, never outside.

Checks: the run goes on with the healthy agent; the controller marks the cut one LOST within its
keepalive (1 s + 2 s here) plus slack; the cut agent notices the silent controller through its
own keepalive, aborts the workload, keeps its results, and goes idle.
"""
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itlib import check, fail, read_tsv, tmpdir, write  # noqa: E402

CTL, AGENT, SRC = sys.argv[1:4]
TAG = f"s3n{os.getpid() % 100000}"
SUBNET = 10 + os.getpid() % 200  # 10.200.SUBNET.0/24 and 10.200.SUBNET+1.0/24
added_route = False
made = []
procs = []


def ip(*args, check_rc=True):
    p = subprocess.run(["ip"] + list(args), capture_output=True, text=True)
    if check_rc and p.returncode != 0:
        fail(f"ip {' '.join(args)}: {p.stderr.strip()}")
    return p


def setup():
    global added_route
    if os.geteuid() != 0:
        fail("the netns test needs root (CI runs as root)")
    p = ip("route", "add", "blackhole", "10.200.0.0/16", check_rc=False)
    if p.returncode == 0:
        added_route = True
    else:
        show = ip("route", "show", "10.200.0.0/16").stdout
        if "blackhole" not in show:
            fail(f"cannot install the blackhole route 10.200.0.0/16 ({p.stderr.strip()}): "
                 "refusing to create namespaces")
    hosts = []
    for k in range(2):
        ns, rv, nv = f"{TAG}h{k}", f"{TAG}r{k}", f"{TAG}n{k}"
        net = SUBNET + k
        ip("netns", "add", ns)
        made.append(ns)
        ip("link", "add", rv, "type", "veth", "peer", "name", nv)
        ip("link", "set", nv, "netns", ns)
        ip("addr", "add", f"10.200.{net}.1/24", "dev", rv)
        ip("-n", ns, "addr", "add", f"10.200.{net}.2/24", "dev", nv)
        ip("link", "set", rv, "up")
        ip("-n", ns, "link", "set", nv, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        hosts.append((ns, rv, f"10.200.{net}.2"))
    return hosts


def teardown():
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    for ns in made:
        ip("netns", "del", ns, check_rc=False)  # deletes its veth and the root peer with it
    if added_route:
        ip("route", "del", "blackhole", "10.200.0.0/16", check_rc=False)


def main():
    base = tmpdir()
    hosts = setup()
    agents = []
    for k, (ns, rv, addr) in enumerate(hosts):
        res = os.path.join(base, f"res{k}")
        os.makedirs(res)
        log = open(os.path.join(base, f"agent{k}.log"), "w")
        p = subprocess.Popen(["ip", "netns", "exec", ns, AGENT, "--listen", f"{addr}:7761",
                              "--results-root", res, "--cores", "1", "--keepalive-interval", "1s",
                              "--keepalive-timeout", "2s"],
                             stdout=subprocess.PIPE, stderr=log, text=True)
        procs.append(p)
        line = p.stdout.readline().strip()
        check(line == f"sai3bench-agent listening (PLAINTEXT) on {addr}:7761", f"banner {line!r}")
        agents.append((p, log.name, res, addr))
    data = os.path.join(base, "data")
    cfg = write(os.path.join(base, "mh.yaml"), f"""target: "file://{data}/"
duration: 20s
concurrency: 2
prepare:
  cleanup: false
  ensure_objects: [{{base_uri: "file://{data}/d/", count: 50, min_size: 4KiB, max_size: 4KiB}}]
workload:
  - {{op: get, path: d/, weight: 1}}
distributed:
  shared_filesystem: false
  start_delay: 1s
  grpc_keepalive_interval: 1s
  grpc_keepalive_timeout: 2s
  agents:
    - {{address: '{agents[0][3]}:7761', id: host-a}}
    - {{address: '{agents[1][3]}:7761', id: host-b}}
""")
    ctl = subprocess.Popen([CTL, "run", "--config", cfg], cwd=base, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    procs.append(ctl)
    lines = []

    def reader():
        for l in ctl.stdout:
            lines.append((time.time(), l.rstrip("\n")))
    t = threading.Thread(target=reader, daemon=True)
    t.start()

    def agent_running(k):
        with open(agents[k][1]) as f:
            return "AGENT_STATE_RUNNING: execute" in f.read()
    end = time.time() + 90
    while time.time() < end and not (agent_running(0) and agent_running(1)):
        time.sleep(0.2)
    check(agent_running(0) and agent_running(1), "agents did not start execute")
    time.sleep(2)
    t_cut = time.time()
    ip("link", "set", hosts[1][1], "down")
    # the cut agent notices the silent controller by its own keepalive and goes idle
    seen_idle = None
    while time.time() < t_cut + 20:
        with open(agents[1][1]) as f:
            text = f.read()
        if "aborting: controller connection ended" in text and "idle" in text.splitlines()[-1]:
            seen_idle = time.time() - t_cut
            break
        time.sleep(0.2)
    check(seen_idle is not None, f"cut agent did not stop within 20 s:\n{text[-2000:]}")
    ctl.wait(timeout=120)
    t.join(timeout=10)
    out = "\n".join(l for _, l in lines)
    check(ctl.returncode == 1, f"ctl exit {ctl.returncode}\n{out[-3000:]}")
    lost = [ts - t_cut for ts, l in lines if "host-b" in l and re.search(r"lost|LOST|keepalive", l)]
    check(lost, f"controller never reported host-b lost:\n{out[-3000:]}")
    m = re.search(r"Results saved to: (.+)$", out.strip())
    check(m, out[-2000:])
    d = os.path.join(base, m.group(1))
    st = open(os.path.join(d, "STATUS.txt")).read()
    check(st.startswith("FAILURE") and re.search(r"host-b.*LOST", st) and
          re.search(r"host-a.*DONE", st), f"STATUS.txt:\n{st}")
    h, rows = read_tsv(os.path.join(d, "agents", "host-b", "results.tsv"))
    bi, oi = h.index("bucket_idx"), h.index("count")
    check(any(r[bi] == "98" and int(r[oi]) > 0 for r in rows), "host-b's partial stats dropped")
    local = [x for x in os.listdir(agents[1][2]) if x.startswith("sai3-")]
    check(local and open(os.path.join(agents[1][2], local[0], "STATUS.txt")).readline().strip()
          == "ABORTED", f"cut agent's local results: {local}")
    print(f"netns: controller reported host-b lost {lost[0]:.1f} s after the cut "
          f"(keepalive 1 s + 2 s); the cut agent stopped and went idle after {seen_idle:.1f} s")


try:
    main()
finally:
    teardown()
print("PASS netns")
