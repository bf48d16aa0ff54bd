"""Cancelling and replaying runs."""

from __future__ import annotations

from typing import Any

from controlplane.engine.errors import FailedPrecondition, NotFound
from controlplane.engine.ids import new_ulid
from controlplane.engine.ingest import new_run_row, queue_row
from controlplane.engine.models import (
    ErrorData,
    FunctionKey,
    HistoryKind,
    ReplayMode,
    RunSpanRecord,
    RunStatus,
    RunSummary,
)
from controlplane.store import codec
from controlplane.store.schema import history, queue, runs, steps
from controlplane.store.tx import WriteTx

CANCELLED_ERROR = "Cancelled"


def cancel_run(
    tx: WriteTx, run_id: str, reason: str, now_ms: int
) -> tuple[RunSummary, str | None, RunSpanRecord]:
    """Cancel a run; returns it, the execution that held its lease (if any), and
    its span record."""
    # Lock the queue row before reading the run: a control plane applying this
    # run's last outcome holds that lock, so the status read next is final.
    queued = tx.queue_row(run_id)
    row = tx.run_row(run_id)
    if row is None:
        raise NotFound(f"run {run_id!r} not found")
    status = RunStatus(row.status)
    if status.is_terminal:
        raise FailedPrecondition(f"run {run_id!r} already finished ({status.value})")
    holder = queued.lease_execution_id if queued is not None else None
    error = ErrorData(CANCELLED_ERROR, reason)
    tx.update_runs(
        [
            {
                "b_id": run_id,
                "b_status": RunStatus.CANCELLED.value,
                "b_attempt": row.attempt,
                "b_output": None,
                "b_error": codec.encode_error(error),
                "b_ended_at_ms": now_ms,
                "b_now": now_ms,
            }
        ]
    )
    tx.delete_queue_rows([run_id])
    tx.delete_waits_of([run_id])
    tx.insert_rows(
        history,
        [codec.history_row(run_id, now_ms, HistoryKind.RUN_CANCELLED, message=reason)],
    )
    summary = tx.get_run(run_id)
    assert summary is not None
    span = RunSpanRecord(
        trace_id=row.trace_id,
        root_span_id=row.root_span_id,
        run_id=run_id,
        app_id=row.app_id,
        function_id=row.function_id,
        status=RunStatus.CANCELLED,
        created_at_ms=row.created_at_ms,
        ended_at_ms=now_ms,
        error=error,
    )
    return summary, holder, span


def replay_run(tx: WriteTx, run_id: str, mode: ReplayMode, now_ms: int) -> RunSummary:
    """A new run of the same function and event(s); from the failed step keeps the
    steps that completed before the first failed one."""
    row = tx.run_row(run_id)
    if row is None:
        raise NotFound(f"run {run_id!r} not found")
    if not RunStatus(row.status).is_terminal:
        raise FailedPrecondition(
            f"run {run_id!r} is still {row.status}; only finished runs can be replayed"
        )
    if mode is ReplayMode.FROM_FAILED_STEP and row.status == RunStatus.COMPLETED.value:
        raise FailedPrecondition(
            f"run {run_id!r} completed: it has no failed step to replay from "
            "(replay it from the start instead)"
        )
    key = FunctionKey(row.app_id, row.function_id)
    new_id = new_ulid(now_ms)
    tx.insert_rows(runs, [new_run_row(new_id, key, row.event_pk, now_ms, replay_of=run_id)])
    tx.insert_rows(queue, [queue_row(new_id, key, now_ms)])
    kept: list[dict[str, Any]] = []
    if mode is ReplayMode.FROM_FAILED_STEP:
        kept = [
            {**dict(step._mapping), "run_id": new_id}
            for step in tx.completed_steps_before_failure(run_id)
        ]
        tx.insert_rows(steps, kept)
    how = "from its failed step" if mode is ReplayMode.FROM_FAILED_STEP else "from the start"
    message = f"replay of run {run_id} {how}"
    if kept:
        message += f", keeping {len(kept)} completed step(s)"
    tx.insert_rows(
        history, [codec.history_row(new_id, now_ms, HistoryKind.RUN_REPLAYED, message=message)]
    )
    summary = tx.get_run(new_id)
    assert summary is not None
    return summary
