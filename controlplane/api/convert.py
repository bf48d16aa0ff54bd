"""Translation between wire messages (tether.v1) and engine models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from controlplane.engine.settings import Limits
from controlplane.model import (
    DEFAULT_RETRIES,
    Batching,
    CancelOn,
    CatchUp,
    Concurrency,
    ConcurrencyScope,
    CronTrigger,
    Debounce,
    ErrorData,
    EventInput,
    EventTrigger,
    Execution,
    FunctionInfo,
    FunctionSpec,
    HeldExecution,
    HistoryEntry,
    HistoryKind,
    NonDeterminism,
    Outcome,
    OutcomeBody,
    ParentClose,
    PauseMode,
    PlannedEventWait,
    PlannedInvoke,
    PlannedSleep,
    PlannedWait,
    RateLimit,
    RunCompleted,
    RunFailed,
    RunStatus,
    RunSummary,
    Singleton,
    SingletonMode,
    SkippedRun,
    StepCompleted,
    StepFailed,
    StepKind,
    StepRecord,
    StepStatus,
    StoredEvent,
    Suspended,
    Throttle,
    Timeouts,
    Trigger,
    WorkerHello,
)
from controlplane.model.errors import InvalidArgument, ProtocolError
from tether.v1 import common_pb2 as common
from tether.v1 import event_service_pb2 as es
from tether.v1 import run_service_pb2 as rs
from tether.v1 import worker_service_pb2 as ws

T = TypeVar("T")

RUN_STATUS_TO_PB = {
    RunStatus.QUEUED: common.RUN_STATUS_QUEUED,
    RunStatus.RUNNING: common.RUN_STATUS_RUNNING,
    RunStatus.SLEEPING: common.RUN_STATUS_SLEEPING,
    RunStatus.WAITING: common.RUN_STATUS_WAITING,
    RunStatus.COMPLETED: common.RUN_STATUS_COMPLETED,
    RunStatus.FAILED: common.RUN_STATUS_FAILED,
    RunStatus.CANCELLED: common.RUN_STATUS_CANCELLED,
}
RUN_STATUS_FROM_PB = {v: k for k, v in RUN_STATUS_TO_PB.items()}

STEP_KIND_TO_PB = {
    StepKind.RUN: common.STEP_KIND_RUN,
    StepKind.SLEEP: common.STEP_KIND_SLEEP,
    StepKind.WAIT_FOR_EVENT: common.STEP_KIND_WAIT_FOR_EVENT,
    StepKind.INVOKE: common.STEP_KIND_INVOKE,
    StepKind.SEND_EVENT: common.STEP_KIND_SEND_EVENT,
}
STEP_KIND_FROM_PB = {v: k for k, v in STEP_KIND_TO_PB.items()}

STEP_STATUS_TO_PB = {
    StepStatus.COMPLETED: rs.STEP_STATUS_COMPLETED,
    StepStatus.FAILED: rs.STEP_STATUS_FAILED,
    StepStatus.RETRYING: rs.STEP_STATUS_RETRYING,
    StepStatus.PENDING: rs.STEP_STATUS_PENDING,
}

# The wire enum names each kind as HISTORY_KIND_<member name>; a kind the
# contract lacks fails here, at import.
HISTORY_KIND_TO_PB = {
    kind: rs.HistoryKind.Value(f"HISTORY_KIND_{kind.name}") for kind in HistoryKind
}

CATCH_UP_TO_PB = {
    CatchUp.ONE: common.CRON_CATCH_UP_ONE,
    CatchUp.NONE: common.CRON_CATCH_UP_NONE,
    CatchUp.ALL: common.CRON_CATCH_UP_ALL,
}
CATCH_UP_FROM_PB = {v: k for k, v in CATCH_UP_TO_PB.items()} | {
    common.CRON_CATCH_UP_UNSPECIFIED: CatchUp.ONE
}

SCOPE_TO_PB = {
    ConcurrencyScope.FUNCTION: common.CONCURRENCY_SCOPE_FUNCTION,
    ConcurrencyScope.APP: common.CONCURRENCY_SCOPE_APP,
    ConcurrencyScope.GLOBAL: common.CONCURRENCY_SCOPE_GLOBAL,
}
SCOPE_FROM_PB = {v: k for k, v in SCOPE_TO_PB.items()} | {
    common.CONCURRENCY_SCOPE_UNSPECIFIED: ConcurrencyScope.FUNCTION
}

SINGLETON_MODE_TO_PB = {
    SingletonMode.SKIP: common.SINGLETON_MODE_SKIP,
    SingletonMode.CANCEL: common.SINGLETON_MODE_CANCEL,
}
SINGLETON_MODE_FROM_PB = {v: k for k, v in SINGLETON_MODE_TO_PB.items()} | {
    common.SINGLETON_MODE_UNSPECIFIED: SingletonMode.SKIP
}

PAUSE_MODE_TO_PB = {
    PauseMode.HOLD: rs.PAUSE_MODE_HOLD,
    PauseMode.SKIP: rs.PAUSE_MODE_SKIP,
}
PAUSE_MODE_FROM_PB = {v: k for k, v in PAUSE_MODE_TO_PB.items()} | {
    rs.PAUSE_MODE_UNSPECIFIED: PauseMode.HOLD
}

REJECT_CODES = {
    "unsupported_protocol": ws.REJECT_CODE_UNSUPPORTED_PROTOCOL,
    "invalid_hello": ws.REJECT_CODE_INVALID_HELLO,
    "duplicate_function": ws.REJECT_CODE_DUPLICATE_FUNCTION,
    "invalid_function": ws.REJECT_CODE_INVALID_FUNCTION,
    "shutting_down": ws.REJECT_CODE_SHUTTING_DOWN,
}


# -- inbound ---------------------------------------------------------------------


def event_input(event: common.Event) -> EventInput:
    return EventInput(
        id=event.id, name=event.name, data=event.data, user=event.user, ts_ms=event.ts_ms
    )


def error_data(error: common.ErrorInfo) -> ErrorData:
    return ErrorData(error.name, error.message, error.stack)


def function_spec(app_id: str, definition: common.FunctionDefinition) -> FunctionSpec:
    triggers: list[Trigger] = []
    for trigger in definition.triggers:
        kind = trigger.WhichOneof("kind")
        if kind == "event":
            triggers.append(EventTrigger(trigger.event.name, trigger.event.if_expression))
        elif kind == "cron":
            cron = trigger.cron
            catch_up = CATCH_UP_FROM_PB.get(cron.catch_up)
            if catch_up is None:
                raise InvalidArgument(
                    f"function {definition.id!r}: unknown cron catch_up {cron.catch_up}"
                )
            triggers.append(CronTrigger(cron.schedule, cron.timezone, catch_up))
        else:
            raise InvalidArgument(f"function {definition.id!r}: a trigger has no kind")
    d = definition
    return FunctionSpec(
        app_id=app_id,
        id=definition.id,
        name=definition.name or definition.id,
        triggers=tuple(triggers),
        retries=definition.retries if definition.HasField("retries") else DEFAULT_RETRIES,
        cancel_on=tuple(
            CancelOn(c.event, c.match, c.if_expression, c.timeout_ms) for c in definition.cancel_on
        ),
        idempotency=definition.idempotency,
        timeouts=Timeouts(definition.timeouts.start_ms, definition.timeouts.finish_ms),
        concurrency=tuple(
            Concurrency(c.limit, c.key, _known(SCOPE_FROM_PB, c.scope, d.id, "concurrency scope"))
            for c in d.concurrency
        ),
        throttle=(
            Throttle(d.throttle.limit, d.throttle.period_ms, d.throttle.burst or 1, d.throttle.key)
            if d.HasField("throttle")
            else None
        ),
        rate_limit=(
            RateLimit(d.rate_limit.limit, d.rate_limit.period_ms, d.rate_limit.key)
            if d.HasField("rate_limit")
            else None
        ),
        debounce=(
            Debounce(d.debounce.period_ms, d.debounce.key, d.debounce.timeout_ms)
            if d.HasField("debounce")
            else None
        ),
        priority=d.priority.run if d.HasField("priority") else "",
        batching=(
            Batching(d.batching.max_size, d.batching.timeout_ms, d.batching.key)
            if d.HasField("batching")
            else None
        ),
        singleton=(
            Singleton(
                d.singleton.key,
                _known(SINGLETON_MODE_FROM_PB, d.singleton.mode, d.id, "singleton mode"),
            )
            if d.HasField("singleton")
            else None
        ),
        retention_ms=d.retention_ms,
    )


def _known(table: Mapping[Any, T], value: int, function_id: str, what: str) -> T:
    if value not in table:
        raise InvalidArgument(f"function {function_id!r}: unknown {what} {value}")
    return table[value]


def worker_hello(hello: ws.Hello) -> WorkerHello:
    return WorkerHello(
        protocol_version=hello.protocol_version,
        app_id=hello.app_id,
        instance_id=hello.instance_id,
        sdk_language=hello.sdk_language,
        sdk_version=hello.sdk_version,
        capacity=hello.capacity,
        functions=[function_spec(hello.app_id, f) for f in hello.functions],
        held=tuple(HeldExecution(h.execution_id, h.run_id) for h in hello.held),
    )


def outcome(message: ws.Outcome) -> Outcome:
    kind = message.WhichOneof("kind")
    body: OutcomeBody
    if kind == "step_completed":
        m = message.step_completed
        body = StepCompleted(
            step_id=m.step_id,
            name=m.name,
            kind=STEP_KIND_FROM_PB.get(m.kind, StepKind.RUN),
            output=m.output or b"null",
            started_at_ms=m.started_at_ms,
            ended_at_ms=m.ended_at_ms,
        )
    elif kind == "step_failed":
        f = message.step_failed
        body = StepFailed(
            step_id=f.step_id,
            name=f.name,
            kind=STEP_KIND_FROM_PB.get(f.kind, StepKind.RUN),
            error=error_data(f.error),
            retriable=f.retriable,
            retry_delay_ms=max(0, f.retry_delay_ms),
            started_at_ms=f.started_at_ms,
            ended_at_ms=f.ended_at_ms,
        )
    elif kind == "suspended":
        body = Suspended(waits=[planned_wait(w, message.seq) for w in message.suspended.waits])
    elif kind == "run_completed":
        body = RunCompleted(output=message.run_completed.output or b"null")
    elif kind == "run_failed":
        r = message.run_failed
        body = RunFailed(
            error=error_data(r.error),
            retriable=r.retriable,
            retry_delay_ms=max(0, r.retry_delay_ms),
        )
    elif kind == "non_determinism":
        n = message.non_determinism
        body = NonDeterminism(n.message, list(n.new_steps), list(n.unreached_step_ids))
    else:
        raise ProtocolError(
            f"outcome seq {message.seq} has no kind: set one of step_completed, step_failed, "
            "suspended, run_completed, run_failed or non_determinism"
        )
    return Outcome(message.seq, message.execution_id, message.run_id, body)


def planned_wait(wait: ws.PlannedWait, seq: int) -> PlannedWait:
    kind = wait.WhichOneof("kind")
    if kind == "sleep":
        return PlannedSleep(wait.step_id, wait.name, wait.sleep.until_ms, wait.started_at_ms)
    if kind == "wait_for_event":
        w = wait.wait_for_event
        return PlannedEventWait(
            wait.step_id,
            wait.name,
            w.event,
            w.match,
            w.if_expression,
            w.timeout_until_ms,
            wait.started_at_ms,
        )
    if kind == "invoke":
        i = wait.invoke
        return PlannedInvoke(
            wait.step_id,
            wait.name,
            i.app_id,
            i.function_id,
            i.data,
            i.timeout_until_ms,
            wait.started_at_ms,
            ParentClose.ABANDON
            if i.parent_close == ws.PARENT_CLOSE_ABANDON
            else ParentClose.CANCEL,
        )
    raise ProtocolError(
        f"outcome seq {seq}: planned wait {wait.name!r} has no kind: set one of sleep, "
        "wait_for_event or invoke"
    )


# -- outbound --------------------------------------------------------------------


def error_info(error: ErrorData | None) -> common.ErrorInfo | None:
    if error is None:
        return None
    return common.ErrorInfo(name=error.name, message=error.message, stack=error.stack)


def event_message(event: StoredEvent) -> common.Event:
    return common.Event(
        id=event.id, name=event.name, data=event.data, user=event.user, ts_ms=event.ts_ms
    )


def execute(execution: Execution) -> ws.Execute:
    message = ws.Execute(
        execution_id=execution.execution_id,
        run_id=execution.run_id,
        function_id=execution.function_id,
        attempt=execution.attempt,
        events=[event_message(e) for e in execution.events],
        step_attempts=execution.step_attempts,
        step_not_before_ms=execution.step_not_before,
        trace=common.TraceContext(traceparent=execution.traceparent),
        lease_deadline_ms=execution.lease_deadline_ms,
        server_time_ms=execution.server_time_ms,
    )
    if execution.cron is not None:
        message.cron.CopyFrom(
            ws.CronTick(
                schedule=execution.cron.schedule,
                timezone=execution.cron.timezone,
                scheduled_at_ms=execution.cron.scheduled_at_ms,
            )
        )
    for step in execution.steps:
        if step.error is not None:
            message.steps.add(step_id=step.step_id, error=error_info(step.error))
        else:
            message.steps.add(step_id=step.step_id, output=step.output or b"null")
    return message


def limits(value: Limits) -> common.Limits:
    return common.Limits(
        max_event_bytes=value.max_event_bytes,
        max_step_output_bytes=value.max_step_output_bytes,
        max_run_state_bytes=value.max_run_state_bytes,
        max_steps_per_run=value.max_steps_per_run,
        max_frame_bytes=value.max_frame_bytes,
    )


def run_message(run: RunSummary) -> rs.Run:
    return rs.Run(
        id=run.id,
        app_id=run.app_id,
        function_id=run.function_id,
        status=RUN_STATUS_TO_PB[run.status],
        event_id=run.event_id,
        attempt=run.attempt,
        created_at_ms=run.created_at_ms,
        started_at_ms=run.started_at_ms,
        ended_at_ms=run.ended_at_ms,
        output=run.output or b"",
        error=error_info(run.error),
        replay_of=run.replay_of,
        trace_id=run.trace_id,
        parent_run_id=run.parent_run_id,
    )


def step_record(step: StepRecord) -> rs.StepRecord:
    return rs.StepRecord(
        step_id=step.step_id,
        name=step.name,
        kind=STEP_KIND_TO_PB[step.kind],
        status=STEP_STATUS_TO_PB[step.status],
        output=step.output or b"",
        error=error_info(step.error),
        attempts=step.attempts,
        started_at_ms=step.started_at_ms,
        ended_at_ms=step.ended_at_ms,
        child_run_id=step.child_run_id,
        waiting_for=step.waiting_for,
    )


def history_entry(entry: HistoryEntry) -> rs.HistoryEntry:
    return rs.HistoryEntry(
        ts_ms=entry.ts_ms,
        kind=HISTORY_KIND_TO_PB[entry.kind],
        step_id=entry.step_id,
        step_name=entry.step_name,
        attempt=entry.attempt,
        error=error_info(entry.error),
        until_ms=entry.until_ms,
        message=entry.message,
        execution_id=entry.execution_id,
        started_at_ms=entry.started_at_ms,
    )


def skipped_run(skip: SkippedRun) -> es.SkippedRun:
    return es.SkippedRun(
        app_id=skip.app_id,
        function_id=skip.function_id,
        reason=skip.reason,
        existing_run_id=skip.existing_run_id,
    )


def function_definition(spec: FunctionSpec) -> common.FunctionDefinition:
    definition = common.FunctionDefinition(
        id=spec.id,
        name=spec.name,
        retries=spec.retries,
        cancel_on=[
            common.CancelOn(
                event=c.event, match=c.match, if_expression=c.if_expression, timeout_ms=c.timeout_ms
            )
            for c in spec.cancel_on
        ],
        idempotency=spec.idempotency,
        timeouts=common.Timeouts(
            start_ms=spec.timeouts.start_ms, finish_ms=spec.timeouts.finish_ms
        ),
        concurrency=[
            common.Concurrency(limit=c.limit, key=c.key, scope=SCOPE_TO_PB[c.scope])
            for c in spec.concurrency
        ],
    )
    if spec.throttle is not None:
        t = spec.throttle
        definition.throttle.CopyFrom(
            common.Throttle(limit=t.limit, period_ms=t.period_ms, burst=t.burst, key=t.key)
        )
    if spec.rate_limit is not None:
        r = spec.rate_limit
        definition.rate_limit.CopyFrom(
            common.RateLimit(limit=r.limit, period_ms=r.period_ms, key=r.key)
        )
    if spec.debounce is not None:
        b = spec.debounce
        definition.debounce.CopyFrom(
            common.Debounce(period_ms=b.period_ms, key=b.key, timeout_ms=b.timeout_ms)
        )
    if spec.priority:
        definition.priority.CopyFrom(common.Priority(run=spec.priority))
    if spec.batching is not None:
        g = spec.batching
        definition.batching.CopyFrom(
            common.Batching(max_size=g.max_size, timeout_ms=g.timeout_ms, key=g.key)
        )
    if spec.singleton is not None:
        definition.singleton.CopyFrom(
            common.Singleton(key=spec.singleton.key, mode=SINGLETON_MODE_TO_PB[spec.singleton.mode])
        )
    definition.retention_ms = spec.retention_ms
    for trigger in spec.triggers:
        if isinstance(trigger, EventTrigger):
            definition.triggers.add(
                event=common.EventTrigger(name=trigger.name, if_expression=trigger.if_expression)
            )
        else:
            definition.triggers.add(
                cron=common.CronTrigger(
                    schedule=trigger.schedule,
                    timezone=trigger.timezone,
                    catch_up=CATCH_UP_TO_PB[trigger.catch_up],
                )
            )
    return definition


def function_info(info: FunctionInfo) -> rs.FunctionInfo:
    return rs.FunctionInfo(
        app_id=info.spec.app_id,
        definition=function_definition(info.spec),
        connected_workers=info.connected_workers,
        registered_at_ms=info.registered_at_ms,
        updated_at_ms=info.updated_at_ms,
        paused=PAUSE_MODE_TO_PB[info.paused] if info.paused else rs.PAUSE_MODE_UNSPECIFIED,
        next_fire_ms=list(info.next_fire_ms),
    )


def stored_event(event: StoredEvent) -> rs.StoredEvent:
    return rs.StoredEvent(event=event_message(event), received_at_ms=event.received_at_ms)
