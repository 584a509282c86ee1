#!/usr/bin/env python3
"""Azurite, the Azure Storage emulator (blob service), for the integration tests, and a small
independent Azure Blob REST client written from the REST reference (SharedKey and account SAS
computed here in Python with hmac/hashlib, not by the code under test).

Recipe: test-servers.md section 2. azurite 3.37.0 is pinned in test/servers/package.json and
installed by scripts/servers.sh into npm_dir(). Standard library only; loopback only. A missing
node or azurite raises MissingServer (a failure, never a skip).

    Azurite(tmpdir, tls=False)     node .../azurite/dist/src/blob/main.js --blobHost 127.0.0.1
        --blobPort PORT --location TMP/azurite --disableTelemetry --skipApiVersionCheck
        [--cert TMP/azurite-cert.pem --key TMP/azurite-key.pem]   (tls: a self-signed EC
        certificate for 127.0.0.1 and localhost, made with openssl; usable as the CA file)
      Ready when the port answers HTTP(S) (GET / gives 400). Log: TMP/azurite.log
      Attributes: port, url ("http://127.0.0.1:PORT"), blob_endpoint (url + "/devstoreaccount1"),
        account ("devstoreaccount1"), key (its well-known base64 key), cert (tls), pid, log.
      connection_string(key=None, sas=None, endpoint=None) -> str
      env(**extra) -> os.environ copy without AZURE_STORAGE_*; extra applied (None removes)
      request(method, container, blob="", query=(), headers=None, body=b"", key=None,
              sas=None, anonymous=False) -> (status, headers dict (lower-case), body bytes)
          path-style, SharedKey-signed with `key` (default: the account key) unless sas or
          anonymous
      create_container(name), list_blobs(container, prefix=None) -> {name: size} (all pages),
      put_blob(container, name, data), get_blob(container, name) -> bytes,
      account_sas(permissions="racwdl", services="b", resource_types="sco") -> token
"""
import base64
import email.utils
import hashlib
import hmac
import http.client
import os
import ssl
import subprocess
import time
import urllib.parse
import xml.etree.ElementTree as ET

from servers import (LOG_TAIL, MissingServer, ServerError, _http_answers, _Process, free_port,
                     npm_dir, require)

# azurite needs 3-10 s to listen on a loaded 2-core machine; servers.READY_TIMEOUT is 20 s
READY_TIMEOUT = 60.0

DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
           "KBHBeksoGMGw==")
API_VERSION = "2021-08-06"


def rfc1123():
    return email.utils.formatdate(usegmt=True)


def shared_key_sts(method, account, path, query, headers):
    """StringToSign per "Authorize with Shared Key" (version 2015-02-21 and later)."""
    h = {k.lower(): v for k, v in headers.items()}
    length = h.get("content-length", "")
    if length == "0":
        length = ""
    std = [h.get("content-encoding", ""), h.get("content-language", ""), length,
           h.get("content-md5", ""), h.get("content-type", ""), h.get("date", ""),
           h.get("if-modified-since", ""), h.get("if-match", ""), h.get("if-none-match", ""),
           h.get("if-unmodified-since", ""), h.get("range", "")]
    canon_h = "".join(f"{k}:{' '.join(str(v).split())}\n"
                      for k, v in sorted(h.items()) if k.startswith("x-ms-"))
    res = f"/{account}{path}"
    grouped = {}
    for k, v in query:
        grouped.setdefault(k.lower(), []).append(v)
    for k in sorted(grouped):
        res += f"\n{k}:{','.join(sorted(grouped[k]))}"
    return method + "\n" + "\n".join(std) + "\n" + canon_h + res


def sign(key_b64, sts):
    mac = hmac.new(base64.b64decode(key_b64), sts.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


class Azurite(_Process):
    """azurite 3.37.0 blob service (test-servers.md 2): SharedKey and SAS verified."""

    name = "azurite"

    def __init__(self, tmpdir, tls=False):
        super().__init__(tmpdir)
        self.tls = tls
        self.account = DEV_ACCOUNT
        self.key = DEV_KEY
        self.port = None
        self.url = None
        self.blob_endpoint = None
        self.location = os.path.join(self.tmpdir, "azurite")
        self.cert = os.path.join(self.tmpdir, "azurite-cert.pem") if tls else None
        self.keyfile = os.path.join(self.tmpdir, "azurite-key.pem") if tls else None

    def _gen_cert(self):
        openssl = require("openssl", "apt-get install openssl")
        cmd = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
               "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", self.keyfile, "-out",
               self.cert, "-days", "30", "-subj", "/CN=localhost",
               "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise ServerError(f"openssl req failed (exit {p.returncode}): {p.stderr[-LOG_TAIL:]}")

    def _command(self):
        node = require("node", "apt-get install nodejs npm (Node 20)")
        d = npm_dir()
        main = os.path.join(d, "node_modules", "azurite", "dist", "src", "blob", "main.js")
        if not os.path.isfile(main):
            raise MissingServer(f"{main} is missing: azurite is not installed in {d} "
                                "(scripts/servers.sh installs test/servers/package.json)")
        os.makedirs(self.location, exist_ok=True)
        self.port = free_port()
        scheme = "https" if self.tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.blob_endpoint = f"{self.url}/{self.account}"
        cmd = [node, main, "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
               "--location", self.location, "--disableTelemetry", "--skipApiVersionCheck"]
        if self.tls:
            self._gen_cert()
            cmd += ["--cert", self.cert, "--key", self.keyfile]
        return cmd

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
            time.sleep(0.1)

    def _ready(self):
        if not self.tls:
            return _http_answers("127.0.0.1", self.port, "/")
        try:
            conn = self._conn(timeout=1.0)
            conn.request("GET", "/")
            conn.getresponse().read()
            conn.close()
            return True
        except (OSError, http.client.HTTPException, ssl.SSLError):
            return False

    def _conn(self, timeout=30.0):
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.cert)
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                               context=ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    # --- configuration for the code under test ---
    def connection_string(self, key=None, sas=None, endpoint=None):
        s = (f"DefaultEndpointsProtocol={'https' if self.tls else 'http'};"
             f"AccountName={self.account};")
        if sas is not None:
            s += f"SharedAccessSignature={sas};"
        else:
            s += f"AccountKey={key or self.key};"
        return s + f"BlobEndpoint={endpoint or self.blob_endpoint};"

    def env(self, **extra):
        e = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_STORAGE_")}
        for k, v in extra.items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = str(v)
        return e

    # --- an independent REST client ---
    def request(self, method, container, blob="", query=(), headers=None, body=b"", key=None,
                sas=None, anonymous=False):
        path = f"/{self.account}/{urllib.parse.quote(container)}"
        if blob:
            path += "/" + urllib.parse.quote(blob, safe="/")
        query = list(query)
        qs = "&".join(f"{urllib.parse.quote(k, safe='')}={urllib.parse.quote(v, safe='')}"
                      for k, v in query)
        if sas:
            qs = qs + "&" + sas if qs else sas
        target = path + ("?" + qs if qs else "")
        h = {"x-ms-date": rfc1123(), "x-ms-version": API_VERSION}
        h.update(headers or {})
        if body or method in ("PUT", "POST"):
            h["Content-Length"] = str(len(body))
        if not sas and not anonymous:
            sts = shared_key_sts(method, self.account, path, query, h)
            h["Authorization"] = f"SharedKey {self.account}:{sign(key or self.key, sts)}"
        conn = self._conn()
        try:
            conn.request(method, target, body=body or None, headers=h)
            r = conn.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            conn.close()

    def _ok(self, what, st, body, ok=(200, 201, 202)):
        if st not in ok:
            raise ServerError(f"azurite {what}: HTTP {st}: {body[:500]!r}")

    def create_container(self, name):
        st, _, body = self.request("PUT", name, query=[("restype", "container")])
        self._ok(f"create container {name}", st, body, (201, 409))

    def put_blob(self, container, name, data):
        st, _, body = self.request("PUT", container, name, headers={"x-ms-blob-type": "BlockBlob"},
                                   body=data)
        self._ok(f"put {name}", st, body)

    def get_blob(self, container, name):
        st, _, body = self.request("GET", container, name)
        self._ok(f"get {name}", st, body)
        return body

    def block_list(self, container, name):
        """Committed block ids of a blob (Get Block List)."""
        st, _, body = self.request("GET", container, name,
                                   query=[("comp", "blocklist"), ("blocklisttype", "committed")])
        self._ok(f"block list {name}", st, body)
        root = ET.fromstring(body)
        return [b.findtext("Name") for b in root.iter("Block")]

    def list_blobs(self, container, prefix=None):
        out, marker = {}, None
        while True:
            q = [("restype", "container"), ("comp", "list")]
            if prefix:
                q.append(("prefix", prefix))
            if marker:
                q.append(("marker", marker))
            st, _, body = self.request("GET", container, query=q)
            if st == 404:
                return out
            self._ok(f"list {container}", st, body)
            root = ET.fromstring(body)
            for b in root.iter("Blob"):
                out[b.findtext("Name")] = int(b.find("Properties").findtext("Content-Length"))
            marker = root.findtext("NextMarker")
            if not marker:
                return out

    def account_sas(self, permissions="racwdl", services="b", resource_types="sco",
                    expiry="2099-01-01T00:00:00Z", key=None):
        """An account SAS (version 2021-08-06: the string to sign has the encryption scope)."""
        sv = API_VERSION
        sts = "\n".join([self.account, permissions, services, resource_types, "", expiry, "",
                         "", sv, "", ""])
        sig = sign(key or self.key, sts)
        q = [("sv", sv), ("ss", services), ("srt", resource_types), ("sp", permissions),
             ("se", expiry), ("sig", sig)]
        return "&".join(f"{k}={urllib.parse.quote(v, safe='')}" for k, v in q)
