#!/usr/bin/env python3
"""GPU speed and parity of `mobilesam bench --device cuda:0` against the PyTorch reference.

Run on a machine with an NVIDIA GPU, a `mobilesam` binary built with `--features cuda`, and
torch + the `mobile_sam` package (PyPI `mobilesam-mirror`). The reference is loaded with the
same checkpoint (`.pt` as published, or `.safetensors` with the same names), put on the GPU
and timed as `SamPredictor` runs it; our binary is timed with `bench --json`, round after
round, so that both see the same machine state. Also checks that our GPU path gives the
embedding of our CPU path (relative L2) and prints it. A measurement, not a test.

What is timed:
  encoder: decoded RGB image -> embedding (PyTorch: `SamPredictor.set_image`, which also
           resizes and normalizes; ours: the same, preprocessing included), synchronized.
  decoder: one foreground point -> full-resolution mask (PyTorch: `SamPredictor.predict`,
           returning a NumPy mask; ours: mask -> COCO RLE, which is a little more work).

Example:
  python3 tests/bench/compare_gpu.py --binary ./mobilesam --checkpoint seed.safetensors \
      --image tests/fixtures/images/rocket.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", type=Path, required=True, help="mobilesam built with --features cuda")
    p.add_argument("--checkpoint", type=Path, required=True, help=".pt or .safetensors weights")
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--runs", type=int, default=20, help="timed runs per part per round (default 20)")
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--skip-reference", action="store_true", help="time our binary only")
    return p.parse_args()


def load_state(checkpoint: Path) -> dict:
    import torch

    if checkpoint.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(checkpoint))
    return torch.load(checkpoint, map_location="cpu", weights_only=True)


def load_reference(checkpoint: Path, device: str):
    from mobile_sam import SamPredictor, sam_model_registry

    sam = sam_model_registry["vit_t"]()
    result = sam.load_state_dict(load_state(checkpoint), strict=False)
    if result.missing_keys:
        raise SystemExit(f"the checkpoint lacks {len(result.missing_keys)} tensors, e.g. "
                         f"{result.missing_keys[:3]}")
    # TinyViT caches its attention biases in eval(): call it after loading the weights.
    sam.to(device).eval()
    return SamPredictor(sam)


def median_ms(f, runs: int) -> float:
    import torch

    f()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def time_reference(predictor, rgb: np.ndarray, runs: int) -> tuple[float, float]:
    import torch

    with torch.inference_mode():
        encoder = median_ms(lambda: predictor.set_image(rgb), runs)
        h, w = rgb.shape[:2]
        point = np.array([[w / 2, h / 2]], dtype=np.float32)
        label = np.array([1])
        decoder = median_ms(
            lambda: predictor.predict(point_coords=point, point_labels=label, multimask_output=False),
            runs,
        )
    return encoder, decoder


def time_ours(args: argparse.Namespace, device: str) -> dict:
    cmd = [str(args.binary), "bench", "--checkpoint", str(args.checkpoint), "--image", str(args.image),
           "--runs", str(args.runs), "--warmup", "2", "--device", device, "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def embedding_parity(args: argparse.Namespace, out_dir: Path) -> float:
    paths = {}
    for device in ("cpu", args.device):
        path = out_dir / f"embedding_{device.replace(':', '')}.npy"
        subprocess.run([str(args.binary), "embed", "--checkpoint", str(args.checkpoint), "--image",
                        str(args.image), "--device", device, "--output", str(path)], check=True)
        paths[device] = np.load(path).astype(np.float64)
    cpu, gpu = paths["cpu"], paths[args.device]
    return float(np.linalg.norm(gpu - cpu) / np.linalg.norm(cpu))


def main() -> int:
    args = parse_args()
    from PIL import Image

    rgb = np.asarray(Image.open(args.image).convert("RGB"))
    out_dir = Path("/tmp/mobilesam-gpu-bench")
    out_dir.mkdir(exist_ok=True)
    rel = embedding_parity(args, out_dir)
    print(f"embedding, ours on {args.device} vs ours on cpu: relative L2 {rel:.3g}")
    predictor = None if args.skip_reference else load_reference(args.checkpoint, args.device)
    rows = []
    for round_ in range(args.rounds):
        ours = time_ours(args, args.device)
        ref = time_reference(predictor, rgb, args.runs) if predictor else (float("nan"),) * 2
        rows.append((ours["encoder_ms"], ours["decoder_ms"], *ref))
        print(f"round {round_ + 1}: ours encoder {ours['encoder_ms']:.2f} ms decoder "
              f"{ours['decoder_ms']:.2f} ms | PyTorch encoder {ref[0]:.2f} ms decoder {ref[1]:.2f} ms")
    med = [statistics.median(r[i] for r in rows) for i in range(4)]
    print(f"median: ours encoder {med[0]:.2f} ms, decoder {med[1]:.2f} ms; "
          f"PyTorch encoder {med[2]:.2f} ms, decoder {med[3]:.2f} ms; "
          f"ratio encoder {med[0] / med[2]:.2f}, decoder {med[1] / med[3]:.2f}")
    print(json.dumps({"ours_encoder_ms": med[0], "ours_decoder_ms": med[1],
                      "torch_encoder_ms": med[2], "torch_decoder_ms": med[3],
                      "embedding_rel_l2_vs_cpu": rel}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
