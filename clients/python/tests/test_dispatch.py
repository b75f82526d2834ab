"""How a stream's answers are matched to its requests (no server: answers made by hand)."""

import concurrent.futures

import pytest

import mobilesam_client as mc
from mobilesam_client._stream import Dispatcher

pb = mc.pb


def future():
    return concurrent.futures.Future()


def ready(sha="", prefetched=False, width=4):
    return pb.SegmentResponse(image_ready=pb.ImageReady(image_sha256=sha, prefetched=prefetched, width=width))


def test_prompts_by_request_id_images_in_order():
    d = Dispatcher()
    image, first, second = future(), future(), future()
    d.expect_image(image)
    d.expect_prompt(1, first)
    d.expect_prompt(2, second)
    d.on_response(ready(width=9))
    d.on_response(pb.SegmentResponse(masks=pb.Masks(request_id=2)))
    d.on_response(pb.SegmentResponse(error=pb.Error(request_id=1, code=10, message="superseded by request 2")))
    assert image.result().width == 9
    assert second.result().request_id == 2
    with pytest.raises(mc.Superseded, match="superseded"):
        first.result()
    assert d.pending() == 0


def test_prefetches_by_sha_while_an_image_waits():
    d = Dispatcher()
    a, b, image = future(), future(), future()
    d.expect_prefetch("aa", a)
    d.expect_prefetch("bb", b)
    d.expect_image(image)
    d.on_response(ready("cc", prefetched=False))     # the plain SetImage, answered first
    d.on_response(ready("bb", prefetched=True))      # prefetches in any order
    d.on_response(ready("aa", prefetched=True))
    assert image.result().image_sha256 == "cc"
    assert (a.result().image_sha256, b.result().image_sha256) == ("aa", "bb")


def test_image_errors_go_to_the_oldest_image_then_prefetches():
    d = Dispatcher()
    p, image = future(), future()
    d.expect_prefetch("aa", p)
    d.expect_image(image)
    d.on_response(pb.SegmentResponse(error=pb.Error(code=3, message="image data is truncated")))
    with pytest.raises(mc.InvalidArgument):
        image.result()
    d.on_response(pb.SegmentResponse(error=pb.Error(code=8, message="queue full")))
    with pytest.raises(mc.ResourceExhausted):
        p.result()


def test_generation_and_end_of_stream():
    d = Dispatcher()
    gen = mc.Generation(timeout=5)
    d.expect_generation(3, gen)
    d.on_response(pb.SegmentResponse(generated_mask=pb.GeneratedMask(
        request_id=3, mask=pb.Mask(area=1, rle=pb.Rle(size=[1, 1], counts="01"))), ))
    d.on_response(pb.SegmentResponse(generate_summary=pb.GenerateSummary(request_id=3, mask_count=1)))
    masks = list(gen)
    assert len(masks) == 1 and masks[0].array.tolist() == [[True]] and gen.summary.mask_count == 1
    waiting = future()
    d.expect_prompt(4, waiting)
    d.on_end(mc.Unavailable("the server is shutting down"))
    with pytest.raises(mc.Unavailable):
        waiting.result()
    with pytest.raises(mc.Unavailable):
        d.expect_prompt(5, future())


def test_stray_answers_warn():
    d = Dispatcher()
    with pytest.warns(RuntimeWarning, match="unknown request 7"):
        d.on_response(pb.SegmentResponse(masks=pb.Masks(request_id=7)))
