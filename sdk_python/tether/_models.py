"""What the SDK hands to user code and returns from the admin API."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    """An event. ``data`` is a JSON object; ``id`` deduplicates within 24 hours."""

    name: str
    data: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    user: dict[str, Any] | None = None
    #: When it happened, in milliseconds since the epoch (0: when received).
    ts: int = 0


@dataclass(frozen=True, slots=True)
class CronTick:
    """The cron tick that started a run (``ctx.cron``)."""

    #: The cron expression, as declared, for example ``0 9 * * *``.
    schedule: str
    #: Its IANA time zone; empty for UTC.
    timezone: str
    #: When the tick was due (UTC), not when the run started: a tick caught up
    #: after downtime keeps its time.
    scheduled_at: dt.datetime


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SLEEPING = "sleeping"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_finished(self) -> bool:
        return self in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    name: str
    message: str
    stack: str = ""


@dataclass(frozen=True, slots=True)
class StepInfo:
    """A step of a run as stored: its result, attempts and timing."""

    #: The step id as written in code, with its ``:n`` suffix when repeated.
    id: str
    #: The hashed id used on the wire.
    hashed_id: str
    kind: str
    #: completed, failed, retrying or pending.
    status: str
    output: Any
    error: ErrorInfo | None
    attempts: int
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    #: For step.invoke: the child run.
    child_run_id: str = ""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    at: dt.datetime
    #: For example ``execution.started``, ``step.failed``, ``sleep.started``.
    kind: str
    step_id: str = ""
    attempt: int = 0
    error: ErrorInfo | None = None
    until: dt.datetime | None = None
    message: str = ""
    #: When the attempt began, for ``step.failed`` entries.
    started_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    app_id: str
    function_id: str
    status: RunStatus
    event_id: str
    attempt: int
    created_at: dt.datetime
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    #: The function's return value, once completed.
    output: Any
    #: The error once failed (the reason once cancelled).
    error: ErrorInfo | None
    replay_of: str
    trace_id: str
    #: The run that invoked this one (step.invoke), if any.
    parent_run_id: str = ""
    #: Filled in by ``runs.get``; empty in listings.
    steps: list[StepInfo] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RunPage:
    runs: list[Run]
    #: Pass to ``runs.list(page_token=...)`` for the next page; empty on the last.
    next_page_token: str


@dataclass(frozen=True, slots=True)
class SkippedRun:
    """A function an event matched but did not start, and why."""

    app_id: str
    function_id: str
    reason: str
    existing_run_id: str = ""


@dataclass(frozen=True, slots=True)
class SendResult:
    event_id: str
    #: True when the same event id was already received in the last 24 hours.
    duplicate: bool
    #: The runs this event started.
    run_ids: list[str]
    #: Functions the event matched but did not start (idempotency), and why.
    skipped: list[SkippedRun] = field(default_factory=list)
    #: Runs waiting for this event (``wait_for_event``) that it resumed (a run
    #: that reached its wait but had not suspended yet is not listed; it still
    #: gets the event).
    resumed_run_ids: list[str] = field(default_factory=list)
    #: Runs it cancelled through their function's ``cancel_on``.
    cancelled_run_ids: list[str] = field(default_factory=list)
