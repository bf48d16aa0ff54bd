"""What the engine tells the outside world about its work: an observer (traces
and metrics are implemented in controlplane/telemetry; the engine knows nothing
of OpenTelemetry), the log, and a snapshot of its state for gauges.

The observer is called on the event loop after each commit, with records of
what the commit did; it must do O(1) work per record (no I/O).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from controlplane.engine.effects import Effects
from controlplane.engine.models import (
    ClaimRecord,
    EventSpanRecord,
    FunctionKey,
    RunSpanRecord,
    RunStatus,
    StepKind,
    StepSpanRecord,
    WaitSpanRecord,
)
from controlplane.engine.registry import FunctionRegistry
from controlplane.engine.sessions import SessionTable
from controlplane.engine.trace_ids import step_span_id
from controlplane.store import Store

log = logging.getLogger("tether.engine")


class EngineObserver:
    """Does nothing; subclasses pick what they want to hear of."""

    def events_stored(self, events: Sequence[EventSpanRecord]) -> None:
        """Events were stored (duplicates are not)."""

    def runs_claimed(self, claims: Sequence[ClaimRecord]) -> None:
        """Runs were leased to workers; ``first`` marks a run's first execution."""

    def steps_ended(self, steps: Sequence[StepSpanRecord]) -> None:
        """Step attempts a worker ran were committed (completed or failed)."""

    def waits_ended(self, waits: Sequence[WaitSpanRecord]) -> None:
        """Sleeps, event waits and invokes ended."""

    def runs_finished(self, runs: Sequence[RunSpanRecord]) -> None:
        """Runs completed, failed or were cancelled."""

    async def shutdown(self) -> None:
        """The engine stops: flush what is buffered."""


class Observers(EngineObserver):
    """Several observers, each told everything in turn."""

    def __init__(self, *observers: EngineObserver) -> None:
        self._observers = observers

    def events_stored(self, events: Sequence[EventSpanRecord]) -> None:
        for observer in self._observers:
            observer.events_stored(events)

    def runs_claimed(self, claims: Sequence[ClaimRecord]) -> None:
        for observer in self._observers:
            observer.runs_claimed(claims)

    def steps_ended(self, steps: Sequence[StepSpanRecord]) -> None:
        for observer in self._observers:
            observer.steps_ended(steps)

    def waits_ended(self, waits: Sequence[WaitSpanRecord]) -> None:
        for observer in self._observers:
            observer.waits_ended(waits)

    def runs_finished(self, runs: Sequence[RunSpanRecord]) -> None:
        for observer in self._observers:
            observer.runs_finished(runs)

    async def shutdown(self) -> None:
        for observer in self._observers:
            await observer.shutdown()


@dataclass(frozen=True, slots=True)
class EngineStats:
    """The engine's state at one moment, for gauges."""

    # Queue items due now and not leased (runs waiting for a worker), per
    # function; every registered function is present.
    queue_depth: dict[FunctionKey, int] = field(default_factory=dict)
    # Pending event waits and invokes, by step kind ("wait_for_event", "invoke").
    pending_waits: dict[str, int] = field(default_factory=dict)
    pending_sleeps: int = 0
    # Worker streams connected to this control plane, per app id; every app
    # with a registered function is present.
    workers_connected: dict[str, int] = field(default_factory=dict)


async def collect_stats(
    store: Store, now_ms: int, registry: FunctionRegistry, sessions: SessionTable
) -> EngineStats:
    """Two COUNT queries (on a reader connection) and the session table."""
    ready, waiting = await store.read(lambda r: (r.ready_counts(now_ms), r.pending_wait_counts()))
    functions = [spec.key for spec, _, _ in registry.all()]
    workers = dict.fromkeys(sorted({key.app_id for key in functions}), 0)
    for session in sessions:
        if not session.closed:
            workers[session.app_id] = workers.get(session.app_id, 0) + 1
    return EngineStats(
        queue_depth=dict.fromkeys(functions, 0) | ready,
        pending_waits={k: n for k, n in waiting.items() if k != StepKind.SLEEP.value},
        pending_sleeps=waiting.get(StepKind.SLEEP.value, 0),
        workers_connected=workers,
    )


def report_committed(observer: EngineObserver, effects: Effects) -> None:
    """Tell the observer and the log what a committed write did."""
    if effects.event_spans:
        observer.events_stored(effects.event_spans)
    if effects.claims:
        observer.runs_claimed(effects.claims)
    if effects.step_spans:
        observer.steps_ended(effects.step_spans)
        for step in effects.step_spans:
            if step.error is not None:
                log.info(
                    "run %s: step %r attempt %d failed: %s: %s",
                    step.run_id,
                    step.name,
                    step.attempt + 1,
                    step.error.name,
                    step.error.message,
                    extra=run_log_extra(
                        step.run_id,
                        app_id=step.app_id,
                        function_id=step.function_id,
                        trace_id=step.trace_id,
                        span_id=step_span_id(step.run_id, step.step_id, step.attempt),
                        step_id=step.name,
                    ),
                )
    if effects.wait_spans:
        observer.waits_ended(effects.wait_spans)
    if effects.run_spans:
        observer.runs_finished(effects.run_spans)
        for run in effects.run_spans:
            extra = run_log_extra(
                run.run_id, app_id=run.app_id, function_id=run.function_id, trace_id=run.trace_id
            )
            if run.error is None:
                log.info("run %s %s", run.run_id, run.status.value, extra=extra)
            elif run.status is RunStatus.FAILED:
                error = run.error
                log.warning(
                    "run %s failed: %s: %s", run.run_id, error.name, error.message, extra=extra
                )
            else:
                log.info("run %s cancelled: %s", run.run_id, run.error.message, extra=extra)


def run_log_extra(
    run_id: str,
    *,
    app_id: str = "",
    function_id: str = "",
    trace_id: str = "",
    span_id: str = "",
    step_id: str = "",
    execution_id: str = "",
) -> dict[str, str]:
    """``extra=`` for a log line about a run: the ids that are known."""
    extra = {
        "run_id": run_id,
        "app_id": app_id,
        "function_id": function_id,
        "trace_id": trace_id,
        "span_id": span_id,
        "step_id": step_id,
        "execution_id": execution_id,
    }
    return {key: value for key, value in extra.items() if value}
