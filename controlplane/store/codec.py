"""Conversions between table rows and engine models."""

from __future__ import annotations

import base64
import json
from typing import Any

from sqlalchemy import Row

from controlplane.model import (
    CronTick,
    ErrorData,
    HistoryEntry,
    HistoryKind,
    HistoryRecord,
    RunStatus,
    RunSummary,
    StepKind,
    StepRecord,
    StepStatus,
    StoredEvent,
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


def encode_cron(tick: CronTick) -> str:
    return json.dumps(
        {"schedule": tick.schedule, "timezone": tick.timezone, "at": tick.scheduled_at_ms}
    )


def decode_cron(raw: str | None) -> CronTick | None:
    if not raw:
        return None
    value = json.loads(raw)
    return CronTick(value["schedule"], value["timezone"], int(value["at"]))
