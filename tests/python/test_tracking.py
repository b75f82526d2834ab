"""Server-side tracking (issue 16) from a Python grpcio client against the real server:
the parity clip of tests/fixtures/tracking (made by make_tracking_fixture.py with the
reference SamPredictor) followed on a stream, then untracked with the unary RPC; and the
clip sent with frame_index, then a frame revisited (issue 29).

Same requirements and environment as test_grpc_client.py.
"""

import gzip
import json

import grpc
import numpy as np
import pytest
from pycocotools import mask as mask_util

from test_grpc_client import ROOT, Session, pb, server, stub  # noqa: F401  (fixtures)

FIXTURE = ROOT / "tests" / "fixtures"
MIN_IOU = 0.99
MAX_SCORE_DIFF = 5e-3

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def reference():
    with gzip.open(FIXTURE / "tracking" / "reference.json.gz", "rt") as f:
        return json.load(f)


def frame_bytes(ref, k):
    return (FIXTURE / ref["frames"][k]["image"]).read_bytes()


def to_prompt(pb2, request_id, objects, track=True):
    wire = []
    for o in objects:
        points = [pb2.Point(x=x, y=y, label=l) for (x, y), l in zip(o["points"] or [], o["labels"] or [])]
        box = pb2.Box(x1=o["box"][0], y1=o["box"][1], x2=o["box"][2], y2=o["box"][3]) if o["box"] else None
        wire.append(pb2.ObjectPrompt(object_id=o["object_id"], points=points, box=box))
    return pb2.Prompt(request_id=request_id, objects=wire, multimask_output=objects[0]["multimask"], track=track)


def iou(mask, expected):
    a = mask_util.decode({"size": list(mask.rle.size), "counts": mask.rle.counts.encode()})
    b = mask_util.decode({"size": expected["rle"]["size"], "counts": expected["rle"]["counts"].encode()})
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def test_stream_follows_the_clip_like_the_reference_then_untrack(pb, stub):  # noqa: F811
    pb2, _ = pb
    ref = reference()
    run = ref["follow"]
    s = Session(pb2, stub)
    s.send(set_image=pb2.SetImage(image=frame_bytes(ref, 0)))
    ready = s.recv().image_ready
    assert not ready.HasField("tracked"), "nothing is tracked before a track prompt"
    session_id = ready.session_id

    # Frame 0: one object per prompt (the point with multimask, the box without).
    for i, obj in enumerate(ref["prompts"]["start"]):
        s.send(prompt=to_prompt(pb2, i + 1, [obj]))
        answer = s.recv()
        assert answer.WhichOneof("response") == "masks", answer
        [got] = answer.masks.objects
        assert got.object_id == obj["object_id"]
        assert got.state == pb2.TRACK_STATE_TRACKED
        expected = run["prompt"][i]
        assert len(got.masks) == len(expected["masks"])
        for m, e in zip(got.masks, expected["masks"]):
            assert iou(m, e) >= MIN_IOU and abs(m.score - e["score"]) <= MAX_SCORE_DIFF

    worst_iou, worst_score = 1.0, 0.0
    for fr in run["frames"]:
        s.send(set_image=pb2.SetImage(image=frame_bytes(ref, fr["frame"])))
        ready = s.recv().image_ready
        assert ready.session_id == session_id
        tracked = ready.tracked.objects
        assert [o.object_id for o in tracked] == [t["object_id"] for t in fr["tracked"]]
        for o, t in zip(tracked, fr["tracked"]):
            assert t["state"] == "tracked" and o.state == pb2.TRACK_STATE_TRACKED
            [m] = o.masks
            worst_iou = min(worst_iou, iou(m, t))
            worst_score = max(worst_score, abs(m.score - t["score"]))
            assert not m.low_res_logits, "the follow-up does not send logits"
    assert worst_iou >= MIN_IOU, worst_iou
    assert worst_score <= MAX_SCORE_DIFF, worst_score
    print(f"stream parity over {len(run['frames'])} frames: min IoU {worst_iou:.4f}, max |dscore| {worst_score:.2e}")

    # The unary Untrack RPC stops object 2; the next frame on the stream follows object 1 only.
    untracked = stub.Untrack(pb2.UntrackRequest(session_id=session_id, untrack=pb2.Untrack(object_ids=[2, 9])),
                             timeout=60)
    assert list(untracked.object_ids) == [2]
    s.send(set_image=pb2.SetImage(image=frame_bytes(ref, 0)))
    assert [o.object_id for o in s.recv().image_ready.tracked.objects] == [1]
    # Untrack on the stream has no answer: the next answer is the next frame's.
    s.send(untrack=pb2.Untrack())
    s.send(set_image=pb2.SetImage(image=frame_bytes(ref, 1)))
    assert not s.recv().image_ready.HasField("tracked")
    assert s.close() == []


def test_frames_with_an_index_follow_like_the_reference_and_revisits_are_stored(pb, stub):  # noqa: F811
    """Issue 29 with the recipe: frames sent with frame_index in clip order follow the
    reference as before; scrubbing back answers the stored masks with no decode."""
    pb2, _ = pb
    ref = reference()
    run = ref["follow"]
    s = Session(pb2, stub)
    s.send(set_image=pb2.SetImage(image=frame_bytes(ref, 0), frame_index=0))
    assert s.recv().image_ready.frame_index == 0
    for i, obj in enumerate(ref["prompts"]["start"]):
        s.send(prompt=to_prompt(pb2, i + 1, [obj]))
        assert s.recv().WhichOneof("response") == "masks"

    answered = {}
    for fr in run["frames"][:3]:
        k = fr["frame"]
        s.send(set_image=pb2.SetImage(image=frame_bytes(ref, k), frame_index=k))
        ready = s.recv().image_ready
        assert ready.frame_index == k
        assert ready.tracked.decode_ms > 0, f"frame {k} is decoded"
        for o, t in zip(ready.tracked.objects, fr["tracked"]):
            assert o.object_id == t["object_id"] and o.state == pb2.TRACK_STATE_TRACKED
            [m] = o.masks
            assert iou(m, t) >= MIN_IOU and abs(m.score - t["score"]) <= MAX_SCORE_DIFF
        answered[k] = ready.tracked

    first = run["frames"][0]["frame"]
    s.send(set_image=pb2.SetImage(image=frame_bytes(ref, first), frame_index=first))
    again = s.recv().image_ready.tracked
    assert again.decode_ms == 0, "a revisit decodes nothing"
    assert list(again.objects) == list(answered[first].objects), "the stored masks"
    assert s.close() == []


def test_bad_tracking_requests_are_refused(pb, stub):  # noqa: F811
    pb2, _ = pb
    ref = reference()
    s = Session(pb2, stub)
    s.send(set_image=pb2.SetImage(image=frame_bytes(ref, 0)))
    session_id = s.recv().image_ready.session_id
    no_id = pb2.Prompt(request_id=4, track=True, objects=[pb2.ObjectPrompt(points=[pb2.Point(x=5, y=5, label=1)])])
    s.send(prompt=no_id)
    refused = s.recv()
    assert (refused.error.request_id, refused.error.code) == (4, 3)  # INVALID_ARGUMENT
    assert "object_id" in refused.error.message
    assert s.close() == []

    with pytest.raises(grpc.RpcError) as missing:
        stub.Untrack(pb2.UntrackRequest(session_id="no-such-session"), timeout=60)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert list(stub.Untrack(pb2.UntrackRequest(session_id=session_id), timeout=60).object_ids) == []
