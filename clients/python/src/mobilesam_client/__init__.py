"""Python client for mobilesam-serve (MobileSAM / Segment Anything over gRPC).

    import mobilesam_client as mc

    with mc.Client("localhost:50051") as client:
        with client.session("photo.jpg") as s:
            r = s.predict(points=[320, 240])
            mask = r.objects[0].masks[0].array   # numpy bool (H, W)

`mc.AsyncClient` is the same API on grpc.aio. Errors the server answers raise `mc.Error`
subclasses carrying the gRPC code (`mc.InvalidArgument`, `mc.NotFound`, `mc.Superseded`
for ABORTED, ...); bad arguments raise ValueError before anything is sent. The wire
messages are in `mc.pb` (mobilesam.v1) and the stub in `mc.pb_grpc`.
"""

from ._aio import AsyncClient, AsyncGeneration, AsyncSession
from ._client import Client, Generation, Session
from ._common import Retry
from ._errors import (Aborted, AlreadyExists, Cancelled, DataLoss, DeadlineExceeded, Error,
                      FailedPrecondition, Internal, InvalidArgument, NotFound, OutOfRange,
                      PermissionDenied, ResourceExhausted, SessionClosed, Superseded, Unauthenticated,
                      Unavailable, Unimplemented, Unknown)
from ._images import encode_png
from ._prompts import build_objects, build_prompt
from ._proto import mobilesam_pb2 as pb
from ._proto import mobilesam_pb2_grpc as pb_grpc
from ._rle import decode as decode_rle
from ._rle import encode as encode_rle
from ._types import (EmbeddingSource, GeneratedMask, GenerateSummary, ImageReady, Mask, ObjectResult,
                     Polygon, Prediction, TrackState)
from ._version import __version__

__all__ = [
    "__version__", "Client", "Session", "Generation", "AsyncClient", "AsyncSession", "AsyncGeneration",
    "Retry", "Error", "Cancelled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
    "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Superseded",
    "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
    "SessionClosed", "Mask", "ObjectResult", "Prediction", "ImageReady", "GeneratedMask",
    "GenerateSummary", "Polygon", "TrackState", "EmbeddingSource", "decode_rle", "encode_rle",
    "encode_png", "build_objects", "build_prompt", "pb", "pb_grpc",
]
