"""The asyncio client: AsyncClient and AsyncSession, on grpc.aio (same API, awaited)."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Awaitable, Callable, Generator, Iterable, Optional, Sequence, TypeVar

import grpc
import grpc.aio

from ._common import (TLS, Retry, call_metadata, channel_options, check_timeout, credentials,
                      generate_request, set_image_message, sha256_hex)
from ._errors import DeadlineExceeded, Error, SessionClosed, Unavailable, error_from_rpc
from ._images import image_bytes
from ._prompts import build_generate_params, build_prompt
from ._proto import mobilesam_pb2 as pb
from ._proto import mobilesam_pb2_grpc as pb_grpc
from ._stream import Dispatcher, ended_error
from ._types import GeneratedMask, GenerateSummary, ImageReady, Prediction

__all__ = ["AsyncClient", "AsyncSession", "AsyncGeneration"]

T = TypeVar("T")


async def _wait(future: "Awaitable[T]", timeout: Optional[float]) -> T:
    try:
        return await asyncio.wait_for(asyncio.shield(future), timeout)
    except asyncio.TimeoutError:
        raise DeadlineExceeded(f"no answer within {timeout} s") from None


class AsyncGeneration:
    """Segment-everything masks as they arrive: `async for mask in generation`; `summary`
    is set once the iteration ends."""

    def __init__(self, timeout: Optional[float] = None,
                 start: Optional[Callable[[], Awaitable[None]]] = None) -> None:
        self._queue: "asyncio.Queue[tuple[str, Any]]" = asyncio.Queue()
        self._timeout = timeout
        self._start = start
        self._finished = False
        self.summary: Optional[GenerateSummary] = None

    def put(self, mask: GeneratedMask) -> None:
        self._queue.put_nowait(("mask", mask))

    def finish(self, summary: GenerateSummary) -> None:
        self._queue.put_nowait(("summary", summary))

    def fail(self, error: BaseException) -> None:
        self._queue.put_nowait(("error", error))

    def __aiter__(self) -> "AsyncGeneration":
        return self

    async def _next(self) -> tuple[str, Any]:
        try:
            return await asyncio.wait_for(self._queue.get(), self._timeout)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(f"no generated mask within {self._timeout} s") from None

    async def __anext__(self) -> GeneratedMask:
        if self._finished:
            raise StopAsyncIteration
        try:
            if self._start is not None:
                start, self._start = self._start, None
                await start()
            kind, value = await self._next()
        except BaseException:
            self._finished = True
            raise
        if kind == "mask":
            return value
        self._finished = True
        if kind == "summary":
            self.summary = value
            raise StopAsyncIteration
        raise value

    async def masks(self) -> list[GeneratedMask]:
        """Every mask (waits for the summary)."""
        return [m async for m in self]


class _RpcGeneration(AsyncGeneration):
    def __init__(self, call: Any) -> None:
        super().__init__()
        self._call = call

    async def _next(self) -> tuple[str, Any]:
        try:
            response = await self._call.read()
        except grpc.RpcError as e:
            return ("error", error_from_rpc(e))
        if response is grpc.aio.EOF:
            return ("error", Error("the server ended GenerateMasks without a summary"))
        if response.WhichOneof("response") == "summary":
            return ("summary", GenerateSummary(response.summary))
        return ("mask", GeneratedMask(response.mask))

    def cancel(self) -> None:
        self._call.cancel()


class AsyncSession:
    """One Segment stream on grpc.aio; the API of Session, awaited. Opened by
    `await client.session(...)` or `async with client.session(...) as s`."""

    def __init__(self, client: "AsyncClient", timeout: Optional[float]) -> None:
        self._client = client
        self._timeout = timeout
        self.ready: ImageReady

    async def _open(self, request: pb.SetImage) -> "AsyncSession":
        delays = self._client.retry.delays()
        for attempt in range(len(delays) + 1):
            self._start()
            try:
                self.ready = await self._image(request, self._timeout)
                return self
            except Unavailable:
                await self._abort()
                if attempt == len(delays):
                    raise
                await asyncio.sleep(delays[attempt])
            except BaseException:
                await self._abort()
                raise
        raise AssertionError("unreachable")

    def _start(self) -> None:
        self._dispatcher = Dispatcher()
        self._send_lock = asyncio.Lock()
        self._closing = False
        self._call = self._client._stub.Segment(metadata=self._client._metadata)
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        error: Optional[Error] = None
        try:
            while True:
                response = await self._call.read()
                if response is grpc.aio.EOF:
                    break
                self._dispatcher.on_response(response)
        except asyncio.CancelledError:
            error = SessionClosed("the session is closed")
        except grpc.RpcError as e:
            error = SessionClosed("the session is closed") if self._closing and \
                e.code() == grpc.StatusCode.CANCELLED else error_from_rpc(e)
        except Exception as e:  # noqa: BLE001
            error = Error(f"reading the stream failed: {e!r}")
        self._dispatcher.on_end(ended_error(error, self._closing))

    async def _abort(self) -> None:
        self._closing = True
        self._call.cancel()
        try:
            await asyncio.wait_for(self._reader, 10)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass

    async def _send(self, request: pb.SegmentRequest, register: Callable[[], None],
                    sink: "Optional[asyncio.Future[Any]]" = None) -> None:
        """Registers the request's sink, then writes it. When the write fails, the stream is
        over: every pending request fails, and this one's error is raised here (and marked
        retrieved on its future, which nobody awaits)."""
        try:
            await self._write(request, register)
        except BaseException:
            if sink is not None and sink.done() and not sink.cancelled():
                sink.exception()
            raise

    async def _write(self, request: pb.SegmentRequest, register: Callable[[], None]) -> None:
        async with self._send_lock:
            if self._closing:
                raise SessionClosed("the session is closed")
            register()
            try:
                await self._call.write(request)
            except grpc.RpcError as e:
                failed: BaseException = error_from_rpc(e)
                self._dispatcher.on_end(failed)
                raise failed from None
            except asyncio.InvalidStateError:
                failed = self._dispatcher.ended or SessionClosed("the stream has ended")
                self._dispatcher.on_end(failed)
                raise failed from None

    async def _image(self, message: pb.SetImage, timeout: Optional[float]) -> ImageReady:
        future: "asyncio.Future[ImageReady]" = asyncio.get_running_loop().create_future()
        await self._send(pb.SegmentRequest(set_image=message), lambda: self._dispatcher.expect_image(future), future)
        return await _wait(future, timeout)

    def _timeout_or(self, timeout: Optional[float]) -> Optional[float]:
        return self._timeout if timeout is None else check_timeout(timeout)

    @property
    def session_id(self) -> str:
        return self.ready.session_id

    @property
    def closed(self) -> bool:
        return self._closing or self._dispatcher.ended is not None

    async def submit(self, points: Any = None, labels: Any = None, boxes: Any = None, *,
                     multimask: bool = False, polygons: bool = False, logits: bool = False, track: bool = False,
                     object_ids: Optional[Sequence[int]] = None, mask_input: Any = None,
                     supersede: bool = False) -> "asyncio.Future[Prediction]":
        """Sends a prompt and returns (once sent) a Future of its Prediction, for pipelining."""
        request_id = self._dispatcher.next_request_id()
        prompt = build_prompt(request_id, points=points, labels=labels, boxes=boxes, multimask=multimask,
                              logits=logits, polygons=polygons, track=track, object_ids=object_ids,
                              mask_input=mask_input, supersede=supersede)
        future: "asyncio.Future[Prediction]" = asyncio.get_running_loop().create_future()
        await self._send(pb.SegmentRequest(prompt=prompt), lambda: self._dispatcher.expect_prompt(request_id, future),
                         future)
        return future

    async def predict(self, points: Any = None, labels: Any = None, boxes: Any = None, *,
                      multimask: bool = False, polygons: bool = False, logits: bool = False, track: bool = False,
                      object_ids: Optional[Sequence[int]] = None, mask_input: Any = None,
                      supersede: bool = False, timeout: Optional[float] = None) -> Prediction:
        """Masks for a prompt on the current image (Session.predict's arguments). Concurrent
        predict() calls are pipelined on the stream."""
        future = await self.submit(points, labels, boxes, multimask=multimask, polygons=polygons, logits=logits,
                                   track=track, object_ids=object_ids, mask_input=mask_input, supersede=supersede)
        return await _wait(future, self._timeout_or(timeout))

    async def set_image(self, image: Any = None, *, frame_index: Optional[int] = None,
                        sha256: Optional[str] = None, timeout: Optional[float] = None) -> ImageReady:
        """Replaces the session's image (the next video frame); `tracked` on the answer."""
        message = set_image_message(image, sha256=sha256, frame_index=frame_index, allow_session_id=False)
        self.ready = await self._image(message, self._timeout_or(timeout))
        return self.ready

    async def prefetch(self, images: Iterable[Any], *, wait: bool = False,
                       timeout: Optional[float] = None) -> "list[Any]":
        """Background encodes: Futures of ImageReady{prefetched}, or the answers with wait=True."""
        messages = []
        for i, image in enumerate(images):
            data = image_bytes(image, f"images[{i}]")
            messages.append((sha256_hex(data), pb.SetImage(image=data, prefetch=True)))
        loop = asyncio.get_running_loop()
        futures: "list[asyncio.Future[ImageReady]]" = []
        for sha, message in messages:
            future: "asyncio.Future[ImageReady]" = loop.create_future()
            await self._send(pb.SegmentRequest(set_image=message),
                             lambda s=sha, f=future: self._dispatcher.expect_prefetch(s, f),  # type: ignore[misc]
                             future)
            futures.append(future)
        if not wait:
            return futures
        limit = self._timeout_or(timeout)
        return [await _wait(f, limit) for f in futures]

    def generate(self, *, timeout: Optional[float] = None, **params: Any) -> AsyncGeneration:
        """Segment everything in the current image: `async for mask in s.generate(...)` (the
        request is sent when the iteration starts); `summary` once it ends."""
        message = build_generate_params(params)

        async def start() -> None:
            request_id = self._dispatcher.next_request_id()
            request = pb.SegmentRequest(generate_masks=pb.GenerateMasks(request_id=request_id, params=message))
            await self._send(request, lambda: self._dispatcher.expect_generation(request_id, generation))

        generation = AsyncGeneration(self._timeout_or(timeout), start)
        return generation

    async def untrack(self, object_ids: Optional[Sequence[int]] = None) -> None:
        ids = [] if object_ids is None else [int(i) for i in object_ids]
        await self._send(pb.SegmentRequest(untrack=pb.Untrack(object_ids=ids)), lambda: None)

    async def close(self, timeout: Optional[float] = 30.0) -> None:
        """Ends the stream after every sent request is answered (the session stays cached)."""
        async with self._send_lock:
            if self._closing:
                return
            self._closing = True
            try:
                await self._call.done_writing()
            except (grpc.RpcError, asyncio.InvalidStateError):
                pass
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        except asyncio.TimeoutError:
            self._call.cancel()
            await asyncio.wait_for(self._reader, 10)

    async def __aenter__(self) -> "AsyncSession":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if exc[0] is None:
            await self.close()
        else:
            await self._abort()


class _Opening:
    """`await client.session(...)` or `async with client.session(...) as s`."""

    def __init__(self, session: AsyncSession, request: pb.SetImage) -> None:
        self._session = session
        self._request = request

    def __await__(self) -> Generator[Any, None, AsyncSession]:
        return self._session._open(self._request).__await__()

    async def __aenter__(self) -> AsyncSession:
        return await self._session._open(self._request)

    async def __aexit__(self, *exc: Any) -> None:
        await self._session.__aexit__(*exc)


class AsyncClient:
    """Client's API on grpc.aio: `async with AsyncClient("localhost:50051") as client`.
    Create it inside the event loop that uses it."""

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
        self._channel = (grpc.aio.secure_channel(target, creds, opts) if creds is not None
                         else grpc.aio.insecure_channel(target, opts))
        self._stub = pb_grpc.SegmentAnythingStub(self._channel)

    async def _unary(self, method: Callable[..., Any], request: Any, timeout: Optional[float]) -> Any:
        delays = self.retry.delays()
        for attempt in range(len(delays) + 1):
            try:
                return await method(request, timeout=timeout, metadata=self._metadata)
            except grpc.RpcError as e:
                error = error_from_rpc(e)
                if not isinstance(error, Unavailable) or attempt == len(delays):
                    raise error from None
            await asyncio.sleep(delays[attempt])
        raise AssertionError("unreachable")

    async def model_info(self, *, timeout: Optional[float] = None) -> pb.ModelInfo:
        return await self._unary(self._stub.GetModelInfo, pb.GetModelInfoRequest(),
                                 check_timeout(timeout) or self.timeout)

    def session(self, image: Any = None, *, session_id: Optional[str] = None, sha256: Optional[str] = None,
                frame_index: Optional[int] = None, timeout: Optional[float] = None) -> _Opening:
        """Opens a session (Client.session's arguments); await it or use `async with`."""
        message = set_image_message(image, session_id=session_id, sha256=sha256, frame_index=frame_index)
        return _Opening(AsyncSession(self, check_timeout(timeout) or self.timeout), message)

    def generate(self, image: Any = None, *, session_id: Optional[str] = None,
                 timeout: Optional[float] = None, **params: Any) -> AsyncGeneration:
        """Segment everything (GenerateMasks RPC): `async for mask in client.generate(...)`."""
        request = generate_request(image, session_id, params)
        call = self._stub.GenerateMasks(request, timeout=check_timeout(timeout) or self.timeout,
                                        metadata=self._metadata)
        return _RpcGeneration(call)

    async def close_session(self, session_id: str, *, timeout: Optional[float] = None) -> bool:
        response = await self._unary(self._stub.CloseSession, pb.CloseSessionRequest(session_id=session_id),
                                     check_timeout(timeout) or self.timeout)
        return bool(response.closed)

    async def untrack(self, session_id: str, object_ids: Optional[Sequence[int]] = None, *,
                      timeout: Optional[float] = None) -> list[int]:
        request = pb.UntrackRequest(session_id=session_id,
                                    untrack=pb.Untrack(object_ids=[int(i) for i in object_ids or []]))
        response = await self._unary(self._stub.Untrack, request, check_timeout(timeout) or self.timeout)
        return list(response.object_ids)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
