"""Queries on cron schedules (mixed into ReadTx and WriteTx)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, select, update

from controlplane.model import FunctionKey
from controlplane.store._txbase import TxBase, chunks
from controlplane.store.schema import schedules


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """One cron trigger of a function and its next tick."""

    app_id: str
    function_id: str
    #: The trigger's index among the function's triggers.
    position: int
    schedule: str
    timezone: str
    catch_up: str
    next_fire_ms: int

    @property
    def key(self) -> FunctionKey:
        return FunctionKey(self.app_id, self.function_id)


def _row(r: Any) -> ScheduleRow:
    return ScheduleRow(
        r.app_id, r.function_id, r.position, r.schedule, r.timezone, r.catch_up, r.next_fire_ms
    )


_by_key = and_(
    schedules.c.app_id == bindparam("b_app_id"),
    schedules.c.function_id == bindparam("b_function_id"),
    schedules.c.position == bindparam("b_position"),
)


def _key(row: ScheduleRow) -> dict[str, object]:
    return {"b_app_id": row.app_id, "b_function_id": row.function_id, "b_position": row.position}


class ScheduleReads(TxBase):
    """Reading schedules."""

    def next_fires(self) -> dict[FunctionKey, dict[int, int]]:
        """Each function's next tick per cron trigger position."""
        found: dict[FunctionKey, dict[int, int]] = {}
        rows = self.conn.execute(
            select(
                schedules.c.app_id,
                schedules.c.function_id,
                schedules.c.position,
                schedules.c.next_fire_ms,
            )
        )
        for r in rows:
            found.setdefault(FunctionKey(r.app_id, r.function_id), {})[r.position] = r.next_fire_ms
        return found

    def next_fire_after(self, after_ms: int) -> int | None:
        """The earliest tick of any schedule later than ``after_ms``."""
        value = self.conn.execute(
            select(func.min(schedules.c.next_fire_ms)).where(schedules.c.next_fire_ms > after_ms)
        ).scalar()
        return int(value) if value is not None else None


class ScheduleWrites(TxBase):
    """Writing schedules: inside the writer's transaction only."""

    def schedules_of(self, app_id: str, function_ids: Sequence[str]) -> list[ScheduleRow]:
        found: list[ScheduleRow] = []
        for chunk in chunks(sorted(set(function_ids))):
            rows = self.conn.execute(
                select(schedules).where(
                    schedules.c.app_id == app_id, schedules.c.function_id.in_(chunk)
                )
            )
            found.extend(_row(r) for r in rows)
        return found

    def put_schedules(self, rows: Sequence[ScheduleRow]) -> None:
        """Insert schedules, replacing any row at the same position."""
        if not rows:
            return
        stmt = self._insert(schedules)
        excluded = stmt.excluded  # type: ignore[attr-defined]
        stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
            index_elements=[schedules.c.app_id, schedules.c.function_id, schedules.c.position],
            set_={
                "schedule": excluded.schedule,
                "timezone": excluded.timezone,
                "catch_up": excluded.catch_up,
                "next_fire_ms": excluded.next_fire_ms,
            },
        )
        self.conn.execute(
            stmt,
            [
                {
                    "app_id": r.app_id,
                    "function_id": r.function_id,
                    "position": r.position,
                    "schedule": r.schedule,
                    "timezone": r.timezone,
                    "catch_up": r.catch_up,
                    "next_fire_ms": r.next_fire_ms,
                }
                for r in rows
            ],
        )

    def set_catch_ups(self, rows: Sequence[ScheduleRow]) -> None:
        """Store each schedule's ``catch_up`` (its next tick is kept)."""
        if rows:
            self.conn.execute(
                update(schedules).where(_by_key).values(catch_up=bindparam("b_catch_up")),
                [_key(r) | {"b_catch_up": r.catch_up} for r in rows],
            )

    def delete_schedules(self, app_id: str, keys: Sequence[tuple[str, int]]) -> None:
        """Delete the schedules at these (function id, position) of the app."""
        if keys:
            self.conn.execute(
                delete(schedules).where(_by_key),
                [{"b_app_id": app_id, "b_function_id": f, "b_position": p} for f, p in keys],
            )

    def due_schedules(self, now_ms: int, limit: int) -> list[ScheduleRow]:
        """Up to ``limit`` schedules whose next tick has come, earliest first.

        On PostgreSQL the rows are locked until the transaction ends, and rows
        another control plane holds are skipped: whoever locks a row fires it."""
        query = (
            select(schedules)
            .where(schedules.c.next_fire_ms <= now_ms)
            .order_by(schedules.c.next_fire_ms)
            .limit(limit)
        )
        if self._lock_rows:
            query = query.with_for_update(skip_locked=True)
        return [_row(r) for r in self.conn.execute(query)]

    def advance_schedules(self, rows: Sequence[ScheduleRow]) -> None:
        """Store each schedule's ``next_fire_ms``."""
        if rows:
            self.conn.execute(
                update(schedules).where(_by_key).values(next_fire_ms=bindparam("b_next_fire_ms")),
                [_key(r) | {"b_next_fire_ms": r.next_fire_ms} for r in rows],
            )
