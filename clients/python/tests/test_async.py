"""mobilesam_client.AsyncClient (grpc.aio) against the real server. Each test runs its own
event loop with asyncio.run (no pytest plugin needed)."""

from __future__ import annotations

import asyncio
import hashlib

import grpc
import pytest

import mobilesam_client as mc
from helpers import BUSY, BUSY_POINTS, STARTED_S, check_mask, check_polygons, check_prediction

W, H = 451, 300
FW, FH = 240, 160


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 600))


def test_model_info_and_prompt_shapes(addr, images):
    async def main():
        async with mc.AsyncClient(addr) as client:
            info = await client.model_info()
            assert info.name == "mobile_sam"
            async with client.session(images["chelsea"]) as s:
                assert (s.ready.width, s.ready.height) == (W, H)
                check_prediction(await s.predict(points=[200, 150]), W, H, objects=1)
                check_prediction(await s.predict(points=[[200, 150], [400, 60]]), W, H, objects=2)
                check_prediction(await s.predict(points=[[[200, 150], [120, 80]]], labels=[[1, 0]]), W, H, objects=1)
                check_prediction(await s.predict(boxes=[[100, 60, 330, 260], [350, 20, 440, 120]]), W, H, objects=2)
                check_prediction(await s.predict(points=[[200, 150]], boxes=[[100, 60, 330, 260]]), W, H, objects=1)
                multi = await s.predict(boxes=[100, 60, 330, 260], multimask=True, polygons=True)
                check_prediction(multi, W, H, objects=1, masks=3)
                for m in multi.objects[0].masks:
                    check_polygons(m, W, H)
                # Concurrent predicts are pipelined on the one stream; answers match requests.
                one, two = await asyncio.gather(s.predict(points=[200, 150]), s.predict(boxes=[100, 60, 330, 260]))
                assert one.objects[0].masks[0].rle == (await s.predict(points=[200, 150])).objects[0].masks[0].rle
                assert two.objects[0].masks[0].rle == (await s.predict(boxes=[100, 60, 330, 260])).objects[0].masks[0].rle
    run(main())


def test_tracking(addr, images):
    async def main():
        async with mc.AsyncClient(addr) as client:
            s = await client.session(images["frame_0"], frame_index=0)
            r = await s.predict(points=[[120, 80], [200, 120]], track=True, object_ids=[1, 2])
            assert [o.state for o in r.objects] == [mc.TrackState.TRACKED] * 2
            for index, frame in ((1, "frame_1"), (2, "frame_2")):
                ready = await s.set_image(images[frame], frame_index=index)
                assert [o.object_id for o in ready.tracked] == [1, 2]
                for obj in ready.tracked:
                    for m in obj.masks:
                        check_mask(m, FW, FH)
            await s.untrack()
            assert (await s.set_image(images["frame_3"])).tracked == []
            await s.close()
            assert s.closed
            with pytest.raises(mc.SessionClosed):
                await s.predict(points=[1, 1])
    run(main())


def test_prefetch(addr, images):
    async def main():
        async with mc.AsyncClient(addr) as client:
            async with client.session(images["frame_0"]) as s:
                futures = await s.prefetch([images["frame_2"], images["frame_3"]])
                check_prediction(await s.predict(points=[120, 80]), FW, FH, objects=1)
                answers = await asyncio.gather(*futures)
                assert [a.image_sha256 for a in answers] == [hashlib.sha256(images[f]).hexdigest()
                                                             for f in ("frame_2", "frame_3")]
                assert all(a.prefetched for a in answers)
                check_prediction(await s.predict(points=[120, 80]), FW, FH, objects=1)
                assert (await s.prefetch([images["frame_1"]], wait=True))[0].prefetched
    run(main())


def test_frame_index_is_echoed(addr, images):
    async def main():
        async with mc.AsyncClient(addr) as client:
            async with client.session(images["frame_0"], frame_index=3) as s:
                assert s.ready.frame_index == 3
                assert (await s.set_image(images["frame_1"], frame_index=7)).frame_index == 7
    run(main())


def test_generate(addr, images):
    async def main():
        async with mc.AsyncClient(addr) as client:
            async with client.session(images["frame_0"]) as s:
                generation = s.generate(points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0)
                masks = [m async for m in generation]
                assert generation.summary.mask_count == len(masks) > 0
                unary = await client.generate(images["frame_0"], points_per_side=4, pred_iou_thresh=0,
                                              stability_score_thresh=0).masks()
                assert [m.rle for m in unary] == [m.rle for m in masks]
                check_prediction(await s.predict(points=[120, 80]), FW, FH, objects=1)
    run(main())


def test_supersede_and_errors(addr, images):
    async def main():
        async with mc.AsyncClient(addr) as client:
            async with client.session(images["chelsea"]) as s:
                busy = await s.submit(**BUSY)
                await asyncio.sleep(STARTED_S)
                queued = await s.submit(points=[200, 150])
                latest = await s.submit(points=[120, 80], supersede=True)
                with pytest.raises(mc.Superseded) as aborted:
                    await queued
                assert aborted.value.code == grpc.StatusCode.ABORTED
                check_prediction(await busy, W, H, objects=len(BUSY_POINTS), masks=3)
                check_prediction(await latest, W, H, objects=1)
                with pytest.raises(mc.InvalidArgument):
                    await s.set_image(images["truncated"])
                check_prediction(await s.predict(points=[200, 150]), W, H, objects=1)
                session_id = s.session_id
                first = await s.predict(points=[200, 150])
            with pytest.raises(mc.NotFound) as missing:
                await client.session(session_id="no-such-session")
            assert missing.value.code == grpc.StatusCode.NOT_FOUND
            with pytest.raises(mc.InvalidArgument):
                await client.session(images["truncated"])
            async with client.session(session_id=session_id) as resumed:
                assert resumed.ready.encode_ms == 0
                again = await resumed.predict(points=[200, 150])
                assert again.objects[0].masks[0].rle == first.objects[0].masks[0].rle
            assert await client.close_session(session_id)
    run(main())
