#!/usr/bin/env python3
"""CPU speed of the YOLO detector (`mobilesam bench --det-model`) against Ultralytics'
PyTorch CPU predict and ONNX Runtime on Ultralytics' ONNX export, same checkpoint, image
and threads, in one run.

The checkpoint is a full-width seeded YOLOv8n or YOLO11n (built from Ultralytics' bundled
yaml, no download, saved by `model.save`; cached outside the repository) unless `--model`
names one. Round after round, the three are timed one after the other so that load from
other processes hits all alike; each round reports the median of `--runs` runs, and the
medians (and ranges) of the rounds and the per-round ratios are printed. This is a
measurement, not a test: it asserts nothing.

What is timed, on every side: one decoded image (a BGR/RGB array in memory) -> boxes in
the original image's pixels, at imgsz 640, conf 0.25, iou 0.7, max_det 300:
  ours:        `mobilesam bench --det-model M --image I --json` (letterbox, network, DFL
               decode, NMS, scaling; median of its runs).
  ultralytics: `YOLO(M).predict(img_array, imgsz=640)` on the CPU (its own pre/post-
               processing, torch with `torch.set_num_threads(threads)`).
  onnxruntime: Ultralytics' ONNX export of M (dynamic shapes, so the same rectangular
               letterbox), run by ONNX Runtime through `YOLO(M.onnx).predict(...)`, which
               does the same pre/post-processing in Python.

Needs the packages of tests/fixtures/yolo/requirements-yolo.txt, e.g.
    YOLO_OFFLINE=1 target/yolo-venv/bin/python tests/bench/compare_yolo.py
Build our binary first: cargo build --release -p mobilesam.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[2]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None,
                   help="Ultralytics detection .pt (default: a seeded full-width --arch model)")
    p.add_argument("--arch", default="yolov8n", choices=("yolov8n", "yolo11n", "yolov8s", "yolo11s"))
    p.add_argument("--image", type=Path, default=REPO / "tests/fixtures/images/coffee.png")
    p.add_argument("--binary", type=Path, default=REPO / "target/release/mobilesam")
    p.add_argument("--threads", type=int, default=2, help="threads on every side (default 2)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--runs", type=int, default=5, help="timed runs per side per round (default 5)")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--cache-dir", type=Path,
                   default=Path(os.environ.get("MOBILESAM_BENCH_CACHE",
                                               Path.home() / ".cache/mobilesam-bench")))
    return p.parse_args()


def seeded_checkpoint(args: argparse.Namespace) -> Path:
    out = args.cache_dir / f"{args.arch}_seeded.pt"
    if out.exists():
        return out
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    yolo = YOLO(f"{args.arch}.yaml", task="detect")
    for m in yolo.model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var = 0.5 + torch.rand(m.num_features)
            m.running_mean = torch.randn(m.num_features) * 0.1
    yolo.save(out)
    return out


def time_ours(args, model: Path) -> float:
    cmd = [str(args.binary), "bench", "--det-model", str(model), "--image", str(args.image),
           "--imgsz", str(args.imgsz), "--runs", str(args.runs), "--warmup", "1", "--json"]
    env = {**os.environ, "RAYON_NUM_THREADS": str(args.threads), "MOBILESAM_THREADS": str(args.threads)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])["detector_ms"]


def time_predict(yolo, img, args) -> float:
    yolo.predict(img, imgsz=args.imgsz, verbose=False, device="cpu")  # warm-up
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        yolo.predict(img, imgsz=args.imgsz, verbose=False, device="cpu")
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def summary(name: str, values: list[float]) -> str:
    return f"{name:12s} median {statistics.median(values):7.1f} ms  (rounds {min(values):.1f} .. {max(values):.1f})"


def main() -> None:
    args = parse_args()
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    import cv2
    import torch
    from ultralytics import YOLO

    torch.set_num_threads(args.threads)
    model = args.model or seeded_checkpoint(args)
    onnx_path = model.with_suffix(".onnx")
    if not onnx_path.exists() or onnx_path.stat().st_mtime < model.stat().st_mtime:
        YOLO(str(model)).export(format="onnx", dynamic=True, imgsz=args.imgsz, simplify=True)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    torch_yolo = YOLO(str(model), task="detect")
    ort_yolo = YOLO(str(onnx_path), task="detect")
    img = cv2.imread(str(args.image))
    # Ultralytics' ONNX backend opens its own session; give it our thread count.
    ort_yolo.predict(img, imgsz=args.imgsz, verbose=False, device="cpu")
    backend = ort_yolo.predictor.model
    session = getattr(backend, "session", None)
    if session is not None:
        backend.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])

    rows = {"ours": [], "ultralytics": [], "onnxruntime": []}
    for r in range(args.rounds):
        rows["ours"].append(time_ours(args, model))
        rows["ultralytics"].append(time_predict(torch_yolo, img, args))
        rows["onnxruntime"].append(time_predict(ort_yolo, img, args))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} ms" for k, v in rows.items()), flush=True)
    h, w = img.shape[:2]
    print(f"\n{model.name} on {args.image.name} ({w}x{h}) at imgsz {args.imgsz}, {args.threads} threads, "
          f"{args.rounds} rounds x {args.runs} runs")
    for k, v in rows.items():
        print(summary(k, v))
    for other in ("ultralytics", "onnxruntime"):
        ratios = [o / u for u, o in zip(rows["ours"], rows[other])]
        print(f"{other} / ours: median {statistics.median(ratios):.2f}x  (rounds {min(ratios):.2f} .. {max(ratios):.2f})")


if __name__ == "__main__":
    main()
