"""What suspended runs wait for: sleeps, events and invoked runs.

A wait is planned when an execution suspends, and resolved by time (a sleep
ends, a wait times out), by an event (see matching.py), or by the end of an
invoked run. Resolving a wait writes its step's result and makes the run due,
so that the next execution finds it memoized.

The rule for events that arrive around suspension: a wait for an event matches
every matching event received at or after the moment the function reached the
wait step (PlannedWait.started_at_ms). When the suspension is stored, the events
received since that moment are checked first, so an event sent after the run
reached the wait is never missed, even if it arrived before the suspension was
stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from controlplane.engine.creation import Routing
from controlplane.engine.effects import Effects
from controlplane.engine.expressions import (
    EVENT_AND_ASYNC,
    MISSING,
    canonical,
    check_path,
    compile_expression,
    equality_index,
    event_object,
    event_value,
)
from controlplane.engine.flow import event_lock
from controlplane.engine.invocation import start_invoked_run
from controlplane.engine.trace_ids import step_span_id, traceparent
from controlplane.engine.validation import exact_event_name_problem, load_json
from controlplane.model import (
    ErrorData,
    FunctionKey,
    HistoryKind,
    HistoryRecord,
    ParentClose,
    PlannedEventWait,
    PlannedInvoke,
    PlannedSleep,
    PlannedWait,
    RunState,
    StepKind,
    StepResult,
    StepStatus,
    StoredEvent,
    WaitKind,
    WaitRecord,
    WaitSpanRecord,
)
from controlplane.model.errors import InvalidArgument
from controlplane.store.tx import NOT_DUE, WriteTx


@dataclass(slots=True)
class Planned:
    """What planning a suspension's waits decided for the run."""

    pending_kinds: set[str]
    # The earliest time a wait of the run resolves by itself (NOT_DUE: never).
    earliest_ms: int
    # A wait resolved or failed at once: the run is due now.
    due_now: bool


class WaitPlanner:
    """Stores the waits of suspended runs within one transaction."""

    def __init__(self, tx: WriteTx, now_ms: int, routing: Routing, effects: Effects) -> None:
        self.tx = tx
        self.now = now_ms
        self.routing = routing
        self.effects = effects
        self.history: list[HistoryRecord] = []
        self.steps: list[StepResult] = []
        # Runs a wait of which resolved or failed at once: due now.
        self.due_now: set[str] = set()

    def plan(self, state: RunState, waits: list[PlannedWait]) -> None:
        rows: list[WaitRecord] = []
        # An execution may suspend on a wait an earlier one planned (keep that
        # one: its child, its timeout), or on one that resolved while it ran:
        # then its result is there for the next execution, due now.
        pending, settled = self.tx.pending_and_settled(state.run_id, [w.step_id for w in waits])
        if settled:
            self.due_now.add(state.run_id)
        for wait in waits:
            if wait.step_id in pending or wait.step_id in settled:
                continue
            if isinstance(wait, PlannedSleep):
                rows.append(
                    self._row(
                        state,
                        wait.step_id,
                        wait.name,
                        WaitKind.SLEEP,
                        wait.until_ms,
                        wait.started_at_ms,
                    )
                )
                self.history.append(
                    HistoryRecord(
                        state.run_id,
                        self.now,
                        HistoryKind.SLEEP_STARTED,
                        step_id=wait.step_id,
                        step_name=wait.name,
                        until_ms=wait.until_ms,
                    )
                )
            elif isinstance(wait, PlannedEventWait):
                row = self._event_wait(state, wait)
                if row is not None:
                    rows.append(row)
            elif isinstance(wait, PlannedInvoke):
                row = self._invoke(state, wait)
                if row is not None:
                    rows.append(row)
        self.tx.add_waits(rows)

    def flush(self) -> None:
        self.tx.record_steps(self.steps)
        self.tx.add_history(self.history)
        self.steps, self.history = [], []

    def _row(
        self,
        state: RunState,
        step_id: str,
        name: str,
        kind: WaitKind,
        until_ms: int,
        started_at_ms: int,
        **extra: Any,
    ) -> WaitRecord:
        return WaitRecord(
            run_id=state.run_id,
            step_id=step_id,
            name=name,
            kind=kind,
            created_at_ms=started_at_ms or self.now,
            until_ms=until_ms,
            traceparent=traceparent(state.trace_id, state.root_span_id),
            **extra,
        )

    def fail_step(
        self, state: RunState, step_id: str, name: str, kind: StepKind, error: ErrorData
    ) -> None:
        """The step failed for good at once: the run re-executes and meets StepError."""
        self.steps.append(
            StepResult(
                state.run_id,
                step_id,
                name,
                kind,
                StepStatus.FAILED,
                self.now,
                self.now,
                error=error,
            )
        )
        self.history.append(
            HistoryRecord(
                state.run_id,
                self.now,
                HistoryKind.STEP_FAILED,
                step_id=step_id,
                step_name=name,
                attempt=1,
                error=error,
            )
        )
        self._due_now(state.run_id)

    def _due_now(self, run_id: str) -> None:
        self.due_now.add(run_id)
        self.tx.lower_due({run_id: self.now})
        self.effects.changed_runs.add(run_id)
        self.effects.wake = True

    # -- waiting for an event ----------------------------------------------------

    def _event_wait(self, state: RunState, wait: PlannedEventWait) -> WaitRecord | None:
        what = f"wait {wait.name!r}"
        try:
            problem = exact_event_name_problem(wait.event)
            if problem:
                raise InvalidArgument(f"{what}: {problem}")
            if wait.if_expression:
                compile_expression(wait.if_expression, EVENT_AND_ASYNC, what)
            match_path, match_value = wait.match or None, None
            trigger = self._trigger(state)
            if wait.match:
                check_path(wait.match, what)
                value = event_value(trigger or {}, wait.match)
                if value is MISSING:
                    raise InvalidArgument(
                        f"{what}: the run's event has no {wait.match} to match on"
                    )
                match_value = canonical(value)
            elif indexed := equality_index(wait.if_expression, trigger):
                match_path, match_value = indexed
        except InvalidArgument as error:
            self.fail_step(
                state,
                wait.step_id,
                wait.name,
                StepKind.WAIT_FOR_EVENT,
                ErrorData("InvalidWait", str(error)),
            )
            return None
        row = self._row(
            state,
            wait.step_id,
            wait.name,
            WaitKind.WAIT_FOR_EVENT,
            wait.timeout_until_ms or NOT_DUE,
            wait.started_at_ms,
            event_name=wait.event,
            match_path=match_path,
            match_value=match_value,
            expression=wait.if_expression or None,
            trigger_event_pk=state.event_pk,
        )
        self.history.append(
            HistoryRecord(
                state.run_id,
                self.now,
                HistoryKind.WAIT_STARTED,
                step_id=wait.step_id,
                step_name=wait.name,
                until_ms=wait.timeout_until_ms or None,
                message=f"waiting for {wait.event}",
            )
        )
        # Events that arrived since the function reached the wait, and before
        # its timeout, count.
        since = wait.started_at_ms or self.now
        before = wait.timeout_until_ms or NOT_DUE
        # Serialised with ingestion of this name on any node (see ingest).
        self.tx.lock_keys([event_lock(wait.event)])
        for pk, event in self.tx.events_named_between(wait.event, since, before):
            # The run's own event never counts (it can share the millisecond).
            if pk != state.event_pk and wait_matches(row, event_object(event), trigger):
                self.resolve_with_event(row, event, stored=False)
                return None
        return row

    def _trigger(self, state: RunState) -> dict[str, Any] | None:
        if not state.event_pk:
            return None
        found = self.tx.events_by_pk([state.event_pk])
        return event_object(found[state.event_pk]) if state.event_pk in found else None

    def resolve_with_event(
        self, wait: WaitRecord, event: StoredEvent | None, *, stored: bool = True
    ) -> None:
        """The wait ends: with this event, or with null (timed out). A wait
        resolved while it is planned was never ``stored``."""
        run_id, step_id, name = wait.run_id, wait.step_id, wait.name
        output = json.dumps(event_object(event)) if event is not None else "null"
        self.steps.append(
            StepResult(
                run_id,
                step_id,
                name,
                StepKind.WAIT_FOR_EVENT,
                StepStatus.COMPLETED,
                started_at_ms=wait.created_at_ms,
                ended_at_ms=self.now,
                output=output,
            )
        )
        if stored:
            self.tx.delete_waits([(run_id, step_id)])
        message = f"matched event {event.id} ({event.name})" if event is not None else "timed out"
        _ended(
            self.effects,
            wait,
            self.now,
            timed_out=event is None,
            event_id=event.id if event is not None else "",
        )
        self.history.append(
            HistoryRecord(
                run_id,
                self.now,
                HistoryKind.WAIT_ENDED,
                step_id=step_id,
                step_name=name,
                message=message,
            )
        )
        self._due_now(run_id)

    # -- invoking a function ------------------------------------------------------

    def _invoke(self, state: RunState, wait: PlannedInvoke) -> WaitRecord | None:
        key = FunctionKey(wait.app_id or state.app_id, wait.function_id)
        spec = self.routing.spec_of(key)
        if spec is None:
            self.fail_step(
                state,
                wait.step_id,
                wait.name,
                StepKind.INVOKE,
                ErrorData(
                    "InvokeError",
                    f"function {key.function_id!r} of app {key.app_id!r} is not registered",
                ),
            )
            return None
        raw = wait.data or b"{}"
        try:
            value = load_json(raw, "data")
            problem = "" if isinstance(value, dict) else "data must be a JSON object"
        except InvalidArgument as error:
            problem = str(error)
        if problem:
            self.fail_step(
                state,
                wait.step_id,
                wait.name,
                StepKind.INVOKE,
                ErrorData("InvokeError", f"invoke {wait.name!r}: {problem}"),
            )
            return None
        data = raw.decode("utf-8")
        child = start_invoked_run(
            self.tx,
            spec,
            f"{state.run_id}:{wait.step_id[:12]}",
            data,
            self.now,
            self.effects,
            # The invoke step's span: the child run's span links to it.
            traceparent=traceparent(state.trace_id, step_span_id(state.run_id, wait.step_id, 0)),
            parent_run_id=state.run_id,
            parent_step_id=wait.step_id,
        )
        self.history.append(
            HistoryRecord(
                state.run_id,
                self.now,
                HistoryKind.INVOKE_STARTED,
                step_id=wait.step_id,
                step_name=wait.name,
                until_ms=wait.timeout_until_ms or None,
                message=f"invoked {key.app_id}/{key.function_id} as run {child}",
            )
        )
        return self._row(
            state,
            wait.step_id,
            wait.name,
            WaitKind.INVOKE,
            wait.timeout_until_ms or NOT_DUE,
            wait.started_at_ms,
            child_run_id=child,
            parent_close=wait.parent_close,
        )


def wait_matches(
    wait: WaitRecord, incoming: dict[str, Any], trigger: dict[str, Any] | None
) -> bool:
    """Whether an event (as expressions see it) satisfies a wait."""
    if wait.match_path:
        value = event_value(incoming, wait.match_path)
        if value is MISSING or canonical(value) != wait.match_value:
            return False
    if wait.expression:
        try:
            compiled = compile_expression(wait.expression, EVENT_AND_ASYNC, "wait")
        except InvalidArgument:
            return False
        return compiled.holds({"event": trigger or {}, "async": incoming})
    return True


def resolve_due(
    tx: WriteTx,
    run_ids: list[str],
    now_ms: int,
    history_rows: list[HistoryRecord],
    effects: Effects,
) -> list[tuple[str, str, str]]:
    """Waits whose time has come, for runs being claimed: sleeps end (null),
    event waits time out (null), invokes time out (the step fails for good).
    Returns the (parent, child, step) of the invokes that timed out whose
    child goes with them (parent_close cancel), for the caller to cancel."""
    due = tx.waits_due(run_ids, now_ms)
    if not due:
        return []
    results: list[StepResult] = []
    to_cancel: list[tuple[str, str, str]] = []
    for w in due:
        kind = w.step_kind
        ended_at = min(w.until_ms, now_ms)
        error: ErrorData | None = None
        if kind is StepKind.SLEEP:
            entry = HistoryRecord(
                w.run_id,
                now_ms,
                HistoryKind.SLEEP_ENDED,
                step_id=w.step_id,
                step_name=w.name,
                until_ms=w.until_ms,
            )
        elif kind is StepKind.WAIT_FOR_EVENT:
            entry = HistoryRecord(
                w.run_id,
                now_ms,
                HistoryKind.WAIT_ENDED,
                step_id=w.step_id,
                step_name=w.name,
                message="timed out",
            )
        else:
            error = ErrorData(
                "InvokeTimeout", f"the invoked run {w.child_run_id} did not finish in time"
            )
            if w.child_run_id and w.parent_close is not ParentClose.ABANDON:
                to_cancel.append((w.run_id, w.child_run_id, w.name))
            entry = HistoryRecord(
                w.run_id,
                now_ms,
                HistoryKind.INVOKE_ENDED,
                step_id=w.step_id,
                step_name=w.name,
                error=error,
                message="timed out",
            )
        results.append(
            StepResult(
                w.run_id,
                w.step_id,
                w.name,
                kind,
                StepStatus.COMPLETED if error is None else StepStatus.FAILED,
                started_at_ms=w.created_at_ms,
                ended_at_ms=ended_at,
                output="null" if error is None else None,
                error=error,
                child_run_id=w.child_run_id if error is not None else None,
            )
        )
        history_rows.append(entry)
        _ended(
            effects,
            w,
            ended_at,
            timed_out=kind is not StepKind.SLEEP,
            child_run_id=w.child_run_id or "",
            error=error,
        )
    tx.record_steps(results)
    tx.delete_waits([(w.run_id, w.step_id) for w in due])
    return to_cancel


def finish_child(
    tx: WriteTx,
    child: RunState,
    now_ms: int,
    *,
    output: str | None = None,
    error: ErrorData | None = None,
) -> Effects:
    """An invoked run ended: resolve the parent's invoke step with its output,
    or fail it for good (no retry: the child retried already)."""
    effects = Effects()
    if not child.parent_run_id:
        return effects
    for w in tx.waits_for_child(child.run_id):
        failure: ErrorData | None = None
        if error is None:
            message = f"run {child.run_id} completed"
        else:
            how = _CHILD_ENDINGS.get(error.name, "failed")
            failure = ErrorData(
                "InvokeError",
                f"invoked function {child.function_id!r} (run {child.run_id}) {how}: "
                f"{error.message}",
            )
            message = f"run {child.run_id} did not complete"
        _ended(effects, w, now_ms, child_run_id=child.run_id, error=failure)
        tx.record_steps(
            [
                StepResult(
                    w.run_id,
                    w.step_id,
                    w.name,
                    StepKind.INVOKE,
                    StepStatus.COMPLETED if failure is None else StepStatus.FAILED,
                    started_at_ms=w.created_at_ms,
                    ended_at_ms=now_ms,
                    output=(output if output is not None else "null") if failure is None else None,
                    error=failure,
                    child_run_id=child.run_id,
                )
            ]
        )
        tx.delete_waits([(w.run_id, w.step_id)])
        tx.add_history(
            [
                HistoryRecord(
                    w.run_id,
                    now_ms,
                    HistoryKind.INVOKE_ENDED,
                    step_id=w.step_id,
                    step_name=w.name,
                    message=message,
                )
            ],
        )
        tx.lower_due({w.run_id: now_ms})
        effects.changed_runs.add(w.run_id)
        effects.wake = True
    return effects


def _ended(
    effects: Effects,
    wait: WaitRecord,
    ended_at_ms: int,
    *,
    timed_out: bool = False,
    event_id: str = "",
    child_run_id: str = "",
    error: ErrorData | None = None,
) -> None:
    """Record a wait's span (not for waits stored before spans were)."""
    if not wait.traceparent:
        return
    effects.wait_spans.append(
        WaitSpanRecord(
            run_traceparent=wait.traceparent,
            run_id=wait.run_id,
            step_id=wait.step_id,
            name=wait.name,
            kind=wait.step_kind,
            started_at_ms=wait.created_at_ms,
            ended_at_ms=ended_at_ms,
            timed_out=timed_out,
            event_id=event_id,
            child_run_id=child_run_id,
            error=error,
        )
    )


# How a child that did not complete ended, by its error's name (see admin and
# timeouts); anything else failed.
_CHILD_ENDINGS = {"Cancelled": "was cancelled", "Timeout": "was cancelled by its timeout"}
