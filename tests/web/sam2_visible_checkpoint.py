#!/usr/bin/env python3
"""Writes the reduced SAM 2.1 test checkpoint with its object-score head rescaled, so that
the memory tracker sees objects on ordinary frames (the seeded head calls every frame empty).

The edit is the one `tests/fixtures/sam2/video/make_sam2_video_fixtures.py` and
`crates/mobilesam/tests/server/server_memory_tracking.rs` make (see the video fixture's
README): `sam_mask_decoder.pred_obj_score_head.layers.2.weight x 10`, its bias
`(bias + 0.9) x 10`. Python's standard library only (no torch): the checkpoint is a zip of a
pickle and raw little-endian storages; the two storages are rewritten in a copy of the zip,
every other entry unchanged (the server's reader needs no storage alignment).

Usage: sam2_visible_checkpoint.py INPUT.pt OUTPUT.pt
"""

import io
import pickle
import struct
import sys
import zipfile

HEAD = "sam_mask_decoder.pred_obj_score_head.layers.2"
SCALE, SHIFT = 10.0, 0.9


class _Tensor:
    """What the pickle says of a tensor: its storage key, offset and element count."""

    def __init__(self, storage, offset, size, stride, *_rest):
        _, dtype, self.key, _, _ = storage
        if dtype != "FloatStorage":
            raise SystemExit(f"expected float32 storage, found {dtype}")
        self.offset = offset
        self.numel = 1
        for dim in size:
            self.numel *= dim


class _Reader(pickle.Unpickler):
    """Unpickles a torch state dict into `_Tensor`s without torch."""

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _Tensor
        if module == "torch":
            return name
        if (module, name) == ("collections", "OrderedDict"):
            import collections

            return collections.OrderedDict
        raise pickle.UnpicklingError(f"unexpected class {module}.{name} in the checkpoint")

    def persistent_load(self, pid):
        return pid


def rescaled(values, name):
    """The head's values after the fixture's edit."""
    if name.endswith(".weight"):
        return [v * SCALE for v in values]
    return [(v + SHIFT) * SCALE for v in values]


def main(source, target):
    with zipfile.ZipFile(source) as archive:
        prefix = archive.namelist()[0].split("/")[0]
        state = _Reader(io.BytesIO(archive.read(f"{prefix}/data.pkl"))).load()
        state = state.get("model", state)
        edits = {}
        for name in (f"{HEAD}.weight", f"{HEAD}.bias"):
            tensor = state.get(name)
            if tensor is None:
                raise SystemExit(f"{source} has no {name}: not the reduced SAM 2.1 checkpoint?")
            edits[f"{prefix}/data/{tensor.key}"] = (tensor, name)
        with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out:
            for info in archive.infolist():
                data = archive.read(info)
                if info.filename in edits:
                    tensor, name = edits[info.filename]
                    start, end = 4 * tensor.offset, 4 * (tensor.offset + tensor.numel)
                    values = struct.unpack(f"<{tensor.numel}f", data[start:end])
                    data = data[:start] + struct.pack(f"<{tensor.numel}f", *rescaled(values, name)) + data[end:]
                out.writestr(info, data)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
