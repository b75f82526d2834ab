"""COCO compressed RLE (pycocotools' format), without pycocotools.

A mask of height H and width W is read in column-major order (down the first column, then
the next) as runs of 0s and 1s, starting with 0s (a leading run may be empty). The run
lengths are written as a string: each length, from the third on, minus the length two
before it, in groups of 5 bits, least significant first, each group plus 48 as one
character, with bit 0x20 set on every group but the last; the last group's bit 0x10 is the
sign (the value is negative when set).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["counts_from_string", "counts_to_string", "decode", "encode"]


def counts_from_string(counts: str) -> list[int]:
    """Run lengths of a compressed counts string."""
    runs: list[int] = []
    data = counts.encode("ascii")
    p, n = 0, len(data)
    while p < n:
        x = 0
        k = 0
        more = True
        while more:
            if p >= n:
                raise ValueError(f"RLE counts string ends inside a value: {counts[:40]!r}")
            c = data[p] - 48
            if c < 0 or c > 63:
                raise ValueError(f"RLE counts string has a character out of range at {p}: {counts[:40]!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def counts_to_string(runs: Sequence[int]) -> str:
    """The compressed counts string of run lengths (pycocotools' rleToString)."""
    out = bytearray()
    for i, run in enumerate(runs):
        x = int(run)
        if i > 2:
            x -= int(runs[i - 2])
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(c + 48)
    return out.decode("ascii")


def decode(size: Sequence[int], counts: str) -> np.ndarray:
    """The boolean (height, width) mask of an RLE `{"size": [h, w], "counts": str}`."""
    if len(size) != 2:
        raise ValueError(f"RLE size must be [height, width], found {list(size)}")
    height, width = int(size[0]), int(size[1])
    runs = counts_from_string(counts)
    if any(r < 0 for r in runs):
        raise ValueError("RLE has a negative run length")
    if sum(runs) != height * width:
        raise ValueError(f"RLE runs cover {sum(runs)} pixels, not {height}x{width} = {height * width}")
    values = (np.arange(len(runs)) % 2).astype(bool)
    flat = np.repeat(values, runs)
    return np.ascontiguousarray(flat.reshape(width, height).T)


def encode(mask: np.ndarray) -> dict:
    """The RLE `{"size": [h, w], "counts": str}` of a 2-D mask (nonzero is foreground)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask is 2-D (height, width), found shape {mask.shape}")
    height, width = mask.shape
    flat = (mask.T.reshape(-1) != 0).astype(np.int8)
    if flat.size == 0:
        return {"size": [height, width], "counts": counts_to_string([0])}
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat[0] == 1:
        runs.insert(0, 0)
    return {"size": [height, width], "counts": counts_to_string(runs)}
