"""GCS GET benchmark (not a test): sai3bench-ctl vs wrk on the firebase storage emulator.

usage: python3 test/bench/gcs_get.py [--secs N] [--conc N] [--build DIR]
(run with /usr/bin/python3 or any Python; needs wrk, node and the pinned npm servers)

Both clients GET the same 4 KiB object with N requests in flight; prints requests/s and the ratio.
The emulator is a single Node thread, so both are bound by it: the figure shows what the client
adds, not what the client can do. No auth is involved (the emulator checks none)."""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "integration"))
import servers_gcs  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--secs", type=int, default=6)
ap.add_argument("--conc", type=int, default=16)
ap.add_argument("--build", default=os.path.join(here, "..", "..", "build-test"))
a = ap.parse_args()
ctl = os.path.join(a.build, "apps", "ctl", "sai3bench-ctl")
env = {k: v for k, v in os.environ.items()
       if k not in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST")}
with servers_gcs.GcsEmulator(tempfile.mkdtemp(prefix="sai3-gcsbench-")) as emu:
    ep = emu.endpoint
    subprocess.run([ctl, "util", "put", "gs://bench/b/x", "--size", "4096", "--endpoint", ep],
                   env=env, check=True, capture_output=True)
    w = subprocess.run(["wrk", "-t2", f"-c{a.conc}", f"-d{a.secs}s",
                        f"{ep}/storage/v1/b/bench/o/b%2Fx?alt=media"],
                       capture_output=True, text=True, check=True).stdout
    wrk = float(re.search(r"Requests/sec:\s+([\d.]+)", w).group(1))
    # sai3: as many GETs as wrk did in the same time, then its own rate
    n = int(wrk * a.secs)
    t0 = time.monotonic()
    s = subprocess.run([ctl, "--cores", "1", "util", "get", "gs://bench/b/x", "--count", str(n),
                        "--concurrency", str(a.conc), "--endpoint", ep],
                       env=env, capture_output=True, text=True, check=True)
    wall = time.monotonic() - t0  # includes process start and connect: a few ms
    m = re.search(r"GET: (\d+) ops, (\d+) errors, mean ([\d.]+) (us|ms)", s.stdout)
    if not m or m.group(2) != "0":
        sys.exit(f"sai3bench-ctl GETs failed:\n{s.stdout}")
    sai3 = int(m.group(1)) / wall
    print(f"4 KiB GET, {a.conc} in flight: wrk {wrk:,.0f} req/s; sai3bench-ctl {sai3:,.0f} ops/s "
          f"({int(m.group(1)):,} ops, mean {m.group(3)} {m.group(4)}); ratio {sai3 / wrk:.2f}")
