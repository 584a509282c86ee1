#!/usr/bin/env python3
"""Real third-party servers on loopback, for the integration tests.

Recipes: test-servers.md sections 1b (@20minutes/s3rver), 1c (moto) and 4 (nginx).
Standard library only. Every server binds 127.0.0.1 on a free port chosen by binding port 0;
nothing here talks to anything but loopback. A missing server binary raises MissingServer (a
hard failure naming the package to install), never a skip. Each class is a context manager:
``__enter__`` starts the server and waits for readiness (timeout ~20 s), ``__exit__`` stops
it; ``start()`` / ``stop()`` do the same by hand, and ``stop()`` is idempotent. A process is
stopped only by its own PID (SIGTERM, wait up to 5 s, then SIGKILL). Servers run in their own
session, so the kill fallback also reaps the process group it created (nginx workers).
Server stdout/stderr go to a log file in the scratch dir; a startup failure raises ServerError
with the last 2000 characters of that log. Servers still running at interpreter exit are
stopped by an atexit hook. Use one instance of a class per scratch dir.

    free_port() -> int          a free TCP port on 127.0.0.1 (bind 0, close)
    free_ports(n) -> [int]      n distinct free ports

    S3rver(tmpdir, bucket="bench")      @20minutes/s3rver 5.0.0, verifies SigV4, data on disk
        Runs scripts/servers.sh (npm cache dir = last stdout line), then
        NODE_OPTIONS=--openssl-legacy-provider node DIR/s3rver-node20.js
            -d TMP/s3rver-data -a 127.0.0.1 -p PORT --configure-bucket BUCKET -s
        Ready when GET / gets any HTTP answer. Log: TMP/s3rver.log
    Moto(tmpdir, bucket="bench")        moto_server 5.2.1, verifies SigV4, in memory
        INITIAL_NO_AUTH_ACTION_COUNT=3 moto_server -H 127.0.0.1 -p PORT; ready on GET /moto-api/.
        The 3 unauthenticated actions are spent on iam create-user / create-access-key /
        put-user-policy (servers_iam_policy.json, allow all); the bucket is then created with
        the new key. From then on every request must be correctly signed. Log: TMP/moto.log
      Both S3 classes have: endpoint ("http://127.0.0.1:PORT"), port, bucket, access_key,
      secret_key, region ("us-east-1"), pid, log, and
        env(**extra) -> dict   os.environ copy with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
            AWS_REGION, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, AWS_EC2_METADATA_DISABLED=true;
            AWS_PROFILE, AWS_DEFAULT_PROFILE, AWS_SESSION_TOKEN, AWS_SECURITY_TOKEN,
            AWS_CA_BUNDLE removed; AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE point to
            nonexistent files in tmpdir; then **extra applied (value None removes a variable).
        aws(*args, check=True, input=None, env=None, timeout=120) -> CompletedProcess (text)
            /usr/bin/aws (AWS CLI v2, Debian package awscli; the `aws` on PATH is a pyenv v1)
            --endpoint-url ENDPOINT --region us-east-1 ARGS, with env(**(env or {})).
            check=True raises ServerError carrying stderr on a nonzero exit.
        Note: awscli 2.9 ignores AWS_ENDPOINT_URL (added in 2.13), hence --endpoint-url.
      Signature quirks (correctly signed requests rejected with SignatureDoesNotMatch):
        s3rver: query values containing ! ' ( ) * (JS encodeURIComponent leaves them bare).
        moto:   query values with / : @ , ! $ ' ( ) * ; ? [ ] (so `--prefix dir/` and
                `--delimiter /` FAIL), keys with + = & : @ , % ! $ ' ( ) * ; [ ], non-ASCII.

    Nginx(tmpdir)                        nginx 1.22 WebDAV + h2c + h2/TLS
        Config from servers_nginx.conf.in (user root when running as root, 2 workers, daemon
        off, pid file in TMP/nginx, sendfile off, PUT/DELETE/MKCOL with create_full_put_path,
        autoindex json; /status/503 -> 503 "slow down\\n", /status/500 -> 500).
        Attributes: dir (TMP/nginx), conf, data (document root), cert (self-signed EC P-256,
        CN=localhost, SAN DNS:localhost + IP:127.0.0.1; usable as the CA file), key,
        http_port / h2c_port / https_port, http_url / h2c_url / https_url (host 127.0.0.1),
        pid, log. `nginx -t` must pass first (its output is in the error otherwise).
        Ready when GET / on http_port answers. h2c answers HTTP/2 prior knowledge only.

    BadHttp(tmpdir=None)                 scripted, deliberately broken HTTP/1.1 peer (a thread)
        (tmpdir is accepted for symmetry with the other classes and not used)
        The first path segment picks the scenario (so it can be an S3 bucket name):
          ok          200, "hello", keep-alive
          truncated   Content-Length: 100, 10 bytes, FIN
          reset       Content-Length: 100, 10 bytes, then RST (SO_LINGER 1,0)
          garbage     b"\\x00\\x01garbage not http\\r\\n\\r\\n", FIN
          bigheader   200 whose head (status line to blank line) is exactly 200 KiB, one
                      X-Big: aaa... header, Content-Length: 0, keep-alive
          badlength   "Content-Length: 12x", 12 bytes, FIN
          stall       Content-Length: 100, 10 bytes, then silence for 30 s (or until stop)
          noresponse  request read, then silence for 30 s (or until stop), then FIN
          close       FIN at once, no response
          slowdown    503 with the S3 SlowDown error XML, keep-alive
          badxml      200 application/xml, truncated ListBucketResult, keep-alive
          chunked     200 chunked "hello" " " "world" (3 chunks), keep-alive
          flaky       per server: first 2 flaky requests get the slowdown answer, then ok
          mpufail     a multipart upload: POST ?uploads -> UploadId U1, PUT ?partNumber=2 ->
                      400 InvalidArgument, other parts -> 200 with an ETag, DELETE ?uploadId=U1
                      -> 204 (the abort)
          other       404, Content-Length: 0, keep-alive
        A request body (Content-Length or chunked) is read and discarded first;
        "Expect: 100-continue" gets "100 Continue" except for close/noresponse.
        "Connection: close" in a request closes after a keep-alive answer.
        Attributes: port, url ("http://127.0.0.1:PORT"), requests (RequestCounter: a dict
        first-segment -> count, missing keys read 0, with .lock, .total(), .snapshot()),
        log (list of (method, target) of every request; lock: log_lock).
        stop() closes the listener and all open connections and wakes sleeping handlers.
"""
import atexit
import http.client
import json
import os
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SERVERS_SH = os.path.normpath(os.path.join(HERE, "..", "..", "scripts", "servers.sh"))
NGINX_TEMPLATE = os.path.join(HERE, "servers_nginx.conf.in")
IAM_POLICY = os.path.join(HERE, "servers_iam_policy.json")
AWS_CLI = "/usr/bin/aws"
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
LOG_TAIL = 2000
REGION = "us-east-1"


class ServerError(RuntimeError):
    """A server failed to start, to get ready, or a helper command failed."""


class MissingServer(ServerError):
    """A required program is not installed. The message names the package to install."""


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (all bound at once, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port():
    """A free TCP port on 127.0.0.1 (bind port 0, read it, close)."""
    return free_ports(1)[0]


def require(program, package, fallback=None):
    """Absolute path of program (PATH, else fallback path) or MissingServer naming package."""
    path = shutil.which(program)
    if path is None and fallback and os.access(fallback, os.X_OK):
        path = fallback
    if path is None:
        raise MissingServer(f"{program} not found (PATH={os.environ.get('PATH', '')}); "
                            f"install it: {package}")
    return path


def _tail(path, n=LOG_TAIL):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - n))
            return f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"(no log: {e})"


def _http_answers(host, port, path, timeout=1.0):
    """True if a GET gets any HTTP response (status irrelevant)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


_RUNNING = set()


@atexit.register
def _stop_leftovers():
    for srv in list(_RUNNING):
        try:
            srv.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def npm_dir():
    """The directory of the pinned npm test servers (scripts/servers.sh installs them once per
    lockfile hash, outside the clone): node_modules/ plus the wrapper scripts of test/servers/."""
    if not os.path.isfile(SERVERS_SH):
        raise MissingServer(f"{SERVERS_SH} is missing")
    try:
        p = subprocess.run(["bash", SERVERS_SH], capture_output=True, text=True,
                           timeout=600, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise ServerError(f"{SERVERS_SH} took more than 600 s") from e
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    if p.returncode != 0 or not lines:
        msg = f"{SERVERS_SH} failed (exit {p.returncode}): {p.stderr[-LOG_TAIL:]}"
        if "npm is missing" in p.stderr:
            raise MissingServer(msg + " -- install it: apt-get install npm nodejs")
        raise ServerError(msg)
    d = lines[-1].strip()
    if not os.path.isfile(os.path.join(d, "s3rver-node20.js")):
        raise ServerError(f"{SERVERS_SH} printed {d!r}, which has no s3rver-node20.js")
    return d


class _Process:
    """A child process with a log file, readiness polling and PID-only stopping."""

    name = "server"

    def __init__(self, tmpdir):
        self.tmpdir = os.path.abspath(tmpdir)
        os.makedirs(self.tmpdir, exist_ok=True)
        self.proc = None
        self.pid = None
        self.log = os.path.join(self.tmpdir, f"{self.name}.log")
        self._logf = None
        self.startup_seconds = None

    # --- subclass hooks ---
    def _command(self):
        raise NotImplementedError

    def _child_env(self):
        return dict(os.environ)

    def _ready(self):
        raise NotImplementedError

    def _after_ready(self):
        pass

    # --- lifecycle ---
    def start(self):
        if self.proc is not None:
            raise ServerError(f"{self.name}: already started (pid {self.pid})")
        t0 = time.monotonic()
        cmd = self._command()
        self._logf = open(self.log, "ab")
        self._logf.write(("$ " + " ".join(cmd) + "\n").encode())
        self._logf.flush()
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._logf,
                                         stderr=subprocess.STDOUT, env=self._child_env(),
                                         cwd=self.tmpdir, start_new_session=True)
        except OSError as e:
            self._logf.close()
            self._logf = None
            raise ServerError(f"{self.name}: cannot run {cmd[0]}: {e}") from e
        self.pid = self.proc.pid
        _RUNNING.add(self)
        try:
            self._wait_ready(t0)
            self._after_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _fail(self, why):
        return ServerError(f"{self.name} (pid {self.pid}): {why}\n"
                           f"--- last {LOG_TAIL} chars of {self.log} ---\n{_tail(self.log)}")

    def _wait_ready(self, t0):
        deadline = t0 + READY_TIMEOUT
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise self._fail(f"exited with status {rc} before it was ready")
            if self._ready():
                return
            if time.monotonic() > deadline:
                raise self._fail(f"not ready after {READY_TIMEOUT:.0f} s")
            time.sleep(0.05)

    def stop(self):
        proc, self.proc = self.proc, None
        _RUNNING.discard(self)
        if proc is not None and proc.poll() is None:
            try:
                proc.terminate()
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                try:
                    # The session/group was created for this child (start_new_session);
                    # only its own descendants (e.g. nginx workers) are in it.
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                proc.wait()
        elif proc is not None:
            proc.wait()
        if self._logf is not None:
            self._logf.close()
            self._logf = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


class _S3Mixin:
    """env() and aws() for the S3 servers."""

    region = REGION

    def env(self, **extra):
        e = dict(os.environ)
        for k in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
                  "AWS_SECURITY_TOKEN", "AWS_CA_BUNDLE"):
            e.pop(k, None)
        e.update({
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(self.tmpdir, "aws-no-credentials"),
            "AWS_CONFIG_FILE": os.path.join(self.tmpdir, "aws-no-config"),
        })
        for k, v in extra.items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = str(v)
        return e

    def aws(self, *args, check=True, input=None, env=None, timeout=120):
        require(AWS_CLI, "apt-get install awscli (AWS CLI v2 at /usr/bin/aws)", AWS_CLI)
        cmd = [AWS_CLI, "--endpoint-url", self.endpoint, "--region", self.region, *args]
        e = self.env(AWS_PAGER="", **(env or {}))
        p = subprocess.run(cmd, env=e, input=input, capture_output=True, text=True,
                           timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise ServerError(f"{' '.join(cmd[3:])}: exit {p.returncode}\n"
                              f"stderr: {p.stderr[-LOG_TAIL:]}\nstdout: {p.stdout[-500:]}")
        return p


class S3rver(_S3Mixin, _Process):
    """@20minutes/s3rver 5.0.0 (test-servers.md 1b): SigV4-verifying S3 with data on disk."""

    name = "s3rver"

    def __init__(self, tmpdir, bucket="bench"):
        super().__init__(tmpdir)
        self.bucket = bucket
        self.access_key = "S3RVER"
        self.secret_key = "S3RVER"
        self.port = None
        self.endpoint = None
        self.data_dir = os.path.join(self.tmpdir, "s3rver-data")
        self.npm_dir = None

    def _command(self):
        node = require("node", "apt-get install nodejs npm (Node 20)")
        self.npm_dir = npm_dir()
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        os.makedirs(self.data_dir, exist_ok=True)
        return [node, os.path.join(self.npm_dir, "s3rver-node20.js"), "-d", self.data_dir,
                "-a", "127.0.0.1", "-p", str(self.port), "--configure-bucket", self.bucket, "-s"]

    def _child_env(self):
        e = dict(os.environ)
        # Continuation tokens are DES-encrypted: without it a truncated list gives 500.
        e["NODE_OPTIONS"] = "--openssl-legacy-provider"
        return e

    def _ready(self):
        return _http_answers("127.0.0.1", self.port, "/")


class Moto(_S3Mixin, _Process):
    """moto_server (test-servers.md 1c): full S3 subset, SigV4 verified, memory only.

    Known moto 5.2.1 bugs (server mode, werkzeug 3.1):
    - concurrent PUTs to the same key sometimes give 500; use distinct keys;
    - SigV4 verification rebuilds the URL from werkzeug's re-quoted request URL, so correctly
      signed requests get 403 SignatureDoesNotMatch when a query value contains any of
      / : @ , ! $ ' ( ) * ; ? [ ] or non-ASCII (e.g. list-objects-v2 --prefix dir/ or
      --delimiter /), or an object key contains any of + = & : @ , % ! $ ' ( ) * ; [ ] or
      non-ASCII. Keys with / and spaces, and prefixes of [A-Za-z0-9-_.~ +=&%] are fine."""

    name = "moto"
    NO_AUTH_ACTIONS = 3

    def __init__(self, tmpdir, bucket="bench"):
        super().__init__(tmpdir)
        self.bucket = bucket
        self.access_key = None
        self.secret_key = None
        self.port = None
        self.endpoint = None
        self.user = "bench"

    def _command(self):
        moto = require("moto_server",
                       "the Python package moto with its server extra "
                       "(pip install 'moto[server]==5.2.1'; pre-installed in the pyenv Python)")
        require(AWS_CLI, "apt-get install awscli (AWS CLI v2 at /usr/bin/aws)", AWS_CLI)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        return [moto, "-H", "127.0.0.1", "-p", str(self.port)]

    def _child_env(self):
        e = dict(os.environ)
        e["INITIAL_NO_AUTH_ACTION_COUNT"] = str(self.NO_AUTH_ACTIONS)
        return e

    def _ready(self):
        return _http_answers("127.0.0.1", self.port, "/moto-api/")

    def _after_ready(self):
        # Exactly NO_AUTH_ACTIONS unauthenticated calls (any credentials are accepted).
        boot = {"AWS_ACCESS_KEY_ID": "bootstrap", "AWS_SECRET_ACCESS_KEY": "bootstrap"}
        self.access_key = self.secret_key = "bootstrap"
        try:
            with open(IAM_POLICY) as f:
                policy = json.dumps(json.load(f))
            self.aws("iam", "create-user", "--user-name", self.user, env=boot)
            key = json.loads(self.aws("iam", "create-access-key", "--user-name", self.user,
                                      "--output", "json", env=boot).stdout)["AccessKey"]
            self.aws("iam", "put-user-policy", "--user-name", self.user, "--policy-name",
                     "allow-all", "--policy-document", policy, env=boot)
            self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]
            self.aws("s3api", "create-bucket", "--bucket", self.bucket)
        except (ServerError, subprocess.TimeoutExpired, KeyError, ValueError) as e:
            raise self._fail(f"bootstrap (IAM user, key, policy, bucket) failed: {e}") from e


class Nginx(_Process):
    """nginx (test-servers.md 4): WebDAV on HTTP/1.1, h2c (prior knowledge) and h2 over TLS."""

    name = "nginx"

    def __init__(self, tmpdir):
        super().__init__(tmpdir)
        self.dir = os.path.join(self.tmpdir, "nginx")
        self.conf = os.path.join(self.dir, "nginx.conf")
        self.data = os.path.join(self.dir, "data")
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        self.error_log = os.path.join(self.dir, "logs", "error.log")
        self.log = os.path.join(self.dir, "nginx.log")
        self.http_port = self.h2c_port = self.https_port = None
        self.http_url = self.h2c_url = self.https_url = None

    def _gen_cert(self):
        openssl = require("openssl", "apt-get install openssl")
        cmd = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
               "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", self.key, "-out", self.cert,
               "-days", "30", "-subj", "/CN=localhost",
               "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise ServerError(f"openssl req failed (exit {p.returncode}): {p.stderr[-LOG_TAIL:]}")

    def _command(self):
        nginx = require("nginx", "apt-get install nginx (needs the dav, http2 and ssl modules)",
                        "/usr/sbin/nginx")
        for sub in ("data", "logs", "tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi",
                    "tmp/scgi"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self._gen_cert()
        self.http_port, self.h2c_port, self.https_port = free_ports(3)
        self.http_url = f"http://127.0.0.1:{self.http_port}"
        self.h2c_url = f"http://127.0.0.1:{self.h2c_port}"
        self.https_url = f"https://127.0.0.1:{self.https_port}"
        with open(NGINX_TEMPLATE) as f:
            conf = f.read()
        # Workers run as nobody otherwise, and PUT fails with 500 (mkdir permission denied).
        user_line = "user root;" if os.geteuid() == 0 else "# not root: workers keep our user"
        for k, v in {"@USER_LINE@": user_line, "@DIR@": self.dir,
                     "@HTTP_PORT@": self.http_port, "@H2C_PORT@": self.h2c_port,
                     "@HTTPS_PORT@": self.https_port}.items():
            conf = conf.replace(k, str(v))
        if "@" in "".join(l.split("#")[0] for l in conf.splitlines()):
            raise ServerError(f"{NGINX_TEMPLATE}: unfilled placeholder")
        with open(self.conf, "w") as f:
            f.write(conf)
        # -e: otherwise nginx first opens the compiled-in /var/log/nginx/error.log.
        cmd = [nginx, "-c", self.conf, "-p", self.dir + "/", "-e", self.error_log]
        p = subprocess.run(cmd[:1] + ["-t"] + cmd[1:], capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise ServerError(f"nginx -t failed (exit {p.returncode}) for {self.conf}:\n"
                              f"{(p.stdout + p.stderr)[-LOG_TAIL:]}")
        return cmd

    def _ready(self):
        return _http_answers("127.0.0.1", self.http_port, "/")

    def _fail(self, why):
        err = super()._fail(why)
        return ServerError(f"{err}\n--- {self.error_log} ---\n{_tail(self.error_log)}")


# --------------------------------------------------------------------------------------------
# BadHttp: a scripted, deliberately broken HTTP/1.1 server.

SLOWDOWN_XML = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
                b'<Message>Please reduce your request rate.</Message>'
                b'<RequestId>REQ123</RequestId></Error>')
BADXML_BODY = b"<ListBucketResult><Contents><Key>a</Key><Size>zz</Size></Contents"
GARBAGE = b"\x00\x01garbage not http\r\n\r\n"
BIG_HEAD_SIZE = 200 * 1024
SLEEP_SECONDS = 30.0
MAX_HEAD = 1 << 20


def _response(status, headers=(), body=b""):
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("latin-1") + body


OK_RESPONSE = _response("200 OK", [("Content-Length", 5)], b"hello")
SLOWDOWN_RESPONSE = _response("503 Slow Down", [("Content-Type", "application/xml"),
                                                 ("Content-Length", len(SLOWDOWN_XML))],
                              SLOWDOWN_XML)
NOT_FOUND_RESPONSE = _response("404 Not Found", [("Content-Length", 0)])
PARTIAL_HEAD = _response("200 OK", [("Content-Type", "application/octet-stream"),
                                    ("Content-Length", 100)])
PARTIAL_BODY = b"0123456789"


def _big_header_response():
    pre = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Big: "
    post = b"\r\n\r\n"
    return pre + b"a" * (BIG_HEAD_SIZE - len(pre) - len(post)) + post


BIGHEADER_RESPONSE = _big_header_response()
CHUNKED_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked"
                    b"\r\n\r\n5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n")
BADXML_RESPONSE = _response("200 OK", [("Content-Type", "application/xml"),
                                       ("Content-Length", len(BADXML_BODY))], BADXML_BODY)
BADLENGTH_RESPONSE = _response("200 OK", [("Content-Length", "12x")], b"hello world!")

SCENARIOS = ("ok", "truncated", "reset", "garbage", "bigheader", "badlength", "stall",
             "noresponse", "close", "slowdown", "badxml", "chunked", "flaky")


class RequestCounter(dict):
    """scenario (first path segment) -> requests seen. Missing keys read as 0."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()

    def __missing__(self, key):
        return 0

    def incr(self, key):
        with self.lock:
            n = dict.get(self, key, 0) + 1
            self[key] = n
            return n

    def snapshot(self):
        with self.lock:
            return dict(self)

    def total(self):
        with self.lock:
            return sum(self.values())


class _Closed(Exception):
    pass


class _Conn:
    """Buffered reader over the accepted socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise _Closed()
        self.buf += data

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > MAX_HEAD:
                raise _Closed()
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return head

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > MAX_HEAD:
                raise _Closed()
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def discard_chunked(self):
        while True:
            size = int(self.read_line().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.read_line():  # trailers up to the blank line
                    pass
                return
            self.read_exact(size + 2)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        srv = self.server.owner
        sock = self.request
        sock.settimeout(SLEEP_SECONDS + 5)
        srv._track(sock, True)
        try:
            self._loop(srv, _Conn(sock))
        except (_Closed, OSError, ValueError):
            pass
        finally:
            srv._track(sock, False)

    def _loop(self, srv, conn):
        sock = conn.sock
        while not srv._stopping.is_set():
            head = conn.read_head()
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) < 2:
                raise _Closed()
            headers = {}
            for l in lines[1:]:
                k, _, v = l.partition(":")
                headers[k.strip().lower()] = v.strip()
            path, _, query = parts[1].partition("?")
            with srv.log_lock:
                srv.log.append((parts[0], parts[1]))
            if "://" in path:  # absolute-form request target
                path = "/" + path.split("://", 1)[1].partition("/")[2]
            name = path.lstrip("/").split("/", 1)[0]
            seen = srv.requests.incr(name)

            if name in ("close", "noresponse"):
                if name == "noresponse":
                    srv._stopping.wait(SLEEP_SECONDS)
                self._fin(sock)
                return
            if headers.get("expect", "").lower() == "100-continue":
                sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            if "chunked" in headers.get("transfer-encoding", "").lower():
                conn.discard_chunked()
            elif headers.get("content-length"):
                conn.read_exact(int(headers["content-length"]))

            if name == "truncated":
                sock.sendall(PARTIAL_HEAD + PARTIAL_BODY)
                self._fin(sock)
                return
            if name == "reset":
                sock.sendall(PARTIAL_HEAD + PARTIAL_BODY)
                time.sleep(0.05)  # let the data reach the peer before the RST
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()  # RST; socketserver's later shutdown/close of it are no-ops
                return
            if name == "garbage":
                sock.sendall(GARBAGE)
                self._fin(sock)
                return
            if name == "badlength":
                sock.sendall(BADLENGTH_RESPONSE)
                self._fin(sock)
                return
            if name == "stall":
                sock.sendall(PARTIAL_HEAD + PARTIAL_BODY)
                srv._stopping.wait(SLEEP_SECONDS)
                self._fin(sock)
                return
            resp = {"ok": OK_RESPONSE, "slowdown": SLOWDOWN_RESPONSE,
                    "bigheader": BIGHEADER_RESPONSE, "badxml": BADXML_RESPONSE,
                    "chunked": CHUNKED_RESPONSE}.get(name, NOT_FOUND_RESPONSE)
            if name == "flaky":
                resp = SLOWDOWN_RESPONSE if seen <= 2 else OK_RESPONSE
            if name == "mpufail":
                resp = _mpufail_response(parts[0], query)
            sock.sendall(resp)
            if headers.get("connection", "").lower() == "close":
                self._fin(sock)
                return

    @staticmethod
    def _fin(sock):
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _mpufail_response(method, query):
    """A multipart upload whose part 2 is refused (400 InvalidArgument, not retryable):
    CreateMultipartUpload answers UploadId U1, other parts succeed, the abort answers 204."""
    q = dict(kv.partition("=")[::2] for kv in query.split("&") if kv)
    if method == "POST" and "uploads" in q:
        body = (b'<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult>'
                b"<Bucket>mpufail</Bucket><Key>k</Key><UploadId>U1</UploadId>"
                b"</InitiateMultipartUploadResult>")
        return _response("200 OK", [("Content-Type", "application/xml"),
                                    ("Content-Length", len(body))], body)
    if method == "PUT" and "partNumber" in q:
        if q["partNumber"] == "2":
            body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidArgument</Code>'
                    b"<Message>part refused by the test server</Message>"
                    b"<RequestId>MPU2</RequestId></Error>")
            return _response("400 Bad Request", [("Content-Type", "application/xml"),
                                                 ("Content-Length", len(body))], body)
        return _response("200 OK", [("ETag", f'"etag-{q["partNumber"]}"'),
                                    ("Content-Length", 0)])
    if method == "DELETE" and "uploadId" in q:
        return _response("204 No Content", [])
    return NOT_FOUND_RESPONSE


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


class BadHttp:
    """Scripted broken HTTP/1.1 peer in a thread on 127.0.0.1 (see the module docstring)."""

    def __init__(self, tmpdir=None):
        self.tmpdir = tmpdir
        self.requests = RequestCounter()
        self.log = []  # (method, request target) of every request, in arrival order
        self.log_lock = threading.Lock()
        self.port = None
        self.url = None
        self._server = None
        self._thread = None
        self._stopping = threading.Event()
        self._conns = set()
        self._conns_lock = threading.Lock()

    def _track(self, sock, add):
        with self._conns_lock:
            (self._conns.add if add else self._conns.discard)(sock)

    def start(self):
        if self._server is not None:
            raise ServerError("BadHttp: already started")
        self._stopping.clear()
        self._server = _TCPServer(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name=f"BadHttp:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        srv, self._server = self._server, None
        if srv is None:
            return
        self._stopping.set()
        srv.shutdown()
        srv.server_close()
        with self._conns_lock:
            conns = list(self._conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes handlers blocked in recv
            except OSError:
                pass
        self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
