"""Images to send: encoded bytes as they are, a file's bytes, or a pixel array as PNG."""

from __future__ import annotations

import os
import struct
import zlib
from typing import Union

import numpy as np

__all__ = ["ImageInput", "image_bytes", "encode_png"]

ImageInput = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", np.ndarray]


def encode_png(pixels: np.ndarray, level: int = 1) -> bytes:
    """An (H, W, 3) RGB or (H, W) grey uint8 array as PNG bytes (8-bit, filter 0)."""
    if pixels.ndim == 2:
        color_type, channels = 0, 1
    else:
        color_type, channels = 2, 3
    height, width = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels).reshape(height, width * channels)
    raw = np.zeros((height, width * channels + 1), dtype=np.uint8)
    raw[:, 1:] = rows

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + chunk(b"IEND", b""))


def image_bytes(image: object, what: str = "image") -> bytes:
    """The bytes to send for `image`: encoded image bytes (JPEG, PNG, WebP, ...) as they are,
    a path (str or os.PathLike) read from disk, or an (H, W, 3) uint8 RGB array (or (H, W)
    grey) encoded as PNG. Raises ValueError for anything else."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if not data:
            raise ValueError(f"{what} is empty (0 bytes)")
        return data
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ValueError(f"{what}: cannot read {path!r}: {e.strerror or e}") from e
        if not data:
            raise ValueError(f"{what}: file {path!r} is empty")
        return data
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"{what}: a pixel array must be uint8, found {image.dtype}")
        if not (image.ndim == 3 and image.shape[2] == 3) and image.ndim != 2:
            raise ValueError(f"{what}: a pixel array must be (H, W, 3) RGB or (H, W) grey, found shape {image.shape}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"{what}: the pixel array is empty, shape {image.shape}")
        return encode_png(image)
    raise ValueError(f"{what} must be encoded image bytes, a file path or an (H, W, 3) uint8 array, "
                     f"found {type(image).__name__}")
