"""Checks shared by the tests against the server."""

from __future__ import annotations

import math

import numpy as np

import mobilesam_client as mc

# The supersede tests keep the decode lane busy with this many objects (the server's
# --max-objects, 64; with multimask and polygons), so the prompt sent after it is still
# queued when the superseding one arrives.
BUSY_POINTS = [[10 + 20 * i, 10 + 90 * j] for j in range(4) for i in range(16)]
BUSY = {"points": BUSY_POINTS, "multimask": True, "polygons": True}
STARTED_S = 0.15  # time for the server to start the busy prompt


def tight_box(array: np.ndarray) -> tuple[float, float, float, float]:
    rows = np.flatnonzero(array.any(axis=1))
    cols = np.flatnonzero(array.any(axis=0))
    if rows.size == 0:
        return (0.0, 0.0, 0.0, 0.0)
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def check_mask(mask: mc.Mask, width: int, height: int) -> None:
    """The RLE decodes to the image size; area and box agree with the pixels."""
    array = mask.array
    assert array.shape == (height, width) and array.dtype == np.bool_
    assert mask.size == (height, width)
    assert int(array.sum()) == mask.area
    assert mask.bbox == tight_box(array)
    assert math.isfinite(mask.score) and math.isfinite(mask.stability_score)


def check_prediction(prediction: mc.Prediction, width: int, height: int, objects: int, masks: int = 1) -> None:
    assert len(prediction.objects) == objects
    for obj in prediction.objects:
        assert len(obj.masks) == masks
        for m in obj.masks:
            check_mask(m, width, height)


def check_polygons(mask: mc.Mask, width: int, height: int) -> None:
    assert mask.polygons or mask.area == 0
    for polygon in mask.polygons:
        assert isinstance(polygon, mc.Polygon) and isinstance(polygon.hole, bool)
        assert polygon.points.ndim == 2 and polygon.points.shape[1] == 2 and len(polygon) >= 3
        assert polygon.points.dtype == np.float32
        assert (polygon.points[:, 0] >= 0).all() and (polygon.points[:, 0] <= width).all()
        assert (polygon.points[:, 1] >= 0).all() and (polygon.points[:, 1] <= height).all()
    if mask.polygons:
        assert not mask.polygons[0].hole, "a region comes before its holes"
