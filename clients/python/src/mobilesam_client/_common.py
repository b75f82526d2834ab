"""What Client and AsyncClient share: channel settings, retries, request building."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
from typing import Any, Optional, Sequence, Union

import grpc

from ._images import image_bytes
from ._prompts import build_generate_params
from ._proto import mobilesam_pb2 as pb

MAX_MESSAGE_BYTES = 64 << 20

TLS = Union[None, bool, bytes, str, "os.PathLike[str]", grpc.ChannelCredentials]


@dataclasses.dataclass(frozen=True)
class Retry:
    """Retries of a call that failed with UNAVAILABLE (opening a session, model_info,
    close_session, untrack): up to `attempts` tries in all, waiting `initial_backoff`
    seconds after the first failure, then `multiplier` times longer each time, at most
    `max_backoff`, each wait jittered by +-`jitter` of itself. `Retry(attempts=1)`: no retry."""

    attempts: int = 5
    initial_backoff: float = 0.25
    max_backoff: float = 4.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"Retry.attempts must be at least 1, found {self.attempts}")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("Retry backoffs must be >= 0 and the multiplier >= 1")

    def delays(self) -> list[float]:
        """The waits between the attempts."""
        out, delay = [], self.initial_backoff
        for _ in range(self.attempts - 1):
            d = min(delay, self.max_backoff)
            out.append(max(0.0, d * (1 + random.uniform(-self.jitter, self.jitter))))
            delay *= self.multiplier
        return out


def channel_options(retry: Retry, options: Optional[Sequence[tuple[str, Any]]]) -> list[tuple[str, Any]]:
    """Default channel options (64 MiB messages; reconnect backoff no longer than the retry's,
    so a retry after a wait finds the channel trying again), then the caller's."""
    ms = int(max(retry.max_backoff, 0.1) * 1000)
    base = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.initial_reconnect_backoff_ms", min(ms, max(int(retry.initial_backoff * 1000), 100))),
        ("grpc.min_reconnect_backoff_ms", min(ms, max(int(retry.initial_backoff * 1000), 100))),
        ("grpc.max_reconnect_backoff_ms", ms),
    ]
    given = list(options or [])
    names = {name for name, _ in given}
    return [o for o in base if o[0] not in names] + given


def credentials(tls: TLS) -> Optional[grpc.ChannelCredentials]:
    """Channel credentials: None for plaintext; True: TLS with the system's roots; bytes:
    a CA certificate (PEM); a str or path: a file with one; or grpc.ChannelCredentials
    (e.g. grpc.ssl_channel_credentials(root, key, chain) for mutual TLS)."""
    if tls is None or tls is False:
        return None
    if tls is True:
        return grpc.ssl_channel_credentials()
    if isinstance(tls, grpc.ChannelCredentials):
        return tls
    if isinstance(tls, bytes):
        return grpc.ssl_channel_credentials(root_certificates=tls)
    if isinstance(tls, (str, os.PathLike)):
        try:
            with open(os.fspath(tls), "rb") as f:
                return grpc.ssl_channel_credentials(root_certificates=f.read())
        except OSError as e:
            raise ValueError(f"tls: cannot read the CA certificate {os.fspath(tls)!r}: {e.strerror or e}") from e
    raise ValueError(f"tls must be True, a CA certificate (PEM bytes or a file path) or grpc.ChannelCredentials, "
                     f"found {type(tls).__name__}")


def call_metadata(token: Optional[str], metadata: Optional[Sequence[tuple[str, str]]]) -> tuple[tuple[str, str], ...]:
    out = list(metadata or [])
    if token is not None:
        token = token.strip()
        if not token or any(c.isspace() for c in token):
            raise ValueError("token must be a non-empty string without spaces")
        out.append(("authorization", f"Bearer {token}"))
    return tuple(out)


def set_image_message(image: Any = None, *, session_id: Optional[str] = None, sha256: Optional[str] = None,
                      frame_index: Optional[int] = None, prefetch: bool = False,
                      allow_session_id: bool = True) -> pb.SetImage:
    """A SetImage from exactly one of an image, a session id or an image SHA-256."""
    given = [name for name, v in (("image", image), ("session_id", session_id), ("sha256", sha256)) if v is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of an image, session_id= or sha256=" +
                         (f", found {' and '.join(given)}" if given else ""))
    message = pb.SetImage(prefetch=prefetch)
    if image is not None:
        message.image = image_bytes(image)
    elif session_id is not None:
        if not allow_session_id:
            raise ValueError("session_id= opens a session: use client.session(session_id=...)")
        if not isinstance(session_id, str) or not session_id:
            raise ValueError(f"session_id must be a non-empty string, found {session_id!r}")
        message.session_id = session_id
    else:
        if not isinstance(sha256, str) or len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"sha256 must be 64 lowercase hex digits, found {sha256!r}")
        message.image_sha256 = sha256
    if frame_index is not None:
        if isinstance(frame_index, bool) or not isinstance(frame_index, int) or not -2**63 <= frame_index < 2**63:
            raise ValueError(f"frame_index must be an integer (int64), found {frame_index!r}")
        message.frame_index = frame_index
    return message


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_timeout(timeout: Optional[float]) -> Optional[float]:
    if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds or None, found {timeout!r}")
    return timeout


def generate_request(image: Any, session_id: Optional[str], params: dict[str, Any]) -> pb.GenerateMasksRequest:
    """The GenerateMasks request of `generate(...)`: exactly one of an image or a session id."""
    if (image is None) == (session_id is None):
        raise ValueError("give exactly one of an image or session_id=")
    request = pb.GenerateMasksRequest(params=build_generate_params(params))
    if image is not None:
        request.image = image_bytes(image)
    else:
        request.session_id = session_id  # type: ignore[assignment]
    return request
