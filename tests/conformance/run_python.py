#!/usr/bin/env python3
"""The Python runner of the conformance scenario (README.md), with clients/python.

    python tests/conformance/run_python.py tests/conformance/scenario.json \
        --server 127.0.0.1:50051 --out target/conformance/python.json

Uses the installed mobilesam_client, else the one in clients/python/src (it needs grpcio,
protobuf and numpy). Exit 0 once the results file is written, whatever the steps gave.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
import traceback
from pathlib import Path
from typing import Any

try:
    import mobilesam_client as mc
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python" / "src"))
    import mobilesam_client as mc

pb = mc.pb
TIMEOUT_S = 300
PROMPT_KEYS = ("points", "labels", "boxes", "multimask", "polygons", "track", "object_ids", "supersede")


def f32(value: float) -> str:
    """A float32 as the 8 hex digits of its bits (the wire's value, exactly)."""
    return struct.pack(">f", value).hex()


def mask_result(m: Any) -> dict:
    return {
        "score": f32(m.score),
        "stability_score": f32(m.stability_score),
        "area": int(m.area),
        "bbox": [f32(m.bbox.x1), f32(m.bbox.y1), f32(m.bbox.x2), f32(m.bbox.y2)],
        "rle": {"size": [int(v) for v in m.rle.size], "counts": m.rle.counts},
        "polygons": [{"hole": bool(p.hole), "points": [f32(v) for v in p.points]} for p in m.polygons],
    }


def object_result(o: Any) -> dict:
    return {"object_id": int(o.object_id), "state": pb.TrackState.Name(o.state),
            "masks": [mask_result(m) for m in o.masks]}


def masks_result(masks: Any) -> dict:
    return {"objects": [object_result(o) for o in masks.objects]}


def ready_result(r: Any) -> dict:
    return {"width": int(r.width), "height": int(r.height), "frame_index": int(r.frame_index),
            "prefetched": bool(r.prefetched), "image_sha256": r.image_sha256,
            "tracked": [object_result(o) for o in r.tracked.objects]}


def generated_result(g: Any) -> dict:
    return {"mask": mask_result(g.mask), "stability_score": f32(g.stability_score),
            "point": {"x": f32(g.point.x), "y": f32(g.point.y), "label": int(g.point.label)},
            "crop_box": [f32(g.crop_box.x1), f32(g.crop_box.y1), f32(g.crop_box.x2), f32(g.crop_box.y2)]}


def error_entry(e: BaseException) -> dict:
    if isinstance(e, mc.Error):
        return {"error": e.code.name, "message": e.message}
    return {"error": "CLIENT_ERROR", "message": f"{type(e).__name__}: {e}"}


class Runner:
    def __init__(self, scenario_path: Path, server: str) -> None:
        self.base = scenario_path.parent
        self.client = mc.Client(server, timeout=TIMEOUT_S)
        self.sessions: dict[str, mc.Session] = {}

    def image(self, spec: dict) -> bytes:
        data = (self.base / spec["path"]).read_bytes()
        return data[: spec["truncate"]] if "truncate" in spec else data

    def session(self, step: dict) -> mc.Session:
        name = step["session"]
        if name not in self.sessions:
            raise RuntimeError(f"session {name!r} is not open")
        return self.sessions[name]

    @staticmethod
    def prompt(spec: dict) -> dict:
        return {k: spec[k] for k in PROMPT_KEYS if k in spec}

    def run(self, step: dict) -> dict:
        op = step["op"]
        if op == "model_info":
            info = self.client.model_info()
            return {"name": info.name, "family": info.family, "image_size": int(info.image_size),
                    "memory_tracking": bool(info.memory_tracking), "parameters": int(info.parameters),
                    "checkpoint_bytes": int(info.checkpoint_bytes), "device": info.device}
        if op == "open":
            name = step["session"]
            if name in self.sessions:
                raise RuntimeError(f"session {name!r} is already open")
            kwargs: dict[str, Any] = {}
            if "frame_index" in step:
                kwargs["frame_index"] = step["frame_index"]
            if "image" in step:
                session = self.client.session(self.image(step["image"]), **kwargs)
            elif "resume" in step:
                session = self.client.session(session_id=self.session({"session": step["resume"]}).session_id,
                                              **kwargs)
            else:
                session = self.client.session(session_id=step["session_id"], **kwargs)
            self.sessions[name] = session
            return ready_result(session.ready.raw)
        if op == "predict":
            return masks_result(self.session(step).predict(**self.prompt(step)).raw)
        if op == "set_image":
            kwargs = {"frame_index": step["frame_index"]} if "frame_index" in step else {}
            return ready_result(self.session(step).set_image(self.image(step["image"]), **kwargs).raw)
        if op == "prefetch":
            futures = self.session(step).prefetch([self.image(i) for i in step["images"]])
            images = []
            for future in futures:
                try:
                    images.append(ready_result(future.result(TIMEOUT_S).raw))
                except Exception as e:  # noqa: BLE001
                    images.append({"error": error_entry(e)["error"]})
            return {"images": images}
        if op == "generate":
            generation = self.session(step).generate(**step.get("params", {}))
            masks = [generated_result(g.generated) for g in generation]
            summary = generation.summary.raw
            return {"masks": masks, "summary": {"mask_count": int(summary.mask_count), "width": int(summary.width),
                                                "height": int(summary.height)}}
        if op == "pipeline":
            session = self.session(step)
            futures = []
            for spec in step["prompts"]:
                if spec.get("delay_ms"):
                    time.sleep(spec["delay_ms"] / 1000)
                futures.append(session.submit(**self.prompt(spec)))
            answers = []
            for future in futures:
                try:
                    answers.append(masks_result(future.result(TIMEOUT_S).raw))
                except Exception as e:  # noqa: BLE001
                    answers.append({"error": error_entry(e)["error"]})
            return {"answers": answers}
        if op == "close":
            self.sessions.pop(step["session"]).close()
            return {}
        raise RuntimeError(f"unknown op {op!r}")

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()
        self.client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the conformance scenario with the Python client.")
    parser.add_argument("scenario", type=Path)
    parser.add_argument("--server", required=True, help="host:port of a plaintext mobilesam serve")
    parser.add_argument("--out", required=True, type=Path, help="the results file to write")
    args = parser.parse_args()
    scenario = json.loads(args.scenario.read_text())
    runner = Runner(args.scenario.resolve(), args.server)
    steps = []
    for step in scenario["steps"]:
        entry: dict[str, Any] = {"name": step["name"], "op": step["op"]}
        started = time.monotonic()
        try:
            entry["result"] = runner.run(step)
            outcome = "ok"
        except Exception as e:  # noqa: BLE001  (recorded; the comparator judges)
            entry.update(error_entry(e))
            outcome = entry["error"]
            if entry["error"] == "CLIENT_ERROR":
                traceback.print_exc()
        print(f"python: {step['name']}: {outcome} ({time.monotonic() - started:.2f} s)", file=sys.stderr)
        steps.append(entry)
    runner.close()
    results = {"format": "mobilesam-conformance-results/1", "client": "python", "client_version": mc.__version__,
               "scenario": args.scenario.name, "steps": steps}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
