#!/usr/bin/env python3
"""HTTP benchmark (not a test): GET of a 4 KiB object from nginx on loopback, 64 connections,
sai3bench-ctl over HTTP/1.1 next to wrk and h2load --h1, and over h2c (10 streams per
connection) next to h2load -m10, in the same run, plus the client CPU cost of a SigV4-signed
1 KiB PUT. Prints requests/s, client CPU-microseconds per request and the
ratios to the references. Never fails on numbers.

usage: test/bench/http.sh [--secs N] [--conns N] [--ctl PATH]
"""
import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import servers  # noqa: E402


def cpu_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd, env=None, cwd=None):
    """Runs cmd to completion; returns (stdout, client CPU seconds)."""
    c0 = cpu_children()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    cpu = cpu_children() - c0
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return p.stdout, cpu


def wrk(url, conns, secs):
    out, cpu = timed(["wrk", "-t2", f"-c{conns}", f"-d{secs}s", url])
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    n = int(re.search(r"(\d+) requests in", out).group(1))
    return rps, cpu / n * 1e6


def h2load(url, conns, secs, extra):
    out, cpu = timed(["h2load", *extra, f"-c{conns}", "-t2", "-D", str(secs), url])
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    done = int(re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
               .group(2))
    return float(m.group(1)), cpu / max(done, 1) * 1e6


def sai3(ctl, cwd, cfg_text, env, op):
    cfg = os.path.join(cwd, "bench.yaml")
    with open(cfg, "w") as f:
        f.write(cfg_text)
    out, cpu = timed([ctl, "run", "--config", cfg], env=env, cwd=cwd)
    d = re.search(r"^Results saved to: (.+)$", out, re.M).group(1)
    rows = [l.split("\t") for l in open(os.path.join(cwd, d, "results.tsv")).read().splitlines()]
    row = [r for r in rows if r[0] == op and r[1] == "ALL"][0]
    ops = int(row[12])
    errs = re.search(rf"^  {op}\s.*\s(\d+)$", out, re.M)
    if errs and int(errs.group(1)):
        sys.exit(f"sai3bench-ctl had errors:\n{out}")
    return float(row[10]), cpu / ops * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--ctl", default=os.path.join(HERE, "..", "..", "build", "apps", "ctl",
                                                  "sai3bench-ctl"))
    a = ap.parse_args()
    ctl = os.path.abspath(a.ctl)
    for tool in ("wrk", "h2load"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing (scripts/deps.sh installs wrk and nghttp2-client)")
    work = tempfile.mkdtemp(prefix="sai3-bench-http-")
    try:
        with servers.Nginx(work) as ng:
            os.makedirs(os.path.join(ng.data, "bkt"))
            with open(os.path.join(ng.data, "bkt", "obj4k"), "wb") as f:
                f.write(os.urandom(4096))
            url = f"{ng.http_url}/bkt/obj4k"
            anon = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
            anon["AWS_SHARED_CREDENTIALS_FILE"] = os.path.join(work, "none")
            signed = dict(anon, AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
                          AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
            get_cfg = f"""target: "s3://127.0.0.1:{ng.http_port}/bkt/"
duration: {a.secs}s
concurrency: {a.conns}
http: {{ max_connections: {a.conns} }}
workload:
  - {{ op: get, path: "obj4k", weight: 1 }}
"""
            h2_cfg = f"""target: "s3://127.0.0.1:{ng.h2c_port}/bkt/"
duration: {a.secs}s
concurrency: {a.conns * 10}
http: {{ version: "2", h2_max_streams: 10, max_connections: {a.conns} }}
workload:
  - {{ op: get, path: "obj4k", weight: 1 }}
"""
            put_cfg = f"""target: "s3://127.0.0.1:{ng.http_port}/bkt/"
duration: {a.secs}s
concurrency: {a.conns}
workload:
  - {{ op: put, path: "put/", object_size: 1KiB, weight: 1 }}
"""
            res = {}
            print(f"GET 4 KiB from nginx, {a.conns} connections, {a.secs} s each, "
                  f"client and nginx (2 workers) on the same {os.cpu_count()} CPUs", file=sys.stderr)
            res["wrk"] = wrk(url, a.conns, a.secs)
            res["h2load --h1"] = h2load(url, a.conns, a.secs, ["--h1"])
            res["sai3bench-ctl HTTP/1.1"] = sai3(ctl, work, get_cfg, anon, "GET")
            h2url = f"{ng.h2c_url}/bkt/obj4k"
            res["h2load -m10 (h2c)"] = h2load(h2url, a.conns, a.secs, ["-m10"])
            res["sai3bench-ctl h2c x10"] = sai3(ctl, work, h2_cfg, anon, "GET")
            put_anon = sai3(ctl, work, put_cfg, anon, "PUT")
            put_signed = sai3(ctl, work, put_cfg, signed, "PUT")
        sig = os.path.join(os.path.dirname(ctl), "..", "..", "test", "bench", "sigv4_bench")
        sign_us = float(subprocess.run([sig], capture_output=True, text=True, check=True).stdout)

        print(f"{'client':<28}{'req/s':>12}{'CPU-us/req':>14}")
        for k, (rps, cpu) in res.items():
            print(f"{k:<28}{rps:>12.0f}{cpu:>14.2f}")
        for ours, ref in (("sai3bench-ctl HTTP/1.1", "wrk"), ("sai3bench-ctl HTTP/1.1", "h2load --h1"),
                          ("sai3bench-ctl h2c x10", "h2load -m10 (h2c)")):
            s_rps, s_cpu = res[ours]
            r_rps, r_cpu = res[ref]
            print(f"{ours} / {ref}: throughput {s_rps / r_rps:.2f}x, "
                  f"CPU per request {s_cpu / r_cpu:.2f}x (goal: >= 0.9x throughput, <= 1.25x CPU)")
        print(f"PUT 1 KiB: anonymous {put_anon[0]:.0f} ops/s {put_anon[1]:.2f} CPU-us/op; "
              f"SigV4-signed {put_signed[0]:.0f} ops/s {put_signed[1]:.2f} CPU-us/op "
              f"(difference {put_signed[1] - put_anon[1]:.2f}; PUT figures move with nginx's disk)")
        print(f"SigV4 signing of one request (sto_s3_request_build, key cached): {sign_us:.2f} CPU-us")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
