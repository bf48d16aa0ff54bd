"""Queries for observability: the counts behind the gauges, and the events
whose spans run spans link to (mixed into ReadTx)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, text

from controlplane.model import EventLink, FunctionKey, WaitKind
from controlplane.store._txbase import TxBase, chunks
from controlplane.store.schema import events, history, queue, waits


class StatsReads(TxBase):
    def latest_recorded_ms(self) -> int:
        """The latest time the store recorded: the newest history entry or
        event reception (0 for an empty store). A virtual clock resumes there."""
        newest_entry = self.conn.execute(
            select(history.c.ts_ms).order_by(history.c.id.desc()).limit(1)
        ).scalar()
        newest_event = self.conn.execute(select(func.max(events.c.received_at_ms))).scalar()
        return max(int(newest_entry or 0), int(newest_event or 0))

    def stored_bytes(self) -> int:
        """The size of the store's tables and indexes (SQLite: the database
        file's pages; PostgreSQL: the relations of the current schema)."""
        if self._postgres:
            size = self.conn.execute(
                text(
                    "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
                )
            ).scalar()
        else:
            pages = self.conn.exec_driver_sql("PRAGMA page_count").scalar()
            page_size = self.conn.exec_driver_sql("PRAGMA page_size").scalar()
            size = int(pages or 0) * int(page_size or 0)
        return int(size or 0)

    def ready_counts(self, now_ms: int) -> dict[FunctionKey, tuple[int, int]]:
        """(how many, the earliest due time) of the queue items due by
        ``now_ms`` and not leased, per function (only functions that have some)."""
        rows = self.conn.execute(
            select(queue.c.app_id, queue.c.function_id, func.count(), func.min(queue.c.due_at_ms))
            .where(queue.c.lease_execution_id.is_(None), queue.c.due_at_ms <= now_ms)
            .group_by(queue.c.app_id, queue.c.function_id)
        )
        return {
            FunctionKey(app_id, function_id): (int(n), int(earliest))
            for app_id, function_id, n, earliest in rows
        }

    def pending_wait_counts(self) -> dict[str, int]:
        """Pending sleeps, event waits and invokes, by step kind."""
        rows = self.conn.execute(
            select(waits.c.kind, func.count())
            .where(waits.c.kind != WaitKind.CANCEL_ON.value)  # watches are not waits
            .group_by(waits.c.kind)
        )
        return {kind: int(n) for kind, n in rows}

    def event_links(self, pks: Sequence[str]) -> dict[str, EventLink]:
        """Event pk -> its id, name and span."""
        found: dict[str, EventLink] = {}
        for chunk in chunks(sorted(set(pks))):
            rows = self.conn.execute(
                select(events.c.pk, events.c.id, events.c.name, events.c.traceparent).where(
                    events.c.pk.in_(chunk)
                )
            )
            for pk, event_id, name, parent in rows:
                found[pk] = EventLink(event_id, name, parent)
        return found
