#!/usr/bin/env bash
# smallfile.sh: small-file (4 KiB) PUT/GET/STAT/DELETE benchmark of sai3bench-ctl against fio and
# a bare syscall loop, on tmpfs and on a disk filesystem. A benchmark, not a test: it never fails
# on numbers, only when a tool cannot run. See README.md beside it for how to read the output.
#
# usage: test/bench/smallfile.sh            (from anywhere; no root needed; about 3 minutes)
#
# Environment knobs (defaults in brackets):
#   SAI3_CTL        path of sai3bench-ctl         [<repo>/build/apps/ctl/sai3bench-ctl]
#   SAI3_CORES      pass --cores N to sai3bench-ctl [unset: the tool's default, all CPUs]
#   FILESYSTEMS     which of "tmpfs disk" to run  [tmpfs disk]
#   TMPFS_PARENT    parent dir for tmpfs runs     [/dev/shm]
#   DISK_PARENT     parent dir for disk runs      [/var/tmp]
#   THREADS         sai3 concurrency, fio numjobs, syscall-loop threads [4]
#   SAI3_SECS       sai3bench-ctl duration        [10]
#   SAI3_PROBE_SECS unmeasured sai3 probe run that sizes the delete pool [2]
#   FIO_SECS        fio runtime per op kind       [5]
#   LOOP_SECS       syscall-loop duration         [5]
#   NFILES          GET/STAT pool size (all tools) [20000]
#   LOOP_DEL_POOL   syscall-loop delete pool; if used up early, the loop's run ends there
#                   [300000 on tmpfs, 100000 elsewhere]
#   FIO_PUT_FILES   fio PUT files per job, at most (DELETE removes the ones made) [50000]
#   SETTLE_SECS     pause after sync between tools on a non-tmpfs filesystem [6]
#   KEEP_WORK=1     keep the scratch dir (results dirs, fio json, logs) and print its path
#
# What is measured, per filesystem, always in a fresh directory that is removed afterwards:
#   1. syscall_loop.c (built here with cc -O2 -pthread): T threads, random 25/25/25/25 mix, CPU
#      from its own getrusage(RUSAGE_SELF) around the loop. If its delete pool runs out first it
#      stops there, so its window can be shorter than LOOP_SECS (the mix stays 25% each).
#   2. sai3bench-ctl: a short unmeasured probe run (own directory) whose DELETE rate sizes the
#      delete pool; then --prepare-only, the measured run with --skip-prepare --no-cleanup, and
#      --cleanup-only. Client CPU = user+sys of the measured run's process alone (os.wait4), so
#      process start, config parsing and writing results are in it (small next to 10 s).
#   3. fio, one op kind at a time with THREADS jobs (see the fio notes below).
#
# Not identical between the tools (read before comparing):
#   * Mix: sai3bench-ctl and syscall_loop run the four ops mixed, concurrently, picked at random
#     per op. fio runs them kind by kind (PUT, GET, STAT, DELETE). fio's "total" row is therefore
#     derived, not measured: the rate of a 25/25/25/25 mix made of the four measured kind rates,
#     1 / mean(1/rate_i), and CPU-us/op = mean of the four kinds' CPU-us/op.
#   * Per-op CPU: only fio (one kind per run) can attribute CPU to an op kind. For the mixed tools
#     the per-op rows show "-" and only the total row has CPU-us/op.
#   * fio PUT: psync, rw=write, create_on_open=1, openfiles=1, file_service_type=sequential,
#     filesize=bs=4k: per file exactly openat(O_RDWR|O_CREAT) + pwrite(4 KiB) + close, checked
#     with strace. No O_TRUNC (the files are new, so it makes no difference). Count-based: it stops
#     after FIO_PUT_FILES files per job or FIO_SECS, whichever comes first; fio stats every file 3
#     times before the job starts (not in the job's runtime or CPU).
#     (ioengine=filecreate was not used: it only opens/creates, it writes no data.)
#   * fio GET: psync, rw=read, openfiles=1, file_service_type=sequential, invalidate=0,
#     fadvise_hint=0, time_based: per file openat(O_RDONLY) + pread(4 KiB) + close (strace), looping
#     over the pool. invalidate=0 keeps the page cache (fio's default drops it per file with
#     fadvise DONTNEED, which would turn disk GETs into device reads, unlike the other tools).
#     file_service_type=random was not used: with openfiles=1 fio then spends ~95% of its CPU in
#     its own file picking (about 30x fewer ops than sequential on tmpfs), a fio artefact.
#     Sequential order over each job's own files, whereas the other tools pick files at random.
#   * fio STAT: ioengine=filestat (stat(2) per file), time_based, over the GET pool.
#   * fio DELETE: ioengine=filedelete (unlink(2) per file), count-based (a file can be deleted
#     once): it deletes the files the PUT job made (nrfiles = the smallest per-job PUT count, so
#     fio has nothing to lay out). It runs for however long that takes, often under FIO_SECS.
#   * fio pools: each fio job has its own NFILES/THREADS files; the other tools share one pool of
#     NFILES between threads, and one flat directory per set.
#   * fio CPU: usr_cpu and sys_cpu of each job (percent of that job's runtime, from the job
#     process's rusage) times job_runtime, summed over jobs. fio's main process (status, setup)
#     is not counted; sai3bench-ctl's whole process is.
#   * Names: syscall_loop and sai3bench-ctl use prepared-%08d.dat in flat directories; fio uses
#     short names pool.<job>.<n>. Path lookup cost differs slightly.
#   * Disk runs go through the page cache (no O_DIRECT, no fsync) for all three tools; dirty data
#     written back during a later tool's run can disturb it, so the script syncs between tools.
#   * ext4 without a journal (as on some VMs; `stat -f` shows "ext2/ext3") will not reuse an inode
#     freed in the last 5 s (305 s while its inode-table block is still dirty) and scans for
#     another, so file creation right after mass deletion gets very slow (seen: 500 us of CPU per
#     open(O_CREAT)), and a run that creates files in a block group where many were deleted in
#     the last minutes crawls (seen: 6.7k instead of 100k ops/s). Hence: the base directory gets
#     chattr +T (ext4 "top directory": Orlov spreads its subdirectories over block groups, chosen
#     by a hash of the name) and each tool works in a subdirectory with a random name, so it lands
#     in a group with no recent deletions; and sync + SETTLE_SECS pause between tools.
#     Inside the mixed runs (sai3, syscall) PUT still competes with the run's own DELETEs; fio's
#     PUT runs alone and does not, which favours fio's disk PUT.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export SAI3_CTL=${SAI3_CTL:-$ROOT/build/apps/ctl/sai3bench-ctl}
export FILESYSTEMS=${FILESYSTEMS:-tmpfs disk}
export TMPFS_PARENT=${TMPFS_PARENT:-/dev/shm}
export DISK_PARENT=${DISK_PARENT:-/var/tmp}
export THREADS=${THREADS:-4} SAI3_SECS=${SAI3_SECS:-10} FIO_SECS=${FIO_SECS:-5}
export LOOP_SECS=${LOOP_SECS:-5} NFILES=${NFILES:-20000} LOOP_DEL_POOL=${LOOP_DEL_POOL:-}
export SETTLE_SECS=${SETTLE_SECS:-6} SAI3_PROBE_SECS=${SAI3_PROBE_SECS:-2}
export FIO_PUT_FILES=${FIO_PUT_FILES:-50000} SAI3_CORES=${SAI3_CORES:-} KEEP_WORK=${KEEP_WORK:-0}

for tool in cc fio python3; do
    command -v "$tool" >/dev/null || { echo "smallfile.sh: '$tool' not found" >&2; exit 1; }
done
[ -x "$SAI3_CTL" ] || {
    echo "smallfile.sh: $SAI3_CTL not built (cd $ROOT && ninja -C build apps/ctl/sai3bench-ctl)" >&2
    exit 1
}

# Everything this script creates lives in WORK (binary, configs, logs, sai3 results dirs) or in
# the per-filesystem data dirs listed in WORK/datadirs; the trap removes them all.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sai3-bench-work-XXXX")
export WORK
cleanup() {
    if [ -f "$WORK/datadirs" ]; then
        while IFS= read -r d; do [ -n "$d" ] && rm -rf -- "$d"; done <"$WORK/datadirs"
        sync  # leave clean inode tables behind (see the ext4 note above)
    fi
    if [ "$KEEP_WORK" = 1 ]; then
        echo "smallfile.sh: kept $WORK" >&2
    else
        rm -rf -- "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cc -O2 -pthread -o "$WORK/syscall_loop" "$HERE/syscall_loop.c"

python3 - <<'PY'
import json, math, os, re, subprocess, sys, tempfile, time

E = os.environ
CTL, WORK = E["SAI3_CTL"], E["WORK"]
T, NFILES = int(E["THREADS"]), int(E["NFILES"])
SAI3_SECS, FIO_SECS, LOOP_SECS = int(E["SAI3_SECS"]), int(E["FIO_SECS"]), int(E["LOOP_SECS"])
FIO_PUT_FILES = int(E["FIO_PUT_FILES"])
SETTLE_SECS = float(E["SETTLE_SECS"])
PROBE_SECS = int(E["SAI3_PROBE_SECS"])
CORES = ["--cores", E["SAI3_CORES"]] if E["SAI3_CORES"] else []
OPS = ["PUT", "GET", "STAT", "DELETE"]
SIZE = 4096
t_start = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - t_start:6.1f}s] {msg}", file=sys.stderr, flush=True)


def run(cmd, logname, cwd=None):
    """Run cmd with output to WORK/logname; return (stdout text, user+sys CPU s of that child)."""
    path = os.path.join(WORK, logname)
    with open(path, "w") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    text = open(path).read()
    if p.returncode != 0:
        sys.stderr.write(text[-3000:])
        raise SystemExit(f"smallfile.sh: {' '.join(cmd)} failed with status {p.returncode} "
                         f"(log {path})")
    return text, ru.ru_utime + ru.ru_stime


def syscall_loop(base, pool):
    d = tempfile.mkdtemp(prefix="loop-", dir=base)  # random name: see the ext4 note
    out, _ = run([os.path.join(WORK, "syscall_loop"), d, str(NFILES), str(SIZE), str(T),
                  str(LOOP_SECS), str(pool)], "loop.log")
    res = {}
    for m in re.finditer(r"^RESULT (.*)$", out, re.M):
        kv = dict(x.split("=", 1) for x in m.group(1).split())
        res[kv["op"]] = kv
    tot = res["TOTAL"]
    rows = {op: (float(res[op]["ops_per_sec"]), None) for op in OPS}
    rows["total"] = (float(tot["ops_per_sec"]), float(tot["cpu_us_per_op"]))
    notes = [f"syscall: {tot['count']} ops in {float(tot['elapsed_s']):.2f} s"]
    if tot["del_exhausted"] != "0":
        notes[0] += f" (delete pool of {pool} used up: run ended early)"
    if tot["errors"] != "0":
        notes.append(f"syscall: {tot['errors']} failed ops")
    return rows, float(res["DELETE"]["ops_per_sec"]), notes


def sai3_cfg(d, name, secs, pool):
    uri = "file://" + d + "/"
    cfg = os.path.join(WORK, f"sai3-{name}.yaml")
    with open(cfg, "w") as f:
        f.write(f"""target: "{uri}"
duration: {secs}s
concurrency: {T}
prepare:
  ensure_objects:
    - {{ base_uri: "{uri}objs/", count: {NFILES}, size_spec: 4KiB, fill: random }}
    - {{ base_uri: "{uri}del/", count: {pool}, size_spec: 4KiB, fill: zero }}
  cleanup: true
workload:
  - {{ op: put,    path: "new/", object_size: 4KiB, weight: 25 }}
  - {{ op: get,    path: "objs/", weight: 25 }}
  - {{ op: stat,   path: "objs/", weight: 25 }}
  - {{ op: delete, path: "del/", weight: 25 }}
""")
    return CORES + ["run", "--config", cfg, "--results-dir", WORK, "--tsv-name"]


def sai3_results(out):
    m = re.findall(r"Results saved to: (.*)", out)
    if not m:
        raise SystemExit("smallfile.sh: sai3bench-ctl printed no 'Results saved to:' line")
    rdir = m[-1].strip()
    if not os.path.isabs(rdir):
        rdir = os.path.join(WORK, rdir)
    rates, counts = {}, {}
    with open(os.path.join(rdir, "results.tsv")) as f:
        hdr = f.readline().split()
        for line in f:
            r = dict(zip(hdr, line.split()))
            if r.get("size_bucket") == "ALL" and r["operation"] in OPS:
                rates[r["operation"]] = float(r["ops_per_sec"])
                counts[r["operation"]] = int(r["count"])
    return rates, counts


def sai3(base, fsname, loop_del_rate):
    # The delete pool must outlast the run, or DELETE drops out of the mix (the tool's documented
    # behaviour), which changes the mix. Preparing a pool sized from the bare loop's DELETE rate
    # would cost far more prepare time than the run itself, so a short probe run (own directory,
    # not measured, removed right away) measures sai3bench-ctl's own DELETE rate first; the
    # measured run's pool is 1.3x that rate times SAI3_SECS.
    pd = tempfile.mkdtemp(prefix="sai3probe-", dir=base)
    ppool = max(5000, min(40000, int(loop_del_rate * PROBE_SECS * 1.2)))
    common = sai3_cfg(pd, f"{fsname}-probe", PROBE_SECS, ppool)
    log(f"{fsname}: sai3bench-ctl probe: prepare {NFILES} + {ppool} objects, run {PROBE_SECS} s")
    run([CTL] + common + [f"{fsname}-probe-prep", "--prepare-only"],
        f"sai3-{fsname}-probe-prep.log", cwd=WORK)
    out, _ = run([CTL] + common + [f"{fsname}-probe", "--skip-prepare", "--no-cleanup"],
                 f"sai3-{fsname}-probe.log", cwd=WORK)
    prates, pcounts = sai3_results(out)
    subprocess.run(["rm", "-rf", "--", pd], check=True)
    del_rate = prates.get("DELETE", 0.0)
    if pcounts.get("DELETE", 0) >= ppool or del_rate <= 0:
        del_rate = loop_del_rate  # probe pool ran out: fall back to the upper bound
    pool = max(10000, int(math.ceil(del_rate * SAI3_SECS * 1.3 / 1000.0)) * 1000)

    d = tempfile.mkdtemp(prefix="sai3-", dir=base)  # random name: see the ext4 note
    common = sai3_cfg(d, fsname, SAI3_SECS, pool)
    os.sync()
    log(f"{fsname}: sai3bench-ctl prepare ({NFILES} + {pool} objects)")
    run([CTL] + common + [f"{fsname}-prepare", "--prepare-only"],
        f"sai3-{fsname}-prepare.log", cwd=WORK)
    os.sync()
    log(f"{fsname}: sai3bench-ctl measured run ({SAI3_SECS} s)")
    out, cpu = run([CTL] + common + [f"{fsname}-run", "--skip-prepare", "--no-cleanup"],
                   f"sai3-{fsname}-run.log", cwd=WORK)
    rates, counts = sai3_results(out)
    log(f"{fsname}: sai3bench-ctl cleanup")
    run([CTL] + common + [f"{fsname}-cleanup", "--cleanup-only"],
        f"sai3-{fsname}-cleanup.log", cwd=WORK)
    total_ops = sum(counts.values())
    rows = {op: (rates.get(op, 0.0), None) for op in OPS}
    rows["total"] = (sum(rates.values()), cpu * 1e6 / total_ops if total_ops else float("nan"))
    notes = []
    missing = [op for op in OPS if op not in rates]
    if missing:
        notes.append(f"sai3: no results.tsv row for {', '.join(missing)}")
    notes.append(f"sai3: {total_ops} ops in the measured run, CPU {cpu:.2f} s, delete pool {pool} "
                 f"(from a {PROBE_SECS} s probe: {del_rate:,.0f} DELETE/s)")
    if counts.get("DELETE", 0) >= pool:
        notes.append(f"sai3: delete pool of {pool} used up; DELETE dropped out of the mix")
    return rows, notes


def fio_kind(d, fsname, kind, opts):
    job = os.path.join(WORK, f"fio-{fsname}-{kind}.fio")
    with open(job, "w") as f:
        # create_fsync=0: fio's own layout (GET/STAT pool; not measured) need not fsync each file
        f.write(f"[global]\ndirectory={d}\nfilesize=4k\nbs=4k\nnumjobs={T}\ncreate_fsync=0\n"
                f"file_service_type=sequential\n[{kind}]\n" + "".join(o + "\n" for o in opts))
    out, _ = run(["fio", "--output-format=json", f"--output={job}.json", job],
                 f"fio-{fsname}-{kind}.log")
    jobs = json.load(open(job + ".json"))["jobs"]
    per_job_ops = [j["read"]["total_ios"] + j["write"]["total_ios"] for j in jobs]
    ops = sum(per_job_ops)
    secs = max(j["job_runtime"] for j in jobs) / 1000.0
    cpu = sum((j["usr_cpu"] + j["sys_cpu"]) / 100.0 * j["job_runtime"] / 1000.0 for j in jobs)
    errs = sum(j.get("error", 0) != 0 for j in jobs)
    if errs or ops == 0:
        raise SystemExit(f"smallfile.sh: fio {kind} on {fsname} did no ops or failed (see {job}.json)")
    return ops / secs, cpu * 1e6 / ops, ops, secs, min(per_job_ops)


def fio(base, fsname):
    d = tempfile.mkdtemp(prefix="fio-", dir=base)  # random name: see the ext4 note
    per_job = max(1, NFILES // T)
    put = [f"filename_format=put.$jobnum.$filenum", f"nrfiles={FIO_PUT_FILES}"]
    pool = [f"filename_format=pool.$jobnum.$filenum", f"nrfiles={per_job}"]
    kinds = [
        ("PUT", put + ["ioengine=psync", "rw=write", "create_on_open=1", "openfiles=1",
                       f"runtime={FIO_SECS}"]),
        ("GET", pool + ["ioengine=psync", "rw=read", "openfiles=1", "invalidate=0",
                        "fadvise_hint=0", "time_based=1", f"runtime={FIO_SECS}"]),
        ("STAT", pool + ["ioengine=filestat", "time_based=1", f"runtime={FIO_SECS}"]),
        ("DELETE", ["filename_format=put.$jobnum.$filenum", "ioengine=filedelete"]),
    ]
    rows, notes = {}, []
    put_min = 0
    for kind, opts in kinds:
        if kind == "DELETE":  # exactly the files PUT made (sequentially, per job)
            opts = opts + [f"nrfiles={put_min}"]
        log(f"{fsname}: fio {kind}")
        rate, cpu_us, ops, secs, min_job_ops = fio_kind(d, fsname, kind, opts)
        if kind == "PUT":
            put_min = min_job_ops
        rows[kind] = (rate, cpu_us)
        notes.append(f"{kind} {ops} ops in {secs:.2f} s")
        os.sync()
    rows["total"] = (1.0 / (sum(1.0 / rows[k][0] for k in OPS) / 4),
                     sum(rows[k][1] for k in OPS) / 4)
    return rows, ["fio: " + "; ".join(notes)]


def fmt_rate(x):
    return f"{x:,.0f}"


def fmt_cpu(x):
    return "-" if x is None else f"{x:.2f}"


def table(fsname, base, fstype, results, notes):
    print(f"\n== {fsname}: {base} ({fstype}), {SIZE // 1024} KiB files, {T} threads/jobs ==")
    hdr = f"{'tool':<8} {'op':<7} {'ops/s':>11} {'CPU-us/op':>10} {'sai3/fio':>9} {'sai3/syscall':>13}"
    print(hdr)
    print("-" * len(hdr))
    s_tot = results["sai3"]["total"][0]
    for tool in ("sai3", "fio", "syscall"):
        for op in OPS + ["total"]:
            rate, cpu = results[tool][op]
            r1 = r2 = ""
            if tool == "sai3" and op == "total":
                r1 = f"{s_tot / results['fio']['total'][0]:.2f}"
                r2 = f"{s_tot / results['syscall']['total'][0]:.2f}"
            label = "total*" if tool == "fio" and op == "total" else op
            print(f"{tool:<8} {label:<7} {fmt_rate(rate):>11} {fmt_cpu(cpu):>10} {r1:>9} {r2:>13}")
    print("fio total* = 1/mean(1/rate) of the four kinds (fio runs them one at a time); "
          "fio CPU-us/op per kind, total = mean.")
    print("sai3 and syscall run the mix concurrently: CPU-us/op only for the total "
          "(process user+sys / all ops).")
    for n in notes:
        print("note: " + n)
    sys.stdout.flush()


def fstype_of(path):
    out = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True)
    return out.stdout.strip() or "?"


parents = {"tmpfs": E["TMPFS_PARENT"], "disk": E["DISK_PARENT"]}
outputs = []
load0 = os.getloadavg()
fs_list = E["FILESYSTEMS"].split()
for fsname in fs_list:
    base = tempfile.mkdtemp(prefix="sai3-bench-", dir=parents[fsname])
    with open(os.path.join(WORK, "datadirs"), "a") as f:
        f.write(base + "\n")
    fstype = fstype_of(base)
    if fstype != "tmpfs":
        # ext4 "top directory" flag; harmless where unsupported (see the ext4 note at the top)
        subprocess.run(["chattr", "+T", base], stderr=subprocess.DEVNULL, check=False)
    settle = 0.0 if fstype == "tmpfs" else SETTLE_SECS

    def between_tools():
        os.sync()
        if settle:
            log(f"{fsname}: sync done, settling {settle:g} s")
            time.sleep(settle)

    pool = int(E["LOOP_DEL_POOL"] or (300000 if fstype == "tmpfs" else 100000))
    log(f"{fsname}: syscall loop ({LOOP_SECS} s, delete pool {pool}) in {base}")
    loop_rows, del_rate, n1 = syscall_loop(base, pool)
    between_tools()
    sai3_rows, n2 = sai3(base, fsname, del_rate)
    between_tools()
    fio_rows, n3 = fio(base, fsname)
    subprocess.run(["rm", "-rf", "--", base], check=True)
    if fsname != fs_list[-1]:
        between_tools()
    results = {"sai3": sai3_rows, "fio": fio_rows, "syscall": loop_rows}
    outputs.append((fsname, base, fstype, results, n1 + n2 + n3))
    log(f"{fsname}: done")

print(f"\nsmallfile.sh: sai3bench-ctl {SAI3_SECS} s mixed, fio {FIO_SECS} s per kind, "
      f"syscall loop {LOOP_SECS} s mixed; {os.cpu_count()} CPUs; sai3 cores: "
      f"{E['SAI3_CORES'] or 'default'}")
busy = load0[0] > (os.cpu_count() or 1)
print(f"load average (1 min) at start: {load0[0]:.2f}"
      + ("  <- other processes were busy: numbers are noisy" if busy else ""))
for o in outputs:
    table(*o)
print(f"\n(total wall time {time.monotonic() - t_start:.0f} s)")
PY
