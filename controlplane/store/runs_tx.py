"""Runs, their steps and history as the engine changes them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import (
    BindParameter,
    Insert,
    bindparam,
    func,
    select,
    tuple_,
    update,
)

from controlplane.model import (
    ErrorData,
    HistoryRecord,
    NewRunRecord,
    RunEventLink,
    RunState,
    RunStatus,
    RunUpdate,
    StepResult,
    StepStatus,
)
from controlplane.store import codec
from controlplane.store._txbase import InsertFactory, TxBase, chunks
from controlplane.store.schema import (
    history,
    run_events,
    runs,
    steps,
)

_update_run = (
    update(runs)
    .where(runs.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        attempt=bindparam("b_attempt"),
        output=bindparam("b_output"),
        error=bindparam("b_error"),
        ended_at_ms=bindparam("b_ended_at_ms"),
        updated_at_ms=bindparam("b_now"),
    )
)


_start_run = (
    update(runs)
    .where(runs.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        started_at_ms=func.coalesce(runs.c.started_at_ms, bindparam("b_now")),
        updated_at_ms=bindparam("b_now"),
    )
)


_IN_RUNS: BindParameter[list[str]] = bindparam("b_runs", expanding=True)

_run_states = select(
    runs.c.id,
    runs.c.app_id,
    runs.c.function_id,
    runs.c.status,
    runs.c.attempt,
    runs.c.event_pk,
    runs.c.trace_id,
    runs.c.root_span_id,
    runs.c.created_at_ms,
    runs.c.started_at_ms,
    runs.c.parent_run_id,
    runs.c.cancelled_execution_id,
    runs.c.ended_at_ms,
    runs.c.cron,
).where(runs.c.id.in_(_IN_RUNS))

_steps_of = select(
    steps.c.run_id,
    steps.c.step_id,
    steps.c.status,
    steps.c.output,
    steps.c.error,
    steps.c.attempts,
    steps.c.retry_at_ms,
    steps.c.position,
    steps.c.started_at_ms,
).where(steps.c.run_id.in_(_IN_RUNS))

_last_positions = (
    select(steps.c.run_id, func.max(steps.c.position))
    .where(steps.c.run_id.in_(_IN_RUNS))
    .group_by(steps.c.run_id)
)


def _upsert_steps(insert: InsertFactory) -> Insert:
    stmt = insert(steps)
    excluded = stmt.excluded  # type: ignore[attr-defined]
    return stmt.on_conflict_do_update(  # type: ignore[attr-defined, no-any-return]
        index_elements=[steps.c.run_id, steps.c.step_id],
        set_={
            "status": excluded.status,
            "output": excluded.output,
            "error": excluded.error,
            "attempts": steps.c.attempts + 1,
            "started_at_ms": excluded.started_at_ms,
            "ended_at_ms": excluded.ended_at_ms,
            "retry_at_ms": excluded.retry_at_ms,
            "child_run_id": excluded.child_run_id,
            # A retried step's result is recorded when it finally comes.
            "position": excluded.position,
        },
        where=steps.c.status == StepStatus.RETRYING.value,
    )


@dataclass(frozen=True, slots=True)
class StepState:
    """A step of a run as an execution is built from it."""

    run_id: str
    step_id: str
    status: StepStatus
    #: JSON text of a completed step's output.
    output: str | None
    error: ErrorData | None
    #: Failed attempts so far.
    attempts: int
    retry_at_ms: int | None
    #: The order in which results were recorded.
    position: int
    #: When the attempt last recorded started (the worker's report).
    started_at_ms: int | None = None


class RunWrites(TxBase):
    def add_runs(self, records: Sequence[NewRunRecord]) -> None:
        self._insert_all(runs, [codec.run_row(r) for r in records])

    def add_history(self, records: Sequence[HistoryRecord]) -> None:
        self._insert_all(history, [codec.history_row(r) for r in records])

    def add_run_events(self, links: Sequence[RunEventLink]) -> None:
        """The events of batched runs, by position."""
        self._insert_all(run_events, [codec.run_event_row(link) for link in links])

    def run_states(self, run_ids: Sequence[str]) -> dict[str, RunState]:
        found: dict[str, RunState] = {}
        for chunk in chunks(list(run_ids)):
            for r in self.conn.execute(_run_states, {"b_runs": chunk}):
                found[r.id] = RunState(
                    r.id,
                    r.app_id,
                    r.function_id,
                    RunStatus(r.status),
                    r.attempt,
                    r.event_pk,
                    r.trace_id,
                    r.root_span_id,
                    r.created_at_ms,
                    r.started_at_ms,
                    r.parent_run_id,
                    r.cancelled_execution_id,
                    r.ended_at_ms,
                    codec.decode_cron(r.cron),
                )
        return found

    def steps_of(self, run_ids: Sequence[str]) -> list[StepState]:
        """The step rows of these runs."""
        result: list[StepState] = []
        for chunk in chunks(list(run_ids)):
            rows = self.conn.execute(_steps_of, {"b_runs": chunk})
            result.extend(
                StepState(
                    r.run_id,
                    r.step_id,
                    StepStatus(r.status),
                    r.output,
                    codec.decode_error(r.error),
                    r.attempts,
                    r.retry_at_ms,
                    r.position,
                    r.started_at_ms,
                )
                for r in rows
            )
        return result

    def start_runs(self, statuses: Mapping[str, RunStatus], now_ms: int) -> None:
        """Run id -> its status as it starts executing; sets started_at the first time."""
        rows = [{"b_id": r, "b_status": s.value, "b_now": now_ms} for r, s in statuses.items()]
        if rows:
            self._execute_rows("start_run", lambda: _start_run, rows)

    def step_attempts(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        found: dict[tuple[str, str], int] = {}
        for chunk in chunks(sorted(set(keys))):
            rows = self.conn.execute(
                select(steps.c.run_id, steps.c.step_id, steps.c.attempts).where(
                    tuple_(steps.c.run_id, steps.c.step_id).in_(chunk)
                )
            )
            found.update({(r.run_id, r.step_id): r.attempts for r in rows})
        return found

    def record_steps(self, results: Sequence[StepResult]) -> None:
        """Record step results; a step that is ``retrying`` takes the new result
        and counts one more attempt.

        A final result (completed or failed) is never overwritten, so a result is
        memoized exactly once.
        """
        if not results:
            return
        # Positions continue each run's sequence. Only the execution holding the
        # run's lease writes its steps, so there is no race for the numbers.
        last = self._last_positions([r.run_id for r in results])
        rows = []
        for result in results:
            last[result.run_id] = position = last.get(result.run_id, 0) + 1
            rows.append(codec.step_row(result, position))
        insert = self._insert
        self._execute_rows("upsert_steps", lambda: _upsert_steps(insert), rows, tuple(rows[0]))

    def _last_positions(self, run_ids: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in chunks(sorted(set(run_ids))):
            rows = self.conn.execute(_last_positions, {"b_runs": chunk})
            found.update({run_id: int(last) for run_id, last in rows})
        return found

    def retry_times(self, run_ids: Sequence[str]) -> dict[str, int]:
        """run id -> the earliest retry time of its retrying steps."""
        found: dict[str, int] = {}
        for chunk in chunks(sorted(set(run_ids))):
            rows = self.conn.execute(
                select(steps.c.run_id, func.min(steps.c.retry_at_ms))
                .where(
                    steps.c.run_id.in_(chunk),
                    steps.c.status == StepStatus.RETRYING.value,
                    steps.c.retry_at_ms.is_not(None),
                )
                .group_by(steps.c.run_id)
            )
            found.update({run_id: int(at) for run_id, at in rows if at is not None})
        return found

    def update_runs(self, updates: Sequence[RunUpdate], now_ms: int) -> None:
        rows = [
            {
                "b_id": u.run_id,
                "b_status": u.status.value,
                "b_attempt": u.attempt,
                "b_output": u.output.decode("utf-8") if u.output is not None else None,
                "b_error": codec.encode_error(u.error),
                "b_ended_at_ms": u.ended_at_ms,
                "b_now": now_ms,
            }
            for u in updates
        ]
        if rows:
            self._execute_rows("update_run", lambda: _update_run, rows)

    def set_cancelled_execution(self, run_id: str, execution_id: str) -> None:
        self.conn.execute(
            update(runs).where(runs.c.id == run_id).values(cancelled_execution_id=execution_id)
        )

    def run_state(self, run_id: str) -> RunState | None:
        return self.run_states([run_id]).get(run_id)

    def copy_completed_steps(self, from_run_id: str, to_run_id: str) -> int:
        """Copy the steps of a run that completed before its first step that did
        not, in order, to another run (a replay from the failed step); how many."""
        rows = self.conn.execute(
            select(steps).where(steps.c.run_id == from_run_id).order_by(steps.c.position)
        ).all()
        kept = []
        for row in rows:
            if row.status != StepStatus.COMPLETED.value:
                break
            kept.append({**row._mapping, "run_id": to_run_id})
        self._insert_all(steps, kept)
        return len(kept)

    def unfinished_runs(
        self, app_id: str, function_id: str, after_ms: int, before_ms: int, limit: int
    ) -> list[str]:
        query = select(runs.c.id).where(
            runs.c.app_id == app_id,
            runs.c.function_id == function_id,
            runs.c.status.in_(["queued", "running", "sleeping", "waiting"]),
        )
        if after_ms:
            query = query.where(runs.c.created_at_ms >= after_ms)
        if before_ms:
            query = query.where(runs.c.created_at_ms < before_ms)
        return [r.id for r in self.conn.execute(query.order_by(runs.c.id).limit(limit))]
