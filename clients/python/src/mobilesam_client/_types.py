"""Results: thin wrappers over the wire messages (`.raw` keeps the message)."""

from __future__ import annotations

import enum
from typing import Any, Iterator, Optional

import numpy as np

from . import _rle
from ._proto import mobilesam_pb2 as pb

__all__ = ["TrackState", "EmbeddingSource", "Polygon", "Mask", "ObjectResult", "Prediction",
           "ImageReady", "GeneratedMask", "GenerateSummary"]


class TrackState(enum.IntEnum):
    UNSPECIFIED = 0  # not a tracked object
    TRACKED = 1
    LOST = 2         # the mask came out empty; prompt the object again to resume
    OCCLUDED = 3     # SAM 2 memory tracking: not visible on this frame, still tracked


class EmbeddingSource(enum.IntEnum):
    ENCODED = 0
    LOCAL_CACHE = 1
    STORE = 2


def _enum(cls: Any, value: int) -> Any:
    try:
        return cls(value)
    except ValueError:  # a value added to the contract after this client
        return value


def _box(box: pb.Box) -> tuple[float, float, float, float]:
    return (box.x1, box.y1, box.x2, box.y2)


class Polygon:
    """One closed outline on pixel corners: `points` is (N, 2) float32 (x, y); `hole` marks
    a hole inside the region drawn before it. `np.asarray(polygon)` gives the points."""

    __slots__ = ("points", "hole")

    def __init__(self, points: np.ndarray, hole: bool) -> None:
        self.points = points
        self.hole = hole

    @classmethod
    def from_pb(cls, message: pb.Polygon) -> "Polygon":
        return cls(np.asarray(message.points, dtype=np.float32).reshape(-1, 2), bool(message.hole))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.points if dtype is None else self.points.astype(dtype)

    def __len__(self) -> int:
        return len(self.points)

    def __repr__(self) -> str:
        return f"Polygon({len(self.points)} points{', hole' if self.hole else ''})"


class Mask:
    """One mask: `array` (bool (H, W), decoded from the RLE on first use), `score`
    (predicted IoU), `stability_score`, `area`, `bbox` (x1, y1, x2, y2), `rle`
    (pycocotools' dict), `polygons` (when asked for), `low_res_logits` ((256, 256) float32,
    when asked for)."""

    def __init__(self, message: pb.Mask) -> None:
        self.raw = message
        self.score: float = message.score
        self.stability_score: float = message.stability_score
        self.area: int = message.area
        self.bbox: tuple[float, float, float, float] = _box(message.bbox)
        self.size: tuple[int, ...] = tuple(message.rle.size)
        self.counts: str = message.rle.counts
        self.polygons: list[Polygon] = [Polygon.from_pb(p) for p in message.polygons]
        self._array: Optional[np.ndarray] = None

    @property
    def rle(self) -> dict:
        """`{"size": [h, w], "counts": str}`, as pycocotools' mask.decode takes it."""
        return {"size": list(self.size), "counts": self.counts}

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = _rle.decode(self.size, self.counts)
        return self._array

    @property
    def low_res_logits(self) -> Optional[np.ndarray]:
        data = self.raw.low_res_logits
        if not data:
            return None
        return np.frombuffer(data, dtype="<f4").reshape(256, 256)

    def __repr__(self) -> str:
        return f"Mask(score={self.score:.4f}, area={self.area}, bbox={self.bbox})"


class ObjectResult:
    """The masks of one prompted or tracked object (`state` for tracked objects)."""

    def __init__(self, message: pb.ObjectMasks) -> None:
        self.raw = message
        self.object_id: int = message.object_id
        self.state = _enum(TrackState, message.state)
        self.masks: list[Mask] = [Mask(m) for m in message.masks]

    @property
    def best(self) -> Optional[Mask]:
        """The highest-scoring mask (None for a lost object)."""
        return max(self.masks, key=lambda m: m.score, default=None)

    def __repr__(self) -> str:
        return f"ObjectResult(object_id={self.object_id}, state={self.state!r}, masks={self.masks})"


class Prediction:
    """The answer to a prompt: `objects` in prompt order."""

    def __init__(self, message: pb.Masks) -> None:
        self.raw = message
        self.request_id: int = message.request_id
        self.decode_ms: float = message.decode_ms
        self.objects: list[ObjectResult] = [ObjectResult(o) for o in message.objects]

    def __iter__(self) -> Iterator[ObjectResult]:
        return iter(self.objects)

    def __len__(self) -> int:
        return len(self.objects)

    def __repr__(self) -> str:
        return f"Prediction(request_id={self.request_id}, objects={self.objects})"


class ImageReady:
    """The answer to an image: the session, the size, and `tracked` (one ObjectResult per
    tracked object on a new frame; empty when nothing is tracked)."""

    def __init__(self, message: pb.ImageReady) -> None:
        self.raw = message
        self.session_id: str = message.session_id
        self.width: int = message.width
        self.height: int = message.height
        self.encode_ms: float = message.encode_ms
        self.source = _enum(EmbeddingSource, message.source)
        self.image_sha256: str = message.image_sha256
        self.tracked: list[ObjectResult] = [ObjectResult(o) for o in message.tracked.objects]
        self.prefetched: bool = message.prefetched
        self.frame_index: int = message.frame_index

    def __repr__(self) -> str:
        extra = ", prefetched" if self.prefetched else ""
        return (f"ImageReady(session_id={self.session_id!r}, {self.width}x{self.height}, "
                f"frame_index={self.frame_index}, tracked={len(self.tracked)}{extra})")


class GeneratedMask(Mask):
    """A mask of segment-everything: a Mask plus `point` (x, y: the grid point that made it),
    `crop_box` and the generator's `stability_score`."""

    def __init__(self, message: pb.GeneratedMask) -> None:
        super().__init__(message.mask)
        self.generated = message
        self.request_id: int = message.request_id
        self.stability_score = message.stability_score
        self.point: tuple[float, float] = (message.point.x, message.point.y)
        self.crop_box: tuple[float, float, float, float] = _box(message.crop_box)


class GenerateSummary:
    def __init__(self, message: pb.GenerateSummary) -> None:
        self.raw = message
        self.request_id: int = message.request_id
        self.mask_count: int = message.mask_count
        self.width: int = message.width
        self.height: int = message.height
        self.encode_ms: float = message.encode_ms
        self.generate_ms: float = message.generate_ms

    def __repr__(self) -> str:
        return f"GenerateSummary(mask_count={self.mask_count}, {self.width}x{self.height})"
