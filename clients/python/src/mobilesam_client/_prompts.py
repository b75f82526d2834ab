"""Prompts nested as Ultralytics' `SAM.predict(points=, labels=, bboxes=)` and the command
line (`mobilesam segment`, README "Command line"; crates/model/src/prompt_json.rs):

- points `[x, y]`: one object with one point; `[[x, y], ...]`: one object per point;
  `[[[x, y], ...], ...]`: several points per object;
- labels nest like the points without the coordinate level (`[1]` or `1`, `[1, 0]`,
  `[[1, 0], ...]`); 1 foreground, 0 background; omitted, every point is foreground;
- boxes `[x1, y1, x2, y2]` (one object) or a list of them;
- points and boxes together pair up object by object.

Every problem is a ValueError naming the argument and position, raised before anything
is sent.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np

from ._proto import mobilesam_pb2 as pb

__all__ = ["build_objects", "build_prompt", "GENERATE_PARAMS", "build_generate_params"]

POINT_FORMS = "[x, y], [[x, y], ...] or [[[x, y], ...], ...]"
BOX_FORMS = "[x1, y1, x2, y2] or [[x1, y1, x2, y2], ...]"
FLOAT32_MAX = 3.4028234663852886e38
LOGITS_BYTES = 256 * 256 * 4


def _plain(value: Any) -> Any:
    """Lists for numpy arrays and tuples, so that nesting is measured the same way."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return f"a list of {len(value)} values"
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    return f"{type(value).__name__} {value!r}"


def _list(value: Any, path: str) -> list:
    if not isinstance(value, list):
        raise ValueError(f"{path}: expected a list, found {_describe(value)}")
    return value


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{path}: expected a number, found {_describe(value)}")
    x = float(value)
    if not math.isfinite(x) or abs(x) > FLOAT32_MAX:
        raise ValueError(f"{path}: non-finite coordinate {value!r}")
    return x


def _numbers(value: Any, count: int, path: str, form: str) -> list[float]:
    items = _list(value, path)
    if len(items) != count:
        raise ValueError(f"{path}: expected {form}, found a list of {len(items)} values")
    return [_number(v, f"{path}[{i}]") for i, v in enumerate(items)]


def _label(value: Any, path: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{path}: expected a label 1 (foreground) or 0 (background), found {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise ValueError(f"{path}: expected a label 1 (foreground) or 0 (background), found {_describe(value)}")
    if value not in (0, 1):
        raise ValueError(f"{path}: label {value} is neither 1 (foreground) nor 0 (background)")
    return value


def _point_coords(points: Any) -> tuple[list[list[list[float]]], int]:
    items = _list(points, "points")
    if not items:
        raise ValueError(f"points is empty; expected {POINT_FORMS}")
    depth = _depth(points)
    if depth == 1:
        return [[_numbers(points, 2, "points", "[x, y]")]], 1
    if depth == 2:
        return [[_numbers(p, 2, f"points[{i}]", "[x, y]")] for i, p in enumerate(items)], 2
    if depth == 3:
        objects = []
        for i, obj in enumerate(items):
            path = f"points[{i}]"
            pts = _list(obj, path)
            if not pts:
                raise ValueError(f"{path} is empty: an object needs at least one point")
            objects.append([_numbers(p, 2, f"{path}[{j}]", "[x, y]") for j, p in enumerate(pts)])
        return objects, 3
    raise ValueError(f"points nests {depth} lists deep; expected {POINT_FORMS}")


def _point_labels(labels: Any, depth: int, coords: list[list[list[float]]]) -> list[list[int]]:
    if depth == 1:
        if isinstance(labels, list):
            if len(labels) != 1:
                raise ValueError(f"points is one point [x, y], so labels must be one label like [1], "
                                 f"found {len(labels)} labels")
            labels = labels[0]
        return [[_label(labels, "labels[0]")]]
    if depth == 2:
        items = _list(labels, "labels")
        if _depth(labels) != 1 or len(items) != len(coords):
            raise ValueError(f"points is a list of {len(coords)} points (one object each), so labels must be "
                             f"a flat list of {len(coords)} labels like [1, 0]")
        return [[_label(v, f"labels[{i}]")] for i, v in enumerate(items)]
    items = _list(labels, "labels")
    if len(items) != len(coords):
        raise ValueError(f"points has {len(coords)} objects but labels has {len(items)} entries; give one list "
                         f"of labels per object, like [[1, 0], [1]]")
    out = []
    for i, (obj, pts) in enumerate(zip(items, coords)):
        path = f"labels[{i}]"
        obj = _list(obj, path)
        if len(obj) != len(pts):
            raise ValueError(f"{path} has {len(obj)} labels for {len(pts)} points")
        out.append([_label(v, f"{path}[{j}]") for j, v in enumerate(obj)])
    return out


def _boxes(boxes: Any) -> list[list[float]]:
    items = _list(boxes, "boxes")
    if not items:
        raise ValueError(f"boxes is empty; expected {BOX_FORMS}")
    depth = _depth(boxes)
    if depth == 1:
        found = [_numbers(boxes, 4, "boxes", "[x1, y1, x2, y2]")]
        paths = ["boxes"]
    elif depth == 2:
        found = [_numbers(b, 4, f"boxes[{i}]", "[x1, y1, x2, y2]") for i, b in enumerate(items)]
        paths = [f"boxes[{i}]" for i in range(len(items))]
    else:
        raise ValueError(f"boxes nests {depth} lists deep; expected {BOX_FORMS}")
    for path, (x1, y1, x2, y2) in zip(paths, found):
        if not x2 > x1:
            raise ValueError(f"{path}: a box needs x2 > x1, found x1={x1:g}, x2={x2:g}")
        if not y2 > y1:
            raise ValueError(f"{path}: a box needs y2 > y1, found y1={y1:g}, y2={y2:g}")
    return found


def _mask_input(value: Any, path: str) -> bytes:
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    elif isinstance(value, np.ndarray):
        if value.shape != (256, 256):
            raise ValueError(f"{path}: low-resolution logits are (256, 256), found shape {value.shape}")
        data = np.ascontiguousarray(value, dtype="<f4").tobytes()
    else:
        raise ValueError(f"{path}: expected 256x256 float32 logits (bytes or an array), found {_describe(value)}")
    if len(data) not in (0, LOGITS_BYTES):
        raise ValueError(f"{path}: low-resolution logits are {LOGITS_BYTES} bytes (256x256 float32), "
                         f"found {len(data)}")
    return data


def build_objects(points: Any = None, labels: Any = None, boxes: Any = None,
                  object_ids: Optional[Sequence[int]] = None, mask_input: Any = None,
                  track: bool = False) -> list[pb.ObjectPrompt]:
    """The ObjectPrompts of a prompt, in object order (see the module's docstring)."""
    points, labels, boxes = _plain(points), _plain(labels), _plain(boxes)
    coords = None
    if points is not None:
        coords, depth = _point_coords(points)
        point_labels = ([[1] * len(o) for o in coords] if labels is None
                        else _point_labels(labels, depth, coords))
    elif labels is not None:
        raise ValueError("labels needs points")
    box_list = _boxes(boxes) if boxes is not None else None
    if coords is None and box_list is None:
        raise ValueError("no prompt: give points and/or boxes")
    if coords is not None and box_list is not None and len(coords) != len(box_list):
        raise ValueError(f"points gives {len(coords)} object(s) but boxes gives {len(box_list)} box(es); points "
                         f"and boxes pair up object by object, so the counts must match")
    count = len(coords) if coords is not None else len(box_list or [])
    objects = [pb.ObjectPrompt() for _ in range(count)]
    if coords is not None:
        for obj, pts, lbls in zip(objects, coords, point_labels):
            obj.points.extend(pb.Point(x=x, y=y, label=lab) for (x, y), lab in zip(pts, lbls))
    if box_list is not None:
        for obj, (x1, y1, x2, y2) in zip(objects, box_list):
            obj.box.CopyFrom(pb.Box(x1=x1, y1=y1, x2=x2, y2=y2))
    if object_ids is not None:
        ids = _plain(object_ids)
        if isinstance(ids, int) and not isinstance(ids, bool):
            ids = [ids]
        ids = _list(ids, "object_ids")
        if len(ids) != count:
            raise ValueError(f"object_ids has {len(ids)} ids for {count} object(s); give one id per object")
        for i, (obj, oid) in enumerate(zip(objects, ids)):
            if isinstance(oid, bool) or not isinstance(oid, int) or not 0 < oid < 2**64:
                raise ValueError(f"object_ids[{i}]: expected an integer from 1 to 2^64-1, found {oid!r}")
            obj.object_id = oid
        if len(set(ids)) != len(ids):
            raise ValueError(f"object_ids must be distinct within a prompt, found {ids}")
    elif track:
        raise ValueError("track=True needs object_ids: one id per object, to name it on later frames")
    if mask_input is not None:
        inputs = mask_input if isinstance(mask_input, list) else [mask_input]
        if len(inputs) != count:
            raise ValueError(f"mask_input has {len(inputs)} entries for {count} object(s); give one per object "
                             f"(None for none)")
        for i, (obj, value) in enumerate(zip(objects, inputs)):
            obj.mask_input = _mask_input(value, f"mask_input[{i}]")
    return objects


def build_prompt(request_id: int, *, points: Any = None, labels: Any = None, boxes: Any = None,
                 multimask: bool = False, logits: bool = False, polygons: bool = False,
                 track: bool = False, object_ids: Optional[Sequence[int]] = None,
                 mask_input: Any = None, supersede: bool = False) -> pb.Prompt:
    """A Prompt message from the nested arguments (ValueError when they are not valid)."""
    objects = build_objects(points, labels, boxes, object_ids, mask_input, track)
    return pb.Prompt(request_id=request_id, objects=objects, multimask_output=bool(multimask),
                     return_low_res_logits=bool(logits), supersede_pending=bool(supersede),
                     track=bool(track), return_polygons=bool(polygons))


GENERATE_PARAMS = tuple(f.name for f in pb.GenerateParams.DESCRIPTOR.fields)


def build_generate_params(params: dict[str, Any]) -> pb.GenerateParams:
    """GenerateParams from keyword arguments named as its fields (None leaves one unset)."""
    message = pb.GenerateParams()
    for name, value in params.items():
        if name not in GENERATE_PARAMS:
            raise ValueError(f"unknown generate parameter {name!r}; expected one of {', '.join(GENERATE_PARAMS)}")
        if value is None:
            continue
        field = pb.GenerateParams.DESCRIPTOR.fields_by_name[name]
        if field.cpp_type == field.CPPTYPE_FLOAT:
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
                raise ValueError(f"{name}: expected a finite number, found {value!r}")
            setattr(message, name, float(value))
        else:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name}: expected a non-negative integer, found {value!r}")
            try:
                setattr(message, name, int(value))
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from e
    return message
