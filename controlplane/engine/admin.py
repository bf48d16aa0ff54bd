"""Cancelling and replaying runs.

Every cancellation goes through :func:`cancel_unfinished`: by API (one run or in
bulk), by a cancel_on event, or by a run timeout.
"""

from __future__ import annotations

from controlplane.engine import run_states, waits
from controlplane.engine.creation import NewRun, Routing, create_runs
from controlplane.engine.effects import Effects, run_span
from controlplane.engine.expressions import event_object
from controlplane.model import (
    ErrorData,
    FunctionKey,
    FunctionSpec,
    HistoryKind,
    HistoryRecord,
    ReplayMode,
    RunStatus,
    RunSummary,
    RunUpdate,
)
from controlplane.model.errors import FailedPrecondition, NotFound
from controlplane.store.tx import WriteTx

CANCELLED_ERROR = "Cancelled"
BULK_CHUNK = 500


def cancel_unfinished(
    tx: WriteTx, run_id: str, reason: str, now_ms: int, *, error_name: str = CANCELLED_ERROR
) -> Effects | None:
    """Cancel the run unless it already finished (then None). The execution
    holding it is recorded: the step it is running may still report its result."""
    # Lock the queue row before reading the run: a control plane applying this
    # run's last outcome holds that lock, so the status read next is final.
    lease = tx.lock_lease(run_id)
    row = tx.run_state(run_id)
    if row is None or row.status.is_terminal:
        return None
    holder = lease.execution_id if lease is not None else None
    error = ErrorData(error_name, reason)
    cancelled = run_states.change(run_id, row.status, RunStatus.CANCELLED)
    tx.update_runs([RunUpdate(run_id, cancelled, row.attempt, None, error, now_ms)], now_ms)
    if holder is not None:
        tx.set_cancelled_execution(run_id, holder)
    children = tx.children_to_close([run_id])
    tx.delete_queue_items([run_id])
    tx.delete_waits_of([run_id])
    tx.add_history([HistoryRecord(run_id, now_ms, HistoryKind.RUN_CANCELLED, message=reason)])
    effects = Effects(changed_runs={run_id})
    effects.cancelled.append((run_id, holder))
    state = tx.run_states([run_id])[run_id]
    link = tx.event_links([row.event_pk]).get(row.event_pk) if row.event_pk else None
    effects.run_spans.append(run_span(state, RunStatus.CANCELLED, now_ms, error, link))
    effects.merge(waits.finish_child(tx, state, now_ms, error=error))
    effects.merge(close_children(tx, children, now_ms, "was cancelled"))
    return effects


def close_children(
    tx: WriteTx, children: list[tuple[str, str, str]], now_ms: int, what_happened: str
) -> Effects:
    """Cancel these (parent, child, invoke step) children, invoked with
    parent_close cancel, whose parent ``what_happened``; their own children
    follow them the same way. Call once the parents' waits are gone."""
    effects = Effects()
    for parent_id, child_id, step in children:
        reason = (
            f"its parent run {parent_id} {what_happened} (invoke {step!r}, parent_close: cancel)"
        )
        done = cancel_unfinished(tx, child_id, reason, now_ms)
        if done is not None:
            effects.merge(done)
    return effects


def cancel_run(tx: WriteTx, run_id: str, reason: str, now_ms: int) -> tuple[RunSummary, Effects]:
    """Cancel one run; NotFound or FailedPrecondition when it cannot be."""
    effects = cancel_unfinished(tx, run_id, reason, now_ms)
    if effects is None:
        row = tx.run_state(run_id)
        if row is None:
            raise NotFound(f"run {run_id!r} not found")
        raise FailedPrecondition(f"run {run_id!r} already finished ({row.status})")
    summary = tx.get_run(run_id)
    assert summary is not None
    return summary, effects


def cancel_runs(
    tx: WriteTx,
    app_id: str,
    function_id: str,
    created_after_ms: int,
    created_before_ms: int,
    reason: str,
    now_ms: int,
) -> tuple[int, Effects]:
    """Cancel up to BULK_CHUNK unfinished runs in the range; call again until it
    returns fewer."""
    effects = Effects()
    count = 0
    for run_id in tx.unfinished_runs(
        app_id, function_id, created_after_ms, created_before_ms, BULK_CHUNK
    ):
        done = cancel_unfinished(tx, run_id, reason, now_ms)
        if done is not None:
            effects.merge(done)
            count += 1
    return count, effects


def replay_run(
    tx: WriteTx, run_id: str, mode: ReplayMode, now_ms: int, routing: Routing
) -> tuple[RunSummary, Effects]:
    """A new run of the same function and event(s); from the failed step keeps the
    steps that completed before the first failed one."""
    row = tx.run_state(run_id)
    if row is None:
        raise NotFound(f"run {run_id!r} not found")
    if not row.status.is_terminal:
        raise FailedPrecondition(
            f"run {run_id!r} is still {row.status}; only finished runs can be replayed"
        )
    if mode is ReplayMode.FROM_FAILED_STEP and row.status is RunStatus.COMPLETED:
        raise FailedPrecondition(
            f"run {run_id!r} completed: it has no failed step to replay from "
            "(replay it from the start instead)"
        )
    key = FunctionKey(row.app_id, row.function_id)
    spec = routing.spec_of(key) or FunctionSpec(key.app_id, key.function_id, key.function_id, ())
    trigger = tx.events_by_pk([row.event_pk]) if row.event_pk else {}
    event = event_object(trigger[row.event_pk]) if row.event_pk in trigger else None
    [new_id] = create_runs(
        tx,
        [
            NewRun(
                spec,
                row.event_pk,
                event,
                replay_of=run_id,
                # The same inputs: every event of a batched run, a cron run's tick.
                cron=row.cron,
                event_pks=tx.run_event_pks([run_id]).get(run_id, []),
            )
        ],
        now_ms,
        effects := Effects(),
    )
    kept = 0
    if mode is ReplayMode.FROM_FAILED_STEP:
        kept = tx.copy_completed_steps(run_id, new_id)
    how = "from its failed step" if mode is ReplayMode.FROM_FAILED_STEP else "from the start"
    message = f"replay of run {run_id} {how}"
    if kept:
        message += f", keeping {kept} completed step(s)"
    tx.add_history([HistoryRecord(new_id, now_ms, HistoryKind.RUN_REPLAYED, message=message)])
    summary = tx.get_run(new_id)
    assert summary is not None
    return summary, effects
