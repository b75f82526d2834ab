"""Prompt nesting (as the command line's) and argument checks, without a server."""

import numpy as np
import pytest

import mobilesam_client as mc


def points(objects):
    return [[(p.x, p.y, p.label) for p in o.points] for o in objects]


def test_one_point_is_one_object():
    assert points(mc.build_objects(points=[10, 20.5])) == [[(10, 20.5, 1)]]
    assert points(mc.build_objects(points=[1, 2], labels=[0])) == [[(1, 2, 0)]]
    assert points(mc.build_objects(points=(1, 2), labels=0)) == [[(1, 2, 0)]]
    assert points(mc.build_objects(points=np.array([1.0, 2.0]))) == [[(1, 2, 1)]]


def test_list_of_points_is_one_object_each():
    objects = mc.build_objects(points=[[1, 2], [3, 4], [5, 6]], labels=[1, 0, 1])
    assert points(objects) == [[(1, 2, 1)], [(3, 4, 0)], [(5, 6, 1)]]
    assert points(mc.build_objects(points=np.array([[1, 2], [3, 4]]))) == [[(1, 2, 1)], [(3, 4, 1)]]


def test_nested_points_group_per_object():
    objects = mc.build_objects(points=[[[1, 2], [3, 4]], [[5, 6]]], labels=[[1, 0], [1]])
    assert points(objects) == [[(1, 2, 1), (3, 4, 0)], [(5, 6, 1)]]
    assert points(mc.build_objects(points=[[[1, 2], [3, 4]]])) == [[(1, 2, 1), (3, 4, 1)]]


def test_boxes_alone_and_paired():
    [one] = mc.build_objects(boxes=[1, 2, 30, 40])
    assert (one.box.x1, one.box.y1, one.box.x2, one.box.y2) == (1, 2, 30, 40) and not one.points
    assert len(mc.build_objects(boxes=[[0, 0, 5, 5], [1, 1, 9, 9]])) == 2
    paired = mc.build_objects(points=[[2, 2], [4, 4]], boxes=[[0, 0, 5, 5], [1, 1, 9, 9]])
    assert points(paired) == [[(2, 2, 1)], [(4, 4, 1)]] and paired[1].box.x2 == 9


def test_object_ids_and_track():
    objects = mc.build_objects(points=[[1, 2], [3, 4]], object_ids=[7, 9], track=True)
    assert [o.object_id for o in objects] == [7, 9]
    assert mc.build_objects(points=[1, 2], object_ids=7)[0].object_id == 7


def test_prompt_flags():
    prompt = mc.build_prompt(5, points=[1, 2], multimask=True, polygons=True, logits=True, supersede=True)
    assert (prompt.request_id, prompt.multimask_output, prompt.return_polygons, prompt.return_low_res_logits,
            prompt.supersede_pending, prompt.track) == (5, True, True, True, True, False)


def test_mask_input():
    logits = np.zeros((256, 256), dtype=np.float32)
    [obj] = mc.build_objects(points=[1, 2], mask_input=logits)
    assert len(obj.mask_input) == 256 * 256 * 4
    with pytest.raises(ValueError, match="256, 256"):
        mc.build_objects(points=[1, 2], mask_input=np.zeros((64, 64), dtype=np.float32))
    with pytest.raises(ValueError, match="262144 bytes"):
        mc.build_objects(points=[1, 2], mask_input=b"1234")


@pytest.mark.parametrize("kwargs, message", [
    ({}, "no prompt"),
    ({"points": ["NaN", 2]}, r"points\[0\]: expected a number, found string"),
    ({"points": []}, "points is empty"),
    ({"points": [1, 2, 3]}, r"expected \[x, y\]"),
    ({"points": [[[[1, 2]]]]}, "nests 4 lists deep"),
    ({"points": [1, 2], "labels": [2]}, "label 2"),
    ({"points": [1, 2], "labels": [0.5]}, r"labels\[0\]: expected a label"),
    ({"points": [1, 2], "labels": [True]}, r"labels\[0\]: expected a label"),
    ({"points": [[1, 2], [3, 4]], "labels": [1]}, "flat list of 2 labels"),
    ({"points": [[[1, 2], [3, 4]]], "labels": [[1]]}, r"labels\[0\] has 1 labels for 2 points"),
    ({"points": [[[1, 2]]], "labels": [1, 0]}, "points has 1 objects but labels has 2"),
    ({"labels": [1]}, "labels needs points"),
    ({"boxes": [5, 0, 1, 1]}, "x2 > x1"),
    ({"boxes": [0, 5, 1, 1]}, "y2 > y1"),
    ({"boxes": [0, 0, 1]}, r"expected \[x1, y1, x2, y2\]"),
    ({"boxes": [[[0, 0, 1, 1]]]}, "nests 3 lists deep"),
    ({"points": [1e39, 2]}, "non-finite"),
    ({"points": [float("inf"), 2]}, "non-finite"),
    ({"points": [[1, 2], [3, 4]], "boxes": [0, 0, 5, 5]}, "counts must match"),
    ({"points": [[1, 2], [3, 4]], "object_ids": [1]}, "1 ids for 2 object"),
    ({"points": [[1, 2], [3, 4]], "object_ids": [1, 1]}, "distinct"),
    ({"points": [1, 2], "object_ids": [0]}, "from 1 to 2"),
    ({"points": [1, 2], "track": True}, "track=True needs object_ids"),
    ({"points": [[[1, 2]], []]}, r"points\[1\] is empty"),
])
def test_bad_prompts_are_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mc.build_prompt(1, **kwargs)


def test_generate_params():
    from mobilesam_client._prompts import build_generate_params

    params = build_generate_params({"points_per_side": 16, "pred_iou_thresh": 0, "min_mask_region_area": None})
    assert params.points_per_side == 16 and params.HasField("pred_iou_thresh")
    assert not params.HasField("min_mask_region_area")
    with pytest.raises(ValueError, match="unknown generate parameter 'points'"):
        build_generate_params({"points": 3})
    with pytest.raises(ValueError, match="points_per_side: expected a non-negative integer"):
        build_generate_params({"points_per_side": 1.5})
    with pytest.raises(ValueError, match="box_nms_thresh: expected a finite number"):
        build_generate_params({"box_nms_thresh": float("nan")})


def test_images_and_options_are_checked(tmp_path):
    from mobilesam_client._common import set_image_message
    from mobilesam_client._images import image_bytes

    with pytest.raises(ValueError, match="empty"):
        image_bytes(b"")
    with pytest.raises(ValueError, match="cannot read"):
        image_bytes(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="uint8"):
        image_bytes(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        image_bytes(np.zeros((4, 4, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="encoded image bytes, a file path"):
        image_bytes(42)
    png = image_bytes(np.zeros((4, 5, 3), dtype=np.uint8))
    assert png.startswith(b"\x89PNG") and png[16:24] == b"\x00\x00\x00\x05\x00\x00\x00\x04"
    with pytest.raises(ValueError, match="exactly one"):
        set_image_message(b"x", session_id="s")
    with pytest.raises(ValueError, match="exactly one"):
        set_image_message()
    with pytest.raises(ValueError, match="64 lowercase hex"):
        set_image_message(sha256="ABC")
    with pytest.raises(ValueError, match="frame_index"):
        set_image_message(b"x", frame_index=1.5)
    assert set_image_message(b"x", frame_index=0).HasField("frame_index")
    with pytest.raises(ValueError, match="attempts"):
        mc.Retry(attempts=0)
    with pytest.raises(ValueError, match="target"):
        mc.Client("")
    with pytest.raises(ValueError, match="token"):
        mc.Client("localhost:1", token="a b")
    with pytest.raises(ValueError, match="tls"):
        mc.Client("localhost:1", tls=3)


def test_retry_delays_grow_to_the_cap():
    delays = mc.Retry(attempts=6, initial_backoff=0.1, max_backoff=0.5, multiplier=2, jitter=0).delays()
    assert delays == [0.1, 0.2, 0.4, 0.5, 0.5]


def test_errors_carry_the_code():
    import grpc

    from mobilesam_client._errors import error_for_code

    e = error_for_code(10, "superseded by request 3", 2)
    assert isinstance(e, mc.Superseded) and isinstance(e, mc.Error) and e.code == grpc.StatusCode.ABORTED
    assert e.request_id == 2 and "ABORTED" in str(e)
    assert isinstance(error_for_code(5, "x"), mc.NotFound)
    assert isinstance(error_for_code(3, "x"), mc.InvalidArgument)
    assert type(error_for_code(99, "x")) is mc.Unknown
    assert mc.Aborted is mc.Superseded
