#!/usr/bin/env python3
"""Tracking benchmark (issue 16): frames per second at 720p with 1, 4 and 16 tracked
objects, and bytes on the wire per frame, server-side tracking against client-side
propagation, side by side in one run against one running `mobilesam serve`.

    mobilesam serve --checkpoint seeded.safetensors --addr 127.0.0.1:50051 &
    python tests/bench/tracking_bench.py --server 127.0.0.1:50051 --frames 8 --rounds 3

Frames: a 1280x720 window sliding over tests/fixtures/images/rocket.png (resized to
1600x900), sent as JPEG (quality 92, as the web page sends them). Objects: boxes on a grid.

- server: one `Segment` stream; frame 0 gets one `Prompt{track}` with every object, then
  every frame is one `SetImage`, answered with `ImageReady.tracked` (encode + one batched
  decode job for all objects).
- client: the same stream; each frame is a `SetImage`, then one `Prompt` with every object's
  box (the previous mask's, computed here) and `mask_input` (the previous 256x256 logits,
  returned with `return_low_res_logits`): what a client has to do without server tracking.

Per frame: wall time from sending the frame to having every object's mask, and the bytes
of the protobuf messages both ways (HTTP/2 and gRPC framing excluded, the same for both).
Rounds alternate the two modes; medians and ranges over rounds are printed (markdown).
Needs grpcio, grpcio-tools, numpy, pillow.
"""

import argparse
import io
import statistics
import time

import numpy as np
from PIL import Image

from bench_grpc import ROOT, Stream, stubs

def frames(count):
    photo = Image.open(ROOT / "tests/fixtures/images/rocket.png").convert("RGB").resize((1600, 900), Image.BILINEAR)
    out = []
    for k in range(count):
        x, y = 20 * k, 10 * k
        buf = io.BytesIO()
        photo.crop((x, y, x + 1280, y + 720)).save(buf, format="JPEG", quality=92)
        out.append(buf.getvalue())
    return out


def grid_boxes(pb2, n):
    side = int(np.ceil(np.sqrt(n)))
    w, h = 1280 / side, 720 / side
    boxes = []
    for i in range(n):
        r, c = divmod(i, side)
        boxes.append(pb2.Box(x1=c * w + 0.2 * w, y1=r * h + 0.2 * h, x2=c * w + 0.8 * w, y2=r * h + 0.8 * h))
    return boxes


def run_server_side(pb2, stub, jpegs, n):
    s = Stream(pb2, stub)
    s.ask(set_image=pb2.SetImage(image=jpegs[0]))
    objects = [pb2.ObjectPrompt(object_id=i + 1, box=b) for i, b in enumerate(grid_boxes(pb2, n))]
    s.ask(prompt=pb2.Prompt(request_id=1, objects=objects, track=True))
    times, sizes = [], []
    for jpeg in jpegs[1:]:
        before = s.sent + s.received
        t0 = time.perf_counter()
        ready = s.ask(set_image=pb2.SetImage(image=jpeg)).image_ready
        times.append(time.perf_counter() - t0)
        sizes.append(s.sent + s.received - before)
        assert len(ready.tracked.objects) == n
    s.close()
    return times, sizes


def run_client_side(pb2, stub, jpegs, n):
    s = Stream(pb2, stub)
    s.ask(set_image=pb2.SetImage(image=jpegs[0]))
    objects = [pb2.ObjectPrompt(box=b) for b in grid_boxes(pb2, n)]
    masks = s.ask(prompt=pb2.Prompt(request_id=1, objects=objects, return_low_res_logits=True)).masks
    times, sizes = [], []
    for k, jpeg in enumerate(jpegs[1:]):
        before = s.sent + s.received
        t0 = time.perf_counter()
        s.ask(set_image=pb2.SetImage(image=jpeg))
        follow = []
        for obj in masks.objects:
            m = obj.masks[0]
            if m.area == 0:
                continue
            follow.append(pb2.ObjectPrompt(box=m.bbox, mask_input=m.low_res_logits))
        masks = s.ask(prompt=pb2.Prompt(request_id=k + 2, objects=follow, return_low_res_logits=True)).masks
        times.append(time.perf_counter() - t0)
        sizes.append(s.sent + s.received - before)
    s.close()
    return times, sizes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="127.0.0.1:50051")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--objects", default="1,4,16")
    args = ap.parse_args()
    import grpc

    pb2, pb2_grpc = stubs()
    channel = grpc.insecure_channel(args.server, options=[("grpc.max_receive_message_length", 64 << 20),
                                                          ("grpc.max_send_message_length", 64 << 20)])
    stub = pb2_grpc.SegmentAnythingStub(channel)
    jpegs = frames(args.frames + 1)
    print(f"720p JPEG frames: {statistics.median(len(j) for j in jpegs) / 1024:.0f} KiB median; "
          f"{args.frames} followed frames per run, {args.rounds} rounds alternating the modes\n")
    print("| objects | server-side fps | client-side fps | server-side bytes/frame | client-side bytes/frame | bytes ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for n in [int(x) for x in args.objects.split(",")]:
        fps = {"server": [], "client": []}
        size = {"server": [], "client": []}
        for _ in range(args.rounds):
            for mode, fn in (("server", run_server_side), ("client", run_client_side)):
                times, sizes = fn(pb2, stub, jpegs, n)
                fps[mode].append(1.0 / statistics.median(times))
                size[mode].append(statistics.median(sizes))

        def cell(values, fmt):
            return f"{fmt(statistics.median(values))} ({fmt(min(values))}-{fmt(max(values))})"

        fps_fmt = lambda v: f"{v:.2f}"  # noqa: E731
        kib = lambda v: f"{v / 1024:.0f} KiB"  # noqa: E731
        ratio = statistics.median(size["client"]) / statistics.median(size["server"])
        print(f"| {n} | {cell(fps['server'], fps_fmt)} | {cell(fps['client'], fps_fmt)} | "
              f"{kib(statistics.median(size['server']))} | {kib(statistics.median(size['client']))} | {ratio:.1f}x |",
              flush=True)
    channel.close()


if __name__ == "__main__":
    main()
