"""gRPC interop with Python grpcio (Debian's python3-grpcio), both ways.

usage: /usr/bin/python3 grpc_interop.py CHECK CTL AGENT SRCROOT

  client  a grpcio client drives our sai3bench-agent: Ping, then a whole Run stream (prepare,
          execute, cleanup) answered stage by stage, Abort, and a bad token
  server  our sai3bench-ctl calls a grpcio server that plays an agent: `ctl ping`, then a whole
          `ctl run` whose merged results are the fake agent's numbers

The stubs are generated from proto/sai3bench.proto with grpc_tools.protoc into a temp dir.
"""
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itlib import check, fail  # noqa: E402

CHECK, CTL, AGENT, SRC = sys.argv[1:5]


try:
    import grpc
    from grpc_tools import protoc
except ImportError as e:  # a missing peer is a failure, never a skip
    fail(f"python3-grpcio / python3-grpc-tools missing ({e}); run scripts/deps.sh")

tmp = tempfile.mkdtemp(prefix="sai3-grpc-")
rc = protoc.main(["protoc", f"-I{SRC}/proto", f"--python_out={tmp}", f"--grpc_python_out={tmp}",
                  f"{SRC}/proto/sai3bench.proto"])
check(rc == 0, "grpc_tools.protoc failed")
sys.path.insert(0, tmp)
import sai3bench_pb2 as pb  # noqa: E402
import sai3bench_pb2_grpc as pbg  # noqa: E402

procs = []
S = pb.AgentState


def start_agent(args=()):
    log = open(os.path.join(tmp, "agent.log"), "w")
    p = subprocess.Popen([AGENT, "--listen", "127.0.0.1:0", "--results-root", tmp, "--cores", "1"]
                         + list(args), stdout=subprocess.PIPE, stderr=log, text=True)
    procs.append(p)
    line = p.stdout.readline()
    m = re.match(r"^sai3bench-agent listening \(PLAINTEXT\) on 127\.0\.0\.1:(\d+)$", line.strip())
    check(m, f"agent banner: {line!r}")
    return p, int(m.group(1))


CONFIG = """target: "file://{d}/"
duration: 1s
concurrency: 2
prepare:
  cleanup: true
  ensure_objects: [{{base_uri: "file://{d}/data/", count: 20, min_size: 1KiB, max_size: 1KiB}}]
workload:
  - {{op: get, path: data/, weight: 1}}
"""


def check_client():
    p, port = start_agent(["--auth-token-file", write_token()])
    md = [("authorization", "Bearer tok-123")]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = pbg.AgentStub(ch)
        t0 = time.time_ns()
        r = stub.Ping(pb.PingRequest(controller_version="grpcio", protocol_version=1,
                                     controller_send_unix_ns=t0), metadata=md, timeout=10)
        check(r.protocol_version == 1 and r.version and r.echo_controller_send_unix_ns == t0,
              f"PingReply {r}")
        check(r.state == S.AGENT_STATE_IDLE and not r.busy and r.cores >= 1, f"PingReply {r}")
        check(abs(r.agent_recv_unix_ns - t0) < 5e9, "agent clock far off")
        # a wrong token is refused with UNAUTHENTICATED
        try:
            stub.Ping(pb.PingRequest(), metadata=[("authorization", "Bearer nope")], timeout=10)
            fail("wrong token accepted")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.UNAUTHENTICATED, f"wrong token: {e.code()}")
        # a deadline shorter than the handshake never hangs: Abort with an idle agent answers
        ar = stub.Abort(pb.AbortRequest(reason="nothing runs"), metadata=md, timeout=10)
        check(not ar.aborted and ar.state == S.AGENT_STATE_IDLE, f"AbortReply {ar}")

        # a whole run
        d = os.path.join(tmp, "data")
        spec = pb.RunSpec(run_id="grpcio-run", config_yaml=CONFIG.format(d=d),
                          config_name="interop.yaml", agent_id="py-1", agent_index=0,
                          agent_count=1, shared_filesystem=True, interval_ns=500_000_000,
                          protocol_version=1,
                          stages=[pb.StageSpec(name="prepare", type=pb.STAGE_TYPE_PREPARE),
                                  pb.StageSpec(name="execute", type=pb.STAGE_TYPE_EXECUTE,
                                               duration_ns=1_000_000_000),
                                  pb.StageSpec(name="cleanup", type=pb.STAGE_TYPE_CLEANUP)])
        outq = queue.Queue()
        outq.put(pb.ControllerMsg(run_spec=spec))

        def requests():
            while True:
                m = outq.get()
                if m is None:
                    return
                yield m

        states, intervals, summaries = [], [], []
        for m in stub.Run(requests(), metadata=md, timeout=120):
            kind = m.WhichOneof("body")
            if kind == "state_change":
                sc = m.state_change
                states.append((sc.state, sc.stage_index))
                if sc.state == S.AGENT_STATE_READY:
                    outq.put(pb.ControllerMsg(stage_start=pb.StageStart(
                        stage_index=0, start_at_unix_ns=time.time_ns() + 200_000_000)))
                elif sc.state == S.AGENT_STATE_STAGE_DONE and sc.stage_index < 2:
                    outq.put(pb.ControllerMsg(stage_start=pb.StageStart(
                        stage_index=sc.stage_index + 1)))
                elif sc.state in (S.AGENT_STATE_DONE, S.AGENT_STATE_FAILED,
                                  S.AGENT_STATE_ABORTED):
                    outq.put(None)
            elif kind == "interval":
                intervals.append(m.interval)
            elif kind == "summary":
                summaries.append(m.summary)
            elif kind == "error":
                print("agent error report:", m.error.message)
        want = [(S.AGENT_STATE_PREPARING, -1), (S.AGENT_STATE_READY, -1),
                (S.AGENT_STATE_RUNNING, 0), (S.AGENT_STATE_STAGE_DONE, 0),
                (S.AGENT_STATE_RUNNING, 1), (S.AGENT_STATE_STAGE_DONE, 1),
                (S.AGENT_STATE_RUNNING, 2), (S.AGENT_STATE_STAGE_DONE, 2),
                (S.AGENT_STATE_DONE, -1)]
        check(states == want, f"state sequence {states}")
        check(len(summaries) == 3, f"{len(summaries)} summaries")
        check(summaries[0].prepare.created == 20, f"prepare summary {summaries[0].prepare}")
        gets = sum(b.ops for o in summaries[1].ops if o.kind == pb.OP_KIND_GET for b in o.buckets)
        iv_gets = sum(b.ops for iv in intervals if iv.stage_index == 1 for o in iv.ops
                      if o.kind == pb.OP_KIND_GET for b in o.buckets)
        check(gets > 0 and gets == iv_gets, f"execute GETs: summary {gets}, intervals {iv_gets}")
        for st in (0, 1, 2):
            seqs = [iv.seq for iv in intervals if iv.stage_index == st]
            check(seqs == list(range(1, len(seqs) + 1)) and seqs,
                  f"stage {st} interval seqs {seqs}")
            check([iv.last for iv in intervals if iv.stage_index == st][-1], "no last interval")
        check(all(o.buckets[0].latency_hist for o in summaries[1].ops if o.buckets),
              "summary without histograms")
        print(f"client: grpcio drove a whole run: {gets} GETs, {len(intervals)} intervals")
        r = stub.Ping(pb.PingRequest(), metadata=md, timeout=10)
        check(r.state == S.AGENT_STATE_IDLE, f"agent not idle after the run: {r.state}")
        # a deadline on a stream that waits: the agent sees the cancel and goes idle again
        outq2 = queue.Queue()
        outq2.put(pb.ControllerMsg(run_spec=spec))

        def reqs2():
            while True:
                m = outq2.get()
                if m is None:
                    return
                yield m
        try:
            for _ in stub.Run(reqs2(), metadata=md, timeout=1.5):
                pass
            fail("Run without StageStart ended without the deadline")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, f"deadline: {e.code()}")
        outq2.put(None)
        end = time.time() + 15
        while time.time() < end:
            if stub.Ping(pb.PingRequest(), metadata=md, timeout=5).state == S.AGENT_STATE_IDLE:
                break
            time.sleep(0.2)
        else:
            fail("agent did not go idle after the deadline cancelled its run")
    p.send_signal(signal.SIGTERM)
    check(p.wait(timeout=30) == 0, "agent exit status")


def write_token():
    path = os.path.join(tmp, "token")
    with open(path, "w") as f:
        f.write("tok-123\n")
    return path


class FakeAgent(pbg.AgentServicer):
    """Plays an agent: every stage completes 1000 GETs of 4 KiB at once."""

    def Ping(self, request, context):
        now = time.time_ns()
        return pb.PingReply(version="py-fake-1", protocol_version=1, hostname="fakehost", cores=3,
                            echo_controller_send_unix_ns=request.controller_send_unix_ns,
                            agent_recv_unix_ns=now, agent_send_unix_ns=time.time_ns(),
                            state=S.AGENT_STATE_IDLE, agent_start_unix_ns=now)

    def Abort(self, request, context):
        return pb.AbortReply(aborted=False, state=S.AGENT_STATE_IDLE)

    def Run(self, request_iterator, context):
        it = iter(request_iterator)
        first = next(it)
        spec = first.run_spec
        self.spec = spec

        def st(state, stage=-1):
            return pb.AgentMsg(state_change=pb.StateChange(state=state, stage_index=stage,
                                                           agent_unix_ns=time.time_ns()))
        yield st(S.AGENT_STATE_PREPARING)
        yield st(S.AGENT_STATE_READY)
        for m in it:
            if m.WhichOneof("body") != "stage_start":
                continue
            i = m.stage_start.stage_index
            yield st(S.AGENT_STATE_RUNNING, i)
            ops = [pb.OpStats(kind=pb.OP_KIND_GET,
                              buckets=[pb.BucketStats(bucket=1, ops=1000, bytes=4096000)])]
            yield pb.AgentMsg(interval=pb.IntervalStats(stage_index=i, seq=1, ops=ops,
                                                        interval_ns=10**9, elapsed_ns=10**9,
                                                        last=True))
            yield pb.AgentMsg(summary=pb.StageSummary(stage_index=i,
                                                      stage_name=spec.stages[i].name,
                                                      wall_ns=10**9, ops=ops))
            yield st(S.AGENT_STATE_STAGE_DONE, i)
            if i == len(spec.stages) - 1:
                yield st(S.AGENT_STATE_DONE)
                return


def check_server():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    fake = FakeAgent()
    pbg.add_AgentServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        cwd = tempfile.mkdtemp(prefix="sai3-grpc-ctl-")
        p = subprocess.run([CTL, "ping", "--agents", f"127.0.0.1:{port}"], capture_output=True,
                           text=True, timeout=60, cwd=cwd)
        check(p.returncode == 0, f"ctl ping: {p.returncode}\n{p.stdout}\n{p.stderr}")
        check(f"connected to 127.0.0.1:{port} (agent version py-fake-1)" in p.stdout, p.stdout)
        cfg = os.path.join(cwd, "fake.yaml")
        with open(cfg, "w") as f:
            f.write(f"""target: "file://{cwd}/d/"
duration: 1s
workload: [{{op: get, path: x, weight: 1}}]
distributed:
  start_delay: 100ms
  agents: [{{address: '127.0.0.1:{port}', id: fake}}]
""")
        p = subprocess.run([CTL, "run", "--config", cfg], capture_output=True, text=True,
                           timeout=120, cwd=cwd)
        check(p.returncode == 0, f"ctl run: {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        m = re.search(r"Results saved to: (.+)$", p.stdout.strip())
        check(m, p.stdout[-2000:])
        d = os.path.join(cwd, m.group(1))
        rows = [l.split("\t") for l in open(os.path.join(d, "results.tsv")).read().splitlines()]
        h = rows[0]
        get_all = [r for r in rows[1:] if r[h.index("bucket_idx")] == "98"]
        check(get_all and int(get_all[0][h.index("count")]) == 1000,
              f"merged GETs from the fake agent: {get_all}")
        check(fake.spec.agent_id == "fake" and fake.spec.agent_count == 1 and
              "workload" in fake.spec.config_yaml, f"RunSpec as the fake saw it: {fake.spec}")
        print(f"server: ctl ping and ctl run against a grpcio agent on port {port}")
    finally:
        server.stop(0)


try:
    {"client": check_client, "server": check_server}[CHECK]()
except BaseException:
    log = os.path.join(tmp, "agent.log")
    if os.path.exists(log):  # the agent's side of a failure (an ASan report, say)
        print("--- agent log (tail) ---\n" + open(log).read()[-6000:])
    raise
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    shutil.rmtree(tmp, ignore_errors=True)
print(f"PASS {CHECK}")
