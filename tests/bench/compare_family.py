#!/usr/bin/env python3
"""CPU speed of `mobilesam bench` against the PyTorch reference (and ONNX Runtime) for the
full-size SAM ViT-B and SAM 2.1 Hiera-T, on the same checkpoint, image and threads.

The official architectures are built by their own packages with seeded weights (real weights
cannot be downloaded here): SAM ViT-B by segment-anything 1.0 (`sam_model_registry["vit_b"]`,
timed through `SamPredictor`) and SAM 2.1 Hiera-T by sam2 1.1.0 (`build_sam2` with
configs/sam2.1/sam2.1_hiera_t.yaml, timed through `SAM2ImagePredictor`). Round after round,
for each model, PyTorch, ONNX Runtime and `mobilesam bench --json` are timed one after the
other, so that load from other processes hits all of them alike; the medians and ranges of
the rounds and the per-round ratios are printed, then a markdown table for
docs/performance.md. This is a measurement, not a test: it asserts nothing.

What is timed, on every side (the same work as compare_onnxruntime.py):
  encoder: decoded RGB image -> embedding, preprocessing included. PyTorch:
           `predictor.set_image(rgb)` (SAM ViT: long side resized to 1024, normalized,
           padded; SAM 2.1: resized to 1024x1024, normalized, backbone features, the
           `no_mem_embed` added). ONNX Runtime: the same preprocessing in NumPy/Pillow, then
           the exported encoder.
  decoder: one foreground point (the image centre) -> one full-resolution mask encoded as
           COCO RLE (pycocotools), postprocessing included. PyTorch:
           `predictor.predict(point, label, multimask_output=False)` + RLE; ONNX Runtime:
           the official `SamOnnxModel` export (SAM ViT only: sam2 ships no decoder export).
  ours:    `mobilesam bench --checkpoint CKPT --image IMG --runs N --warmup 1 --json`, with
           RAYON_NUM_THREADS=T (PyTorch: torch.set_num_threads(T); ONNX Runtime:
           intra_op_num_threads=T).

ONNX exports (cached in --cache-dir): SAM ViT-B's image encoder (torch.onnx.export on
1x3x1024x1024) and decoder (`segment_anything.utils.onnx.SamOnnxModel`, one mask); SAM 2.1's
image encoder (Hiera trunk + FPN neck + the decoder's conv_s0/conv_s1 on the high-resolution
features + no_mem_embed: what `set_image` computes). An export that fails is reported and that
column is left out; the others go on.

Achieved FLOP/s of the encoder: its FLOPs are counted once with
torch.utils.flop_counter.FlopCounterMode on the PyTorch encoder (one forward; matrix products,
convolutions and attention, 2 FLOPs per multiply-add; elementwise work is not counted), divided
by each side's encoder time, and set against the FP32 FMA peak of the cores used: threads x
GHz x FP32 FLOPs/cycle/core, read from /proc/cpuinfo and lscpu (the assumption is printed;
--ghz and --flops-per-cycle override it).

Seeded checkpoints: those of tests/fixtures/sam/make_fullsize.py in --refdata (default
/work/refdata-sam): sam_vit_b_seed0.pth (torch.save(state_dict)) and
sam2.1_hiera_tiny_seed0.pt (torch.save({"model": state_dict})). A missing one is written here
with make_fullsize.py's own code (the same bytes), without its manifests and reference runs.

Needs the SAM reference environment (tests/fixtures/sam/requirements-sam.txt) plus onnx and
onnxruntime, e.g.:
    cargo build --release -p mobilesam
    /work/pyref-sam/bin/python tests/bench/compare_family.py --rounds 5 --runs 3 \
        --json-out /tmp/family.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests/fixtures/sam"))
os.environ.setdefault("YOLO_OFFLINE", "1")

from compare_onnxruntime import OrtPipeline, bench_image, file_key, median_ms  # noqa: E402

NAN = float("nan")
MODELS = {
    "vit_b": dict(title="SAM ViT-B", package="segment-anything", file="sam_vit_b_seed0.pth"),
    "hiera_t": dict(title="SAM 2.1 Hiera-T", package="sam2", file="sam2.1_hiera_tiny_seed0.pt",
                    config="configs/sam2.1/sam2.1_hiera_t.yaml"),
}
SIDES = ("torch", "ort", "ours")
SIDE_NAMES = {"torch": "PyTorch", "ort": "ORT", "ours": "ours"}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="vit_b,hiera_t",
                   help=f"comma-separated, of {', '.join(MODELS)} (default: %(default)s)")
    p.add_argument("--mobilesam", type=Path, default=REPO / "target/release/mobilesam",
                   help="our binary (default: %(default)s)")
    p.add_argument("--refdata", type=Path,
                   default=Path(os.environ.get("MOBILESAM_REFDATA_SAM", "/work/refdata-sam")),
                   help="where the seeded full-size checkpoints are (written if missing; "
                        "default: %(default)s)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="MODEL=FILE",
                   help="use FILE for MODEL instead of the seeded one (repeatable)")
    p.add_argument("--image", type=Path, default=None,
                   help="image to time on (default: tests/fixtures/images/rocket.png upscaled "
                        "to 1280x720, written to the cache directory)")
    p.add_argument("--threads", type=int, default=2, help="threads on every side (default 2)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--runs", type=int, default=3,
                   help="timed runs per part per round, after one warm-up; each round reports "
                        "their median (default 3)")
    p.add_argument("--cache-dir", type=Path,
                   default=Path(os.environ.get("MOBILESAM_BENCH_CACHE",
                                               Path.home() / ".cache/mobilesam-bench")),
                   help="where the exported .onnx files and the test image go (default: %(default)s)")
    p.add_argument("--skip-ours", action="store_true", help="leave our binary out")
    p.add_argument("--skip-torch", action="store_true", help="leave PyTorch out (FLOPs are still counted)")
    p.add_argument("--skip-ort", action="store_true", help="leave ONNX Runtime out (no export)")
    p.add_argument("--ghz", type=float, default=None, help="clock for the peak (default: lscpu's "
                   "max MHz, else /proc/cpuinfo's cpu MHz)")
    p.add_argument("--flops-per-cycle", type=int, default=None,
                   help="FP32 FLOPs per cycle per core for the peak (default: guessed from the CPU)")
    p.add_argument("--json-out", type=Path, default=None, help="write every figure here as JSON")
    args = p.parse_args()
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in args.models:
        if m not in MODELS:
            p.error(f"unknown model {m!r}; known: {', '.join(MODELS)}")
    overrides = {}
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or name not in MODELS:
            p.error(f"--checkpoint wants MODEL=FILE with MODEL of {', '.join(MODELS)}, got {item!r}")
        overrides[name] = Path(path)
    args.checkpoints = {m: overrides.get(m, args.refdata / MODELS[m]["file"]) for m in args.models}
    return args


# --------------------------------------------------------------------------------------------
# The machine and its FP32 FMA peak
# --------------------------------------------------------------------------------------------

def cpu_facts() -> dict:
    info = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
        first = text.split("\n\n")[0]
        for line in first.splitlines():
            k, _, v = line.partition(":")
            info[k.strip()] = v.strip()
        info["logical_cpus"] = text.count("processor\t:")
    except OSError:
        pass
    lscpu = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            k, _, v = line.partition(":")
            lscpu[k.strip()] = v.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    flags = set(info.get("flags", lscpu.get("Flags", "")).split())
    cores = None
    try:
        cores = int(lscpu["Core(s) per socket"]) * int(lscpu.get("Socket(s)", "1"))
    except (KeyError, ValueError):
        cores = info.get("logical_cpus") or os.cpu_count()
    mhz_max = lscpu.get("CPU max MHz")
    mhz = float(mhz_max) if mhz_max else float(info.get("cpu MHz", "nan"))
    return dict(model_name=info.get("model name", lscpu.get("Model name", platform.processor())),
                vendor=info.get("vendor_id", lscpu.get("Vendor ID", "")),
                family=int(info.get("cpu family", lscpu.get("CPU family", "0")) or 0),
                model=int(info.get("model", lscpu.get("Model", "0")) or 0),
                cores=cores, logical_cpus=info.get("logical_cpus") or os.cpu_count(),
                mhz=mhz, mhz_source="lscpu CPU max MHz" if mhz_max else "/proc/cpuinfo cpu MHz",
                hypervisor=lscpu.get("Hypervisor vendor"),
                avx512f="avx512f" in flags, avx2="avx2" in flags, fma="fma" in flags)


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def fma_flops_per_cycle(cpu: dict) -> tuple[int, str]:
    """FP32 FLOPs per cycle per core from two FMA pipes of the widest vector unit, and why."""
    vendor, fam = cpu["vendor"], cpu["family"]
    if vendor == "AuthenticAMD":
        if fam >= 0x1A and cpu["avx512f"]:
            return 64, "Zen 5 (family 0x1A): 2 x 512-bit FMA pipes = 2 x 16 lanes x 2 FLOPs"
        if cpu["avx512f"]:
            return 32, ("Zen 4 (AVX-512 on 2 x 256-bit FMA pipes) = 2 x 8 lanes x 2 FLOPs")
        if cpu["avx2"] and cpu["fma"]:
            return 32, "Zen 2/3: 2 x 256-bit FMA pipes = 2 x 8 lanes x 2 FLOPs"
    if vendor == "GenuineIntel":
        if cpu["avx512f"]:
            return 64, ("Intel server core with AVX-512 (Xeon Scalable Gold/Platinum: 2 x 512-bit FMA "
                        "units, ports 0+1 fused and 5) = 2 x 16 lanes x 2 FLOPs; parts with one "
                        "512-bit FMA unit would be 32")
        if cpu["avx2"] and cpu["fma"]:
            return 32, "Intel AVX2 core: 2 x 256-bit FMA units = 2 x 8 lanes x 2 FLOPs"
    if cpu["avx2"] and cpu["fma"]:
        return 32, "AVX2+FMA: assumed 2 x 256-bit FMA pipes = 2 x 8 lanes x 2 FLOPs"
    return 8, "no FMA: assumed one 128-bit add and one 128-bit multiply per cycle"


def peak(args: argparse.Namespace) -> dict:
    cpu = cpu_facts()
    fpc, why = fma_flops_per_cycle(cpu)
    if args.flops_per_cycle is not None:
        fpc, why = args.flops_per_cycle, "given by --flops-per-cycle"
    ghz = args.ghz if args.ghz is not None else cpu["mhz"] / 1000.0
    ghz_source = "--ghz" if args.ghz is not None else cpu["mhz_source"]
    used = min(args.threads, cpu["cores"] or args.threads)
    return dict(cpu=cpu, flops_per_cycle=fpc, flops_per_cycle_assumption=why, ghz=ghz,
                ghz_source=ghz_source, cores_used=used,
                peak_gflops=used * ghz * fpc, machine_peak_gflops=(cpu["cores"] or used) * ghz * fpc)


# --------------------------------------------------------------------------------------------
# Checkpoints and the reference models
# --------------------------------------------------------------------------------------------

def ensure_checkpoint(name: str, path: Path) -> Path:
    """Writes the seeded full-size checkpoint of make_fullsize.py if it is missing."""
    if path.exists():
        return path
    import torch
    import make_fullsize as MF
    import sam_common as C

    print(f"{path} is missing: writing the seeded {MODELS[name]['title']} of make_fullsize.py",
          file=sys.stderr, flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    if name == "vit_b":
        m = MF.meta_sam_vit("vit_b", "cpu")
    else:
        m = MF.meta_sam2(MF.SAM2["sam2.1_hiera_tiny"][0], "cpu")
    sd, _ = C.seeded_state_dict(m)
    m.load_state_dict(sd, strict=True)
    del sd
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(m.state_dict() if name == "vit_b" else {"model": m.state_dict()}, tmp)
    tmp.rename(path)
    return path


def load_reference(name: str, checkpoint: Path):
    """(model, predictor, encoder module for FLOP counting, its input -> output function)."""
    import torch

    if name == "vit_b":
        from segment_anything import SamPredictor, sam_model_registry

        sam = sam_model_registry["vit_b"]()
        sam.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
        sam.eval().requires_grad_(False)  # FlopCounterMode's module hooks trip on leaf outputs
        return sam, SamPredictor(sam), lambda x: sam.image_encoder(x)
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    model = build_sam2(MODELS[name]["config"], ckpt_path=str(checkpoint), device="cpu", mode="eval")
    model.requires_grad_(False)
    return model, SAM2ImagePredictor(model), lambda x: model.forward_image(x)


def count_flops(fn, size: int = 1024) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, 3, size, size)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn(x)
    return float(counter.get_total_flops())


def count_decoder_flops(predictor, rgb) -> float:
    import numpy as np
    from torch.utils.flop_counter import FlopCounterMode

    h, w = rgb.shape[:2]
    import torch

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        predictor.predict(point_coords=np.array([[w / 2, h / 2]]), point_labels=np.array([1]),
                          multimask_output=False)
    return float(counter.get_total_flops())


def rle(mask):
    import numpy as np
    from pycocotools import mask as mask_utils

    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def time_torch(predictor, rgb, runs: int) -> tuple[float, float]:
    import numpy as np

    h, w = rgb.shape[:2]
    point, label = np.array([[w / 2, h / 2]]), np.array([1])

    def decode():
        masks, _, _ = predictor.predict(point_coords=point, point_labels=label, multimask_output=False)
        return rle(masks[0] > 0.5)  # SamPredictor: bool; SAM2ImagePredictor: 0.0/1.0 floats

    enc = median_ms(lambda: predictor.set_image(rgb), runs)
    dec = median_ms(decode, runs)
    return enc, dec


# --------------------------------------------------------------------------------------------
# ONNX exports and ONNX Runtime
# --------------------------------------------------------------------------------------------

def onnx_export(module, inputs: tuple, path: Path, **kw) -> str:
    """torch.onnx.export with the TorchScript exporter, else the dynamo one; returns which."""
    import torch

    errors = []
    for dynamo in (False, True):
        try:
            with torch.no_grad():
                torch.onnx.export(module, inputs, str(path), opset_version=17, dynamo=dynamo,
                                  do_constant_folding=True, **kw)
            return "dynamo" if dynamo else "torchscript"
        except Exception as e:  # noqa: BLE001 - any failure is reported, not fatal
            errors.append(f"{'dynamo' if dynamo else 'torchscript'} exporter: "
                          f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
            for leftover in path.parent.glob(path.name + "*"):
                leftover.unlink()
    raise RuntimeError("; ".join(errors))


class Sam2EncoderForExport:
    """What SAM2ImagePredictor.set_image computes after its transforms, as one module."""

    @staticmethod
    def make(model):
        import torch

        class Wrapper(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, x):
                backbone_out = self.model.forward_image(x)
                _, feats, _, sizes = self.model._prepare_backbone_features(backbone_out)
                if self.model.directly_add_no_mem_embed:
                    feats[-1] = feats[-1] + self.model.no_mem_embed
                out = [f.permute(1, 2, 0).reshape(1, -1, *s) for f, s in zip(feats, sizes)]
                return out[-1], out[0], out[1]  # image_embed, high_res_feats 0 (256^2), 1 (128^2)

        return Wrapper().eval()


def export_parity(module, path: Path) -> str:
    """Relative L2 of the exported encoder's first output against PyTorch's on one input."""
    import numpy as np
    import torch

    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = module(x)
    ref = (ref[0] if isinstance(ref, (tuple, list)) else ref).numpy().astype(np.float64)
    got = ort_session(path, 2).run(None, {"image": x.numpy()})[0].astype(np.float64)
    return f"relative L2 against PyTorch on one input: {np.linalg.norm(got - ref) / np.linalg.norm(ref):.2e}"


def export_vit(model, checkpoint: Path, cache: Path) -> dict:
    """ONNX files of SAM ViT-B: {part: path} or {part: error message}."""
    import torch

    key = file_key(checkpoint)
    paths = {"encoder": cache / f"sam_vit_b_encoder_{key}.onnx",
             "decoder": cache / f"sam_vit_b_decoder_{key}_1mask.onnx"}
    result = {}
    if paths["encoder"].exists():
        result["encoder"] = paths["encoder"]
    else:
        print(f"exporting the SAM ViT-B encoder to {paths['encoder']}", file=sys.stderr, flush=True)
        try:
            how = onnx_export(model.image_encoder, (torch.randn(1, 3, 1024, 1024),), paths["encoder"],
                              input_names=["image"], output_names=["image_embeddings"])
            result["encoder_export"] = (f"{how} exporter; "
                                        + export_parity(model.image_encoder, paths["encoder"]))
            print(f"  done: {result['encoder_export']}", file=sys.stderr, flush=True)
            result["encoder"] = paths["encoder"]
        except Exception as e:  # noqa: BLE001
            result["encoder"] = f"export failed: {e}"
    if paths["decoder"].exists():
        result["decoder"] = paths["decoder"]
    else:
        print(f"exporting the SAM ViT-B decoder (SamOnnxModel) to {paths['decoder']}",
              file=sys.stderr, flush=True)
        try:
            from segment_anything.utils.onnx import SamOnnxModel

            onnx_model = SamOnnxModel(model, return_single_mask=True).eval()
            dummy = {
                "image_embeddings": torch.randn(1, 256, 64, 64),
                "point_coords": torch.randint(0, 1024, (1, 5, 2), dtype=torch.float),
                "point_labels": torch.randint(0, 4, (1, 5), dtype=torch.float),
                "mask_input": torch.randn(1, 1, 256, 256),
                "has_mask_input": torch.tensor([1], dtype=torch.float),
                "orig_im_size": torch.tensor([1500, 2250], dtype=torch.float),
            }
            how = onnx_export(onnx_model, tuple(dummy.values()), paths["decoder"],
                              input_names=list(dummy),
                              output_names=["masks", "iou_predictions", "low_res_masks"],
                              dynamic_axes={"point_coords": {1: "num_points"},
                                            "point_labels": {1: "num_points"}})
            result["decoder_export"] = f"{how} exporter"
            print(f"  done: {result['decoder_export']}", file=sys.stderr, flush=True)
            result["decoder"] = paths["decoder"]
        except Exception as e:  # noqa: BLE001
            result["decoder"] = f"export failed: {e}"
    return result


def export_sam2(model, checkpoint: Path, cache: Path) -> dict:
    import torch

    path = cache / f"sam2.1_hiera_tiny_encoder_{file_key(checkpoint)}.onnx"
    result = {"decoder": "not exported: sam2 1.1.0 ships no ONNX export of its decoder"}
    if path.exists():
        result["encoder"] = path
        return result
    print(f"exporting the SAM 2.1 Hiera-T image encoder (trunk + neck) to {path}",
          file=sys.stderr, flush=True)
    try:
        wrapper = Sam2EncoderForExport.make(model)
        how = onnx_export(wrapper, (torch.randn(1, 3, 1024, 1024),), path, input_names=["image"],
                          output_names=["image_embed", "high_res_feats_0", "high_res_feats_1"])
        result["encoder_export"] = f"{how} exporter; " + export_parity(wrapper, path)
        print(f"  done: {result['encoder_export']}", file=sys.stderr, flush=True)
        result["encoder"] = path
    except Exception as e:  # noqa: BLE001
        result["encoder"] = f"export failed: {e}"
    return result


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only (the Hiera export's shape-merge warnings are benign)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class VitOrt(OrtPipeline):
    """compare_onnxruntime's pipeline (SamPredictor's pre- and postprocessing) with either
    session possibly missing."""

    def __init__(self, encoder, decoder, threads: int):  # noqa: D107 - sessions may be None
        import numpy as np

        self.encoder = ort_session(encoder, threads) if isinstance(encoder, Path) else None
        self.decoder = ort_session(decoder, threads) if isinstance(decoder, Path) else None
        self.mean = np.array(self.MEAN, dtype=np.float32)
        self.std = np.array(self.STD, dtype=np.float32)


class Sam2Ort:
    """SAM2ImagePredictor's preprocessing (resize to 1024x1024, ImageNet mean/std) around the
    exported encoder."""

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, encoder, threads: int):
        import numpy as np

        self.encoder = ort_session(encoder, threads) if isinstance(encoder, Path) else None
        self.decoder = None
        self.mean = np.array(self.MEAN, dtype=np.float32) * 255.0
        self.std = np.array(self.STD, dtype=np.float32) * 255.0

    def embed(self, rgb):
        import numpy as np
        from PIL import Image

        resized = np.asarray(Image.fromarray(rgb).resize((1024, 1024), Image.BILINEAR))
        x = ((resized.astype(np.float32) - self.mean) / self.std).transpose(2, 0, 1)[None]
        return self.encoder.run(None, {"image": np.ascontiguousarray(x)})


def time_ort(pipe, rgb, runs: int) -> tuple[float, float]:
    h, w = rgb.shape[:2]
    enc = dec = NAN
    if pipe.encoder is not None:
        enc = median_ms(lambda: pipe.embed(rgb), runs)
    if pipe.decoder is not None:
        import torch

        if pipe.encoder is not None:
            embedding = pipe.embed(rgb)
        else:
            embedding = torch.randn(1, 256, 64, 64).numpy()
        dec = median_ms(lambda: pipe.decode(embedding, (w / 2, h / 2), (h, w)), runs)
    return enc, dec


# --------------------------------------------------------------------------------------------
# Ours
# --------------------------------------------------------------------------------------------

class OursRefused(Exception):
    pass


def time_ours(args: argparse.Namespace, checkpoint: Path, image: Path) -> tuple[float, float, int]:
    cmd = [str(args.mobilesam), "bench", "--checkpoint", str(checkpoint), "--image", str(image),
           "--runs", str(args.runs), "--warmup", "1", "--json"]
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        raise OursRefused(f"`mobilesam bench` exited {proc.returncode}: "
                          + (" | ".join(lines[-4:]) if lines else "(no message)"))
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return summary["encoder_ms"], summary["decoder_ms"], summary["threads"]


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def fmt_ms(v: float) -> str:
    if v != v:
        return "n/a"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def fmt_ratio(v: float) -> str:
    return "n/a" if v != v else f"{v:.3f}"


def stats(values: list[float]) -> dict | None:
    vals = [v for v in values if v == v]
    if not vals:
        return None
    return dict(median=statistics.median(vals), min=min(vals), max=max(vals), n=len(vals))


def ratio_stats(rows: list[dict], part: str, num: str, den: str) -> dict | None:
    return stats([r[num][part] / r[den][part] for r in rows
                  if r[num][part] == r[num][part] and r[den][part] == r[den][part]])


def cell(s: dict | None, unit: str = " ms") -> str:
    if s is None:
        return "n/a"
    return f"{fmt_ms(s['median'])}{unit} ({fmt_ms(s['min'])}-{fmt_ms(s['max'])})"


def rcell(s: dict | None) -> str:
    if s is None:
        return "n/a"
    return f"**{s['median']:.3f}** ({s['min']:.2f}-{s['max']:.2f})"


def main() -> int:
    args = parse_args()
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    image = bench_image(args)
    if not args.skip_ours and not args.mobilesam.exists():
        print(f"{args.mobilesam} is missing: cargo build --release -p mobilesam", file=sys.stderr)
        return 2

    import numpy as np
    import torch
    from PIL import Image

    torch.set_num_threads(args.threads)
    rgb = np.asarray(Image.open(image).convert("RGB"))
    machine = peak(args)
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for pkg in ("segment_anything", "sam2", "onnx", "onnxruntime", "numpy"):
        try:
            from importlib.metadata import version

            versions[pkg] = version({"segment_anything": "segment-anything"}.get(pkg, pkg))
        except Exception:  # noqa: BLE001
            versions[pkg] = None

    models = {}
    for name in args.models:
        ckpt = ensure_checkpoint(name, args.checkpoints[name])
        model, predictor, enc_fn = load_reference(name, ckpt)
        print(f"{MODELS[name]['title']}: counting FLOPs (one encoder forward)", file=sys.stderr, flush=True)
        enc_flops = count_flops(enc_fn)
        predictor.set_image(rgb)
        dec_flops = count_decoder_flops(predictor, rgb)
        onnx = {"encoder": "skipped (--skip-ort)", "decoder": "skipped (--skip-ort)"}
        pipe = None
        if not args.skip_ort:
            onnx = (export_vit if name == "vit_b" else export_sam2)(model, ckpt, args.cache_dir)
            for part in ("encoder", "decoder"):
                if not isinstance(onnx[part], Path):
                    print(f"{MODELS[name]['title']} ONNX {part}: {onnx[part]}", flush=True)
            if name == "vit_b":
                pipe = VitOrt(onnx["encoder"], onnx["decoder"], args.threads)
            else:
                pipe = Sam2Ort(onnx["encoder"], args.threads)
            if pipe.encoder is None and pipe.decoder is None:
                pipe = None
        models[name] = dict(checkpoint=ckpt, model=model, predictor=predictor, pipe=pipe,
                            encoder_flops=enc_flops, decoder_flops=dec_flops,
                            onnx={k: (str(v) if isinstance(v, Path) else v) for k, v in onnx.items()},
                            ours_error="skipped (--skip-ours)" if args.skip_ours else None,
                            threads_ours=None, rows=[])

    print(f"image {image} ({rgb.shape[1]}x{rgb.shape[0]}), {args.threads} threads, {args.rounds} "
          f"rounds x {args.runs} runs (+1 warm-up), torch {torch.__version__}, onnxruntime "
          f"{versions['onnxruntime']}, models {', '.join(args.models)}")
    print(f"CPU: {machine['cpu']['model_name']} ({machine['cpu']['vendor']} family "
          f"{machine['cpu']['family']} model {machine['cpu']['model']}), {machine['cpu']['cores']} cores, "
          f"{machine['ghz']:.2f} GHz ({machine['ghz_source']}); load average {loadavg()} at the start")
    print(f"FP32 FMA peak of {machine['cores_used']} core(s): {machine['cores_used']} x "
          f"{machine['ghz']:.2f} GHz x {machine['flops_per_cycle']} FLOP/cycle = "
          f"{machine['peak_gflops']:.1f} GFLOP/s; FLOP/cycle assumed: "
          f"{machine['flops_per_cycle_assumption']}", flush=True)

    for r in range(args.rounds):
        for name in args.models:
            m = models[name]
            row = {side: {"encoder": NAN, "decoder": NAN} for side in SIDES}
            if not args.skip_torch:
                with torch.no_grad():
                    row["torch"]["encoder"], row["torch"]["decoder"] = time_torch(m["predictor"], rgb, args.runs)
            if m["pipe"] is not None:
                row["ort"]["encoder"], row["ort"]["decoder"] = time_ort(m["pipe"], rgb, args.runs)
            if m["ours_error"] is None:
                try:
                    row["ours"]["encoder"], row["ours"]["decoder"], m["threads_ours"] = time_ours(
                        args, m["checkpoint"], image)
                except OursRefused as e:
                    m["ours_error"] = str(e)
                    print(f"{MODELS[name]['title']}: our binary refused the checkpoint "
                          f"{m['checkpoint']} ({e}); ours is left out for this model", flush=True)
            m["rows"].append(row)
            parts = []
            for side in SIDES:
                parts.append(f"{SIDE_NAMES[side]} enc {fmt_ms(row[side]['encoder']):>6} dec "
                             f"{fmt_ms(row[side]['decoder']):>6}")
            ratios = []
            for den in ("torch", "ort"):
                e = row["ours"]["encoder"] / row[den]["encoder"]
                d = row["ours"]["decoder"] / row[den]["decoder"]
                ratios.append(f"ours/{SIDE_NAMES[den]} enc {fmt_ratio(e)} dec {fmt_ratio(d)}")
            print(f"round {r + 1} {name:8s}: " + " | ".join(parts) + " | " + " | ".join(ratios)
                  + (f" (our threads {m['threads_ours']})" if m["threads_ours"] else ""), flush=True)

    # ---- summary ----
    load_end = loadavg()
    print(f"load average {load_end} at the end (other processes' load slows every side, "
          f"PyTorch's and ONNX Runtime's spinning threads most)")
    result = dict(date=time.strftime("%Y-%m-%d"), image=str(image), load_average_end=load_end,
                  image_size=[int(rgb.shape[1]), int(rgb.shape[0])], threads=args.threads,
                  rounds=args.rounds, runs=args.runs, mobilesam=str(args.mobilesam),
                  versions=versions, machine=machine, models={})
    table = ["| model | part | PyTorch | ONNX Runtime | ours | ours / PyTorch | ours / ORT |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    flop_table = ["| model | encoder GFLOP | PyTorch GFLOP/s | ONNX Runtime GFLOP/s | ours GFLOP/s |",
                  "| --- | --- | --- | --- | --- |"]
    notes = []
    for name in args.models:
        m = models[name]
        title = MODELS[name]["title"]
        summary = {"checkpoint": str(m["checkpoint"]), "encoder_gflop": m["encoder_flops"] / 1e9,
                   "decoder_gflop": m["decoder_flops"] / 1e9, "onnx": m["onnx"],
                   "ours_error": m["ours_error"], "ours_threads": m["threads_ours"],
                   "rounds": m["rows"], "parts": {}}
        for part in ("encoder", "decoder"):
            s = {side: stats([row[side][part] for row in m["rows"]]) for side in SIDES}
            s["ours/torch"] = ratio_stats(m["rows"], part, "ours", "torch")
            s["ours/ort"] = ratio_stats(m["rows"], part, "ours", "ort")
            summary["parts"][part] = s
            table.append(f"| {title} | {part} | {cell(s['torch'])} | {cell(s['ort'])} | "
                         f"{cell(s['ours'])} | {rcell(s['ours/torch'])} | {rcell(s['ours/ort'])} |")
            print(f"{name} {part}: " + ", ".join(
                f"{SIDE_NAMES[side]} {cell(s[side])}" for side in SIDES)
                + f"; ratio ours/PyTorch {rcell(s['ours/torch'])}, ours/ORT {rcell(s['ours/ort'])}")
        gflop = m["encoder_flops"] / 1e9
        achieved = {}
        flop_cells = []
        for side in SIDES:
            st = summary["parts"]["encoder"][side]
            if st is None:
                achieved[side] = None
                flop_cells.append("n/a")
                continue
            rate = gflop / (st["median"] / 1e3)
            achieved[side] = dict(gflops=rate, fraction_of_peak=rate / machine["peak_gflops"])
            flop_cells.append(f"{rate:.0f} ({100 * rate / machine['peak_gflops']:.0f}% of peak)")
        summary["encoder_achieved"] = achieved
        flop_table.append(f"| {title} | {gflop:.1f} | " + " | ".join(flop_cells) + " |")
        print(f"{name}: encoder {gflop:.1f} GFLOP, decoder {m['decoder_flops'] / 1e9:.2f} GFLOP "
              f"(FlopCounterMode, one mask); achieved encoder GFLOP/s: " + ", ".join(
                  f"{SIDE_NAMES[s]} {flop_cells[i]}" for i, s in enumerate(SIDES)))
        for part in ("encoder", "decoder"):
            what = m["onnx"][part]
            if what.endswith(".onnx"):
                what = "exported, " + m["onnx"].get(f"{part}_export", "cached from an earlier run")
            notes.append(f"{title} ONNX {part}: {what}")
        if m["ours_error"]:
            notes.append(f"{title} ours: {m['ours_error']}")
        result["models"][name] = summary

    print()
    print(f"Medians of {args.rounds} rounds x {args.runs} runs (range of the round medians); "
          f"ratios: median of the per-round ratios (range); {args.threads} threads on every side.")
    print()
    print("\n".join(table))
    print()
    print(f"Encoder FLOP/s against the FP32 FMA peak of {machine['cores_used']} cores: "
          f"{machine['cores_used']} x {machine['ghz']:.2f} GHz x {machine['flops_per_cycle']} "
          f"FLOP/cycle = {machine['peak_gflops']:.1f} GFLOP/s ({machine['flops_per_cycle_assumption']}).")
    print()
    print("\n".join(flop_table))
    if notes:
        print()
        for n in notes:
            print(f"- {n}")
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=1, default=str) + "\n")
        print(f"\nwrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
