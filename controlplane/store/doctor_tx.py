"""The queries behind ``tether doctor``: each finds the rows that break one
invariant (model/invariants.py), at most ``limit`` of them."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, exists, not_, select

from controlplane.model import RunStatus
from controlplane.store._txbase import TxBase
from controlplane.store.schema import queue, runs, schedules, waits

_FINISHED = [s.value for s in RunStatus if s.is_terminal]


@dataclass(frozen=True, slots=True)
class StrandedRun:
    run_id: str
    app_id: str
    function_id: str
    status: str
    event_pk: str | None


def _finished_or_missing(run_id_column: ColumnElement[str]) -> ColumnElement[bool]:
    """No unfinished run has this id."""
    return not_(exists().where(runs.c.id == run_id_column, runs.c.status.not_in(_FINISHED)))


class DoctorReads(TxBase):
    def runs_without_queue_entry(self, limit: int) -> list[StrandedRun]:
        rows = self.conn.execute(
            select(runs.c.id, runs.c.app_id, runs.c.function_id, runs.c.status, runs.c.event_pk)
            .where(
                runs.c.status.not_in(_FINISHED),
                not_(exists().where(queue.c.run_id == runs.c.id)),
            )
            .order_by(runs.c.id)
            .limit(limit)
        )
        return [StrandedRun(r.id, r.app_id, r.function_id, r.status, r.event_pk) for r in rows]

    def queue_entries_without_unfinished_run(self, limit: int) -> list[tuple[str, str | None]]:
        """(run id, lease execution id) of queue entries no unfinished run owns."""
        rows = self.conn.execute(
            select(queue.c.run_id, queue.c.lease_execution_id)
            .where(_finished_or_missing(queue.c.run_id))
            .order_by(queue.c.run_id)
            .limit(limit)
        )
        return [(r.run_id, r.lease_execution_id) for r in rows]

    def leases_expired_before(self, before_ms: int, limit: int) -> list[tuple[str, str, int]]:
        """(run id, execution id, deadline) of leases whose deadline is before ``before_ms``."""
        rows = self.conn.execute(
            select(queue.c.run_id, queue.c.lease_execution_id, queue.c.lease_deadline_ms)
            .where(queue.c.lease_execution_id.is_not(None), queue.c.lease_deadline_ms < before_ms)
            .order_by(queue.c.lease_deadline_ms)
            .limit(limit)
        )
        return [(r.run_id, r.lease_execution_id, int(r.lease_deadline_ms)) for r in rows]

    def waits_of_finished_runs(self, limit: int) -> list[tuple[str, str, str, str]]:
        """(run id, step id, name, kind) of waits and watches of no unfinished run."""
        rows = self.conn.execute(
            select(waits.c.run_id, waits.c.step_id, waits.c.name, waits.c.kind)
            .where(_finished_or_missing(waits.c.run_id))
            .order_by(waits.c.run_id)
            .limit(limit)
        )
        return [(r.run_id, r.step_id, r.name, r.kind) for r in rows]

    def schedule_keys(self) -> list[tuple[str, str, int]]:
        """(app id, function id, trigger position) of every schedule."""
        rows = self.conn.execute(
            select(schedules.c.app_id, schedules.c.function_id, schedules.c.position)
        )
        return [(r.app_id, r.function_id, int(r.position)) for r in rows]
