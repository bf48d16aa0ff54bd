"""A run's timeline: one bar per step attempt, sleep, wait and invoke, on a time
axis, built from its step records and history (what the UI draws)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from controlplane.model import (
    ErrorData,
    HistoryEntry,
    HistoryKind,
    RunDetail,
    StepKind,
    StepStatus,
)


class BarStatus(enum.StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    #: A sleep, wait or invoke not over yet.
    WAITING = "waiting"
    #: A wait for an event that ended without one.
    TIMED_OUT = "timed_out"
    #: A sleep, wait or invoke the run ended during (cancelled, timed out).
    INTERRUPTED = "interrupted"


_STARTED = {
    HistoryKind.SLEEP_STARTED: StepKind.SLEEP,
    HistoryKind.WAIT_STARTED: StepKind.WAIT_FOR_EVENT,
    HistoryKind.INVOKE_STARTED: StepKind.INVOKE,
}


@dataclass(frozen=True, slots=True)
class TimelineBar:
    step_id: str
    name: str
    kind: StepKind
    #: 0 for the first attempt.
    attempt: int
    status: BarStatus
    started_at_ms: int
    #: 0 while it has not ended.
    ended_at_ms: int
    #: When a sleep or wait is planned to end (0 if it is not).
    until_ms: int = 0
    error: ErrorData | None = None
    #: A retry of this attempt is due then (0 if none).
    retry_at_ms: int = 0


def build_timeline(detail: RunDetail) -> list[TimelineBar]:
    """The run's bars, in order of their start."""
    failures: dict[str, list[TimelineBar]] = {}
    timed_out: set[str] = set()
    planned_until: dict[str, int] = {}
    started: dict[str, HistoryEntry] = {}
    for entry in detail.history:
        if entry.kind is HistoryKind.STEP_FAILED:
            attempts = failures.setdefault(entry.step_id, [])
            attempts.append(
                TimelineBar(
                    step_id=entry.step_id,
                    name=entry.step_name,
                    kind=StepKind.RUN,
                    attempt=max(entry.attempt - 1, len(attempts)),
                    status=BarStatus.FAILED,
                    started_at_ms=entry.started_at_ms or entry.ts_ms,
                    ended_at_ms=entry.ts_ms,
                    error=entry.error,
                    retry_at_ms=entry.until_ms,
                )
            )
        elif entry.kind is HistoryKind.WAIT_ENDED and entry.message == "timed out":
            timed_out.add(entry.step_id)
        elif entry.kind in _STARTED:
            started.setdefault(entry.step_id, entry)
            planned_until[entry.step_id] = entry.until_ms

    bars: list[TimelineBar] = []
    for step in detail.steps:
        if step.kind is StepKind.RUN:
            bars.extend(failures.get(step.step_id, []))
            if step.status is StepStatus.COMPLETED:
                bars.append(
                    TimelineBar(
                        step_id=step.step_id,
                        name=step.name,
                        kind=step.kind,
                        attempt=max(step.attempts - 1, 0),
                        status=BarStatus.COMPLETED,
                        started_at_ms=step.started_at_ms,
                        ended_at_ms=step.ended_at_ms,
                    )
                )
            continue
        if step.status is StepStatus.PENDING:
            status, ended, until = BarStatus.WAITING, 0, step.ended_at_ms
        else:
            ended = step.ended_at_ms
            until = planned_until.get(step.step_id, 0)
            if step.status is StepStatus.FAILED:
                status = BarStatus.FAILED
            elif step.step_id in timed_out:
                status = BarStatus.TIMED_OUT
            else:
                status = BarStatus.COMPLETED
        bars.append(
            TimelineBar(
                step_id=step.step_id,
                name=step.name,
                kind=step.kind,
                attempt=0,
                status=status,
                started_at_ms=step.started_at_ms,
                ended_at_ms=ended,
                until_ms=until,
                error=step.error,
            )
        )
    # A run that ended during a sleep, wait or invoke keeps no step row for it.
    run = detail.run
    if run.status.is_terminal:
        recorded = {step.step_id for step in detail.steps}
        bars.extend(
            TimelineBar(
                step_id=entry.step_id,
                name=entry.step_name,
                kind=_STARTED[entry.kind],
                attempt=0,
                status=BarStatus.INTERRUPTED,
                started_at_ms=entry.ts_ms,
                ended_at_ms=max(run.ended_at_ms, entry.ts_ms),
                until_ms=entry.until_ms,
            )
            for step_id, entry in started.items()
            if step_id not in recorded
        )
    # Stable: bars that start in the same millisecond keep the order of their steps.
    bars.sort(key=lambda bar: bar.started_at_ms)
    return bars
