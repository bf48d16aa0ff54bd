"""Events in, runs out: deduplicate, store, and start a run per matching function."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controlplane.engine.ids import new_hex_id, new_ulid
from controlplane.engine.models import EventInput, FunctionKey, RunStatus, SendResult
from controlplane.store.schema import events, queue, runs
from controlplane.store.tx import WriteTx


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    """An event validated, with its id assigned and the functions it starts."""

    event: EventInput
    event_id: str
    ts_ms: int
    targets: list[FunctionKey]


def prepare(event: EventInput, targets: list[FunctionKey], now_ms: int) -> PreparedEvent:
    return PreparedEvent(
        event=event,
        event_id=event.id or new_ulid(now_ms),
        ts_ms=event.ts_ms or now_ms,
        targets=targets,
    )


def store_events(
    tx: WriteTx, batch: list[PreparedEvent], now_ms: int, dedupe_since_ms: int
) -> list[SendResult]:
    """Store the new events and create their runs, each queued to start now."""
    seen = tx.recent_event_ids([p.event_id for p in batch if p.event.id], dedupe_since_ms)
    results: list[SendResult] = []
    event_rows: list[dict[str, Any]] = []
    run_rows: list[dict[str, Any]] = []
    queue_rows: list[dict[str, Any]] = []
    for prepared in batch:
        if prepared.event_id in seen:
            results.append(SendResult(prepared.event_id, duplicate=True, run_ids=[]))
            continue
        seen.add(prepared.event_id)
        pk = new_ulid(now_ms)
        event = prepared.event
        event_rows.append(
            {
                "pk": pk,
                "id": prepared.event_id,
                "name": event.name,
                "data": event.data.decode("utf-8") if event.data else "{}",
                "user_data": event.user.decode("utf-8") if event.user else None,
                "ts_ms": prepared.ts_ms,
                "received_at_ms": now_ms,
            }
        )
        run_ids = []
        for key in prepared.targets:
            run_id = new_ulid(now_ms)
            run_ids.append(run_id)
            run_rows.append(new_run_row(run_id, key, pk, now_ms))
            queue_rows.append(queue_row(run_id, key, now_ms))
        results.append(SendResult(prepared.event_id, duplicate=False, run_ids=run_ids))
    tx.insert_rows(events, event_rows)
    tx.insert_rows(runs, run_rows)
    tx.insert_rows(queue, queue_rows)
    return results


def new_run_row(
    run_id: str, key: FunctionKey, event_pk: str | None, now_ms: int, replay_of: str | None = None
) -> dict[str, Any]:
    return {
        "id": run_id,
        "app_id": key.app_id,
        "function_id": key.function_id,
        "status": RunStatus.QUEUED.value,
        "event_pk": event_pk,
        "attempt": 0,
        "created_at_ms": now_ms,
        "started_at_ms": None,
        "ended_at_ms": None,
        "updated_at_ms": now_ms,
        "output": None,
        "error": None,
        "replay_of": replay_of,
        "trace_id": new_hex_id(16),
        "root_span_id": new_hex_id(8),
    }


def queue_row(run_id: str, key: FunctionKey, due_at_ms: int) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "app_id": key.app_id,
        "function_id": key.function_id,
        "due_at_ms": due_at_ms,
        "priority": 0,
        "lease_execution_id": None,
        "lease_deadline_ms": None,
    }
