#!/usr/bin/env python3
"""Google Cloud Storage servers for the integration tests (test-servers.md section 3).

    GcsEmulator(tmpdir)    firebase-tools 15.34.2's storage emulator through test/servers/
        gcs_emu.js (its rules runtime stubbed out), on 127.0.0.1:PORT. JSON API, buckets
        created on demand, NO authentication checked. Ready when a listing answers. Object
        bytes live under TMPDIR/firebase (TMPDIR = tmpdir/gcs-emulator-tmp, per instance: the
        emulator wipes that directory when it stops).
        Attributes: port, host ("127.0.0.1:PORT"), endpoint ("http://127.0.0.1:PORT"), pid, log.
        env(**extra) -> os.environ copy with STORAGE_EMULATOR_HOST=host and the Google
            credential variables removed; extra applied (None removes).
        Plain-HTTP JSON API helpers (independent of the code under test):
            list(bucket, prefix=None, delimiter=None) -> ({name: size}, [prefixes]), all pages
            stat(bucket, name) -> metadata dict or None (404)
            get(bucket, name, rng=None) -> bytes (rng "bytes=A-B")
            put(bucket, name, data) -> metadata dict (uploadType=media)
            delete(bucket, name) -> HTTP status

    H2Proxy(tmpdir, upstream_port)   nginx on 127.0.0.1:PORT speaking HTTP/2 with prior
        knowledge (h2c), passing requests to the emulator over HTTP/1.1. Attributes: port,
        endpoint ("http://127.0.0.1:PORT").

    TokenFront(tmpdir, upstream_port, expires_in=3600, buckets=("bench",),
               project="demo-bench", tls=False)
        A threaded HTTP/1.1 server on 127.0.0.1, in this process, playing Google's OAuth2
        token endpoint and a GCS front that checks bearer tokens (with tls: HTTPS with a
        self-signed certificate for DNS:localhost in `cert`, usable as the CA file; host is
        then localhost:PORT):
          POST /token  grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT:
                the JWT is verified with python3-jwt against the public key of the service
                account written to sa_path (RS256, aud = token_uri, iss = client_email, kid,
                iat/exp present with exp - iat <= 3600, a devstorage scope); then
                {access_token, expires_in, token_type: Bearer}; else 400 {"error":
                "invalid_grant", "error_description": ...} (reason kept in refused).
          anything else: 401 with a GCS error body (reason authError) unless it carries
                "Authorization: Bearer <token>" of a token issued here and not expired; then
                the request goes to the emulator (bytes relayed as they are), except:
                - buckets are checked: only `buckets` (and those created here) exist, others
                  get 404 "The specified bucket does not exist."; POST /storage/v1/b?project=P
                  with {"name": B} creates B when P == project (else 403);
                - resumable uploads behave as on GCS (the emulator finalizes on the first
                  PUT): chunks are collected per session, each must start where the last one
                  ended and be a multiple of 256 KiB unless it is the last; non-final chunks
                  get 308 with "Range: bytes=0-N"; "Content-Range: bytes */TOTAL" queries the
                  status; the final chunk sends the whole body to the emulator; DELETE of the
                  session URL cancels it (499). With fail_chunk = K, the K-th chunk of the
                  first session that has one keeps only half of its bytes and answers 503
                  (the client must query and resume).
          token_delay (seconds, default 0) delays every token answer.
        Attributes: port, host, endpoint, token_uri, sa_path, client_email, key_id, counters
        (tokens_issued, refused [reasons], unauthorized, expired_used, proxied, chunks,
        status_queries, injected, bad_chunks [reasons], cancelled, buckets_created [names]),
        lock. write_sa(path, key=None, project_id=...) writes another key file for the same
        client_email (key=None: a new, unrelated RSA key: signatures made with it are refused).
        start()/stop(); a context manager.

Requires /usr/bin/python3 with python3-jwt and python3-cryptography (scripts/deps.sh).
Loopback only; the emulator is stopped by its PID (servers._Process).
"""
import http.client
import http.server
import json
import os
import re
import secrets
import socketserver
import threading
import time
import urllib.parse

from servers import _Process, npm_dir, free_port, _http_answers, require, MissingServer

try:
    import jwt  # python3-jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
except ImportError as e:  # pragma: no cover - reported as a failure by the checks
    jwt = None
    _IMPORT_ERROR = e
else:
    _IMPORT_ERROR = None

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",
          "https://www.googleapis.com/auth/devstorage.full_control",
          "https://www.googleapis.com/auth/cloud-platform")
GRANULE = 256 * 1024


def _need_crypto():
    if jwt is None:
        raise MissingServer(f"python3-jwt / python3-cryptography are missing ({_IMPORT_ERROR}); "
                            "install them: apt-get install python3-jwt python3-cryptography "
                            "(and run the test with /usr/bin/python3)")


class GcsEmulator(_Process):
    """firebase-tools storage emulator, GCS JSON API, no auth (test-servers.md 3)."""

    name = "gcs-emulator"

    def __init__(self, tmpdir):
        super().__init__(tmpdir)
        self.port = None
        self.host = None
        self.endpoint = None

    def _command(self):
        node = require("node", "apt-get install nodejs npm (Node 20)")
        d = npm_dir()
        wrapper = os.path.join(d, "gcs_emu.js")
        if not os.path.isfile(wrapper):
            raise MissingServer(f"{wrapper} missing: scripts/servers.sh copies test/servers/*.js")
        if not os.path.isdir(os.path.join(d, "node_modules", "firebase-tools")):
            raise MissingServer(f"firebase-tools is not installed in {d}; run scripts/servers.sh "
                                "(test/servers/package.json pins firebase-tools 15.34.2)")
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.endpoint = f"http://{self.host}"
        return [node, wrapper, str(self.port)]

    def _child_env(self):
        # the emulator keeps object bytes under os.tmpdir()/firebase/storage/blobs and wipes
        # that directory when it stops: give each instance its own
        e = dict(os.environ)
        e["TMPDIR"] = os.path.join(self.tmpdir, "gcs-emulator-tmp")
        os.makedirs(e["TMPDIR"], exist_ok=True)
        return e

    def _ready(self):
        return _http_answers("127.0.0.1", self.port, "/storage/v1/b/ready/o")

    def env(self, **extra):
        e = dict(os.environ)
        for k in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"):
            e.pop(k, None)
        e["STORAGE_EMULATOR_HOST"] = self.host
        for k, v in extra.items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = str(v)
        return e

    # --- plain JSON API client ---
    def _req(self, method, target, body=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            c.request(method, target, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    @staticmethod
    def _q(s):
        return urllib.parse.quote(s, safe="")

    def list(self, bucket, prefix=None, delimiter=None):
        items, prefixes, token = {}, [], None
        while True:
            q = {"maxResults": "1000"}
            if prefix:
                q["prefix"] = prefix
            if delimiter:
                q["delimiter"] = delimiter
            if token:
                q["pageToken"] = token
            st, _, body = self._req("GET", f"/storage/v1/b/{self._q(bucket)}/o?" +
                                    urllib.parse.urlencode(q))
            if st != 200:
                raise RuntimeError(f"list {bucket}: HTTP {st} {body[:200]!r}")
            doc = json.loads(body)
            for it in doc.get("items", []):
                items[it["name"]] = int(it["size"])
            prefixes += doc.get("prefixes", [])
            token = doc.get("nextPageToken")
            if not token:
                return items, prefixes

    def stat(self, bucket, name):
        st, _, body = self._req("GET", f"/storage/v1/b/{self._q(bucket)}/o/{self._q(name)}")
        if st == 404:
            return None
        if st != 200:
            raise RuntimeError(f"stat {name}: HTTP {st}")
        return json.loads(body)

    def get(self, bucket, name, rng=None):
        st, _, body = self._req("GET", f"/storage/v1/b/{self._q(bucket)}/o/{self._q(name)}"
                                "?alt=media", headers={"Range": rng} if rng else None)
        if st not in (200, 206):
            raise RuntimeError(f"get {name}: HTTP {st}")
        return body

    def put(self, bucket, name, data):
        st, _, body = self._req("POST", f"/upload/storage/v1/b/{self._q(bucket)}/o?uploadType="
                                f"media&name={self._q(name)}", body=data,
                                headers={"Content-Type": "application/octet-stream"})
        if st != 200:
            raise RuntimeError(f"put {name}: HTTP {st} {body[:200]!r}")
        return json.loads(body)

    def delete(self, bucket, name):
        return self._req("DELETE", f"/storage/v1/b/{self._q(bucket)}/o/{self._q(name)}")[0]


class H2Proxy(_Process):
    """nginx (Debian package) listening for HTTP/2 with prior knowledge (h2c) on 127.0.0.1 and
    passing every request to upstream_port over HTTP/1.1: the emulator speaks HTTP/1.1 only."""

    name = "gcs-h2proxy"

    def __init__(self, tmpdir, upstream_port):
        super().__init__(tmpdir)
        self.upstream = upstream_port
        self.port = None
        self.endpoint = None
        self.dir = os.path.join(self.tmpdir, "h2proxy")

    def _command(self):
        nginx = require("nginx", "apt-get install nginx", "/usr/sbin/nginx")
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        for sub in ("logs", "tmp"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        d = self.dir
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""{'user root;' if os.geteuid() == 0 else ''}
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
daemon off;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body; proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi; uwsgi_temp_path {d}/tmp/uwsgi; scgi_temp_path {d}/tmp/scgi;
    client_max_body_size 0;
    server {{
        listen 127.0.0.1:{self.port} http2;
        location / {{
            proxy_pass http://127.0.0.1:{self.upstream};
            proxy_http_version 1.1;
            proxy_request_buffering off;
        }}
    }}
}}
""")
        return [nginx, "-c", conf, "-p", d]

    def _ready(self):
        import socket
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False


def _gcs_error(code, reason, message):
    return json.dumps({"error": {"code": code, "message": message, "errors": [
        {"message": message, "domain": "global", "reason": reason}]}}).encode()


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        import ssl
        import sys
        e = sys.exc_info()[1]
        if isinstance(e, (ssl.SSLError, ConnectionError)):
            return  # a client refusing our test certificate, or going away: expected
        super().handle_error(request, client_address)


class TokenFront:
    """OAuth2 token endpoint + bearer-checking GCS front over the emulator (see module doc)."""

    def __init__(self, tmpdir, upstream_port, expires_in=3600, buckets=("bench",),
                 project="demo-bench", tls=False):
        _need_crypto()
        self.tmpdir = os.path.abspath(tmpdir)
        os.makedirs(self.tmpdir, exist_ok=True)
        self.upstream = upstream_port
        self.expires_in = expires_in
        self.buckets = set(buckets)
        self.project = project
        self.lock = threading.Lock()
        self.tokens = {}
        self.sessions = {}
        self.fail_chunk = 0
        self.token_delay = 0.0
        self.tokens_issued = 0
        self.refused = []
        self.unauthorized = 0
        self.expired_used = 0
        self.proxied = 0
        self.chunks = 0
        self.status_queries = 0
        self.injected = 0
        self.bad_chunks = []
        self.cancelled = 0
        self.buckets_created = []
        self.client_email = "bench-sa@demo-bench.iam.gserviceaccount.com"
        self.key_id = "test-key-" + secrets.token_hex(4)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.port = free_port()
        self.tls = tls
        self.cert = None
        if tls:
            # mbedtls matches DNS names only: the certificate names localhost
            self.host = f"localhost:{self.port}"
            self.endpoint = f"https://{self.host}"
            self.cert, self._cert_key = self._make_cert()
        else:
            self.host = f"127.0.0.1:{self.port}"
            self.endpoint = f"http://{self.host}"
        self.token_uri = f"{self.endpoint}/token"
        self.sa_path = os.path.join(self.tmpdir, "sa.json")
        self.write_sa(self.sa_path, self.key)
        self._srv = None
        self._thread = None

    def write_sa(self, path, key=None, project_id="demo-bench"):
        """A service-account key file for client_email; key None: a new, unrelated key."""
        if key is None:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        doc = {"type": "service_account", "private_key_id": self.key_id, "private_key": pem,
               "client_email": self.client_email, "client_id": "1234567890",
               "auth_uri": "https://accounts.google.com/o/oauth2/auth",
               "token_uri": self.token_uri}
        if project_id:
            doc["project_id"] = project_id
        with open(path, "w") as f:
            json.dump(doc, f, indent=2)
        return path

    def _make_cert(self):
        import datetime
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = datetime.datetime.utcnow()
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=7))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                               critical=False)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        cpath = os.path.join(self.tmpdir, "front-cert.pem")
        kpath = os.path.join(self.tmpdir, "front-key.pem")
        with open(cpath, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(kpath, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        return cpath, kpath

    # --- lifecycle ---
    def start(self):
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _send(self, status, body=b"", headers=None, ctype="application/json"):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if ctype and body:
                    self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body and self.command != "HEAD":
                    self.wfile.write(body)

            def do_any(self):
                body = self._body()
                try:
                    front._handle(self, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_any

        self._srv = _Server(("127.0.0.1", self.port), Handler)
        if self.tls:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.cert, self._cert_key)
            self._srv.socket = ctx.wrap_socket(self._srv.socket, server_side=True,
                                               do_handshake_on_connect=False)
        self._thread = threading.Thread(target=self._srv.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._srv:
            self._srv.shutdown()
            self._srv.server_close()
            self._srv = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # --- the token endpoint ---
    def _token(self, h, body):
        form = urllib.parse.parse_qs(body.decode("latin-1"))
        if form.get("grant_type") != [GRANT] or len(form.get("assertion", [])) != 1:
            return self._refuse(h, "unsupported_grant_type", "grant_type must be " + GRANT)
        a = form["assertion"][0]
        try:
            hdr = jwt.get_unverified_header(a)
            claims = jwt.decode(a, self.public_pem, algorithms=["RS256"],
                                audience=self.token_uri, leeway=5,
                                options={"require": ["exp", "iat", "iss", "aud"]})
        except jwt.InvalidSignatureError:
            return self._refuse(h, "invalid_grant", "Invalid JWT Signature.")
        except jwt.PyJWTError as e:
            return self._refuse(h, "invalid_grant", f"Invalid JWT: {type(e).__name__}: {e}")
        if hdr.get("kid") != self.key_id or hdr.get("typ") != "JWT":
            return self._refuse(h, "invalid_grant", f"bad JWT header {hdr}")
        if claims.get("iss") != self.client_email:
            return self._refuse(h, "invalid_grant", f"unknown iss {claims.get('iss')!r}")
        if claims.get("scope") not in SCOPES:
            return self._refuse(h, "invalid_scope", f"scope {claims.get('scope')!r}")
        if not 0 < claims["exp"] - claims["iat"] <= 3600:
            return self._refuse(h, "invalid_grant", "exp - iat must be in (0, 3600]")
        if self.token_delay:
            time.sleep(self.token_delay)
        tok = "ya29.test-" + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[tok] = time.monotonic() + self.expires_in
            self.tokens_issued += 1
        h._send(200, json.dumps({"access_token": tok, "expires_in": self.expires_in,
                                 "token_type": "Bearer"}).encode())

    def _refuse(self, h, err, desc):
        with self.lock:
            self.refused.append(f"{err}: {desc}")
        h._send(400, json.dumps({"error": err, "error_description": desc}).encode())

    def _authorized(self, h):
        a = h.headers.get("Authorization", "")
        if not a.startswith("Bearer "):
            return False
        with self.lock:
            exp = self.tokens.get(a[7:])
            if exp is not None and time.monotonic() >= exp:
                self.expired_used += 1
                return False
            return exp is not None

    # --- the GCS front ---
    def _handle(self, h, body):
        path = h.path
        if path == "/token" and h.command == "POST":
            return self._token(h, body)
        if not self._authorized(h):
            with self.lock:
                self.unauthorized += 1
            return h._send(401, _gcs_error(401, "authError", "Invalid Credentials"),
                           {"WWW-Authenticate": "Bearer realm=\"https://accounts.google.com/\""})
        u = urllib.parse.urlsplit(path)
        q = urllib.parse.parse_qs(u.query)
        if u.path == "/storage/v1/b" and h.command == "POST":
            return self._create_bucket(h, q, body)
        m = re.match(r"^(?:/upload)?/storage/v1/b/([^/]+)/o(?:/|$)", u.path)
        if not m:
            return h._send(404, _gcs_error(404, "notFound", f"no such API: {u.path}"))
        bucket = urllib.parse.unquote(m.group(1))
        with self.lock:
            known = bucket in self.buckets
        if not known:
            return h._send(404, _gcs_error(404, "notFound", "The specified bucket does not exist."))
        if u.path.startswith("/upload/") and "upload_id" in q:
            return self._session(h, u, q, body)
        status, headers, data = self._proxy(h.command, path, body, h.headers)
        if u.path.startswith("/upload/") and q.get("uploadType") == ["resumable"]:
            loc = headers.get("location")
            if loc:
                lu = urllib.parse.urlsplit(loc)
                headers["location"] = urllib.parse.urlunsplit(
                    ("http", self.host, lu.path, lu.query, ""))
                uid = urllib.parse.parse_qs(lu.query).get("upload_id", [""])[0]
                with self.lock:
                    self.sessions[uid] = {"buf": bytearray(), "n": 0}
        h._send(status, data, {k: v for k, v in headers.items() if k in ("location",)},
                ctype=headers.get("content-type"))

    def _proxy(self, method, target, body, in_headers):
        hdrs = {k: v for k, v in in_headers.items()
                if k.lower() not in ("host", "authorization", "connection", "content-length",
                                     "keep-alive", "transfer-encoding")}
        c = http.client.HTTPConnection("127.0.0.1", self.upstream, timeout=120)
        try:
            c.request(method, target, body=body if method in ("POST", "PUT", "PATCH") else None,
                      headers=hdrs)
            r = c.getresponse()
            data = r.read()
            with self.lock:
                self.proxied += 1
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def _create_bucket(self, h, q, body):
        try:
            name = json.loads(body or b"{}").get("name")
        except ValueError:
            name = None
        if not name:
            return h._send(400, _gcs_error(400, "invalid", "bucket name missing"))
        if q.get("project") != [self.project]:
            return h._send(403, _gcs_error(403, "forbidden", f"no access to project {q.get('project')}"))
        with self.lock:
            if name in self.buckets:
                return h._send(409, _gcs_error(409, "conflict", "You already own this bucket."))
            self.buckets.add(name)
            self.buckets_created.append(name)
        h._send(200, json.dumps({"kind": "storage#bucket", "name": name, "id": name}).encode())

    def _session(self, h, u, q, body):
        uid = q["upload_id"][0]
        with self.lock:
            s = self.sessions.get(uid)
        if s is None:
            return h._send(404, _gcs_error(404, "notFound", "no such upload session"))
        if h.command == "DELETE":
            with self.lock:
                self.sessions.pop(uid, None)
                self.cancelled += 1
            return h._send(499, b"", ctype=None)
        if h.command != "PUT":
            return h._send(405, _gcs_error(405, "badMethod", h.command))
        cr = h.headers.get("Content-Range", "")
        m = re.match(r"^bytes \*/(\d+)$", cr)
        if m:
            with self.lock:
                self.status_queries += 1
                have = len(s["buf"])
            return h._send(308, b"", {"Range": f"bytes=0-{have - 1}"} if have else {}, ctype=None)
        m = re.match(r"^bytes (\d+)-(\d+)/(\d+)$", cr)
        if not m:
            return self._bad_chunk(h, f"bad Content-Range {cr!r}")
        a, b, total = (int(x) for x in m.groups())
        if b - a + 1 != len(body):
            return self._bad_chunk(h, f"Content-Range {cr} but {len(body)} bytes")
        last = b + 1 == total
        with self.lock:
            self.chunks += 1
            s["n"] += 1
            n = s["n"]
            have = len(s["buf"])
            inject = (self.fail_chunk and n == self.fail_chunk and not last and
                      not self.injected)
        if a != have:
            return self._bad_chunk(h, f"chunk starts at {a}, the session has {have} bytes")
        if not last and len(body) % GRANULE:
            return self._bad_chunk(h, f"non-final chunk of {len(body)} bytes, not a multiple "
                                      "of 256 KiB")
        if inject:
            with self.lock:
                self.injected += 1
                s["buf"] += body[:len(body) // 2]
            return h._send(503, _gcs_error(503, "backendError", "injected failure"))
        s["buf"] += body
        if not last:
            return h._send(308, b"", {"Range": f"bytes=0-{len(s['buf']) - 1}"}, ctype=None)
        status, headers, data = self._proxy("PUT", u.path + "?" + u.query, bytes(s["buf"]), {})
        with self.lock:
            self.sessions.pop(q["upload_id"][0], None)
        h._send(status, data, ctype=headers.get("content-type"))

    def _bad_chunk(self, h, why):
        with self.lock:
            self.bad_chunks.append(why)
        h._send(400, _gcs_error(400, "invalid", why))
