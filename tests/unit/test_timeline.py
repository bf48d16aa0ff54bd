"""A run's timeline: bars per step attempt, sleep, wait and invoke."""

from __future__ import annotations

from dataclasses import replace

from controlplane.engine.timeline import BarStatus, build_timeline
from controlplane.model import (
    ErrorData,
    HistoryEntry,
    HistoryKind,
    RunDetail,
    RunStatus,
    RunSummary,
    StepKind,
    StepRecord,
    StepStatus,
)


def _run() -> RunSummary:
    return RunSummary(
        id="r",
        app_id="a",
        function_id="f",
        status=RunStatus.WAITING,
        event_id="e",
        attempt=0,
        created_at_ms=1,
        started_at_ms=1,
        ended_at_ms=0,
        output=None,
        error=None,
        replay_of="",
        trace_id="0" * 31 + "1",
    )


def _step(step_id: str, kind: StepKind, status: StepStatus, start: int, end: int) -> StepRecord:
    return StepRecord(
        step_id=step_id,
        name=step_id,
        kind=kind,
        status=status,
        output=None,
        error=ErrorData("InvokeTimeout", "late") if status is StepStatus.FAILED else None,
        attempts=2 if kind is StepKind.RUN else 0,
        started_at_ms=start,
        ended_at_ms=end,
    )


def test_bars_for_attempts_sleeps_waits_and_invokes() -> None:
    boom = ErrorData("ValueError", "boom")
    detail = RunDetail(
        run=_run(),
        events=[],
        steps=[
            _step("charge", StepKind.RUN, StepStatus.COMPLETED, 30, 35),
            _step("nap", StepKind.SLEEP, StepStatus.COMPLETED, 40, 1_040),
            _step("approval", StepKind.WAIT_FOR_EVENT, StepStatus.COMPLETED, 1_050, 2_050),
            _step("child", StepKind.INVOKE, StepStatus.FAILED, 2_060, 3_060),
            _step("reply", StepKind.WAIT_FOR_EVENT, StepStatus.PENDING, 3_070, 9_000),
        ],
        history=[
            HistoryEntry(
                ts_ms=12,
                kind=HistoryKind.STEP_FAILED,
                step_id="charge",
                step_name="charge",
                attempt=1,
                error=boom,
                until_ms=30,
                started_at_ms=10,
            ),
            HistoryEntry(ts_ms=40, kind=HistoryKind.SLEEP_STARTED, step_id="nap", until_ms=1_040),
            HistoryEntry(
                ts_ms=2_050,
                kind=HistoryKind.WAIT_ENDED,
                step_id="approval",
                message="timed out",
            ),
        ],
    )
    bars = build_timeline(detail)
    assert [(b.name, b.attempt, b.status) for b in bars] == [
        ("charge", 0, BarStatus.FAILED),
        ("charge", 1, BarStatus.COMPLETED),
        ("nap", 0, BarStatus.COMPLETED),
        ("approval", 0, BarStatus.TIMED_OUT),
        ("child", 0, BarStatus.FAILED),
        ("reply", 0, BarStatus.WAITING),
    ]
    failed, _, nap, _, child, reply = bars
    assert (failed.started_at_ms, failed.ended_at_ms, failed.retry_at_ms) == (10, 12, 30)
    assert failed.error == boom
    assert (nap.started_at_ms, nap.ended_at_ms, nap.until_ms) == (40, 1_040, 1_040)
    assert child.error is not None
    assert child.error.name == "InvokeTimeout"
    assert (reply.ended_at_ms, reply.until_ms) == (0, 9_000)


def test_a_run_ended_during_a_sleep_shows_it_interrupted() -> None:
    cancelled = replace(_run(), status=RunStatus.CANCELLED, ended_at_ms=500)
    detail = RunDetail(
        run=cancelled,
        events=[],
        steps=[],
        history=[
            HistoryEntry(
                ts_ms=100,
                kind=HistoryKind.SLEEP_STARTED,
                step_id="h",
                step_name="nap",
                until_ms=9_000,
            ),
        ],
    )
    [bar] = build_timeline(detail)
    assert (bar.name, bar.kind, bar.status) == ("nap", StepKind.SLEEP, BarStatus.INTERRUPTED)
    assert (bar.started_at_ms, bar.ended_at_ms, bar.until_ms) == (100, 500, 9_000)
    # While the run is unfinished, the pending step row is the bar (none from history).
    assert build_timeline(replace(detail, run=_run())) == []
