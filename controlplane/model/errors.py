"""Errors the engine raises; the API layer maps each to a gRPC status code."""

from __future__ import annotations


class EngineError(Exception):
    """Base class. ``str(error)`` is the sentence shown to the caller."""


class InvalidArgument(EngineError):
    """The request is malformed (INVALID_ARGUMENT)."""


class LimitExceeded(EngineError):
    """The request is over a size or count limit (RESOURCE_EXHAUSTED)."""


class NotFound(EngineError):
    """The thing asked for does not exist (NOT_FOUND)."""


class FailedPrecondition(EngineError):
    """The request is valid but not in the current state (FAILED_PRECONDITION)."""


class ProtocolError(InvalidArgument):
    """A worker broke the stream protocol after its Hello was accepted (an
    outcome with no kind, a seq that does not increase...): its stream ends with
    INVALID_ARGUMENT and this sentence, and nothing of the offending frame is
    applied."""


class Unavailable(EngineError):
    """Try again later (UNAVAILABLE). On the worker stream: the control plane
    closed it, and the worker should reconnect."""


class Internal(EngineError):
    """The control plane failed unexpectedly (INTERNAL)."""


class WorkerRejected(EngineError):
    """A worker's Hello was refused; ``code`` says why (see RejectCode)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
