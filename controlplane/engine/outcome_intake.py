"""The outcome intake: a worker's frame of outcomes checked against the stream's
rules and the limits, queued for the next commit, and acknowledged (or refused)
once it is durable. Frames of one worker are applied and acknowledged in order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace

from controlplane.engine import leases
from controlplane.engine.creation import Routing
from controlplane.engine.effects import Effects
from controlplane.engine.observer import run_log_extra
from controlplane.engine.outcomes import LEASE_LOST, RUN_FINISHED, AppliedOutcomes, apply_outcomes
from controlplane.engine.sessions import InFlight, SessionTable, WorkerSession
from controlplane.engine.settings import EngineSettings, format_bytes
from controlplane.engine.validation import MAX_STEP_ID_LENGTH, MAX_STEP_NAME_LENGTH, load_json
from controlplane.model import (
    ErrorData,
    NonDeterminism,
    Outcome,
    OutcomeBody,
    Refusal,
    RunCompleted,
    RunFailed,
    StepCompleted,
    StepFailed,
    Suspended,
)
from controlplane.model.errors import EngineError, InvalidArgument, ProtocolError, Unavailable
from controlplane.store import Store
from controlplane.store.tx import WriteTx

log = logging.getLogger("tether.engine")


class OutcomeIntake:
    """Takes in workers' outcome frames for the engine."""

    def __init__(
        self,
        store: Store,
        now_ms: Callable[[], int],
        sessions: SessionTable,
        settings: EngineSettings,
        routing: Routing,
        wake_dispatcher: Callable[[], None],
        apply_effects: Callable[[Effects], None],
    ) -> None:
        self._store = store
        self._now_ms = now_ms
        self._sessions = sessions
        self._settings = settings
        self._routing = routing
        self._wake_dispatcher = wake_dispatcher
        self._apply_effects = apply_effects

    def receive(self, session: WorkerSession, outcomes: list[Outcome]) -> None:
        """Queue a worker's outcomes for the next commit; acknowledge them after it.

        Returns at once so that the next frame can be read while this one commits.
        Raises ProtocolError (nothing of the frame applied) when the frame breaks
        the stream's rules.
        """
        if not outcomes:
            return
        check_frame(session, outcomes)
        through = outcomes[-1].seq
        session.last_seq = through
        session.unacknowledged += len(outcomes)
        refusals: list[Refusal] = []
        accepted: list[Outcome] = []
        attempts: dict[str, dict[str, int]] = {}
        stopped: list[tuple[str, str, str]] = []
        for outcome in outcomes:
            info = session.in_flight.get(outcome.execution_id)
            if info is None and outcome.execution_id in session.cancelled:
                # From an execution whose run was cancelled while a step ran: only
                # that step's result is recorded.
                if not isinstance(outcome.body, StepCompleted):
                    refusals.append(Refusal(outcome.seq, outcome.execution_id, RUN_FINISHED))
                    continue
                info = session.cancelled[outcome.execution_id][0]
            if info is None or info.stopped:
                reason = info.stopped if info is not None else LEASE_LOST
                refusals.append(Refusal(outcome.seq, outcome.execution_id, reason))
                continue
            if info.resumed is not None and info.resumed.already_durable(outcome.body):
                continue  # sent again after a reconnect
            if isinstance(outcome.body, NonDeterminism):
                log.warning(
                    "run %s: non-determinism: %s",
                    outcome.run_id,
                    outcome.body.message,
                    extra=run_log_extra(
                        outcome.run_id,
                        function_id=info.function_id,
                        execution_id=outcome.execution_id,
                    ),
                )
            body, problem = checked(info, outcome.body, self._settings)
            accepted.append(replace(outcome, body=body))
            attempts[outcome.execution_id] = info.step_attempts
            if problem and isinstance(body, StepFailed):
                # The worker went on with a result that is not kept: end the
                # execution here; the run executes again and meets the failure.
                info.stopped = problem
                accepted.append(replace(outcome, body=Suspended(waits=[])))
                stopped.append((outcome.execution_id, outcome.run_id, problem))
        now = self._now_ms()
        routing = self._routing
        # Even a frame with nothing to apply goes through the writer, so that its
        # acknowledgement cannot overtake an earlier frame's.
        held = sorted({o.execution_id for o in accepted})

        def release_held(tx: WriteTx, error: Exception) -> object:
            # This frame is lost: end its executions' leases before any later
            # frame of theirs applies, so what is durable stays a prefix.
            return leases.release(tx, held, now, f"could not store outcomes: {_why(error)}")

        future = self._store.submit(
            lambda tx: (
                apply_outcomes(tx, accepted, now, routing, attempts)
                if accepted
                else AppliedOutcomes()
            ),
            release_held if held else None,
            # Through a database outage the outcomes wait, unacknowledged.
            hold=True,
        )
        future.add_done_callback(
            lambda f: self._applied(session, outcomes, through, refusals, stopped, f)
        )

    def _applied(
        self,
        session: WorkerSession,
        outcomes: list[Outcome],
        through: int,
        refusals: list[Refusal],
        stopped: list[tuple[str, str, str]],
        future: asyncio.Future[AppliedOutcomes],
    ) -> None:
        session.unacknowledged -= len(outcomes)
        session.acknowledged.set()
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            # Nothing was applied. Refuse it all so the worker stops these
            # executions; their leases run out and the runs execute again from
            # what is durable.
            if not isinstance(error, Unavailable):  # an outage is logged once, by the store
                log.error("could not store outcomes from session %s: %s", session.id, error)
            reason = f"the control plane could not store outcomes: {_why(error)}"
            for outcome in outcomes:
                self._sessions.untrack(outcome.execution_id)
            session.sink.ack(through, [Refusal(o.seq, o.execution_id, reason) for o in outcomes])
            self._wake_dispatcher()
            return
        result = future.result()
        for execution_id in result.ended:
            self._sessions.untrack(execution_id)
        session.sink.ack(through, refusals + result.refusals)
        for execution_id, run_id, reason in stopped:
            session.sink.cancel(execution_id, run_id, reason)
        self._apply_effects(result)
        if result.ended or result.earliest_due_ms is not None:
            self._wake_dispatcher()
            # Ended executions free concurrency slots other nodes may be waiting for.
            self._store.announce()

    async def room(self, session: WorkerSession) -> None:
        """Return once the worker has fewer unacknowledged outcomes than a stream
        may hold (at once, usually), or its session closed."""
        limit = self._settings.max_unacknowledged_outcomes
        while session.unacknowledged >= limit and not session.closed:
            session.acknowledged.clear()
            await session.acknowledged.wait()


def check_frame(session: WorkerSession, outcomes: list[Outcome]) -> None:
    """Raise ProtocolError for the first outcome of a frame that breaks the
    stream's rules; the frame is then not applied at all."""
    previous = session.last_seq
    for outcome in outcomes:
        if outcome.seq == 0:
            raise ProtocolError(
                "outcome seq 0 is not allowed: seq starts at 1 on each stream and "
                "strictly increases"
            )
        if outcome.seq <= previous:
            raise ProtocolError(
                f"outcome seq {outcome.seq} does not increase: the previous outcome on this "
                f"stream had seq {previous}"
            )
        previous = outcome.seq
        problem = _step_names_problem(outcome.body)
        if problem:
            raise ProtocolError(f"outcome seq {outcome.seq}: {problem}")
        info = session.in_flight.get(outcome.execution_id)
        if info is None and outcome.execution_id in session.cancelled:
            info = session.cancelled[outcome.execution_id][0]
        if info is not None and outcome.run_id != info.run_id:
            raise ProtocolError(
                f"outcome seq {outcome.seq} names run {outcome.run_id!r}, but execution "
                f"{outcome.execution_id} is of run {info.run_id}"
            )


def _step_names_problem(body: OutcomeBody) -> str:
    """Why the step ids and names an outcome carries break the protocol (5.2),
    or "": an id is the 40-character SHA-1 of the name, a name at most 512
    characters (an SDK limits ids as written to 256, suffixes included)."""
    if isinstance(body, StepCompleted | StepFailed):
        steps: list[tuple[str, str]] = [(body.step_id, body.name)]
    elif isinstance(body, Suspended):
        steps = [(wait.step_id, wait.name) for wait in body.waits]
    else:
        return ""
    for step_id, name in steps:
        if not 0 < len(step_id) <= MAX_STEP_ID_LENGTH:
            return (
                f"step id {step_id[:64]!r} is not a step id: it is the hex SHA-1 of the "
                f"step's name, {MAX_STEP_ID_LENGTH} characters"
            )
        if len(name) > MAX_STEP_NAME_LENGTH:
            return (
                f"step name {name[:64]!r}... is {len(name)} characters; "
                f"the limit is {MAX_STEP_NAME_LENGTH}"
            )
    return ""


def checked(info: InFlight, body: OutcomeBody, settings: EngineSettings) -> tuple[OutcomeBody, str]:
    """A step or run result that is not JSON or breaks a limit becomes a failure
    that will not be retried, naming the problem (returned too). A step result
    that is kept counts towards the run's state size and step count."""
    if isinstance(body, RunCompleted):
        error = _run_output_problem(body, settings)
        if error is None:
            return body, ""
        return RunFailed(error=error, retriable=False, retry_delay_ms=0), error.message
    if not isinstance(body, StepCompleted):
        return body, ""
    error = _step_output_problem(info, body, settings)
    if error is None:
        info.state_bytes += len(body.output)
        info.step_count += 1
        return body, ""
    failure = StepFailed(
        step_id=body.step_id,
        name=body.name,
        kind=body.kind,
        error=error,
        retriable=False,
        retry_delay_ms=0,
        started_at_ms=body.started_at_ms,
        ended_at_ms=body.ended_at_ms,
    )
    return failure, error.message


def _run_output_problem(body: RunCompleted, settings: EngineSettings) -> ErrorData | None:
    limit = settings.limits.max_step_output_bytes
    problem = _json_problem(body.output, "the function's return value")
    if problem:
        return ErrorData("InvalidOutput", problem)
    if len(body.output) > limit:
        return ErrorData(
            "LimitExceeded",
            f"the function's return value is {format_bytes(len(body.output))}; the limit "
            f"is {format_bytes(limit)}",
        )
    return None


def _step_output_problem(
    info: InFlight, body: StepCompleted, settings: EngineSettings
) -> ErrorData | None:
    limits = settings.limits
    size = len(body.output)
    step = f"step {body.name!r}"
    problem = _json_problem(body.output, f"{step} output")
    if problem:
        return ErrorData("InvalidOutput", problem)
    if size > limits.max_step_output_bytes:
        return ErrorData(
            "LimitExceeded",
            f"{step} output is {format_bytes(size)}; the limit is "
            f"{format_bytes(limits.max_step_output_bytes)} per step",
        )
    if info.state_bytes + size > limits.max_run_state_bytes:
        return ErrorData(
            "LimitExceeded",
            f"{step} would bring the run's state to "
            f"{format_bytes(info.state_bytes + size)}; the limit is "
            f"{format_bytes(limits.max_run_state_bytes)} per run",
        )
    if info.step_count + 1 > limits.max_steps_per_run:
        return ErrorData(
            "LimitExceeded",
            f"{step} would be step {info.step_count + 1} of the run; "
            f"the limit is {limits.max_steps_per_run} steps per run",
        )
    return None


def _json_problem(payload: bytes, what: str) -> str:
    try:
        load_json(payload, what)
    except InvalidArgument as error:
        return str(error)
    return ""


def _why(error: BaseException) -> str:
    """A failed commit, for the worker and the run's history: the engine's
    sentence, never a database driver's text (its SQL, its class names)."""
    if isinstance(error, EngineError):
        return str(error)
    return "an unexpected error (the control plane's log has the details)"
