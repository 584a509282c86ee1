#!/usr/bin/env python3
"""Self-test for servers.py: start each real server and prove it works and is what we think.

usage: servers_selftest.py [s3rver|moto|nginx|badhttp|lifecycle ...]   (default: all)
Prints "PASS name" / "FAIL name: why" per check; exits 1 on any failure.
"""
import hashlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import servers  # noqa: E402

FAILED = []


def report(name, ok, why=""):
    if ok:
        print(f"PASS {name}", flush=True)
    else:
        FAILED.append(name)
        print(f"FAIL {name}: {why}", flush=True)


def check(name, fn):
    """Run fn(); it returns None/True for pass, or a string/False explaining the failure."""
    try:
        r = fn()
    except Exception as e:  # noqa: BLE001
        report(name, False, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")
        return
    if r is None or r is True:
        report(name, True)
    else:
        report(name, False, r if isinstance(r, str) else "check returned False")


def expect(cond, why):
    if not cond:
        raise AssertionError(why)


def curl():
    return servers.require("curl", "apt-get install curl")


# --------------------------------------------------------------------------------------------
def s3_checks(prefix, s, tmp):
    body = os.urandom(100_000)
    src = os.path.join(tmp, f"{prefix}-src.bin")
    dst = os.path.join(tmp, f"{prefix}-dst.bin")
    with open(src, "wb") as f:
        f.write(body)

    def roundtrip():
        s.aws("s3api", "put-object", "--bucket", s.bucket, "--key", "dir/a.bin", "--body", src)
        out = s.aws("s3api", "get-object", "--bucket", s.bucket, "--key", "dir/a.bin", dst)
        with open(dst, "rb") as f:
            got = f.read()
        expect(got == body, f"got {len(got)} bytes, differ from the {len(body)} put")
        meta = json.loads(out.stdout)
        expect(meta.get("ContentLength") == len(body), f"ContentLength {meta.get('ContentLength')}")
    check(f"{prefix}: aws s3api put-object/get-object round trip (100000 bytes)", roundtrip)

    # moto cannot verify signatures of query values containing "/" (see servers.Moto)
    list_prefix = "dir" if prefix == "moto" else "dir/"

    def listing():
        out = json.loads(s.aws("s3api", "list-objects-v2", "--bucket", s.bucket,
                               "--prefix", list_prefix).stdout)
        keys = [o["Key"] for o in out.get("Contents", [])]
        expect(keys == ["dir/a.bin"], f"keys {keys}")
    check(f"{prefix}: list-objects-v2 --prefix {list_prefix} sees the object", listing)

    def wrong_secret():
        p = s.aws("s3api", "get-object", "--bucket", s.bucket, "--key", "dir/a.bin",
                  os.path.join(tmp, "never.bin"), check=False,
                  env={"AWS_SECRET_ACCESS_KEY": "definitely-wrong"})
        expect(p.returncode != 0, f"exit 0 with a wrong secret: {p.stdout[:300]}")
        expect("SignatureDoesNotMatch" in p.stderr, f"stderr: {p.stderr.strip()[:400]}")
    check(f"{prefix}: wrong secret -> aws exit != 0 with SignatureDoesNotMatch", wrong_secret)

    def curl_sigv4(secret):
        empty = hashlib.sha256(b"").hexdigest()
        p = subprocess.run([curl(), "-s", "-o", "-", "-w", "\n%{http_code}",
                            "--aws-sigv4", f"aws:amz:{s.region}:s3",
                            "--user", f"{s.access_key}:{secret}",
                            "-H", f"x-amz-content-sha256: {empty}",
                            f"{s.endpoint}/{s.bucket}/dir/a.bin"],
                           capture_output=True, timeout=60)
        out, _, code = p.stdout.rpartition(b"\n")
        return int(code), out

    def curl_good():
        code, out = curl_sigv4(s.secret_key)
        expect(code == 200 and out == body, f"HTTP {code}, {len(out)} bytes")
    check(f"{prefix}: curl --aws-sigv4 with the right secret -> 200 + same bytes", curl_good)

    def curl_bad():
        code, out = curl_sigv4("definitely-wrong")
        expect(code == 403, f"HTTP {code}: {out[:300]!r}")
        expect(b"SignatureDoesNotMatch" in out, f"body {out[:300]!r}")
    check(f"{prefix}: curl --aws-sigv4 with a wrong secret -> 403 SignatureDoesNotMatch", curl_bad)

    def env_shape():
        e = s.env(FOO="bar", AWS_PROFILE="x")
        for k, v in {"AWS_ACCESS_KEY_ID": s.access_key, "AWS_SECRET_ACCESS_KEY": s.secret_key,
                     "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
                     "AWS_ENDPOINT_URL": s.endpoint, "AWS_EC2_METADATA_DISABLED": "true",
                     "FOO": "bar", "AWS_PROFILE": "x"}.items():
            expect(e.get(k) == v, f"{k}={e.get(k)!r}, want {v!r}")
        e = s.env()
        for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CA_BUNDLE"):
            expect(k not in e, f"{k} still set")
        for k in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
            expect(e[k].startswith(s.tmpdir) and not os.path.exists(e[k]), f"{k}={e[k]}")
    check(f"{prefix}: env() contents", env_shape)


def test_s3rver(tmp):
    t0 = time.monotonic()
    try:
        s = servers.S3rver(os.path.join(tmp, "s3rver")).start()
    except Exception as e:  # noqa: BLE001
        report("s3rver: start", False, str(e))
        return
    try:
        report(f"s3rver: start (ready in {time.monotonic() - t0:.2f} s, pid {s.pid}, "
               f"{s.endpoint})", True)
        s3_checks("s3rver", s, tmp)

        def unknown_key():
            p = s.aws("s3api", "head-bucket", "--bucket", s.bucket, check=False,
                      env={"AWS_ACCESS_KEY_ID": "NOTAKEY"})
            expect(p.returncode != 0, "unknown access key accepted")
        check("s3rver: unknown access key id rejected", unknown_key)

        def on_disk():
            expect(os.path.isdir(os.path.join(s.data_dir, s.bucket)), "no bucket dir on disk")
        check("s3rver: data lives in <tmpdir>/s3rver-data", on_disk)
    finally:
        pid = s.pid
        s.stop()
        check("s3rver: stopped (pid gone)", lambda: not _pid_alive(pid) or f"pid {pid} alive")


def test_moto(tmp):
    t0 = time.monotonic()
    try:
        m = servers.Moto(os.path.join(tmp, "moto")).start()
    except Exception as e:  # noqa: BLE001
        report("moto: start + IAM bootstrap", False, str(e))
        return
    try:
        report(f"moto: start + IAM bootstrap (ready in {time.monotonic() - t0:.2f} s, "
               f"pid {m.pid}, {m.endpoint}, key {m.access_key})", True)
        check("moto: created key looks like AKIA...",
              lambda: m.access_key.startswith("AKIA") and len(m.secret_key) >= 30
              or f"{m.access_key!r}")
        s3_checks("moto", m, tmp)

        def unsigned():
            c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=10)
            c.request("GET", f"/{m.bucket}/dir/a.bin")
            r = c.getresponse()
            b = r.read()
            c.close()
            expect(r.status == 403, f"HTTP {r.status}: {b[:200]!r}")
        check("moto: no-auth budget used up: unsigned GET -> 403", unsigned)

        def bootstrap_key_dead():
            p = m.aws("s3api", "list-buckets", check=False,
                      env={"AWS_ACCESS_KEY_ID": "bootstrap", "AWS_SECRET_ACCESS_KEY": "bootstrap"})
            expect(p.returncode != 0, "bootstrap credentials still accepted")
        check("moto: bootstrap credentials rejected afterwards", bootstrap_key_dead)

        def quirk():
            p = m.aws("s3api", "list-objects-v2", "--bucket", m.bucket, "--prefix", "dir/",
                      check=False)
            expect(p.returncode != 0 and "SignatureDoesNotMatch" in p.stderr,
                   "moto now verifies '--prefix dir/' correctly: update the note in servers.Moto"
                   f" (rc {p.returncode})")
        check("moto: known quirk still present: correctly signed '--prefix dir/' -> "
              "SignatureDoesNotMatch", quirk)

        def multipart_api():
            up = json.loads(m.aws("s3api", "create-multipart-upload", "--bucket", m.bucket,
                                  "--key", "mpu.bin").stdout)["UploadId"]
            lst = json.loads(m.aws("s3api", "list-multipart-uploads", "--bucket", m.bucket).stdout)
            expect([u["UploadId"] for u in lst.get("Uploads", [])] == [up], f"uploads {lst}")
            m.aws("s3api", "abort-multipart-upload", "--bucket", m.bucket, "--key", "mpu.bin",
                  "--upload-id", up)
        check("moto: create/list/abort multipart upload", multipart_api)
    finally:
        pid = m.pid
        m.stop()
        check("moto: stopped (pid gone)", lambda: not _pid_alive(pid) or f"pid {pid} alive")


# --------------------------------------------------------------------------------------------
def test_nginx(tmp):
    t0 = time.monotonic()
    try:
        n = servers.Nginx(os.path.join(tmp, "nginx")).start()
    except Exception as e:  # noqa: BLE001
        report("nginx: start", False, str(e))
        return
    body = os.urandom(300_000)
    try:
        report(f"nginx: start (ready in {time.monotonic() - t0:.2f} s, pid {n.pid}, "
               f"http {n.http_port} h2c {n.h2c_port} https {n.https_port})", True)

        def req(method, path, data=None, port=None):
            c = http.client.HTTPConnection("127.0.0.1", port or n.http_port, timeout=10)
            c.request(method, path, body=data)
            r = c.getresponse()
            b = r.read()
            c.close()
            return r, b

        def put():
            r, _ = req("PUT", "/a/b.bin", body)
            expect(r.status == 201, f"PUT -> {r.status}")
            expect(os.path.isfile(os.path.join(n.data, "a", "b.bin")), "file not in data dir")
            r, _ = req("PUT", "/a/b.bin", body)
            expect(r.status == 204, f"overwrite PUT -> {r.status}")
        check("nginx: PUT /a/b.bin -> 201 (nested dir created), overwrite -> 204", put)

        def get():
            r, b = req("GET", "/a/b.bin")
            expect(r.status == 200 and b == body, f"GET -> {r.status}, {len(b)} bytes")
        check("nginx: GET /a/b.bin -> same bytes", get)

        def rng():
            c = http.client.HTTPConnection("127.0.0.1", n.http_port, timeout=10)
            c.request("GET", "/a/b.bin", headers={"Range": "bytes=100-199"})
            r = c.getresponse()
            b = r.read()
            expect(r.status == 206 and b == body[100:200], f"{r.status}, {len(b)} bytes")
        check("nginx: Range GET -> 206 + the right 100 bytes", rng)

        def listing():
            r, b = req("GET", "/a/")
            names = [e["name"] for e in json.loads(b)]
            expect(r.status == 200 and names == ["b.bin"], f"{r.status} {b[:200]!r}")
        check("nginx: GET /a/ -> JSON autoindex listing", listing)

        def status_pages():
            r, b = req("GET", "/status/503")
            expect(r.status == 503 and b == b"slow down\n", f"/status/503 -> {r.status} {b!r}")
            r, b = req("PUT", "/status/503", b"x")
            expect(r.status == 503, f"PUT /status/503 -> {r.status}")
            r, b = req("GET", "/status/500")
            expect(r.status == 500, f"/status/500 -> {r.status}")
        check("nginx: /status/503 (\"slow down\\n\") and /status/500", status_pages)

        def h2c():
            p = subprocess.run([curl(), "-s", "--http2-prior-knowledge", "-o", "-", "-w",
                                "\n%{http_code} %{http_version}", f"{n.h2c_url}/a/b.bin"],
                               capture_output=True, timeout=60)
            out, _, tail = p.stdout.rpartition(b"\n")
            expect(p.returncode == 0 and tail == b"200 2" and out == body,
                   f"rc {p.returncode}, '{tail.decode()}', {len(out)} bytes, {p.stderr[:200]!r}")
        check("nginx: curl --http2-prior-knowledge h2c GET -> HTTP/2 200 + same bytes", h2c)

        def h1_on_h2c():
            s = socket.create_connection(("127.0.0.1", n.h2c_port), timeout=2)
            s.sendall(b"GET /a/b.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                got = s.recv(100)
            except socket.timeout:
                got = b"(timeout)"
            s.close()
            expect(not got.startswith(b"HTTP/1.1"), f"h2c port answered HTTP/1.1: {got!r}")
        check("nginx: h2c port does not speak HTTP/1.1", h1_on_h2c)

        def h2_tls():
            p = subprocess.run([curl(), "-s", "--cacert", n.cert, "--resolve",
                                f"localhost:{n.https_port}:127.0.0.1", "-o", "-", "-w",
                                "\n%{http_code} %{http_version}",
                                f"https://localhost:{n.https_port}/a/b.bin"],
                               capture_output=True, timeout=60)
            out, _, tail = p.stdout.rpartition(b"\n")
            expect(p.returncode == 0 and tail == b"200 2" and out == body,
                   f"rc {p.returncode}, '{tail.decode()}', {len(out)} bytes, {p.stderr[:200]!r}")
        check("nginx: curl --cacert cert https://localhost (h2 via ALPN) -> HTTP/2 200 + bytes",
              h2_tls)

        def py_tls_ip():
            ctx = ssl.create_default_context(cafile=n.cert)
            c = http.client.HTTPSConnection("127.0.0.1", n.https_port, context=ctx, timeout=10)
            c.request("GET", "/a/b.bin")
            r = c.getresponse()
            b = r.read()
            c.close()
            expect(r.status == 200 and b == body, f"{r.status}, {len(b)} bytes")
        check("nginx: Python ssl verifies the cert for https_url (IP SAN 127.0.0.1)", py_tls_ip)

        def untrusted():
            p = subprocess.run([curl(), "-s", "-o", "/dev/null", f"{n.https_url}/a/b.bin"],
                               capture_output=True, timeout=60)
            expect(p.returncode == 60, f"curl without --cacert: rc {p.returncode} (want 60)")
        check("nginx: without the CA file, TLS verification fails (curl rc 60)", untrusted)

        def delete():
            r, _ = req("DELETE", "/a/b.bin")
            expect(r.status == 204, f"DELETE -> {r.status}")
            r, _ = req("GET", "/a/b.bin")
            expect(r.status == 404, f"GET after DELETE -> {r.status}")
        check("nginx: DELETE -> 204, then GET -> 404", delete)

        def workers():
            kids = subprocess.run(["ps", "--ppid", str(n.pid), "-o", "user=,comm="],
                                  capture_output=True, text=True).stdout.split("\n")
            kids = [k.split() for k in kids if k.strip()]
            expect(len(kids) == 2, f"workers: {kids}")
            if os.geteuid() == 0:
                expect(all(k[0] == "root" for k in kids), f"workers: {kids}")
        check("nginx: 2 workers (as root when we are root)", workers)
    finally:
        pid = n.pid
        n.stop()
        check("nginx: stopped (master pid gone, ports closed)",
              lambda: (not _pid_alive(pid) and not _port_open(n.http_port))
              or f"pid {pid} alive or port {n.http_port} open")


# --------------------------------------------------------------------------------------------
def _connect(b, timeout=5):
    return socket.create_connection(("127.0.0.1", b.port), timeout=timeout)


def _req(path, extra=b""):
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode() + extra + b"\r\n"


def _read_until_eof(s, limit=1 << 22):
    data = b""
    while len(data) < limit:
        d = s.recv(65536)
        if not d:
            return data, "eof"
        data += d
    return data, "limit"


def _read_n(s, n):
    data = b""
    while len(data) < n:
        d = s.recv(n - len(data))
        if not d:
            break
        data += d
    return data


def _read_head(s):
    data = b""
    while b"\r\n\r\n" not in data:
        d = s.recv(65536)
        if not d:
            raise AssertionError(f"EOF inside the head after {len(data)} bytes")
        data += d
    head, _, rest = data.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


def _one(s, path, expected, extra=b""):
    s.sendall(_req(path, extra))
    got = _read_n(s, len(expected))
    expect(got == expected, f"{path}: got {got[:200]!r}, want {expected[:200]!r}")


def test_badhttp(tmp):
    b = servers.BadHttp(tmp).start()
    report(f"badhttp: start ({b.url})", True)
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    slowdown_body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
                     b'<Message>Please reduce your request rate.</Message>'
                     b'<RequestId>REQ123</RequestId></Error>')
    partial = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
               b"Content-Length: 100\r\n\r\n0123456789")
    try:
        def t_ok():
            with _connect(b) as s:
                for _ in range(3):
                    _one(s, "/ok/x?y=1", ok)
        check("badhttp: ok -> exact 200 'hello', 3 requests on one connection", t_ok)

        def t_body():
            with _connect(b) as s:
                s.sendall(b"PUT /ok/k HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n1234567")
                expect(_read_n(s, len(ok)) == ok, "first")
                s.sendall(b"PUT /ok/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"3\r\nabc\r\n0\r\n\r\n")
                expect(_read_n(s, len(ok)) == ok, "after a chunked body")
                s.sendall(b"PUT /ok/k HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                          b"Expect: 100-continue\r\n\r\n")
                cont = b"HTTP/1.1 100 Continue\r\n\r\n"
                expect(_read_n(s, len(cont)) == cont, "no 100 Continue")
                s.sendall(b"abc")
                expect(_read_n(s, len(ok)) == ok, "after 100-continue")
        check("badhttp: request bodies (length, chunked, 100-continue) are discarded", t_body)

        def t_truncated():
            with _connect(b) as s:
                s.sendall(_req("/truncated"))
                data, how = _read_until_eof(s)
                expect(data == partial and how == "eof", f"{how}: {data!r}")
        check("badhttp: truncated -> Content-Length 100, 10 bytes, clean EOF", t_truncated)

        def t_reset():
            with _connect(b) as s:
                s.sendall(_req("/reset"))
                time.sleep(0.3)  # let the RST arrive; the data must still be readable
                data = b""
                try:
                    while True:
                        d = s.recv(65536)
                        if not d:
                            raise AssertionError(f"clean EOF instead of RST after {data!r}")
                        data += d
                except ConnectionResetError:
                    pass
                expect(data == partial, f"data before RST: {data!r}")
        check("badhttp: reset -> headers + 10 bytes, then ECONNRESET", t_reset)

        def t_garbage():
            with _connect(b) as s:
                s.sendall(_req("/garbage/x"))
                data, how = _read_until_eof(s)
                expect(data == b"\x00\x01garbage not http\r\n\r\n" and how == "eof", repr(data))
        check("badhttp: garbage -> exact non-HTTP bytes, EOF", t_garbage)

        def t_bigheader():
            with _connect(b) as s:
                s.sendall(_req("/bigheader"))
                head, rest = _read_head(s)
                expect(len(head) == 200 * 1024, f"head is {len(head)} bytes")
                expect(head.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nX-Big: aaaa" in head
                       and b"\r\nContent-Length: 0\r\n" in head and rest == b"", head[:80])
                _one(s, "/ok", ok)
        check("badhttp: bigheader -> 200 with a 204800-byte head, CL 0, keep-alive", t_bigheader)

        def t_badlength():
            with _connect(b) as s:
                s.sendall(_req("/badlength"))
                data, how = _read_until_eof(s)
                expect(b"\r\nContent-Length: 12x\r\n" in data and how == "eof", repr(data))
        check("badhttp: badlength -> 'Content-Length: 12x'", t_badlength)

        def t_stall():
            with _connect(b, timeout=1.5) as s:
                s.sendall(_req("/stall"))
                got = _read_n(s, len(partial))
                expect(got == partial, repr(got))
                try:
                    d = s.recv(100)
                    raise AssertionError(f"stall sent more: {d!r}")
                except socket.timeout:
                    pass
        check("badhttp: stall -> headers + 10 of 100 bytes, then silence (1.5 s)", t_stall)

        def t_noresponse():
            with _connect(b, timeout=1.5) as s:
                s.sendall(_req("/noresponse"))
                try:
                    d = s.recv(100)
                    raise AssertionError(f"noresponse answered: {d!r}")
                except socket.timeout:
                    pass
        check("badhttp: noresponse -> silence (1.5 s)", t_noresponse)

        def t_close():
            with _connect(b) as s:
                s.sendall(_req("/close"))
                data, how = _read_until_eof(s)
                expect(data == b"" and how == "eof", repr(data))
        check("badhttp: close -> EOF, no bytes", t_close)

        def t_slowdown():
            with _connect(b) as s:
                for _ in range(2):
                    s.sendall(_req("/slowdown/key"))
                    head, rest = _read_head(s)
                    expect(head.startswith(b"HTTP/1.1 503 "), head)
                    expect(f"Content-Length: {len(slowdown_body)}\r\n".encode() in head, head)
                    body = rest + _read_n(s, len(slowdown_body) - len(rest))
                    expect(body == slowdown_body, repr(body))
        check("badhttp: slowdown -> 503 + S3 SlowDown XML, keep-alive", t_slowdown)

        def t_badxml():
            want = b"<ListBucketResult><Contents><Key>a</Key><Size>zz</Size></Contents"
            with _connect(b) as s:
                s.sendall(_req("/badxml?list-type=2"))
                head, rest = _read_head(s)
                expect(head.startswith(b"HTTP/1.1 200 ") and
                       b"Content-Type: application/xml\r\n" in head and
                       f"Content-Length: {len(want)}\r\n".encode() in head, head)
                body = rest + _read_n(s, len(want) - len(rest))
                expect(body == want, repr(body))
                _one(s, "/ok", ok)
        check("badhttp: badxml -> 200 application/xml with broken XML, right CL", t_badxml)

        def t_chunked():
            with _connect(b) as s:
                s.sendall(_req("/chunked"))
                head, rest = _read_head(s)
                expect(b"Transfer-Encoding: chunked" in head, head)
                buf, chunks, body = rest, 0, b""
                while True:
                    while b"\r\n" not in buf:
                        buf += s.recv(100)
                    line, _, buf = buf.partition(b"\r\n")
                    n = int(line, 16)
                    while len(buf) < n + 2:
                        buf += s.recv(100)
                    if n == 0:
                        expect(buf == b"\r\n", f"trailer {buf!r}")
                        break
                    chunks += 1
                    body += buf[:n]
                    buf = buf[n + 2:]
                expect(body == b"hello world" and chunks == 3, f"{chunks} chunks {body!r}")
                _one(s, "/ok", ok)
        check("badhttp: chunked -> 'hello world' in 3 chunks, keep-alive", t_chunked)

        def t_flaky():
            codes = []
            with _connect(b) as s:
                for _ in range(4):
                    s.sendall(_req("/flaky/obj"))
                    head, rest = _read_head(s)
                    cl = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                    _ = rest + _read_n(s, cl - len(rest))
                    codes.append(int(head.split(b" ")[1]))
            expect(codes == [503, 503, 200, 200], f"codes {codes}")
        check("badhttp: flaky -> 503, 503, 200, 200", t_flaky)

        def t_unknown():
            with _connect(b) as s:
                _one(s, "/nope/x", b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                _one(s, "/", b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        check("badhttp: unknown scenario -> 404 CL 0, keep-alive", t_unknown)

        def t_conn_close():
            with _connect(b) as s:
                s.sendall(_req("/ok", b"Connection: close\r\n"))
                data, how = _read_until_eof(s)
                expect(data == ok and how == "eof", repr(data))
        check("badhttp: 'Connection: close' request -> response then EOF", t_conn_close)

        def t_counter():
            snap = b.requests.snapshot()
            want = {"ok": 3 + 3 + 1 + 1 + 1 + 1, "truncated": 1, "reset": 1, "garbage": 1,
                    "bigheader": 1, "badlength": 1, "stall": 1, "noresponse": 1, "close": 1,
                    "slowdown": 2, "badxml": 1, "chunked": 1, "flaky": 4, "nope": 1, "": 1}
            expect(snap == want, f"{snap} != {want}")
            expect(b.requests["never"] == 0 and b.requests.total() == sum(want.values()), "total")
        check("badhttp: requests counter by first path segment", t_counter)

        def t_stop_wakes():
            s = _connect(b, timeout=10)
            s.sendall(_req("/stall"))
            _read_n(s, len(partial))
            s2 = _connect(b, timeout=10)
            s2.sendall(_req("/noresponse"))
            time.sleep(0.2)
            t = time.monotonic()
            b.stop()
            stop_t = time.monotonic() - t
            d1, _ = _read_until_eof(s)
            d2, _ = _read_until_eof(s2)
            waited = time.monotonic() - t
            s.close()
            s2.close()
            expect(stop_t < 2 and waited < 3, f"stop took {stop_t:.2f} s, EOF after {waited:.2f} s")
            expect(d1 == b"" and d2 == b"", f"{d1!r} {d2!r}")
            expect(not _port_open(b.port), "listener still accepting")
        check("badhttp: stop() wakes stalled handlers and closes the listener", t_stop_wakes)
    finally:
        b.stop()


# --------------------------------------------------------------------------------------------
def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie would still "exist"; ours are reaped by Popen.wait
    return True


def _port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_lifecycle(tmp):
    def ports():
        ps = servers.free_ports(5)
        expect(len(set(ps)) == 5 and all(1024 <= p < 65536 for p in ps), f"{ps}")
        expect(isinstance(servers.free_port(), int), "free_port")
    check("lifecycle: free_port/free_ports", ports)

    def missing():
        try:
            servers.require("no-such-server-binary-xyz", "apt-get install xyz-package")
        except servers.MissingServer as e:
            expect("apt-get install xyz-package" in str(e), str(e))
            return
        raise AssertionError("no MissingServer")
    check("lifecycle: a missing binary raises MissingServer naming the package", missing)

    def missing_nginx():
        old = os.environ["PATH"]
        os.environ["PATH"] = "/nonexistent"
        try:
            servers.require("nginx", "apt-get install nginx", "/nonexistent/nginx")
        except servers.MissingServer as e:
            expect("apt-get install nginx" in str(e), str(e))
            return
        finally:
            os.environ["PATH"] = old
        raise AssertionError("no MissingServer")
    check("lifecycle: nginx absent from PATH and fallback -> MissingServer", missing_nginx)

    def startup_failure_has_log():
        class Broken(servers.Nginx):
            def _command(self):
                cmd = super()._command()
                # occupy the HTTP port so nginx fails to bind after `nginx -t` passed
                self._blocker = socket.socket()
                self._blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self._blocker.bind(("127.0.0.1", self.http_port))
                self._blocker.listen(1)
                return cmd

            def _ready(self):
                return False
        n = Broken(os.path.join(tmp, "broken"))
        try:
            n.start()
        except servers.ServerError as e:
            n._blocker.close()
            expect("Address already in use" in str(e), f"log tail missing: {str(e)[:600]}")
            expect(not n.running(), "still running")
            return
        n.stop()
        raise AssertionError("started")
    check("lifecycle: a startup failure raises ServerError with the log tail", startup_failure_has_log)


def main():
    which = sys.argv[1:] or ["lifecycle", "badhttp", "nginx", "s3rver", "moto"]
    tests = {"s3rver": test_s3rver, "moto": test_moto, "nginx": test_nginx,
             "badhttp": test_badhttp, "lifecycle": test_lifecycle}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="servers-selftest-") as tmp:
        for name in which:
            try:
                tests[name](tmp)
            except Exception as e:  # noqa: BLE001
                report(f"{name}: unexpected error", False,
                       f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}")
    print(f"{'FAILED' if FAILED else 'ALL PASSED'}: {len(FAILED)} failure(s), "
          f"{time.monotonic() - t0:.1f} s")
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
