"""The engine's own data types. Servicers translate wire messages to and from them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


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


@dataclass(frozen=True, slots=True)
class ErrorData:
    name: str
    message: str
    stack: str = ""


# ---------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventInput:
    """An event as sent; ``id`` empty means "assign one"."""

    id: str
    name: str
    data: bytes
    user: bytes
    ts_ms: int


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: str
    name: str
    data: bytes
    user: bytes
    ts_ms: int
    received_at_ms: int


@dataclass(frozen=True, slots=True)
class SkippedRun:
    """A function an event matched but did not start."""

    app_id: str
    function_id: str
    reason: str
    existing_run_id: str = ""


@dataclass(frozen=True, slots=True)
class SendResult:
    event_id: str
    duplicate: bool
    run_ids: list[str]
    skipped: list[SkippedRun] = field(default_factory=list)
    #: Runs waiting for the event that it resumed.
    resumed_run_ids: list[str] = field(default_factory=list)
    #: Runs it cancelled through cancel_on.
    cancelled_run_ids: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------
# Functions
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventTrigger:
    name: str
    if_expression: str = ""


class CatchUp(enum.StrEnum):
    """Cron ticks missed while no control plane ran."""

    ONE = "one"
    NONE = "none"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class CronTrigger:
    schedule: str
    timezone: str = ""
    catch_up: CatchUp = CatchUp.ONE


Trigger = EventTrigger | CronTrigger

DEFAULT_RETRIES = 4
MAX_RETRIES = 20


@dataclass(frozen=True, slots=True)
class CancelOn:
    """Cancel a run when a matching event arrives."""

    event: str
    match: str = ""
    if_expression: str = ""
    timeout_ms: int = 0


@dataclass(frozen=True, slots=True)
class Timeouts:
    start_ms: int = 0
    finish_ms: int = 0


class ConcurrencyScope(enum.StrEnum):
    FUNCTION = "fn"
    APP = "app"
    GLOBAL = "global"


@dataclass(frozen=True, slots=True)
class Concurrency:
    """At most ``limit`` runs of the scope (per key value) execute at once."""

    limit: int
    key: str = ""
    scope: ConcurrencyScope = ConcurrencyScope.FUNCTION


@dataclass(frozen=True, slots=True)
class Throttle:
    limit: int
    period_ms: int
    burst: int = 1
    key: str = ""


@dataclass(frozen=True, slots=True)
class RateLimit:
    limit: int
    period_ms: int
    key: str = ""


@dataclass(frozen=True, slots=True)
class Debounce:
    period_ms: int
    key: str = ""
    timeout_ms: int = 0


@dataclass(frozen=True, slots=True)
class Batching:
    max_size: int
    timeout_ms: int
    key: str = ""


class SingletonMode(enum.StrEnum):
    SKIP = "skip"
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class Singleton:
    key: str = ""
    mode: SingletonMode = SingletonMode.SKIP


class PauseMode(enum.StrEnum):
    HOLD = "hold"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A function definition as registered by a worker."""

    app_id: str
    id: str
    name: str
    triggers: tuple[Trigger, ...]
    retries: int = DEFAULT_RETRIES
    cancel_on: tuple[CancelOn, ...] = ()
    idempotency: str = ""
    timeouts: Timeouts = Timeouts()
    concurrency: tuple[Concurrency, ...] = ()
    throttle: Throttle | None = None
    rate_limit: RateLimit | None = None
    debounce: Debounce | None = None
    #: CEL over ``event``: seconds to start ahead (positive) or later (negative).
    priority: str = ""
    batching: Batching | None = None
    singleton: Singleton | None = None

    @property
    def crons(self) -> list[CronTrigger]:
        return [t for t in self.triggers if isinstance(t, CronTrigger)]

    @property
    def key(self) -> FunctionKey:
        return FunctionKey(self.app_id, self.id)


@dataclass(frozen=True, slots=True)
class FunctionKey:
    app_id: str
    function_id: str

    def __str__(self) -> str:
        return f"{self.app_id}/{self.function_id}"


@dataclass(frozen=True, slots=True)
class FunctionInfo:
    spec: FunctionSpec
    connected_workers: int
    registered_at_ms: int
    updated_at_ms: int
    paused: PauseMode | None = None
    #: The next tick of each cron trigger, in trigger order (0: none).
    next_fire_ms: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class WorkerHello:
    protocol_version: int
    app_id: str
    instance_id: str
    sdk_language: str
    sdk_version: str
    capacity: int
    functions: list[FunctionSpec]


# ---------------------------------------------------------------------------
# Executions and outcomes
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Runs as read back
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunSummary:
    id: str
    app_id: str
    function_id: str
    status: RunStatus
    event_id: str
    attempt: int
    created_at_ms: int
    started_at_ms: int
    ended_at_ms: int
    output: bytes | None
    error: ErrorData | None
    replay_of: str
    trace_id: str
    parent_run_id: str = ""


@dataclass(frozen=True, slots=True)
class StepRecord:
    step_id: str
    name: str
    kind: StepKind
    status: StepStatus
    output: bytes | None
    error: ErrorData | None
    attempts: int
    started_at_ms: int
    ended_at_ms: int
    child_run_id: str = ""
    waiting_for: str = ""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    ts_ms: int
    kind: HistoryKind
    step_id: str = ""
    step_name: str = ""
    attempt: int = 0
    error: ErrorData | None = None
    until_ms: int = 0
    message: str = ""
    execution_id: str = ""
    # When the attempt began, for step failures (ts_ms is when it was recorded).
    started_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class RunDetail:
    run: RunSummary
    events: list[StoredEvent]
    steps: list[StepRecord]
    history: list[HistoryEntry]


@dataclass(frozen=True, slots=True)
class RunFilter:
    app_id: str = ""
    function_id: str = ""
    statuses: tuple[RunStatus, ...] = ()
    created_after_ms: int = 0
    created_before_ms: int = 0


@dataclass(frozen=True, slots=True)
class EventFilter:
    name: str = ""
    received_after_ms: int = 0
    received_before_ms: int = 0


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_token: str = ""


@dataclass(slots=True)
class EventDetail:
    event: StoredEvent
    runs: list[RunSummary] = field(default_factory=list)
    skipped: list[SkippedRun] = field(default_factory=list)


# ---------------------------------------------------------------------------
# Trace and metric records: what the engine hands to its observer after a commit
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepSpanRecord:
    trace_id: str
    root_span_id: str
    run_id: str
    app_id: str
    function_id: str
    step_id: str
    name: str
    kind: StepKind
    # 0-based: the first attempt is 0.
    attempt: int
    started_at_ms: int
    ended_at_ms: int
    error: ErrorData | None = None


@dataclass(frozen=True, slots=True)
class RunSpanRecord:
    trace_id: str
    root_span_id: str
    run_id: str
    app_id: str
    function_id: str
    status: RunStatus
    created_at_ms: int
    ended_at_ms: int
    error: ErrorData | None = None
    # The event that started the run: its id, name and span (a W3C
    # traceparent; None for a run no event started or an event without one).
    event_id: str = ""
    event_name: str = ""
    event_traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class WaitSpanRecord:
    """A sleep, event wait or invoke that ended."""

    # The run's root span (W3C traceparent).
    run_traceparent: str
    run_id: str
    step_id: str
    name: str
    kind: StepKind
    started_at_ms: int
    ended_at_ms: int
    # A wait or invoke ran out of time (a sleep never does).
    timed_out: bool = False
    # The event that resolved an event wait; the child run of an invoke.
    event_id: str = ""
    child_run_id: str = ""
    # An invoke whose child failed or timed out: the step fails.
    error: ErrorData | None = None


@dataclass(frozen=True, slots=True)
class EventSpanRecord:
    """An event stored by a send."""

    # The event's own span (W3C traceparent), as stored with the event.
    traceparent: str
    # The sender's span, when the sender propagated one.
    parent_traceparent: str | None
    event_id: str
    name: str
    received_at_ms: int
    run_count: int = 0


@dataclass(frozen=True, slots=True)
class ClaimRecord:
    """A run leased to a worker for one execution."""

    app_id: str
    function_id: str
    # How long after the queue item was due it was claimed.
    lag_ms: int
    # The run's first execution: it starts.
    first: bool
