"""Queue items and their leases: claiming due runs, lowering due times,
requeueing, deadlines, and the leases workers hold."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BindParameter,
    Select,
    and_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    update,
)

from controlplane.model import QueueEntry
from controlplane.store import codec
from controlplane.store._txbase import NOT_DUE, chunks
from controlplane.store.flow_tx import FlowWrites
from controlplane.store.schema import (
    functions,
    queue,
)


@dataclass(frozen=True, slots=True)
class QueueLease:
    execution_id: str | None
    due_at_ms: int


@dataclass(frozen=True, slots=True)
class RunDeadline:
    run_id: str
    start_deadline_ms: int | None
    finish_deadline_ms: int | None


@dataclass(frozen=True, slots=True)
class Claimed:
    run_id: str
    app_id: str
    function_id: str
    execution_id: str
    # When the queue item was due (how late the claim is, for metrics).
    due_at_ms: int = 0


_CLAIM_ROUNDS = 4

_CANDIDATE_COLUMNS = (
    queue.c.run_id,
    queue.c.function_id,
    queue.c.concurrency_key_1,
    queue.c.concurrency_limit_1,
    queue.c.concurrency_key_2,
    queue.c.concurrency_limit_2,
    queue.c.due_at_ms,
)

# Whether any run of the app's functions is due and unleased (leased rows are
# never due): one probe of ix_queue_ready.
_any_due = (
    select(queue.c.run_id)
    .where(
        queue.c.app_id == bindparam("b_app"),
        queue.c.function_id.in_(bindparam("b_functions", expanding=True)),
        queue.c.due_at_ms <= bindparam("b_now"),
        queue.c.lease_execution_id.is_(None),
    )
    .limit(1)
)


_lease_holders = select(queue.c.run_id, queue.c.lease_execution_id, queue.c.due_at_ms).where(
    queue.c.run_id.in_(bindparam("b_runs", expanding=True))
)
_lease_holders_locked = _lease_holders.with_for_update()

_set_deadlines = (
    update(queue)
    .where(queue.c.run_id == bindparam("b_run_id"))
    .values(
        start_deadline_ms=bindparam("b_start"),
        finish_deadline_ms=func.coalesce(queue.c.finish_deadline_ms, bindparam("b_finish")),
    )
)

_lock_unleased = (
    select(queue.c.run_id)
    .where(queue.c.run_id.in_(bindparam("b_runs", expanding=True)))
    .where(queue.c.lease_execution_id.is_(None))
    .with_for_update(skip_locked=True)
)


@functools.cache
def _ranked(saturated: bool) -> Select[Any]:
    """Due, unleased runs of the app's functions in fair order (see
    ``claim_ready``), built once: with ``saturated``, skipping the runs of the
    concurrency keys in ``b_full``."""
    function_ids: BindParameter[list[str]] = bindparam("b_functions", expanding=True)
    conditions = [
        queue.c.app_id == bindparam("b_app"),
        queue.c.function_id.in_(function_ids),
        queue.c.due_at_ms <= bindparam("b_now"),
        queue.c.lease_execution_id.is_(None),
        # A paused function's runs are held where they are.
        queue.c.function_id.not_in(
            select(functions.c.function_id).where(
                functions.c.app_id == bindparam("b_app"), functions.c.paused.is_not(None)
            )
        ),
    ]
    if saturated:
        full: BindParameter[list[str]] = bindparam("b_full", expanding=True)
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
            queue.c.app_id == bindparam("b_app"),
            queue.c.function_id.in_(function_ids),
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
    ranked = (
        select(*_CANDIDATE_COLUMNS, turn, order.label("ord"))
        .select_from(from_busy)
        .where(*conditions)
        .subquery()
    )
    return (
        select(*(ranked.c[c.name] for c in _CANDIDATE_COLUMNS))
        # Groups on the same turn go in random order: with one free slot, the
        # oldest group would otherwise win every time.
        .order_by(ranked.c.turn, func.random())
        .limit(bindparam("b_limit"))
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


class QueueWrites(FlowWrites):
    """Queue items and leases. On FlowWrites: a claim counts and locks the
    concurrency keys of what it leases."""

    def add_queue_items(self, entries: Sequence[QueueEntry]) -> None:
        """The queue items of new runs."""
        self._insert_all(queue, [codec.queue_row(e) for e in entries])

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
                self._execute_rows(
                    "lease",
                    lambda: _lease,
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
        parameters: dict[str, Any] = {
            "b_app": app_id,
            "b_functions": list(function_ids),
            "b_now": now_ms,
            "b_limit": limit,
        }
        if saturated:
            parameters["b_full"] = sorted(saturated)
        elif self.conn.execute(_any_due, parameters).first() is None:
            return []  # the common case of an idle queue, at the cost of one index probe
        picked = [tuple(r) for r in self.conn.execute(_ranked(bool(saturated)), parameters)]
        if not picked or not self._lock_rows:
            return picked
        # PostgreSQL cannot lock rows of a windowed query: lock them now, skipping
        # rows another transaction holds and rows another node leased meanwhile.
        locked = {
            r.run_id for r in self.conn.execute(_lock_unleased, {"b_runs": [p[0] for p in picked]})
        }
        return [p for p in picked if p[0] in locked]

    def lease_holders(self, run_ids: Sequence[str]) -> dict[str, QueueLease]:
        """run id -> who holds its lease and its due time.

        Runs without a queue row (finished or cancelled) are absent. On PostgreSQL
        the rows stay locked until commit, fencing out other control planes.
        """
        found: dict[str, QueueLease] = {}
        query = _lease_holders_locked if self._lock_rows else _lease_holders
        for chunk in chunks(sorted(set(run_ids))):
            found.update(
                {
                    r.run_id: QueueLease(r.lease_execution_id, r.due_at_ms)
                    for r in self.conn.execute(query, {"b_runs": chunk})
                }
            )
        return found

    def lower_due(self, due_at: Mapping[str, int]) -> None:
        """Run id -> a due time: bring each run's forward to it (never back)."""
        if due_at:
            self.conn.execute(_lower_due, _due_rows(due_at))

    def requeue(self, due_at: Mapping[str, int]) -> None:
        """Run id -> its due time: release its lease and set it."""
        if due_at:
            self.conn.execute(_requeue, _due_rows(due_at))

    def delete_queue_items(self, run_ids: Sequence[str]) -> None:
        if run_ids:
            self.conn.execute(_delete_queue, [{"b_run_id": r} for r in run_ids])

    def extend_leases(self, execution_ids: Sequence[str], deadline_ms: int) -> set[str]:
        """Extend these leases; returns the execution ids that still hold one."""
        held: set[str] = set()
        for chunk in chunks(list(execution_ids)):
            result = self.conn.execute(
                update(queue)
                .where(queue.c.lease_execution_id.in_(chunk))
                .values(lease_deadline_ms=deadline_ms)
                .returning(queue.c.lease_execution_id)
            )
            held.update(r.lease_execution_id for r in result)
        return held

    def regrant_leases(
        self, app_id: str, held: Mapping[str, str], deadline_ms: int
    ) -> list[Claimed]:
        """Extend the leases a reconnecting worker of ``app_id`` still holds
        (execution id -> run id): those whose run's queue row still names the
        execution (the fencing token). Returns them; a lease given away meanwhile
        is not among them."""
        kept: list[Claimed] = []
        for chunk in chunks(sorted(held)):
            result = self.conn.execute(
                update(queue)
                .where(
                    queue.c.lease_execution_id.in_(chunk),
                    queue.c.run_id.in_([held[e] for e in chunk]),
                    queue.c.app_id == app_id,
                )
                .values(lease_deadline_ms=deadline_ms)
                .returning(queue.c.run_id, queue.c.function_id, queue.c.lease_execution_id)
            )
            kept.extend(
                Claimed(r.run_id, app_id, r.function_id, r.lease_execution_id)
                for r in result
                if held.get(r.lease_execution_id) == r.run_id
            )
        return kept

    def cap_leases(self, deadline_ms: int) -> int:
        """Bring every lease deadline later than ``deadline_ms`` down to it;
        returns how many leases are held."""
        self.conn.execute(
            update(queue)
            .where(queue.c.lease_execution_id.is_not(None), queue.c.lease_deadline_ms > deadline_ms)
            .values(lease_deadline_ms=deadline_ms)
        )
        held = self.conn.execute(
            select(func.count()).where(queue.c.lease_execution_id.is_not(None))
        ).scalar_one()
        return int(held)

    def release_leases(
        self, execution_ids: Sequence[str], now_ms: int, *, expired_only: bool = False
    ) -> list[tuple[str, str]]:
        """Requeue the runs these executions hold; returns (run id, execution id).

        A run stays due at a step retry time set during the lease (its backoff is
        kept); otherwise it is due now.
        """
        released: list[tuple[str, str]] = []
        for chunk in chunks(list(execution_ids)):
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

    def lock_lease(self, run_id: str) -> QueueLease | None:
        """The run's lease (None without a queue item: it finished). On
        PostgreSQL its queue row stays locked until commit."""
        query = select(queue.c.lease_execution_id, queue.c.due_at_ms).where(
            queue.c.run_id == run_id
        )
        if self._lock_rows:
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        return QueueLease(row.lease_execution_id, row.due_at_ms) if row is not None else None

    def set_deadlines(self, finish_by: Mapping[str, int | None]) -> None:
        """Runs that start: their start deadline goes, and their finish deadline
        (run id -> when, None for none) is set unless it already is."""
        rows = [{"b_run_id": r, "b_start": None, "b_finish": f} for r, f in finish_by.items()]
        if rows:
            self._execute_rows(
                "set_deadlines",
                lambda: _set_deadlines,
                rows,
            )

    def deadlines_due(self, now_ms: int) -> list[RunDeadline]:
        """Queue items whose start or finish deadline has passed."""
        rows = self.conn.execute(
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
        return [RunDeadline(r.run_id, r.start_deadline_ms, r.finish_deadline_ms) for r in rows]


def _due_rows(due_at: Mapping[str, int]) -> list[dict[str, object]]:
    return [{"b_run_id": run_id, "b_due_at_ms": due} for run_id, due in due_at.items()]
