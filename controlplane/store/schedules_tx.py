"""Queries on cron schedules (mixed into ReadTx and WriteTx)."""

from __future__ import annotations

from sqlalchemy import select

from controlplane.engine.models import FunctionKey
from controlplane.store._txbase import TxBase
from controlplane.store.schema import schedules


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


class ScheduleWrites(TxBase):
    """Writing schedules: inside the writer's transaction only."""
