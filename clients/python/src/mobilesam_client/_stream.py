"""Matching a Segment stream's answers to its requests (shared by Client and AsyncClient).

- Masks, GeneratedMask, GenerateSummary and Errors with a request_id: by request_id.
- ImageReady{prefetched: true}: the prefetch of the same image_sha256 (else the oldest one).
- ImageReady{prefetched: false}: the oldest pending image (answers come in request order);
  with no image pending, a prefetch (a server that does not know `prefetch` answers it as
  a plain SetImage).
- Error{request_id: 0} (about a SetImage): the oldest pending image, else the oldest
  prefetch. The wire does not say which SetImage an error is about, so an error about a
  prefetch that arrives while an image is pending is attributed to the image.
"""

from __future__ import annotations

import collections
import threading
import warnings
from typing import Any, Optional, Protocol

from ._errors import Error, error_for_code
from ._proto import mobilesam_pb2 as pb
from ._types import GeneratedMask, GenerateSummary, ImageReady, Prediction


class Sink(Protocol):
    def set_result(self, result: Any) -> None: ...
    def set_exception(self, exception: BaseException) -> None: ...
    def done(self) -> bool: ...


class GenerationSink(Protocol):
    def put(self, mask: GeneratedMask) -> None: ...
    def finish(self, summary: GenerateSummary) -> None: ...
    def fail(self, error: BaseException) -> None: ...


def _resolve(sink: Sink, result: Any) -> None:
    if not sink.done():
        sink.set_result(result)


def _reject(sink: Sink, error: BaseException) -> None:
    if not sink.done():
        sink.set_exception(error)


class Dispatcher:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._images: collections.deque[Sink] = collections.deque()
        self._prefetches: collections.deque[tuple[str, Sink]] = collections.deque()
        self._prompts: dict[int, Sink] = {}
        self._generations: dict[int, GenerationSink] = {}
        self._next_id = 1
        self.ended: Optional[BaseException] = None

    def next_request_id(self) -> int:
        with self._lock:
            rid = self._next_id
            self._next_id += 1
            return rid

    def pending(self) -> int:
        with self._lock:
            return len(self._images) + len(self._prefetches) + len(self._prompts) + len(self._generations)

    # Registration, before the request is sent.
    def expect_image(self, sink: Sink) -> None:
        with self._lock:
            self._check_open()
            self._images.append(sink)

    def expect_prefetch(self, sha256: str, sink: Sink) -> None:
        with self._lock:
            self._check_open()
            self._prefetches.append((sha256, sink))

    def expect_prompt(self, request_id: int, sink: Sink) -> None:
        with self._lock:
            self._check_open()
            self._prompts[request_id] = sink

    def expect_generation(self, request_id: int, sink: GenerationSink) -> None:
        with self._lock:
            self._check_open()
            self._generations[request_id] = sink

    def forget_image(self, sink: Sink) -> None:
        """Unregister an image whose request could not be sent."""
        with self._lock:
            try:
                self._images.remove(sink)
            except ValueError:
                pass

    def _check_open(self) -> None:
        if self.ended is not None:
            raise self.ended

    # Answers.
    def on_response(self, response: pb.SegmentResponse) -> None:
        kind = response.WhichOneof("response")
        if kind == "image_ready":
            self._on_image_ready(response.image_ready)
        elif kind == "masks":
            with self._lock:
                sink = self._prompts.pop(response.masks.request_id, None)
            if sink is None:
                self._stray(f"masks for unknown request {response.masks.request_id}")
            else:
                _resolve(sink, Prediction(response.masks))
        elif kind == "error":
            self._on_error(response.error)
        elif kind == "generated_mask":
            with self._lock:
                gen = self._generations.get(response.generated_mask.request_id)
            if gen is None:
                self._stray(f"generated mask for unknown request {response.generated_mask.request_id}")
            else:
                gen.put(GeneratedMask(response.generated_mask))
        elif kind == "generate_summary":
            with self._lock:
                gen = self._generations.pop(response.generate_summary.request_id, None)
            if gen is None:
                self._stray(f"generate summary for unknown request {response.generate_summary.request_id}")
            else:
                gen.finish(GenerateSummary(response.generate_summary))
        else:
            self._stray(f"an answer this client does not know ({kind})")

    def _on_image_ready(self, message: pb.ImageReady) -> None:
        with self._lock:
            sink = None
            if not message.prefetched and self._images:
                sink = self._images.popleft()
            elif self._prefetches:
                match = next((i for i, (sha, _) in enumerate(self._prefetches)
                              if sha == message.image_sha256), 0)
                sink = self._prefetches[match][1]
                del self._prefetches[match]
            elif self._images:
                sink = self._images.popleft()
        if sink is None:
            self._stray("an ImageReady nothing waits for")
        else:
            _resolve(sink, ImageReady(message))

    def _on_error(self, message: pb.Error) -> None:
        error = error_for_code(message.code, message.message, message.request_id)
        with self._lock:
            sink: Any = None
            gen = None
            if message.request_id:
                sink = self._prompts.pop(message.request_id, None)
                if sink is None:
                    gen = self._generations.pop(message.request_id, None)
            elif self._images:
                sink = self._images.popleft()
            elif self._prefetches:
                sink = self._prefetches.popleft()[1]
        if sink is not None:
            _reject(sink, error)
        elif gen is not None:
            gen.fail(error)
        else:
            self._stray(f"an error nothing waits for: {error}")

    def on_end(self, error: BaseException) -> None:
        """The stream ended: every pending request fails with `error`."""
        with self._lock:
            if self.ended is None:
                self.ended = error
            sinks = list(self._images) + [s for _, s in self._prefetches] + list(self._prompts.values())
            gens = list(self._generations.values())
            self._images.clear()
            self._prefetches.clear()
            self._prompts.clear()
            self._generations.clear()
        for sink in sinks:
            _reject(sink, error)
        for gen in gens:
            gen.fail(error)

    @staticmethod
    def _stray(what: str) -> None:
        warnings.warn(f"mobilesam_client: the server sent {what}", RuntimeWarning, stacklevel=3)


def ended_error(error: Optional[Error], closed_by_client: bool) -> Error:
    """The error pending requests get when the stream ends."""
    from ._errors import SessionClosed, Unavailable

    if error is not None:
        return error
    if closed_by_client:
        return SessionClosed("the session is closed")
    return Unavailable("the server ended the stream")
