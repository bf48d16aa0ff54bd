"""The JSON API's bodies (these models are its OpenAPI schema), and their
translation from the engine's models. Payloads (event data, outputs) are JSON
values, never strings of JSON."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from controlplane.engine.registry import spec_to_json
from controlplane.engine.timeline import TimelineBar, build_timeline
from controlplane.model import (
    CronTrigger,
    ErrorData,
    EventDetail,
    EventTrigger,
    FunctionInfo,
    HistoryEntry,
    RunDetail,
    RunSummary,
    SendResult,
    SkippedRun,
    StepRecord,
    StoredEvent,
)
from controlplane.model.access import ApiKey, Caller

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def _no_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("contains a NUL character (U+0000), which text cannot hold")
    return text


# A string a client sends that is stored as text.
Text = Annotated[str, AfterValidator(_no_nul)]


def _json(raw: bytes | None) -> Any:
    return json.loads(raw) if raw else None


class ErrorOut(BaseModel):
    name: str
    message: str
    stack: str = ""


def error_out(error: ErrorData | None) -> ErrorOut | None:
    if error is None:
        return None
    return ErrorOut(name=error.name, message=error.message, stack=error.stack)


class Problem(BaseModel):
    """Every error response: what went wrong, in a sentence that names the limit."""

    error: str = Field(description="not_found, invalid_argument, limit_exceeded, …")
    message: str


# -- events -------------------------------------------------------------------------


class EventIn(BaseModel):
    name: Text = Field(description="Names look like app/resource.action.")
    data: dict[str, Any] = Field(default_factory=dict)
    id: Text = Field(default="", description="Deduplication key (24 h); empty: one is assigned.")
    user: dict[str, Any] | None = None
    ts_ms: int = Field(default=0, le=INT64_MAX, description="When it happened; 0: now.")


class SkippedRunOut(BaseModel):
    app_id: str
    function_id: str
    reason: str
    existing_run_id: str = ""


def skipped_out(skip: SkippedRun) -> SkippedRunOut:
    return SkippedRunOut(
        app_id=skip.app_id,
        function_id=skip.function_id,
        reason=skip.reason,
        existing_run_id=skip.existing_run_id,
    )


class SendResultOut(BaseModel):
    event_id: str
    duplicate: bool
    run_ids: list[str]
    skipped: list[SkippedRunOut]
    resumed_run_ids: list[str]
    cancelled_run_ids: list[str]


class SendEventsOut(BaseModel):
    results: list[SendResultOut]


def send_result_out(result: SendResult) -> SendResultOut:
    return SendResultOut(
        event_id=result.event_id,
        duplicate=result.duplicate,
        run_ids=result.run_ids,
        skipped=[skipped_out(s) for s in result.skipped],
        resumed_run_ids=result.resumed_run_ids,
        cancelled_run_ids=result.cancelled_run_ids,
    )


class EventOut(BaseModel):
    id: str
    name: str
    data: Any
    user: Any
    ts_ms: int
    received_at_ms: int


def event_out(event: StoredEvent) -> EventOut:
    return EventOut(
        id=event.id,
        name=event.name,
        data=_json(event.data),
        user=_json(event.user),
        ts_ms=event.ts_ms,
        received_at_ms=event.received_at_ms,
    )


class EventPage(BaseModel):
    events: list[EventOut]
    next_page_token: str = Field(default="", description="Pass as page_token for the next page.")


# -- runs ---------------------------------------------------------------------------


RunStatusName = Literal[
    "queued", "running", "sleeping", "waiting", "completed", "failed", "cancelled"
]


class RunOut(BaseModel):
    id: str
    app_id: str
    function_id: str
    status: RunStatusName
    event_id: str
    attempt: int
    created_at_ms: int
    started_at_ms: int
    ended_at_ms: int
    output: Any = None
    error: ErrorOut | None = None
    replay_of: str = ""
    trace_id: str
    parent_run_id: str = ""


def run_out(run: RunSummary) -> RunOut:
    return RunOut(
        id=run.id,
        app_id=run.app_id,
        function_id=run.function_id,
        status=run.status.value,
        event_id=run.event_id,
        attempt=run.attempt,
        created_at_ms=run.created_at_ms,
        started_at_ms=run.started_at_ms,
        ended_at_ms=run.ended_at_ms,
        output=_json(run.output),
        error=error_out(run.error),
        replay_of=run.replay_of,
        trace_id=run.trace_id,
        parent_run_id=run.parent_run_id,
    )


class RunPage(BaseModel):
    runs: list[RunOut]
    next_page_token: str = Field(default="", description="Pass as page_token for the next page.")


class StepOut(BaseModel):
    step_id: str = Field(description="The hashed id (what the wire carries).")
    name: str = Field(description="The id as written in code.")
    kind: str
    status: str
    output: Any = None
    error: ErrorOut | None = None
    attempts: int
    started_at_ms: int
    ended_at_ms: int
    child_run_id: str = ""
    waiting_for: str = ""


def step_out(step: StepRecord) -> StepOut:
    return StepOut(
        step_id=step.step_id,
        name=step.name,
        kind=step.kind.value,
        status=step.status.value,
        output=_json(step.output),
        error=error_out(step.error),
        attempts=step.attempts,
        started_at_ms=step.started_at_ms,
        ended_at_ms=step.ended_at_ms,
        child_run_id=step.child_run_id,
        waiting_for=step.waiting_for,
    )


class HistoryOut(BaseModel):
    ts_ms: int
    kind: str
    step_id: str = ""
    step_name: str = ""
    attempt: int = 0
    error: ErrorOut | None = None
    until_ms: int = 0
    message: str = ""
    execution_id: str = ""
    started_at_ms: int = 0


def history_out(entry: HistoryEntry) -> HistoryOut:
    return HistoryOut(
        ts_ms=entry.ts_ms,
        kind=entry.kind.value,
        step_id=entry.step_id,
        step_name=entry.step_name,
        attempt=entry.attempt,
        error=error_out(entry.error),
        until_ms=entry.until_ms,
        message=entry.message,
        execution_id=entry.execution_id,
        started_at_ms=entry.started_at_ms,
    )


class TimelineBarOut(BaseModel):
    step_id: str
    name: str
    kind: Literal["run", "sleep", "wait_for_event", "invoke", "send_event"]
    attempt: int = Field(description="0 for the first attempt.")
    status: Literal["completed", "failed", "waiting", "timed_out", "interrupted"] = Field(
        description="interrupted: the run ended during this sleep, wait or invoke."
    )
    started_at_ms: int
    ended_at_ms: int = Field(description="0 while it has not ended.")
    until_ms: int = Field(default=0, description="When a sleep or wait is planned to end.")
    error: ErrorOut | None = None
    retry_at_ms: int = Field(default=0, description="When the retry of a failed attempt is due.")


def bar_out(bar: TimelineBar) -> TimelineBarOut:
    return TimelineBarOut(
        step_id=bar.step_id,
        name=bar.name,
        kind=bar.kind.value,
        attempt=bar.attempt,
        status=bar.status.value,
        started_at_ms=bar.started_at_ms,
        ended_at_ms=bar.ended_at_ms,
        until_ms=bar.until_ms,
        error=error_out(bar.error),
        retry_at_ms=bar.retry_at_ms,
    )


class RunDetailOut(BaseModel):
    run: RunOut
    events: list[EventOut]
    steps: list[StepOut]
    history: list[HistoryOut]
    timeline: list[TimelineBarOut] = Field(
        description="A bar per step attempt, sleep, wait and invoke, in order of start."
    )


def run_detail_out(detail: RunDetail) -> RunDetailOut:
    return RunDetailOut(
        run=run_out(detail.run),
        events=[event_out(e) for e in detail.events],
        steps=[step_out(s) for s in detail.steps],
        history=[history_out(h) for h in detail.history],
        timeline=[bar_out(b) for b in build_timeline(detail)],
    )


class EventDetailOut(BaseModel):
    event: EventOut
    runs: list[RunOut] = Field(description="The runs this event started.")
    skipped: list[SkippedRunOut] = Field(description="Functions it matched that did not run.")


def event_detail_out(detail: EventDetail) -> EventDetailOut:
    return EventDetailOut(
        event=event_out(detail.event),
        runs=[run_out(r) for r in detail.runs],
        skipped=[skipped_out(s) for s in detail.skipped],
    )


class RunOne(BaseModel):
    run: RunOut


class CancelIn(BaseModel):
    reason: Text = ""


class ReplayIn(BaseModel):
    mode: Literal["from_start", "from_failed_step"] = "from_start"


class InvokeIn(BaseModel):
    data: dict[str, Any] = Field(default_factory=dict, description="The run's event data.")


class InvokeOut(BaseModel):
    run_id: str
    event_id: str


# -- functions ----------------------------------------------------------------------


class TriggerOut(BaseModel):
    type: Literal["event", "cron"]
    event: str = ""
    if_expression: str = Field(default="", description="CEL condition on the event.")
    cron: str = ""
    timezone: str = ""
    catch_up: str = ""
    next_fire_ms: int = Field(default=0, description="The next tick of a cron trigger.")


class FunctionOut(BaseModel):
    app_id: str
    id: str
    name: str
    triggers: list[TriggerOut]
    options: dict[str, Any] = Field(
        description="retries, cancel_on, idempotency, timeouts and flow control, as registered."
    )
    connected_workers: int
    paused: Literal["hold", "skip"] | None = None
    registered_at_ms: int
    updated_at_ms: int


def function_out(info: FunctionInfo) -> FunctionOut:
    spec = info.spec
    fires = iter(info.next_fire_ms)
    triggers: list[TriggerOut] = []
    for trigger in spec.triggers:
        if isinstance(trigger, EventTrigger):
            triggers.append(
                TriggerOut(type="event", event=trigger.name, if_expression=trigger.if_expression)
            )
        elif isinstance(trigger, CronTrigger):
            triggers.append(
                TriggerOut(
                    type="cron",
                    cron=trigger.schedule,
                    timezone=trigger.timezone,
                    catch_up=trigger.catch_up.value,
                    next_fire_ms=next(fires, 0),
                )
            )
    options = json.loads(spec_to_json(spec))
    for key in ("name", "triggers"):
        options.pop(key, None)
    return FunctionOut(
        app_id=spec.app_id,
        id=spec.id,
        name=spec.name,
        triggers=triggers,
        options=options,
        connected_workers=info.connected_workers,
        paused=info.paused.value if info.paused is not None else None,
        registered_at_ms=info.registered_at_ms,
        updated_at_ms=info.updated_at_ms,
    )


class FunctionList(BaseModel):
    functions: list[FunctionOut]


class FunctionOne(BaseModel):
    function: FunctionOut


class PauseIn(BaseModel):
    mode: Literal["hold", "skip"] = Field(
        default="hold", description="hold: new events queue held runs; skip: they start none."
    )


class ResumeOut(BaseModel):
    function: FunctionOut
    released: int = Field(description="Held runs released.")


# -- access -------------------------------------------------------------------------


class CallerOut(BaseModel):
    """Who the key in the request is: what the UI shows and offers."""

    environment: str
    role: Literal["send", "worker", "read", "admin"]
    #: Worker keys: the apps it may serve (empty: any).
    apps: list[str]
    #: Empty for a key given at start, or when no key is needed.
    key_id: str


def caller_out(caller: Caller) -> CallerOut:
    return CallerOut(
        environment=caller.environment,
        role=caller.role.value,
        apps=list(caller.apps),
        key_id=caller.key_id,
    )


class ApiKeyOut(BaseModel):
    id: str
    name: str
    role: Literal["send", "worker", "read", "admin"]
    apps: list[str]
    created_at_ms: int
    revoked_at_ms: int | None


def api_key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        role=key.role.value,
        apps=list(key.apps),
        created_at_ms=key.created_at_ms,
        revoked_at_ms=key.revoked_at_ms,
    )


class ApiKeyList(BaseModel):
    keys: list[ApiKeyOut]


class ApiKeyIn(BaseModel):
    name: str = Field(description="What the key is for (1 to 128 printable characters).")
    role: Literal["send", "worker", "read", "admin"]
    apps: list[str] = Field(default=[], description="Worker keys: the apps it may serve.")


class ApiKeyCreated(BaseModel):
    key: ApiKeyOut
    secret: str = Field(description="The key itself: shown in this response only, ever.")
