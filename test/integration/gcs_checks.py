#!/usr/bin/env python3
"""Integration checks of the gs:// backend with the real sai3bench-ctl.

  emulator  the firebase-tools storage emulator (no auth): util put/get/stat/ls/rm/health,
            --endpoint, odd object names, HTTP/2 (h2c through nginx), a full
            prepare/execute/cleanup workload with resumable uploads, more than one list page;
            everything cross-checked with plain HTTP requests to the emulator's JSON API.
  token     the service-account flow: our JWT is verified by a token endpoint written here
            (python3-jwt, servers_gcs.TokenFront) and every storage request must carry a bearer
            token it issued; token refresh under a short expires_in; a key the endpoint does not
            know is refused with a clear message; anonymous requests get 401; chunked resumable
            uploads with a failed chunk resumed; bucket creation with a project, and the
            message without one; storage and token endpoint over TLS; a token endpoint so
            slow that tokens expire before their refresh lands (requests wait, none fails).

usage: gcs_checks.py {emulator|token} CTL_BINARY SOURCE_ROOT   (run with /usr/bin/python3)
A missing emulator, npm or Python module is a failure, never a skip.
"""
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import itlib  # noqa: E402
import servers  # noqa: E402
from itlib import check, console_errors, fail, read_tsv, results_dir, run_ctl, write  # noqa: E402

NAME, CTL, SRC = sys.argv[1], os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3])


def run(args, cwd, env, timeout=240, expect=0):
    return run_ctl(CTL, args, cwd, env, timeout, expect)


def read_results(d):
    _, rows = read_tsv(os.path.join(d, "results.tsv"))
    return {(r[0], r[1]): r for r in rows}


def ops(rows, op):
    return int(rows[(op, "ALL")][12]) if (op, "ALL") in rows else 0


def util_summary(p, op):
    m = [l for l in p.stdout.splitlines() if l.startswith(op + ": ")]
    check(len(m) == 1, f"no single {op} summary line:\n{p.stdout}")
    r = re.match(op + r": (\d+) ops, (\d+) errors", m[0])
    check(r, f"bad summary line {m[0]!r}")
    return int(r.group(1)), int(r.group(2))


def ls_entries(p):
    """util ls output -> ({key: size}, [dirs])."""
    objs, dirs = {}, []
    for l in p.stdout.splitlines():
        f = l.split("\t")
        if len(f) == 2 and f[0].isdigit():
            objs[f[1]] = int(f[0])
        elif len(f) == 2 and f[0] == "DIR":
            dirs.append(f[1])
    return objs, dirs


def only_notfound_errors(out, section_end="Cleanup:"):
    """GET and STAT may race the DELETEs of the same set: only 'not found' is acceptable."""
    op = None
    text = out[:out.find(section_end)] if section_end in out else out
    for l in text.splitlines():
        m = re.match(r"^  (GET|PUT|LIST|STAT|DELETE)\s", l)
        if m:
            op = m.group(1)
        if "error x" in l:
            check(op in ("GET", "STAT", "DELETE") and "object not found" in l,
                  f"unexpected {op} error: {l}\n{out}")


def gcs_env(base, **extra):
    e = dict(base)
    for k in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT",
              "STORAGE_EMULATOR_HOST", "AWS_CA_BUNDLE"):
        e.pop(k, None)
    for k, v in extra.items():
        if v is not None:
            e[k] = str(v)
    return e


MIXED = """target: "gs://bench/run/"
duration: 3s
concurrency: 8
s3: {{ multipart_threshold: 5MiB, part_size: 16MiB }}
prepare:
  ensure_objects:
    - {{ base_uri: "gs://bench/run/p/", count: 24,
        size_spec: {{ type: uniform, min: 1, max: {max_size} }} }}
  cleanup: true
workload:
  - {{ op: get, path: "p/*", weight: 50 }}
  - {{ op: put, path: "w/", size_spec: {{ type: uniform, min: 1, max: 20000 }}, weight: 20 }}
  - {{ op: stat, path: "p/*", weight: 10 }}
  - {{ op: list, path: "p/", weight: 10 }}
  - {{ op: delete, path: "p/*", weight: 2 }}
"""


def t_emulator():
    cwd = itlib.tmpdir(prefix="sai3-gcs-")
    import servers_gcs
    with servers_gcs.GcsEmulator(cwd) as emu:
        env = emu.env()
        # --- util, small objects ---
        p = run(["util", "put", "gs://bench/u/", "--size", "4KiB", "--count", "20",
                 "--concurrency", "4"], cwd, env)
        check(util_summary(p, "PUT") == (20, 0), p.stdout)
        items, _ = emu.list("bench", "u/")
        check(items == {f"u/util-{i:08d}.dat": 4096 for i in range(20)}, f"emulator has {items}")
        p = run(["util", "get", "gs://bench/u/util-00000003.dat", "--count", "30",
                 "--concurrency", "6"], cwd, env)
        check(util_summary(p, "GET") == (30, 0) and "122880 bytes" in p.stdout, p.stdout)
        p = run(["util", "stat", "gs://bench/u/util-00000004.dat"], cwd, env)
        check(re.search(r"^size:\s+4096", p.stdout, re.M), p.stdout)
        # what plain HTTP wrote, we read: whole, ranges, odd names (%2F, spaces, +, %)
        blob = os.urandom(123457)
        odd = "odd dir/a b+c%d&e=f.bin"
        emu.put("bench", odd, blob)
        p = run(["util", "get", "gs://bench/" + odd], cwd, env)
        check("bytes: 123457" in p.stdout.splitlines(), p.stdout)
        p = run(["util", "get", "gs://bench/" + odd, "--range", "100-199"], cwd, env)
        check("bytes: 100" in p.stdout.splitlines(), p.stdout)
        p = run(["util", "get", "gs://bench/" + odd, "--range", "123000-"], cwd, env)
        check("bytes: 457" in p.stdout.splitlines(), p.stdout)
        p = run(["util", "stat", "gs://bench/" + odd], cwd, env)
        check(re.search(r"^size:\s+123457", p.stdout, re.M), p.stdout)
        # what we write under an odd name, plain HTTP finds
        p = run(["util", "put", "gs://bench/odd dir/w x+y.dat", "--size", "1000"], cwd, env)
        check(emu.stat("bench", "odd dir/w x+y.dat")["size"] == "1000", "odd name PUT")
        # ls: a level with directories, recursive, a prefix that is not a directory
        p = run(["util", "ls", "gs://bench/"], cwd, env)
        objs, dirs = ls_entries(p)
        check(dirs == ["odd dir/", "u/"] and not objs, p.stdout)
        p = run(["util", "ls", "gs://bench/odd dir/"], cwd, env)
        objs, dirs = ls_entries(p)
        check(objs == {"a b+c%d&e=f.bin": 123457, "w x+y.dat": 1000} and not dirs, p.stdout)
        p = run(["util", "ls", "-r", "gs://bench/"], cwd, env)
        objs, dirs = ls_entries(p)
        emu_all, _ = emu.list("bench")
        check(objs == emu_all and not dirs, f"ls -r: {objs} vs {emu_all}")
        check(list(objs) == sorted(objs), "ls -r is not sorted")
        p = run(["util", "ls", "gs://bench/u/util-0000001"], cwd, env)
        objs, _ = ls_entries(p)
        check(sorted(objs) == [f"util-{i:08d}.dat" for i in range(10, 20)], p.stdout)
        # missing objects; delete
        p = run(["util", "stat", "gs://bench/u/nope.dat"], cwd, env, expect=1)
        check("not found" in p.stderr and "notFound" in p.stderr, p.stderr)
        p = run(["util", "get", "gs://bench/u/nope.dat"], cwd, env, expect=1)
        check("not found" in p.stderr, p.stderr)
        run(["util", "rm", "gs://bench/u/util-00000005.dat"], cwd, env)
        check(emu.stat("bench", "u/util-00000005.dat") is None, "rm did not delete")
        p = run(["util", "rm", "gs://bench/u/util-00000005.dat"], cwd, env, expect=1)
        check("not found" in p.stderr, p.stderr)
        p = run(["util", "rm", "-r", "gs://bench/odd dir/"], cwd, env)
        check("removed 2 objects" in p.stdout, p.stdout)
        check(not emu.list("bench", "odd dir/")[0], "odd dir/ not empty after rm -r")
        # health; --endpoint instead of STORAGE_EMULATOR_HOST; an unreachable endpoint
        p = run(["util", "health", "gs://bench/u/"], cwd, env)
        check(p.stdout.startswith("OK gs://bench/u/"), p.stdout)
        noenv = gcs_env(os.environ)
        p = run(["util", "stat", "gs://bench/u/util-00000001.dat", "--endpoint", emu.endpoint],
                cwd, noenv)
        check(re.search(r"^size:\s+4096", p.stdout, re.M), p.stdout)
        p = run(["util", "ls", "gcs://bench/u/", "--endpoint", emu.endpoint], cwd, noenv)
        check("total: 19 objects" in p.stdout, p.stdout)
        dead = servers.free_port()
        p = run(["util", "health", "gs://bench/u/", "--endpoint", f"http://127.0.0.1:{dead}"],
                cwd, noenv, expect=1)
        check(p.stdout.startswith("FAIL gs://bench/u/") and "refused" in p.stdout, p.stdout)
        # HTTP/2 (h2c with prior knowledge) through nginx: the emulator speaks HTTP/1.1 only
        with servers_gcs.H2Proxy(cwd, emu.port) as h2:
            h2a = ["--http", "2", "--endpoint", h2.endpoint]
            p = run(["util", "put", "gs://bench/h2/", "--size", "100KiB", "--count", "12",
                     "--concurrency", "6"] + h2a, cwd, noenv)
            check(util_summary(p, "PUT") == (12, 0), p.stdout)
            p = run(["util", "get", "gs://bench/h2/util-00000002.dat", "--count", "60",
                     "--concurrency", "12"] + h2a, cwd, noenv)
            check(util_summary(p, "GET") == (60, 0) and "6144000 bytes" in p.stdout, p.stdout)
            p = run(["util", "ls", "gs://bench/h2/"] + h2a, cwd, noenv)
            check("total: 12 objects" in p.stdout, p.stdout)
            p = run(["util", "stat", "gs://bench/h2/nope"] + h2a, cwd, noenv, expect=1)
            check("not found" in p.stderr, p.stderr)
            check(emu.list("bench", "h2/")[0] == {f"h2/util-{i:08d}.dat": 102400
                                                  for i in range(12)}, "h2 PUTs")
            run(["util", "rm", "-r", "gs://bench/h2/"] + h2a, cwd, noenv)
            check(not emu.list("bench", "h2/")[0], "h2 rm -r")
        run(["util", "rm", "-r", "gs://bench/u/"], cwd, env)

        # --- a full workload: prepare (some resumable), mix, cleanup ---
        cfg = write(os.path.join(cwd, "mixed.yaml"), MIXED.format(max_size=7000000))
        p = run(["run", "--config", cfg], cwd, env)
        d = results_dir(p, cwd)
        rows = read_results(d)
        for op in ("GET", "PUT", "LIST", "STAT", "DELETE"):
            check(ops(rows, op) > 0, f"no {op} ops:\n{p.stdout}")
        errs = console_errors(p.stdout)
        check(errs and errs.get("PUT") == 0 and errs.get("LIST") == 0, p.stdout)
        only_notfound_errors(p.stdout)
        m = re.search(r"Cleanup: (\d+) removed, (\d+) errors", p.stdout)
        check(m and m.group(2) == "0", f"cleanup:\n{p.stdout}")
        check(not emu.list("bench", "run/")[0], "objects left after cleanup")
        # prepare-only: names and sizes as the emulator sees them; the big ones are complete
        cfg2 = write(os.path.join(cwd, "prep.yaml"), """target: "gs://bench/"
s3: { multipart_threshold: 5MiB, part_size: 16MiB }
prepare:
  ensure_objects:
    - { base_uri: "gs://bench/set/", count: 12, size_spec: { type: uniform, min: 3000000, max: 9000000 } }
workload:
  - { op: get, path: "set/*", weight: 1 }
""")
        p = run(["run", "--prepare-only", "--config", cfg2], cwd, env)
        check("12 created" in p.stdout, p.stdout)
        items, _ = emu.list("bench", "set/")
        check(sorted(items) == [f"set/prepared-{i:08d}.dat" for i in range(12)], f"{items}")
        big = [k for k, v in items.items() if v >= 5 << 20]
        check(big and len(big) < 12, f"no mix of resumable and media uploads: {items}")
        for k in big[:2] + [k for k in items if k not in big][:1]:
            check(len(emu.get("bench", k)) == items[k], f"{k}: content length differs")
        p = run(["util", "ls", "gs://bench/set/"], cwd, env)
        objs, _ = ls_entries(p)
        check({"set/" + k: v for k, v in objs.items()} == items, f"util ls vs emulator:\n{p.stdout}")
        p = run(["run", "--prepare-only", "--config", cfg2], cwd, env)
        check("0 created" in p.stdout and "12 already present" in p.stdout, p.stdout)
        # more than one list page (1000 per page): 1203 objects
        cfg3 = write(os.path.join(cwd, "pages.yaml"), """target: "gs://bench/"
concurrency: 32
prepare:
  ensure_objects:
    - { base_uri: "gs://bench/pages/", count: 1203, size_spec: 1 }
  cleanup: true
workload:
  - { op: get, path: "pages/*", weight: 1 }
""")
        p = run(["run", "--prepare-only", "--config", cfg3], cwd, env)
        check("1,203 created" in p.stdout, p.stdout)
        check(len(emu.list("bench", "pages/")[0]) == 1203, "emulator count")
        p = run(["util", "ls", "gs://bench/pages/"], cwd, env)
        check("total: 1203 objects" in p.stdout.replace(",", ""), p.stdout[-500:])
        p = run(["run", "--prepare-only", "--config", cfg3], cwd, env)
        check("1,203 already present" in p.stdout, p.stdout)
        p = run(["run", "--cleanup-only", "--config", cfg3], cwd, env)
        check(re.search(r"Cleanup: 1,203 removed, 0 errors", p.stdout), p.stdout)
        check(not emu.list("bench", "pages/")[0], "pages/ not empty after cleanup")
        # the config's top-level endpoint: instead of STORAGE_EMULATOR_HOST
        cfg4 = write(os.path.join(cwd, "ep.yaml"), f"""target: "gs://bench/ep/"
endpoint: {emu.endpoint}
duration: 1s
prepare:
  ensure_objects: [{{ base_uri: "gs://bench/ep/d/", count: 5, size_spec: 1KiB }}]
  cleanup: true
workload:
  - {{ op: get, path: "d/*", weight: 1 }}
""")
        p = run(["run", "--config", cfg4], cwd, noenv)
        check("5 created" in p.stdout and ops(read_results(results_dir(p, cwd)), "GET") > 0,
              f"config endpoint:\n{p.stdout}")
        check(not emu.list("bench", "ep/")[0], "ep/ not empty after cleanup")
    shutil.rmtree(cwd)


def t_token():
    cwd = itlib.tmpdir(prefix="sai3-gcs-tok-")
    import servers_gcs
    with servers_gcs.GcsEmulator(cwd) as emu:
        with servers_gcs.TokenFront(os.path.join(cwd, "front"), emu.port) as fr:
            env = gcs_env(os.environ, STORAGE_EMULATOR_HOST=fr.host,
                          GOOGLE_APPLICATION_CREDENTIALS=fr.sa_path)
            # --- the flow: one token per process, every request authorized ---
            p = run(["util", "put", "gs://bench/t/", "--size", "8KiB", "--count", "10",
                     "--concurrency", "4"], cwd, env)
            check(util_summary(p, "PUT") == (10, 0), p.stdout)
            check(fr.tokens_issued == 1 and fr.unauthorized == 0 and not fr.refused,
                  f"tokens {fr.tokens_issued}, 401s {fr.unauthorized}, refused {fr.refused}")
            check(emu.list("bench", "t/")[0] == {f"t/util-{i:08d}.dat": 8192 for i in range(10)},
                  "objects behind the front")
            p = run(["util", "get", "gs://bench/t/util-00000001.dat", "--range", "1-10"], cwd, env)
            check("bytes: 10" in p.stdout.splitlines(), p.stdout)
            p = run(["util", "stat", "gs://bench/t/util-00000002.dat"], cwd, env)
            check(re.search(r"^size:\s+8192", p.stdout, re.M), p.stdout)
            p = run(["util", "ls", "gs://bench/t/"], cwd, env)
            check("total: 10 objects" in p.stdout, p.stdout)
            run(["util", "rm", "gs://bench/t/util-00000009.dat"], cwd, env)
            check(emu.stat("bench", "t/util-00000009.dat") is None, "rm through the front")
            check(fr.tokens_issued == 5 and fr.unauthorized == 0, f"{fr.tokens_issued} tokens")
            # a missing bucket (no create for util): STO_ENOBUCKET with GCS's words
            p = run(["util", "stat", "gs://nobucket/x.dat"], cwd, env, expect=1)
            check("bucket or container does not exist" in p.stderr and
                  "The specified bucket does not exist" in p.stderr, p.stderr)

            # --- anonymous: 401 with a hint ---
            p = run(["util", "ls", "gs://bench/t/"], cwd,
                    gcs_env(os.environ, STORAGE_EMULATOR_HOST=fr.host), expect=1)
            check("HTTP 401 authError: Invalid Credentials" in p.stderr and
                  "anonymous" in p.stderr and "GOOGLE_APPLICATION_CREDENTIALS" in p.stderr,
                  p.stderr)
            check(fr.unauthorized == 1, f"{fr.unauthorized} 401s")

            # --- a key the token endpoint does not know: refused at open, clearly ---
            wrong = fr.write_sa(os.path.join(cwd, "wrong-sa.json"))
            nref = len(fr.refused)
            p = run(["util", "ls", "gs://bench/t/"], cwd,
                    dict(env, GOOGLE_APPLICATION_CREDENTIALS=wrong), expect=1)
            check("cannot get an access token for " + fr.client_email in p.stderr and
                  "invalid_grant" in p.stderr and "Invalid JWT Signature" in p.stderr and
                  "HTTP 400" in p.stderr, p.stderr)
            check(len(fr.refused) == nref + 1 and "Invalid JWT Signature" in fr.refused[-1],
                  f"{fr.refused}")
            cfg = write(os.path.join(cwd, "wrongrun.yaml"), """target: "gs://bench/wr/"
duration: 1s
workload:
  - { op: put, path: "w/", object_size: 1KiB, weight: 1 }
""")
            p = run(["run", "--config", cfg], cwd, dict(env, GOOGLE_APPLICATION_CREDENTIALS=wrong),
                    expect=None)
            check(p.returncode != 0 and "Invalid JWT Signature" in p.stdout + p.stderr,
                  f"exit {p.returncode}\n{p.stdout}\n{p.stderr}")
            # a broken key file
            bad = write(os.path.join(cwd, "broken-sa.json"), '{"type": "service_account"}')
            p = run(["util", "ls", "gs://bench/t/"], cwd,
                    dict(env, GOOGLE_APPLICATION_CREDENTIALS=bad), expect=1)
            check("missing \"client_email\"" in p.stderr and bad in p.stderr, p.stderr)

            # --- resumable uploads in chunks, one chunk failing half-way (503) ---
            fr.fail_chunk = 2
            cfg = write(os.path.join(cwd, "chunks.yaml"), """target: "gs://bench/"
concurrency: 2
s3: { multipart_threshold: 5MiB, part_size: 5MiB }
prepare:
  ensure_objects:
    - { base_uri: "gs://bench/big/", count: 3, size_spec: 12MiB, fill: zero }
workload:
  - { op: get, path: "big/*", weight: 1 }
""")
            p = run(["run", "--prepare-only", "--config", cfg], cwd, env)
            check("3 created" in p.stdout and "0 failed" in p.stdout, p.stdout)
            check(not fr.bad_chunks, f"bad chunks: {fr.bad_chunks}")
            check(fr.injected == 1 and fr.status_queries >= 1, f"injected {fr.injected}, "
                  f"queries {fr.status_queries}")
            # 3 objects x 3 chunks (5, 5, 2 MiB); the one whose second chunk kept only 2.5 MiB
            # resumed at 7.5 MiB with the remaining 4.5 MiB as its last chunk: 9 chunk PUTs
            check(fr.chunks == 9, f"{fr.chunks} chunks")
            items, _ = emu.list("bench", "big/")
            check(items == {f"big/prepared-{i:08d}.dat": 12 << 20 for i in range(3)}, f"{items}")
            data = emu.get("bench", "big/prepared-00000001.dat")
            check(len(data) == 12 << 20 and data.count(0) == len(data), "content of a chunked upload")

            # --- bucket creation: with the key's project, and the message without one ---
            cfg = write(os.path.join(cwd, "newb.yaml"), """target: "gs://newbucket/x/"
duration: 1s
concurrency: 2
workload:
  - { op: put, path: "w/", object_size: 1KiB, weight: 1 }
""")
            p = run(["run", "--config", cfg], cwd, env)
            puts = ops(read_results(results_dir(p, cwd)), "PUT")
            check(fr.buckets_created == ["newbucket"], f"created {fr.buckets_created}")
            check(len(emu.list("newbucket", "x/w/")[0]) == puts and puts > 0, "PUTs in newbucket")
            noproj = fr.write_sa(os.path.join(cwd, "noproj-sa.json"), fr.key, project_id=None)
            cfg = write(os.path.join(cwd, "newb2.yaml"), """target: "gs://otherbucket/x/"
duration: 1s
workload:
  - { op: put, path: "w/", object_size: 1KiB, weight: 1 }
""")
            p = run(["run", "--config", cfg], cwd,
                    dict(env, GOOGLE_APPLICATION_CREDENTIALS=noproj), expect=None)
            out = p.stdout + p.stderr
            check(p.returncode != 0 and "bucket otherbucket does not exist; create it" in out and
                  "GOOGLE_CLOUD_PROJECT" in out, out)
            p = run(["run", "--config", cfg], cwd,
                    dict(env, GOOGLE_APPLICATION_CREDENTIALS=noproj,
                         GOOGLE_CLOUD_PROJECT="demo-bench"))
            check(fr.buckets_created == ["newbucket", "otherbucket"], f"{fr.buckets_created}")
            check(fr.unauthorized == 1 and fr.expired_used == 0, f"401s {fr.unauthorized}")

        # --- TLS: storage and token endpoint over HTTPS, verified against the test CA ---
        with servers_gcs.TokenFront(os.path.join(cwd, "front-tls"), emu.port, tls=True) as fr:
            env = gcs_env(os.environ, GOOGLE_APPLICATION_CREDENTIALS=fr.sa_path)
            tls = ["--endpoint", fr.endpoint, "--ca-bundle", fr.cert]
            p = run(["util", "put", "gs://bench/tls/", "--size", "4KiB", "--count", "4",
                     "--concurrency", "2"] + tls, cwd, env)
            check(util_summary(p, "PUT") == (4, 0), p.stdout)
            p = run(["util", "get", "gs://bench/tls/util-00000001.dat"] + tls, cwd, env)
            check("bytes: 4096" in p.stdout.splitlines(), p.stdout)
            check(fr.tokens_issued == 2 and fr.unauthorized == 0, f"{fr.tokens_issued} tokens")
            check(len(emu.list("bench", "tls/")[0]) == 4, "objects written over TLS")
            # the system CA bundle does not know the test certificate
            p = run(["util", "ls", "gs://bench/tls/", "--endpoint", fr.endpoint], cwd, env,
                    expect=1)
            check("certificate" in p.stderr.lower() or "verif" in p.stderr.lower(), p.stderr)

        # --- refresh: tokens live 3 s and the front enforces it; a run of 8 s ---
        with servers_gcs.TokenFront(os.path.join(cwd, "front2"), emu.port, expires_in=3) as fr:
            env = gcs_env(os.environ, STORAGE_EMULATOR_HOST=fr.host,
                          GOOGLE_APPLICATION_CREDENTIALS=fr.sa_path)
            cfg = write(os.path.join(cwd, "refresh.yaml"), """target: "gs://bench/r/"
duration: 8s
concurrency: 8
prepare:
  ensure_objects:
    - { base_uri: "gs://bench/r/p/", count: 10, size_spec: 4KiB }
  cleanup: true
workload:
  - { op: get, path: "p/*", weight: 6 }
  - { op: put, path: "w/", object_size: 2KiB, weight: 2 }
  - { op: stat, path: "p/*", weight: 2 }
""")
            p = run(["run", "--config", cfg], cwd, env)
            rows = read_results(results_dir(p, cwd))
            check(ops(rows, "GET") > 100 and ops(rows, "PUT") > 20, p.stdout)
            errs = console_errors(p.stdout)
            check(errs and all(v == 0 for v in errs.values()), f"errors:\n{p.stdout}")
            check(re.search(r"Cleanup: \d+ removed, 0 errors", p.stdout), p.stdout)
            # ~8 s / 1.5 s refresh interval: several tokens, and never an expired one used
            check(fr.tokens_issued >= 4, f"only {fr.tokens_issued} tokens in an 8 s run")
            check(fr.unauthorized == 0 and fr.expired_used == 0 and not fr.refused,
                  f"401s {fr.unauthorized}, expired {fr.expired_used}, refused {fr.refused}")
            print(f"note: {fr.tokens_issued} tokens issued during the refresh run")

        # --- a slow token endpoint: tokens (2 s) expire before their refresh (1.2 s) lands;
        # requests then wait for a token instead of failing or using an expired one ---
        with servers_gcs.TokenFront(os.path.join(cwd, "front3"), emu.port, expires_in=2) as fr:
            fr.token_delay = 1.2
            env = gcs_env(os.environ, STORAGE_EMULATOR_HOST=fr.host,
                          GOOGLE_APPLICATION_CREDENTIALS=fr.sa_path)
            cfg = write(os.path.join(cwd, "slowtok.yaml"), """target: "gs://bench/s/"
duration: 5s
concurrency: 4
prepare: { cleanup: true }
workload:
  - { op: put, path: "w/", object_size: 1KiB, weight: 1 }
""")
            p = run(["run", "--config", cfg], cwd, env)
            rows = read_results(results_dir(p, cwd))
            check(ops(rows, "PUT") > 20, p.stdout)
            errs = console_errors(p.stdout)
            check(errs and all(v == 0 for v in errs.values()), f"errors:\n{p.stdout}")
            check(fr.tokens_issued >= 3 and fr.unauthorized == 0 and fr.expired_used == 0,
                  f"tokens {fr.tokens_issued}, 401s {fr.unauthorized}, "
                  f"expired {fr.expired_used}")
    shutil.rmtree(cwd)


TESTS = {"emulator": t_emulator, "token": t_token}

if __name__ == "__main__":
    try:
        TESTS[NAME]()
    except servers.MissingServer as e:
        fail(f"missing test server: {e}")
    except servers.ServerError as e:
        fail(f"test server: {e}")
    print("ok")
