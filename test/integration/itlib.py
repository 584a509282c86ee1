"""Helpers shared by the integration checks (checks.py, s3_checks.py): failing with a message,
running sai3bench-ctl, and reading what a run leaves behind."""
import os
import re
import subprocess
import sys
import tempfile


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def run_ctl(ctl, args, cwd, env=None, timeout=240, expect=0):
    """Runs CTL ARGS; fails (printing the output tails) unless it exits with `expect` (None:
    any exit status)."""
    p = subprocess.run([ctl] + args, cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout)
    if expect is not None and p.returncode != expect:
        print(p.stdout[-4000:])
        print(p.stderr[-4000:])
        fail(f"{' '.join(args)}: exit {p.returncode}, expected {expect}")
    return p


def results_dir(p, cwd):
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    check(lines, "no output")
    m = re.match(r"^Results saved to: (.+)$", lines[-1])
    check(m, f"last line is not 'Results saved to: <dir>': {lines[-1]!r}")
    d = os.path.join(cwd, m.group(1))
    check(os.path.isdir(d), f"results dir {d} missing")
    return d


def read_tsv(path):
    with open(path) as f:
        rows = [l.rstrip("\n").split("\t") for l in f if l.strip()]
    return rows[0], rows[1:]


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def tmpdir(base=None, prefix="sai3-it-"):
    return tempfile.mkdtemp(prefix=prefix, dir=base)


def console_errors(out):
    """op -> the errors column of the console's results table (counts may have thousands
    separators: "1,032")."""
    errs = {}
    for l in out.splitlines():
        m = re.match(r"^  (GET|PUT|LIST|STAT|DELETE|MKDIR|RMDIR)\s+([\d,]+)\s.*\s([\d,]+)$", l)
        if m:
            errs[m.group(1)] = int(m.group(3).replace(",", ""))
    return errs
