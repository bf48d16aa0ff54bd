"""Errors user code raises to steer retries, and errors the SDK raises."""

from __future__ import annotations

import datetime as dt

from tether._durations import DurationLike, to_milliseconds


class NonRetriableError(Exception):
    """Raise to fail a step (or the function) at once, without retrying."""


class RetryAfterError(Exception):
    """Raise to retry a step (or the function) after a delay chosen by the code,
    instead of the backoff schedule. ``delay`` is a duration ("30s", a timedelta,
    seconds) or a datetime to retry at."""

    def __init__(self, message: str, delay: DurationLike | dt.datetime) -> None:
        super().__init__(message)
        if isinstance(delay, dt.datetime):
            target = delay if delay.tzinfo else delay.astimezone()
            self.delay_ms = max(0, int((target - dt.datetime.now(dt.UTC)).total_seconds() * 1000))
        else:
            self.delay_ms = to_milliseconds(delay)


class StepError(Exception):
    """A step failed for good (its retries are spent or it raised
    NonRetriableError). Raised where user code awaits the step; catch it to carry on."""

    def __init__(self, step_id: str, name: str, message: str, stack: str = "") -> None:
        super().__init__(f"step {step_id!r} failed: {name}: {message}")
        self.step_id = step_id
        #: The type name of the error the step raised, e.g. ``ValueError``.
        self.name = name
        self.error_message = message
        self.stack = stack


class TetherError(Exception):
    """A call to the control plane failed. ``code`` is the gRPC status name."""

    code = "UNKNOWN"


class InvalidArgumentError(TetherError):
    code = "INVALID_ARGUMENT"


class LimitExceededError(TetherError):
    code = "RESOURCE_EXHAUSTED"


class NotFoundError(TetherError):
    code = "NOT_FOUND"


class FailedPreconditionError(TetherError):
    code = "FAILED_PRECONDITION"


class UnavailableError(TetherError):
    code = "UNAVAILABLE"


class UnauthenticatedError(TetherError):
    code = "UNAUTHENTICATED"


class PermissionDeniedError(TetherError):
    """The API key's role (or its apps) does not allow the call; the message
    names the role it needs."""

    code = "PERMISSION_DENIED"


class ConfigError(TetherError, ValueError):
    """A function's definition is invalid (bad or duplicate id, bad trigger...)."""

    code = "INVALID_ARGUMENT"


class WorkerRejectedError(TetherError):
    """The control plane refused this worker; the reason says why."""

    code = "FAILED_PRECONDITION"
