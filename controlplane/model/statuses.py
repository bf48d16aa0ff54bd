"""Statuses and kinds: of runs, steps, history entries, replays."""

from __future__ import annotations

import enum


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SLEEPING = "sleeping"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class StepKind(enum.StrEnum):
    RUN = "run"
    SLEEP = "sleep"
    WAIT_FOR_EVENT = "wait_for_event"
    INVOKE = "invoke"
    SEND_EVENT = "send_event"


class WaitKind(enum.StrEnum):
    """What a stored wait is: a step's sleep, event wait or invoke, or a
    cancel_on watch (which is no step)."""

    SLEEP = "sleep"
    WAIT_FOR_EVENT = "wait_for_event"
    INVOKE = "invoke"
    CANCEL_ON = "cancel"


class ParentClose(enum.StrEnum):
    """What happens to an invoked run when its parent is cancelled or ends
    without it, or the invoke step times out."""

    CANCEL = "cancel"
    ABANDON = "abandon"


class StepStatus(enum.StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    RETRYING = "retrying"
    PENDING = "pending"


class HistoryKind(enum.StrEnum):
    EXECUTION_STARTED = "execution.started"
    EXECUTION_LOST = "execution.lost"
    STEP_FAILED = "step.failed"
    SLEEP_STARTED = "sleep.started"
    SLEEP_ENDED = "sleep.ended"
    RUN_RETRY_SCHEDULED = "run.retry_scheduled"
    RUN_COMPLETED = "run.completed"
    RUN_FAILED = "run.failed"
    RUN_CANCELLED = "run.cancelled"
    NON_DETERMINISM = "non_determinism"
    RUN_REPLAYED = "run.replayed"
    WAIT_STARTED = "wait.started"
    WAIT_ENDED = "wait.ended"
    INVOKE_STARTED = "invoke.started"
    INVOKE_ENDED = "invoke.ended"


class ReplayMode(enum.StrEnum):
    FROM_START = "from_start"
    FROM_FAILED_STEP = "from_failed_step"
