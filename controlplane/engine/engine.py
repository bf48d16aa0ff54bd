"""The engine: what the API layer calls. It knows nothing of gRPC or HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from controlplane.engine import admin, claims, cron, ingest, invocation, leases
from controlplane.engine.clock import Clock, VirtualClock
from controlplane.engine.creation import Routing
from controlplane.engine.dispatcher import Dispatcher
from controlplane.engine.doctor import InvariantWatch
from controlplane.engine.effects import Effects
from controlplane.engine.observer import EngineObserver, report_committed, run_log_extra
from controlplane.engine.outcome_intake import OutcomeIntake
from controlplane.engine.outcomes import (
    LEASE_LOST,
)
from controlplane.engine.registry import FunctionRegistry, spec_from_json, spec_to_json
from controlplane.engine.retention import RetentionPurge
from controlplane.engine.sessions import SessionSink, SessionTable, WorkerSession
from controlplane.engine.settings import EngineSettings, format_bytes
from controlplane.engine.stats import EngineStats, collect_stats
from controlplane.engine.unserved import UnservedWarnings
from controlplane.engine.validation import (
    MAX_FUNCTIONS_PER_APP,
    check_json_object,
    validate_events,
    validate_hello,
)
from controlplane.engine.watchers import RunWatchers
from controlplane.model import (
    CronTrigger,
    EventDetail,
    EventFilter,
    EventInput,
    Execution,
    FunctionInfo,
    FunctionKey,
    FunctionRecord,
    Outcome,
    Page,
    PauseMode,
    ReplayMode,
    RunDetail,
    RunFilter,
    RunSummary,
    SendResult,
    StoredEvent,
    WorkerHello,
)
from controlplane.model.errors import (
    FailedPrecondition,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    WorkerRejected,
)
from controlplane.model.ids import new_hex_id
from controlplane.store import Store
from controlplane.store.tx import WriteTx

# A Send of at most this many events goes ahead of other writes.
URGENT_SEND_EVENTS = 10

log = logging.getLogger("tether.engine")

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50
# A page token that does not decode (tokens are opaque: the caller can only
# have made it up or broken it).
BAD_PAGE_TOKEN = (
    "page_token is not one this server issued: pass the next_page_token of the "
    "previous page, or none for the first page"
)
# With a shared store, changes made by another control plane are not announced
# here; run watchers re-read at this interval as well.
_SHARED_WATCH_RECHECK_S = 1.0


class Engine:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        settings: EngineSettings | None = None,
        observer: EngineObserver | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings or EngineSettings()
        # Traces and metrics (controlplane/telemetry): the engine knows nothing of them.
        self.observer = observer or EngineObserver()
        self.registry = FunctionRegistry()
        self.sessions = SessionTable()
        self.watchers = RunWatchers()
        self.unserved = UnservedWarnings(self.sessions)
        self.routing = Routing(self.registry.get, self.registry.matching)
        self.dispatcher = Dispatcher(
            store, clock, self.sessions, self.settings, self.routing, self.apply_effects
        )
        self.intake = OutcomeIntake(
            store,
            clock.now_ms,
            self.sessions,
            self.settings,
            self.routing,
            self.dispatcher.wake,
            self.apply_effects,
        )
        self._stopping = False
        # Cancelled runs' executions a CancelRun waits to hear the worker confirm.
        self._cancel_acks: dict[str, asyncio.Event] = {}
        # How long a cancelled execution's running step may still report.
        self._keep_cancelled_s = self.settings.lease_timeout_ms / 1000 * 4
        self._background: set[asyncio.Task[None]] = set()
        self.invariants = InvariantWatch(store, clock, self.settings.invariant_check_interval_ms)
        self.retention = RetentionPurge(
            store,
            clock,
            self.settings.retention_ms,
            lambda: {
                spec.key: spec.retention_ms
                for spec, _, _ in self.registry.all()
                if spec.retention_ms
            },
        )

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        await self.reload_functions()
        if self.settings.cap_leases_on_start:
            # Leases of the previous process: their workers may re-announce them
            # within a lease timeout; the ones not re-announced expire then.
            cap = self.clock.now_ms() + self.settings.lease_timeout_ms
            held = await self.store.write(lambda tx: tx.cap_leases(cap))
            if held:
                log.info("%d lease(s) from before the restart wait to be re-announced", held)
        self.dispatcher.start()
        self.invariants.start()
        self.retention.start()

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def ready(self) -> bool:
        """Whether it can serve: the database answers and it is not shutting down."""
        return self.store.availability.available and not self._stopping

    def begin_shutdown(self) -> None:
        """Refuse new workers from now on (they are told to come back later)."""
        self._stopping = True

    async def stop(self) -> None:
        self._stopping = True
        await self.invariants.stop()
        await self.retention.stop()
        await self.dispatcher.stop()
        await self.observer.shutdown()

    async def stats(self) -> EngineStats:
        """The queue, waits and connected workers now (for gauges)."""
        return await collect_stats(
            self.store,
            self.clock.now_ms(),
            self.registry,
            self.sessions,
            self.invariants.counts,
            self.retention.purged,
        )

    # -- events ----------------------------------------------------------------------

    async def send_events(
        self, events: list[EventInput], traceparent: str | None = None
    ) -> list[SendResult]:
        """Store events; ``traceparent``: the sender's span (W3C), if it sent one."""
        validate_events(events, self.settings.limits)
        now = self.clock.now_ms()
        batch = [ingest.prepare(e, now, traceparent) for e in events]
        since = now - self.settings.dedupe_window_ms
        routing = self.routing
        # The runs these events start are leased to connected workers in the
        # same transaction, and dispatched as soon as it commits.
        tickets = self.dispatcher.tickets_for(
            key for event in events for key in self.registry.matching(event.name)
        )

        def store(tx: WriteTx) -> tuple[list[SendResult], Effects, list[list[Execution]]]:
            results, effects = ingest.store_events(tx, batch, now, since, routing)
            claimed = [t.claim(tx) if effects.wake else [] for t in tickets]
            return results, effects, claimed

        try:
            # A Send of a few events goes ahead of what waits to be stored
            # (workers' results, bulk Sends): its sender waits for one commit.
            urgent = len(events) <= URGENT_SEND_EVENTS
            results, effects, claimed = await self.store.write(store, urgent=urgent)
        finally:
            for ticket in tickets:
                ticket.release()
        leased: set[str] = set()
        for ticket, executions in zip(tickets, claimed, strict=True):
            if await self.dispatcher.deliver(ticket, executions):
                leased.update(e.run_id for e in executions)
        if (
            leased
            and all(t.drained(e) for t, e in zip(tickets, claimed, strict=True))
            and all(
                run_id in leased for r in results for run_id in (*r.run_ids, *r.resumed_run_ids)
            )
        ):
            effects.wake = False  # nothing left for the dispatcher to hand out
        self.apply_effects(effects)
        if not self.store.shared:
            # With a shared store, a worker may be connected to another node.
            self.unserved.runs_queued(
                key
                for event, result in zip(events, results, strict=True)
                if result.run_ids
                for key in self.registry.matching(event.name)
            )
        return results

    def apply_effects(self, effects: Effects) -> None:
        """Act on what a committed write changed: tell watchers, workers, the
        observer (spans, metrics) and the log; wake the dispatcher."""
        self.watchers.notify(effects.changed_runs)
        report_committed(self.observer, effects)
        for run_id, holder in effects.cancelled:
            if holder is None:
                continue
            if self.dispatcher.drop_unsent(holder):
                # Leased ahead, never dispatched: its worker has nothing to stop.
                self.sessions.untrack(holder)
                self.cancel_acknowledged(holder)
                continue
            owner = self.sessions.untrack_cancelled(holder, self._keep_cancelled_s)
            if owner is not None:
                owner.sink.cancel(holder, run_id, "run cancelled", run_cancelled=True)
            else:
                self.cancel_acknowledged(holder)  # no worker to hear it
        if effects.deadline_ms is not None:
            self.dispatcher.note_deadline(effects.deadline_ms)
        if effects.wake or effects.cancelled:
            self.dispatcher.wake()
        if effects.wake or effects.cancelled or effects.deadline_ms is not None:
            self.store.announce()

    def peer_changed(self, kind: str) -> None:
        """Another control plane sharing the store announced a change."""
        if kind == "functions":
            task = asyncio.get_running_loop().create_task(self.reload_functions())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        self.dispatcher.wake()

    async def reload_functions(self) -> None:
        """Read the functions table (at start, and when another node registered some)."""
        rows = await self.store.read(lambda r: r.load_functions())
        self.registry.put_all(
            (
                spec_from_json(row.app_id, row.function_id, row.definition),
                row.registered_at_ms,
                row.updated_at_ms,
            )
            for row in rows
        )
        self.dispatcher.wake()

    # -- workers ---------------------------------------------------------------------

    async def connect_worker(self, hello: WorkerHello, sink: SessionSink) -> WorkerSession:
        held = {h.execution_id: h.run_id for h in hello.held}
        # Before anything waits: an earlier stream of this worker whose end is
        # not noticed yet must not release what it re-announces when it ends.
        for execution_id in held:
            owner = self.sessions.owner(execution_id)
            if owner is not None and owner.app_id == hello.app_id:
                self.sessions.untrack(execution_id)
        now = self.clock.now_ms()
        # Off the event loop: a large app's checks must not hold up other callers.
        records = await asyncio.to_thread(_registration, hello, now)
        if self._stopping:
            raise WorkerRejected("shutting_down", "the control plane is shutting down")
        total = self.registry.count_of(hello.app_id, (spec.id for spec in hello.functions))
        if total > MAX_FUNCTIONS_PER_APP:
            raise WorkerRejected(
                "invalid_hello",
                f"app {hello.app_id!r} would have {total:,} functions; "
                f"the limit is {MAX_FUNCTIONS_PER_APP:,} per app",
            )
        functions = hello.functions

        def register(tx: WriteTx) -> int | None:
            tx.register_functions(records)
            return cron.sync_schedules(tx, hello.app_id, functions, now)

        first_tick = await self.store.write(register)
        self.registry.put_all((spec, now, now) for spec in hello.functions)
        # A kept schedule may be overdue (ticks missed while no control plane ran).
        self.dispatcher.note_schedules(first_tick)
        self.store.announce("functions")
        session = WorkerSession(
            id=new_hex_id(8),
            app_id=hello.app_id,
            instance_id=hello.instance_id,
            sdk=f"{hello.sdk_language} {hello.sdk_version}".strip(),
            capacity=hello.capacity,
            functions=frozenset(spec.id for spec in hello.functions),
            sink=sink,
            connected_at_ms=now,
        )
        if held:
            # Before the session is seen by the dispatcher: what it holds counts
            # against its capacity from the start.
            await self._resume(session, held)
        self.sessions.add(session)
        log.info(
            "worker connected: app %s, %d function(s), capacity %d (%s, session %s)",
            session.app_id,
            len(session.functions),
            session.capacity,
            session.instance_id or "unnamed",
            session.id,
        )
        self.dispatcher.wake()
        return session

    async def _resume(self, session: WorkerSession, held: dict[str, str]) -> None:
        """Re-grant a reconnecting worker the executions it still holds whose
        leases are still theirs; tell it to stop the others (after its Welcome,
        which the sink sends first)."""
        clock, timeout = self.clock, self.settings.lease_timeout_ms
        kept = await self.store.write(
            lambda tx: claims.resume_executions(tx, session.app_id, held, clock.now_ms(), timeout),
            hold=True,
        )
        for execution_id, info in kept:
            self.sessions.track(session, execution_id, info)
        resumed = {execution_id for execution_id, _ in kept}
        for execution_id, run_id in held.items():
            if execution_id not in resumed:
                session.sink.cancel(execution_id, run_id, LEASE_LOST)
        log.info(
            "worker session %s re-announced %d execution(s): %d resumed, %d lost",
            session.id,
            len(held),
            len(resumed),
            len(held) - len(resumed),
        )

    async def disconnect_worker(self, session: WorkerSession, reason: str) -> None:
        session.closed = True
        session.acknowledged.set()
        unsent = self.dispatcher.take_unsent(session)
        held = [e for e, info in session.in_flight.items() if info.run_id not in unsent]
        self.sessions.remove(session)
        for execution_id in session.cancelled:
            self.cancel_acknowledged(execution_id)  # the stream is gone: so is it
        log.info("worker disconnected: session %s (%s)", session.id, reason)
        if unsent:
            # Leased ahead and never dispatched: queued again, due as they were.
            await self.store.write(lambda tx: tx.requeue(unsent))
        if not held:
            return
        if self._stopping:
            # The worker keeps running them and re-announces them to the next
            # control plane; if it never does, they expire with their lease.
            log.info("left %d lease(s) of session %s to be re-announced", len(held), session.id)
            return
        now = self.clock.now_ms()
        message = f"worker disconnected ({reason})"
        released = await self.store.write(lambda tx: leases.release(tx, held, now, message))
        if released:
            log.info("requeued %d run(s) held by session %s", len(released), session.id)
        self.dispatcher.forget(released, message)

    def close_if_silent(self, session: WorkerSession) -> bool:
        """End the stream of a worker silent for a lease timeout and a heartbeat
        interval more (with UNAVAILABLE and the reason); True if it did. Checked
        every heartbeat interval, so that a worker holding no lease is closed
        too. The interval of grace lets the dispatcher, which closes silent
        workers when it expires leases, record a frozen worker's leases as
        expired first."""
        settings = self.settings
        interval = settings.heartbeat_interval_ms
        return session.close_if_silent(settings.lease_timeout_ms, interval, grace_ms=interval)

    def heard_from(self, session: WorkerSession) -> None:
        """Any frame from a worker shows it is alive."""
        was_silent = session.silent_ms() >= self.settings.lease_timeout_ms
        session.last_seen = time.monotonic()
        if was_silent:
            # It was passed over while silent; work may be waiting for it.
            self.dispatcher.wake()

    async def advance_clock(self, by_ms: int) -> int:
        """Move a virtual clock forward. Leases move with it: a jump of the clock
        is not a worker falling silent."""
        clock = self.clock
        if not isinstance(clock, VirtualClock):
            raise FailedPrecondition(
                "this control plane runs on the system clock; start it with --clock virtual"
            )
        if by_ms <= 0:
            raise InvalidArgument(f"advance by a positive number of milliseconds, not {by_ms}")
        await self.store.write(lambda tx: tx.shift_leases(by_ms))
        now = clock.advance(by_ms)
        self.dispatcher.wake()
        return now

    def drain(self, session: WorkerSession) -> None:
        session.draining = True
        log.info("worker draining: session %s", session.id)

    async def heartbeat(self, session: WorkerSession, execution_ids: list[str]) -> None:
        session.prune_cancelled(self._keep_cancelled_s)
        unknown = [e for e in execution_ids if e not in session.in_flight]
        known = [e for e in execution_ids if e in session.in_flight]
        clock, timeout = self.clock, self.settings.lease_timeout_ms
        # Held through a database outage, and timed when it applies: a lease
        # must not lapse because the database was away.
        lost = (
            await self.store.write(
                lambda tx: leases.extend(tx, known, clock.now_ms() + timeout), hold=True
            )
            if known
            else set()
        )
        for execution_id in [*unknown, *lost]:
            info = session.in_flight.get(execution_id)
            self.sessions.untrack(execution_id)
            session.sink.cancel(execution_id, info.run_id if info else "", LEASE_LOST)
        if lost:
            self.dispatcher.wake()

    def receive_outcomes(self, session: WorkerSession, outcomes: list[Outcome]) -> None:
        """Queue a worker's outcomes for the next commit; acknowledge them after it
        (engine/outcome_intake.py)."""
        self.intake.receive(session, outcomes)

    async def room_for_outcomes(self, session: WorkerSession) -> None:
        """Wait while the worker has as many outcomes waiting for their commit as
        a stream may hold: the servicer reads its next frame after this."""
        await self.intake.room(session)

    # -- runs ---------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> RunDetail:
        detail = await self.store.read(lambda r: r.get_run_detail(run_id))
        if detail is None:
            raise NotFound(f"run {run_id!r} not found")
        return detail

    async def list_runs(self, flt: RunFilter, page_size: int, token: str) -> Page[RunSummary]:
        size = _page_size(page_size)
        try:
            return await self.store.read(lambda r: r.list_runs(flt, size, token))
        except ValueError:
            raise InvalidArgument(BAD_PAGE_TOKEN) from None

    async def cancel_run(self, run_id: str, reason: str) -> RunSummary:
        """Cancel the run; return once its worker (if it is running) confirmed
        that it starts no further step."""
        now = self.clock.now_ms()
        summary, effects = await self.store.write(
            lambda tx: admin.cancel_run(tx, run_id, reason, now)
        )
        await self._apply_cancellation(effects)
        return summary

    async def _apply_cancellation(self, effects: Effects) -> None:
        acks = {h: asyncio.Event() for _, h in effects.cancelled if h is not None}
        self._cancel_acks.update(acks)
        try:
            self.apply_effects(effects)
            if acks:
                confirmed = asyncio.gather(*(e.wait() for e in acks.values()))
                try:
                    await asyncio.wait_for(confirmed, self.settings.cancel_ack_timeout_ms / 1000)
                except TimeoutError:
                    late = sum(not e.is_set() for e in acks.values())
                    log.warning(
                        "%d worker(s) did not confirm a cancellation within %d ms",
                        late,
                        self.settings.cancel_ack_timeout_ms,
                    )
        finally:
            for execution_id in acks:
                self._cancel_acks.pop(execution_id, None)

    def cancel_acknowledged(self, execution_id: str) -> None:
        """The worker of a cancelled run's execution starts no further step."""
        event = self._cancel_acks.get(execution_id)
        if event is not None:
            event.set()

    def worker_acknowledged_cancel(self, session: WorkerSession, execution_id: str) -> None:
        """A CancelAck frame: only the stream that held the execution speaks for it."""
        if execution_id in session.cancelled:
            self.cancel_acknowledged(execution_id)

    async def cancel_runs(
        self,
        app_id: str,
        function_id: str,
        created_after_ms: int,
        created_before_ms: int,
        reason: str,
    ) -> int:
        """Cancel every unfinished run of a function created in the range."""
        if not app_id or not function_id:
            raise InvalidArgument("bulk cancellation needs an app id and a function id")
        total = 0
        clock = self.clock
        while True:
            count, effects = await self.store.write(
                lambda tx: admin.cancel_runs(
                    tx,
                    app_id,
                    function_id,
                    created_after_ms,
                    created_before_ms,
                    reason,
                    clock.now_ms(),
                )
            )
            await self._apply_cancellation(effects)
            total += count
            if count < admin.BULK_CHUNK:
                return total

    async def replay_run(self, run_id: str, mode: ReplayMode) -> RunSummary:
        now = self.clock.now_ms()
        routing = self.routing
        summary, effects = await self.store.write(
            lambda tx: admin.replay_run(tx, run_id, mode, now, routing)
        )
        self.apply_effects(effects)
        log.info(
            "run %s replays run %s (%s)",
            summary.id,
            run_id,
            mode.value,
            extra=run_log_extra(
                summary.id,
                app_id=summary.app_id,
                function_id=summary.function_id,
                trace_id=summary.trace_id,
            ),
        )
        return summary

    async def watch_run(self, run_id: str) -> AsyncIterator[RunSummary]:
        """The run now, then after every change, until it has finished."""
        recheck = _SHARED_WATCH_RECHECK_S if self.store.shared else None
        with self.watchers.watch(run_id) as changed:
            last: RunSummary | None = None
            while True:
                changed.clear()
                run = await self.store.read(lambda r: r.get_run(run_id))
                if run is None:
                    raise NotFound(f"run {run_id!r} not found")
                if last is None or run.status != last.status:
                    yield run
                last = run
                if run.status.is_terminal:
                    return
                # asyncio.timeout: wait_for can swallow the cancellation of a
                # caller who went away (Python 3.11), and this loop would go on.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(recheck):
                        await changed.wait()

    # -- functions and events -----------------------------------------------------------

    async def list_functions(self, app_id: str) -> list[FunctionInfo]:
        paused, fires = await self.store.read(lambda r: (r.paused_functions(), r.next_fires()))
        infos = []
        for spec, registered, updated in self.registry.all():
            if app_id and spec.app_id != app_id:
                continue
            next_fire = fires.get(spec.key, {})
            infos.append(
                FunctionInfo(
                    spec=spec,
                    connected_workers=self.sessions.serving(spec.app_id, spec.id),
                    registered_at_ms=registered,
                    updated_at_ms=updated,
                    paused=paused.get(spec.key),
                    next_fire_ms=tuple(
                        next_fire.get(position, 0)
                        for position, trigger in enumerate(spec.triggers)
                        if isinstance(trigger, CronTrigger)
                    ),
                )
            )
        return infos

    async def _function_info(self, key: FunctionKey) -> FunctionInfo:
        for info in await self.list_functions(key.app_id):
            if info.spec.key == key:
                return info
        raise NotFound(f"function {key.function_id!r} of app {key.app_id!r} not found")

    async def pause_function(self, app_id: str, function_id: str, mode: PauseMode) -> FunctionInfo:
        """Start no execution of the function's runs until it is resumed; new
        events queue held runs (HOLD) or start nothing (SKIP)."""
        key = _function_key(app_id, function_id)
        now = self.clock.now_ms()
        if not await self.store.write(lambda tx: tx.set_paused(key, mode, now)):
            raise NotFound(f"function {function_id!r} of app {app_id!r} not found")
        log.info("function %s paused (%s new events)", key, mode.value)
        self.store.announce()
        return await self._function_info(key)

    async def resume_function(self, app_id: str, function_id: str) -> tuple[FunctionInfo, int]:
        """Resume a paused function; returns it and how many held runs are released."""
        key = _function_key(app_id, function_id)
        now = self.clock.now_ms()
        found, held = await self.store.write(
            lambda tx: (tx.set_paused(key, None, now), tx.count_due(key, now))
        )
        if not found:
            raise NotFound(f"function {function_id!r} of app {app_id!r} not found")
        log.info("function %s resumed; %d held run(s) released", key, held)
        self.dispatcher.wake()
        self.store.announce()
        return await self._function_info(key), held

    async def invoke_function(self, app_id: str, function_id: str, data: bytes) -> tuple[str, str]:
        """Start a run of the function with ``data`` (JSON of an object) as its
        event's data, whatever its triggers; returns (run id, event id)."""
        key = _function_key(app_id, function_id)
        spec = self.registry.get(key)
        if spec is None:
            raise NotFound(f"function {function_id!r} of app {app_id!r} not found")
        limit = self.settings.limits.max_event_bytes
        if len(data) > limit:
            raise LimitExceeded(
                f"invoke data is {format_bytes(len(data))}; the limit is {format_bytes(limit)}"
            )
        check_json_object(data, "invoke data", required=True)
        now = self.clock.now_ms()
        text = data.decode("utf-8")
        run_id, event_id, effects = await self.store.write(
            lambda tx: invocation.invoke_function(tx, spec, text, now)
        )
        self.apply_effects(effects)
        log.info(
            "run %s invokes %s",
            run_id,
            key,
            extra=run_log_extra(run_id, app_id=app_id, function_id=function_id),
        )
        return run_id, event_id

    async def list_events(self, flt: EventFilter, page_size: int, token: str) -> Page[StoredEvent]:
        size = _page_size(page_size)
        try:
            return await self.store.read(lambda r: r.list_events(flt, size, token))
        except ValueError:
            raise InvalidArgument(BAD_PAGE_TOKEN) from None

    async def get_event(self, event_id: str) -> EventDetail:
        detail = await self.store.read(lambda r: r.get_event(event_id))
        if detail is None:
            raise NotFound(f"event {event_id!r} not found")
        return detail


def _function_key(app_id: str, function_id: str) -> FunctionKey:
    if not app_id or not function_id:
        raise InvalidArgument("name the function by its app id and function id")
    return FunctionKey(app_id, function_id)


def _page_size(requested: int) -> int:
    if not 0 <= requested <= MAX_PAGE_SIZE:
        raise InvalidArgument(
            f"page_size must be between 0 and {MAX_PAGE_SIZE} (0: {DEFAULT_PAGE_SIZE}); "
            f"got {requested}"
        )
    return requested or DEFAULT_PAGE_SIZE


def _registration(hello: WorkerHello, now_ms: int) -> list[FunctionRecord]:
    """The functions of a valid Hello as registered (WorkerRejected otherwise)."""
    validate_hello(hello)
    return [
        FunctionRecord(spec.key, spec.name, spec_to_json(spec), now_ms) for spec in hello.functions
    ]
