"""mobilesam_client.Client against the real server (conftest.py starts it)."""

from __future__ import annotations

import hashlib
import time

import grpc
import numpy as np
import pytest

import mobilesam_client as mc
from conftest import FIXTURES
from helpers import BUSY, BUSY_POINTS, STARTED_S, check_mask, check_polygons, check_prediction

W, H = 451, 300  # chelsea.png
FW, FH = 240, 160  # tracking frames


@pytest.fixture()
def client(addr):
    with mc.Client(addr, timeout=300) as c:
        yield c


def test_model_info(client):
    info = client.model_info()
    assert isinstance(info, mc.pb.ModelInfo)
    assert info.name == "mobile_sam" and info.image_size == 1024 and info.parameters > 0


def test_every_prompt_shape(client, images):
    with client.session(images["chelsea"]) as s:
        assert (s.ready.width, s.ready.height) == (W, H) and s.session_id
        assert s.ready.image_sha256 == hashlib.sha256(images["chelsea"]).hexdigest()
        check_prediction(s.predict(points=[200, 150]), W, H, objects=1)
        check_prediction(s.predict(points=[[200, 150], [400, 60]], labels=[1, 1]), W, H, objects=2)
        several = s.predict(points=[[[200, 150], [120, 80], [260, 190]]], labels=[[1, 0, 1]])
        check_prediction(several, W, H, objects=1)
        check_prediction(s.predict(boxes=[100, 60, 330, 260]), W, H, objects=1)
        check_prediction(s.predict(boxes=[[100, 60, 330, 260], [350, 20, 440, 120]]), W, H, objects=2)
        check_prediction(s.predict(points=[[200, 150]], boxes=[[100, 60, 330, 260]]), W, H, objects=1)
        paired = s.predict(points=[[[200, 150], [210, 160]], [[400, 60]]], labels=[[1, 1], [1]],
                           boxes=[[100, 60, 330, 260], [350, 20, 440, 120]])
        check_prediction(paired, W, H, objects=2)
        multi = s.predict(boxes=[100, 60, 330, 260], multimask=True)
        check_prediction(multi, W, H, objects=1, masks=3)
        assert multi.objects[0].best is max(multi.objects[0].masks, key=lambda m: m.score)
        # The same prompt gives the same masks.
        again = s.predict(points=[[[200, 150], [120, 80], [260, 190]]], labels=[[1, 0, 1]])
        assert again.objects[0].masks[0].rle == several.objects[0].masks[0].rle


def test_polygons_logits_and_mask_input(client, images):
    with client.session(images["chelsea"]) as s:
        r = s.predict(points=[[200, 150]], polygons=True, logits=True)
        m = r.objects[0].masks[0]
        check_mask(m, W, H)
        check_polygons(m, W, H)
        logits = m.low_res_logits
        assert logits.shape == (256, 256) and logits.dtype == np.float32 and np.isfinite(logits).all()
        refined = s.predict(points=[200, 150], mask_input=[logits])
        check_prediction(refined, W, H, objects=1)
        assert s.predict(points=[200, 150]).objects[0].masks[0].polygons == []


def test_image_as_path_and_array(client, images):
    path = FIXTURES / "tracking" / "frame_0.png"
    with client.session(path) as by_path:
        assert (by_path.ready.width, by_path.ready.height) == (FW, FH)
        expected = by_path.predict(points=[120, 80]).objects[0].masks[0]
    rgb = np.zeros((48, 64, 3), dtype=np.uint8)
    rgb[10:30, 20:50] = (240, 220, 40)
    with client.session(rgb) as by_array:
        assert (by_array.ready.width, by_array.ready.height) == (64, 48)
        check_prediction(by_array.predict(points=[30, 20]), 64, 48, objects=1)
        ready = by_array.set_image(str(path))
        assert (ready.width, ready.height) == (FW, FH)
        assert by_array.predict(points=[120, 80]).objects[0].masks[0].rle == expected.rle


def test_tracking_over_frames_with_frame_index(client, images):
    with client.session(images["frame_0"], frame_index=0) as s:
        assert s.ready.frame_index == 0 and s.ready.tracked == []
        r = s.predict(points=[[120, 80], [200, 120]], multimask=True, track=True, object_ids=[1, 3])
        assert [o.object_id for o in r.objects] == [1, 3]
        assert all(o.state == mc.TrackState.TRACKED for o in r.objects)
        s.predict(boxes=[30, 40, 110, 130], track=True, object_ids=[7], polygons=True)
        for index, frame in ((1, "frame_1"), (2, "frame_2")):
            ready = s.set_image(images[frame], frame_index=index)
            assert [o.object_id for o in ready.tracked] == [1, 3, 7]
            for obj in ready.tracked:
                assert obj.state in (mc.TrackState.TRACKED, mc.TrackState.LOST)
                if obj.state == mc.TrackState.TRACKED:
                    [m] = obj.masks
                    check_mask(m, FW, FH)
                else:
                    assert obj.masks == []
            assert ready.tracked[2].masks == [] or ready.tracked[2].masks[0].polygons or \
                ready.tracked[2].masks[0].area == 0
        s.untrack([3])
        ready = s.set_image(images["frame_3"], frame_index=3)
        assert [o.object_id for o in ready.tracked] == [1, 7]
        assert client.untrack(s.session_id, [7, 99]) == [7]
        s.untrack()
        assert s.set_image(images["frame_2"], frame_index=2).tracked == []


def test_frame_index_is_echoed(client, images):
    with client.session(images["frame_0"], frame_index=5) as s:
        assert s.ready.frame_index == 5
        assert s.set_image(images["frame_1"], frame_index=12).frame_index == 12
        assert s.set_image(images["frame_2"]).frame_index == 13, "unset: the index after the previous frame's"


def test_prefetch_then_use(client, images):
    with client.session(images["chelsea"]) as s:
        futures = s.prefetch([images["coffee"], FIXTURES / "tracking" / "frame_3.png"])
        assert len(futures) == 2
        # A prompt is answered while the prefetches run; the current image is still chelsea.
        check_prediction(s.predict(points=[200, 150]), W, H, objects=1)
        answers = [f.result(timeout=300) for f in futures]
        expected = [hashlib.sha256(images["coffee"]).hexdigest(), hashlib.sha256(images["frame_3"]).hexdigest()]
        assert [a.image_sha256 for a in answers] == expected
        assert all(a.prefetched for a in answers), "the server answers SetImage{prefetch} with prefetched"
        check_prediction(s.predict(points=[200, 150]), W, H, objects=1)
        ready = s.set_image(sha256=expected[0], frame_index=13)
        assert (ready.width, ready.height) == (600, 400) and ready.encode_ms == 0
        assert s.prefetch([images["frame_1"]], wait=True)[0].prefetched


def test_generate_on_the_stream_and_unary(client, images):
    with client.session(images["frame_0"]) as s:
        generation = s.generate(points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0)
        masks = list(generation)
        assert generation.summary is not None and generation.summary.mask_count == len(masks) > 0
        assert (generation.summary.width, generation.summary.height) == (FW, FH)
        for m in masks:
            assert isinstance(m, mc.GeneratedMask)
            if m.area:
                check_mask(m, FW, FH)
            assert m.crop_box == (0.0, 0.0, float(FW), float(FH))
        # A prompt after the generation still works on the stream.
        check_prediction(s.predict(points=[120, 80]), FW, FH, objects=1)
        unary = client.generate(session_id=s.session_id, points_per_side=4, pred_iou_thresh=0,
                                stability_score_thresh=0).masks()
        assert [m.rle for m in unary] == [m.rle for m in masks]
    direct = client.generate(images["frame_0"], points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0)
    assert [m.rle for m in direct] == [m.rle for m in masks] and direct.summary.mask_count == len(masks)
    with pytest.raises(mc.InvalidArgument, match="points_per_side"):
        client.generate(images["frame_0"], points_per_side=0).masks()


def test_supersede_raises_superseded(client, images):
    with client.session(images["chelsea"]) as s:
        busy = s.submit(**BUSY)
        time.sleep(STARTED_S)  # the busy prompt has started; the next one waits in the queue
        queued = s.submit(points=[200, 150])
        latest = s.submit(points=[120, 80], supersede=True)
        with pytest.raises(mc.Superseded) as aborted:
            queued.result(timeout=300)
        assert aborted.value.code == grpc.StatusCode.ABORTED and isinstance(aborted.value, mc.Error)
        assert "superseded" in aborted.value.message
        check_prediction(busy.result(timeout=300), W, H, objects=len(BUSY_POINTS), masks=3)
        check_prediction(latest.result(timeout=300), W, H, objects=1)
        # The blocking form: a superseding predict answers normally.
        check_prediction(s.predict(points=[200, 150], supersede=True), W, H, objects=1)


def test_errors_are_subclasses_with_codes(client, images):
    with pytest.raises(mc.NotFound) as missing:
        client.session(session_id="no-such-session")
    assert missing.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(mc.InvalidArgument) as truncated:
        client.session(images["truncated"])
    assert truncated.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with client.session(images["frame_0"]) as s:
        # On an open session: the error, and the stream stays usable.
        with pytest.raises(mc.InvalidArgument):
            s.set_image(images["truncated"])
        # A prompt the server refuses (more objects than --max-objects, 64): on its request id.
        with pytest.raises(mc.InvalidArgument) as too_many:
            s.predict(points=[[i, 1] for i in range(65)])
        assert too_many.value.request_id > 0
        check_prediction(s.predict(points=[120, 80]), FW, FH, objects=1)
        # Bad arguments: ValueError before anything is sent.
        with pytest.raises(ValueError, match="labels"):
            s.predict(points=[[1, 2], [3, 4]], labels=[1])
        check_prediction(s.predict(points=[120, 80]), FW, FH, objects=1)
    assert not client.close_session("no-such-session")


def test_resume_by_session_id(client, images):
    with client.session(images["chelsea"]) as s:
        first = s.predict(points=[[[200, 150], [120, 80]]], labels=[[1, 0]], multimask=True)
        session_id = s.session_id
    with client.session(session_id=session_id) as resumed:
        assert resumed.session_id == session_id and resumed.ready.encode_ms == 0
        assert (resumed.ready.width, resumed.ready.height) == (W, H)
        again = resumed.predict(points=[[[200, 150], [120, 80]]], labels=[[1, 0]], multimask=True)
        assert [m.rle for m in again.objects[0].masks] == [m.rle for m in first.objects[0].masks]
        assert [m.score for m in again.objects[0].masks] == [m.score for m in first.objects[0].masks]
    assert client.close_session(session_id)
    with pytest.raises(mc.NotFound):
        client.session(session_id=session_id)


def test_closed_session_refuses_requests(client, images):
    s = client.session(images["frame_0"])
    s.close()
    assert s.closed
    with pytest.raises(mc.SessionClosed):
        s.predict(points=[1, 1])
    s.close()  # twice is fine
