"""Queries on flow control: pauses, concurrency counts, flow state per key,
the events of batched runs (mixed into ReadTx and WriteTx)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select, text, tuple_, union_all, update

from controlplane.model import FunctionKey, PauseMode
from controlplane.store._txbase import TxBase, chunks
from controlplane.store.schema import flow_state, functions, queue, run_events, runs

_run_event_pks = (
    select(run_events.c.run_id, run_events.c.event_pk)
    .where(run_events.c.run_id.in_(bindparam("b_runs", expanding=True)))
    .order_by(run_events.c.run_id, run_events.c.position)
)

# Volatile functions in the select list run after the ORDER BY: the locks are
# taken in id order.
_advisory_locks = text(
    "SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:ids AS bigint[])) AS k ORDER BY k"
)


@dataclass(slots=True)
class FlowState:
    """One flow-control record: see the ``flow_state`` table."""

    run_id: str | None
    value_ms: int
    count: int = 0


FlowKey = tuple[str, str, str, str]  # app id, function id, kind, key


class FlowReads(TxBase):
    """Reading flow-control state."""

    def paused_functions(self) -> dict[FunctionKey, PauseMode]:
        rows = self.conn.execute(
            select(functions.c.app_id, functions.c.function_id, functions.c.paused).where(
                functions.c.paused.is_not(None)
            )
        )
        return {FunctionKey(r.app_id, r.function_id): PauseMode(r.paused) for r in rows}

    def run_event_pks(self, run_ids: Sequence[str]) -> dict[str, list[str]]:
        """The events of batched runs, in order (runs with one event have none here)."""
        found: dict[str, list[str]] = {}
        for chunk in chunks(list(run_ids)):
            for r in self.conn.execute(_run_event_pks, {"b_runs": chunk}):
                found.setdefault(r.run_id, []).append(r.event_pk)
        return found

    def batched_runs_of_event(self, event_pk: str) -> list[str]:
        rows = self.conn.execute(
            select(run_events.c.run_id).where(run_events.c.event_pk == event_pk)
        )
        return [r.run_id for r in rows]


class FlowWrites(TxBase):
    """Writing flow-control state: inside the writer's transaction only."""

    def set_paused(self, key: FunctionKey, mode: PauseMode | None, now_ms: int) -> bool:
        """Pause (or, with None, resume) a function; False if it is unknown."""
        result = self.conn.execute(
            update(functions)
            .where(functions.c.app_id == key.app_id, functions.c.function_id == key.function_id)
            .values(
                paused=mode.value if mode is not None else None,
                paused_at_ms=now_ms if mode is not None else None,
            )
        )
        return bool(result.rowcount)

    def count_due(self, key: FunctionKey, now_ms: int) -> int:
        """Runs of the function due now and not leased: what a pause held."""
        return int(
            self.conn.execute(
                select(func.count())
                .select_from(queue)
                .where(
                    queue.c.app_id == key.app_id,
                    queue.c.function_id == key.function_id,
                    queue.c.due_at_ms <= now_ms,
                    queue.c.lease_execution_id.is_(None),
                )
            ).scalar_one()
        )

    def lock_keys(self, names: Iterable[str]) -> None:
        """PostgreSQL: serialise transactions (of every control plane) that
        work on these keys until this one commits; in a fixed order, so two
        transactions cannot wait for each other. SQLite has one writer anyway."""
        if not self._postgres:
            return
        namespace = self._lock_namespace
        ids = sorted({_lock_id(f"{namespace}\0{name}" if namespace else name) for name in names})
        if ids:
            self.conn.execute(_advisory_locks, {"ids": ids})

    # -- concurrency ----------------------------------------------------------------

    def in_flight(self, keys: Sequence[str]) -> dict[str, int]:
        """How many leased (executing) runs count under each concurrency key."""
        counts: dict[str, int] = {}
        for chunk in chunks(list(keys)):
            first = select(queue.c.concurrency_key_1.label("k")).where(
                queue.c.concurrency_key_1.in_(chunk), queue.c.lease_execution_id.is_not(None)
            )
            second = select(queue.c.concurrency_key_2.label("k")).where(
                queue.c.concurrency_key_2.in_(chunk), queue.c.lease_execution_id.is_not(None)
            )
            both = union_all(first, second).subquery()
            rows = self.conn.execute(select(both.c.k, func.count()).group_by(both.c.k))
            for key, count in rows:
                counts[key] = counts.get(key, 0) + int(count)
        return counts

    # -- flow state ------------------------------------------------------------------

    def flow_states(self, keys: Sequence[FlowKey]) -> dict[FlowKey, FlowState]:
        found: dict[FlowKey, FlowState] = {}
        columns = (flow_state.c.app_id, flow_state.c.function_id, flow_state.c.kind)
        for chunk in chunks(list(keys), 200):
            rows = self.conn.execute(
                select(flow_state).where(tuple_(*columns, flow_state.c.key).in_(list(chunk)))
            )
            for r in rows:
                # ``Row.count`` is a tuple method: read the column by name.
                found[(r.app_id, r.function_id, r.kind, r.key)] = FlowState(
                    r.run_id, r.value_ms, int(r._mapping["count"])
                )
        return found

    def save_flow_states(self, states: dict[FlowKey, FlowState | None]) -> None:
        """Write these records; None deletes one."""
        deletes = [k for k, v in states.items() if v is None]
        upserts = [
            {
                "app_id": k[0],
                "function_id": k[1],
                "kind": k[2],
                "key": k[3],
                "run_id": v.run_id,
                "value_ms": v.value_ms,
                "count": v.count,
            }
            for k, v in states.items()
            if v is not None
        ]
        columns = (flow_state.c.app_id, flow_state.c.function_id, flow_state.c.kind)
        for chunk in chunks(deletes, 200):
            self.conn.execute(
                flow_state.delete().where(tuple_(*columns, flow_state.c.key).in_(list(chunk)))
            )
        if upserts:
            stmt = self._insert(flow_state)
            excluded: Any = stmt.excluded  # type: ignore[attr-defined]
            self.conn.execute(
                stmt.on_conflict_do_update(  # type: ignore[attr-defined]
                    index_elements=[*columns, flow_state.c.key],
                    set_={
                        "run_id": excluded.run_id,
                        "value_ms": excluded.value_ms,
                        "count": excluded.count,
                    },
                ),
                upserts,
            )

    def not_started(self, run_ids: Sequence[str]) -> set[str]:
        """Of these runs, those still queued and never started (a debounce or a
        batch may still change them). PostgreSQL: their queue rows stay locked
        until commit, so no node starts them meanwhile."""
        found: set[str] = set()
        for chunk in chunks(list(run_ids)):
            query = (
                select(queue.c.run_id)
                .join(runs, runs.c.id == queue.c.run_id)
                .where(
                    queue.c.run_id.in_(chunk),
                    queue.c.lease_execution_id.is_(None),
                    runs.c.started_at_ms.is_(None),
                )
            )
            if self._lock_rows:
                query = query.with_for_update(of=queue)
            found.update(r.run_id for r in self.conn.execute(query))
        return found

    def unfinished(self, run_ids: Sequence[str]) -> set[str]:
        """Of these runs, those that have not ended."""
        found: set[str] = set()
        for chunk in chunks(list(run_ids)):
            rows = self.conn.execute(
                select(runs.c.id).where(runs.c.id.in_(chunk), runs.c.ended_at_ms.is_(None))
            )
            found.update(r.id for r in rows)
        return found

    def set_run_event(self, run_id: str, event_pk: str, now_ms: int) -> None:
        self.conn.execute(
            update(runs).where(runs.c.id == run_id).values(event_pk=event_pk, updated_at_ms=now_ms)
        )

    def set_due(self, run_id: str, due_at_ms: int) -> None:
        self.conn.execute(update(queue).where(queue.c.run_id == run_id).values(due_at_ms=due_at_ms))


def _lock_id(name: str) -> int:
    """A signed 64-bit advisory lock id for a key (the same on every node)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
