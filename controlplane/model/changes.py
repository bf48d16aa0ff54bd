"""Changes the engine asks the store to make, as records (the store knows how)."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.model.events import StoredEvent
from controlplane.model.functions import FunctionKey
from controlplane.model.outcomes import CronTick, ErrorData
from controlplane.model.statuses import (
    HistoryKind,
    ParentClose,
    RunStatus,
    StepKind,
    StepStatus,
    WaitKind,
)


@dataclass(frozen=True, slots=True)
class RunUpdate:
    """A run's new status (checked by engine/run_states.py) and what goes with it."""

    run_id: str
    status: RunStatus
    attempt: int
    #: The JSON output of a completed run.
    output: bytes | None = None
    error: ErrorData | None = None
    #: Set when the run finished.
    ended_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """A history entry to add to a run (read back as a HistoryEntry)."""

    run_id: str
    ts_ms: int
    kind: HistoryKind
    step_id: str | None = None
    step_name: str | None = None
    attempt: int | None = None
    until_ms: int | None = None
    execution_id: str | None = None
    error: ErrorData | None = None
    message: str = ""
    #: When the attempt began, for step failures.
    started_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class NewRunRecord:
    """A run to add (its queue item is a QueueEntry)."""

    run_id: str
    key: FunctionKey
    #: The first status, run_states.INITIAL.
    status: RunStatus
    created_at_ms: int
    trace_id: str
    root_span_id: str
    event_pk: str | None = None
    replay_of: str | None = None
    parent_run_id: str | None = None
    parent_step_id: str | None = None
    #: The tick, for a run a cron schedule started.
    cron: CronTick | None = None


@dataclass(frozen=True, slots=True)
class ConcurrencySlot:
    """A concurrency key a run counts against while it holds a lease."""

    key: str
    limit: int


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """A run waiting to be leased, from ``due_at_ms`` on."""

    run_id: str
    key: FunctionKey
    due_at_ms: int
    #: Higher is claimed first among due runs.
    priority: int = 0
    #: Cancelled if not started by then.
    start_deadline_ms: int | None = None
    #: At most two (a function's concurrency rules, in order).
    concurrency: tuple[ConcurrencySlot, ...] = ()


@dataclass(frozen=True, slots=True)
class RunEventLink:
    """One of a batched run's events, at its position (0 is the run's own)."""

    run_id: str
    position: int
    event_pk: str


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to store under its primary key, with its span."""

    pk: str
    event: StoredEvent
    traceparent: str | None


@dataclass(frozen=True, slots=True)
class EventSkip:
    """Why an event started no run of a function it matched."""

    event_pk: str
    key: FunctionKey
    reason: str
    created_at_ms: int
    #: The run that holds the key, the slot or the batch, if one does.
    existing_run_id: str | None = None


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """An idempotency key taken by a run until it expires (an expired key is
    taken over)."""

    key: FunctionKey
    idempotency_key: str
    run_id: str
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class FunctionRecord:
    """A function as registered: its definition is engine/registry.py's JSON."""

    key: FunctionKey
    name: str
    definition: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class StepResult:
    """A step's result to record: completed, failed for good, or retrying
    (a retrying step takes its next result; a final one is never replaced)."""

    run_id: str
    step_id: str
    name: str
    kind: StepKind
    status: StepStatus
    started_at_ms: int
    ended_at_ms: int
    attempts: int = 1
    #: JSON text of a completed step's output.
    output: str | None = None
    error: ErrorData | None = None
    #: A retrying step is not run again before this.
    retry_at_ms: int | None = None
    #: The child run of an invoke step.
    child_run_id: str | None = None


@dataclass(frozen=True, slots=True)
class WaitRecord:
    """A stored wait: a sleep, an event wait, an invoke or a cancel_on watch."""

    run_id: str
    step_id: str
    name: str
    kind: WaitKind
    created_at_ms: int
    #: When it resolves by itself (its end or timeout).
    until_ms: int
    #: Event waits and watches: the event name, the indexed equality (a path on
    #: the incoming event and the canonical JSON it must have) and an expression.
    event_name: str | None = None
    match_path: str | None = None
    match_value: str | None = None
    expression: str | None = None
    #: The run's event, for ``event`` in expressions.
    trigger_event_pk: str | None = None
    child_run_id: str | None = None
    #: The run's root span, for the wait's span (none for cancel_on watches).
    traceparent: str | None = None
    #: Invokes: what happens to the child when the parent is gone.
    parent_close: ParentClose | None = None

    @property
    def step_kind(self) -> StepKind:
        """The kind of the step it is (not for cancel_on watches)."""
        return StepKind(self.kind.value)
