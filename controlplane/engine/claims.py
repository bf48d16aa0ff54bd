"""Leasing due runs to a worker and building what it needs to execute them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from controlplane.engine import admin, run_states, waits
from controlplane.engine.effects import Effects
from controlplane.engine.sessions import InFlight, ResumedSteps
from controlplane.engine.trace_ids import traceparent
from controlplane.model import (
    ClaimRecord,
    Execution,
    HistoryKind,
    HistoryRecord,
    MemoizedStep,
    RunState,
    RunStatus,
    StepKind,
    StepStatus,
    StoredEvent,
)
from controlplane.model.ids import new_hex_id
from controlplane.store.tx import Claimed, WriteTx


def claim_executions(
    tx: WriteTx,
    app_id: str,
    function_ids: Sequence[str],
    limit: int,
    now_ms: int,
    lease_timeout_ms: int,
    finish_timeout_of: Callable[[str], int] = lambda _function_id: 0,
    effects: Effects | None = None,
    due_at: dict[str, int] | None = None,
    ahead_of_ms: int | None = None,
) -> list[Execution]:
    """Lease up to ``limit`` due runs; resolve their due waits; load their state.

    A run's start deadline goes once it starts; its finish deadline (the
    function's ``timeouts.finish_ms``) is set the first time it starts.
    ``effects`` learns of the claims and of the waits that ended; ``due_at``,
    when given, of when each run claimed was due (run id -> ms).

    With ``ahead_of_ms`` (the time now, ``now_ms`` being later: a claim ahead
    of due timers), only runs resuming after a sleep or a step retry are
    leased: an event may still come for a wait whose timeout falls due, or
    join a run not started yet (a debounce, a batch), before ``now_ms``."""
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
    if ahead_of_ms is not None and claimed:
        claimed = _only_timers(tx, claimed, states, now_ms, ahead_of_ms)
        run_ids = [c.run_id for c in claimed]
    if due_at is not None:
        due_at.update((c.run_id, c.due_at_ms) for c in claimed)
    history_rows: list[HistoryRecord] = []
    timed_out = waits.resolve_due(tx, run_ids, now_ms, history_rows, effects)
    effects.merge(admin.close_children(tx, timed_out, now_ms, "stopped waiting for it"))
    finish_by: dict[str, int | None] = {}
    for c in claimed:
        finish = finish_timeout_of(c.function_id)
        finish_by[c.run_id] = now_ms + finish if finish else None
    tx.set_deadlines(finish_by)

    steps = _step_states(tx, run_ids, now_ms)
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
                steps=steps[c.run_id].memo,
                step_attempts=steps[c.run_id].attempts,
                step_not_before=steps[c.run_id].not_before,
                traceparent=traceparent(state.trace_id, state.root_span_id),
                lease_deadline_ms=deadline,
                server_time_ms=now_ms,
                state_bytes=steps[c.run_id].state_bytes,
                cron=state.cron,
            )
        )
    tx.add_history(history_rows)
    return executions


def _only_timers(
    tx: WriteTx,
    claimed: list[Claimed],
    states: Mapping[str, RunState],
    now_ms: int,
    ahead_of_ms: int,
) -> list[Claimed]:
    """Of runs leased as of ``now_ms`` at ``ahead_of_ms``, put back (due as they
    were) those not started yet and those with an event wait or an invoke
    timing out in between; the rest resume after a sleep or a step retry."""
    back = {c.run_id for c in claimed if states[c.run_id].started_at_ms is None}
    back.update(
        w.run_id
        for w in tx.waits_due([c.run_id for c in claimed], now_ms)
        if w.step_kind is not StepKind.SLEEP and w.until_ms > ahead_of_ms
    )
    if back:
        tx.requeue({c.run_id: c.due_at_ms for c in claimed if c.run_id in back})
    return [c for c in claimed if c.run_id not in back]


def resume_executions(
    tx: WriteTx, app_id: str, held: Mapping[str, str], now_ms: int, lease_timeout_ms: int
) -> list[tuple[str, InFlight]]:
    """Re-grant the executions a reconnecting worker of ``app_id`` re-announced
    (execution id -> run id) whose runs' leases still name them; returns each
    with what limits need to know of it. One given away meanwhile is left out."""
    kept = tx.regrant_leases(app_id, held, now_ms + lease_timeout_ms) if held else []
    steps = _step_states(tx, [c.run_id for c in kept], now_ms)
    return [
        (
            c.execution_id,
            InFlight(
                run_id=c.run_id,
                function_id=c.function_id,
                state_bytes=steps[c.run_id].state_bytes,
                step_count=len(steps[c.run_id].memo),
                step_attempts=steps[c.run_id].attempts,
                resumed=ResumedSteps(
                    frozenset(m.step_id for m in steps[c.run_id].memo),
                    steps[c.run_id].failed_attempts_started,
                ),
            ),
        )
        for c in kept
    ]


@dataclass(slots=True)
class _DurableSteps:
    """What is durable of a run's steps, as an execution needs it."""

    memo: list[MemoizedStep] = field(default_factory=list)
    # Failed attempts of the steps being retried, and when each may run again.
    attempts: dict[str, int] = field(default_factory=dict)
    not_before: dict[str, int] = field(default_factory=dict)
    # When the last failed attempt of each of those steps started.
    failed_attempts_started: dict[str, int] = field(default_factory=dict)
    state_bytes: int = 0


def _step_states(tx: WriteTx, run_ids: Sequence[str], now_ms: int) -> dict[str, _DurableSteps]:
    found = {r: _DurableSteps() for r in run_ids}
    if not run_ids:
        return found
    # Memoized steps go out in the order their results were recorded: the SDK
    # hands them back in that order (it keeps parallel branches deterministic).
    for row in sorted(tx.steps_of(run_ids), key=lambda r: r.position):
        state = found[row.run_id]
        if row.status is StepStatus.COMPLETED:
            output = (row.output or "null").encode("utf-8")
            state.memo.append(MemoizedStep(row.step_id, output, None))
            state.state_bytes += len(output)
        elif row.status is StepStatus.FAILED:
            state.memo.append(MemoizedStep(row.step_id, None, row.error))
        else:
            state.attempts[row.step_id] = row.attempts
            if row.started_at_ms is not None:
                state.failed_attempts_started[row.step_id] = row.started_at_ms
            if row.retry_at_ms is not None and row.retry_at_ms > now_ms:
                state.not_before[row.step_id] = row.retry_at_ms
    return found
