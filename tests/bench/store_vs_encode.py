"""SetImage served from the shared embedding store against SetImage encoded, on loopback.

Starts a `redis-server` on a free loopback port and, per storage precision (f32, f16), two
`mobilesam serve` replicas A and B sharing it. Round by round on distinct images: A gets
image i (not stored yet: ENCODED, then written to the store in the background), and B gets
image i-1 (stored by A, never seen by B: served from the STORE). Both are timed on the
client, from sending SetImage to receiving ImageReady, in the same run, so the figures
compare side by side. Prints p50 and p99 (with few rounds p99 is close to the maximum)
and the ratio of the medians.

It is a measurement, not a test. Run with the Python of tests/run.sh's venv:
  cargo build --release -p mobilesam
  target/release/mobilesam seeded-checkpoint --manifest tests/fixtures/weights_manifest.json \
      --output target/seeded.safetensors
  target/test-venv/bin/python tests/bench/store_vs_encode.py --checkpoint target/seeded.safetensors
"""

import argparse
import importlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from png_encode import encode_rgb_png  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stubs(out):
    from grpc_tools import protoc

    proto_root = ROOT / "proto"
    args = ["grpc_tools.protoc", f"-I{proto_root}", f"--python_out={out}", f"--grpc_python_out={out}",
            str(proto_root / "mobilesam" / "v1" / "mobilesam.proto")]
    assert protoc.main(args) == 0, "protoc failed"
    sys.path.insert(0, str(out))
    return importlib.import_module("mobilesam.v1.mobilesam_pb2"), importlib.import_module("mobilesam.v1.mobilesam_pb2_grpc")


def make_png(width, height, seed):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return encode_rgb_png(rgb)


class Server:
    def __init__(self, binary, checkpoint, args):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOBILESAM_")}
        env["RUST_LOG"] = "info"
        self.proc = subprocess.Popen(
            [binary, "serve", "--checkpoint", checkpoint, "--addr", "127.0.0.1:0",
             "--metrics-addr", "127.0.0.1:0", "--log-format", "json", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        self.addr = None
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            try:
                fields = json.loads(line).get("fields", {})
            except ValueError:
                continue
            if fields.get("message", "").startswith("gRPC listening"):
                self.addr = fields["addr"]
            if fields.get("message") == "serving":
                self.ready.set()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def percentile(values, q):
    return float(np.percentile(np.array(values), q))


def measure(pb2, pb2_grpc, binary, checkpoint, redis_url, dtype, rounds, size):
    import grpc

    args = ["--workers", "1", "--embedding-store", redis_url, "--embedding-store-dtype", dtype]
    a, b = Server(binary, checkpoint, args), Server(binary, checkpoint, args)
    try:
        for s in (a, b):
            assert s.ready.wait(300), "a server did not start"
        stub_a = pb2_grpc.SegmentAnythingStub(grpc.insecure_channel(a.addr))
        stub_b = pb2_grpc.SegmentAnythingStub(grpc.insecure_channel(b.addr))
        seed = {"f32": 1000, "f16": 2000}[dtype]
        images = [make_png(size[0], size[1], seed + i) for i in range(rounds + 1)]
        encoded, stored = [], []

        def timed(stub, image, want):
            start = time.perf_counter()
            ready = stub.SetImage(pb2.SetImage(image=image), timeout=300)
            elapsed = (time.perf_counter() - start) * 1e3
            assert ready.source == want, (ready.source, want)
            return elapsed

        timed(stub_a, images[0], pb2.EMBEDDING_SOURCE_ENCODED)
        for i in range(1, rounds + 1):
            encoded.append(timed(stub_a, images[i], pb2.EMBEDDING_SOURCE_ENCODED))
            time.sleep(0.2)  # let the background write of image i-1 land (it has had a round)
            stored.append(timed(stub_b, images[i - 1], pb2.EMBEDDING_SOURCE_STORE))
        return encoded, stored
    finally:
        a.stop()
        b.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "mobilesam"))
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--size", default="640x480", help="image WIDTHxHEIGHT")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        pb2, pb2_grpc = stubs(tmp)
        port = free_port()
        redis = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                  "--appendonly", "no", "--dir", tmp],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            url = f"redis://127.0.0.1:{port}/0"
            print(f"SetImage on loopback, {size[0]}x{size[1]} PNG, {args.rounds} rounds, client wall time in ms")
            print(f"{'dtype':6} {'path':8} {'p50':>8} {'p99':>8}")
            for dtype in ("f32", "f16"):
                encoded, stored = measure(pb2, pb2_grpc, args.binary, args.checkpoint, url, dtype, args.rounds, size)
                for name, values in (("encoded", encoded), ("store", stored)):
                    print(f"{dtype:6} {name:8} {percentile(values, 50):8.1f} {percentile(values, 99):8.1f}")
                print(f"{dtype:6} encoded/store median ratio {np.median(encoded) / np.median(stored):.1f}x")
        finally:
            redis.kill()
            redis.wait()


if __name__ == "__main__":
    main()
