"""Connected workers, as the engine sees them.

A servicer wraps each worker stream in a :class:`SessionSink`; the engine only ever
talks to workers through it, so it knows nothing of how frames travel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from controlplane.model import Execution, OutcomeBody, Refusal, StepCompleted, StepFailed
from controlplane.model.errors import EngineError, Unavailable

log = logging.getLogger(__name__)


class SessionSink(Protocol):
    """What the engine sends to one worker. Calls never block."""

    def dispatch(self, executions: list[Execution]) -> None: ...

    def ack(self, through_seq: int, refusals: list[Refusal]) -> None: ...

    def cancel(
        self, execution_id: str, run_id: str, reason: str, *, run_cancelled: bool = False
    ) -> None: ...

    def close(self, reason: str, *, error: EngineError | None = None) -> None:
        """End the stream; the engine is told through ``disconnect_worker``.
        With ``error``, the worker receives it as the stream's status (its gRPC
        code and its sentence); without, the stream ends with OK."""


@dataclass(slots=True)
class InFlight:
    """An execution leased to a worker, with what limits need to know of it."""

    run_id: str
    function_id: str
    state_bytes: int
    step_count: int
    step_attempts: dict[str, int]
    # Set when an outcome of this execution broke a rule: the reason its later
    # outcomes are refused.
    stopped: str = ""
    # Set for an execution re-granted to a reconnecting worker (None for one
    # dispatched on this stream): what of its steps was durable then.
    resumed: ResumedSteps | None = None


@dataclass(frozen=True, slots=True)
class ResumedSteps:
    """What was durable of a run's steps when its execution was re-granted. The
    worker may send those outcomes again (their acknowledgement was lost): they
    are acknowledged, not applied twice."""

    #: Steps with a final result (completed, or failed for good).
    recorded: frozenset[str]
    #: For each step being retried, when its durable failed attempt started.
    failed_attempts_started: Mapping[str, int]

    def already_durable(self, body: OutcomeBody) -> bool:
        if not isinstance(body, StepCompleted | StepFailed):
            return False
        if body.step_id in self.recorded:
            return True
        started = self.failed_attempts_started.get(body.step_id)
        return isinstance(body, StepFailed) and started == body.started_at_ms


@dataclass(eq=False, slots=True)
class WorkerSession:
    id: str
    app_id: str
    instance_id: str
    sdk: str
    capacity: int
    functions: frozenset[str]
    sink: SessionSink
    connected_at_ms: int
    # When the worker last sent anything (heartbeats keep it fresh), in real
    # monotonic time: a virtual clock's jumps must not make a worker look silent.
    last_seen: float = field(default_factory=time.monotonic)
    in_flight: dict[str, InFlight] = field(default_factory=dict)
    # Executions whose run was cancelled while they ran, with when: the step each
    # was running may still report its result (monotonic seconds, for pruning).
    cancelled: dict[str, tuple[InFlight, float]] = field(default_factory=dict)
    draining: bool = False
    closed: bool = False
    # The highest outcome seq accepted on this stream (0: none yet).
    last_seq: int = 0
    # Outcomes received and not yet acknowledged; set on every acknowledgement.
    unacknowledged: int = 0
    # Capacity promised to claims being committed (the dispatcher's, or one
    # made in the same transaction as an event): not free for another claim.
    reserved: int = 0
    acknowledged: asyncio.Event = field(default_factory=asyncio.Event)

    def remember_cancelled(self, execution_id: str, info: InFlight, keep_s: float) -> None:
        self.prune_cancelled(keep_s)
        self.cancelled[execution_id] = (info, time.monotonic())

    def prune_cancelled(self, keep_s: float) -> None:
        """Forget cancelled executions older than ``keep_s`` seconds."""
        if self.cancelled:
            now = time.monotonic()
            self.cancelled = {e: v for e, v in self.cancelled.items() if now - v[1] < keep_s}

    @property
    def free(self) -> int:
        if self.draining or self.closed:
            return 0
        return max(0, self.capacity - len(self.in_flight) - self.reserved)

    def silent_ms(self) -> int:
        """Milliseconds since the worker last sent a frame."""
        return int((time.monotonic() - self.last_seen) * 1000)

    def close_if_silent(
        self, lease_timeout_ms: int, heartbeat_interval_ms: int, *, grace_ms: int = 0
    ) -> bool:
        """End the stream of a worker that sent nothing for a whole lease timeout
        (plus ``grace_ms``), telling it why (UNAVAILABLE: it should reconnect).
        True if it did."""
        silent = self.silent_ms()
        if self.closed or silent < lease_timeout_ms + grace_ms:
            return False
        message = (
            f"no word from the worker for {silent} ms; the limit is the lease timeout, "
            f"{lease_timeout_ms} ms (send a Heartbeat every {heartbeat_interval_ms} ms)"
        )
        log.warning("worker session %s: %s: closing its stream", self.id, message)
        self.sink.close(message, error=Unavailable(message))
        self.closed = True
        self.acknowledged.set()
        return True


class SessionTable:
    def __init__(self) -> None:
        self._sessions: dict[str, WorkerSession] = {}
        self._owner: dict[str, WorkerSession] = {}

    def add(self, session: WorkerSession) -> None:
        self._sessions[session.id] = session

    def remove(self, session: WorkerSession) -> None:
        self._sessions.pop(session.id, None)
        for execution_id in session.in_flight:
            self._owner.pop(execution_id, None)

    def __iter__(self) -> Iterator[WorkerSession]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)

    def track(self, session: WorkerSession, execution_id: str, info: InFlight) -> None:
        session.in_flight[execution_id] = info
        self._owner[execution_id] = session

    def untrack(self, execution_id: str) -> WorkerSession | None:
        session = self._owner.pop(execution_id, None)
        if session is not None:
            session.in_flight.pop(execution_id, None)
        return session

    def untrack_cancelled(self, execution_id: str, keep_s: float) -> WorkerSession | None:
        """Untrack an execution whose run was cancelled, remembering it so that the
        step it is running can still report."""
        session = self._owner.pop(execution_id, None)
        if session is not None:
            info = session.in_flight.pop(execution_id, None)
            if info is not None:
                session.remember_cancelled(execution_id, info, keep_s)
        return session

    def owner(self, execution_id: str) -> WorkerSession | None:
        return self._owner.get(execution_id)

    def in_flight_total(self) -> int:
        return len(self._owner)

    def serving(self, app_id: str, function_id: str) -> int:
        return sum(
            1
            for s in self._sessions.values()
            if s.app_id == app_id and function_id in s.functions and not s.closed
        )
