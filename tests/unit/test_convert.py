"""Wire messages (tether.v1) to engine models and back."""

from __future__ import annotations

import pytest

from controlplane.api import convert
from controlplane.model import (
    CronTrigger,
    ErrorData,
    EventInput,
    EventTrigger,
    Execution,
    FunctionSpec,
    HistoryEntry,
    HistoryKind,
    MemoizedStep,
    NonDeterminism,
    Outcome,
    PlannedSleep,
    RunCompleted,
    RunFailed,
    RunStatus,
    RunSummary,
    StepCompleted,
    StepFailed,
    StepKind,
    StepRecord,
    StepStatus,
    StoredEvent,
    Suspended,
    WorkerHello,
)
from controlplane.model.errors import InvalidArgument, ProtocolError
from tests.unit._match import exactly
from tether import _convert as sdk_convert
from tether.v1 import common_pb2 as common
from tether.v1 import run_service_pb2 as rs
from tether.v1 import worker_service_pb2 as ws

ERROR = common.ErrorInfo(name="ValueError", message="card declined", stack="Traceback ...")
ERROR_DATA = ErrorData("ValueError", "card declined", "Traceback ...")


def envelope(**kind: object) -> ws.Outcome:
    return ws.Outcome(seq=7, execution_id="ex-1", run_id="run-1", **kind)  # type: ignore[arg-type]


# -- outcomes ---------------------------------------------------------------------------


def test_step_completed() -> None:
    message = envelope(
        step_completed=ws.StepCompleted(
            step_id="h1",
            name="fetch",
            kind=common.STEP_KIND_RUN,
            output=b'{"a":1}',
            started_at_ms=100,
            ended_at_ms=150,
        )
    )
    assert convert.outcome(message) == Outcome(
        7, "ex-1", "run-1", StepCompleted("h1", "fetch", StepKind.RUN, b'{"a":1}', 100, 150)
    )


def test_step_completed_without_output_is_null_and_unknown_kind_is_run() -> None:
    message = envelope(step_completed=ws.StepCompleted(step_id="h1", name="fetch"))
    body = convert.outcome(message).body
    assert isinstance(body, StepCompleted)
    assert body.output == b"null"
    assert body.kind == StepKind.RUN


def test_step_failed() -> None:
    message = envelope(
        step_failed=ws.StepFailed(
            step_id="h2",
            name="charge",
            kind=common.STEP_KIND_RUN,
            error=ERROR,
            retriable=True,
            retry_delay_ms=30_000,
            started_at_ms=200,
            ended_at_ms=260,
        )
    )
    assert convert.outcome(message) == Outcome(
        7,
        "ex-1",
        "run-1",
        StepFailed("h2", "charge", StepKind.RUN, ERROR_DATA, True, 30_000, 200, 260),
    )


def test_step_failed_negative_retry_delay_is_zero() -> None:
    message = envelope(
        step_failed=ws.StepFailed(step_id="h2", name="charge", error=ERROR, retry_delay_ms=-5)
    )
    body = convert.outcome(message).body
    assert isinstance(body, StepFailed)
    assert body.retry_delay_ms == 0
    assert body.retriable is False


def test_suspended_with_sleeps() -> None:
    message = envelope(
        suspended=ws.Suspended(
            waits=[
                ws.PlannedWait(step_id="h3", name="wait-1d", sleep=ws.Sleep(until_ms=86_400_000)),
                ws.PlannedWait(step_id="h4", name="wait-1h", sleep=ws.Sleep(until_ms=3_600_000)),
            ]
        )
    )
    assert convert.outcome(message) == Outcome(
        7,
        "ex-1",
        "run-1",
        Suspended(
            [
                PlannedSleep("h3", "wait-1d", 86_400_000),
                PlannedSleep("h4", "wait-1h", 3_600_000),
            ]
        ),
    )


def test_run_completed() -> None:
    message = envelope(run_completed=ws.RunCompleted(output=b'{"ok":true}'))
    assert convert.outcome(message) == Outcome(7, "ex-1", "run-1", RunCompleted(b'{"ok":true}'))
    empty = envelope(run_completed=ws.RunCompleted())
    assert convert.outcome(empty).body == RunCompleted(b"null")


def test_run_failed() -> None:
    message = envelope(run_failed=ws.RunFailed(error=ERROR, retriable=True, retry_delay_ms=1_000))
    assert convert.outcome(message) == Outcome(
        7, "ex-1", "run-1", RunFailed(ERROR_DATA, True, 1_000)
    )
    negative = envelope(run_failed=ws.RunFailed(error=ERROR, retry_delay_ms=-1))
    assert convert.outcome(negative).body == RunFailed(ERROR_DATA, False, 0)


def test_non_determinism() -> None:
    message = envelope(
        non_determinism=ws.NonDeterminism(
            message="the code changed", new_steps=["b"], unreached_step_ids=["h1", "h2"]
        )
    )
    assert convert.outcome(message) == Outcome(
        7, "ex-1", "run-1", NonDeterminism("the code changed", ["b"], ["h1", "h2"])
    )


def test_outcome_without_a_kind_is_a_protocol_error() -> None:
    with pytest.raises(
        ProtocolError,
        match=exactly(
            "outcome seq 7 has no kind: set one of step_completed, step_failed, suspended, "
            "run_completed, run_failed or non_determinism"
        ),
    ):
        convert.outcome(envelope())


def test_planned_wait_without_a_kind_is_a_protocol_error() -> None:
    message = envelope(suspended=ws.Suspended(waits=[ws.PlannedWait(step_id="h", name="pause")]))
    with pytest.raises(
        ProtocolError,
        match=exactly(
            "outcome seq 7: planned wait 'pause' has no kind: set one of sleep, "
            "wait_for_event or invoke"
        ),
    ):
        convert.outcome(message)


# -- hello and function definitions -------------------------------------------------------


def test_function_spec_from_definition() -> None:
    definition = common.FunctionDefinition(
        id="digest",
        name="Daily digest",
        retries=2,
        triggers=[
            common.Trigger(event=common.EventTrigger(name="app/x", if_expression="cond")),
            common.Trigger(cron=common.CronTrigger(schedule="0 9 * * *", timezone="UTC")),
        ],
    )
    assert convert.function_spec("shop", definition) == FunctionSpec(
        "shop",
        "digest",
        "Daily digest",
        (EventTrigger("app/x", "cond"), CronTrigger("0 9 * * *", "UTC")),
        2,
    )


def test_function_spec_defaults() -> None:
    definition = common.FunctionDefinition(
        id="flow", triggers=[common.Trigger(event=common.EventTrigger(name="app/x"))]
    )
    spec = convert.function_spec("shop", definition)
    assert spec.name == "flow"
    assert spec.retries == 4
    explicit_zero = common.FunctionDefinition(id="flow", retries=0)
    assert convert.function_spec("shop", explicit_zero).retries == 0


def test_function_spec_trigger_without_kind_is_refused() -> None:
    definition = common.FunctionDefinition(id="flow", triggers=[common.Trigger()])
    with pytest.raises(InvalidArgument, match=exactly("function 'flow': a trigger has no kind")):
        convert.function_spec("shop", definition)


def test_worker_hello() -> None:
    hello = ws.Hello(
        protocol_version=1,
        app_id="shop",
        instance_id="w-1",
        sdk_language="python",
        sdk_version="0.1.0",
        capacity=50,
        functions=[
            common.FunctionDefinition(
                id="flow", triggers=[common.Trigger(event=common.EventTrigger(name="app/x"))]
            )
        ],
    )
    assert convert.worker_hello(hello) == WorkerHello(
        protocol_version=1,
        app_id="shop",
        instance_id="w-1",
        sdk_language="python",
        sdk_version="0.1.0",
        capacity=50,
        functions=[FunctionSpec("shop", "flow", "flow", (EventTrigger("app/x"),), 4)],
    )


def test_function_definition_round_trip() -> None:
    spec = FunctionSpec(
        "shop", "digest", "Daily", (EventTrigger("app/x", "c"), CronTrigger("* * * * *", "UTC")), 0
    )
    assert convert.function_spec("shop", convert.function_definition(spec)) == spec


def test_event_input() -> None:
    message = common.Event(id="e1", name="app/x", data=b"{}", user=b'{"u":1}', ts_ms=5)
    assert convert.event_input(message) == EventInput("e1", "app/x", b"{}", b'{"u":1}', 5)


# -- execute ------------------------------------------------------------------------------


def test_execute_carries_the_run_and_its_memoized_state() -> None:
    execution = Execution(
        execution_id="ex-9",
        run_id="run-9",
        app_id="shop",
        function_id="onboarding-flow",
        attempt=2,
        events=[StoredEvent("ev-1", "app/user.signup", b'{"user_id":1}', b"", 1_000, 1_001)],
        steps=[
            MemoizedStep("h-fetch", b'{"name":"Ada"}', None),
            MemoizedStep("h-charge", None, ErrorData("ValueError", "declined", "stack")),
            MemoizedStep("h-sleep", None, None),
        ],
        step_attempts={"h-email": 3},
        step_not_before={"h-email": 45_000},
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        lease_deadline_ms=50_000,
        server_time_ms=40_000,
    )
    message = convert.execute(execution)

    assert dict(message.step_not_before_ms) == {"h-email": 45_000}
    assert message.execution_id == "ex-9"
    assert message.run_id == "run-9"
    assert message.function_id == "onboarding-flow"
    assert message.attempt == 2
    assert list(message.events) == [
        common.Event(id="ev-1", name="app/user.signup", data=b'{"user_id":1}', ts_ms=1_000)
    ]
    assert dict(message.step_attempts) == {"h-email": 3}
    assert message.trace.traceparent == execution.traceparent
    assert message.lease_deadline_ms == 50_000
    assert message.server_time_ms == 40_000

    fetch, charge, sleep = message.steps
    assert (fetch.step_id, fetch.WhichOneof("result"), fetch.output) == (
        "h-fetch",
        "output",
        b'{"name":"Ada"}',
    )
    assert (charge.step_id, charge.WhichOneof("result")) == ("h-charge", "error")
    assert charge.error == common.ErrorInfo(name="ValueError", message="declined", stack="stack")
    # A memoized step with neither output nor error is sent as JSON null.
    assert (sleep.step_id, sleep.WhichOneof("result"), sleep.output) == (
        "h-sleep",
        "output",
        b"null",
    )


def test_execute_without_steps() -> None:
    execution = Execution("ex", "run", "shop", "f", 0, [], [], {}, {}, "", 1, 1)
    message = convert.execute(execution)
    assert list(message.steps) == []
    assert list(message.events) == []


# -- outbound records -----------------------------------------------------------------------


def test_run_message() -> None:
    run = RunSummary(
        id="run-1",
        app_id="shop",
        function_id="f",
        status=RunStatus.FAILED,
        event_id="ev-1",
        attempt=3,
        created_at_ms=1,
        started_at_ms=2,
        ended_at_ms=3,
        output=None,
        error=ERROR_DATA,
        replay_of="run-0",
        trace_id="t" * 32,
    )
    message = convert.run_message(run)
    assert message.status == common.RUN_STATUS_FAILED
    assert message.output == b""
    assert message.error == ERROR
    assert (message.id, message.attempt, message.replay_of) == ("run-1", 3, "run-0")
    completed = convert.run_message(
        RunSummary("r", "a", "f", RunStatus.COMPLETED, "", 0, 1, 2, 3, b"42", None, "", "")
    )
    assert completed.output == b"42"
    assert not completed.HasField("error")


def test_step_record_and_history_entry() -> None:
    step = StepRecord("h1", "wait", StepKind.SLEEP, StepStatus.PENDING, None, None, 0, 10, 20)
    assert convert.step_record(step) == rs.StepRecord(
        step_id="h1",
        name="wait",
        kind=common.STEP_KIND_SLEEP,
        status=rs.STEP_STATUS_PENDING,
        started_at_ms=10,
        ended_at_ms=20,
    )
    entry = HistoryEntry(5, HistoryKind.STEP_FAILED, "h1", "charge", 2, ERROR_DATA, 9, "m", "ex")
    assert convert.history_entry(entry) == rs.HistoryEntry(
        ts_ms=5,
        kind=rs.HISTORY_KIND_STEP_FAILED,
        step_id="h1",
        step_name="charge",
        attempt=2,
        error=ERROR,
        until_ms=9,
        message="m",
        execution_id="ex",
    )


def test_every_engine_enum_has_a_wire_value() -> None:
    assert set(convert.RUN_STATUS_TO_PB) == set(RunStatus)
    assert set(convert.STEP_KIND_TO_PB) == set(StepKind)
    assert set(convert.STEP_STATUS_TO_PB) == set(StepStatus)
    assert set(convert.HISTORY_KIND_TO_PB) == set(HistoryKind)
    assert len(set(convert.HISTORY_KIND_TO_PB.values())) == len(HistoryKind)


def test_the_python_sdk_names_history_kinds_as_the_control_plane_does() -> None:
    # The SDK may not import the control plane, so it has its own table.
    wire = convert.HISTORY_KIND_TO_PB
    assert {pb: kind.value for kind, pb in wire.items()} == sdk_convert.HISTORY_KINDS
