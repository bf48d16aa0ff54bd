"""Every query the engine runs, in SQLAlchemy Core: dialect-neutral except where
PostgreSQL's planner needs a statement of its own (named so).

:class:`ReadTx` reads; :class:`WriteTx` also writes and is only ever used inside
the group-commit writer's transaction. The engine decides what to write; these
classes only know how.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Select,
    Table,
    Text,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql

from controlplane.model import (
    EventDetail,
    EventFilter,
    HistoryEntry,
    Page,
    RunDetail,
    RunFilter,
    RunState,
    RunStatus,
    RunSummary,
    SkippedRun,
    StepKind,
    StepRecord,
    StepStatus,
    StoredEvent,
)
from controlplane.store import codec
from controlplane.store._txbase import NOT_DUE, InsertFactory, TxBase, chunks
from controlplane.store.flow_tx import FlowReads, FlowWrites
from controlplane.store.schedules_tx import ScheduleReads, ScheduleWrites
from controlplane.store.schema import (
    event_skips,
    events,
    functions,
    history,
    idempotency_keys,
    queue,
    run_events,
    runs,
    steps,
    wait_paths,
    waits,
)
from controlplane.store.stats_tx import StatsReads

_chunks = chunks
# Claim passes per call: each one skips the concurrency keys the previous found full.
_CLAIM_ROUNDS = 4


@dataclass(frozen=True, slots=True)
class FunctionRow:
    app_id: str
    function_id: str
    definition: str
    registered_at_ms: int
    updated_at_ms: int


@dataclass(frozen=True, slots=True)
class QueueLease:
    execution_id: str | None
    due_at_ms: int


@dataclass(frozen=True, slots=True)
class Claimed:
    run_id: str
    app_id: str
    function_id: str
    execution_id: str
    # When the queue item was due (how late the claim is, for metrics).
    due_at_ms: int = 0


__all__ = ["NOT_DUE", "Claimed", "FunctionRow", "InsertFactory", "ReadTx", "WriteTx"]


class ReadTx(ScheduleReads, FlowReads, StatsReads, TxBase):
    # -- functions ---------------------------------------------------------

    def load_functions(self) -> list[FunctionRow]:
        rows = self.conn.execute(select(functions).order_by(functions.c.app_id)).all()
        return [
            FunctionRow(r.app_id, r.function_id, r.definition, r.registered_at_ms, r.updated_at_ms)
            for r in rows
        ]

    # -- runs ----------------------------------------------------------------

    def _event_ids(self, pks: Iterable[str | None]) -> dict[str, str]:
        wanted = sorted({pk for pk in pks if pk})
        found: dict[str, str] = {}
        for chunk in _chunks(wanted):
            rows = self.conn.execute(select(events.c.pk, events.c.id).where(events.c.pk.in_(chunk)))
            found.update({r.pk: r.id for r in rows})
        return found

    def _summaries(self, rows: Sequence[Any]) -> list[RunSummary]:
        event_ids = self._event_ids(r.event_pk for r in rows)
        return [codec.run_from_row(r, event_ids.get(r.event_pk or "", "")) for r in rows]

    def get_run(self, run_id: str) -> RunSummary | None:
        row = self.conn.execute(select(runs).where(runs.c.id == run_id)).first()
        return self._summaries([row])[0] if row else None

    def get_run_detail(self, run_id: str) -> RunDetail | None:
        row = self.conn.execute(select(runs).where(runs.c.id == run_id)).first()
        if row is None:
            return None
        run = self._summaries([row])[0]
        # A batched run lists every event of its batch, in order.
        pks = self.run_event_pks([run_id]).get(run_id) or ([row.event_pk] if row.event_pk else [])
        found = {
            ev.pk: codec.event_from_row(ev)
            for ev in self.conn.execute(select(events).where(events.c.pk.in_(pks)))
        }
        trigger_events: list[StoredEvent] = [found[pk] for pk in pks if pk in found]
        step_rows = self.conn.execute(
            select(steps).where(steps.c.run_id == run_id).order_by(steps.c.position)
        ).all()
        records = [codec.step_from_row(r) for r in step_rows]
        pending = self.conn.execute(
            select(waits).where(waits.c.run_id == run_id).order_by(waits.c.created_at_ms)
        ).all()
        records.extend(
            StepRecord(
                step_id=w.step_id,
                name=w.name,
                kind=StepKind(w.kind),
                status=StepStatus.PENDING,
                output=None,
                error=None,
                attempts=0,
                started_at_ms=w.created_at_ms,
                ended_at_ms=w.until_ms if w.until_ms < NOT_DUE else 0,
                child_run_id=w.child_run_id or "",
                waiting_for=w.event_name or "",
            )
            for w in pending
            if w.kind != "cancel"
        )
        entries: list[HistoryEntry] = [
            codec.history_from_row(r)
            for r in self.conn.execute(
                select(history).where(history.c.run_id == run_id).order_by(history.c.id)
            )
        ]
        return RunDetail(run=run, events=trigger_events, steps=records, history=entries)

    def list_runs(self, flt: RunFilter, limit: int, token: str) -> Page[RunSummary]:
        query = select(runs)
        if flt.app_id:
            query = query.where(runs.c.app_id == flt.app_id)
        if flt.function_id:
            query = query.where(runs.c.function_id == flt.function_id)
        if flt.statuses:
            query = query.where(runs.c.status.in_([s.value for s in flt.statuses]))
        if flt.created_after_ms:
            query = query.where(runs.c.created_at_ms >= flt.created_after_ms)
        if flt.created_before_ms:
            query = query.where(runs.c.created_at_ms < flt.created_before_ms)
        rows, next_token = self._newest_first(query, runs.c.created_at_ms, runs.c.id, limit, token)
        return Page(self._summaries(rows), next_token)

    def _newest_first(
        self, query: Any, time_column: Any, id_column: Any, limit: int, token: str
    ) -> tuple[list[Any], str]:
        """One page of ``query``, newest first by (time, id): keyset paging, so
        a page never repeats or skips rows inserted meanwhile."""
        if token:
            at, last_id = codec.decode_cursor(token, 2)
            query = query.where(
                or_(time_column < int(at), and_(time_column == int(at), id_column < last_id))
            )
        rows = self.conn.execute(
            query.order_by(time_column.desc(), id_column.desc()).limit(limit + 1)
        ).all()
        next_token = ""
        if len(rows) > limit:
            last = rows[limit - 1]._mapping
            next_token = codec.encode_cursor(last[time_column.name], last[id_column.name])
        return list(rows[:limit]), next_token

    def runs_for_event(self, event_pk: str) -> list[RunSummary]:
        """The runs the event started, or joined (a batch)."""
        batched = self.batched_runs_of_event(event_pk)
        rows = self.conn.execute(
            select(runs)
            .where(or_(runs.c.event_pk == event_pk, runs.c.id.in_(batched)))
            .order_by(runs.c.created_at_ms)
        ).all()
        return self._summaries(rows)

    # -- events --------------------------------------------------------------

    def get_event(self, event_id: str) -> EventDetail | None:
        row = self.conn.execute(
            select(events)
            .where(or_(events.c.id == event_id, events.c.pk == event_id))
            .order_by(events.c.received_at_ms.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        skipped = [
            SkippedRun(s.app_id, s.function_id, s.reason, s.existing_run_id or "")
            for s in self.conn.execute(select(event_skips).where(event_skips.c.event_pk == row.pk))
        ]
        return EventDetail(codec.event_from_row(row), self.runs_for_event(row.pk), skipped)

    def list_events(self, flt: EventFilter, limit: int, token: str) -> Page[StoredEvent]:
        query = select(events)
        if flt.name:
            query = query.where(events.c.name == flt.name)
        if flt.received_after_ms:
            query = query.where(events.c.received_at_ms >= flt.received_after_ms)
        if flt.received_before_ms:
            query = query.where(events.c.received_at_ms < flt.received_before_ms)
        rows, next_token = self._newest_first(
            query, events.c.received_at_ms, events.c.pk, limit, token
        )
        return Page([codec.event_from_row(r) for r in rows], next_token)

    # -- timers ----------------------------------------------------------------

    def next_due_after(self, after_ms: int) -> int | None:
        """The earliest due time after ``after_ms`` among runs not leased."""
        value = self.conn.execute(
            select(func.min(queue.c.due_at_ms)).where(
                queue.c.lease_execution_id.is_(None),
                queue.c.due_at_ms > after_ms,
                queue.c.due_at_ms < NOT_DUE,
            )
        ).scalar()
        return int(value) if value is not None else None

    def next_deadline(self) -> int | None:
        """The earliest start or finish deadline of any unfinished run."""
        start = self.conn.execute(select(func.min(queue.c.start_deadline_ms))).scalar()
        finish = self.conn.execute(select(func.min(queue.c.finish_deadline_ms))).scalar()
        values = [int(v) for v in (start, finish) if v is not None]
        return min(values) if values else None

    def next_lease_deadline(self) -> int | None:
        value = self.conn.execute(
            select(func.min(queue.c.lease_deadline_ms)).where(
                queue.c.lease_execution_id.is_not(None)
            )
        ).scalar()
        return int(value) if value is not None else None

    def count_ready(self, now_ms: int) -> int:
        value = self.conn.execute(
            select(func.count())
            .select_from(queue)
            .where(queue.c.lease_execution_id.is_(None), queue.c.due_at_ms <= now_ms)
        ).scalar()
        return int(value or 0)


# Statements used with executemany; built once.
_update_run = (
    update(runs)
    .where(runs.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        attempt=bindparam("b_attempt"),
        output=bindparam("b_output"),
        error=bindparam("b_error"),
        ended_at_ms=bindparam("b_ended_at_ms"),
        updated_at_ms=bindparam("b_now"),
    )
)
_start_run = (
    update(runs)
    .where(runs.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        started_at_ms=func.coalesce(runs.c.started_at_ms, bindparam("b_now")),
        updated_at_ms=bindparam("b_now"),
    )
)

_lease = (
    update(queue)
    .where(queue.c.run_id == bindparam("b_run_id"))
    .values(
        lease_execution_id=bindparam("b_execution_id"),
        lease_deadline_ms=bindparam("b_deadline"),
        due_at_ms=NOT_DUE,
    )
)
_lower_due = (
    update(queue)
    .where(queue.c.run_id == bindparam("b_run_id"), queue.c.due_at_ms > bindparam("b_due_at_ms"))
    .values(due_at_ms=bindparam("b_due_at_ms"))
)
_requeue = (
    update(queue)
    .where(queue.c.run_id == bindparam("b_run_id"))
    .values(
        due_at_ms=bindparam("b_due_at_ms"),
        lease_execution_id=None,
        lease_deadline_ms=None,
    )
)
_delete_queue = delete(queue).where(queue.c.run_id == bindparam("b_run_id"))
_unindexed_waits = select(waits).where(
    waits.c.event_name == bindparam("b_name"), waits.c.match_path.is_(None)
)
_indexed_waits = select(waits).where(
    waits.c.event_name == bindparam("b_name"),
    waits.c.match_path == bindparam("b_path"),
    waits.c.match_value.in_(bindparam("b_values", expanding=True)),
)


def _indexed_waits_probing_each_value() -> Select[Any]:
    """PostgreSQL: the same, as one index probe per value. (Its planner would
    scan every wait of the name for a long IN list, or filter them without
    statistics; OFFSET 0 keeps the lateral subquery a parameterised probe.)"""
    values = (
        func.unnest(bindparam("b_values", type_=postgresql.ARRAY(Text)))
        .table_valued("val")
        .render_derived(name="v")
    )
    probe = (
        select(waits)
        .where(
            waits.c.event_name == bindparam("b_name"),
            waits.c.match_path == bindparam("b_path"),
            waits.c.match_value == values.c.val,
        )
        .offset(literal_column("0"))
        .lateral("w")
    )
    return select(probe).select_from(values).join(probe, true())


_indexed_waits_probed = _indexed_waits_probing_each_value()
_wait_paths_of = select(wait_paths.c.event_name, wait_paths.c.match_path).where(
    wait_paths.c.event_name.in_(bindparam("b_names", expanding=True))
)
_delete_wait = delete(waits).where(
    waits.c.run_id == bindparam("b_run_id"), waits.c.step_id == bindparam("b_step_id")
)


class WriteTx(ScheduleWrites, FlowWrites, ReadTx):
    """Reads and writes inside the writer's transaction."""

    # -- functions -------------------------------------------------------------

    def upsert_functions(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        stmt = self._insert(functions)
        stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
            index_elements=[functions.c.app_id, functions.c.function_id],
            set_={
                "name": stmt.excluded.name,  # type: ignore[attr-defined]
                "definition": stmt.excluded.definition,  # type: ignore[attr-defined]
                "updated_at_ms": stmt.excluded.updated_at_ms,  # type: ignore[attr-defined]
            },
        )
        self.conn.execute(stmt, rows)

    # -- ingest ------------------------------------------------------------------

    def recent_event_ids(self, ids: Sequence[str], since_ms: int) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(list(ids)):
            rows = self.conn.execute(
                select(events.c.id).where(
                    events.c.id.in_(chunk), events.c.received_at_ms >= since_ms
                )
            )
            found.update(r.id for r in rows)
        return found

    def _insert_all(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self.conn.execute(table.insert(), list(rows))

    def add_history(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """History entries (codec.history_row)."""
        self._insert_all(history, rows)

    def add_steps(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Step rows (a replay copies the steps it keeps)."""
        self._insert_all(steps, rows)

    def add_runs(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """New runs (creation.new_run_row)."""
        self._insert_all(runs, rows)

    def add_queue_items(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Queue rows of new runs (creation.queue_row)."""
        self._insert_all(queue, rows)

    def add_run_events(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """The events of batched runs, by position."""
        self._insert_all(run_events, rows)

    def add_events(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Stored events."""
        self._insert_all(events, rows)

    def add_event_skips(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Why an event started no run of a function it matched."""
        self._insert_all(event_skips, rows)

    # -- claiming ------------------------------------------------------------------

    def claim_ready(
        self,
        app_id: str,
        function_ids: Sequence[str],
        now_ms: int,
        limit: int,
        lease_deadline_ms: int,
        new_execution_id: Callable[[], str],
    ) -> list[Claimed]:
        """Lease up to ``limit`` due, unleased runs of these functions, fairly and
        within their concurrency limits.

        Fair: due runs are taken in turns across (function, first concurrency
        key) groups, each group in priority-adjusted due order; a group's turns
        come later the more of its runs execute now, and groups on the same
        turn go in random order, so that a flood of one function or key does
        not starve the others. A run whose
        concurrency key is at its limit (counting runs leased now, on any
        control plane) is passed over; on PostgreSQL each key is locked until
        commit before it is counted.
        """
        claimed: list[Claimed] = []
        saturated: set[str] = set()
        taken: dict[str, int] = {}
        counts: dict[str, int] = {}
        # A few rounds: each one skips the keys the previous found full.
        for _ in range(_CLAIM_ROUNDS):
            want = limit - len(claimed)
            rows = self._ready_candidates(app_id, function_ids, now_ms, want, saturated)
            if not rows:
                break
            keys = {k for r in rows for k in (r[2], r[4]) if k is not None} - counts.keys()
            if keys:
                self.lock_keys(keys)
                counts.update(dict.fromkeys(keys, 0) | self.in_flight(sorted(keys)))
            full_before = len(saturated)
            fresh: list[Claimed] = []
            for run_id, function_id, key_1, limit_1, key_2, limit_2, due_at in rows:
                limits = [(k, n) for k, n in ((key_1, limit_1), (key_2, limit_2)) if k is not None]
                blocked = [k for k, n in limits if counts[k] + taken.get(k, 0) >= (n or 0)]
                if blocked:
                    saturated.update(blocked)
                    continue
                for k, _n in limits:
                    taken[k] = taken.get(k, 0) + 1
                fresh.append(Claimed(run_id, app_id, function_id, new_execution_id(), due_at))
                if len(claimed) + len(fresh) == limit:
                    break
            if fresh:
                # Leased at once, so that the next pass does not find them again.
                self.conn.execute(
                    _lease,
                    [
                        {
                            "b_run_id": c.run_id,
                            "b_execution_id": c.execution_id,
                            "b_deadline": lease_deadline_ms,
                        }
                        for c in fresh
                    ],
                )
                claimed.extend(fresh)
            if len(claimed) == limit or len(rows) < want or len(saturated) == full_before:
                break
        return claimed

    def _ready_candidates(
        self,
        app_id: str,
        function_ids: Sequence[str],
        now_ms: int,
        limit: int,
        saturated: set[str],
    ) -> list[tuple[Any, ...]]:
        """Due, unleased runs in fair order: (run id, function id, key 1,
        limit 1, key 2, limit 2, due at). PostgreSQL: locked, skipping rows another
        transaction holds."""
        conditions = [
            queue.c.app_id == app_id,
            queue.c.function_id.in_(list(function_ids)),
            queue.c.due_at_ms <= now_ms,
            queue.c.lease_execution_id.is_(None),
            # A paused function's runs are held where they are.
            queue.c.function_id.not_in(
                select(functions.c.function_id).where(
                    functions.c.app_id == app_id, functions.c.paused.is_not(None)
                )
            ),
        ]
        if saturated:
            full = sorted(saturated)
            conditions += [
                or_(queue.c.concurrency_key_1.is_(None), queue.c.concurrency_key_1.not_in(full)),
                or_(queue.c.concurrency_key_2.is_(None), queue.c.concurrency_key_2.not_in(full)),
            ]
        # Priority moves a run ahead by that many seconds.
        order = queue.c.due_at_ms - queue.c.priority * 1000
        group = (queue.c.function_id, queue.c.concurrency_key_1)
        # A group's next run waits one turn per run of the group executing now,
        # so a group that holds the slots yields to one that holds none, even
        # when a single slot is free.
        busy = (
            select(
                queue.c.function_id.label("function_id"),
                queue.c.concurrency_key_1.label("key"),
                func.count().label("executing"),
            )
            .where(
                queue.c.app_id == app_id,
                queue.c.function_id.in_(list(function_ids)),
                queue.c.lease_execution_id.is_not(None),
            )
            .group_by(*group)
            .subquery()
        )
        turn = (
            func.row_number().over(partition_by=group, order_by=order)
            + func.coalesce(busy.c.executing, 0)
        ).label("turn")
        from_busy = queue.outerjoin(
            busy,
            and_(
                busy.c.function_id == queue.c.function_id,
                busy.c.key.is_not_distinct_from(queue.c.concurrency_key_1),
            ),
        )
        columns = (
            queue.c.run_id,
            queue.c.function_id,
            queue.c.concurrency_key_1,
            queue.c.concurrency_limit_1,
            queue.c.concurrency_key_2,
            queue.c.concurrency_limit_2,
            queue.c.due_at_ms,
        )
        ranked = (
            select(*columns, turn, order.label("ord"))
            .select_from(from_busy)
            .where(*conditions)
            .subquery()
        )
        picked = [
            tuple(r)
            for r in self.conn.execute(
                select(*(ranked.c[c.name] for c in columns))
                # Groups on the same turn go in random order: with one free
                # slot, the oldest group would otherwise win every time.
                .order_by(ranked.c.turn, func.random())
                .limit(limit)
            )
        ]
        if not picked or not self._lock_rows:
            return picked
        # PostgreSQL cannot lock rows of a windowed query: lock them now, skipping
        # rows another transaction holds and rows another node leased meanwhile.
        locked = {
            r.run_id
            for r in self.conn.execute(
                select(queue.c.run_id)
                .where(queue.c.run_id.in_([p[0] for p in picked]))
                .where(queue.c.lease_execution_id.is_(None))
                .with_for_update(skip_locked=True)
            )
        }
        return [p for p in picked if p[0] in locked]

    def run_states(self, run_ids: Sequence[str]) -> dict[str, RunState]:
        found: dict[str, RunState] = {}
        for chunk in _chunks(list(run_ids)):
            rows = self.conn.execute(
                select(
                    runs.c.id,
                    runs.c.app_id,
                    runs.c.function_id,
                    runs.c.status,
                    runs.c.attempt,
                    runs.c.event_pk,
                    runs.c.trace_id,
                    runs.c.root_span_id,
                    runs.c.created_at_ms,
                    runs.c.started_at_ms,
                    runs.c.parent_run_id,
                    runs.c.cancelled_execution_id,
                    runs.c.ended_at_ms,
                    runs.c.cron,
                ).where(runs.c.id.in_(chunk))
            )
            for r in rows:
                found[r.id] = RunState(
                    r.id,
                    r.app_id,
                    r.function_id,
                    RunStatus(r.status),
                    r.attempt,
                    r.event_pk,
                    r.trace_id,
                    r.root_span_id,
                    r.created_at_ms,
                    r.started_at_ms,
                    r.parent_run_id,
                    r.cancelled_execution_id,
                    r.ended_at_ms,
                    r.cron,
                )
        return found

    def events_by_pk(self, pks: Sequence[str]) -> dict[str, StoredEvent]:
        found: dict[str, StoredEvent] = {}
        for chunk in _chunks(sorted(set(pks))):
            for r in self.conn.execute(select(events).where(events.c.pk.in_(chunk))):
                found[r.pk] = codec.event_from_row(r)
        return found

    def steps_of(self, run_ids: Sequence[str]) -> list[Any]:
        """Step rows (run_id, step_id, status, output, error, attempts) of these runs."""
        result: list[Any] = []
        for chunk in _chunks(list(run_ids)):
            result.extend(
                self.conn.execute(
                    select(
                        steps.c.run_id,
                        steps.c.step_id,
                        steps.c.status,
                        steps.c.output,
                        steps.c.error,
                        steps.c.attempts,
                        steps.c.retry_at_ms,
                        steps.c.position,
                    ).where(steps.c.run_id.in_(chunk))
                )
            )
        return result

    def waits_due(self, run_ids: Sequence[str], now_ms: int) -> list[Any]:
        """Waits of these runs whose time has come (cancel_on watches excluded:
        their expiry only ends the watch)."""
        result: list[Any] = []
        for chunk in _chunks(list(run_ids)):
            result.extend(
                self.conn.execute(
                    select(waits).where(
                        waits.c.run_id.in_(chunk),
                        waits.c.until_ms <= now_ms,
                        waits.c.kind != "cancel",
                    )
                )
            )
        return result

    def add_wait_paths(self, pairs: set[tuple[str, str]]) -> None:
        if pairs:
            stmt = self._insert(wait_paths).on_conflict_do_nothing(  # type: ignore[attr-defined]
                index_elements=[wait_paths.c.event_name, wait_paths.c.match_path]
            )
            self.conn.execute(
                stmt, [{"event_name": name, "match_path": path} for name, path in sorted(pairs)]
            )

    def wait_paths_for(self, event_names: Sequence[str]) -> dict[str, list[str]]:
        """The match paths in use by waits for each of these names ("" for
        waits without one); names nothing waits for are absent."""
        found: dict[str, list[str]] = {}
        for chunk in _chunks(sorted(set(event_names))):
            for r in self.conn.execute(_wait_paths_of, {"b_names": list(chunk)}):
                found.setdefault(r.event_name, []).append(r.match_path)
        return found

    def waits_matching(
        self, event_name: str, match_path: str, match_values: Sequence[str]
    ) -> list[Any]:
        """Event waits (and cancel_on watches) for this name whose indexed
        equality is on ``match_path`` with one of ``match_values``; with
        ``match_path`` "", those without one."""
        if not match_path:
            return list(self.conn.execute(_unindexed_waits, {"b_name": event_name}))
        statement = _indexed_waits_probed if self._postgres else _indexed_waits
        found: list[Any] = []
        for chunk in _chunks(sorted(set(match_values))):
            found.extend(
                self.conn.execute(
                    statement,
                    {"b_name": event_name, "b_path": match_path, "b_values": list(chunk)},
                )
            )
        return found

    def events_named_between(
        self, name: str, since_ms: int, before_ms: int, page: int = 100
    ) -> Iterator[tuple[str, StoredEvent]]:
        """(pk, event) of events with this name received at or after ``since_ms``
        and before ``before_ms``, oldest first, read a page at a time (callers
        usually stop at the first)."""
        after: tuple[int, str] | None = None
        while True:
            query = select(events).where(
                events.c.name == name,
                events.c.received_at_ms >= since_ms,
                events.c.received_at_ms < before_ms,
            )
            if after is not None:
                query = query.where(tuple_(events.c.received_at_ms, events.c.pk) > after)
            rows = list(
                self.conn.execute(query.order_by(events.c.received_at_ms, events.c.pk).limit(page))
            )
            for r in rows:
                yield r.pk, codec.event_from_row(r)
            if len(rows) < page:
                return
            after = (rows[-1].received_at_ms, rows[-1].pk)

    def waits_for_child(self, child_run_id: str) -> list[Any]:
        return list(self.conn.execute(select(waits).where(waits.c.child_run_id == child_run_id)))

    def pending_and_settled(
        self, run_id: str, step_ids: Sequence[str]
    ) -> tuple[set[str], set[str]]:
        """Of ``step_ids``: those the run already waits on, and those that
        already have their final result."""
        if not step_ids:
            return set(), set()
        waiting = select(waits.c.step_id, literal(True).label("pending")).where(
            waits.c.run_id == run_id, waits.c.step_id.in_(step_ids)
        )
        settled = select(steps.c.step_id, literal(False).label("pending")).where(
            steps.c.run_id == run_id,
            steps.c.step_id.in_(step_ids),
            steps.c.status.in_([StepStatus.COMPLETED.value, StepStatus.FAILED.value]),
        )
        rows = list(self.conn.execute(waiting.union_all(settled)))
        return {r.step_id for r in rows if r.pending}, {r.step_id for r in rows if not r.pending}

    def active_idempotency_key(
        self, app_id: str, function_id: str, key: str, now_ms: int
    ) -> str | None:
        """The run holding this key, if the key has not expired."""
        row = self.conn.execute(
            select(idempotency_keys.c.run_id).where(
                idempotency_keys.c.app_id == app_id,
                idempotency_keys.c.function_id == function_id,
                idempotency_keys.c.key == key,
                idempotency_keys.c.expires_at_ms > now_ms,
            )
        ).first()
        return row.run_id if row else None

    def claim_idempotency_keys(self, rows: list[dict[str, Any]]) -> None:
        """Take these keys (an expired key is taken over)."""
        if not rows:
            return
        stmt = self._insert(idempotency_keys)
        excluded = stmt.excluded  # type: ignore[attr-defined]
        stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
            index_elements=[
                idempotency_keys.c.app_id,
                idempotency_keys.c.function_id,
                idempotency_keys.c.key,
            ],
            set_={"run_id": excluded.run_id, "expires_at_ms": excluded.expires_at_ms},
        )
        self.conn.execute(stmt, rows)

    def deadlines_due(self, now_ms: int) -> list[Any]:
        """Queue rows whose start or finish deadline has passed."""
        return list(
            self.conn.execute(
                select(
                    queue.c.run_id,
                    queue.c.start_deadline_ms,
                    queue.c.finish_deadline_ms,
                ).where(
                    or_(
                        queue.c.start_deadline_ms <= now_ms,
                        queue.c.finish_deadline_ms <= now_ms,
                    )
                )
            )
        )

    def set_deadlines(self, rows: list[dict[str, Any]]) -> None:
        """rows: b_run_id, b_start, b_finish (the start deadline goes once a run
        starts; the finish deadline is set then)."""
        if rows:
            self.conn.execute(
                update(queue)
                .where(queue.c.run_id == bindparam("b_run_id"))
                .values(
                    start_deadline_ms=bindparam("b_start"),
                    finish_deadline_ms=func.coalesce(
                        queue.c.finish_deadline_ms, bindparam("b_finish")
                    ),
                ),
                rows,
            )

    def unfinished_runs(
        self, app_id: str, function_id: str, after_ms: int, before_ms: int, limit: int
    ) -> list[str]:
        query = select(runs.c.id).where(
            runs.c.app_id == app_id,
            runs.c.function_id == function_id,
            runs.c.status.in_(["queued", "running", "sleeping", "waiting"]),
        )
        if after_ms:
            query = query.where(runs.c.created_at_ms >= after_ms)
        if before_ms:
            query = query.where(runs.c.created_at_ms < before_ms)
        return [r.id for r in self.conn.execute(query.order_by(runs.c.id).limit(limit))]

    def delete_waits(self, keys: list[tuple[str, str]]) -> None:
        if keys:
            self.conn.execute(_delete_wait, [{"b_run_id": r, "b_step_id": s} for r, s in keys])

    def insert_waits(self, rows: list[dict[str, Any]]) -> None:
        """Insert waits; a wait already planned keeps its first row."""
        if rows:
            stmt = self._insert(waits).on_conflict_do_nothing(  # type: ignore[attr-defined]
                index_elements=[waits.c.run_id, waits.c.step_id]
            )
            columns = [c.name for c in waits.columns]
            self.conn.execute(stmt, [{c: row.get(c) for c in columns} for row in rows])

    def start_runs(self, rows: list[dict[str, Any]]) -> None:
        """rows: b_id, b_status, b_now. Sets started_at the first time."""
        if rows:
            self.conn.execute(_start_run, rows)

    # -- outcomes -------------------------------------------------------------------

    def lease_holders(self, run_ids: Sequence[str]) -> dict[str, QueueLease]:
        """run id -> who holds its lease and its due time.

        Runs without a queue row (finished or cancelled) are absent. On PostgreSQL
        the rows stay locked until commit, fencing out other control planes.
        """
        found: dict[str, QueueLease] = {}
        for chunk in _chunks(sorted(set(run_ids))):
            query = select(queue.c.run_id, queue.c.lease_execution_id, queue.c.due_at_ms).where(
                queue.c.run_id.in_(chunk)
            )
            if self._lock_rows:
                query = query.with_for_update()
            found.update(
                {
                    r.run_id: QueueLease(r.lease_execution_id, r.due_at_ms)
                    for r in self.conn.execute(query)
                }
            )
        return found

    def lower_due(self, rows: list[dict[str, Any]]) -> None:
        """Bring due times forward (never back). rows: b_run_id, b_due_at_ms."""
        if rows:
            self.conn.execute(_lower_due, rows)

    def step_attempts(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        found: dict[tuple[str, str], int] = {}
        for chunk in _chunks(sorted(set(keys))):
            rows = self.conn.execute(
                select(steps.c.run_id, steps.c.step_id, steps.c.attempts).where(
                    tuple_(steps.c.run_id, steps.c.step_id).in_(chunk)
                )
            )
            found.update({(r.run_id, r.step_id): r.attempts for r in rows})
        return found

    def upsert_steps(self, rows: list[dict[str, Any]]) -> None:
        """Insert step results; a row that is ``retrying`` takes the new result
        and counts one more attempt.

        A final result (completed or failed) is never overwritten, so a result is
        memoized exactly once.
        """
        if not rows:
            return
        # Positions continue each run's sequence. Only the execution holding the
        # run's lease writes its steps, so there is no race for the numbers.
        last = self._last_positions([row["run_id"] for row in rows])
        for row in rows:
            last[row["run_id"]] = row["position"] = last.get(row["run_id"], 0) + 1
        columns = [c.name for c in steps.columns]
        rows = [{c: row.get(c) for c in columns} for row in rows]
        stmt = self._insert(steps)
        excluded = stmt.excluded  # type: ignore[attr-defined]
        stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
            index_elements=[steps.c.run_id, steps.c.step_id],
            set_={
                "status": excluded.status,
                "output": excluded.output,
                "error": excluded.error,
                "attempts": steps.c.attempts + 1,
                "started_at_ms": excluded.started_at_ms,
                "ended_at_ms": excluded.ended_at_ms,
                "retry_at_ms": excluded.retry_at_ms,
                "child_run_id": excluded.child_run_id,
                # A retried step's result is recorded when it finally comes.
                "position": excluded.position,
            },
            where=steps.c.status == StepStatus.RETRYING.value,
        )
        self.conn.execute(stmt, rows)

    def _last_positions(self, run_ids: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in _chunks(sorted(set(run_ids))):
            rows = self.conn.execute(
                select(steps.c.run_id, func.max(steps.c.position))
                .where(steps.c.run_id.in_(chunk))
                .group_by(steps.c.run_id)
            )
            found.update({run_id: int(last) for run_id, last in rows})
        return found

    def retry_times(self, run_ids: Sequence[str]) -> dict[str, int]:
        """run id -> the earliest retry time of its retrying steps."""
        found: dict[str, int] = {}
        for chunk in _chunks(sorted(set(run_ids))):
            rows = self.conn.execute(
                select(steps.c.run_id, func.min(steps.c.retry_at_ms))
                .where(
                    steps.c.run_id.in_(chunk),
                    steps.c.status == StepStatus.RETRYING.value,
                    steps.c.retry_at_ms.is_not(None),
                )
                .group_by(steps.c.run_id)
            )
            found.update({run_id: int(at) for run_id, at in rows if at is not None})
        return found

    def update_runs(self, rows: list[dict[str, Any]]) -> None:
        """rows: b_id, b_status, b_attempt, b_output, b_error, b_ended_at_ms, b_now."""
        if rows:
            self.conn.execute(_update_run, rows)

    def requeue(self, rows: list[dict[str, Any]]) -> None:
        """Release leases and set due times. rows: b_run_id, b_due_at_ms."""
        if rows:
            self.conn.execute(_requeue, rows)

    def delete_queue_rows(self, run_ids: Sequence[str]) -> None:
        if run_ids:
            self.conn.execute(_delete_queue, [{"b_run_id": r} for r in run_ids])

    # -- leases -------------------------------------------------------------------------

    def extend_leases(self, execution_ids: Sequence[str], deadline_ms: int) -> set[str]:
        """Extend these leases; returns the execution ids that still hold one."""
        held: set[str] = set()
        for chunk in _chunks(list(execution_ids)):
            result = self.conn.execute(
                update(queue)
                .where(queue.c.lease_execution_id.in_(chunk))
                .values(lease_deadline_ms=deadline_ms)
                .returning(queue.c.lease_execution_id)
            )
            held.update(r.lease_execution_id for r in result)
        return held

    def release_leases(
        self, execution_ids: Sequence[str], now_ms: int, *, expired_only: bool = False
    ) -> list[tuple[str, str]]:
        """Requeue the runs these executions hold; returns (run id, execution id).

        A run stays due at a step retry time set during the lease (its backoff is
        kept); otherwise it is due now.
        """
        released: list[tuple[str, str]] = []
        for chunk in _chunks(list(execution_ids)):
            # Read the holders first: RETURNING would give the new (null) values.
            query = select(queue.c.run_id, queue.c.lease_execution_id).where(
                queue.c.lease_execution_id.in_(chunk)
            )
            if expired_only:
                query = query.where(queue.c.lease_deadline_ms <= now_ms)
            if self._lock_rows:
                query = query.with_for_update()
            held = [(r.run_id, r.lease_execution_id) for r in self.conn.execute(query)]
            if not held:
                continue
            self.conn.execute(
                update(queue)
                .where(queue.c.run_id.in_([run_id for run_id, _ in held]))
                .values(
                    lease_execution_id=None,
                    lease_deadline_ms=None,
                    due_at_ms=case((queue.c.due_at_ms < NOT_DUE, queue.c.due_at_ms), else_=now_ms),
                )
            )
            released.extend(held)
        return released

    def expired_leases(self, now_ms: int) -> list[str]:
        rows = self.conn.execute(
            select(queue.c.lease_execution_id).where(
                queue.c.lease_execution_id.is_not(None), queue.c.lease_deadline_ms <= now_ms
            )
        )
        return [r.lease_execution_id for r in rows]

    def shift_leases(self, by_ms: int) -> None:
        """Push every lease deadline forward (the virtual clock jumped)."""
        self.conn.execute(
            update(queue)
            .where(queue.c.lease_execution_id.is_not(None))
            .values(lease_deadline_ms=queue.c.lease_deadline_ms + by_ms)
        )

    def all_lease_holders(self) -> list[str]:
        rows = self.conn.execute(
            select(queue.c.lease_execution_id).where(queue.c.lease_execution_id.is_not(None))
        )
        return [r.lease_execution_id for r in rows]

    # -- administration ---------------------------------------------------------------

    def set_cancelled_execution(self, run_id: str, execution_id: str) -> None:
        self.conn.execute(
            update(runs).where(runs.c.id == run_id).values(cancelled_execution_id=execution_id)
        )

    def delete_waits_of(self, run_ids: Sequence[str]) -> None:
        for chunk in _chunks(list(run_ids)):
            self.conn.execute(delete(waits).where(waits.c.run_id.in_(chunk)))

    def waits_of(self, run_ids: Sequence[str]) -> dict[str, list[Any]]:
        """run id -> its pending waits (step_id, kind, until_ms), cancel_on
        watches excluded."""
        found: dict[str, list[Any]] = {}
        for chunk in _chunks(sorted(set(run_ids))):
            rows = self.conn.execute(
                select(waits.c.run_id, waits.c.step_id, waits.c.kind, waits.c.until_ms).where(
                    waits.c.run_id.in_(chunk), waits.c.kind != "cancel"
                )
            )
            for row in rows:
                found.setdefault(row.run_id, []).append(row)
        return found

    def queue_row(self, run_id: str) -> Any:
        query = select(queue).where(queue.c.run_id == run_id)
        if self._lock_rows:
            query = query.with_for_update()
        return self.conn.execute(query).first()

    def run_row(self, run_id: str) -> Any:
        return self.conn.execute(select(runs).where(runs.c.id == run_id)).first()

    def completed_steps_before_failure(self, run_id: str) -> list[Any]:
        """Completed step rows of a run up to its first failed step, in order."""
        rows = self.conn.execute(
            select(steps).where(steps.c.run_id == run_id).order_by(steps.c.position)
        ).all()
        kept = []
        for row in rows:
            if row.status != StepStatus.COMPLETED.value:
                break
            kept.append(row)
        return kept
