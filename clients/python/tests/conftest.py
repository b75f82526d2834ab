"""The real server for the client's tests: `mobilesam serve` from $MOBILESAM_BIN with the
weights $MOBILESAM_TEST_CHECKPOINT (seeded test weights: `mobilesam seeded-checkpoint
--manifest tests/fixtures/weights_manifest.json --output seeded.safetensors`).

Tests that need the server are skipped, with a message saying so, when either variable is
unset; run_tests.sh refuses to run without them, so CI never skips them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures"
START_TIMEOUT_S = 180


def server_paths() -> tuple[Path, Path]:
    binary = os.environ.get("MOBILESAM_BIN")
    checkpoint = os.environ.get("MOBILESAM_TEST_CHECKPOINT")
    if not binary or not checkpoint:
        pytest.skip("MOBILESAM_BIN and MOBILESAM_TEST_CHECKPOINT are not both set: the tests against a real "
                    "server are skipped (clients/python/run_tests.sh requires them)")
    if not Path(binary).is_file():
        pytest.fail(f"MOBILESAM_BIN={binary} is not a file")
    if not Path(checkpoint).is_file():
        pytest.fail(f"MOBILESAM_TEST_CHECKPOINT={checkpoint} is not a file")
    return Path(binary), Path(checkpoint)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running `mobilesam serve` (JSON logs read for the address and readiness)."""

    def __init__(self, addr: str = "127.0.0.1:0", extra_args: tuple[str, ...] = (), wait: bool = True) -> None:
        binary, checkpoint = server_paths()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOBILESAM_")}
        env["RUST_LOG"] = "info"
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--checkpoint", str(checkpoint), "--addr", addr,
             "--metrics-addr", "127.0.0.1:0", "--log-format", "json", "--workers", "1",
             "--decode-workers", "1", *extra_args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
        self.logs: list[str] = []
        self.addr: Optional[str] = None
        self.serving = threading.Event()
        threading.Thread(target=self._read_logs, daemon=True).start()
        if wait:
            self.wait()

    def wait(self) -> None:
        if not self.serving.wait(START_TIMEOUT_S):
            self.stop()
            raise AssertionError("server did not start:\n" + "\n".join(self.logs[-30:]))

    def _read_logs(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.logs.append(line.rstrip())
            try:
                fields = json.loads(line).get("fields", {})
            except ValueError:
                continue
            message = fields.get("message", "")
            if message.startswith("gRPC listening"):
                self.addr = fields["addr"]
            elif message == "serving":
                self.serving.set()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="session")
def server():
    srv = Server()
    yield srv
    assert srv.stop() == 0, "server did not exit cleanly:\n" + "\n".join(srv.logs[-20:])


@pytest.fixture(scope="session")
def addr(server) -> str:
    return server.addr


@pytest.fixture(scope="session")
def images() -> dict[str, bytes]:
    return {
        "chelsea": (FIXTURES / "images" / "chelsea.png").read_bytes(),
        "coffee": (FIXTURES / "images" / "coffee.png").read_bytes(),
        "frame_0": (FIXTURES / "tracking" / "frame_0.png").read_bytes(),
        "frame_1": (FIXTURES / "tracking" / "frame_1.png").read_bytes(),
        "frame_2": (FIXTURES / "tracking" / "frame_2.png").read_bytes(),
        "frame_3": (FIXTURES / "tracking" / "frame_3.png").read_bytes(),
        "truncated": (FIXTURES / "truncation" / "baseline.jpg").read_bytes()[:753],
    }
