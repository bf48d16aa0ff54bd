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


class WorkerRejected(EngineError):
    """A worker's Hello was refused; ``code`` says why (see RejectCode)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
