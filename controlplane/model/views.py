"""Runs, steps, history and events as read back, with filters and pages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from controlplane.model.events import SkippedRun, StoredEvent
from controlplane.model.outcomes import CronTick, ErrorData
from controlplane.model.statuses import HistoryKind, RunStatus, StepKind, StepStatus

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RunSummary:
    id: str
    app_id: str
    function_id: str
    status: RunStatus
    event_id: str
    attempt: int
    created_at_ms: int
    started_at_ms: int
    ended_at_ms: int
    output: bytes | None
    error: ErrorData | None
    replay_of: str
    trace_id: str
    parent_run_id: str = ""


@dataclass(frozen=True, slots=True)
class StepRecord:
    step_id: str
    name: str
    kind: StepKind
    status: StepStatus
    output: bytes | None
    error: ErrorData | None
    attempts: int
    started_at_ms: int
    ended_at_ms: int
    child_run_id: str = ""
    waiting_for: str = ""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    ts_ms: int
    kind: HistoryKind
    step_id: str = ""
    step_name: str = ""
    attempt: int = 0
    error: ErrorData | None = None
    until_ms: int = 0
    message: str = ""
    execution_id: str = ""
    # When the attempt began, for step failures (ts_ms is when it was recorded).
    started_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class RunDetail:
    run: RunSummary
    events: list[StoredEvent]
    steps: list[StepRecord]
    history: list[HistoryEntry]


@dataclass(frozen=True, slots=True)
class RunFilter:
    app_id: str = ""
    function_id: str = ""
    statuses: tuple[RunStatus, ...] = ()
    created_after_ms: int = 0
    created_before_ms: int = 0


@dataclass(frozen=True, slots=True)
class EventFilter:
    name: str = ""
    received_after_ms: int = 0
    received_before_ms: int = 0


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_token: str = ""


@dataclass(slots=True)
class EventDetail:
    event: StoredEvent
    runs: list[RunSummary] = field(default_factory=list)
    skipped: list[SkippedRun] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RunState:
    """What the engine needs of a run to apply outcomes to it."""

    run_id: str
    app_id: str
    function_id: str
    status: RunStatus
    attempt: int
    event_pk: str | None
    trace_id: str
    root_span_id: str
    created_at_ms: int
    started_at_ms: int | None
    parent_run_id: str | None = None
    cancelled_execution_id: str | None = None
    ended_at_ms: int | None = None
    #: The tick, for a run a cron schedule started.
    cron: CronTick | None = None
