"""What a function receives: its event(s), run id, attempt, steps and logger."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from tether._models import CronTick, Event
from tether._step import Step, current_step_attempt, current_step_id

if TYPE_CHECKING:
    from tether._execution import Execution


class RunLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger that stays silent while the run replays memoized steps, so each
    line is written once per run, not once per execution. Its records carry
    ``run_id``, ``function_id``, ``execution_id``, ``trace_id`` and, in a step's
    code, ``step_id`` (and ``span_id`` when that step has a span)."""

    def __init__(self, execution: Execution) -> None:
        extra = {
            "run_id": execution.run_id,
            "function_id": execution.function.id,
            "execution_id": execution.execution_id,
        }
        if execution.trace_ids is not None:
            extra["trace_id"] = format(execution.trace_ids[0], "032x")
        super().__init__(logging.getLogger(f"tether.functions.{execution.function.id}"), extra)
        self._execution = execution

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self._execution.replaying:
            return
        super().log(level, msg, *args, **kwargs)

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        step_id = current_step_id.get()
        if step_id is not None:
            extra["step_id"] = step_id
            span = trace.get_current_span().get_span_context()
            if span.is_valid:
                extra["span_id"] = format(span.span_id, "016x")
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return msg, kwargs


class Context:
    """Passed to every function: ``async def fn(ctx: Context)``."""

    def __init__(self, execution: Execution) -> None:
        self._execution = execution
        events = execution.events
        #: The event that started the run. A cron run (see ``cron``) carries no
        #: event data: its event is named ``""`` and its ``data`` is empty.
        self.event: Event = events[0] if events else Event(name="")
        #: Every event of the run (more than one for batched functions; none for
        #: a cron run).
        self.events: list[Event] = list(events)
        #: The cron tick that started the run: its schedule, time zone and
        #: ``scheduled_at`` (UTC). None for runs an event started.
        self.cron: CronTick | None = execution.cron
        self.run_id: str = execution.run_id
        self.function_id: str = execution.function.id
        self.step: Step = Step(execution)
        self.logger: logging.LoggerAdapter[logging.Logger] = RunLogger(execution)

    @property
    def attempt(self) -> int:
        """0-based attempt number: of the step whose code is running, or of the
        function body outside any step."""
        step_attempt = current_step_attempt.get()
        return self._execution.attempt if step_attempt is None else step_attempt
