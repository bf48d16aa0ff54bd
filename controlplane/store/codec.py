"""Conversions between table rows and the domain's records: the only module that
knows both the columns and the models."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from sqlalchemy import Row

from controlplane.model import (
    CronTick,
    ErrorData,
    EventSkip,
    FunctionRecord,
    HistoryEntry,
    HistoryKind,
    HistoryRecord,
    IdempotencyClaim,
    NewEvent,
    NewRunRecord,
    ParentClose,
    QueueEntry,
    RunEventLink,
    RunStatus,
    RunSummary,
    StepKind,
    StepRecord,
    StepResult,
    StepStatus,
    StoredEvent,
    WaitKind,
    WaitRecord,
)


def encode_error(error: ErrorData | None) -> str | None:
    if error is None:
        return None
    return json.dumps({"name": error.name, "message": error.message, "stack": error.stack})


def decode_error(raw: str | None) -> ErrorData | None:
    if not raw:
        return None
    value = json.loads(raw)
    return ErrorData(value.get("name", ""), value.get("message", ""), value.get("stack", ""))


def to_text(payload: bytes) -> str:
    return payload.decode("utf-8")


def to_bytes(text: str | None) -> bytes | None:
    return None if text is None else text.encode("utf-8")


def run_from_row(row: Row[Any], event_id: str = "") -> RunSummary:
    m = row._mapping
    return RunSummary(
        id=m["id"],
        app_id=m["app_id"],
        function_id=m["function_id"],
        status=RunStatus(m["status"]),
        event_id=event_id,
        attempt=m["attempt"],
        created_at_ms=m["created_at_ms"],
        started_at_ms=m["started_at_ms"] or 0,
        ended_at_ms=m["ended_at_ms"] or 0,
        output=to_bytes(m["output"]),
        error=decode_error(m["error"]),
        replay_of=m["replay_of"] or "",
        trace_id=m["trace_id"],
        parent_run_id=m["parent_run_id"] or "",
    )


def event_from_row(row: Row[Any]) -> StoredEvent:
    m = row._mapping
    return StoredEvent(
        id=m["id"],
        name=m["name"],
        data=m["data"].encode("utf-8"),
        user=(m["user_data"] or "").encode("utf-8"),
        ts_ms=m["ts_ms"],
        received_at_ms=m["received_at_ms"],
    )


def step_from_row(row: Row[Any]) -> StepRecord:
    m = row._mapping
    return StepRecord(
        step_id=m["step_id"],
        name=m["name"],
        kind=StepKind(m["kind"]),
        status=StepStatus(m["status"]),
        output=to_bytes(m["output"]),
        error=decode_error(m["error"]),
        attempts=m["attempts"],
        started_at_ms=m["started_at_ms"],
        ended_at_ms=m["ended_at_ms"],
        child_run_id=m["child_run_id"] or "",
    )


def history_from_row(row: Row[Any]) -> HistoryEntry:
    m = row._mapping
    detail = json.loads(m["detail"]) if m["detail"] else {}
    raw_error = detail.get("error")
    return HistoryEntry(
        ts_ms=m["ts_ms"],
        kind=HistoryKind(m["kind"]),
        step_id=m["step_id"] or "",
        step_name=m["step_name"] or "",
        attempt=m["attempt"] or 0,
        error=ErrorData(**raw_error) if raw_error else None,
        until_ms=m["until_ms"] or 0,
        message=detail.get("message", ""),
        execution_id=m["execution_id"] or "",
        started_at_ms=detail.get("started_at_ms", 0),
    )


def history_row(record: HistoryRecord) -> dict[str, Any]:
    """A row for the history table."""
    detail: dict[str, Any] = {}
    error = record.error
    if error is not None:
        detail["error"] = {"name": error.name, "message": error.message, "stack": error.stack}
    if record.message:
        detail["message"] = record.message
    if record.started_at_ms:
        detail["started_at_ms"] = record.started_at_ms
    return {
        "run_id": record.run_id,
        "ts_ms": record.ts_ms,
        "kind": record.kind.value,
        "step_id": record.step_id,
        "step_name": record.step_name,
        "attempt": record.attempt,
        "until_ms": record.until_ms,
        "execution_id": record.execution_id,
        "detail": json.dumps(detail) if detail else None,
    }


def run_row(record: NewRunRecord) -> dict[str, Any]:
    """A row for the runs table."""
    return {
        "id": record.run_id,
        "app_id": record.key.app_id,
        "function_id": record.key.function_id,
        "status": record.status.value,
        "event_pk": record.event_pk,
        "attempt": 0,
        "created_at_ms": record.created_at_ms,
        "started_at_ms": None,
        "ended_at_ms": None,
        "updated_at_ms": record.created_at_ms,
        "output": None,
        "error": None,
        "replay_of": record.replay_of,
        "trace_id": record.trace_id,
        "root_span_id": record.root_span_id,
        "parent_run_id": record.parent_run_id,
        "parent_step_id": record.parent_step_id,
        "cancelled_execution_id": None,
        "cron": encode_cron(record.cron) if record.cron is not None else None,
    }


def queue_row(entry: QueueEntry) -> dict[str, Any]:
    """A row for the queue table (not leased)."""
    if len(entry.concurrency) > 2:
        raise ValueError(f"run {entry.run_id}: a queue item holds at most two concurrency keys")
    row: dict[str, Any] = {
        "run_id": entry.run_id,
        "app_id": entry.key.app_id,
        "function_id": entry.key.function_id,
        "due_at_ms": entry.due_at_ms,
        "priority": entry.priority,
        "lease_execution_id": None,
        "lease_deadline_ms": None,
        "start_deadline_ms": entry.start_deadline_ms,
        "finish_deadline_ms": None,
    }
    for index in (1, 2):
        slot = entry.concurrency[index - 1] if index <= len(entry.concurrency) else None
        row[f"concurrency_key_{index}"] = slot.key if slot else None
        row[f"concurrency_limit_{index}"] = slot.limit if slot else None
    return row


def run_event_row(link: RunEventLink) -> dict[str, Any]:
    return {"run_id": link.run_id, "position": link.position, "event_pk": link.event_pk}


def event_row(new: NewEvent) -> dict[str, Any]:
    """A row for the events table (read back by event_from_row)."""
    event = new.event
    return {
        "pk": new.pk,
        "id": event.id,
        "name": event.name,
        "data": event.data.decode("utf-8") if event.data else "{}",
        "user_data": event.user.decode("utf-8") if event.user else None,
        "ts_ms": event.ts_ms,
        "received_at_ms": event.received_at_ms,
        "traceparent": new.traceparent,
    }


def event_skip_row(skip: EventSkip) -> dict[str, Any]:
    return {
        "event_pk": skip.event_pk,
        "app_id": skip.key.app_id,
        "function_id": skip.key.function_id,
        "reason": skip.reason,
        "existing_run_id": skip.existing_run_id,
        "created_at_ms": skip.created_at_ms,
    }


def idempotency_row(claim: IdempotencyClaim) -> dict[str, Any]:
    return {
        "app_id": claim.key.app_id,
        "function_id": claim.key.function_id,
        "key": claim.idempotency_key,
        "run_id": claim.run_id,
        "expires_at_ms": claim.expires_at_ms,
    }


def function_row(record: FunctionRecord) -> dict[str, Any]:
    return {
        "app_id": record.key.app_id,
        "function_id": record.key.function_id,
        "name": record.name,
        "definition": record.definition,
        "registered_at_ms": record.at_ms,
        "updated_at_ms": record.at_ms,
    }


def step_row(result: StepResult, position: int) -> dict[str, Any]:
    """A row for the steps table, at this position in its run."""
    return {
        "run_id": result.run_id,
        "step_id": result.step_id,
        "name": result.name,
        "kind": result.kind.value,
        "status": result.status.value,
        "output": result.output,
        "error": encode_error(result.error),
        "attempts": result.attempts,
        "started_at_ms": result.started_at_ms,
        "ended_at_ms": result.ended_at_ms,
        "retry_at_ms": result.retry_at_ms,
        "child_run_id": result.child_run_id,
        "position": position,
    }


def wait_row(wait: WaitRecord) -> dict[str, Any]:
    return {
        "run_id": wait.run_id,
        "step_id": wait.step_id,
        "name": wait.name,
        "kind": wait.kind.value,
        "created_at_ms": wait.created_at_ms,
        "until_ms": wait.until_ms,
        "event_name": wait.event_name,
        "match_path": wait.match_path,
        "match_value": wait.match_value,
        "expression": wait.expression,
        "trigger_event_pk": wait.trigger_event_pk,
        "child_run_id": wait.child_run_id,
        "traceparent": wait.traceparent,
        "parent_close": wait.parent_close.value if wait.parent_close else None,
    }


def wait_from_row(row: Row[Any]) -> WaitRecord:
    m = row._mapping
    return WaitRecord(
        run_id=m["run_id"],
        step_id=m["step_id"],
        name=m["name"],
        kind=WaitKind(m["kind"]),
        created_at_ms=m["created_at_ms"],
        until_ms=m["until_ms"],
        event_name=m["event_name"],
        match_path=m["match_path"],
        match_value=m["match_value"],
        expression=m["expression"],
        trigger_event_pk=m["trigger_event_pk"],
        child_run_id=m["child_run_id"],
        traceparent=m["traceparent"],
        parent_close=ParentClose(m["parent_close"]) if m["parent_close"] else None,
    )


def encode_cursor(*parts: object) -> str:
    raw = "\x1f".join(str(p) for p in parts)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(token: str, n: int) -> list[str]:
    """The parts of a page token; raises ValueError when it is not one of ours."""
    padded = token + "=" * (-len(token) % 4)
    parts = base64.urlsafe_b64decode(padded.encode()).decode().split("\x1f")
    if len(parts) != n:
        raise ValueError("malformed page token")
    return parts


_CURSOR_TIME = re.compile(r"-?[0-9]{1,19}")
_BIGINT = range(-(2**63), 2**63)


def decode_page_cursor(token: str) -> tuple[int, str]:
    """The (time, id) of a page token of ``encode_cursor(time, id)``; raises
    ValueError for anything else, before any of it reaches a query."""
    at, last_id = decode_cursor(token, 2)
    if not _CURSOR_TIME.fullmatch(at) or int(at) not in _BIGINT:
        raise ValueError("malformed page token")
    if not last_id or len(last_id) > 256 or not last_id.isprintable():
        raise ValueError("malformed page token")
    return int(at), last_id


def encode_cron(tick: CronTick) -> str:
    return json.dumps(
        {"schedule": tick.schedule, "timezone": tick.timezone, "at": tick.scheduled_at_ms}
    )


def decode_cron(raw: str | None) -> CronTick | None:
    if not raw:
        return None
    value = json.loads(raw)
    return CronTick(value["schedule"], value["timezone"], int(value["at"]))
