"""COCO compressed RLE, against masks and strings worked out by hand."""

import numpy as np
import pytest

import mobilesam_client as mc
from mobilesam_client import _rle


def hand_mask():
    # 3 rows x 4 columns:      column-major (down each column):
    #   . . . #                col 0: 0 0 0   col 1: 0 1 1   col 2: 0 0 0   col 3: 1 0 0
    #   . # . .                runs: 4 zeros, 2 ones, 3 zeros, 1 one, 2 zeros
    #   . # . .
    m = np.zeros((3, 4), dtype=bool)
    m[1, 1] = m[2, 1] = m[0, 3] = True
    return m


def test_decodes_a_hand_made_mask():
    # Runs [4, 2, 3, 1, 2]: the first three as they are ('4', '2', '3'); then each minus the
    # run two before it: 1 - 2 = -1 and 2 - 3 = -1, one 5-bit group 0b11111 (sign bit 0x10 set,
    # no continuation) = 31, + 48 = 'O'.
    counts = "423OO"
    assert _rle.counts_from_string(counts) == [4, 2, 3, 1, 2]
    decoded = mc.decode_rle([3, 4], counts)
    assert decoded.dtype == np.bool_ and decoded.shape == (3, 4)
    assert (decoded == hand_mask()).all()
    assert mc.encode_rle(hand_mask()) == {"size": [3, 4], "counts": counts}


def test_multi_character_and_negative_values():
    # A 10 x 10 mask, runs [40, 50, 5, 5]: columns 4-8 and the lower half of column 9.
    # 40 = 0b1_01000: low group 8, continuation 0x20: 40 + 48 = 'X'; then 1 + 48 = '1'.
    # 50 = 0b1_10010: low group 18 | 0x20 = 50, + 48 = 'b'; then '1'.
    # 5 (the third run, as it is): '5'.
    # 5 - 50 = -45: low group -45 & 31 = 19 | 0x20 = 51 + 48 = 'c'; the rest, -2: group 30,
    # sign bit 0x10 set and nothing more (-1 left): 30 + 48 = 'N'.
    m = np.zeros((10, 10), dtype=bool)
    m[:, 4:9] = True
    m[5:, 9] = True
    assert _rle.counts_to_string([40, 50, 5, 5]) == "X1b15cN"
    assert _rle.counts_from_string("X1b15cN") == [40, 50, 5, 5]
    assert mc.encode_rle(m)["counts"] == "X1b15cN"
    assert (mc.decode_rle([10, 10], "X1b15cN") == m).all()


def test_leading_foreground_and_empty_and_full():
    full = np.ones((2, 3), dtype=bool)
    assert mc.encode_rle(full)["counts"] == "06"  # an empty run of zeros, then 6 ones
    assert mc.decode_rle([2, 3], "06").all()
    empty = np.zeros((2, 3), dtype=bool)
    assert mc.encode_rle(empty)["counts"] == "6"
    assert not mc.decode_rle([2, 3], "6").any()


def test_round_trip_random_masks():
    rng = np.random.default_rng(7)
    for shape in [(1, 1), (5, 7), (48, 64), (300, 451)]:
        for density in (0.02, 0.5, 0.98):
            m = rng.random(shape) < density
            rle = mc.encode_rle(m)
            assert rle["size"] == list(shape)
            assert (mc.decode_rle(rle["size"], rle["counts"]) == m).all()


def test_bad_strings_are_refused():
    with pytest.raises(ValueError, match="cover 5 pixels"):
        mc.decode_rle([2, 3], "5")
    with pytest.raises(ValueError, match="ends inside a value"):
        mc.decode_rle([2, 3], "X")
    with pytest.raises(ValueError, match="out of range"):
        mc.decode_rle([2, 3], "\x01")
    with pytest.raises(ValueError, match="height, width"):
        mc.decode_rle([6], "6")


def test_mask_wrapper_decodes_lazily():
    wire = mc.pb.Mask(score=0.5, area=3, bbox=mc.pb.Box(x1=1, y1=0, x2=4, y2=3),
                      rle=mc.pb.Rle(size=[3, 4], counts="423OO"),
                      polygons=[mc.pb.Polygon(points=[1, 1, 2, 1, 2, 3, 1, 3]),
                                mc.pb.Polygon(points=[1, 1, 1, 2, 2, 2], hole=True)])
    mask = mc.Mask(wire)
    assert mask._array is None
    assert (mask.array == hand_mask()).all()
    assert mask.rle == {"size": [3, 4], "counts": "423OO"}
    assert mask.bbox == (1.0, 0.0, 4.0, 3.0)
    assert [p.hole for p in mask.polygons] == [False, True]
    assert mask.polygons[0].points.shape == (4, 2) and mask.polygons[0].points.dtype == np.float32
    assert np.asarray(mask.polygons[1]).tolist() == [[1, 1], [1, 2], [2, 2]]
    assert mask.low_res_logits is None
