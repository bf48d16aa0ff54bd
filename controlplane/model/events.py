"""Events as sent and stored, and what sending them did."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class EventInput:
    """An event as sent; ``id`` empty means "assign one"."""

    id: str
    name: str
    data: bytes
    user: bytes
    ts_ms: int


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: str
    name: str
    data: bytes
    user: bytes
    ts_ms: int
    received_at_ms: int


@dataclass(frozen=True, slots=True)
class SkippedRun:
    """A function an event matched but did not start."""

    app_id: str
    function_id: str
    reason: str
    existing_run_id: str = ""


@dataclass(frozen=True, slots=True)
class SendResult:
    event_id: str
    duplicate: bool
    run_ids: list[str]
    skipped: list[SkippedRun] = field(default_factory=list)
    #: Runs waiting for the event that it resumed.
    resumed_run_ids: list[str] = field(default_factory=list)
    #: Runs it cancelled through cancel_on.
    cancelled_run_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class EventLink:
    """What a run's span says of the event that started it."""

    event_id: str
    name: str
    traceparent: str | None
