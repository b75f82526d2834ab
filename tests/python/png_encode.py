"""A minimal PNG encoder for test images (no Pillow): shared by the grpcio client tests,
the multi-replica test (tests/deploy) and the store benchmark (tests/bench)."""

import struct
import zlib


def encode_rgb_png(rgb):
    """`rgb` (height x width x 3, uint8 numpy array) as PNG bytes: 8-bit RGB, filter 0."""
    height, width = rgb.shape[:2]
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(height))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
