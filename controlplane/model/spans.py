"""Trace and metric records: what the engine hands its observer after a commit."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.model.outcomes import ErrorData
from controlplane.model.statuses import RunStatus, StepKind


@dataclass(frozen=True, slots=True)
class StepSpanRecord:
    trace_id: str
    root_span_id: str
    run_id: str
    app_id: str
    function_id: str
    step_id: str
    name: str
    kind: StepKind
    # 0-based: the first attempt is 0.
    attempt: int
    started_at_ms: int
    ended_at_ms: int
    error: ErrorData | None = None


@dataclass(frozen=True, slots=True)
class RunSpanRecord:
    trace_id: str
    root_span_id: str
    run_id: str
    app_id: str
    function_id: str
    status: RunStatus
    created_at_ms: int
    ended_at_ms: int
    error: ErrorData | None = None
    # The event that started the run: its id, name and span (a W3C
    # traceparent; None for a run no event started or an event without one).
    event_id: str = ""
    event_name: str = ""
    event_traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class WaitSpanRecord:
    """A sleep, event wait or invoke that ended."""

    # The run's root span (W3C traceparent).
    run_traceparent: str
    run_id: str
    step_id: str
    name: str
    kind: StepKind
    started_at_ms: int
    ended_at_ms: int
    # A wait or invoke ran out of time (a sleep never does).
    timed_out: bool = False
    # The event that resolved an event wait; the child run of an invoke.
    event_id: str = ""
    child_run_id: str = ""
    # An invoke whose child failed or timed out: the step fails.
    error: ErrorData | None = None


@dataclass(frozen=True, slots=True)
class EventSpanRecord:
    """An event stored by a send."""

    # The event's own span (W3C traceparent), as stored with the event.
    traceparent: str
    # The sender's span, when the sender propagated one.
    parent_traceparent: str | None
    event_id: str
    name: str
    received_at_ms: int
    run_count: int = 0


@dataclass(frozen=True, slots=True)
class ClaimRecord:
    """A run leased to a worker for one execution."""

    app_id: str
    function_id: str
    # How long after the queue item was due it was claimed.
    lag_ms: int
    # The run's first execution: it starts.
    first: bool
