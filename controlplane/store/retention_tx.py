"""What retention deletes (engine/retention.py): finished runs with their steps
and history, events no run or wait needs any more, expired idempotency keys and
flow-control state that no longer holds anything. Each query takes a bounded
batch, so that every transaction stays short."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, and_, delete, exists, func, not_, or_, select, tuple_

from controlplane.model import FunctionKey, RunStatus
from controlplane.store._txbase import TxBase, chunks
from controlplane.store.schema import (
    event_skips,
    events,
    flow_state,
    history,
    idempotency_keys,
    run_events,
    runs,
    steps,
    waits,
)

_FINISHED = [s.value for s in RunStatus if s.is_terminal]
# Flow state that names a run: it holds something only while that run is
# unfinished (flow.py); throttle and rate-limit state holds a time.
_RUN_HELD_KINDS = ("singleton", "debounce", "batch")
_TIMED_KINDS = ("throttle", "rate_limit")


def _unneeded() -> list[ColumnElement[bool]]:
    """No stored run was started by the event and no wait reads it."""
    return [
        not_(exists().where(runs.c.event_pk == events.c.pk)),
        not_(exists().where(run_events.c.event_pk == events.c.pk)),
        not_(exists().where(waits.c.trigger_event_pk == events.c.pk)),
    ]


class RetentionReads(TxBase):
    def runs_ended_before(
        self,
        before_ms: int,
        limit: int,
        *,
        only: FunctionKey | None = None,
        excluding: Sequence[FunctionKey] = (),
    ) -> list[str]:
        """Finished runs that ended before ``before_ms``, oldest first: of one
        function (``only``), or of every function but ``excluding``."""
        # A run ends after it is created: the (status, created_at_ms) index (or
        # the function's) narrows the search to runs created before the cutoff.
        query = select(runs.c.id).where(
            runs.c.status.in_(_FINISHED),
            runs.c.created_at_ms < before_ms,
            runs.c.ended_at_ms < before_ms,
        )
        if only is not None:
            query = query.where(
                runs.c.app_id == only.app_id, runs.c.function_id == only.function_id
            )
        if excluding:
            pairs = [(k.app_id, k.function_id) for k in excluding]
            query = query.where(not_(tuple_(runs.c.app_id, runs.c.function_id).in_(pairs)))
        rows = self.conn.execute(query.order_by(runs.c.created_at_ms, runs.c.id).limit(limit))
        return [r.id for r in rows]

    def events_unneeded_before(self, before_ms: int, limit: int) -> list[str]:
        """Events received before ``before_ms`` that no stored run was started
        by and no wait reads (``event`` in its expression): their pks."""
        rows = self.conn.execute(
            select(events.c.pk)
            .where(events.c.received_at_ms < before_ms, *_unneeded())
            .order_by(events.c.received_at_ms)
            .limit(limit)
        )
        return [r.pk for r in rows]

    def count_runs_ended_before(self, before_ms: int) -> int:
        query = select(func.count()).where(
            runs.c.status.in_(_FINISHED),
            runs.c.created_at_ms < before_ms,
            runs.c.ended_at_ms < before_ms,
        )
        return int(self.conn.execute(query).scalar() or 0)

    def count_events_unneeded_before(self, before_ms: int) -> int:
        """How many events a purge at ``before_ms`` would delete: those received
        before it that no run it keeps (unfinished, or ended since) was started
        by and no wait reads."""
        kept = or_(runs.c.status.not_in(_FINISHED), runs.c.ended_at_ms >= before_ms)
        query = select(func.count()).where(
            events.c.received_at_ms < before_ms,
            not_(exists().where(runs.c.event_pk == events.c.pk, kept)),
            not_(
                exists().where(
                    run_events.c.event_pk == events.c.pk, run_events.c.run_id == runs.c.id, kept
                )
            ),
            not_(exists().where(waits.c.trigger_event_pk == events.c.pk)),
        )
        return int(self.conn.execute(query).scalar() or 0)


class RetentionWrites(RetentionReads):
    def delete_runs(self, run_ids: Sequence[str]) -> None:
        """These finished runs with their steps, history, event links and
        idempotency keys."""
        for chunk in chunks(list(run_ids)):
            for table in (steps, history, run_events):
                self.conn.execute(delete(table).where(table.c.run_id.in_(chunk)))
            self.conn.execute(delete(idempotency_keys).where(idempotency_keys.c.run_id.in_(chunk)))
            self.conn.execute(
                delete(runs).where(runs.c.id.in_(chunk), runs.c.status.in_(_FINISHED))
            )

    def delete_events(self, pks: Sequence[str]) -> int:
        """These events and the skips recorded for them, unless a run or a
        wait took them up meanwhile (a replay); how many went."""
        deleted = 0
        for chunk in chunks(list(pks)):
            query = delete(events).where(events.c.pk.in_(chunk), *_unneeded())
            gone = [r.pk for r in self.conn.execute(query.returning(events.c.pk))]
            if gone:
                self.conn.execute(delete(event_skips).where(event_skips.c.event_pk.in_(gone)))
            deleted += len(gone)
        return deleted

    def delete_expired_state(self, now_ms: int) -> int:
        """Idempotency keys past their expiry, throttle and rate-limit state
        that has fully recovered (its time is past: the same as none), and
        run-held flow state whose run is finished or gone; how many rows.
        The conditions are in the DELETE itself: a key taken meanwhile stays."""
        keys = self.conn.execute(
            delete(idempotency_keys).where(idempotency_keys.c.expires_at_ms < now_ms)
        ).rowcount
        unfinished = exists().where(
            runs.c.id == flow_state.c.run_id, runs.c.status.not_in(_FINISHED)
        )
        states = self.conn.execute(
            delete(flow_state).where(
                or_(
                    and_(flow_state.c.kind.in_(_TIMED_KINDS), flow_state.c.value_ms < now_ms),
                    and_(flow_state.c.kind.in_(_RUN_HELD_KINDS), not_(unfinished)),
                )
            )
        ).rowcount
        return int(keys) + int(states)
