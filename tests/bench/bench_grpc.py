"""What the server benchmarks share: Python stubs of proto/ made on the fly, and one
`Segment` stream driven request by request, counting the protobuf bytes both ways (HTTP/2 and
gRPC framing excluded)."""

import importlib
import queue
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def stubs():
    """(mobilesam_pb2, mobilesam_pb2_grpc) generated from proto/ into a temp dir."""
    from grpc_tools import protoc

    out = tempfile.mkdtemp()
    proto_root = ROOT / "proto"
    assert protoc.main(["protoc", f"-I{proto_root}", f"--python_out={out}", f"--grpc_python_out={out}",
                        str(proto_root / "mobilesam/v1/mobilesam.proto")]) == 0
    sys.path.insert(0, out)
    return (importlib.import_module("mobilesam.v1.mobilesam_pb2"),
            importlib.import_module("mobilesam.v1.mobilesam_pb2_grpc"))


class Stream:
    """One `Segment` stream: `ask` sends a request and waits for its answer."""

    def __init__(self, pb2, stub):
        self.pb2 = pb2
        self.requests = queue.Queue()
        self.answers = stub.Segment(iter(self.requests.get, None))
        self.sent = self.received = 0

    def ask(self, **request):
        message = self.pb2.SegmentRequest(**request)
        self.sent += message.ByteSize()
        self.requests.put(message)
        answer = next(self.answers)
        self.received += answer.ByteSize()
        if answer.WhichOneof("response") == "error":
            raise RuntimeError(answer.error.message)
        return answer

    def close(self):
        self.requests.put(None)
