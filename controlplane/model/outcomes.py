"""Executions handed to workers and the outcomes they report."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.model.events import StoredEvent
from controlplane.model.statuses import ParentClose, StepKind


@dataclass(frozen=True, slots=True)
class ErrorData:
    name: str
    message: str
    stack: str = ""


@dataclass(frozen=True, slots=True)
class MemoizedStep:
    step_id: str
    output: bytes | None
    error: ErrorData | None


@dataclass(slots=True)
class Execution:
    """One lease of a run to a worker: everything the worker needs to run it."""

    execution_id: str
    run_id: str
    app_id: str
    function_id: str
    attempt: int
    events: list[StoredEvent]
    steps: list[MemoizedStep]
    step_attempts: dict[str, int]
    # Retrying steps whose next attempt is not due yet: hashed id -> when it is.
    step_not_before: dict[str, int]
    traceparent: str
    lease_deadline_ms: int
    server_time_ms: int
    # Sizes of the memoized state, for enforcing run limits as steps complete.
    state_bytes: int = 0
    # Set for a run a cron schedule started.
    cron: CronTick | None = None


@dataclass(frozen=True, slots=True)
class CronTick:
    schedule: str
    timezone: str
    scheduled_at_ms: int


@dataclass(frozen=True, slots=True)
class StepCompleted:
    step_id: str
    name: str
    kind: StepKind
    output: bytes
    started_at_ms: int
    ended_at_ms: int


@dataclass(frozen=True, slots=True)
class StepFailed:
    step_id: str
    name: str
    kind: StepKind
    error: ErrorData
    retriable: bool
    retry_delay_ms: int
    started_at_ms: int
    ended_at_ms: int


@dataclass(frozen=True, slots=True)
class PlannedSleep:
    step_id: str
    name: str
    until_ms: int
    started_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class PlannedEventWait:
    step_id: str
    name: str
    event: str
    match: str
    if_expression: str
    timeout_until_ms: int
    started_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class PlannedInvoke:
    step_id: str
    name: str
    app_id: str
    function_id: str
    data: bytes
    timeout_until_ms: int
    started_at_ms: int = 0
    parent_close: ParentClose = ParentClose.CANCEL


PlannedWait = PlannedSleep | PlannedEventWait | PlannedInvoke


@dataclass(frozen=True, slots=True)
class Suspended:
    waits: list[PlannedWait]


@dataclass(frozen=True, slots=True)
class RunCompleted:
    output: bytes


@dataclass(frozen=True, slots=True)
class RunFailed:
    error: ErrorData
    retriable: bool
    retry_delay_ms: int


@dataclass(frozen=True, slots=True)
class NonDeterminism:
    message: str
    new_steps: list[str]
    unreached_step_ids: list[str]


OutcomeBody = StepCompleted | StepFailed | Suspended | RunCompleted | RunFailed | NonDeterminism
TERMINAL_OUTCOMES = (Suspended, RunCompleted, RunFailed)


@dataclass(frozen=True, slots=True)
class Outcome:
    seq: int
    execution_id: str
    run_id: str
    body: OutcomeBody


@dataclass(frozen=True, slots=True)
class Refusal:
    seq: int
    execution_id: str
    reason: str
