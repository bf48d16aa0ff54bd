"""Wire messages to the SDK's models and back."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from tether import _json
from tether._errors import InvalidArgumentError
from tether._models import CronTick, ErrorInfo, Event, HistoryEntry, Run, RunStatus, StepInfo
from tether.v1 import common_pb2, run_service_pb2, worker_service_pb2

EventLike = Event | Mapping[str, Any]

RUN_STATUS = {
    common_pb2.RUN_STATUS_QUEUED: RunStatus.QUEUED,
    common_pb2.RUN_STATUS_RUNNING: RunStatus.RUNNING,
    common_pb2.RUN_STATUS_SLEEPING: RunStatus.SLEEPING,
    common_pb2.RUN_STATUS_WAITING: RunStatus.WAITING,
    common_pb2.RUN_STATUS_COMPLETED: RunStatus.COMPLETED,
    common_pb2.RUN_STATUS_FAILED: RunStatus.FAILED,
    common_pb2.RUN_STATUS_CANCELLED: RunStatus.CANCELLED,
}
RUN_STATUS_TO_PB = {v: k for k, v in RUN_STATUS.items()}

STEP_KINDS = {
    common_pb2.STEP_KIND_RUN: "run",
    common_pb2.STEP_KIND_SLEEP: "sleep",
    common_pb2.STEP_KIND_WAIT_FOR_EVENT: "wait_for_event",
    common_pb2.STEP_KIND_INVOKE: "invoke",
    common_pb2.STEP_KIND_SEND_EVENT: "send_event",
}
STEP_STATUSES = {
    run_service_pb2.STEP_STATUS_COMPLETED: "completed",
    run_service_pb2.STEP_STATUS_FAILED: "failed",
    run_service_pb2.STEP_STATUS_RETRYING: "retrying",
    run_service_pb2.STEP_STATUS_PENDING: "pending",
}
HISTORY_KINDS = {
    run_service_pb2.HISTORY_KIND_EXECUTION_STARTED: "execution.started",
    run_service_pb2.HISTORY_KIND_EXECUTION_LOST: "execution.lost",
    run_service_pb2.HISTORY_KIND_STEP_FAILED: "step.failed",
    run_service_pb2.HISTORY_KIND_SLEEP_STARTED: "sleep.started",
    run_service_pb2.HISTORY_KIND_SLEEP_ENDED: "sleep.ended",
    run_service_pb2.HISTORY_KIND_RUN_RETRY_SCHEDULED: "run.retry_scheduled",
    run_service_pb2.HISTORY_KIND_RUN_COMPLETED: "run.completed",
    run_service_pb2.HISTORY_KIND_RUN_FAILED: "run.failed",
    run_service_pb2.HISTORY_KIND_RUN_CANCELLED: "run.cancelled",
    run_service_pb2.HISTORY_KIND_NON_DETERMINISM: "non_determinism",
    run_service_pb2.HISTORY_KIND_RUN_REPLAYED: "run.replayed",
    run_service_pb2.HISTORY_KIND_WAIT_STARTED: "wait.started",
    run_service_pb2.HISTORY_KIND_WAIT_ENDED: "wait.ended",
    run_service_pb2.HISTORY_KIND_INVOKE_STARTED: "invoke.started",
    run_service_pb2.HISTORY_KIND_INVOKE_ENDED: "invoke.ended",
}


def timestamp(ms: int) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC) if ms else None


def event_message(event: EventLike, index: int = 0) -> common_pb2.Event:
    """An event to send; raises InvalidArgumentError naming what is wrong."""
    if isinstance(event, Event):
        name, data, event_id, user, ts = event.name, event.data, event.id, event.user, event.ts
    elif isinstance(event, Mapping):
        unknown = set(event) - {"name", "data", "id", "user", "ts"}
        if unknown:
            raise InvalidArgumentError(
                f"event {index}: unknown field(s) {sorted(unknown)}; "
                "an event has name, data, id, user and ts"
            )
        name = event.get("name", "")
        data = event.get("data", {})
        event_id = event.get("id", "")
        user = event.get("user")
        ts = event.get("ts", 0)
    else:
        raise InvalidArgumentError(
            f"event {index}: send an Event or a dict like {{'name': ..., 'data': {{...}}}}, "
            f"not {type(event).__name__}"
        )
    if not isinstance(data, Mapping):
        raise InvalidArgumentError(
            f"event {index} ({name!r}): data must be a dict (a JSON object), "
            f"not {type(data).__name__}"
        )
    try:
        data_bytes = _json.dumps(dict(data))
        user_bytes = _json.dumps(dict(user)) if user else b""
    except _json.NotSerializableError as problem:
        raise InvalidArgumentError(
            f"event {index} ({name!r}) is not JSON-serializable: {problem}"
        ) from None
    return common_pb2.Event(
        id=str(event_id or ""),
        name=str(name or ""),
        data=data_bytes,
        user=user_bytes,
        ts_ms=int(ts or 0),
    )


def error(message: common_pb2.ErrorInfo, present: bool) -> ErrorInfo | None:
    if not present:
        return None
    return ErrorInfo(message.name, message.message, message.stack)


def run(message: run_service_pb2.Run) -> Run:
    created = timestamp(message.created_at_ms)
    assert created is not None
    return Run(
        id=message.id,
        app_id=message.app_id,
        function_id=message.function_id,
        status=RUN_STATUS.get(message.status, RunStatus.QUEUED),
        event_id=message.event_id,
        attempt=message.attempt,
        created_at=created,
        started_at=timestamp(message.started_at_ms),
        ended_at=timestamp(message.ended_at_ms),
        output=_json.loads(message.output) if message.output else None,
        error=error(message.error, message.HasField("error")),
        replay_of=message.replay_of,
        trace_id=message.trace_id,
        parent_run_id=message.parent_run_id,
    )


def run_detail(response: run_service_pb2.GetRunResponse) -> Run:
    summary = run(response.run)
    steps = [
        StepInfo(
            id=s.name,
            hashed_id=s.step_id,
            kind=STEP_KINDS.get(s.kind, "run"),
            status=STEP_STATUSES.get(s.status, "completed"),
            output=_json.loads(s.output) if s.output else None,
            error=error(s.error, s.HasField("error")),
            attempts=s.attempts,
            started_at=timestamp(s.started_at_ms),
            ended_at=timestamp(s.ended_at_ms),
            child_run_id=s.child_run_id,
        )
        for s in response.steps
    ]
    history = [
        HistoryEntry(
            at=timestamp(h.ts_ms) or summary.created_at,
            kind=HISTORY_KINDS.get(h.kind, "unknown"),
            step_id=h.step_name,
            attempt=h.attempt,
            error=error(h.error, h.HasField("error")),
            until=timestamp(h.until_ms),
            message=h.message,
            started_at=timestamp(h.started_at_ms),
        )
        for h in response.history
    ]
    events = [event_from_message(e) for e in response.events]
    return Run(
        **{
            f: getattr(summary, f)
            for f in summary.__dataclass_fields__
            if f not in ("steps", "history", "events")
        },
        steps=steps,
        history=history,
        events=events,
    )


def cron_from_message(message: worker_service_pb2.CronTick) -> CronTick:
    return CronTick(
        schedule=message.schedule,
        timezone=message.timezone,
        scheduled_at=dt.datetime.fromtimestamp(message.scheduled_at_ms / 1000, dt.UTC),
    )


def event_from_message(message: common_pb2.Event) -> Event:
    user = _json.loads(message.user) if message.user else None
    return Event(
        name=message.name,
        data=_json.loads(message.data) or {},
        id=message.id,
        user=user if isinstance(user, dict) else None,
        ts=message.ts_ms,
    )
