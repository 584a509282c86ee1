#!/usr/bin/python3
"""gRPC interop between our transport (lib/rpc) and Python grpcio, both directions.

usage: interop.py <path to interop_peer>

1. A grpcio server (generic handlers, raw bytes) is called by our client (`interop_peer client`):
   unary, bidi streaming, large server- and client-streaming messages, deadline, status with a
   non-ASCII/'%' message, metadata, unimplemented, cancel, keepalive PINGs while idle.
2. A grpcio client calls our server (`interop_peer server`): unary, bidi streaming with a final
   status message, large server streaming, client streaming, unimplemented, deadline, cancel,
   refusal with UNAUTHENTICATED, and idling while our server sends keepalive PINGs.

Exit status 0 when everything passed, 1 otherwise (also without grpcio: a missing peer is a
failure, never a skip; scripts/deps.sh installs it).
"""
import os
import signal
import struct
import subprocess
import sys
import threading
import time

try:
    import grpc
    from concurrent import futures
except ImportError:  # pragma: no cover
    print("FAIL: grpcio is not installed (run scripts/deps.sh)")
    sys.exit(1)

PEER = sys.argv[1] if len(sys.argv) > 1 else None
failures = []


def check(ok, name, detail=""):
    if ok:
        print(f"PASS {name}")
    else:
        print(f"FAIL {name}: {detail}")
        failures.append(name)


STATUS_MSG = "n\u00f6 100% denied \u2713"

# ---------------------------------------------------------------------------------------------
# 1. grpcio server, our client


def grpcio_server_part():
    events = []
    lock = threading.Lock()

    def unary(req, ctx):
        return req

    def bidi(it, ctx):
        for m in it:
            yield m

    def server_stream(req, ctx):
        n, size = struct.unpack(">II", req)
        for i in range(n):
            yield bytes([i % 256]) * size

    def sink(it, ctx):
        return str(sum(len(m) for m in it)).encode()

    def never(req, ctx):
        ended = threading.Event()
        ctx.add_callback(ended.set)
        ended.wait(20)
        tr = ctx.time_remaining()
        with lock:
            events.append("deadline" if tr is not None and tr <= 0.05 else "cancelled")
        return b""

    def status(req, ctx):
        ctx.abort(grpc.StatusCode.PERMISSION_DENIED, STATUS_MSG)

    def metadata(req, ctx):
        md = dict(ctx.invocation_metadata())
        return md.get("authorization", "").encode()

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "Sink": grpc.stream_unary_rpc_method_handler(sink),
        "Never": grpc.unary_unary_rpc_method_handler(never),
        "Status": grpc.unary_unary_rpc_method_handler(status),
        "Metadata": grpc.unary_unary_rpc_method_handler(metadata),
    }
    options = [
        # our client PINGs every 100 ms while idle: allow it (grpcio's default policy answers
        # frequent PINGs with GOAWAY ENHANCE_YOUR_CALM "too_many_pings")
        ("grpc.http2.min_ping_interval_without_data_ms", 50),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.keepalive_permit_without_calls", 1),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=options)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("interop.Echo", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        p = subprocess.run([PEER, "client", str(port)], capture_output=True, text=True,
                           timeout=120)
        sys.stdout.write(p.stdout)
        sys.stderr.write(p.stderr)
        check(p.returncode == 0, "our-client-vs-grpcio-server", f"exit status {p.returncode}")
        deadline = time.time() + 10
        while time.time() < deadline:
            with lock:
                if len(events) >= 2:
                    break
            time.sleep(0.05)
        with lock:
            ev = sorted(events)
        check(ev == ["cancelled", "deadline"], "grpcio-server-saw-deadline-and-cancel",
              f"events {ev}")
    finally:
        server.stop(None)


# ---------------------------------------------------------------------------------------------
# 2. our server, grpcio client


def expect_code(fn, code, name, details=None):
    try:
        fn()
    except grpc.RpcError as e:
        ok = e.code() == code and (details is None or e.details() == details)
        check(ok, name, f"got {e.code()} '{e.details()}'")
        return
    check(False, name, "no error")


def our_server_part():
    peer = subprocess.Popen([PEER, "server", "200"], stdout=subprocess.PIPE, text=True)
    try:
        line = peer.stdout.readline().split()
        if len(line) != 2 or line[0] != "PORT":
            check(False, "our-server-start", f"got {line}")
            return
        port = int(line[1])
        ch = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            grpc.channel_ready_future(ch).result(timeout=10)

            unary = ch.unary_unary("/interop.Echo/Unary")
            got = unary(b"hello", timeout=10)
            check(got == b"hello", "grpcio-unary", f"got {got!r}")

            bidi = ch.stream_stream("/interop.Echo/Bidi")
            msgs = [struct.pack(">I", i) for i in range(500)]
            call = bidi(iter(msgs), timeout=20)
            out = list(call)
            check(out == msgs and call.code() == grpc.StatusCode.OK and
                  call.details() == "bidi done \u2713 100%", "grpcio-bidi",
                  f"{len(out)} messages, {call.code()} '{call.details()}'")

            ss = ch.unary_stream("/interop.Echo/ServerStream")
            out = list(ss(struct.pack(">II", 3, 3 << 20), timeout=30))
            ok = len(out) == 3 and all(m == bytes([i]) * (3 << 20) for i, m in enumerate(out))
            check(ok, "grpcio-server-stream-large", f"{len(out)} messages")

            sink = ch.stream_unary("/interop.Echo/Sink")
            got = sink(iter([b"\0" * (1 << 20)] * 4), timeout=30)
            check(got == b"4194304", "grpcio-client-stream-large", f"got {got!r}")

            expect_code(lambda: ch.unary_unary("/interop.Echo/Nope")(b"x", timeout=10),
                        grpc.StatusCode.UNIMPLEMENTED, "grpcio-unimplemented")

            never = ch.unary_unary("/interop.Echo/Never")
            t0 = time.time()
            expect_code(lambda: never(b"x", timeout=0.3), grpc.StatusCode.DEADLINE_EXCEEDED,
                        "grpcio-deadline")
            check(time.time() - t0 < 5, "grpcio-deadline-time", f"{time.time() - t0:.2f}s")

            fut = never.future(b"x")
            time.sleep(0.3)
            fut.cancel()
            check(fut.cancelled(), "grpcio-cancel", "not cancelled")

            expect_code(lambda: ch.unary_unary("/interop.Echo/Status")(b"x", timeout=10),
                        grpc.StatusCode.PERMISSION_DENIED, "grpcio-status-message", STATUS_MSG)

            auth = ch.unary_unary("/interop.Echo/Auth")
            expect_code(lambda: auth(b"x", timeout=10,
                                     metadata=(("authorization", "Bearer wrong"),)),
                        grpc.StatusCode.UNAUTHENTICATED, "grpcio-unauthenticated",
                        "bad token \u2717")
            got = auth(b"ok", timeout=10, metadata=(("authorization", "Bearer interop"),))
            check(got == b"ok", "grpcio-authenticated", f"got {got!r}")

            # our server PINGs every 200 ms on an idle connection: grpcio answers, all stays up
            time.sleep(1.0)
            got = unary(b"again", timeout=10)
            check(got == b"again", "grpcio-after-server-keepalive", f"got {got!r}")
        finally:
            ch.close()
        time.sleep(0.2)
        peer.send_signal(signal.SIGTERM)
        out, _ = peer.communicate(timeout=20)
        lines = out.splitlines()
        sys.stdout.write(out)
        never_ends = sorted(l.split()[2] for l in lines
                            if l.startswith("END /interop.Echo/Never"))
        check(never_ends == ["cancelled", "deadline"], "our-server-saw-deadline-and-cancel",
              f"got {never_ends}")
        check("CLOSED" in lines and peer.returncode == 0, "our-server-clean-shutdown",
              f"exit status {peer.returncode}")
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait()


def main():
    if not PEER or not os.access(PEER, os.X_OK):
        print("usage: interop.py <interop_peer>")
        return 2
    grpcio_server_part()
    our_server_part()
    if failures:
        print(f"{len(failures)} failure(s): {', '.join(failures)}")
        return 1
    print("all interop checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
