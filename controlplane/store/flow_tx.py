"""Queries on flow control: pauses, concurrency counts, flow state per key
(mixed into ReadTx and WriteTx)."""

from __future__ import annotations

from sqlalchemy import func, select, update

from controlplane.engine.models import FunctionKey, PauseMode
from controlplane.store._txbase import TxBase
from controlplane.store.schema import functions, queue


class FlowReads(TxBase):
    """Reading flow-control state."""

    def paused_functions(self) -> dict[FunctionKey, PauseMode]:
        rows = self.conn.execute(
            select(functions.c.app_id, functions.c.function_id, functions.c.paused).where(
                functions.c.paused.is_not(None)
            )
        )
        return {FunctionKey(r.app_id, r.function_id): PauseMode(r.paused) for r in rows}


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
