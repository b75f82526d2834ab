#!/usr/bin/env python3
"""Compares conformance results files (README.md): the first is the reference, every other
must equal it step by step (RLE counts byte for byte, float32 bits exactly). With
--scenario, each file's steps must also be the scenario's and meet its expectations.

    python tests/conformance/compare.py --scenario tests/conformance/scenario.json a.json b.json

Exit 0 when everything agrees; 1 with one line per difference or unmet expectation.
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path
from typing import Any, Iterator

HEX_DIGITS = set("0123456789abcdef")


def describe(value: Any) -> str:
    """A value for a message; an F32 hex string also as its decimal value."""
    if isinstance(value, str) and len(value) == 8 and set(value) <= HEX_DIGITS:
        return f"{value} ({struct.unpack('>f', bytes.fromhex(value))[0]!r})"
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def differences(a: Any, b: Any, path: str) -> Iterator[str]:
    """Every place where `b` differs from `a` (JSON values), as 'path: a != b'."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key == "message":
                continue  # free text
            sub = f"{path}.{key}" if path else key
            if key not in b:
                yield f"{sub}: missing in the second file"
            elif key not in a:
                yield f"{sub}: missing in the first file"
            else:
                yield from differences(a[key], b[key], sub)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{path}: {len(a)} items != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, f"{path}[{i}]")
    elif isinstance(a, str) and isinstance(b, str) and a != b and max(len(a), len(b)) > 40:
        i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        lo = max(0, i - 10)
        yield (f"{path}: strings differ at offset {i} (lengths {len(a)} and {len(b)}): "
               f"...{a[lo:i + 20]!r} != ...{b[lo:i + 20]!r}")
    elif type(a) is not type(b) or a != b:
        yield f"{path}: {describe(a)} != {describe(b)}"


def outcome(entry: dict) -> str:
    return entry.get("error", "ok") if "result" not in entry else "ok"


def check_expectations(step: dict, entry: dict, by_name: dict) -> list[str]:
    """The unmet expectations of one step (README "Expectations")."""
    expect = step.get("expect", {})
    problems = []
    want_error = expect.get("error")
    got = outcome(entry)
    if want_error:
        if got != want_error:
            problems.append(f"expected error {want_error}, got {got}")
        return problems
    if got != "ok":
        problems.append(f"expected a result, got error {got} ({entry.get('message', '')})")
        return problems
    result = entry["result"]
    if "frame_index" in expect and result.get("frame_index") != expect["frame_index"]:
        problems.append(f"expected frame_index {expect['frame_index']}, got {result.get('frame_index')}")
    if expect.get("prefetched"):
        flags = [i.get("prefetched", i.get("error")) for i in result.get("images", [])]
        if not flags or any(f is not True for f in flags):
            problems.append(f"expected every image prefetched, got {flags}")
    if "answers" in expect:
        got_answers = [outcome({"result": 1} if "objects" in a else a) for a in result.get("answers", [])]
        if got_answers != expect["answers"]:
            problems.append(f"expected answers {expect['answers']}, got {got_answers}")
    if "tracked_ids" in expect:
        ids = [o.get("object_id") for o in result.get("tracked", [])]
        if ids != expect["tracked_ids"]:
            problems.append(f"expected tracked ids {expect['tracked_ids']}, got {ids}")
    if "same_as" in expect:
        other = by_name.get(expect["same_as"], {})
        diff = list(differences(other.get("result"), result, "result"))
        if diff:
            problems.append(f"expected the result of step {expect['same_as']!r}: {diff[0]}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description="Compare conformance results files.")
    parser.add_argument("--scenario", type=Path, help="also check the scenario's steps and expectations")
    parser.add_argument("results", nargs="+", type=Path)
    args = parser.parse_args()

    files = []
    for path in args.results:
        data = json.loads(path.read_text())
        if data.get("format") != "mobilesam-conformance-results/1":
            print(f"{path}: not a results file (format {data.get('format')!r})")
            return 1
        files.append((data.get("client") or path.stem, data))
    failures = 0
    names = [client for client, _ in files]

    # Every file against the first.
    ref_client, ref = files[0]
    ref_steps = ref["steps"]
    for client, data in files[1:]:
        steps = data["steps"]
        ref_names = [s["name"] for s in ref_steps]
        got_names = [s["name"] for s in steps]
        if ref_names != got_names:
            print(f"{client}: steps {got_names} != {ref_client}'s {ref_names}")
            failures += 1
        for a, b in zip(ref_steps, steps):
            if a["name"] != b["name"]:
                continue
            diff = list(differences(a, b, ""))
            if diff:
                failures += 1
                more = f" (and {len(diff) - 1} more)" if len(diff) > 1 else ""
                print(f"step {a['name']!r} ({ref_client} vs {client}): {diff[0]}{more}")

    # Expectations, per file.
    met = unmet = 0
    if args.scenario:
        scenario = json.loads(args.scenario.read_text())
        wanted = [s["name"] for s in scenario["steps"]]
        for client, data in files:
            by_name = {s["name"]: s for s in data["steps"]}
            if [s["name"] for s in data["steps"]] != wanted:
                print(f"{client}: its steps are not the scenario's: {[s['name'] for s in data['steps']]}")
                failures += 1
            for step in scenario["steps"]:
                entry = by_name.get(step["name"])
                problems = ["no entry"] if entry is None else check_expectations(step, entry, by_name)
                if problems:
                    unmet += 1
                    for p in problems:
                        print(f"step {step['name']!r} ({client}): {p}")
                else:
                    met += 1
    steps = len(ref_steps)
    verdict = "identical" if failures == 0 else f"{failures} difference(s)"
    summary = f"conformance: {len(files)} client(s) ({', '.join(names)}), {steps} steps, {verdict}"
    if args.scenario:
        summary += f"; expectations: {met} met, {unmet} unmet"
    print(summary)
    return 0 if failures == 0 and unmet == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
