"""What the engine tells the outside world about its work: an observer (traces
and metrics are implemented in controlplane/telemetry; the engine knows nothing
of OpenTelemetry) and the log. The gauges' snapshot is in stats.py.

The observer is called on the event loop after each commit, with records of
what the commit did; it must do O(1) work per record (no I/O).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from controlplane.engine.effects import Effects
from controlplane.engine.trace_ids import step_span_id
from controlplane.model import (
    ClaimRecord,
    EventSpanRecord,
    RunSpanRecord,
    RunStatus,
    StepSpanRecord,
    WaitSpanRecord,
)

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

    def __init__(self, *observers: EngineObserver, owned: bool = True) -> None:
        self._observers = observers
        # Not owned: shared with other engines, whose owner shuts them down.
        self._owned = owned

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
        if not self._owned:
            return
        for observer in self._observers:
            await observer.shutdown()


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
