#!/usr/bin/env python3
"""Integration checks of the az:// backend against azurite (the Azure Storage emulator, which
verifies SharedKey and SAS signatures), through the real sai3bench-ctl. Objects are
cross-checked with an independent REST client (servers_az.py: SharedKey and account SAS
computed in Python from the REST reference).

usage: az_checks.py azurite CTL_BINARY SOURCE_ROOT
A missing node/azurite (or nginx) is a failure, never a skip.
"""
import base64
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import itlib  # noqa: E402
import servers  # noqa: E402
import servers_az  # noqa: E402
from itlib import check, console_errors, fail, read_tsv, results_dir, run_ctl, write  # noqa: E402

NAME, CTL, SRC = sys.argv[1], os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3])
ACCT = servers_az.DEV_ACCOUNT


def run(args, cwd, env, timeout=240, expect=0):
    return run_ctl(CTL, args, cwd, env, timeout, expect)


def read_results(d):
    _, rows = read_tsv(os.path.join(d, "results.tsv"))
    return {(r[0], r[1]): r for r in rows}


def util_summary(p, op):
    m = [l for l in p.stdout.splitlines() if l.startswith(op + ": ")]
    check(len(m) == 1, f"no single {op} summary line:\n{p.stdout}")
    r = re.match(op + r": (\d+) ops, (\d+) errors", m[0])
    check(r, f"bad summary line {m[0]!r}")
    return int(r.group(1)), int(r.group(2))


def ls_sizes(out, prefix=""):
    sizes = {}
    for l in out.splitlines():
        f = l.split("\t")
        if len(f) == 2 and f[0].isdigit():
            sizes[prefix + f[1]] = int(f[0])
    return sizes


MIXED = """target: "az://{acct}/{cont}/run/"
duration: 3s
concurrency: 8
s3: {{ multipart_threshold: 5MiB, part_size: 5MiB, part_concurrency: 3 }}
prepare:
  ensure_objects:
    - {{ base_uri: "az://{acct}/{cont}/run/p/", count: 36,
        size_spec: {{ type: uniform, min: 1, max: 70000 }} }}
    - {{ base_uri: "az://{acct}/{cont}/run/big/", count: 4, size_spec: 11MiB }}
  cleanup: true
workload:
  - {{ op: get, path: "p/*", weight: 40 }}
  - {{ op: get, path: "big/*", weight: 2 }}
  - {{ op: put, path: "w/", size_spec: {{ type: uniform, min: 1, max: 20000 }}, weight: 20 }}
  - {{ op: put, path: "wbig/", object_size: 6MiB, weight: 1 }}
  - {{ op: stat, path: "p/*", weight: 10 }}
  - {{ op: list, path: "p/", weight: 10 }}
  - {{ op: delete, path: "p/*", weight: 2 }}
"""


def check_run_errors(p):
    """Only the expected races: a GET, STAT or DELETE of an object a DELETE removed first."""
    errs = console_errors(p.stdout)
    check(errs and all(v == 0 for k, v in errs.items() if k not in ("GET", "STAT", "DELETE")),
          f"errors in the run:\n{p.stdout}")
    op = None
    for l in p.stdout[:p.stdout.find("Cleanup:")].splitlines():
        m = re.match(r"^  (GET|PUT|LIST|STAT|DELETE)\s", l)
        if m:
            op = m.group(1)
        if "error x" in l:
            check(op in ("GET", "STAT", "DELETE") and "object not found" in l,
                  f"unexpected {op} error: {l}\n{p.stdout}")


def t_workload(az, cwd):
    """prepare (small blobs by Put Blob, 11 MiB ones by Put Block + Put Block List), execute a
    GET/PUT/STAT/LIST/DELETE mix, cleanup; the connection string names the endpoint."""
    env = az.env(AZURE_STORAGE_CONNECTION_STRING=az.connection_string())
    cfg = write(os.path.join(cwd, "mixed.yaml"), MIXED.format(acct=ACCT, cont="wload"))
    # prepare only: the container is created at open (create_base), objects as the spec says
    p = run(["run", "--prepare-only", "--config", cfg], cwd, env)
    check("40 created" in p.stdout, p.stdout)
    objs = az.list_blobs("wload")
    small = {k: v for k, v in objs.items() if k.startswith("run/p/")}
    big = {k: v for k, v in objs.items() if k.startswith("run/big/")}
    check(sorted(small) == [f"run/p/prepared-{i:08d}.dat" for i in range(36)],
          f"azurite lists {sorted(objs)}")
    check(all(1 <= v <= 70000 for v in small.values()) and len(set(small.values())) > 5,
          f"sizes not from the uniform spec: {small}")
    check(sorted(big) == [f"run/big/prepared-{i:08d}.dat" for i in range(4)] and
          all(v == 11 << 20 for v in big.values()), f"big blobs: {big}")
    for name in big:
        ids = az.block_list("wload", name)
        check(len(ids) == 3, f"{name}: committed blocks {ids}, expected 3 of 5 MiB")
        raw = [base64.b64decode(i) for i in ids]
        check(all(len(r) == 24 and r.startswith(b"sai3") for r in raw), f"block ids {raw}")
        check([int(r[-11:]) for r in raw] == [0, 1, 2], f"block order {raw}")
    # what util ls reports agrees with the independent listing
    p = run(["util", "ls", "-r", f"az://{ACCT}/wload/run/"], cwd, env)
    check(ls_sizes(p.stdout, "run/") == objs, f"util ls and azurite disagree:\n{p.stdout}\n{objs}")
    # a whole blob read back is what was written: util get counts the bytes
    p = run(["util", "get", f"az://{ACCT}/wload/run/big/prepared-00000001.dat"], cwd, env)
    check("bytes: 11534336" in p.stdout.splitlines(), p.stdout)

    p = run(["run", "--config", cfg], cwd, env)
    d = results_dir(p, cwd)
    rows = read_results(d)
    for op in ("GET", "PUT", "LIST", "STAT", "DELETE"):
        check((op, "ALL") in rows and int(rows[(op, "ALL")][12]) > 0, f"no {op} ops:\n{p.stdout}")
    check("40 already present" in p.stdout, p.stdout)
    check_run_errors(p)
    m = re.search(r"Cleanup: (\d+) removed, (\d+) errors", p.stdout)
    check(m and int(m.group(2)) == 0, f"cleanup:\n{p.stdout}")
    left = az.list_blobs("wload")
    check(not left, f"objects left after cleanup: {sorted(left)[:5]}")


def t_util(az, cwd):
    """util put/get/stat/ls/rm/health with AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_KEY and the
    endpoint given as --endpoint (an IP-style URL: path-style, the account first)."""
    env = az.env(AZURE_STORAGE_ACCOUNT=ACCT, AZURE_STORAGE_KEY=az.key)
    ep = ["--endpoint", az.url]
    base = f"az://{ACCT}/bench/"
    # no container yet: health says so (util never creates containers)
    p = run(["util", "health", base] + ep, cwd, env, expect=1)
    check("ContainerNotFound" in p.stdout and "does not exist" in p.stdout, p.stdout)
    az.create_container("bench")
    p = run(["util", "health", base] + ep, cwd, env)
    check(p.stdout.startswith(f"OK {base}"), p.stdout)

    p = run(["util", "put", base + "u/", "--size", "64KiB", "--count", "12", "--concurrency", "4"]
            + ep, cwd, env)
    check(util_summary(p, "PUT") == (12, 0), p.stdout)
    objs = az.list_blobs("bench", "u/")
    check(objs == {f"u/util-{i:08d}.dat": 65536 for i in range(12)}, f"azurite has {objs}")
    # what we PUT is what azurite serves; what azurite stores we GET
    data = az.get_blob("bench", "u/util-00000003.dat")
    check(len(data) == 65536, "GET by the independent client")
    az.put_blob("bench", "ext/blob.bin", os.urandom(123457))
    p = run(["util", "get", base + "ext/blob.bin"] + ep, cwd, env)
    check("bytes: 123457" in p.stdout.splitlines(), p.stdout)
    p = run(["util", "get", base + "ext/blob.bin", "--range", "100-199"] + ep, cwd, env)
    check("bytes: 100" in p.stdout.splitlines(), p.stdout)
    p = run(["util", "get", base + "ext/blob.bin", "--range", "123400-"] + ep, cwd, env)
    check("bytes: 57" in p.stdout.splitlines(), p.stdout)
    p = run(["util", "get", base + "ext/blob.bin", "--count", "40", "--concurrency", "8"] + ep,
            cwd, env)
    check(util_summary(p, "GET") == (40, 0) and f"{40 * 123457} bytes" in p.stdout, p.stdout)
    # a range past the end: 416 InvalidRange
    p = run(["util", "get", base + "ext/blob.bin", "--range", "200000-200010"] + ep, cwd, env,
            expect=1)
    check("short read" in p.stderr and "416" in p.stderr and "InvalidRange" in p.stderr, p.stderr)
    p = run(["util", "stat", base + "ext/blob.bin"] + ep, cwd, env)
    check(re.search(r"^size:\s+123457", p.stdout, re.M), p.stdout)
    p = run(["util", "stat", base + "ext/nope.bin"] + ep, cwd, env, expect=1)
    check("not found" in p.stderr and "BlobNotFound" in p.stderr, p.stderr)
    # ls: one level with directories, recursive with sizes
    p = run(["util", "ls", base] + ep, cwd, env)
    check("DIR\text/" in p.stdout and "DIR\tu/" in p.stdout, p.stdout)
    p = run(["util", "ls", "-r", base] + ep, cwd, env)
    check(ls_sizes(p.stdout) == az.list_blobs("bench"), p.stdout)
    p = run(["util", "ls", base + "u/util-0000000"] + ep, cwd, env)
    check("total: 10 objects" in p.stdout, p.stdout)
    # rm: one, a missing one (Azure says BlobNotFound: an error), then -r
    run(["util", "rm", base + "u/util-00000000.dat"] + ep, cwd, env)
    check("u/util-00000000.dat" not in az.list_blobs("bench"), "rm did not delete")
    p = run(["util", "rm", base + "u/util-00000000.dat"] + ep, cwd, env, expect=1)
    check("not found" in p.stderr and "BlobNotFound" in p.stderr, p.stderr)
    p = run(["util", "rm", "-r", base + "u/"] + ep, cwd, env)
    check("removed 11 objects" in p.stdout, p.stdout)
    check(not az.list_blobs("bench", "u/"), "objects left after rm -r")

    # names that need percent-encoding in the path (signed as sent) and in the list prefix
    odd = ["sp ace+plus/\u00e9t\u00e9 (1).bin", "pct%25/c=d&e.bin", "x~y!z'*.bin"]
    for k in odd:
        run(["util", "put", base + "odd/" + k, "--size", "100"] + ep, cwd, env)
        p = run(["util", "stat", base + "odd/" + k] + ep, cwd, env)
        check(re.search(r"^size:\s+100\b", p.stdout, re.M), p.stdout)
    check(az.list_blobs("bench", "odd/") == {"odd/" + k: 100 for k in odd},
          f"azurite has {az.list_blobs('bench', 'odd/')}")
    p = run(["util", "ls", base + "odd/sp ace+plus/"] + ep, cwd, env)
    check("100\t\u00e9t\u00e9 (1).bin" in p.stdout, p.stdout)
    p = run(["util", "rm", "-r", base + "odd/"] + ep, cwd, env)
    check("removed 3 objects" in p.stdout, p.stdout)

    # a wrong key: 403 from azurite, said clearly, exit 1
    wrong = base64.b64encode(b"\x01" * 64).decode()
    bad = az.env(AZURE_STORAGE_ACCOUNT=ACCT, AZURE_STORAGE_KEY=wrong)
    for sub in (["get", base + "ext/blob.bin"], ["stat", base + "ext/blob.bin"]):
        p = run(["util"] + sub + ep, cwd, bad, expect=1)
        check("permission denied" in p.stderr and "HTTP 403" in p.stderr and
              "check the account key" in p.stderr, p.stderr)
    p = run(["util", "get", base + "ext/blob.bin"] + ep, cwd, bad, expect=1)
    # azurite says AuthorizationFailure where Azure says AuthenticationFailed
    check(re.search(r"Auth(orizationFailure|enticationFailed): Server failed to authenticate",
                    p.stderr), p.stderr)
    p = run(["util", "health", base] + ep, cwd, bad, expect=1)
    check(p.stdout.startswith("FAIL") and "403" in p.stdout, p.stdout)
    # credentials for another account than the URI's
    p = run(["util", "ls", "az://someoneelse/bench/"] + ep, cwd, env, expect=1)
    check("someoneelse" in p.stderr and ACCT in p.stderr, p.stderr)
    # nobody listening
    p = run(["util", "health", base, "--endpoint", f"http://127.0.0.1:{servers.free_port()}"],
            cwd, env, expect=1)
    check("refused" in p.stdout, p.stdout)


def t_sas(az, cwd):
    """An account SAS made in Python: from AZURE_STORAGE_SAS_TOKEN and from a connection string;
    a read-only SAS is refused for writes."""
    az.create_container("sas")
    token = az.account_sas()
    env = az.env(AZURE_STORAGE_ACCOUNT=ACCT, AZURE_STORAGE_SAS_TOKEN="?" + token)
    ep = ["--endpoint", az.url]
    base = f"az://{ACCT}/sas/"
    p = run(["util", "put", base + "s/", "--size", "10000", "--count", "5", "--concurrency", "5"]
            + ep, cwd, env)
    check(util_summary(p, "PUT") == (5, 0), p.stdout)
    check(az.list_blobs("sas") == {f"s/util-{i:08d}.dat": 10000 for i in range(5)},
          "SAS PUTs not in azurite")
    p = run(["util", "get", base + "s/util-00000001.dat", "--range", "0-9"] + ep, cwd, env)
    check("bytes: 10" in p.stdout.splitlines(), p.stdout)
    p = run(["util", "stat", base + "s/util-00000002.dat"] + ep, cwd, env)
    check(re.search(r"^size:\s+10000", p.stdout, re.M), p.stdout)
    # the SAS in a connection string, the endpoint from its BlobEndpoint
    envc = az.env(AZURE_STORAGE_CONNECTION_STRING=az.connection_string(sas=token))
    p = run(["util", "ls", base + "s/"], cwd, envc)
    check("total: 5 objects" in p.stdout, p.stdout)
    p = run(["util", "rm", "-r", base + "s/"], cwd, envc)
    check("removed 5 objects" in p.stdout, p.stdout)
    check(not az.list_blobs("sas"), "objects left")
    # a workload with a SAS: container creation needs the container resource type
    cfg = write(os.path.join(cwd, "sas.yaml"), f"""target: "az://{ACCT}/sascreated/"
duration: 1s
concurrency: 2
prepare: {{ cleanup: true }}
workload:
  - {{ op: put, path: "w/", object_size: 1KiB, weight: 1 }}
""")
    p = run(["run", "--config", cfg], cwd, envc)
    check(int(read_results(results_dir(p, cwd))[("PUT", "ALL")][12]) > 0, p.stdout)
    check(all(v == 0 for v in console_errors(p.stdout).values()), p.stdout)
    # read and list only: a PUT is refused with a hint about the token
    ro = az.env(AZURE_STORAGE_ACCOUNT=ACCT, AZURE_STORAGE_SAS_TOKEN=az.account_sas("rl"))
    p = run(["util", "put", base + "ro.bin", "--size", "100"] + ep, cwd, ro, expect=1)
    check("HTTP 403" in p.stderr and "SAS token" in p.stderr, p.stderr)
    # a SAS signed with another key
    forged = az.account_sas(key=base64.b64encode(b"\x02" * 64).decode())
    p = run(["util", "ls", base] + ep, cwd,
            az.env(AZURE_STORAGE_ACCOUNT=ACCT, AZURE_STORAGE_SAS_TOKEN=forged), expect=1)
    check("403" in p.stderr, p.stderr)


def t_wrong_key_run(az, cwd):
    """A workload with a wrong key fails at open with the service's 403, exit 1."""
    wrong = base64.b64encode(b"\x03" * 64).decode()
    env = az.env(AZURE_STORAGE_CONNECTION_STRING=az.connection_string(key=wrong))
    cfg = write(os.path.join(cwd, "wrongkey.yaml"), MIXED.format(acct=ACCT, cont="wrongkey"))
    p = run(["run", "--config", cfg], cwd, env, expect=1)
    out = p.stdout + p.stderr
    check("403" in out and re.search(r"Auth(orizationFailure|enticationFailed)", out) and
          "check the account key" in out, f"no clear 403:\n{out}")
    check(az.list_blobs("wrongkey") == {}, "something was created with a wrong key")


def t_config_endpoint(az, cwd):
    """The config's top-level endpoint: (IP-style: the account is the first path segment) with
    AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_KEY, and a missing container created at open."""
    env = az.env(AZURE_STORAGE_ACCOUNT=ACCT, AZURE_STORAGE_KEY=az.key)
    cfg = write(os.path.join(cwd, "ep.yaml"), f"""target: "az://{ACCT}/epcont/x/"
endpoint: "{az.url}"
duration: 1s
concurrency: 4
workload:
  - {{ op: put, path: "w/", object_size: 3000, weight: 3 }}
  - {{ op: list, path: "w/", weight: 1 }}
""")
    p = run(["run", "--config", cfg], cwd, env)
    rows = read_results(results_dir(p, cwd))
    puts = int(rows[("PUT", "ALL")][12])
    check(puts > 0 and int(rows[("LIST", "ALL")][12]) > 0, p.stdout)
    check(all(v == 0 for v in console_errors(p.stdout).values()), p.stdout)
    objs = az.list_blobs("epcont", "x/w/")
    check(len(objs) == puts and set(objs.values()) == {3000}, f"{puts} PUTs, azurite: {objs}")


def t_pages(az, cwd):
    """More than one List Blobs page (1000 per page): prepare skips what a listing finds."""
    env = az.env(AZURE_STORAGE_CONNECTION_STRING=az.connection_string())
    cfg = write(os.path.join(cwd, "pages.yaml"), f"""target: "az://{ACCT}/pages/"
concurrency: 32
prepare:
  ensure_objects:
    - {{ base_uri: "az://{ACCT}/pages/set/", count: 1105, size_spec: 1 }}
  cleanup: true
workload:
  - {{ op: get, path: "set/*", weight: 1 }}
""")
    p = run(["run", "--prepare-only", "--config", cfg], cwd, env)
    check("1,105 created" in p.stdout, p.stdout)
    p = run(["run", "--prepare-only", "--config", cfg], cwd, env)
    check("0 created" in p.stdout and "1,105 already present" in p.stdout, p.stdout)
    p = run(["util", "ls", f"az://{ACCT}/pages/set/"], cwd, env)
    check("total: 1105 objects" in p.stdout.replace(",", ""), p.stdout[-500:])
    check(len(az.list_blobs("pages", "set/")) == 1105, "azurite count")
    p = run(["run", "--cleanup-only", "--config", cfg], cwd, env)
    check(re.search(r"Cleanup: 1,105 removed, 0 errors", p.stdout), p.stdout)
    check(not az.list_blobs("pages"), "pages not empty after cleanup")


def t_tls(cwd):
    """https: verified against azurite's certificate, refused without it;
    --http auto settles on HTTP/1.1 by ALPN (azurite has no HTTP/2)."""
    with servers_az.Azurite(os.path.join(cwd, "tls"), tls=True) as az:
        az.create_container("tls")
        env = az.env(AZURE_STORAGE_ACCOUNT=ACCT, AZURE_STORAGE_KEY=az.key)
        # by name: mbedtls 2.28 does not match IP addresses against subjectAltName
        for host in ("localhost",):
            ep = ["--endpoint", f"https://{host}:{az.port}", "--ca-bundle", az.cert]
            p = run(["util", "put", f"az://{ACCT}/tls/{host}/", "--size", "100KiB", "--count",
                     "4", "--concurrency", "2"] + ep, cwd, env)
            check(util_summary(p, "PUT") == (4, 0), p.stdout)
            p = run(["util", "get", f"az://{ACCT}/tls/{host}/util-00000001.dat", "--http",
                     "auto"] + ep, cwd, env)
            check("bytes: 102400" in p.stdout.splitlines(), p.stdout)
        check(len(az.list_blobs("tls")) == 4, "TLS PUTs")
        # the connection string's https BlobEndpoint with the CA
        envc = az.env(AZURE_STORAGE_CONNECTION_STRING=az.connection_string(
            endpoint=f"https://localhost:{az.port}/{ACCT}"))
        p = run(["util", "ls", "-r", f"az://{ACCT}/tls/", "--ca-bundle", az.cert], cwd, envc)
        check("total: 4 objects" in p.stdout, p.stdout)
        p = run(["util", "ls", f"az://{ACCT}/tls/"], cwd, envc, expect=1)
        check("verif" in p.stderr.lower() or "certificate" in p.stderr.lower(), p.stderr)


def t_h2c(cwd):
    """HTTP/2 (h2c, prior knowledge) through the az:// backend: nginx serves the path-style
    URLs anonymously (PUT/GET/HEAD/DELETE; it has no List Blobs)."""
    with servers.Nginx(os.path.join(cwd, "nginx")) as ng:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_STORAGE_")}
        ep = ["--endpoint", ng.h2c_url, "--http", "2"]
        base = "az://acct/cont/h2/"
        p = run(["util", "put", base, "--size", "100KiB", "--count", "6", "--concurrency", "6"]
                + ep, cwd, env)
        check(util_summary(p, "PUT") == (6, 0), p.stdout)
        d = os.path.join(ng.data, "acct", "cont", "h2")
        check(sorted(os.listdir(d)) == [f"util-{i:08d}.dat" for i in range(6)] and
              all(os.path.getsize(os.path.join(d, f)) == 102400 for f in os.listdir(d)),
              f"h2c PUTs: {os.listdir(d)}")
        p = run(["util", "get", base + "util-00000002.dat", "--count", "50", "--concurrency",
                 "16"] + ep, cwd, env)
        check(util_summary(p, "GET") == (50, 0) and "5120000 bytes" in p.stdout, p.stdout)
        p = run(["util", "get", base + "util-00000002.dat", "--range", "5-104"] + ep, cwd, env)
        check("bytes: 100" in p.stdout.splitlines(), p.stdout)
        p = run(["util", "stat", base + "util-00000003.dat"] + ep, cwd, env)
        check(re.search(r"^size:\s+102400", p.stdout, re.M), p.stdout)
        run(["util", "rm", base + "util-00000003.dat"] + ep, cwd, env)
        check(not os.path.exists(os.path.join(d, "util-00000003.dat")), "h2c DELETE")
        p = run(["util", "stat", base + "util-00000003.dat"] + ep, cwd, env, expect=1)
        check("not found" in p.stderr, p.stderr)


def t_badhttp(cwd):
    """Block uploads against a scripted peer: the first two requests get 503 (retried per
    block), the rest 200; then a 503 on a plain GET is a retryable throttle error."""
    bad = servers.BadHttp()
    bad.start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_STORAGE_")}
        ep = ["--endpoint", bad.url]
        # 70 MiB >= the default 64 MiB threshold: 5 blocks of 16 MiB
        p = run(["util", "put", "az://flaky/cont/big.bin", "--size", "70MiB"] + ep, cwd, env)
        check(util_summary(p, "PUT") == (1, 0), p.stdout + p.stderr)
        with bad.log_lock:
            log = list(bad.log)
        blocks = [t for m, t in log if m == "PUT" and "comp=block&" in t]
        commits = [t for m, t in log if m == "PUT" and "comp=blocklist" in t]
        check(len(blocks) == 7 and len(commits) == 1, f"requests: {log}")
        ids = {re.search(r"blockid=([^&]+)", t).group(1) for t in blocks}
        check(len(ids) == 5, f"block ids: {ids}")
        check(all(t.startswith("/flaky/cont/big.bin?") for t in blocks + commits), log)
        p = run(["util", "get", "az://slowdown/cont/x"] + ep, cwd, env, expect=1)
        check("service asked to slow down" in p.stderr and "503" in p.stderr, p.stderr)
        # every block refused: the PUT fails with the block's error, no Put Block List
        with bad.log_lock:
            before = len(bad.log)
        p = run(["util", "put", "az://slowdown/cont/big.bin", "--size", "70MiB"] + ep, cwd, env,
                expect=1)
        check("service asked to slow down" in p.stderr and re.search(r"block \d of 5", p.stderr),
              p.stderr)
        with bad.log_lock:
            log = list(bad.log)[before:]
        # each of the 4 attempts of the PUT (util repeats a retryable failure 3 times) sends the
        # 5 blocks with up to 2 retries each, and never a Put Block List
        check(util_summary(p, "PUT") == (1, 1) and p.stdout.rstrip().endswith(", 3 retried"),
              p.stdout)
        check(4 * 5 <= len(log) <= 4 * 15 and all("comp=block&" in t for _, t in log),
              f"requests: {log}")
    finally:
        bad.stop()


def t_azurite():
    cwd = itlib.tmpdir(prefix="sai3-az-")
    with servers_az.Azurite(cwd) as az:
        print(f"azurite ready in {az.startup_seconds:.1f} s on {az.url}")
        t_util(az, cwd)
        print("ok: util with AZURE_STORAGE_ACCOUNT/KEY and --endpoint")
        t_sas(az, cwd)
        print("ok: SAS")
        t_workload(az, cwd)
        print("ok: workload with a connection string (Put Block List above the threshold)")
        t_wrong_key_run(az, cwd)
        print("ok: wrong key")
        t_config_endpoint(az, cwd)
        print("ok: the config's endpoint")
        t_pages(az, cwd)
        print("ok: list pages")
    t_tls(cwd)
    print("ok: TLS")
    t_h2c(cwd)
    print("ok: HTTP/2 (h2c)")
    t_badhttp(cwd)
    print("ok: block retries, throttling")
    shutil.rmtree(cwd, ignore_errors=True)


TESTS = {"azurite": t_azurite}

if __name__ == "__main__":
    if NAME not in TESTS:
        fail(f"unknown test {NAME!r} (known: {', '.join(TESTS)})")
    try:
        TESTS[NAME]()
    except servers.MissingServer as e:
        fail(f"missing server: {e}")
    print(f"PASS az-{NAME}")
