"""The run state machine: applying a batch of worker outcomes in one transaction.

Every outcome is fenced by its execution id: it applies only while that execution
holds the run's lease. Outcomes of one run apply in the order they were sent, so
what is durable is always a prefix of what ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controlplane.engine import admin, ingest, run_states, waits
from controlplane.engine.backoff import retry_delay_ms
from controlplane.engine.creation import Routing
from controlplane.engine.effects import Effects, run_span
from controlplane.engine.expressions import event_object
from controlplane.engine.trace_ids import traceparent
from controlplane.model import (
    ErrorData,
    FunctionKey,
    HistoryKind,
    HistoryRecord,
    NonDeterminism,
    Outcome,
    Refusal,
    RunCompleted,
    RunFailed,
    RunState,
    RunStatus,
    RunUpdate,
    StepCompleted,
    StepFailed,
    StepKind,
    StepResult,
    StepSpanRecord,
    StepStatus,
    Suspended,
)
from controlplane.store.tx import NOT_DUE, WriteTx

FUNCTION_FAILED = "tether/function.failed"

LEASE_LOST = "lease lost: the run was given to another worker"
RUN_FINISHED = "the run has already finished or was cancelled"


@dataclass(slots=True)
class AppliedOutcomes(Effects):
    refusals: list[Refusal] = field(default_factory=list)
    # Executions that ended: their terminal outcome applied, or they were refused.
    ended: set[str] = field(default_factory=set)
    # The earliest due time this batch set on a run (None: none set).
    earliest_due_ms: int | None = None


@dataclass(slots=True)
class _RunProgress:
    """What one execution's outcomes in this batch decided about its run."""

    retry_at_ms: int | None = None


class _Batch:
    def __init__(self, tx: WriteTx, now_ms: int, routing: Routing) -> None:
        self.tx = tx
        self.now = now_ms
        self.routing = routing
        self.result = AppliedOutcomes()
        self.step_results: list[StepResult] = []
        self.history_rows: list[HistoryRecord] = []
        self.run_updates: list[RunUpdate] = []
        self.requeues: dict[str, int] = {}
        self.deletes: list[str] = []
        self.lowered_due: dict[str, int] = {}
        self.suspended: list[tuple[RunState, Suspended, int | None]] = []
        self.progress: dict[str, _RunProgress] = {}
        # Runs that ended (for their parents and for tether/function.failed),
        # handled once this batch's own writes are done.
        self.ended_runs: list[tuple[RunState, RunStatus, bytes | None, ErrorData | None]] = []

    def retries_of(self, state: RunState) -> int:
        spec = self.routing.spec_of(FunctionKey(state.app_id, state.function_id))
        return spec.retries if spec is not None else 0

    def due(self, run_id: str, due_at_ms: int) -> None:
        self.requeues[run_id] = due_at_ms
        current = self.result.earliest_due_ms
        self.result.earliest_due_ms = due_at_ms if current is None else min(current, due_at_ms)

    def update_run(
        self,
        state: RunState,
        status: RunStatus,
        *,
        attempt: int | None = None,
        output: bytes | None = None,
        error: ErrorData | None = None,
    ) -> None:
        status = run_states.change(state.run_id, state.status, status)
        ended = self.now if status.is_terminal else None
        self.run_updates.append(
            RunUpdate(
                state.run_id,
                status,
                state.attempt if attempt is None else attempt,
                output,
                error,
                ended,
            )
        )
        self.result.changed_runs.add(state.run_id)
        if status.is_terminal:
            self.ended_runs.append((state, status, output, error))

    def step_span(
        self,
        state: RunState,
        body: StepCompleted | StepFailed,
        attempt: int,
        error: ErrorData | None,
    ) -> None:
        self.result.step_spans.append(
            StepSpanRecord(
                trace_id=state.trace_id,
                root_span_id=state.root_span_id,
                run_id=state.run_id,
                app_id=state.app_id,
                function_id=state.function_id,
                step_id=body.step_id,
                name=body.name,
                kind=body.kind,
                attempt=attempt,
                started_at_ms=body.started_at_ms,
                ended_at_ms=body.ended_at_ms,
                error=error,
            )
        )


def apply_outcomes(
    tx: WriteTx,
    outcomes: list[Outcome],
    now_ms: int,
    routing: Routing,
    step_attempts: dict[str, dict[str, int]],
) -> AppliedOutcomes:
    """Apply outcomes in order. ``step_attempts`` maps execution id to the failed
    attempts of its retrying steps (as dispatched)."""
    batch = _Batch(tx, now_ms, routing)
    run_ids = [o.run_id for o in outcomes]
    leases = tx.lease_holders(run_ids)
    holders = {run_id: lease.execution_id for run_id, lease in leases.items()}
    states = tx.run_states(run_ids)
    for outcome in outcomes:
        state = states.get(outcome.run_id)
        holder = holders.get(outcome.run_id)
        body = outcome.body
        attempts = step_attempts.get(outcome.execution_id, {})
        if state is None or holder != outcome.execution_id:
            if (
                state is not None
                and isinstance(body, StepCompleted)
                and state.cancelled_execution_id == outcome.execution_id
            ):
                # A step that was running when the worker heard of the
                # cancellation (it starts none after): its result is recorded.
                _step_completed(batch, state, body, attempts)
                continue
            finished = state is None or state.status.is_terminal
            reason = RUN_FINISHED if finished else LEASE_LOST
            batch.result.refusals.append(Refusal(outcome.seq, outcome.execution_id, reason))
            batch.result.ended.add(outcome.execution_id)
            continue
        progress = batch.progress.setdefault(outcome.execution_id, _RunProgress())
        if isinstance(body, StepCompleted):
            _step_completed(batch, state, body, attempts)
        elif isinstance(body, StepFailed):
            _step_failed(batch, state, body, attempts, progress)
        elif isinstance(body, NonDeterminism):
            batch.history_rows.append(
                HistoryRecord(
                    state.run_id,
                    now_ms,
                    HistoryKind.NON_DETERMINISM,
                    execution_id=outcome.execution_id,
                    message=body.message,
                )
            )
        else:
            # Terminal: the execution is over and the lease goes with it.
            holders[outcome.run_id] = None
            batch.result.ended.add(outcome.execution_id)
            if isinstance(body, Suspended):
                # A step of this execution may have failed in an earlier batch:
                # its retry time is on the queue row.
                stored = leases[outcome.run_id].due_at_ms
                retry_at = progress.retry_at_ms
                if stored < NOT_DUE:
                    retry_at = stored if retry_at is None else min(retry_at, stored)
                batch.suspended.append((state, body, retry_at))
            elif isinstance(body, RunCompleted):
                _run_completed(batch, state, body)
            else:
                _run_failed(batch, state, body)
    _finish_suspensions(batch)
    _flush(batch)
    _after_runs_ended(batch)
    return batch.result


def _step_completed(
    batch: _Batch, state: RunState, body: StepCompleted, attempts: dict[str, int]
) -> None:
    prior = attempts.get(body.step_id, 0)
    batch.step_results.append(
        StepResult(
            state.run_id,
            body.step_id,
            body.name,
            body.kind,
            StepStatus.COMPLETED,
            body.started_at_ms,
            body.ended_at_ms,
            attempts=prior + 1,
            output=body.output.decode("utf-8"),
        )
    )
    batch.result.changed_runs.add(state.run_id)
    batch.step_span(state, body, prior, None)


def _step_failed(
    batch: _Batch,
    state: RunState,
    body: StepFailed,
    attempts: dict[str, int],
    progress: _RunProgress,
) -> None:
    failed_attempts = attempts.get(body.step_id, 0) + 1
    retries = batch.retries_of(state)
    if body.retriable and failed_attempts <= retries:
        delay = body.retry_delay_ms if body.retry_delay_ms > 0 else retry_delay_ms(failed_attempts)
        retry_at = batch.now + delay
        status = StepStatus.RETRYING
    else:
        # Failed for good: memoize the error and execute again at once, so the SDK
        # raises StepError at this step and user code may catch it.
        retry_at = batch.now
        status = StepStatus.FAILED
    progress.retry_at_ms = (
        retry_at if progress.retry_at_ms is None else min(progress.retry_at_ms, retry_at)
    )
    # Durable at once: the execution's Suspended outcome may come in a later batch.
    batch.lowered_due[state.run_id] = progress.retry_at_ms
    batch.step_results.append(
        StepResult(
            state.run_id,
            body.step_id,
            body.name,
            body.kind,
            status,
            body.started_at_ms,
            body.ended_at_ms,
            attempts=failed_attempts,
            error=body.error,
            retry_at_ms=retry_at if status is StepStatus.RETRYING else None,
        )
    )
    batch.history_rows.append(
        HistoryRecord(
            state.run_id,
            batch.now,
            HistoryKind.STEP_FAILED,
            step_id=body.step_id,
            step_name=body.name,
            attempt=failed_attempts,
            until_ms=retry_at if status is StepStatus.RETRYING else None,
            error=body.error,
            started_at_ms=body.started_at_ms,
        )
    )
    batch.result.changed_runs.add(state.run_id)
    batch.step_span(state, body, failed_attempts - 1, body.error)


def _run_completed(batch: _Batch, state: RunState, body: RunCompleted) -> None:
    batch.update_run(state, RunStatus.COMPLETED, output=body.output)
    batch.deletes.append(state.run_id)
    batch.history_rows.append(HistoryRecord(state.run_id, batch.now, HistoryKind.RUN_COMPLETED))


def _run_failed(batch: _Batch, state: RunState, body: RunFailed) -> None:
    retries = batch.retries_of(state)
    failures = state.attempt + 1
    if body.retriable and failures <= retries:
        delay = body.retry_delay_ms if body.retry_delay_ms > 0 else retry_delay_ms(failures)
        retry_at = batch.now + delay
        batch.update_run(state, RunStatus.RUNNING, attempt=failures)
        batch.due(state.run_id, retry_at)
        batch.history_rows.append(
            HistoryRecord(
                state.run_id,
                batch.now,
                HistoryKind.RUN_RETRY_SCHEDULED,
                attempt=failures,
                until_ms=retry_at,
                error=body.error,
            )
        )
        return
    batch.update_run(state, RunStatus.FAILED, attempt=failures, error=body.error)
    batch.deletes.append(state.run_id)
    batch.history_rows.append(
        HistoryRecord(
            state.run_id, batch.now, HistoryKind.RUN_FAILED, attempt=failures, error=body.error
        )
    )


def _finish_suspensions(batch: _Batch) -> None:
    """Store planned waits, then set each suspended run's next due time (its
    earliest wait timeout, sleep end or step retry; now if a wait resolved at
    once) and its status."""
    if not batch.suspended:
        return
    planner = waits.WaitPlanner(batch.tx, batch.now, batch.routing, batch.result)
    for state, body, _ in batch.suspended:
        planner.plan(state, body.waits)
    planner.flush()
    suspended_runs = [s.run_id for s, _, _ in batch.suspended]
    stored = batch.tx.waits_of(suspended_runs)
    # Steps that failed in earlier executions and wait out their backoff.
    retrying = batch.tx.retry_times(suspended_runs)
    for state, _body, batch_retry_at in batch.suspended:
        pending = stored.get(state.run_id, [])
        candidates = [w.until_ms for w in pending if w.until_ms < NOT_DUE]
        retry_at = batch_retry_at
        if state.run_id in retrying:
            earlier = retrying[state.run_id]
            retry_at = earlier if retry_at is None else min(retry_at, earlier)
        if retry_at is not None:
            candidates.append(retry_at)
        if state.run_id in planner.due_now:
            candidates.append(batch.now)
        # With no time to resolve by: waiting for something without a timeout
        # (an invoke), or, oddly, for nothing at all (then run it again now).
        fallback = NOT_DUE if pending else batch.now
        due_at = min(candidates) if candidates else fallback
        # What the run is waiting for, as people read it: an event or another
        # run, else a sleep; with nothing pending it is running (a retry is due).
        kinds = {w.kind for w in pending}
        if kinds & {StepKind.WAIT_FOR_EVENT, StepKind.INVOKE}:
            status = RunStatus.WAITING
        elif kinds:
            status = RunStatus.SLEEPING
        else:
            status = RunStatus.RUNNING
        batch.update_run(state, status)
        batch.due(state.run_id, due_at)


def _after_runs_ended(batch: _Batch) -> None:
    """Runs that ended resolve the invoke steps of their parents; failed runs
    emit tether/function.failed (what on_failure handlers run on)."""
    if not batch.ended_runs:
        return
    links = batch.tx.event_links([s.event_pk for s, _, _, _ in batch.ended_runs if s.event_pk])
    for state, status, output, error in batch.ended_runs:
        link = links.get(state.event_pk or "")
        batch.result.run_spans.append(run_span(state, status, batch.now, error, link))
        text = output.decode("utf-8") if output is not None else None
        batch.result.merge(waits.finish_child(batch.tx, state, batch.now, output=text, error=error))
        if status is RunStatus.FAILED:
            batch.result.merge(_emit_failed(batch, state, error))


def _emit_failed(batch: _Batch, state: RunState, error: ErrorData | None) -> Effects:
    original = batch.tx.events_by_pk([state.event_pk]) if state.event_pk else {}
    data = {
        "app_id": state.app_id,
        "function_id": state.function_id,
        "run_id": state.run_id,
        "error": {
            "name": error.name if error else "",
            "message": error.message if error else "",
            "stack": error.stack if error else "",
        },
        "event": event_object(original[state.event_pk]) if state.event_pk in original else None,
    }
    return ingest.emit(
        batch.tx,
        FUNCTION_FAILED,
        data,
        batch.now,
        batch.routing,
        event_id=f"{state.run_id}:failed",
        parent=traceparent(state.trace_id, state.root_span_id),
    )


def _flush(batch: _Batch) -> None:
    tx = batch.tx
    tx.record_steps(batch.step_results)
    tx.add_history(batch.history_rows)
    tx.update_runs(batch.run_updates, batch.now)
    tx.lower_due(
        {
            r: due
            for r, due in batch.lowered_due.items()
            if r not in batch.requeues and r not in batch.deletes
        }
    )
    tx.requeue(batch.requeues)
    if batch.deletes:
        # Children still running for runs that ended without them.
        children = tx.children_to_close(batch.deletes)
        tx.delete_queue_items(batch.deletes)
        tx.delete_waits_of(batch.deletes)
        batch.result.merge(admin.close_children(tx, children, batch.now, "ended"))
