"""Leasing due runs to a worker and building what it needs to execute them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from controlplane.engine import admin, run_states, waits
from controlplane.engine.effects import Effects
from controlplane.engine.trace_ids import traceparent
from controlplane.model import (
    ClaimRecord,
    Execution,
    HistoryKind,
    HistoryRecord,
    MemoizedStep,
    RunStatus,
    StepStatus,
    StoredEvent,
)
from controlplane.model.ids import new_hex_id
from controlplane.store.tx import WriteTx


def claim_executions(
    tx: WriteTx,
    app_id: str,
    function_ids: Sequence[str],
    limit: int,
    now_ms: int,
    lease_timeout_ms: int,
    finish_timeout_of: Callable[[str], int] = lambda _function_id: 0,
    effects: Effects | None = None,
) -> list[Execution]:
    """Lease up to ``limit`` due runs; resolve their due waits; load their state.

    A run's start deadline goes once it starts; its finish deadline (the
    function's ``timeouts.finish_ms``) is set the first time it starts.
    ``effects`` learns of the claims and of the waits that ended."""
    effects = effects if effects is not None else Effects()
    deadline = now_ms + lease_timeout_ms
    claimed = tx.claim_ready(app_id, function_ids, now_ms, limit, deadline, lambda: new_hex_id(16))
    if not claimed:
        return []
    run_ids = [c.run_id for c in claimed]
    states = tx.run_states(run_ids)
    stale = [
        c.run_id for c in claimed if c.run_id not in states or states[c.run_id].status.is_terminal
    ]
    if stale:
        # A queue row that outlived its run: drop it rather than execute a finished run.
        tx.delete_queue_items(stale)
        claimed = [c for c in claimed if c.run_id not in set(stale)]
        run_ids = [c.run_id for c in claimed]
    history_rows: list[HistoryRecord] = []
    timed_out = waits.resolve_due(tx, run_ids, now_ms, history_rows, effects)
    effects.merge(admin.close_children(tx, timed_out, now_ms, "stopped waiting for it"))
    finish_by: dict[str, int | None] = {}
    for c in claimed:
        finish = finish_timeout_of(c.function_id)
        finish_by[c.run_id] = now_ms + finish if finish else None
    tx.set_deadlines(finish_by)

    memo: dict[str, list[MemoizedStep]] = {r: [] for r in run_ids}
    attempts: dict[str, dict[str, int]] = {r: {} for r in run_ids}
    not_before: dict[str, dict[str, int]] = {r: {} for r in run_ids}
    state_bytes: dict[str, int] = dict.fromkeys(run_ids, 0)
    # Memoized steps go out in the order their results were recorded: the SDK
    # hands them back in that order (it keeps parallel branches deterministic).
    for row in sorted(tx.steps_of(run_ids), key=lambda r: r.position):
        if row.status is StepStatus.COMPLETED:
            output = (row.output or "null").encode("utf-8")
            memo[row.run_id].append(MemoizedStep(row.step_id, output, None))
            state_bytes[row.run_id] += len(output)
        elif row.status is StepStatus.FAILED:
            memo[row.run_id].append(MemoizedStep(row.step_id, None, row.error))
        else:
            attempts[row.run_id][row.step_id] = row.attempts
            if row.retry_at_ms is not None and row.retry_at_ms > now_ms:
                not_before[row.run_id][row.step_id] = row.retry_at_ms

    batched = tx.run_event_pks(run_ids)
    event_pks = [s.event_pk for s in states.values() if s.event_pk]
    event_pks += [pk for pks in batched.values() for pk in pks]
    events_by_pk = tx.events_by_pk(event_pks) if event_pks else {}

    running = {r: run_states.change(r, states[r].status, RunStatus.RUNNING) for r in run_ids}
    tx.start_runs(running, now_ms)
    executions = []
    for c in claimed:
        state = states[c.run_id]
        effects.claims.append(
            ClaimRecord(
                c.app_id, c.function_id, max(0, now_ms - c.due_at_ms), state.started_at_ms is None
            )
        )
        pks = batched.get(c.run_id) or ([state.event_pk] if state.event_pk else [])
        trigger: list[StoredEvent] = [events_by_pk[pk] for pk in pks if pk in events_by_pk]
        history_rows.append(
            HistoryRecord(
                c.run_id,
                now_ms,
                HistoryKind.EXECUTION_STARTED,
                attempt=state.attempt,
                execution_id=c.execution_id,
            )
        )
        executions.append(
            Execution(
                execution_id=c.execution_id,
                run_id=c.run_id,
                app_id=c.app_id,
                function_id=c.function_id,
                attempt=state.attempt,
                events=trigger,
                steps=memo[c.run_id],
                step_attempts=attempts[c.run_id],
                step_not_before=not_before[c.run_id],
                traceparent=traceparent(state.trace_id, state.root_span_id),
                lease_deadline_ms=deadline,
                server_time_ms=now_ms,
                state_bytes=state_bytes[c.run_id],
                cron=state.cron,
            )
        )
    tx.add_history(history_rows)
    return executions
