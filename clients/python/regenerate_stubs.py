#!/usr/bin/env python3
"""Regenerates the protobuf and gRPC stubs that ship in the package, from the contract
proto/mobilesam/v1/mobilesam.proto, or checks (--check) that the committed ones are current.

The stubs are committed so that `pip install ./clients/python` needs no protoc. They are
generated with the grpcio-tools version pinned in requirements-dev.txt (the generated code
names the protobuf and grpcio versions it needs: the package's lower bounds follow them):

    python -m venv /tmp/v && /tmp/v/bin/pip install -r clients/python/requirements-dev.txt
    /tmp/v/bin/python clients/python/regenerate_stubs.py          # rewrite the stubs
    /tmp/v/bin/python clients/python/regenerate_stubs.py --check  # exit 1 when stale

The generated gRPC module imports `mobilesam.v1.mobilesam_pb2` (protoc's layout); it is
rewritten to a relative import so the package owns no top-level `mobilesam` module. The
descriptor keeps its path `mobilesam/v1/mobilesam.proto`, as every other client's does.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PROTO_ROOT = ROOT / "proto"
PROTO = PROTO_ROOT / "mobilesam" / "v1" / "mobilesam.proto"
OUT = HERE / "src" / "mobilesam_client" / "_proto"
FILES = ("mobilesam_pb2.py", "mobilesam_pb2.pyi", "mobilesam_pb2_grpc.py")
PINNED_TOOLS = "1.85.1"


def generate() -> dict[str, str]:
    """The stub files' text, as they should be committed."""
    try:
        import grpc_tools
        from grpc_tools import protoc
    except ImportError:
        sys.exit("grpcio-tools is missing: pip install -r clients/python/requirements-dev.txt")
    from importlib.metadata import version

    if version("grpcio-tools") != PINNED_TOOLS:
        sys.exit(f"grpcio-tools {version('grpcio-tools')} found; the stubs are made with {PINNED_TOOLS} "
                 "(requirements-dev.txt)")
    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={tmp}",
                f"--pyi_out={tmp}", f"--grpc_python_out={tmp}", str(PROTO)]
        if protoc.main(args) != 0:
            sys.exit("protoc failed")
        generated = Path(tmp) / "mobilesam" / "v1"
        texts = {name: (generated / name).read_text() for name in FILES}
    grpc_text = texts["mobilesam_pb2_grpc.py"]
    absolute = "from mobilesam.v1 import mobilesam_pb2 as mobilesam_dot_v1_dot_mobilesam__pb2"
    if absolute not in grpc_text:
        sys.exit("unexpected import in the generated gRPC module: update regenerate_stubs.py")
    texts["mobilesam_pb2_grpc.py"] = grpc_text.replace(
        absolute, "from . import mobilesam_pb2 as mobilesam_dot_v1_dot_mobilesam__pb2")
    return texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed stubs are stale")
    args = parser.parse_args()
    texts = generate()
    stale = []
    for name, text in texts.items():
        path = OUT / name
        current = path.read_text() if path.exists() else ""
        if current != text:
            stale.append(name)
            if args.check:
                diff = difflib.unified_diff(current.splitlines(), text.splitlines(), f"committed/{name}",
                                            f"generated/{name}", lineterm="", n=1)
                print("\n".join(list(diff)[:40]))
            else:
                path.write_text(text)
    if args.check:
        if stale:
            print(f"stale stubs: {', '.join(stale)}; run python clients/python/regenerate_stubs.py",
                  file=sys.stderr)
            return 1
        print(f"stubs current with {PROTO.relative_to(ROOT)}")
    else:
        print(f"wrote {', '.join(stale) or 'nothing (already current)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
