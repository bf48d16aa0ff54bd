"""Every query the engine runs, in SQLAlchemy Core: dialect-neutral except where
PostgreSQL's planner needs a statement of its own (named so).

:class:`ReadTx` reads; :class:`WriteTx` also writes and is only ever used inside
the group-commit writer's transaction. The engine decides what to write; these
classes only know how. ``WriteTx`` is assembled from one mixin per family of
tables: runs_tx (runs, steps, history), queue_tx (queue items and leases),
waits_tx (waits and the look-back), flow_tx, schedules_tx, keys_tx (API
keys); reads for the gauges are in stats_tx.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    func,
    or_,
    select,
)

from controlplane.model import (
    EventDetail,
    EventFilter,
    EventSkip,
    FunctionRecord,
    HistoryEntry,
    IdempotencyClaim,
    NewEvent,
    Page,
    RunDetail,
    RunFilter,
    RunSummary,
    SkippedRun,
    StepKind,
    StepRecord,
    StepStatus,
    StoredEvent,
)
from controlplane.store import codec
from controlplane.store._txbase import NOT_DUE, InsertFactory, TxBase, chunks
from controlplane.store.doctor_tx import DoctorReads
from controlplane.store.flow_tx import FlowReads, FlowWrites
from controlplane.store.keys_tx import KeyReads, KeyWrites
from controlplane.store.queue_tx import Claimed, QueueWrites
from controlplane.store.retention_tx import RetentionReads, RetentionWrites
from controlplane.store.runs_tx import RunWrites
from controlplane.store.schedules_tx import ScheduleReads, ScheduleWrites
from controlplane.store.schema import (
    event_skips,
    events,
    functions,
    history,
    idempotency_keys,
    queue,
    runs,
    steps,
    waits,
)
from controlplane.store.stats_tx import StatsReads
from controlplane.store.waits_tx import WaitWrites

_events_by_pk = select(events).where(events.c.pk.in_(bindparam("b_pks", expanding=True)))


@dataclass(frozen=True, slots=True)
class FunctionRow:
    app_id: str
    function_id: str
    definition: str
    registered_at_ms: int
    updated_at_ms: int


__all__ = ["NOT_DUE", "Claimed", "FunctionRow", "InsertFactory", "ReadTx", "WriteTx"]


class ReadTx(ScheduleReads, FlowReads, StatsReads, KeyReads, DoctorReads, RetentionReads, TxBase):
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
        for chunk in chunks(wanted):
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
            at, last_id = codec.decode_page_cursor(token)
            query = query.where(or_(time_column < at, and_(time_column == at, id_column < last_id)))
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


class WriteTx(
    QueueWrites,
    WaitWrites,
    RunWrites,
    ScheduleWrites,
    FlowWrites,
    KeyWrites,
    RetentionWrites,
    ReadTx,
):
    """Reads and writes inside the writer's transaction."""

    # -- functions -------------------------------------------------------------

    def register_functions(self, records: Sequence[FunctionRecord]) -> None:
        """Add functions, or replace their name and definition (a function keeps
        its registration time and pause)."""
        if not records:
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
        self.conn.execute(stmt, [codec.function_row(r) for r in records])

    # -- ingest ------------------------------------------------------------------

    def recent_event_ids(self, ids: Sequence[str], since_ms: int) -> set[str]:
        found: set[str] = set()
        for chunk in chunks(list(ids)):
            rows = self.conn.execute(
                select(events.c.id).where(
                    events.c.id.in_(chunk), events.c.received_at_ms >= since_ms
                )
            )
            found.update(r.id for r in rows)
        return found

    def add_events(self, new: Sequence[NewEvent]) -> None:
        self._insert_all(events, [codec.event_row(e) for e in new])

    def add_event_skips(self, skips: Sequence[EventSkip]) -> None:
        """Why an event started no run of a function it matched."""
        self._insert_all(event_skips, [codec.event_skip_row(s) for s in skips])

    # -- claiming ------------------------------------------------------------------

    def events_by_pk(self, pks: Sequence[str]) -> dict[str, StoredEvent]:
        found: dict[str, StoredEvent] = {}
        for chunk in chunks(sorted(set(pks))):
            for r in self.conn.execute(_events_by_pk, {"b_pks": chunk}):
                found[r.pk] = codec.event_from_row(r)
        return found

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

    def claim_idempotency_keys(self, claims: Sequence[IdempotencyClaim]) -> None:
        """Take these keys (an expired key is taken over)."""
        if not claims:
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
        self.conn.execute(stmt, [codec.idempotency_row(c) for c in claims])

    # -- outcomes -------------------------------------------------------------------

    # -- leases -------------------------------------------------------------------------

    # -- administration ---------------------------------------------------------------
