"""Waits (sleeps, event waits, invokes, cancel_on watches) and the match
paths they are indexed by; the look-back over stored events."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Select,
    Text,
    bindparam,
    delete,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects import postgresql

from controlplane.model import (
    ParentClose,
    StepKind,
    StepStatus,
    StoredEvent,
    WaitKind,
    WaitRecord,
)
from controlplane.store import codec
from controlplane.store._txbase import TxBase, chunks
from controlplane.store.schema import (
    events,
    steps,
    wait_paths,
    waits,
)

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


@dataclass(frozen=True, slots=True)
class PendingWait:
    """A sleep, event wait or invoke a run is suspended on."""

    step_id: str
    kind: StepKind
    #: When it resolves by itself (its end or timeout); NOT_DUE without one.
    until_ms: int


class WaitWrites(TxBase):
    def waits_due(self, run_ids: Sequence[str], now_ms: int) -> list[WaitRecord]:
        """Waits of these runs whose time has come (cancel_on watches excluded:
        their expiry only ends the watch)."""
        result: list[WaitRecord] = []
        for chunk in chunks(list(run_ids)):
            result.extend(
                codec.wait_from_row(r)
                for r in self.conn.execute(
                    select(waits).where(
                        waits.c.run_id.in_(chunk),
                        waits.c.until_ms <= now_ms,
                        waits.c.kind != WaitKind.CANCEL_ON.value,
                    )
                )
            )
        return result

    def _add_wait_paths(self, pairs: set[tuple[str, str]]) -> None:
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
        for chunk in chunks(sorted(set(event_names))):
            for r in self.conn.execute(_wait_paths_of, {"b_names": list(chunk)}):
                found.setdefault(r.event_name, []).append(r.match_path)
        return found

    def waits_matching(
        self, event_name: str, match_path: str, match_values: Sequence[str]
    ) -> list[WaitRecord]:
        """Event waits (and cancel_on watches) for this name whose indexed
        equality is on ``match_path`` with one of ``match_values``; with
        ``match_path`` "", those without one."""
        if not match_path:
            rows = self.conn.execute(_unindexed_waits, {"b_name": event_name})
            return [codec.wait_from_row(r) for r in rows]
        statement = _indexed_waits_probed if self._postgres else _indexed_waits
        found: list[WaitRecord] = []
        for chunk in chunks(sorted(set(match_values))):
            found.extend(
                codec.wait_from_row(r)
                for r in self.conn.execute(
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

    def waits_for_child(self, child_run_id: str) -> list[WaitRecord]:
        """The invoke waits on this child run."""
        rows = self.conn.execute(select(waits).where(waits.c.child_run_id == child_run_id))
        return [codec.wait_from_row(r) for r in rows]

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

    def delete_waits(self, keys: list[tuple[str, str]]) -> None:
        if keys:
            self.conn.execute(_delete_wait, [{"b_run_id": r, "b_step_id": s} for r, s in keys])

    def add_waits(self, records: Sequence[WaitRecord]) -> None:
        """Store waits, and the match paths they are indexed by; a wait already
        planned keeps its first record."""
        if not records:
            return
        stmt = self._insert(waits).on_conflict_do_nothing(  # type: ignore[attr-defined]
            index_elements=[waits.c.run_id, waits.c.step_id]
        )
        self.conn.execute(stmt, [codec.wait_row(w) for w in records])
        self._add_wait_paths(
            {(w.event_name, w.match_path or "") for w in records if w.event_name is not None}
        )

    def children_to_close(self, run_ids: Sequence[str]) -> list[tuple[str, str, str]]:
        """(parent run id, child run id, invoke step name) of the pending invokes
        of these runs whose child goes with its parent (parent_close cancel)."""
        found: list[tuple[str, str, str]] = []
        for chunk in chunks(sorted(set(run_ids))):
            rows = self.conn.execute(
                select(waits.c.run_id, waits.c.child_run_id, waits.c.name)
                .where(
                    waits.c.run_id.in_(chunk),
                    waits.c.kind == WaitKind.INVOKE.value,
                    waits.c.child_run_id.is_not(None),
                    or_(
                        waits.c.parent_close.is_(None),
                        waits.c.parent_close == ParentClose.CANCEL.value,
                    ),
                )
                .order_by(waits.c.run_id, waits.c.child_run_id)
            )
            found.extend((r.run_id, r.child_run_id, r.name) for r in rows)
        return found

    def delete_waits_of(self, run_ids: Sequence[str]) -> None:
        for chunk in chunks(list(run_ids)):
            self.conn.execute(delete(waits).where(waits.c.run_id.in_(chunk)))

    def waits_of(self, run_ids: Sequence[str]) -> dict[str, list[PendingWait]]:
        """run id -> its pending waits (step_id, kind, until_ms), cancel_on
        watches excluded."""
        found: dict[str, list[PendingWait]] = {}
        for chunk in chunks(sorted(set(run_ids))):
            rows = self.conn.execute(
                select(waits.c.run_id, waits.c.step_id, waits.c.kind, waits.c.until_ms).where(
                    waits.c.run_id.in_(chunk), waits.c.kind != WaitKind.CANCEL_ON.value
                )
            )
            for row in rows:
                found.setdefault(row.run_id, []).append(
                    PendingWait(row.step_id, StepKind(row.kind), row.until_ms)
                )
        return found
