"""What a write changed, for the event loop to act on once it is committed."""

from __future__ import annotations

from dataclasses import dataclass, field

from controlplane.model import (
    ClaimRecord,
    ErrorData,
    EventLink,
    EventSpanRecord,
    RunSpanRecord,
    RunState,
    RunStatus,
    StepSpanRecord,
    WaitSpanRecord,
)


@dataclass(slots=True)
class Effects:
    # Runs whose state changed (run watchers are told).
    changed_runs: set[str] = field(default_factory=set)
    # Something became due now (new runs, resolved waits): wake the dispatcher.
    wake: bool = False
    # Runs cancelled, with the execution that held each one's lease (to be told).
    cancelled: list[tuple[str, str | None]] = field(default_factory=list)
    # For the observer (traces, metrics) and the log: events stored, runs
    # claimed, step attempts and waits that ended, runs that finished.
    event_spans: list[EventSpanRecord] = field(default_factory=list)
    claims: list[ClaimRecord] = field(default_factory=list)
    step_spans: list[StepSpanRecord] = field(default_factory=list)
    wait_spans: list[WaitSpanRecord] = field(default_factory=list)
    run_spans: list[RunSpanRecord] = field(default_factory=list)
    # The earliest run deadline (timeouts) this write set, for the dispatcher.
    deadline_ms: int | None = None

    def note_deadline(self, at_ms: int) -> None:
        if self.deadline_ms is None or at_ms < self.deadline_ms:
            self.deadline_ms = at_ms

    def merge(self, other: Effects) -> None:
        self.changed_runs |= other.changed_runs
        self.wake = self.wake or other.wake
        self.cancelled.extend(other.cancelled)
        self.event_spans.extend(other.event_spans)
        self.claims.extend(other.claims)
        self.step_spans.extend(other.step_spans)
        self.wait_spans.extend(other.wait_spans)
        self.run_spans.extend(other.run_spans)
        if other.deadline_ms is not None:
            self.note_deadline(other.deadline_ms)


def run_span(
    state: RunState,
    status: RunStatus,
    ended_at_ms: int,
    error: ErrorData | None,
    link: EventLink | None,
) -> RunSpanRecord:
    """The record of a run that ended; ``link``: the event that started it."""
    return RunSpanRecord(
        trace_id=state.trace_id,
        root_span_id=state.root_span_id,
        run_id=state.run_id,
        app_id=state.app_id,
        function_id=state.function_id,
        status=status,
        created_at_ms=state.created_at_ms,
        ended_at_ms=ended_at_ms,
        error=error,
        event_id=link.event_id if link else "",
        event_name=link.name if link else "",
        event_traceparent=link.traceparent if link else None,
    )
