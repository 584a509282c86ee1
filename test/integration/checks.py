#!/usr/bin/env python3
"""Integration checks for sai3bench-ctl: run the real binary on the local filesystem and check
what a user would check — exit codes, messages, and the files in the results directory.

usage: checks.py NAME CTL_BINARY SOURCE_ROOT
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itlib import check, fail, read_tsv, results_dir, run_ctl, tmpdir, write  # noqa: E402

NAME, CTL, SRC = sys.argv[1], os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3])
COLS = ("operation size_bucket bucket_idx mean_us p50_us p90_us p95_us p99_us max_us "
        "avg_bytes ops_per_sec throughput_mibps count").split()
PERF_COLS = 30


def run(args, cwd, timeout=240, expect=0):
    return run_ctl(CTL, args, cwd, None, timeout, expect)


def check_results_tsv(path, min_rows=1):
    head, rows = read_tsv(path)
    check(head == COLS, f"{path}: header {head}")
    check(len(rows) >= min_rows, f"{path}: {len(rows)} rows")
    idx = [int(r[2]) for r in rows]
    check(idx == sorted(idx), f"{path}: rows not sorted by bucket_idx: {idx}")
    out = {}
    for r in rows:
        check(len(r) == 13, f"{path}: row with {len(r)} columns: {r}")
        mean, p50, p90, p95, p99, mx = map(float, r[3:9])
        count = int(r[12])
        check(count > 0, f"{path}: row with count 0: {r}")
        check(0 < p50 <= p90 <= p95 <= p99 <= mx, f"{path}: percentiles out of order: {r}")
        check(p50 <= mx and mean <= mx * 1.001, f"{path}: mean/max: {r}")
        out[(r[0], r[1])] = r
    return out


def check_common_files(d, config_src):
    for f in ("config.yaml", "console_log.txt", "metadata.json", "results.tsv", "perf_log.tsv"):
        check(os.path.isfile(os.path.join(d, f)), f"{f} missing in {d}")
    with open(config_src, "rb") as a, open(os.path.join(d, "config.yaml"), "rb") as b:
        check(a.read() == b.read(), "config.yaml is not a byte copy")
    md = json.load(open(os.path.join(d, "metadata.json")))
    for k in ("version", "test_name", "start_time", "end_time", "duration_secs", "command_line",
              "hostname", "status"):
        check(k in md, f"metadata.json lacks {k}")
    log = open(os.path.join(d, "console_log.txt")).read()
    check("Results saved to:" in log, "console_log.txt lacks the last line")
    head, rows = read_tsv(os.path.join(d, "perf_log.tsv"))
    check(len(head) == PERF_COLS, f"perf_log.tsv has {len(head)} columns")
    for r in rows:
        check(len(r) == PERF_COLS, f"perf_log row with {len(r)} columns")
    return md, rows


def files_under(path):
    n = 0
    for _, _, fs in os.walk(path):
        n += len(fs)
    return n


# ---------------------------------------------------------------------------------------------

def t_quickstart():
    cwd = tmpdir()
    cfg = os.path.join(SRC, "examples", "quickstart.yaml")
    p = run(["run", "--config", cfg], cwd)
    d = results_dir(p, cwd)
    md, perf = check_common_files(d, cfg)
    check(md["status"] == "completed", f"status {md['status']}")
    rows = check_results_tsv(os.path.join(d, "results.tsv"), 5)
    for op in ("GET", "PUT", "META"):
        check((op, "ALL") in rows, f"no {op} ALL row")
    get = rows[("GET", "ALL")]
    check(4096 <= float(get[9]) <= 65536, f"GET avg_bytes {get[9]} outside 4-64 KiB")
    put = rows[("PUT", "ALL")]
    check(float(put[9]) == 16384, f"PUT avg_bytes {put[9]} != 16384")
    for op in ("STAT", "LIST", "DELETE"):
        check((op, "ALL") in rows, f"no {op} ALL row")
    meta = int(rows[("META", "ALL")][12])
    parts = sum(int(rows[(o, "ALL")][12]) for o in ("STAT", "LIST", "DELETE"))
    check(meta == parts, f"META count {meta} != STAT+LIST+DELETE {parts}")
    # the counts in bucket rows add up to the ALL rows
    for op in ("GET", "PUT"):
        s = sum(int(r[12]) for k, r in rows.items() if k[0] == op and k[1] != "ALL")
        check(s == int(rows[(op, "ALL")][12]), f"{op} bucket counts {s} != ALL")
    # throughput consistent with ops and sizes
    ops_s, mibps, avg = float(get[10]), float(get[11]), float(get[9])
    check(abs(ops_s * avg / 1048576 - mibps) <= 0.02 * mibps + 0.02, "GET MiB/s != ops/s*avg")
    head, prows = read_tsv(os.path.join(d, "prepare_results.tsv"))
    check(head == COLS, "prepare_results.tsv header")
    pall = [r for r in prows if r[0] == "PUT" and r[1] == "ALL"]
    check(pall and int(pall[0][12]) == 22000, f"prepare PUT ALL count: {pall}")
    check(len(perf) >= 10, f"perf_log.tsv has {len(perf)} rows")
    check(any(r[3] == "Workload" and int(r[4]) > 0 for r in perf), "no workload GETs in perf_log")
    # the live line was printed once a second
    live = [l for l in p.stdout.splitlines() if re.match(r"^\[\s*\d+s\] GET ", l)]
    check(len(live) >= 10, f"{len(live)} live lines")
    # cleanup removed everything the run made
    check(files_under(os.path.join(cwd, "sai3-data")) == 0, "cleanup left files in sai3-data")
    shutil.rmtree(cwd)


def t_direct():
    base = tmpdir("/var/tmp")
    cfg = write(os.path.join(base, "direct.yaml"), f"""
target: "direct://{base}/d/"
duration: 4s
concurrency: 8
prepare:
  ensure_objects:
    - {{ base_uri: "direct://{base}/d/objs/", count: 300, size_spec: {{ type: uniform, min: 1000, max: 200KiB }} }}
  cleanup: true
workload:
  - {{ op: get, path: "objs/*", weight: 50 }}
  - {{ op: put, path: "new/", size_spec: {{ type: lognormal, mean: 64KiB, std_dev: 32KiB, min: 1, max: 1MiB }}, weight: 30 }}
  - {{ op: stat, path: "objs/*", weight: 20 }}
""")
    p = run(["run", "--config", cfg], base)
    d = results_dir(p, base)
    rows = check_results_tsv(os.path.join(d, "results.tsv"), 3)
    for op in ("GET", "PUT", "META"):
        check(int(rows[(op, "ALL")][12]) > 0, f"no {op} ops on direct://")
    avg = float(rows[("GET", "ALL")][9])
    check(1000 <= avg <= 200 * 1024, f"GET avg bytes {avg}")
    check(files_under(os.path.join(base, "d")) == 0, "cleanup left files")
    shutil.rmtree(base)


def t_direct_tmpfs():
    if not os.path.isdir("/dev/shm"):
        fail("/dev/shm (tmpfs) is needed for this test")
    base = tmpdir("/dev/shm")
    cfg = write(os.path.join(base, "t.yaml"), f"""
target: "direct://{base}/x/"
duration: 2s
workload:
  - {{ op: put, path: "p/", object_size: 4096, weight: 1 }}
""")
    p = run(["run", "--config", cfg], base, expect=1)
    check("tmpfs" in p.stderr and "O_DIRECT" in p.stderr, f"no tmpfs/O_DIRECT message: {p.stderr}")
    shutil.rmtree(base)


def t_bad_config():
    cwd = tmpdir()
    cfg = write(os.path.join(cwd, "bad.yaml"), """target: "file://./data/"
duration: 5s
concurency: 4
prepare:
  ensure_objects:
    - { base_uri: "file://./data/p/", count: 10 }
workload:
  - { op: get, path: "p/*", weight: 1 }
  - { op: gett, path: "p/*", weight: 1 }
""")
    p = run(["run", "--config", cfg], cwd, expect=2)
    check("bad.yaml:3:1:" in p.stderr and "concurrency" in p.stderr, f"stderr: {p.stderr}")
    check("bad.yaml:9:" in p.stderr, f"second error not reported: {p.stderr}")
    check(sorted(os.listdir(cwd)) == ["bad.yaml"], f"something was created: {os.listdir(cwd)}")
    p = run(["validate", "--config", cfg], cwd, expect=2)
    p = run(["run", "--config", os.path.join(cwd, "missing.yaml")], cwd, expect=2)
    check("missing.yaml" in p.stderr, "missing file not named")
    shutil.rmtree(cwd)


def t_cli():
    cwd = tmpdir()
    for args in (["run"], ["frobnicate"], ["run", "--config"], ["--cores", "0", "run", "--config", "x"],
                 ["run", "--config", "x", "--bogus"], ["run", "--config", "x", "--prepare-only", "--skip-prepare"]):
        p = run(args, cwd, expect=2)
        check(p.stderr.strip(), f"{args}: no message")
    p = run(["--help"], cwd)
    check("run --config" in p.stdout, "help text")
    p = run(["--version"], cwd)
    check(p.stdout.startswith("sai3bench-ctl "), "version")
    check(os.listdir(cwd) == [], "CLI errors created files")
    shutil.rmtree(cwd)


def t_interrupt():
    cwd = tmpdir()
    cfg = write(os.path.join(cwd, "long.yaml"), """target: "file://./data/"
duration: 5m
concurrency: 8
prepare:
  ensure_objects:
    - { base_uri: "file://./data/p/", count: 200, size_spec: 8KiB }
  cleanup: true
workload:
  - { op: get, path: "p/*", weight: 3 }
  - { op: put, path: "n/", object_size: 4KiB, weight: 1 }
""")
    proc = subprocess.Popen([CTL, "run", "--config", cfg], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # wait for the execute stage to print live lines
    deadline = time.time() + 60
    seen = 0
    lines = []
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if re.match(r"^\[\s*\d+s\] GET", line):
            seen += 1
            if seen >= 2:
                break
    check(seen >= 2, "no live lines before the interrupt: " + "".join(lines))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    out = "".join(lines) + out
    check(proc.returncode == 130, f"exit {proc.returncode}, expected 130; {err}")
    m = re.search(r"Results saved to: (.+)$", out.strip())
    check(m, "no results line after Ctrl-C")
    d = os.path.join(cwd, m.group(1))
    rows = check_results_tsv(os.path.join(d, "results.tsv"), 1)
    check(int(rows[("GET", "ALL")][12]) > 0, "partial results have no GETs")
    md = json.load(open(os.path.join(d, "metadata.json")))
    check(md["status"] == "interrupted", f"status {md['status']}")
    shutil.rmtree(cwd)


def t_io_rate():
    cwd = tmpdir()
    cfg = write(os.path.join(cwd, "rate.yaml"), """target: "file://./data/"
duration: 5s
concurrency: 4
io_rate: { iops: 400, distribution: deterministic }
prepare:
  ensure_objects:
    - { base_uri: "file://./data/p/", count: 50, size_spec: 4KiB }
workload:
  - { op: get, path: "p/*", weight: 1 }
""")
    p = run(["run", "--config", cfg], cwd)
    d = results_dir(p, cwd)
    rows = check_results_tsv(os.path.join(d, "results.tsv"))
    n = int(rows[("GET", "ALL")][12])
    # 400/s for 5 s: open-loop schedule, so the count follows the schedule, not the storage speed
    check(1800 <= n <= 2100, f"{n} GETs for 400 iops x 5 s")
    check("from intended start" in p.stdout, "no intended-start latency in the summary")
    # exponential arrivals: same mean rate
    cfg2 = cfg.replace("rate.yaml", "rate2.yaml")
    write(cfg2, open(cfg).read().replace("deterministic", "exponential"))
    p = run(["run", "--config", cfg2], cwd)
    rows = check_results_tsv(os.path.join(results_dir(p, cwd), "results.tsv"))
    n = int(rows[("GET", "ALL")][12])
    check(1600 <= n <= 2400, f"{n} GETs for exponential 400 iops x 5 s")
    shutil.rmtree(cwd)


def t_max_errors():
    cwd = tmpdir()
    os.makedirs(os.path.join(cwd, "data"))
    cfg = write(os.path.join(cwd, "err.yaml"), """target: "file://./data/"
duration: 60s
concurrency: 4
error_handling: { max_total_errors: 50, error_rate_threshold: 0 }
workload:
  - { op: get, path: "does-not-exist.dat", weight: 1 }
""")
    t0 = time.time()
    p = run(["run", "--config", cfg], cwd, expect=1)
    check(time.time() - t0 < 30, "max_total_errors did not stop the run")
    check("max_total_errors" in p.stderr, f"no clear message: {p.stderr}")
    d = results_dir(p, cwd)
    md = json.load(open(os.path.join(d, "metadata.json")))
    check(md["status"] == "failed" and md["total_errors"] >= 50, f"metadata: {md}")
    check("object not found" in p.stdout, "error kind not shown in the summary")
    shutil.rmtree(cwd)


def t_retries():
    cwd = tmpdir()
    os.makedirs(os.path.join(cwd, "data"))
    cfg = write(os.path.join(cwd, "retry.yaml"), """target: "file://./data/"
duration: 3s
concurrency: 2
error_handling: { max_total_errors: 1000000, retry_on_error: true, max_retries: 2,
                  initial_retry_delay_ms: 1, max_retry_delay_ms: 2, error_rate_threshold: 0 }
workload:
  - { op: stat, path: "nope.dat", weight: 1 }
""")
    p = run(["run", "--config", cfg], cwd)
    check(re.search(r"retries: \d+", p.stdout), "retries not reported")
    shutil.rmtree(cwd)


def t_prepare_skip():
    cwd = tmpdir()
    cfg = write(os.path.join(cwd, "p.yaml"), """target: "file://./data/"
duration: 1s
concurrency: 4
prepare:
  ensure_objects:
    - { base_uri: "file://./data/p/", count: 100, size_spec: { type: uniform, min: 1, max: 10000 } }
workload:
  - { op: stat, path: "p/", weight: 1 }
""")
    p = run(["run", "--config", cfg, "--prepare-only"], cwd)
    check("100 created" in p.stdout, p.stdout)
    sizes = {f: os.path.getsize(os.path.join(cwd, "data/p", f)) for f in os.listdir(os.path.join(cwd, "data/p"))}
    check(sorted(sizes) == [f"prepared-{i:08d}.dat" for i in range(100)], "prepared names")
    check(len(set(sizes.values())) > 50, "sizes are not drawn per index")
    p = run(["run", "--config", cfg, "--prepare-only"], cwd)
    check("0 created" in p.stdout and "100 already present" in p.stdout, p.stdout)
    # the same index always gets the same size: remove one, prepare recreates it identically
    os.unlink(os.path.join(cwd, "data/p/prepared-00000042.dat"))
    p = run(["run", "--config", cfg, "--prepare-only"], cwd)
    check("1 created" in p.stdout, p.stdout)
    check(os.path.getsize(os.path.join(cwd, "data/p/prepared-00000042.dat")) == sizes["prepared-00000042.dat"],
          "index 42 got a different size")
    # force_overwrite recreates all
    write(cfg, open(cfg).read().replace("prepare:\n", "prepare:\n  force_overwrite: true\n"))
    p = run(["run", "--config", cfg, "--prepare-only"], cwd)
    check("100 created" in p.stdout, p.stdout)
    # cleanup-only removes them
    p = run(["run", "--config", cfg, "--cleanup-only"], cwd)
    check(files_under(os.path.join(cwd, "data")) == 0, "cleanup-only left files")
    shutil.rmtree(cwd)


def t_examples():
    exdir = os.path.join(SRC, "examples")
    names = sorted(f for f in os.listdir(exdir) if f.endswith(".yaml") and f != "quickstart.yaml")
    check(names, "no examples besides quickstart")
    for n in names:
        cwd = tmpdir("/var/tmp")
        text = open(os.path.join(exdir, n)).read()
        # examples name their own data dirs relative to the working directory; keep them short here
        text = re.sub(r"(?m)^duration:.*$", "duration: 3s", text)
        cfg = write(os.path.join(cwd, n), text)
        p = run(["run", "--config", cfg], cwd)
        d = results_dir(p, cwd)
        check_results_tsv(os.path.join(d, "results.tsv"))
        shutil.rmtree(cwd)


def t_validate():
    cwd = tmpdir()
    cfg = os.path.join(SRC, "examples", "quickstart.yaml")
    p = run(["validate", "--config", cfg], cwd)
    for s in ("prepare", "execute", "cleanup", "GET", "60.0%", "22,000"):
        check(s in p.stdout, f"plan lacks {s!r}:\n{p.stdout}")
    p2 = run(["run", "--dry-run", "--config", cfg], cwd)
    check(p2.stdout == p.stdout, "run --dry-run differs from validate")
    check(os.listdir(cwd) == [], "validate created files")
    shutil.rmtree(cwd)


def t_cores():
    cwd = tmpdir()
    cfg = write(os.path.join(cwd, "c.yaml"), """target: "file://./data/"
duration: 2s
concurrency: 3
prepare:
  ensure_objects:
    - { base_uri: "file://./data/p/", count: 10, size_spec: 1KiB }
  cleanup: true
workload:
  - { op: get, path: "p/*", weight: 1 }
  - { op: delete, path: "p/", weight: 1 }
""")
    dirs = set()
    for cores in ("1", "2"):
        p = run(["--cores", cores, "run", "--config", cfg], cwd)
        check(f"{cores} core" in p.stdout, p.stdout)
        d = results_dir(p, cwd)
        dirs.add(d)
        rows = check_results_tsv(os.path.join(d, "results.tsv"))
        # DELETE never picks an object twice: exactly the 10 prepared objects, no DELETE errors.
        # A GET may race a DELETE of the same object and see "object not found"; nothing else.
        check(int(rows[("DELETE", "ALL")][12]) == 10, f"DELETE count {rows[('DELETE', 'ALL')][12]}")
        drow = [l.split() for l in p.stdout.splitlines() if l.startswith("  DELETE ")]
        check(len(drow) == 1 and drow[0][-1] == "0", "errors during delete: " + p.stdout)
        for l in p.stdout.splitlines():
            if "error x" in l:
                check(l.strip().split(": ", 1)[1] == "object not found", "unexpected error: " + p.stdout)
    # a second run in the same minute gets its own results directory
    check(len(dirs) == 2, f"runs shared a results directory: {dirs}")
    shutil.rmtree(cwd)


def t_valgrind():
    vg = shutil.which("valgrind")
    check(vg, "valgrind is not installed (scripts/deps.sh installs it)")
    cwd = tmpdir()
    cfg = write(os.path.join(cwd, "vg.yaml"), """target: "file://./data/"
duration: 2s
concurrency: 4
io_rate: { iops: 200 }
prepare:
  ensure_objects:
    - { base_uri: "file://./data/p/", count: 50, size_spec: { type: uniform, min: 1, max: 20000 } }
  cleanup: true
workload:
  - { op: get, path: "p/*", weight: 4 }
  - { op: put, path: "n/", object_size: 3000, weight: 2 }
  - { op: stat, path: "p/", weight: 1 }
  - { op: list, path: "p/", weight: 1 }
  - { op: delete, path: "p/", weight: 1 }
  - { op: mkdir, path: "d/", weight: 1 }
  - { op: rmdir, path: "d/", weight: 1 }
""")
    p = subprocess.run([vg, "--error-exitcode=99", "--leak-check=full",
                        "--errors-for-leak-kinds=definite,indirect", "-q", CTL, "run", "--config", cfg],
                       cwd=cwd, capture_output=True, text=True, timeout=240)
    if p.returncode != 0:
        print(p.stdout[-3000:])
        print(p.stderr[-6000:])
        fail(f"valgrind run exited {p.returncode}")
    check("Results saved to:" in p.stdout, "run did not finish")
    check(files_under(os.path.join(cwd, "data")) == 0, "cleanup left files")
    shutil.rmtree(cwd)


def t_listed():
    """GET/STAT/DELETE on data prepare did not make: globs resolved by one listing."""
    cwd = tmpdir()
    for i in range(40):
        write(os.path.join(cwd, "data/other/sub", f"f{i:03d}.bin"), "x" * (1000 + i))
        write(os.path.join(cwd, "data/other", f"g{i:03d}.bin"), "y" * 3000)
        write(os.path.join(cwd, "data/other", f"skip{i:03d}.txt"), "z")
    cfg = write(os.path.join(cwd, "l.yaml"), """target: "file://./data/"
duration: 5s
concurrency: 4
workload:
  - { op: get, path: "other/**/f*.bin", weight: 5 }
  - { op: stat, path: "other/sub/f0[0-1]?.bin", weight: 5 }
  - { op: delete, path: "other/g*.bin", weight: 1 }
""")
    p = run(["run", "--config", cfg], cwd)
    check("GET file://./data/other/**/f*.bin: 40 objects" in p.stdout, p.stdout)
    check("STAT file://./data/other/sub/f0[0-1]?.bin: 20 objects" in p.stdout, p.stdout)
    check("DELETE file://./data/other/g*.bin: 40 objects" in p.stdout, p.stdout)
    rows = check_results_tsv(os.path.join(results_dir(p, cwd), "results.tsv"))
    avg = float(rows[("GET", "ALL")][9])
    check(1000 <= avg <= 1039, f"GET read other files: avg {avg}")
    # DELETE consumed each listed object exactly once, with no errors
    check(int(rows[("DELETE", "ALL")][12]) == 40, f"DELETE count {rows[('DELETE', 'ALL')][12]}")
    check("error x" not in p.stdout, p.stdout)
    check(not any(f.startswith("g") for f in os.listdir(os.path.join(cwd, "data/other"))),
          "g*.bin left")
    check(len([f for f in os.listdir(os.path.join(cwd, "data/other")) if f.endswith(".txt")]) == 40,
          "txt files touched")
    bad = write(os.path.join(cwd, "none.yaml"), open(cfg).read().replace("f*.bin", "nomatch*.bin"))
    p = run(["run", "--config", bad], cwd, expect=1)
    check("matches no objects" in p.stderr, p.stderr)
    shutil.rmtree(cwd)


def t_util():
    """util ls/stat/get/put/rm/health on file://, with exact sizes, counts and exit codes."""
    cwd = tmpdir()
    d = os.path.join(cwd, "store")
    base = f"file://{d}/"

    def lines(p):
        return p.stdout.splitlines()

    def summary(p, op):
        m = [l for l in lines(p) if l.startswith(op + ": ")]
        check(len(m) == 1, f"no single {op} summary line:\n{p.stdout}")
        r = re.match(op + r": (\d+) ops, (\d+) errors, mean [^,]+, p50 [^,]+, p99 [^,]+, max [^,]+"
                     r"(?:, (\d+) bytes, ([\d.]+) MiB/s)?$", m[0])
        check(r, f"bad summary line {m[0]!r}")
        return int(r.group(1)), int(r.group(2)), None if r.group(3) is None else int(r.group(3))

    # put: one object, then 5 numbered objects with 2 in flight
    p = run(["util", "put", base + "one.dat", "--size", "4KiB"], cwd)
    check(os.path.getsize(os.path.join(d, "one.dat")) == 4096, "put one.dat size")
    check("bytes: 4096" in lines(p), p.stdout)
    check(summary(p, "PUT") == (1, 0, 4096), p.stdout)
    check(open(os.path.join(d, "one.dat"), "rb").read().count(0) < 1024, "fill random wrote zeros")
    p = run(["util", "put", base + "many/", "--size", "1000", "--count", "5", "--concurrency", "2",
             "--fill", "zero"], cwd)
    names = sorted(os.listdir(os.path.join(d, "many")))
    check(names == [f"util-{i:08d}.dat" for i in range(5)], f"put --count names: {names}")
    for n in names:
        check(open(os.path.join(d, "many", n), "rb").read() == bytes(1000), f"{n}: not 1000 zeros")
    check(summary(p, "PUT") == (5, 0, 5000), p.stdout)
    run(["util", "put", base + "many/sub/x.dat", "--size", "10"], cwd)

    # ls: a directory level, recursive, a key prefix, --limit
    p = run(["util", "ls", base], cwd)
    ent = [l for l in lines(p) if "\t" in l]
    check(ent == ["DIR\tmany/", "4096\tone.dat"], f"ls entries: {ent}")
    check("total: 1 object, 1 directory, 4096 bytes (4.00 KiB)" in lines(p), p.stdout)
    check(summary(p, "LIST") == (1, 0, None), p.stdout)
    p = run(["util", "ls", "-r", base + "many/"], cwd)
    ent = [l for l in lines(p) if "\t" in l]
    check(ent == [f"1000\tutil-{i:08d}.dat" for i in range(5)] + ["10\tsub/x.dat"] or
          ent == ["10\tsub/x.dat"] + [f"1000\tutil-{i:08d}.dat" for i in range(5)],
          f"ls -r entries: {ent}")
    check("total: 6 objects, 0 directories, 5010 bytes (4.89 KiB)" in lines(p), p.stdout)
    p = run(["util", "ls", base + "many/util-0000000"], cwd)
    check(len([l for l in lines(p) if l.startswith("1000\tutil-")]) == 5, p.stdout)
    p = run(["util", "ls", base + "many/", "--recursive", "--limit", "2"], cwd)
    check(len([l for l in lines(p) if "\t" in l]) == 2, p.stdout)
    check(any(l.endswith("; 4 more entries not shown (--limit 2)") for l in lines(p)), p.stdout)
    p = run(["util", "ls", base + "nothing-here/"], cwd)
    check("total: 0 objects, 0 directories, 0 bytes" in lines(p), p.stdout)

    # stat
    p = run(["util", "stat", base + "one.dat"], cwd)
    check(f"uri: {base}one.dat" in lines(p) and "size: 4096 (4.00 KiB)" in lines(p), p.stdout)
    check(any(l.startswith("latency: ") for l in lines(p)), p.stdout)
    check(summary(p, "HEAD") == (1, 0, None), p.stdout)
    p = run(["util", "stat", base + "many/util-00000003.dat", "--count", "10", "--concurrency", "3"],
            cwd)
    check("size: 1000" in lines(p) and summary(p, "HEAD") == (10, 0, None), p.stdout)
    p = run(["util", "stat", base + "missing.dat"], cwd, expect=1)
    check(f"sai3bench-ctl: util stat: {base}missing.dat: object not found" in p.stderr, p.stderr)
    check(summary(p, "HEAD") == (1, 1, None), p.stdout)

    # get: whole object, ranges, repeated
    p = run(["util", "get", base + "one.dat"], cwd)
    check("bytes: 4096" in lines(p) and summary(p, "GET") == (1, 0, 4096), p.stdout)
    for rng, want in (("100-199", 100), ("4000+1000", 96), ("1KiB-", 3072), ("0+1", 1)):
        p = run(["util", "get", base + "one.dat", "--range", rng], cwd)
        check(f"bytes: {want}" in lines(p) and summary(p, "GET") == (1, 0, want), f"{rng}: {p.stdout}")
    p = run(["util", "get", base + "one.dat", "--count", "4", "--concurrency", "2"], cwd)
    check(summary(p, "GET") == (4, 0, 16384), p.stdout)
    p = run(["util", "get", base + "one.dat", "--range=5000-5100"], cwd, expect=1)
    check("util get:" in p.stderr and "beyond the end" in p.stderr, p.stderr)
    p = run(["util", "get", base + "gone.dat"], cwd, expect=1)
    check(f"util get: {base}gone.dat: object not found" in p.stderr, p.stderr)

    # rm: one object, a missing one, then everything under a prefix
    p = run(["util", "rm", base + "one.dat"], cwd)
    check("removed 1 object" in lines(p) and not os.path.exists(os.path.join(d, "one.dat")), p.stdout)
    check(summary(p, "DELETE") == (1, 0, None), p.stdout)
    p = run(["util", "rm", base + "one.dat"], cwd, expect=1)
    check("object not found" in p.stderr, p.stderr)
    p = run(["util", "rm", "-r", base + "many/", "--concurrency", "3"], cwd)
    check(f"removed 6 objects and 1 directory under {base}many/" in lines(p), p.stdout)
    check(summary(p, "DELETE") == (6, 0, None), p.stdout)
    check(os.listdir(os.path.join(d, "many")) == [], "rm -r left files")
    p = run(["util", "rm", "-r", base + "many/"], cwd)
    check(f"removed 0 objects under {base}many/" in lines(p), p.stdout)

    # health
    p = run(["util", "health", base], cwd)
    check(re.match(r"^OK " + re.escape(base) + r" \(\d+(\.\d+)? (ns|us|ms|s)\)$", p.stdout.strip()),
          p.stdout)
    p = run(["util", "health", "foo://bucket/"], cwd, expect=1)
    check(p.stdout.startswith("FAIL foo://bucket/: ") and "scheme" in p.stdout, p.stdout)
    if os.path.isdir("/dev/shm"):
        shm = tmpdir("/dev/shm")
        p = run(["util", "health", f"direct://{shm}/"], cwd, expect=1)
        check(p.stdout.startswith(f"FAIL direct://{shm}/: ") and "tmpfs" in p.stdout, p.stdout)
        shutil.rmtree(shm)

    # bad usage: exit 2 with a pointer to the help, and nothing created
    before = sorted(os.listdir(d))
    for args in (["util"], ["util", "frob", base], ["util", "ls"], ["util", "put", base + "x"],
                 ["util", "get", base + "x", "--count", "0"], ["util", "ls", base, "--size", "1"],
                 ["util", "put", base + "x", "--size", "1", "--count", "2"],
                 ["util", "put", base + "y/", "--size", "1"], ["util", "get", base + "x", "-o", "f"],
                 ["util", "get", base + "x", "--range", "9-3"], ["util", "put", base + "x",
                 "--size", "12 parsecs"], ["util", "stat", base], ["util", "rm", base],
                 ["util", "ls", "not-a-uri"], ["util", "ls", base, base],
                 ["util", "stat", base + "x", "--concurrency", "lots"]):
        p = run(args, cwd, expect=2)
        check(args == ["util"] or "run 'sai3bench-ctl util --help'" in p.stderr,
              f"{args}: {p.stderr}")
    check(sorted(os.listdir(d)) == before, "bad usage created files")
    p = run(["util", "--help"], cwd)
    for sub in ("ls URI", "stat URI", "get URI", "put URI", "rm URI", "health URI"):
        check(sub in p.stdout, f"util --help lacks {sub!r}")
    check("util " in run(["--help"], cwd).stdout, "--help does not mention util")
    shutil.rmtree(cwd)


TESTS = {
    "listed": t_listed,
    "util": t_util,
    "valgrind": t_valgrind,
    "quickstart": t_quickstart, "direct": t_direct, "direct-tmpfs": t_direct_tmpfs,
    "bad-config": t_bad_config, "cli": t_cli, "interrupt": t_interrupt, "io-rate": t_io_rate,
    "max-errors": t_max_errors, "retries": t_retries, "prepare-skip": t_prepare_skip,
    "examples": t_examples, "validate": t_validate, "cores": t_cores,
}

if __name__ == "__main__":
    TESTS[NAME]()
    print("ok")
