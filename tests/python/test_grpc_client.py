"""A Python gRPC client against the real `mobilesam serve`.

Stubs are generated from proto/mobilesam/v1/mobilesam.proto at test time with
grpcio-tools. The server binary comes from $MOBILESAM_BIN (default target/debug/mobilesam)
and serves the seeded test weights named by $MOBILESAM_TEST_CHECKPOINT; make them with

    mobilesam seeded-checkpoint --manifest tests/fixtures/weights_manifest.json \
        --output target/seeded.safetensors

Run: MOBILESAM_TEST_CHECKPOINT=target/seeded.safetensors python -m pytest tests/python
Needs: grpcio grpcio-tools pytest numpy pycocotools.
"""

import importlib
import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_util

sys.path.insert(0, str(Path(__file__).resolve().parent))
from png_encode import encode_rgb_png  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "proto"
PROTO_FILE = PROTO_ROOT / "mobilesam" / "v1" / "mobilesam.proto"
START_TIMEOUT_S = 180
ANSWER_TIMEOUT_S = 180

WIDTH, HEIGHT = 64, 48

# pycocotools' C extension predates NumPy 2's `copy=` keyword.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    """(mobilesam_pb2, mobilesam_pb2_grpc), generated from the proto now."""
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("stubs")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        str(PROTO_FILE),
    ]
    assert protoc.main(args) == 0, "protoc failed"
    sys.path.insert(0, str(out))
    try:
        pb2 = importlib.import_module("mobilesam.v1.mobilesam_pb2")
        pb2_grpc = importlib.import_module("mobilesam.v1.mobilesam_pb2_grpc")
    finally:
        sys.path.remove(str(out))
    return pb2, pb2_grpc


def _binary():
    path = Path(os.environ.get("MOBILESAM_BIN", ROOT / "target" / "debug" / "mobilesam"))
    if not path.is_file():
        pytest.fail(f"server binary {path} not found: run `cargo build -p mobilesam` or set MOBILESAM_BIN")
    return path


def _checkpoint():
    value = os.environ.get("MOBILESAM_TEST_CHECKPOINT")
    if not value or not Path(value).is_file():
        pytest.fail(
            "MOBILESAM_TEST_CHECKPOINT must name the seeded test weights (.safetensors); "
            "create them with `mobilesam seeded-checkpoint --manifest "
            "tests/fixtures/weights_manifest.json --output target/seeded.safetensors`"
        )
    return Path(value)


class Server:
    """A running `mobilesam serve` on loopback ports chosen by the OS."""

    def __init__(self, binary, checkpoint, extra_args=(), extra_env=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOBILESAM_")}
        env["RUST_LOG"] = "info"
        env.update(extra_env or {})
        self.proc = subprocess.Popen(
            [
                str(binary), "serve", "--checkpoint", str(checkpoint),
                "--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
                "--log-format", "json", "--workers", "1", *extra_args,
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=env, text=True,
        )
        self.logs = []
        self.grpc_addr = None
        self._serving = threading.Event()
        self._addr_known = threading.Event()
        threading.Thread(target=self._read_logs, daemon=True).start()
        if not self._serving.wait(START_TIMEOUT_S):
            self.stop()
            raise AssertionError("server did not start:\n" + "\n".join(self.logs))

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
            elif message == "serving":
                self._serving.set()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server():
    srv = Server(_binary(), _checkpoint())
    yield srv
    assert srv.stop() == 0, "server did not exit cleanly:\n" + "\n".join(srv.logs[-20:])


@pytest.fixture()
def stub(pb, server):
    import grpc

    _, pb2_grpc = pb
    channel = grpc.insecure_channel(
        server.grpc_addr,
        options=[("grpc.max_receive_message_length", 64 << 20)],
    )
    grpc.channel_ready_future(channel).result(timeout=30)
    yield pb2_grpc.SegmentAnythingStub(channel)
    channel.close()


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def make_png(width, height):
    """A gradient with a bright rectangle, as an RGB PNG (written by hand: no Pillow)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 4) % 256, (y * 5) % 256, np.full_like(x, 90)], axis=-1).astype(np.uint8)
    rgb[height // 4: height // 4 + height // 2, width // 4: width // 4 + width // 2] = (240, 220, 40)
    return encode_rgb_png(rgb)


class Session:
    """One bidirectional Segment stream: send requests, read answers one at a time."""

    def __init__(self, pb2, stub):
        self.pb2 = pb2
        self._requests = queue.Queue()
        self._answers = stub.Segment(self._generate(), timeout=600)

    def _generate(self):
        while True:
            item = self._requests.get()
            if item is None:
                return
            yield item

    def send(self, **request):
        self._requests.put(self.pb2.SegmentRequest(**request))

    def recv(self):
        return next(self._answers)

    def close(self):
        self._requests.put(None)
        return list(self._answers)


def check_mask(mask, width, height):
    """A mask is self-consistent: its RLE decodes to the image size, area and box agree."""
    assert list(mask.rle.size) == [height, width]
    rle = {"size": list(mask.rle.size), "counts": mask.rle.counts.encode()}
    binary = mask_util.decode(rle)
    assert binary.shape == (height, width)
    assert int(binary.sum()) == mask.area == int(mask_util.area(rle))
    x, y, w, h = mask_util.toBbox(rle).tolist()
    assert [mask.bbox.x1, mask.bbox.y1, mask.bbox.x2 - mask.bbox.x1, mask.bbox.y2 - mask.bbox.y1] == [x, y, w, h]
    assert math.isfinite(mask.score)


def segment_cli(image_path, points, labels, multimask):
    """`mobilesam segment` for one image and prompt, parsed."""
    cmd = [
        str(_binary()), "segment", "--checkpoint", str(_checkpoint()), "--image", str(image_path),
        "--points", json.dumps(points), "--labels", json.dumps(labels),
    ]
    if multimask:
        cmd.append("--multimask")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    return json.loads(out.stdout)


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------


def test_model_info(pb, stub):
    pb2, _ = pb
    info = stub.GetModelInfo(pb2.GetModelInfoRequest(), timeout=30)
    assert info.name == "mobile_sam"
    assert info.image_size == 1024
    assert info.parameters > 0
    assert info.device == "cpu"


def test_stream_of_image_and_prompts(pb, stub, tmp_path):
    pb2, _ = pb
    image = make_png(WIDTH, HEIGHT)
    image_path = tmp_path / "image.png"
    image_path.write_bytes(image)

    s = Session(pb2, stub)
    s.send(set_image=pb2.SetImage(image=image))
    ready = s.recv()
    assert ready.WhichOneof("response") == "image_ready"
    assert (ready.image_ready.width, ready.image_ready.height) == (WIDTH, HEIGHT)
    assert ready.image_ready.encode_ms > 0
    session_id = ready.image_ready.session_id

    # Pipelined prompts: a click, a two-object multimask prompt, a bad label, a box.
    click = pb2.ObjectPrompt(points=[pb2.Point(x=30, y=20, label=1)])
    two = [
        pb2.ObjectPrompt(points=[pb2.Point(x=30, y=20, label=1), pb2.Point(x=5, y=5, label=0)]),
        pb2.ObjectPrompt(points=[pb2.Point(x=50, y=10, label=1)]),
    ]
    s.send(prompt=pb2.Prompt(request_id=1, objects=[click], return_low_res_logits=True))
    s.send(prompt=pb2.Prompt(request_id=2, objects=two, multimask_output=True))
    s.send(prompt=pb2.Prompt(request_id=3, objects=[pb2.ObjectPrompt(points=[pb2.Point(x=1, y=1, label=7)])]))
    s.send(prompt=pb2.Prompt(request_id=4, objects=[pb2.ObjectPrompt(box=pb2.Box(x1=10, y1=8, x2=50, y2=40))]))

    first = s.recv()
    assert first.WhichOneof("response") == "masks" and first.masks.request_id == 1
    [single] = first.masks.objects[0].masks
    check_mask(single, WIDTH, HEIGHT)
    logits = np.frombuffer(single.low_res_logits, dtype="<f4").reshape(256, 256)
    assert np.isfinite(logits).all()

    second = s.recv()
    assert second.masks.request_id == 2
    assert [len(o.masks) for o in second.masks.objects] == [3, 3]
    for obj in second.masks.objects:
        for m in obj.masks:
            check_mask(m, WIDTH, HEIGHT)

    bad = s.recv()
    assert bad.WhichOneof("response") == "error"
    assert (bad.error.request_id, bad.error.code) == (3, 3)  # INVALID_ARGUMENT
    assert "label 7" in bad.error.message

    boxed = s.recv()
    assert boxed.masks.request_id == 4
    check_mask(boxed.masks.objects[0].masks[0], WIDTH, HEIGHT)

    # The previous mask's logits as mask_input.
    s.send(prompt=pb2.Prompt(request_id=5, objects=[
        pb2.ObjectPrompt(points=[pb2.Point(x=30, y=20, label=1)], mask_input=single.low_res_logits)
    ]))
    refined = s.recv()
    assert refined.masks.request_id == 5
    check_mask(refined.masks.objects[0].masks[0], WIDTH, HEIGHT)
    assert s.close() == []

    # Same masks as `mobilesam segment` for the same image and prompt.
    cli = segment_cli(image_path, [[[30, 20], [5, 5]], [[50, 10]]], [[1, 0], [1]], multimask=True)
    assert (cli["width"], cli["height"]) == (WIDTH, HEIGHT)
    for streamed, expected in zip(second.masks.objects, cli["objects"], strict=True):
        for m, e in zip(streamed.masks, expected["masks"], strict=True):
            assert m.rle.counts == e["rle"]["counts"]
            assert m.area == e["area"]
            assert np.float32(m.score) == np.float32(e["score"])
            assert [m.bbox.x1, m.bbox.y1, m.bbox.x2 - m.bbox.x1, m.bbox.y2 - m.bbox.y1] == e["bbox"]

    # Resume the session on a new stream: no encode, the same masks.
    r = Session(pb2, stub)
    r.send(set_image=pb2.SetImage(session_id=session_id))
    resumed = r.recv()
    assert resumed.image_ready.session_id == session_id
    assert resumed.image_ready.encode_ms == 0
    r.send(prompt=pb2.Prompt(request_id=9, objects=two, multimask_output=True))
    again = r.recv()
    assert again.masks.objects == second.masks.objects
    r.send(set_image=pb2.SetImage(session_id="unknown-session"))
    missing = r.recv()
    assert missing.error.code == 5  # NOT_FOUND
    assert r.close() == []


def test_prompt_before_image_is_refused(pb, stub):
    pb2, _ = pb
    s = Session(pb2, stub)
    s.send(prompt=pb2.Prompt(request_id=1, objects=[pb2.ObjectPrompt(points=[pb2.Point(x=1, y=1, label=1)])]))
    answer = s.recv()
    assert (answer.error.request_id, answer.error.code) == (1, 9)  # FAILED_PRECONDITION
    assert s.close() == []


def test_generate_masks(pb, stub):
    """Segment everything: masks that pycocotools decodes (area and box agree), then a
    summary that counts them; bad parameters are INVALID_ARGUMENT."""
    import grpc

    pb2, _ = pb
    # Seeded random weights: no filters, so masks survive.
    params = pb2.GenerateParams(points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0)
    answers = list(stub.GenerateMasks(pb2.GenerateMasksRequest(image=make_png(WIDTH, HEIGHT), params=params),
                                      timeout=ANSWER_TIMEOUT_S))
    *masks, last = answers
    assert last.WhichOneof("response") == "summary"
    assert (last.summary.width, last.summary.height) == (WIDTH, HEIGHT)
    assert last.summary.mask_count == len(masks) > 0
    for answer in masks:
        generated = answer.mask
        if generated.mask.area > 0:
            check_mask(generated.mask, WIDTH, HEIGHT)
        assert generated.point.label == 1
        assert (generated.crop_box.x2, generated.crop_box.y2) == (WIDTH, HEIGHT)

    with pytest.raises(grpc.RpcError) as refused:
        list(stub.GenerateMasks(pb2.GenerateMasksRequest(image=make_png(WIDTH, HEIGHT),
                                                         params=pb2.GenerateParams(points_per_side=0)),
                                timeout=ANSWER_TIMEOUT_S))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "points_per_side" in refused.value.details()
