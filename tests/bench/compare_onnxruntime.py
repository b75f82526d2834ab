#!/usr/bin/env python3
"""CPU speed of `mobilesam bench` against ONNX Runtime on the same model, image and threads.

The reference MobileSAM (the `mobile_sam` package) is loaded with the checkpoint and
exported to ONNX once (cached outside the repository): the image encoder on a
1x3x1024x1024 input, and the decoder as the official `SamOnnxModel` (prompt encoder, mask
decoder, upscaling to the original image size). Then, round after round, ONNX Runtime and
`target/release/mobilesam bench --json` are timed one after the other, so that load from
other processes hits both alike; the medians of the rounds and the per-round ratios are
printed. This is a measurement, not a test: it asserts nothing.

What is timed, on both sides:
  encoder: decoded RGB image -> embedding, preprocessing included (resize of the long
           side to 1024 with Pillow, normalize, pad; as `SamPredictor.set_image`).
  decoder: one foreground point -> full-resolution mask(s) thresholded at 0 and encoded
           as COCO RLE (pycocotools), postprocessing included.
By default the decoder returns one mask on both sides (`SamOnnxModel(return_single_mask=
True)`, our single-mask output); `--masks 4` exports the decoder that upscales all four
mask outputs (as in the issue's figures) and times ours with `--multimask` (three masks).

Needs: torch, the `mobile_sam` package, onnx, onnxruntime, numpy, pillow, pycocotools
(e.g. the reference venv: /work/pyref/bin/python tests/bench/compare_onnxruntime.py).
Build our binary first: cargo build --release -p mobilesam.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=Path("/work/refdata/mobile_sam_seed0.pt"),
                   help="MobileSAM weights in the official torch.save format (default: %(default)s)")
    p.add_argument("--image", type=Path, default=None,
                   help="image to time on (default: tests/fixtures/images/rocket.png upscaled "
                        "to 1280x720, written to the cache directory)")
    p.add_argument("--binary", type=Path, default=REPO / "target/release/mobilesam")
    p.add_argument("--threads", type=int, default=2, help="threads on both sides (default 2)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--runs", type=int, default=3,
                   help="timed runs per part per round; each round reports their median (default 3)")
    p.add_argument("--masks", type=int, choices=(1, 4), default=1,
                   help="masks the ONNX decoder upscales: 1 (ours: single mask) or 4 (ours: "
                        "--multimask, three masks)")
    p.add_argument("--cache-dir", type=Path,
                   default=Path(os.environ.get("MOBILESAM_BENCH_CACHE",
                                               Path.home() / ".cache/mobilesam-bench")),
                   help="where the exported .onnx files and the test image go (default: %(default)s)")
    p.add_argument("--skip-ours", action="store_true", help="time ONNX Runtime only")
    p.add_argument("--skip-ort", action="store_true", help="time our binary only")
    return p.parse_args()


def file_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]


def bench_image(args: argparse.Namespace) -> Path:
    if args.image is not None:
        return args.image
    from PIL import Image

    out = args.cache_dir / "rocket_1280x720.png"
    if not out.exists():
        src = Image.open(REPO / "tests/fixtures/images/rocket.png").convert("RGB")
        src.resize((1280, 720), Image.BICUBIC).save(out)
    return out


def load_reference(checkpoint: Path):
    import torch
    from mobile_sam import sam_model_registry

    sam = sam_model_registry["vit_t"]()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    sam.load_state_dict(state)
    # TinyViT caches its attention biases in eval(): call it after loading the weights.
    sam.eval()
    return sam


def export_models(args: argparse.Namespace) -> tuple[Path, Path]:
    """Exports (encoder, decoder) ONNX files unless already cached for this checkpoint."""
    key = file_key(args.checkpoint)
    encoder = args.cache_dir / f"encoder_{key}.onnx"
    decoder = args.cache_dir / f"decoder_{key}_{args.masks}mask.onnx"
    if encoder.exists() and decoder.exists():
        return encoder, decoder
    import torch
    from mobile_sam.utils.onnx import SamOnnxModel

    sam = load_reference(args.checkpoint)
    if not encoder.exists():
        print(f"exporting the encoder to {encoder}", file=sys.stderr)
        with torch.no_grad():
            torch.onnx.export(sam.image_encoder, (torch.randn(1, 3, 1024, 1024),), str(encoder),
                              input_names=["image"], output_names=["image_embeddings"],
                              opset_version=17, dynamo=False, do_constant_folding=True)
    if not decoder.exists():
        print(f"exporting the decoder to {decoder}", file=sys.stderr)
        onnx_model = SamOnnxModel(sam, return_single_mask=args.masks == 1).eval()
        dummy = {
            "image_embeddings": torch.randn(1, 256, 64, 64),
            "point_coords": torch.randint(0, 1024, (1, 5, 2), dtype=torch.float),
            "point_labels": torch.randint(0, 4, (1, 5), dtype=torch.float),
            "mask_input": torch.randn(1, 1, 256, 256),
            "has_mask_input": torch.tensor([1], dtype=torch.float),
            "orig_im_size": torch.tensor([1500, 2250], dtype=torch.float),
        }
        with torch.no_grad():
            torch.onnx.export(onnx_model, tuple(dummy.values()), str(decoder),
                              input_names=list(dummy), output_names=["masks", "iou_predictions",
                                                                     "low_res_masks"],
                              dynamic_axes={"point_coords": {1: "num_points"},
                                            "point_labels": {1: "num_points"}},
                              opset_version=17, dynamo=False, do_constant_folding=True)
    return encoder, decoder


class OrtPipeline:
    """The reference predictor's pre- and postprocessing around two ONNX Runtime sessions."""

    MEAN = (123.675, 116.28, 103.53)
    STD = (58.395, 57.12, 57.375)

    def __init__(self, encoder: Path, decoder: Path, threads: int):
        import numpy as np
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(encoder), opts, providers=providers)
        self.decoder = ort.InferenceSession(str(decoder), opts, providers=providers)
        self.mean = np.array(self.MEAN, dtype=np.float32)
        self.std = np.array(self.STD, dtype=np.float32)

    @staticmethod
    def preprocess_shape(h: int, w: int, long_side: int = 1024) -> tuple[int, int]:
        scale = long_side * 1.0 / max(h, w)
        return int(h * scale + 0.5), int(w * scale + 0.5)

    def embed(self, rgb):
        """RGB uint8 HxWx3 -> (1, 256, 64, 64) embedding; as SamPredictor.set_image."""
        import numpy as np
        from PIL import Image

        h, w = rgb.shape[:2]
        nh, nw = self.preprocess_shape(h, w)
        resized = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.BILINEAR))
        x = np.zeros((1, 3, 1024, 1024), dtype=np.float32)
        x[0, :, :nh, :nw] = ((resized.astype(np.float32) - self.mean) / self.std).transpose(2, 0, 1)
        return self.encoder.run(None, {"image": x})[0]

    def decode(self, embedding, point: tuple[float, float], size: tuple[int, int]):
        """One foreground point -> list of COCO RLEs of the thresholded masks."""
        import numpy as np
        from pycocotools import mask as mask_utils

        h, w = size
        nh, nw = self.preprocess_shape(h, w)
        # The point, then the padding point SAM's ONNX example adds when there is no box.
        coords = np.array([[[point[0] * nw / w, point[1] * nh / h], [0.0, 0.0]]], dtype=np.float32)
        labels = np.array([[1, -1]], dtype=np.float32)
        masks, _, _ = self.decoder.run(None, {
            "image_embeddings": embedding,
            "point_coords": coords,
            "point_labels": labels,
            "mask_input": np.zeros((1, 1, 256, 256), dtype=np.float32),
            "has_mask_input": np.zeros(1, dtype=np.float32),
            "orig_im_size": np.array([h, w], dtype=np.float32),
        })
        binary = np.asfortranarray((masks[0] > 0.0).transpose(1, 2, 0).astype(np.uint8))
        return mask_utils.encode(binary)


def median_ms(f, runs: int) -> float:
    f()  # warm-up, as `mobilesam bench --warmup 1`
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        f()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def time_ort(pipe: OrtPipeline, rgb, runs: int) -> tuple[float, float]:
    h, w = rgb.shape[:2]
    embedding = pipe.embed(rgb)
    enc = median_ms(lambda: pipe.embed(rgb), runs)
    dec = median_ms(lambda: pipe.decode(embedding, (w / 2, h / 2), (h, w)), runs)
    return enc, dec


def time_ours(args: argparse.Namespace, image: Path) -> tuple[float, float, int]:
    cmd = [str(args.binary), "bench", "--checkpoint", str(args.checkpoint), "--image", str(image),
           "--runs", str(args.runs), "--warmup", "1", "--json"]
    if args.masks == 4:
        cmd.append("--multimask")
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    return summary["encoder_ms"], summary["decoder_ms"], summary["threads"]


def main() -> int:
    args = parse_args()
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    image = bench_image(args)
    if not args.skip_ours and not args.binary.exists():
        print(f"{args.binary} is missing: cargo build --release -p mobilesam", file=sys.stderr)
        return 2
    rgb = pipe = None
    if not args.skip_ort:
        import numpy as np
        from PIL import Image

        encoder, decoder = export_models(args)
        pipe = OrtPipeline(encoder, decoder, args.threads)
        rgb = np.asarray(Image.open(image).convert("RGB"))
    import onnxruntime

    print(f"image {image}, {args.threads} threads, {args.rounds} rounds x {args.runs} runs, "
          f"decoder {args.masks} mask(s) on the ONNX side, onnxruntime {onnxruntime.__version__}")
    rows = []
    for r in range(args.rounds):
        ort_enc = ort_dec = ours_enc = ours_dec = float("nan")
        threads = None
        if pipe is not None:
            ort_enc, ort_dec = time_ort(pipe, rgb, args.runs)
        if not args.skip_ours:
            ours_enc, ours_dec, threads = time_ours(args, image)
        rows.append((ort_enc, ort_dec, ours_enc, ours_dec))
        print(f"round {r + 1}: ORT encoder {ort_enc:8.1f} ms  decoder {ort_dec:6.1f} ms | ours "
              f"encoder {ours_enc:8.1f} ms  decoder {ours_dec:6.1f} ms (threads {threads}) | ratio "
              f"encoder {ours_enc / ort_enc:.3f}  decoder {ours_dec / ort_dec:.3f}", flush=True)

    def med(i: int) -> float:
        return statistics.median(row[i] for row in rows)

    enc_ratio = statistics.median(row[2] / row[0] for row in rows)
    dec_ratio = statistics.median(row[3] / row[1] for row in rows)
    print(f"median ORT:  encoder {med(0):.1f} ms, decoder {med(1):.1f} ms")
    print(f"median ours: encoder {med(2):.1f} ms, decoder {med(3):.1f} ms")
    print(f"median ratio ours/ORT (per round): encoder {enc_ratio:.3f} (target <= 0.75), "
          f"decoder {dec_ratio:.3f} (target <= 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
