#!/usr/bin/env python3
"""SAM 2.1 video tracking (issue 29): our server's memory tracking against sam2 1.1.0's
SAM2VideoPredictor in PyTorch on the CPU, side by side in one run on one machine.

    /work/pyref-sam/bin/pip install grpcio grpcio-tools      # once, beside requirements-sam.txt
    /work/pyref-sam/bin/python tests/bench/video_bench.py --model hiera_t --frames 8 --rounds 2
    /work/pyref-sam/bin/python tests/bench/video_bench.py --model reduced --frames 1000 --distinct 20 \
        --rounds 1 --serve-arg=--session-ttl=2h

What is measured, for one object prompted with one click on frame 0 and followed forward:
- time per propagated frame (frames 1..N-1), wall clock:
  - reference: between `propagate_in_video`'s yields (the image encoder runs inside, per
    frame, as `_get_image_feature` does; frames were decoded by `init_state` beforehand);
  - ours: from sending `SetImage{image, frame_index}` on one `Segment` stream to its
    `ImageReady.tracked` (JPEG decode, encode and the tracking step in the server, the
    loopback round trip);
  - and the tracking step alone: ours `Masks.decode_ms`; the reference's frame time minus
    its `forward_image` time.
- peak RSS: the reference process's `ru_maxrss` (it loads every frame at 1024x1024 float32
  in `init_state` and keeps every frame's outputs), and our server's `VmHWM` (both after the
  same clip, each in a fresh process).
- bytes on the wire per frame: our protobuf messages both ways (HTTP/2 and gRPC framing
  excluded), the frame's JPEG upload and the mask answer (RLE) apart.

The clip: --frames N frames of 1024x1024 (no resize on either side):
tests/fixtures/images/coffee.png upscaled x3 by pixel repetition, cropped along a closed path,
JPEG quality 92 in a folder (SAM2VideoPredictor reads JPEG folders). Every 50th frame is
inverted, so the object-score head calls it absent (OCCLUDED). With --distinct K < N the clip
cycles through K distinct images: our client prefetches the K images first
(`SetImage{prefetch}`, each encoded once into the server's cache) and sends every frame as
`SetImage{image_sha256, frame_index}`, so the server runs the tracking step on every frame
index without N encodes (a long clip's memory measured in minutes, not hours); the reference
encodes every frame as it always does. Without --distinct every frame is sent as its bytes.
--reference-frames M < N: the reference loads all N frames (`init_state`) but propagates
only M (`max_frame_num_to_track`); its figures are then for M frames. --ours-frames M: our
server is sent the first M frames only. Both sides load one checkpoint file: the seeded one of
--model with the object-score head's last layer rescaled as tests/fixtures/sam2/video does
(the seeded head calls every frame empty otherwise).

Models: `reduced` = tests/fixtures/sam2/sam2.1_hiera_r_seed0.pt; `hiera_t` = the full-size
seeded Hiera-T of tests/fixtures/sam/make_fullsize.py in --refdata (written if missing).
Our side runs `--mobilesam` (default target/release/mobilesam) `serve` on loopback with 2
threads as torch has (torch.set_num_threads). Prints markdown tables.
"""

import argparse
import io
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402

from bench_grpc import ROOT, Stream, stubs  # noqa: E402

FIXTURES = ROOT / "tests/fixtures"
SAM2_FIXTURES = FIXTURES / "sam2"
HEAD = "sam_mask_decoder.pred_obj_score_head.layers.2"
HEAD_SCALE, HEAD_SHIFT = 10.0, 0.9  # as tests/fixtures/sam2/video/make_sam2_video_fixtures.py
CLICK = (520.0, 430.0)
SIDE = 1024
OCCLUDED_EVERY = 50


# ---------------------------------------------------------------- the clip and the checkpoint

def frame_origin(t: int) -> tuple[int, int]:
    """A closed path inside the 1800x1200 upscaled photo (crop 1024x1024)."""
    a = 2 * np.pi * t / 240
    return int(388 + 300 * np.sin(a)), int(88 + 80 * np.sin(2 * a))


def write_clip(directory: Path, count: int, distinct: int) -> list[bytes]:
    from PIL import Image

    src = np.array(Image.open(FIXTURES / "images/coffee.png").convert("RGB"))
    up = src.repeat(3, axis=0).repeat(3, axis=1)
    jpegs = []
    for t in range(count):
        if t >= distinct:
            jpegs.append(jpegs[t % distinct])
            (directory / f"{t:05d}.jpg").write_bytes(jpegs[-1])
            continue
        x0, y0 = frame_origin(t)
        crop = np.ascontiguousarray(up[y0:y0 + SIDE, x0:x0 + SIDE])
        if t % OCCLUDED_EVERY == OCCLUDED_EVERY - 1:
            crop = 255 - crop
        buf = io.BytesIO()
        Image.fromarray(crop).save(buf, format="JPEG", quality=92)
        jpegs.append(buf.getvalue())
        (directory / f"{t:05d}.jpg").write_bytes(jpegs[-1])
    return jpegs


def seeded_checkpoint(model: str, refdata: Path) -> Path:
    if model == "reduced":
        return SAM2_FIXTURES / "sam2.1_hiera_r_seed0.pt"
    path = refdata / "sam2.1_hiera_tiny_seed0.pt"
    if not path.exists():
        sys.path.insert(0, str(FIXTURES / "sam"))
        sys.path.insert(0, str(Path(__file__).parent))
        import compare_family

        compare_family.ensure_checkpoint("hiera_t", path)
    return path


def rescaled_checkpoint(model: str, refdata: Path, out: Path) -> Path:
    """The seeded checkpoint with the object-score head rescaled, as {"model": state_dict}."""
    import torch

    loaded = torch.load(seeded_checkpoint(model, refdata), map_location="cpu", weights_only=True)
    sd = loaded.get("model", loaded)
    sd[f"{HEAD}.weight"] = sd[f"{HEAD}.weight"] * HEAD_SCALE
    sd[f"{HEAD}.bias"] = (sd[f"{HEAD}.bias"] + HEAD_SHIFT) * HEAD_SCALE
    path = out / f"sam2.1_{model}_rescaled_head.pt"
    torch.save({"model": sd}, path)
    return path


# ---------------------------------------------------------------- the reference (own process)

def build_reference(model: str, checkpoint: Path):
    from sam2.build_sam import build_sam2_video_predictor

    if model == "reduced":
        sys.path.insert(0, str(SAM2_FIXTURES))
        sys.path.insert(0, str(FIXTURES / "sam"))
        import make_sam2_fixtures as F
        import sam2.modeling.sam2_base as sam2_base

        orig_tt, orig_md = sam2_base.TwoWayTransformer, sam2_base.MaskDecoder
        sam2_base.TwoWayTransformer = lambda **kw: orig_tt(**{**kw, "mlp_dim": F.DECODER_MLP_DIM})
        sam2_base.MaskDecoder = lambda **kw: orig_md(**{**kw, "iou_head_hidden_dim": F.IOU_HEAD_HIDDEN})
        try:
            p = build_sam2_video_predictor("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=str(checkpoint),
                                           device="cpu", mode="eval", hydra_overrides_extra=F.OVERRIDES)
        finally:
            sam2_base.TwoWayTransformer, sam2_base.MaskDecoder = orig_tt, orig_md
    else:
        p = build_sam2_video_predictor("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=str(checkpoint),
                                       device="cpu", mode="eval")
    p.add_all_frames_to_correct_as_cond = True
    p.fill_hole_area = 0
    return p


def proc_status_kib(key: str, pid: str = "self") -> int:
    """A memory line of /proc/PID/status (VmRSS, VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def reference_role(args) -> None:
    """Runs in a child process: one propagation, its timings and peak RSS as JSON on stdout."""
    import torch

    torch.set_num_threads(args.threads)
    pred = build_reference(args.model, args.checkpoint)
    encoder = []
    forward_image = pred.forward_image

    def timed_forward_image(*a, **kw):
        t0 = time.perf_counter()
        out = forward_image(*a, **kw)
        encoder.append(time.perf_counter() - t0)
        return out

    pred.forward_image = timed_forward_image
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.inference_mode():
        t0 = time.perf_counter()
        state = pred.init_state(video_path=str(args.clip))
        init_s = time.perf_counter() - t0
        rss_frames = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        pred.add_new_points_or_box(state, frame_idx=0, obj_id=1, points=np.array([CLICK], dtype=np.float32),
                                   labels=np.array([1], dtype=np.int32))
        frames, track, occluded, rss_trace = [], [], 0, []
        encoder.clear()
        t_prev = time.perf_counter()
        maxn = args.reference_frames if args.reference_frames else None
        for frame_idx, _, masks in pred.propagate_in_video(state, start_frame_idx=0, max_frame_num_to_track=maxn):
            now = time.perf_counter()
            if frame_idx % 10 == 0:
                rss_trace.append((frame_idx, proc_status_kib("VmRSS")))
            if frame_idx > 0:
                frames.append(now - t_prev)
                track.append(frames[-1] - (encoder[-1] if encoder else 0.0))
                occluded += int(not bool((masks[0] > 0).any()))
            encoder.clear()
            t_prev = time.perf_counter()
    json.dump(dict(frame_s=frames, track_s=track, occluded=occluded, init_s=init_s, rss_trace=rss_trace,
                   rss_loaded_kib=rss_loaded, rss_after_init_kib=rss_frames,
                   peak_rss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss), sys.stdout)


def run_reference(args, checkpoint: Path, clip: Path) -> dict:
    cmd = [sys.executable, __file__, "--role", "reference", "--model", args.model, "--threads", str(args.threads),
           "--checkpoint", str(checkpoint), "--clip", str(clip), "--reference-frames", str(args.reference_frames)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


# ---------------------------------------------------------------- ours (a real server)

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mobilesam serve` on loopback; `peak_rss_kib` reads its VmHWM."""

    def __init__(self, binary: Path, checkpoint: Path, threads: int, extra: list[str], log: Path):
        import grpc

        self.addr = f"127.0.0.1:{free_port()}"
        env = {**os.environ, "RAYON_NUM_THREADS": str(threads)}
        self.proc = subprocess.Popen([str(binary), "serve", "--checkpoint", str(checkpoint), "--addr", self.addr,
                                      "--metrics-addr", f"127.0.0.1:{free_port()}", *extra],
                                     env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
        self.channel = grpc.insecure_channel(self.addr, options=[("grpc.max_receive_message_length", 64 << 20),
                                                                 ("grpc.max_send_message_length", 64 << 20)])
        grpc.channel_ready_future(self.channel).result(timeout=300)

    def status(self, key: str) -> int:
        return proc_status_kib(key, str(self.proc.pid))

    def stop(self):
        self.channel.close()
        self.proc.terminate()
        self.proc.wait(timeout=60)


def run_ours(pb2, pb2_grpc, server: Server, jpegs: list[bytes], distinct: int) -> dict:
    stub = pb2_grpc.SegmentAnythingStub(server.channel)
    s = Stream(pb2, stub)
    s.ask(set_image=pb2.SetImage(image=jpegs[0], frame_index=0))
    digests = {}
    if distinct < len(jpegs):
        for jpeg in jpegs[:distinct]:
            ready = s.ask(set_image=pb2.SetImage(image=jpeg, prefetch=True)).image_ready
            digests[jpeg] = ready.image_sha256
    point = pb2.Point(x=CLICK[0], y=CLICK[1], label=1)
    s.ask(prompt=pb2.Prompt(request_id=1, track=True, objects=[pb2.ObjectPrompt(object_id=1, points=[point])]))
    frames, track, up, down, occluded, rss_trace = [], [], [], [], 0, [(0, server.status("VmRSS"))]
    for t, jpeg in enumerate(jpegs[1:], start=1):
        sent, received = s.sent, s.received
        t0 = time.perf_counter()
        ready = None
        if jpeg in digests:
            try:
                ready = s.ask(set_image=pb2.SetImage(image_sha256=digests[jpeg], frame_index=t)).image_ready
            except RuntimeError as e:  # the prefetched embedding expired (--session-ttl): send the bytes
                if "send the image bytes" not in str(e):
                    raise
                del digests[jpeg]
        if ready is None:
            ready = s.ask(set_image=pb2.SetImage(image=jpeg, frame_index=t)).image_ready
        frames.append(time.perf_counter() - t0)
        track.append(ready.tracked.decode_ms / 1e3)
        up.append(s.sent - sent)
        down.append(s.received - received)
        (obj,) = ready.tracked.objects
        occluded += int(obj.state == pb2.TRACK_STATE_OCCLUDED)
        if t % 10 == 0:
            rss_trace.append((t, server.status("VmRSS")))
            print(f"  ours: frame {t}, {statistics.median(frames[-10:]) * 1e3:.0f} ms/frame, "
                  f"RSS {server.status('VmRSS') / 1024:.0f} MiB", file=sys.stderr, flush=True)
    s.close()
    return dict(frame_s=frames, track_s=track, up_bytes=up, down_bytes=down, occluded=occluded, rss_trace=rss_trace)


# ---------------------------------------------------------------- report

def cell(values: list[float], scale: float = 1e3, unit: str = " ms") -> str:
    if not values:
        return "n/a"
    v = [x * scale for x in values]
    return f"{statistics.median(v):.1f}{unit} ({min(v):.1f}-{max(v):.1f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", default="compare", choices=["compare", "reference"])
    ap.add_argument("--model", default="reduced", choices=["reduced", "hiera_t"])
    ap.add_argument("--frames", type=int, default=12, help="clip length (default: %(default)s)")
    ap.add_argument("--distinct", type=int, default=0, help="distinct images the clip cycles through (default: all)")
    ap.add_argument("--reference-frames", type=int, default=0,
                    help="frames the reference propagates (default: all)")
    ap.add_argument("--skip-reference", action="store_true",
                    help="ours only (to compare two builds of ours, run twice)")
    ap.add_argument("--ours-frames", type=int, default=0, help="frames sent to our server (default: all)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds alternating the sides (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mobilesam", type=Path, default=ROOT / "target/release/mobilesam")
    ap.add_argument("--refdata", type=Path, default=Path(os.environ.get("MOBILESAM_REFDATA_SAM", "/work/refdata-sam")))
    ap.add_argument("--serve-arg", action="append", default=[], help="extra `serve` argument (repeatable)")
    ap.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--clip", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "reference":
        reference_role(args)
        return 0

    pb2, pb2_grpc = stubs()
    with tempfile.TemporaryDirectory(prefix="video-bench-") as tmp:
        tmp = Path(tmp)
        clip = tmp / "clip"
        clip.mkdir()
        distinct = args.distinct or args.frames
        jpegs = write_clip(clip, args.frames, distinct)
        checkpoint = rescaled_checkpoint(args.model, args.refdata, tmp)
        print(f"model {args.model}, {args.frames} frames ({distinct} distinct) of {SIDE}x{SIDE} (JPEG median "
              f"{statistics.median(len(j) for j in jpegs) / 1024:.0f} KiB), {args.rounds} round(s), "
              f"{args.threads} threads, load {os.getloadavg()[0]:.1f}", flush=True)
        ours_runs, ref_runs = [], []
        for r in range(args.rounds):
            if not args.skip_reference:
                ref = run_reference(args, checkpoint, clip)
                ref_runs.append(ref)
                print(f"round {r + 1}: reference {cell(ref['frame_s'])}/frame, peak RSS "
                      f"{ref['peak_rss_kib'] / 1024:.0f} MiB", flush=True)
            server = Server(args.mobilesam, checkpoint, args.threads, args.serve_arg, tmp / f"server{r}.log")
            run = run_ours(pb2, pb2_grpc, server, jpegs[:args.ours_frames or args.frames], distinct)
            run.update(peak_rss_kib=server.status("VmHWM"))
            server.stop()
            ours_runs.append(run)
            print(f"round {r + 1}: ours {cell(run['frame_s'])}/frame, tracking step {cell(run['track_s'])}, "
                  f"peak RSS {run['peak_rss_kib'] / 1024:.0f} MiB", flush=True)

    if args.skip_reference:
        return 0

    def per_round(runs, key):
        return [statistics.median(run[key]) for run in runs]

    ratios = [statistics.median(o["frame_s"]) / statistics.median(t["frame_s"]) for o, t in zip(ours_runs, ref_runs)]
    track_ratios = [statistics.median(o["track_s"]) / statistics.median(t["track_s"])
                    for o, t in zip(ours_runs, ref_runs)]
    ref_frames = len(ref_runs[0]["frame_s"]) + 1
    our_frames = len(ours_runs[0]["frame_s"]) + 1
    print(f"\nreference: {ref_frames} frames propagated of {args.frames} loaded; ours: {our_frames}")
    print("\n| per propagated frame | PyTorch SAM2VideoPredictor | ours (server, loopback) | ours / PyTorch |")
    print("| --- | --- | --- | --- |")
    if distinct >= our_frames:  # ours encoded every frame, as the reference does
        print(f"| whole frame (encode + track) | {cell(per_round(ref_runs, 'frame_s'))} | "
              f"{cell(per_round(ours_runs, 'frame_s'))} | {statistics.median(ratios):.2f} "
              f"({min(ratios):.2f}-{max(ratios):.2f}) |")
    print(f"| tracking step only | {cell(per_round(ref_runs, 'track_s'))} | {cell(per_round(ours_runs, 'track_s'))} | "
          f"{statistics.median(track_ratios):.2f} ({min(track_ratios):.2f}-{max(track_ratios):.2f}) |")
    mib = lambda kib: f"{kib / 1024:.0f} MiB"  # noqa: E731
    print("\n| memory | PyTorch | ours |")
    print("| --- | --- | --- |")
    print(f"| after loading the model (ours: and the first frame's prompt) | {mib(ref_runs[0]['rss_loaded_kib'])} | "
          f"{mib(ours_runs[0]['rss_trace'][0][1])} |")
    print(f"| after `init_state` (frames loaded) | {mib(ref_runs[0]['rss_after_init_kib'])} | n/a |")
    print(f"| peak ({ref_frames} / {our_frames} frames) | {mib(max(r['peak_rss_kib'] for r in ref_runs))} | "
          f"{mib(max(r['peak_rss_kib'] for r in ours_runs))} |")
    trace = lambda run: ", ".join(f"{t}: {kib / 1024:.0f}" for t, kib in run["rss_trace"])  # noqa: E731
    print(f"\nRSS by frame (MiB), reference: {trace(ref_runs[0])}")
    print(f"RSS by frame (MiB), ours: {trace(ours_runs[0])}")
    up = statistics.median(b for run in ours_runs for b in run["up_bytes"])
    down = statistics.median(b for run in ours_runs for b in run["down_bytes"])
    what = "the JPEG frame" if distinct >= our_frames else "SetImage by digest; the JPEGs went once, prefetched"
    print(f"\nbytes on the wire per frame (ours, protobuf): {up / 1024:.1f} KiB up ({what}), "
          f"{down:.0f} B down (the mask as RLE); occluded frames: ours {ours_runs[0]['occluded']}, "
          f"reference {ref_runs[0]['occluded']} of {ref_frames - 1}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
