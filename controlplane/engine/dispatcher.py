"""Hands due runs to connected workers within their capacity; fires timers.

The dispatcher sleeps until something can change what is ready: a write that
queued or freed work (the engine calls :meth:`Dispatcher.wake`), the earliest
due time among waiting runs, the earliest lease deadline, the earliest run
deadline (timeouts), or the earliest cron tick. It never polls on a fixed tick.
Under a virtual clock with auto-skip on, when nothing is in flight it moves the
clock straight to the next due time or run deadline; cron ticks are not skipped
to (a daily schedule would make the clock run forever): they fire when the
clock reaches them.

Cron ticks are fired by :func:`controlplane.engine.cron.fire_due` in one writer
transaction that locks the due schedule rows (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL), creates their runs and advances them: the row lock plus the
advance in the same transaction is the lease on a tick, so with several
control planes on one database each tick starts one run, whichever node fires
it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from controlplane.engine import cron, leases, timeouts
from controlplane.engine.claims import claim_executions
from controlplane.engine.clock import Clock, VirtualClock
from controlplane.engine.creation import Routing
from controlplane.engine.effects import Effects
from controlplane.engine.observer import run_log_extra
from controlplane.engine.sessions import InFlight, SessionTable, WorkerSession
from controlplane.engine.settings import EngineSettings
from controlplane.model import Execution, FunctionKey
from controlplane.model.errors import Unavailable
from controlplane.store import Store
from controlplane.store.tx import WriteTx

log = logging.getLogger(__name__)

# After an unexpected failure (the database went away...), wait before retrying.
_ERROR_BACKOFF_S = 0.5

# Timers (sleeps, retries, a delayed start) due this soon are leased ahead and
# held here until they fall due, so that nothing is left to commit when they
# do: the run is dispatched on time however many fall due together.
LEASE_AHEAD_MS = 1000
# A claim ahead takes the timers due within this long of the earliest one.
_AHEAD_WINDOW_MS = 20


@dataclass(eq=False, slots=True)
class _Held:
    """An execution leased ahead, to be dispatched when its run falls due."""

    session: WorkerSession
    execution: Execution
    due_at_ms: int
    timer: asyncio.TimerHandle | None = None


@dataclass(eq=False, slots=True)
class ClaimTicket:
    """Capacity of one worker session reserved for a claim until the claim's
    transaction has committed (:meth:`release`): nothing else may promise it
    meanwhile, neither the dispatcher nor another sender's claim."""

    session: WorkerSession
    limit: int
    claim: Callable[[WriteTx], list[Execution]]
    #: What the claim changed, for the event loop once it is committed.
    effects: Effects = field(default_factory=Effects)
    _released: bool = False

    def drained(self, executions: list[Execution]) -> bool:
        """Whether a claim of this ticket that leased ``executions`` left none
        of its worker's functions' runs due (while the claim was committed the
        dispatcher may have passed over this worker, its room reserved)."""
        return len(executions) < self.limit

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.session.reserved -= self.limit


class Dispatcher:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        sessions: SessionTable,
        settings: EngineSettings,
        routing: Routing,
        apply_effects: Callable[[Effects], None],
    ) -> None:
        self._store = store
        self._clock = clock
        self._sessions = sessions
        self._settings = settings
        self._routing = routing
        self._apply_effects = apply_effects
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._turn = 0
        # The earliest lease deadline known (a lower bound): checked on every
        # turn, so that expiry is not starved by a dispatcher that never idles.
        self._lease_check_at: int | None = None
        # The earliest run deadline known; None once checked and none found.
        self._deadline_check_at: int | None = None
        # When to fire cron schedules next (0: at once, which also fires ticks
        # missed while no control plane ran); None while there are none.
        self._fire_at: int | None = 0
        # The time of the last firing pass: schedules due by then were fired or
        # are not this node's to fire (their function is unknown here).
        self._fired_through = 0
        self.dispatched = 0
        # Executions leased ahead and not dispatched yet (execution id ->).
        # Only on the system clock: a virtual clock's jumps would outrun them.
        self._lease_ahead = not clock.is_virtual
        self._held: dict[str, _Held] = {}
        # Timers due by then were leased ahead, or found no worker with room.
        self._ahead_through = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="tether-dispatcher")

    async def stop(self) -> None:
        # What is held goes back to the queue when its worker's stream ends
        # (take_unsent); none is dispatched from here on.
        for held in self._held.values():
            if held.timer is not None:
                held.timer.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                self._wake.clear()
                round_start = self._clock.now_ms()
                if self._lease_check_at is not None and round_start >= self._lease_check_at:
                    await self.expire_leases()
                if self._deadline_check_at is not None and round_start >= self._deadline_check_at:
                    await self.expire_deadlines()
                if self._fire_at is not None and round_start >= self._fire_at:
                    await self.fire_schedules()
                if await self._dispatch_round():
                    continue
                await self._idle(round_start)
            except asyncio.CancelledError:
                raise
            except Unavailable:
                # The store logs the outage once; rounds resume when it ends.
                await asyncio.sleep(_ERROR_BACKOFF_S)
            except Exception:
                log.exception("dispatcher round failed; retrying")
                await asyncio.sleep(_ERROR_BACKOFF_S)

    def _ready_sessions(self) -> list[WorkerSession]:
        """Sessions that may be given work now, the starting one rotated so
        that no worker is always served first."""
        # A worker silent for a whole lease timeout gets nothing new: it may be
        # frozen, or its event loop blocked.
        silent_limit = self._settings.lease_timeout_ms
        ready = [
            s for s in self._sessions if s.free > 0 and s.functions and s.silent_ms() < silent_limit
        ]
        if ready:
            self._turn = (self._turn + 1) % len(ready)
            ready = ready[self._turn :] + ready[: self._turn]
        return ready

    async def _dispatch_round(self) -> bool:
        ready = self._ready_sessions()
        if not ready:
            return False
        results = await asyncio.gather(*(self._claim_for(s) for s in ready))
        return any(results)

    def tickets_for(self, wanted: Iterable[FunctionKey]) -> list[ClaimTicket]:
        """Reserve, for a write about to make runs of these functions due, a
        claim on a connected worker of each app with room for them: the caller
        runs each ticket's ``claim`` in that same transaction, then
        :meth:`ClaimTicket.release` and :meth:`deliver` once it commits.
        So a run can be leased and dispatched with the commit that created it.

        Each ticket claims what the dispatcher would (all the worker has room
        for, oldest due first), so that nothing due waits behind the new runs;
        a claim that takes fewer than its limit has left nothing due for that
        worker (:meth:`ClaimTicket.drained`)."""
        functions: dict[str, set[str]] = {}
        for key in wanted:
            functions.setdefault(key.app_id, set()).add(key.function_id)
        if not functions:
            return []
        tickets: list[ClaimTicket] = []
        for session in self._ready_sessions():
            if not functions.get(session.app_id, set()) & session.functions:
                continue
            del functions[session.app_id]
            tickets.append(self._ticket(session, session.free))
        return tickets

    def _ticket(
        self,
        session: WorkerSession,
        limit: int,
        *,
        at_ms: int | None = None,
        due_at: dict[str, int] | None = None,
    ) -> ClaimTicket:
        """With ``at_ms``, the claim is made as of then (ahead of time)."""
        limit = min(limit, self._settings.max_claim_batch)
        app_id = session.app_id
        function_ids = sorted(session.functions)
        clock = self._clock
        lease_timeout = self._settings.lease_timeout_ms
        finish_timeout_of = self._finish_timeout_of(app_id)
        effects = Effects()

        def claim(tx: WriteTx) -> list[Execution]:
            return claim_executions(
                tx,
                app_id,
                function_ids,
                limit,
                clock.now_ms() if at_ms is None else at_ms,
                lease_timeout,
                finish_timeout_of,
                effects,
                due_at,
                None if at_ms is None else clock.now_ms(),
            )

        session.reserved += limit
        return ClaimTicket(session, limit, claim, effects)

    def _finish_timeout_of(self, app_id: str) -> Callable[[str], int]:
        spec_of = self._routing.spec_of

        def finish_timeout_of(function_id: str) -> int:
            spec = spec_of(FunctionKey(app_id, function_id))
            return spec.timeouts.finish_ms if spec is not None else 0

        return finish_timeout_of

    async def _claim_for(self, session: WorkerSession) -> bool:
        ticket = self._ticket(session, session.free)
        try:
            executions = await self._store.write(ticket.claim)
        finally:
            ticket.release()
        return await self.deliver(ticket, executions)

    async def deliver(self, ticket: ClaimTicket, executions: list[Execution]) -> bool:
        """Hand a committed claim's executions to its worker (its ticket
        released); False when there were none or the worker has left."""
        if not executions:
            return False
        session = ticket.session
        if session.closed:
            # The worker left while its executions were being leased: give them back.
            ids = [e.execution_id for e in executions]
            clock = self._clock
            await self._store.write(
                lambda tx: leases.release(tx, ids, clock.now_ms(), "worker disconnected")
            )
            self._left(ticket, executions)
            return False
        self._track(ticket, executions)
        session.sink.dispatch(executions)
        self.dispatched += len(executions)
        return True

    def _left(self, ticket: ClaimTicket, executions: list[Execution]) -> None:
        ticket.effects.changed_runs.update(e.run_id for e in executions)
        self._apply_effects(ticket.effects)
        self.wake()

    def _track(self, ticket: ClaimTicket, executions: list[Execution]) -> None:
        """Count a committed claim's executions against their worker's room,
        watch their leases and deadlines, and report the claim."""
        session = ticket.session
        claimed = ticket.effects
        claimed.changed_runs.update(e.run_id for e in executions)
        for execution in executions:
            self._sessions.track(
                session,
                execution.execution_id,
                InFlight(
                    run_id=execution.run_id,
                    function_id=execution.function_id,
                    state_bytes=execution.state_bytes,
                    step_count=len(execution.steps),
                    step_attempts=execution.step_attempts,
                ),
            )
        deadline = executions[0].lease_deadline_ms
        if self._lease_check_at is None or deadline < self._lease_check_at:
            # A claim made in another write may find the loop asleep with no
            # lease to check for: it must look again.
            self._lease_check_at = deadline
            self.wake()
        finish_timeout_of = self._finish_timeout_of(session.app_id)
        for execution in executions:
            finish = finish_timeout_of(execution.function_id)
            if finish:
                claimed.note_deadline(execution.server_time_ms + finish)
        self._apply_effects(claimed)

    # -- timers leased ahead ------------------------------------------------------

    async def _lease_ahead_of(self, due_ms: int) -> bool:
        """Lease, as of a moment just after ``due_ms`` (a timer coming within
        LEASE_AHEAD_MS), the runs due by then to workers with room; hold each
        until its own due time. True if any was leased."""
        at_ms = due_ms + _AHEAD_WINDOW_MS
        ready = self._ready_sessions()
        results = await asyncio.gather(*(self._claim_ahead_for(s, at_ms) for s in ready))
        if not any(full for _, full in results):
            # Else a claim took all it might: there may be more due by then.
            self._ahead_through = at_ms
        return any(leased for leased, _ in results)

    async def _claim_ahead_for(self, session: WorkerSession, at_ms: int) -> tuple[bool, bool]:
        """(whether any was leased, whether the claim took all it might)."""
        due_at: dict[str, int] = {}
        ticket = self._ticket(session, session.free, at_ms=at_ms, due_at=due_at)
        try:
            executions = await self._store.write(ticket.claim)
        finally:
            ticket.release()
        if not executions:
            return False, False
        if session.closed:
            # Back to the queue, due when they were: they must not run early.
            back = {e.run_id: due_at[e.run_id] for e in executions}
            await self._store.write(lambda tx: tx.requeue(back))
            self._left(ticket, executions)
            return False, False
        self._track(ticket, executions)
        loop = asyncio.get_running_loop()
        by_time: dict[int, list[str]] = {}
        for execution in executions:
            due = due_at[execution.run_id]
            self._held[execution.execution_id] = _Held(session, execution, due)
            by_time.setdefault(due, []).append(execution.execution_id)
        for due, ids in by_time.items():
            timer = loop.call_later(self._clock.seconds_until(due), self._send_held, ids)
            for execution_id in ids:
                self._held[execution_id].timer = timer
        return True, not ticket.drained(executions)

    def _send_held(self, execution_ids: list[str]) -> None:
        by_session: dict[WorkerSession, list[Execution]] = {}
        for execution_id in execution_ids:
            held = self._held.pop(execution_id, None)
            # Gone: cancelled, or its lease released meanwhile.
            if held is not None and execution_id in held.session.in_flight:
                by_session.setdefault(held.session, []).append(held.execution)
        for session, executions in by_session.items():
            if not session.closed:
                session.sink.dispatch(executions)
                self.dispatched += len(executions)

    def drop_unsent(self, execution_id: str) -> bool:
        """Forget an execution leased ahead and not dispatched yet (its run was
        cancelled, its lease released); True if it was such a one, which its
        worker never heard of."""
        held = self._held.pop(execution_id, None)
        return held is not None

    def take_unsent(self, session: WorkerSession) -> dict[str, int]:
        """The runs of a leaving worker's executions leased ahead and not
        dispatched yet, each with its due time: they go back to the queue due
        then, not now (their timers were resolved as of then)."""
        mine = [e for e, held in self._held.items() if held.session is session]
        return {held.execution.run_id: held.due_at_ms for held in (self._held.pop(e) for e in mine)}

    async def _idle(self, round_start: int) -> None:
        fired_through = self._fired_through
        next_due, next_deadline, run_deadline, next_fire = await self._store.read(
            lambda r: (
                r.next_due_after(round_start),
                r.next_lease_deadline(),
                r.next_deadline(),
                r.next_fire_after(fired_through),
            )
        )
        self._lease_check_at = next_deadline
        self._deadline_check_at = run_deadline
        # Ticks learnt of meanwhile (note_schedules) are kept.
        self.note_schedules(next_fire)
        if self._wake.is_set():
            return
        clock = self._clock
        if (
            self._lease_ahead
            and next_due is not None
            and next_due > self._ahead_through
            and next_due - clock.now_ms() <= LEASE_AHEAD_MS
            and await self._lease_ahead_of(next_due)
        ):
            return
        fire_at = self._fire_at
        next_timer = min((t for t in (next_due, run_deadline) if t is not None), default=None)
        if (
            isinstance(clock, VirtualClock)
            and clock.auto_skip
            and next_timer is not None
            and (fire_at is None or fire_at > clock.now_ms())
            and self._sessions.in_flight_total() == 0
            and self._store.pending_writes == 0
        ):
            log.debug("virtual clock: skipping ahead %d ms", next_timer - clock.now_ms())
            clock.advance_to(next_timer)
            return
        if self._lease_ahead and next_due is not None and next_due > self._ahead_through:
            next_due -= LEASE_AHEAD_MS  # wake to lease it ahead
        timers = [t for t in (next_due, next_deadline, run_deadline, fire_at) if t is not None]
        timeout = clock.seconds_until(min(timers)) + 0.001 if timers else None
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
        # cancellation that arrives as the wake-up does, and stop() then waits
        # for a loop that never ends.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    async def expire_leases(self) -> None:
        clock = self._clock
        timeout = self._settings.lease_timeout_ms
        released, next_deadline = await self._store.write(
            lambda tx: (
                leases.release_expired(tx, clock.now_ms(), timeout),
                tx.next_lease_deadline(),
            )
        )
        self._lease_check_at = next_deadline
        self.forget(released, "lease expired")
        for session in self._sessions:
            session.close_if_silent(timeout, self._settings.heartbeat_interval_ms)

    def note_deadline(self, at_ms: int | None) -> None:
        """A run deadline may now exist at or after ``at_ms``: check it when due."""
        if at_ms is not None and (
            self._deadline_check_at is None or at_ms < self._deadline_check_at
        ):
            self._deadline_check_at = at_ms
            self.wake()

    def note_schedules(self, at_ms: int | None) -> None:
        """A cron tick may be due at ``at_ms`` (a registration kept or added a
        schedule): fire it then."""
        if at_ms is not None and (self._fire_at is None or at_ms < self._fire_at):
            self._fire_at = at_ms

    async def fire_schedules(self) -> None:
        """Start the runs of the cron ticks that have come (one transaction)."""
        clock = self._clock
        spec_of = self._routing.spec_of
        fired = await self._store.write(lambda tx: cron.fire_due(tx, clock.now_ms(), spec_of))
        self._fired_through = fired.now_ms
        self._fire_at = fired.next_check_ms
        if fired.run_ids:
            log.info("cron: started %d run(s)", len(fired.run_ids))
        self._apply_effects(fired.effects)

    async def expire_deadlines(self) -> None:
        """Cancel the runs that broke their start or finish timeout."""
        clock = self._clock
        spec_of = self._routing.spec_of
        effects, next_deadline = await self._store.write(
            lambda tx: (timeouts.cancel_overdue(tx, clock.now_ms(), spec_of), tx.next_deadline())
        )
        self._deadline_check_at = next_deadline
        self._apply_effects(effects)

    def forget(self, released: list[tuple[str, str]], reason: str) -> None:
        """Executions whose leases were released: stop tracking them, tell their
        workers to stop, and dispatch the runs again."""
        if not released:
            return
        for run_id, execution_id in released:
            log.info(
                "run %s: execution %s stopped (%s); the run is queued again",
                run_id,
                execution_id,
                reason,
                extra=run_log_extra(run_id, execution_id=execution_id),
            )
            owner = self._sessions.untrack(execution_id)
            unsent = self.drop_unsent(execution_id)
            if owner is not None and not owner.closed and not unsent:
                owner.sink.cancel(execution_id, run_id, reason)
        self._apply_effects(Effects(changed_runs={run_id for run_id, _ in released}))
        self.wake()
