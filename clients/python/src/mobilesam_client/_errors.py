"""Errors: one `Error` subclass per gRPC status code, each carrying the code."""

from __future__ import annotations

from typing import Optional

import grpc

__all__ = [
    "Error", "Cancelled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
    "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Superseded",
    "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
    "Unauthenticated", "SessionClosed", "error_for_code", "error_from_rpc",
]


class Error(Exception):
    """A request the server (or the transport) refused or could not answer.

    `code` is the `grpc.StatusCode`, `message` the server's text, `request_id` the prompt's
    or generation's request id on a stream (0 for images and for unary calls).
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, code: Optional[grpc.StatusCode] = None, request_id: int = 0) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class Cancelled(Error):
    code = grpc.StatusCode.CANCELLED


class Unknown(Error):
    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(Error):
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(Error):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(Error):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(Error):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(Error):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(Error):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(Error):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Superseded(Error):
    """ABORTED: a prompt sent before a `supersede=True` prompt was dropped unanswered."""

    code = grpc.StatusCode.ABORTED


Aborted = Superseded


class OutOfRange(Error):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(Error):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(Error):
    code = grpc.StatusCode.INTERNAL


class Unavailable(Error):
    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(Error):
    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(Error):
    code = grpc.StatusCode.UNAUTHENTICATED


class SessionClosed(Cancelled):
    """The session's stream was closed by this client; it takes no more requests."""


_BY_CODE: dict[grpc.StatusCode, type[Error]] = {
    cls.code: cls
    for cls in (Cancelled, Unknown, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists,
                PermissionDenied, ResourceExhausted, FailedPrecondition, Superseded, OutOfRange,
                Unimplemented, Internal, Unavailable, DataLoss, Unauthenticated)
}
_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def status_code(number: int) -> grpc.StatusCode:
    """The `grpc.StatusCode` of a google.rpc.Code number (UNKNOWN for an unknown one)."""
    return _BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def error_for_code(code: "grpc.StatusCode | int", message: str, request_id: int = 0) -> Error:
    """The `Error` subclass instance for a status code (a `grpc.StatusCode` or its number)."""
    if isinstance(code, int):
        code = status_code(code)
    cls = _BY_CODE.get(code, Error)
    return cls(message, code=code, request_id=request_id)


def error_from_rpc(error: grpc.RpcError) -> Error:
    """The `Error` for a failed call (`grpc.RpcError` or `grpc.aio.AioRpcError`)."""
    code = getattr(error, "code", None)
    details = getattr(error, "details", None)
    status = code() if callable(code) else grpc.StatusCode.UNKNOWN
    message = (details() if callable(details) else None) or str(error)
    return error_for_code(status or grpc.StatusCode.UNKNOWN, message)
