"""The blocking client: Client and Session (one Segment stream)."""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, TypeVar

import grpc

from ._common import (TLS, Retry, call_metadata, channel_options, check_timeout, credentials,
                      generate_request, set_image_message, sha256_hex)
from ._errors import DeadlineExceeded, Error, SessionClosed, Unavailable, error_from_rpc
from ._images import image_bytes
from ._prompts import build_generate_params, build_prompt
from ._proto import mobilesam_pb2 as pb
from ._proto import mobilesam_pb2_grpc as pb_grpc
from ._stream import Dispatcher, ended_error
from ._types import GeneratedMask, GenerateSummary, ImageReady, Prediction

__all__ = ["Client", "Session", "Generation"]

T = TypeVar("T")
_END = object()


def _wait(future: "concurrent.futures.Future[T]", timeout: Optional[float]) -> T:
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        raise DeadlineExceeded(f"no answer within {timeout} s") from None


class Generation:
    """Segment-everything masks as they arrive: iterate for GeneratedMask; `summary` is set
    once the iteration ends."""

    def __init__(self, timeout: Optional[float] = None) -> None:
        self._queue: "queue.Queue[tuple[str, Any]]" = queue.Queue()
        self._timeout = timeout
        self._finished = False
        self.summary: Optional[GenerateSummary] = None

    # GenerationSink
    def put(self, mask: GeneratedMask) -> None:
        self._queue.put(("mask", mask))

    def finish(self, summary: GenerateSummary) -> None:
        self._queue.put(("summary", summary))

    def fail(self, error: BaseException) -> None:
        self._queue.put(("error", error))

    def __iter__(self) -> Iterator[GeneratedMask]:
        return self

    def __next__(self) -> GeneratedMask:
        if self._finished:
            raise StopIteration
        try:
            kind, value = self._queue.get(timeout=self._timeout)
        except queue.Empty:
            self._finished = True
            raise DeadlineExceeded(f"no generated mask within {self._timeout} s") from None
        if kind == "mask":
            return value
        self._finished = True
        if kind == "summary":
            self.summary = value
            raise StopIteration
        raise value

    def masks(self) -> list[GeneratedMask]:
        """Every mask (waits for the summary)."""
        return list(self)


class _RpcGeneration(Generation):
    """A Generation fed by the GenerateMasks RPC."""

    def __init__(self, call: Any) -> None:
        super().__init__()
        self._call = call

    def __next__(self) -> GeneratedMask:
        if self._finished:
            raise StopIteration
        try:
            response = next(self._call)
        except StopIteration:
            self._finished = True
            raise
        except grpc.RpcError as e:
            self._finished = True
            raise error_from_rpc(e) from None
        if response.WhichOneof("response") == "summary":
            self._finished = True
            self.summary = GenerateSummary(response.summary)
            raise StopIteration
        return GeneratedMask(response.mask)

    def cancel(self) -> None:
        self._call.cancel()


class Session:
    """One Segment stream: an image (the session's embedding), then prompts, frames,
    generations. Use it as a context manager, or call close(). Opened by Client.session().
    Methods may be called from several threads; answers are matched to requests."""

    def __init__(self, client: "Client", request: pb.SetImage, timeout: Optional[float]) -> None:
        self._client = client
        self._timeout = timeout
        delays = client.retry.delays()
        for attempt in range(len(delays) + 1):
            self._start()
            try:
                self.ready: ImageReady = self._image(request, timeout)
                return
            except Unavailable:
                self._abort()
                if attempt == len(delays):
                    raise
                time.sleep(delays[attempt])
            except BaseException:
                self._abort()
                raise

    # The stream.
    def _start(self) -> None:
        self._dispatcher = Dispatcher()
        self._requests: "queue.Queue[Any]" = queue.Queue()
        self._send_lock = threading.Lock()
        self._closing = False

        def requests() -> Iterator[pb.SegmentRequest]:
            while True:
                item = self._requests.get()
                if item is _END:
                    return
                yield item

        self._call = self._client._stub.Segment(requests(), metadata=self._client._metadata)
        self._reader = threading.Thread(target=self._read, name="mobilesam-session-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        error: Optional[Error] = None
        try:
            for response in self._call:
                self._dispatcher.on_response(response)
        except grpc.RpcError as e:
            error = SessionClosed("the session is closed") if self._closing and \
                e.code() == grpc.StatusCode.CANCELLED else error_from_rpc(e)
        except Exception as e:  # noqa: BLE001  (a bug here must not hang the callers)
            error = Error(f"reading the stream failed: {e!r}")
        self._dispatcher.on_end(ended_error(error, self._closing))

    def _abort(self) -> None:
        self._closing = True
        self._requests.put(_END)
        self._call.cancel()
        self._reader.join(timeout=10)

    def _send(self, request: pb.SegmentRequest, register: Callable[[], None]) -> None:
        with self._send_lock:
            if self._closing:
                raise SessionClosed("the session is closed")
            register()
            self._requests.put(request)

    def _image(self, message: pb.SetImage, timeout: Optional[float]) -> ImageReady:
        future: "concurrent.futures.Future[ImageReady]" = concurrent.futures.Future()
        self._send(pb.SegmentRequest(set_image=message), lambda: self._dispatcher.expect_image(future))
        ready = _wait(future, timeout)
        return ready

    def _timeout_or(self, timeout: Optional[float]) -> Optional[float]:
        return self._timeout if timeout is None else check_timeout(timeout)

    # Public API.
    @property
    def session_id(self) -> str:
        """The server's id of this session: Client.session(session_id=...) resumes it."""
        return self.ready.session_id

    @property
    def closed(self) -> bool:
        return self._closing or self._dispatcher.ended is not None

    def submit(self, points: Any = None, labels: Any = None, boxes: Any = None, *, multimask: bool = False,
               polygons: bool = False, logits: bool = False, track: bool = False,
               object_ids: Optional[Sequence[int]] = None, mask_input: Any = None,
               supersede: bool = False) -> "concurrent.futures.Future[Prediction]":
        """Sends a prompt without waiting: a Future of its Prediction (pipelining; the answers
        come in request order). Same arguments as predict()."""
        request_id = self._dispatcher.next_request_id()
        prompt = build_prompt(request_id, points=points, labels=labels, boxes=boxes, multimask=multimask,
                              logits=logits, polygons=polygons, track=track, object_ids=object_ids,
                              mask_input=mask_input, supersede=supersede)
        future: "concurrent.futures.Future[Prediction]" = concurrent.futures.Future()
        self._send(pb.SegmentRequest(prompt=prompt), lambda: self._dispatcher.expect_prompt(request_id, future))
        return future

    def predict(self, points: Any = None, labels: Any = None, boxes: Any = None, *, multimask: bool = False,
                polygons: bool = False, logits: bool = False, track: bool = False,
                object_ids: Optional[Sequence[int]] = None, mask_input: Any = None, supersede: bool = False,
                timeout: Optional[float] = None) -> Prediction:
        """Masks for a prompt on the current image.

        points, labels, boxes: nested as Ultralytics / the command line (`[x, y]`, `[[x, y], ...]`
        one object per point, `[[[x, y], ...], ...]` several points per object; labels alike;
        boxes `[x1, y1, x2, y2]` or a list; points and boxes pair object by object).
        multimask: three masks per object. polygons: fill Mask.polygons. logits: fill
        Mask.low_res_logits. track: follow the objects (object_ids, one per object) on the
        next frames. mask_input: per object, 256x256 float32 logits (or None).
        supersede: latest wins (prompts still queued before it raise mc.Superseded).
        """
        future = self.submit(points, labels, boxes, multimask=multimask, polygons=polygons, logits=logits,
                             track=track, object_ids=object_ids, mask_input=mask_input, supersede=supersede)
        return _wait(future, self._timeout_or(timeout))

    def set_image(self, image: Any = None, *, frame_index: Optional[int] = None, sha256: Optional[str] = None,
                  timeout: Optional[float] = None) -> ImageReady:
        """Replaces the session's image (the next video frame): bytes, a path or an (H, W, 3)
        uint8 array; or sha256= of an image the server has (e.g. prefetched). The answer's
        `tracked` holds the tracked objects' masks on this frame."""
        message = set_image_message(image, sha256=sha256, frame_index=frame_index, allow_session_id=False)
        self.ready = self._image(message, self._timeout_or(timeout))
        return self.ready

    def prefetch(self, images: Iterable[Any], *, wait: bool = False,
                 timeout: Optional[float] = None) -> "list[Any]":
        """Encodes images in the background (the server's lowest lane) without changing the
        current image. Returns a Future of an ImageReady{prefetched} per image, or with
        wait=True the ImageReady answers themselves."""
        messages = []
        for i, image in enumerate(images):
            data = image_bytes(image, f"images[{i}]")
            messages.append((sha256_hex(data), pb.SetImage(image=data, prefetch=True)))
        futures: "list[concurrent.futures.Future[ImageReady]]" = []
        for sha, message in messages:
            future: "concurrent.futures.Future[ImageReady]" = concurrent.futures.Future()
            self._send(pb.SegmentRequest(set_image=message),
                       lambda s=sha, f=future: self._dispatcher.expect_prefetch(s, f))  # type: ignore[misc]
            futures.append(future)
        if not wait:
            return futures
        limit = self._timeout_or(timeout)
        return [_wait(f, limit) for f in futures]

    def generate(self, *, timeout: Optional[float] = None, **params: Any) -> Generation:
        """Segment everything in the current image: an iterator of GeneratedMask, then
        `.summary`. Parameters are GenerateParams' fields (points_per_side=16, ...)."""
        message = build_generate_params(params)
        request_id = self._dispatcher.next_request_id()
        generation = Generation(self._timeout_or(timeout))
        self._send(pb.SegmentRequest(generate_masks=pb.GenerateMasks(request_id=request_id, params=message)),
                   lambda: self._dispatcher.expect_generation(request_id, generation))
        return generation

    def untrack(self, object_ids: Optional[Sequence[int]] = None) -> None:
        """Stops following objects (all when None). The stream sends no answer."""
        ids = [] if object_ids is None else [int(i) for i in object_ids]
        self._send(pb.SegmentRequest(untrack=pb.Untrack(object_ids=ids)), lambda: None)

    def close(self, timeout: Optional[float] = 30.0) -> None:
        """Ends the stream after every sent request is answered (the session stays cached on
        the server: resume it by session_id)."""
        with self._send_lock:
            if self._closing:
                return
            self._closing = True
            self._requests.put(_END)
        self._reader.join(timeout)
        if self._reader.is_alive():
            self._call.cancel()
            self._reader.join(10)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._abort()

    def __repr__(self) -> str:
        return f"Session({self.session_id!r}, {self.ready.width}x{self.ready.height}{', closed' if self.closed else ''})"


class Client:
    """A connection to `mobilesam serve`.

    target: "host:port". tls: None (plaintext), True (system roots), a CA certificate (PEM
    bytes or a file path) or grpc.ChannelCredentials. token: the server's bearer token.
    timeout: default seconds to wait for an answer (None: no limit). retry: retries on
    UNAVAILABLE when opening a session and for unary calls (mobilesam_client.Retry).
    options: extra gRPC channel options; metadata: extra metadata on every call.
    """

    def __init__(self, target: str, *, tls: TLS = None, token: Optional[str] = None,
                 timeout: Optional[float] = None, retry: Optional[Retry] = None,
                 options: Optional[Sequence[tuple[str, Any]]] = None,
                 metadata: Optional[Sequence[tuple[str, str]]] = None) -> None:
        if not isinstance(target, str) or not target:
            raise ValueError(f"target must be 'host:port', found {target!r}")
        self.target = target
        self.timeout = check_timeout(timeout)
        self.retry = retry or Retry()
        self._metadata = call_metadata(token, metadata)
        creds = credentials(tls)
        opts = channel_options(self.retry, options)
        self._channel = (grpc.secure_channel(target, creds, opts) if creds is not None
                         else grpc.insecure_channel(target, opts))
        self._stub = pb_grpc.SegmentAnythingStub(self._channel)

    def _unary(self, method: Callable[..., T], request: Any, timeout: Optional[float]) -> T:
        delays = self.retry.delays()
        for attempt in range(len(delays) + 1):
            try:
                return method(request, timeout=timeout, metadata=self._metadata)
            except grpc.RpcError as e:
                error = error_from_rpc(e)
                if not isinstance(error, Unavailable) or attempt == len(delays):
                    raise error from None
            time.sleep(delays[attempt])
        raise AssertionError("unreachable")

    def model_info(self, *, timeout: Optional[float] = None) -> pb.ModelInfo:
        """The served model (the ModelInfo message: name, family, parameters, device, ...)."""
        return self._unary(self._stub.GetModelInfo, pb.GetModelInfoRequest(),
                           check_timeout(timeout) or self.timeout)

    def session(self, image: Any = None, *, session_id: Optional[str] = None, sha256: Optional[str] = None,
                frame_index: Optional[int] = None, timeout: Optional[float] = None) -> Session:
        """Opens a session on a new stream: with an image (bytes, a path or an (H, W, 3) uint8
        array), or resuming a cached session by session_id=, or on the embedding of an image
        the server has by sha256=. Retries on UNAVAILABLE."""
        message = set_image_message(image, session_id=session_id, sha256=sha256, frame_index=frame_index)
        return Session(self, message, check_timeout(timeout) or self.timeout)

    def generate(self, image: Any = None, *, session_id: Optional[str] = None,
                 timeout: Optional[float] = None, **params: Any) -> Generation:
        """Segment everything in an image, or a cached session's image (GenerateMasks RPC)."""
        request = generate_request(image, session_id, params)
        call = self._stub.GenerateMasks(request, timeout=check_timeout(timeout) or self.timeout,
                                        metadata=self._metadata)
        return _RpcGeneration(call)

    def close_session(self, session_id: str, *, timeout: Optional[float] = None) -> bool:
        """Drops a cached session; False when the server had no such session."""
        response = self._unary(self._stub.CloseSession, pb.CloseSessionRequest(session_id=session_id),
                               check_timeout(timeout) or self.timeout)
        return response.closed

    def untrack(self, session_id: str, object_ids: Optional[Sequence[int]] = None, *,
                timeout: Optional[float] = None) -> list[int]:
        """Stops following objects of a session (all when None): the ids that were tracked."""
        request = pb.UntrackRequest(session_id=session_id,
                                    untrack=pb.Untrack(object_ids=[int(i) for i in object_ids or []]))
        return list(self._unary(self._stub.Untrack, request, check_timeout(timeout) or self.timeout).object_ids)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
