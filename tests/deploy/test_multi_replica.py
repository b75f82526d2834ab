"""Three `mobilesam serve` replicas behind a real L7 gRPC balancer (nginx), on loopback.

nginx runs with deploy/nginx/nginx.conf.template (`grpc_pass`, `hash $http_x_session_id
consistent`), filled in with the replicas' ports, in a temp dir, in the foreground. The
client follows the routing contract of deploy/README.md: it picks the session id itself,
sends it as `x-session-id` metadata on every stream of that session (the first one too)
and as `SetImage.session_id`.

Checked:
- the balancer spreads session keys over all replicas and keeps each key on one replica;
- streams with different session ids land on different replicas and encode there;
- a session resumed on a new stream lands where its embedding is (no encode, same masks),
  and lands elsewhere (NOT_FOUND) without the right header;
- SIGKILL of one replica: its open stream fails with a gRPC status, a new stream for the
  same session gets `Error{code: 5 NOT_FOUND}` ("send the image again") from another
  replica, and sending the image again succeeds; the other replicas' open streams and
  cached sessions are untouched.
- With a shared embedding store (a real `redis-server` on loopback, issue 17): SIGKILL of
  one replica, and its sessions continue on the others without the image being sent
  again (source STORE, no encode, the same masks).

Env: MOBILESAM_BIN (default target/debug/mobilesam), MOBILESAM_TEST_CHECKPOINT (seeded
weights, required), NGINX_BIN (default: `nginx` on PATH), DEPLOY_TEST_PIDFILE (optional: each
child's pid is appended, so tests/deploy/run.sh can clean up even after a hard kill).
Run with tests/deploy/run.sh.
"""

import importlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from png_encode import encode_rgb_png  # noqa: E402
PROTO_ROOT = ROOT / "proto"
PROTO_FILE = PROTO_ROOT / "mobilesam" / "v1" / "mobilesam.proto"
TEMPLATE = ROOT / "deploy" / "nginx" / "nginx.conf.template"
REPLICAS = 3
START_TIMEOUT_S = 180
ANSWER_TIMEOUT_S = 300
WIDTH, HEIGHT = 64, 48

# --------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------


def _record_pid(pid):
    path = os.environ.get("DEPLOY_TEST_PIDFILE")
    if path:
        with open(path, "a") as f:
            f.write(f"{pid}\n")


def _binary():
    path = Path(os.environ.get("MOBILESAM_BIN", ROOT / "target" / "debug" / "mobilesam"))
    if not path.is_file():
        pytest.fail(f"server binary {path} not found: run `cargo build -p mobilesam` or set MOBILESAM_BIN")
    return path


def _checkpoint():
    value = os.environ.get("MOBILESAM_TEST_CHECKPOINT")
    if not value or not Path(value).is_file():
        pytest.fail("MOBILESAM_TEST_CHECKPOINT must name the seeded test weights (see tests/deploy/run.sh)")
    return Path(value)


class Replica:
    """A `mobilesam serve` on loopback ports chosen by the OS."""

    def __init__(self, name, binary, checkpoint, extra_args=()):
        self.name = name
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOBILESAM_")}
        env["RUST_LOG"] = "info"
        self.proc = subprocess.Popen(
            [
                str(binary), "serve", "--checkpoint", str(checkpoint),
                "--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
                "--log-format", "json", "--workers", "1", "--shutdown-timeout", "5s",
                *extra_args,
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=env, text=True,
        )
        _record_pid(self.proc.pid)
        self.logs = []
        self.grpc_addr = None
        self.metrics_addr = None
        self.serving = threading.Event()
        threading.Thread(target=self._read_logs, daemon=True).start()

    def _read_logs(self):
        for line in self.proc.stderr:
            self.logs.append(line.rstrip())
            try:
                fields = json.loads(line).get("fields", {})
            except ValueError:
                continue
            message = fields.get("message", "")
            if message.startswith("gRPC listening"):
                self.grpc_addr = fields["addr"]
            elif message.startswith("metrics listening"):
                self.metrics_addr = fields["addr"]
            elif message == "serving":
                self.serving.set()

    def wait_serving(self):
        if not self.serving.wait(START_TIMEOUT_S):
            raise AssertionError(f"{self.name} did not start:\n" + "\n".join(self.logs[-30:]))

    def metric(self, name):
        """Sum of a metric's samples from this replica's /metrics."""
        with urllib.request.urlopen(f"http://{self.metrics_addr}/metrics", timeout=10) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render_nginx_conf(prefix, listen, upstreams):
    servers = "\n".join(f"        server {a} max_fails=1 fail_timeout=10s;" for a in upstreams)
    user = "user root root;" if os.geteuid() == 0 else ""
    # Comment lines are dropped (the header names the placeholders).
    text = "".join(line for line in TEMPLATE.read_text().splitlines(keepends=True)
                   if not line.lstrip().startswith("#"))
    for key, value in {"PREFIX": str(prefix), "LISTEN": listen, "SERVERS": servers, "USER": user}.items():
        text = text.replace(f"@@{key}@@", value)
    assert "@@" not in text
    return text


class Nginx:
    def __init__(self, prefix, upstreams):
        nginx = os.environ.get("NGINX_BIN") or shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).is_file():
            pytest.fail("nginx not found: tests/deploy/run.sh installs it (apt-get install nginx-light)")
        self.prefix = Path(prefix)
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.addr = f"127.0.0.1:{self.port}"
        conf = self.prefix / "nginx.conf"
        conf.write_text(render_nginx_conf(self.prefix, self.addr, upstreams))
        base = [nginx, "-p", str(self.prefix), "-c", str(conf), "-e", str(self.prefix / "error.log")]
        # nginx reads $NGINX as a list of inherited sockets: never pass one on.
        env = {k: v for k, v in os.environ.items() if k != "NGINX"}
        check = subprocess.run(base + ["-t"], capture_output=True, text=True, timeout=30, env=env)
        assert check.returncode == 0, f"nginx -t failed:\n{check.stderr}"
        self.proc = subprocess.Popen(base, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=env)
        _record_pid(self.proc.pid)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("nginx did not start:\n" + self.error_log())
                time.sleep(0.1)

    def error_log(self):
        path = self.prefix / "error.log"
        return path.read_text() if path.exists() else ""

    def access_log(self):
        path = self.prefix / "access.log"
        return path.read_text() if path.exists() else ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: finish open streams
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    """(mobilesam_pb2, mobilesam_pb2_grpc), generated from the proto now."""
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("stubs")
    args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"--python_out={out}", f"--grpc_python_out={out}", str(PROTO_FILE)]
    assert protoc.main(args) == 0, "protoc failed"
    sys.path.insert(0, str(out))
    try:
        pb2 = importlib.import_module("mobilesam.v1.mobilesam_pb2")
        pb2_grpc = importlib.import_module("mobilesam.v1.mobilesam_pb2_grpc")
    finally:
        sys.path.remove(str(out))
    return pb2, pb2_grpc


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Three replicas and nginx in front of them; everything is stopped afterwards."""
    binary, checkpoint = _binary(), _checkpoint()
    replicas, nginx = [], None
    try:
        replicas = [Replica(f"replica-{i}", binary, checkpoint) for i in range(REPLICAS)]
        for r in replicas:  # they load in parallel
            r.wait_serving()
        nginx = Nginx(tmp_path_factory.mktemp("nginx"), [r.grpc_addr for r in replicas])
        yield replicas, nginx
    finally:
        if nginx is not None:
            nginx.stop()
            print("--- nginx access log ---\n" + nginx.access_log())
            print("--- nginx error log (tail) ---\n" + "\n".join(nginx.error_log().splitlines()[-20:]))
        for r in replicas:
            r.stop()


@pytest.fixture(scope="module")
def stub(pb, cluster):
    import grpc

    _, nginx = cluster
    _, pb2_grpc = pb
    channel = grpc.insecure_channel(nginx.addr, options=[("grpc.max_receive_message_length", 64 << 20)])
    grpc.channel_ready_future(channel).result(timeout=30)
    yield pb2_grpc.SegmentAnythingStub(channel)
    channel.close()


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def make_png(width, height, seed):
    """A small RGB PNG (written by hand: no Pillow); `seed` varies the picture."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 4 + seed * 30) % 256, (y * 5) % 256, np.full_like(x, 90 + seed)], axis=-1).astype(np.uint8)
    rgb[height // 4: height // 4 + height // 2, width // 4: width // 4 + width // 2] = (240, 220, 40)
    return encode_rgb_png(rgb)


def upstream_of(call):
    """The replica nginx picked for a call (its `x-upstream-addr` response header)."""
    addrs = [v for k, v in call.initial_metadata() if k == "x-upstream-addr"]
    assert addrs, f"no x-upstream-addr header in {call.initial_metadata()}"
    # After a failed try nginx lists every address it tried: "a, b"; the last one served.
    return addrs[0].split(",")[-1].strip()


def probe(pb, stub, session_id=None):
    """Which replica a unary call with this x-session-id reaches (no encode)."""
    pb2, _ = pb
    metadata = (("x-session-id", session_id),) if session_id else None
    _, call = stub.GetModelInfo.with_call(pb2.GetModelInfoRequest(), metadata=metadata, timeout=30)
    return upstream_of(call)


class Stream:
    """One Segment stream through the balancer, pinned by its x-session-id metadata."""

    def __init__(self, pb, stub, session_id):
        self.pb2 = pb[0]
        self._requests = queue.Queue()
        self.call = stub.Segment(self._generate(), metadata=(("x-session-id", session_id),),
                                 timeout=ANSWER_TIMEOUT_S)

    def _generate(self):
        while True:
            item = self._requests.get()
            if item is None:
                return
            yield item

    def send(self, **request):
        self._requests.put(self.pb2.SegmentRequest(**request))

    def recv(self):
        return next(self.call)

    def prompt(self, request_id):
        click = self.pb2.ObjectPrompt(points=[self.pb2.Point(x=30, y=20, label=1)])
        self.send(prompt=self.pb2.Prompt(request_id=request_id, objects=[click], multimask_output=True))
        answer = self.recv()
        assert answer.WhichOneof("response") == "masks", answer
        assert answer.masks.request_id == request_id
        return answer.masks.objects

    def close(self):
        self._requests.put(None)
        return list(self.call)


def session_ids_per_replica(pb, stub, replicas):
    """One fresh session id per replica, found by probing the balancer (no encodes)."""
    wanted = {r.grpc_addr: None for r in replicas}
    for _ in range(200):
        sid = f"sess-{uuid.uuid4()}"
        addr = probe(pb, stub, sid)
        if wanted.get(addr, "") is None:
            wanted[addr] = sid
        if all(wanted.values()):
            return wanted
    raise AssertionError(f"200 random session ids did not reach every replica: {wanted}")


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------


def test_balancer_spreads_keys_and_keeps_each_on_one_replica(pb, stub, cluster):
    replicas, _ = cluster
    addrs = {r.grpc_addr for r in replicas}
    ids = [f"sess-{uuid.uuid4()}" for _ in range(30)]
    first = {sid: probe(pb, stub, sid) for sid in ids}
    assert set(first.values()) == addrs, f"30 keys did not spread over all replicas: {first}"
    # The same key always lands on the same replica.
    for sid in ids[:10]:
        for _ in range(3):
            assert probe(pb, stub, sid) == first[sid]
    # Without the header, calls are balanced (round robin), not all sent to one replica.
    assert len({probe(pb, stub) for _ in range(6)}) > 1


def test_sessions_across_replicas_resume_and_failover(pb, stub, cluster):
    import grpc

    pb2, _ = pb
    replicas, nginx = cluster
    by_addr = {r.grpc_addr: r for r in replicas}
    sids = session_ids_per_replica(pb, stub, replicas)  # addr -> session id
    images = {addr: make_png(WIDTH, HEIGHT, seed=i) for i, addr in enumerate(sids)}

    # One session per replica: the first stream carries the header too and names the
    # session, so the image is encoded where later streams with that header will land.
    streams = {addr: Stream(pb, stub, sid) for addr, sid in sids.items()}
    for addr, s in streams.items():  # three encodes run in parallel, one per replica
        s.send(set_image=pb2.SetImage(image=images[addr], session_id=sids[addr]))
    masks = {}
    for addr, s in streams.items():
        ready = s.recv()
        assert ready.WhichOneof("response") == "image_ready", ready
        assert ready.image_ready.session_id == sids[addr]
        assert ready.image_ready.encode_ms > 0
        assert upstream_of(s.call) == addr, "the stream did not land on the replica its key hashes to"
        masks[addr] = s.prompt(request_id=1)
    for addr, r in by_addr.items():  # each replica encoded exactly its own session
        assert r.metric("mobilesam_encode_duration_seconds_count") == 1, addr
        assert r.metric("mobilesam_sessions") == 1, addr

    # Resume every session on a new stream: it lands where its embedding is.
    for addr, sid in sids.items():
        r = Stream(pb, stub, sid)
        r.send(set_image=pb2.SetImage(session_id=sid))
        ready = r.recv()
        assert ready.WhichOneof("response") == "image_ready", ready
        assert ready.image_ready.encode_ms == 0
        assert upstream_of(r.call) == addr
        assert r.prompt(request_id=2) == masks[addr]
        assert r.close() == []

    # Without the matching header the resume lands on another replica, which does not
    # have the embedding: the header is what makes resuming work.
    addr_a, addr_b = list(sids)[:2]
    wrong = Stream(pb, stub, sids[addr_b])
    wrong.send(set_image=pb2.SetImage(session_id=sids[addr_a]))
    missing = wrong.recv()
    assert missing.WhichOneof("response") == "error" and missing.error.code == 5, missing
    assert wrong.close() == []

    # Kill one replica hard (a crashed or evicted pod).
    victim_addr, *survivor_addrs = list(sids)
    victim = by_addr[victim_addr]
    victim.stop(signal.SIGKILL)
    assert victim.proc.returncode == -signal.SIGKILL

    # Its open stream fails with a gRPC status the client can act on: open a new stream.
    # (nginx resets the stream: INTERNAL "RST_STREAM ... error code 2"; Envoy answers
    # UNAVAILABLE. deploy/README.md tells clients to treat both as "reconnect".)
    with pytest.raises(grpc.RpcError) as failure:
        streams[victim_addr].prompt(request_id=3)
    assert failure.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL), failure.value
    print(f"open stream on the killed replica: {failure.value.code()} {failure.value.details()!r}")

    # A new stream for that session goes to another replica, which answers NOT_FOUND
    # ("send the image again"); sending the image again on the same stream succeeds.
    again = Stream(pb, stub, sids[victim_addr])
    again.send(set_image=pb2.SetImage(session_id=sids[victim_addr]))
    missing = again.recv()
    assert missing.WhichOneof("response") == "error", missing
    assert missing.error.code == 5 and "send the image again" in missing.error.message, missing
    new_home = upstream_of(again.call)
    assert new_home in survivor_addrs
    again.send(set_image=pb2.SetImage(image=images[victim_addr], session_id=sids[victim_addr]))
    ready = again.recv()
    assert ready.WhichOneof("response") == "image_ready" and ready.image_ready.encode_ms > 0, ready
    assert again.prompt(request_id=4) == masks[victim_addr]  # same weights, same masks
    assert again.close() == []
    # From now on the session stays on its new replica.
    resumed = Stream(pb, stub, sids[victim_addr])
    resumed.send(set_image=pb2.SetImage(session_id=sids[victim_addr]))
    assert resumed.recv().image_ready.encode_ms == 0
    assert upstream_of(resumed.call) == new_home
    assert resumed.close() == []

    # The other replicas are untouched: open streams keep working, sessions resume
    # without encoding, and their keys did not move.
    for addr in survivor_addrs:
        assert by_addr[addr].proc.poll() is None
        assert streams[addr].prompt(request_id=5) == masks[addr]
        assert streams[addr].close() == []
        r = Stream(pb, stub, sids[addr])
        r.send(set_image=pb2.SetImage(session_id=sids[addr]))
        ready = r.recv()
        assert ready.WhichOneof("response") == "image_ready" and ready.image_ready.encode_ms == 0, ready
        assert upstream_of(r.call) == addr
        assert r.close() == []
    encodes = {addr: by_addr[addr].metric("mobilesam_encode_duration_seconds_count") for addr in survivor_addrs}
    assert encodes == {a: (2 if a == new_home else 1) for a in survivor_addrs}, encodes


# --------------------------------------------------------------------------------------
# With a shared embedding store
# --------------------------------------------------------------------------------------

REDIS_BIN = "/usr/bin/redis-server"
SOURCE_STORE = 2  # EmbeddingSource.EMBEDDING_SOURCE_STORE


class RedisServer:
    """A `redis-server` on a free loopback port, no persistence."""

    def __init__(self, workdir):
        if not Path(REDIS_BIN).is_file():
            pytest.fail("redis-server not found: tests/deploy/run.sh installs it (apt-get install redis-server)")
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [REDIS_BIN, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(workdir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _record_pid(self.proc.pid)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("redis-server did not start")
            time.sleep(0.1)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def keys(self, pattern):
        """Number of keys matching `pattern` (RESP by hand: KEYS answers an array)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            conn.sendall(f"*2\r\n$4\r\nKEYS\r\n${len(pattern)}\r\n{pattern}\r\n".encode())
            head = conn.recv(64).split(b"\r\n", 1)[0]
        assert head.startswith(b"*"), head
        return int(head[1:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def store_cluster(tmp_path_factory):
    """Three replicas sharing one redis-server, and nginx in front of them."""
    binary, checkpoint = _binary(), _checkpoint()
    redis = RedisServer(tmp_path_factory.mktemp("redis"))
    replicas, nginx = [], None
    try:
        replicas = [Replica(f"store-replica-{i}", binary, checkpoint, ("--embedding-store", redis.url))
                    for i in range(REPLICAS)]
        for r in replicas:
            r.wait_serving()
        nginx = Nginx(tmp_path_factory.mktemp("nginx-store"), [r.grpc_addr for r in replicas])
        yield replicas, nginx, redis
    finally:
        if nginx is not None:
            nginx.stop()
        for r in replicas:
            r.stop()
        redis.stop()


def test_with_a_store_sessions_continue_after_a_replica_is_killed(pb, store_cluster):
    import grpc

    pb2, pb2_grpc = pb
    replicas, nginx, redis = store_cluster
    by_addr = {r.grpc_addr: r for r in replicas}
    channel = grpc.insecure_channel(nginx.addr, options=[("grpc.max_receive_message_length", 64 << 20)])
    grpc.channel_ready_future(channel).result(timeout=30)
    stub = pb2_grpc.SegmentAnythingStub(channel)
    sids = session_ids_per_replica(pb, stub, replicas)
    images = {addr: make_png(WIDTH, HEIGHT, seed=10 + i) for i, addr in enumerate(sids)}

    streams = {addr: Stream(pb, stub, sid) for addr, sid in sids.items()}
    for addr, s in streams.items():
        s.send(set_image=pb2.SetImage(image=images[addr], session_id=sids[addr]))
    masks = {}
    for addr, s in streams.items():
        ready = s.recv()
        assert ready.WhichOneof("response") == "image_ready", ready
        assert ready.image_ready.encode_ms > 0 and len(ready.image_ready.image_sha256) == 64
        assert upstream_of(s.call) == addr
        masks[addr] = s.prompt(request_id=1)
    # The writes are asynchronous: wait until every session and embedding is stored.
    deadline = time.monotonic() + 30
    while redis.keys("mobilesam:session:*") < 3 or redis.keys("mobilesam:emb:*") < 3:
        assert time.monotonic() < deadline, "the replicas did not write to the store"
        time.sleep(0.1)

    victim_addr, *survivor_addrs = list(sids)
    by_addr[victim_addr].stop(signal.SIGKILL)
    with pytest.raises(grpc.RpcError):
        streams[victim_addr].prompt(request_id=2)

    # The killed replica's session continues elsewhere, without sending the image again.
    resumed = Stream(pb, stub, sids[victim_addr])
    resumed.send(set_image=pb2.SetImage(session_id=sids[victim_addr]))
    ready = resumed.recv()
    assert ready.WhichOneof("response") == "image_ready", ready
    assert ready.image_ready.encode_ms == 0 and ready.image_ready.source == SOURCE_STORE, ready
    new_home = upstream_of(resumed.call)
    assert new_home in survivor_addrs
    assert resumed.prompt(request_id=3) == masks[victim_addr]
    assert resumed.close() == []
    # No survivor encoded anything for it; their own sessions go on untouched.
    for addr in survivor_addrs:
        assert by_addr[addr].metric("mobilesam_encode_duration_seconds_count") == 1, addr
        assert streams[addr].prompt(request_id=4) == masks[addr]
        assert streams[addr].close() == []
    channel.close()
