"""The worker protocol, frame by frame, as a worker in another language sees it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from tests.support.admin import Admin
from tests.support.clock import Clock
from tests.support.processes import ControlPlaneProcess
from tests.support.raw_worker import RawWorker, definition, hello, outcomes, payload
from tests.support.waiting import wait_until_async
from tether.v1 import common_pb2
from tether.v1 import run_service_pb2 as rs
from tether.v1 import worker_service_pb2 as ws

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")


@pytest.fixture
def control_plane(db_url: str, tmp_path: Path) -> Iterator[ControlPlaneProcess]:
    process = ControlPlaneProcess(db_url, tmp_path, heartbeat_ms=200, lease_timeout_ms=1000).start()
    yield process
    process.stop()


async def _connect(
    worker: RawWorker, *, capacity: int = 10, retries: int | None = None
) -> ws.Welcome:
    await worker.send(hello([definition("raw-fn", "raw/go", retries)], capacity=capacity))
    frame = await worker.receive()
    assert frame is not None
    assert frame.WhichOneof("frame") == "welcome", frame
    return frame.welcome


async def _execute(worker: RawWorker) -> ws.Execute:
    frame = await worker.receive_kind("dispatch")
    assert len(frame.dispatch.executions) == 1
    return frame.dispatch.executions[0]


def _completed(seq: int, execute: ws.Execute, name: str, value: object) -> ws.Outcome:
    from tether._step_ids import hash_step_id

    return ws.Outcome(
        seq=seq,
        execution_id=execute.execution_id,
        run_id=execute.run_id,
        step_completed=ws.StepCompleted(
            step_id=hash_step_id(name),
            name=name,
            kind=common_pb2.STEP_KIND_RUN,
            output=payload(value),
            started_at_ms=execute.server_time_ms,
            ended_at_ms=execute.server_time_ms + 1,
        ),
    )


def _run_completed(seq: int, execute: ws.Execute, value: object) -> ws.Outcome:
    return ws.Outcome(
        seq=seq,
        execution_id=execute.execution_id,
        run_id=execute.run_id,
        run_completed=ws.RunCompleted(output=payload(value)),
    )


async def test_welcome_announces_timings_and_limits(worker: RawWorker) -> None:
    welcome = await _connect(worker)

    assert welcome.session_id
    assert welcome.protocol_version == 1
    assert welcome.heartbeat_interval_ms == 200
    assert welcome.lease_timeout_ms == 1000
    assert welcome.limits.max_event_bytes == 512 * 1024
    assert welcome.limits.max_step_output_bytes == 4 * 1024 * 1024
    assert welcome.limits.max_run_state_bytes == 32 * 1024 * 1024
    assert welcome.limits.max_steps_per_run == 1000


@pytest.mark.parametrize(
    ("frame", "code", "reason"),
    [
        (
            hello([definition("raw-fn", "raw/go")], protocol_version=2),
            ws.REJECT_CODE_UNSUPPORTED_PROTOCOL,
            "unsupported protocol version 2; this control plane speaks version 1",
        ),
        (
            hello(
                [definition("send-email", "a/b"), definition("send-email", "c/d")], app_id="shop"
            ),
            ws.REJECT_CODE_DUPLICATE_FUNCTION,
            "duplicate function id 'send-email' in app 'shop'",
        ),
        (
            hello([definition("Send_Email", "a/b")]),
            ws.REJECT_CODE_INVALID_FUNCTION,
            "function 'Send_Email': ids are kebab-case",
        ),
        (
            hello([definition("raw-fn", "raw/go")], capacity=0),
            ws.REJECT_CODE_INVALID_HELLO,
            "capacity must be at least 1",
        ),
        (
            ws.WorkerFrame(heartbeat=ws.Heartbeat()),
            ws.REJECT_CODE_INVALID_HELLO,
            "the first frame on the stream must be Hello",
        ),
    ],
)
async def test_bad_hellos_are_rejected_with_a_reason(
    worker: RawWorker, frame: ws.WorkerFrame, code: int, reason: str
) -> None:
    await worker.send(frame)

    rejected = await worker.receive()

    assert rejected is not None
    assert rejected.WhichOneof("frame") == "rejected"
    assert rejected.rejected.code == code
    assert reason in rejected.rejected.reason
    assert await worker.receive() is None, "the stream should end after Rejected"


async def test_execute_outcomes_and_acks(worker: RawWorker, admin: Admin) -> None:
    await _connect(worker)
    [run_id] = admin.send("raw/go", {"user_id": 7})

    execute = await _execute(worker)

    assert execute.run_id == run_id
    assert execute.function_id == "raw-fn"
    assert execute.attempt == 0
    assert not execute.steps
    assert execute.events[0].name == "raw/go"
    assert execute.events[0].data == b'{"user_id": 7}'
    assert TRACEPARENT.match(execute.trace.traceparent)
    assert execute.lease_deadline_ms - execute.server_time_ms == 1000

    await worker.send(
        outcomes(_completed(1, execute, "greet", "hi"), _run_completed(2, execute, 42))
    )
    acks = await worker.receive_kind("acks")

    assert acks.acks.through_seq == 2
    assert not acks.acks.refused
    run = admin.get(run_id)
    assert run.run.status == common_pb2.RUN_STATUS_COMPLETED
    assert run.run.output == b"42"
    assert [(s.name, s.output) for s in run.steps] == [("greet", b'"hi"')]


async def test_capacity_bounds_what_a_worker_is_given(worker: RawWorker, admin: Admin) -> None:
    await _connect(worker, capacity=1)
    run_ids = [admin.send("raw/go")[0] for _ in range(3)]

    first = await _execute(worker)

    statuses = sorted(admin.status(r) for r in run_ids)
    assert statuses == [common_pb2.RUN_STATUS_QUEUED] * 2 + [common_pb2.RUN_STATUS_RUNNING]
    await worker.send(outcomes(_run_completed(1, first, None)))
    second = await _execute(worker)
    assert second.run_id != first.run_id


async def test_a_sleep_resumes_with_memoized_state(worker: RawWorker, admin: Admin) -> None:
    from tether._step_ids import hash_step_id

    await _connect(worker)
    [run_id] = admin.send("raw/go")
    first = await _execute(worker)
    until = first.server_time_ms + 150
    await worker.send(
        outcomes(
            _completed(1, first, "fetch", {"n": 1}),
            ws.Outcome(
                seq=2,
                execution_id=first.execution_id,
                run_id=run_id,
                suspended=ws.Suspended(
                    waits=[
                        ws.PlannedWait(
                            step_id=hash_step_id("pause"),
                            name="pause",
                            sleep=ws.Sleep(until_ms=until),
                            started_at_ms=first.server_time_ms,
                        )
                    ]
                ),
            ),
        )
    )
    await worker.receive_kind("acks")
    assert admin.status(run_id) == common_pb2.RUN_STATUS_SLEEPING

    second = await _execute(worker)

    assert second.run_id == run_id
    assert second.execution_id != first.execution_id
    assert second.server_time_ms >= until
    memo = {s.step_id: s.output for s in second.steps}
    assert memo == {hash_step_id("fetch"): b'{"n": 1}', hash_step_id("pause"): b"null"}


async def test_a_result_from_a_lost_lease_is_refused(worker: RawWorker, admin: Admin) -> None:
    await _connect(worker)
    [run_id] = admin.send("raw/go")
    stale = await _execute(worker)

    # Stay alive (heartbeats) without extending this execution's lease.
    async def heartbeats() -> None:
        while True:
            await worker.send(ws.WorkerFrame(heartbeat=ws.Heartbeat(execution_ids=[])))
            await asyncio.sleep(0.1)

    beating = asyncio.create_task(heartbeats())
    try:
        cancel = await worker.receive_kind("cancel")
        assert cancel.cancel.execution_id == stale.execution_id
        assert "lease" in cancel.cancel.reason
        fresh = await _execute(worker)
        assert fresh.run_id == run_id
        assert fresh.execution_id != stale.execution_id

        await worker.send(outcomes(_completed(1, stale, "late", "stale")))
        acks = await worker.receive_kind("acks")
        assert acks.acks.through_seq == 1
        [refusal] = acks.acks.refused
        assert refusal.seq == 1
        assert refusal.execution_id == stale.execution_id
        assert "lease lost" in refusal.reason

        await worker.send(outcomes(_run_completed(2, fresh, "fresh")))
        await worker.receive_kind("acks")
    finally:
        beating.cancel()
    run = admin.get(run_id)
    assert run.run.output == b'"fresh"'
    assert not run.steps, "the refused step result was stored"


async def test_failed_step_is_retried_with_its_attempt_count(
    worker: RawWorker, admin: Admin
) -> None:
    from tether._step_ids import hash_step_id

    await _connect(worker, retries=2)
    [run_id] = admin.send("raw/go")
    first = await _execute(worker)
    step_id = hash_step_id("call-api")
    await worker.send(
        outcomes(
            ws.Outcome(
                seq=1,
                execution_id=first.execution_id,
                run_id=run_id,
                step_failed=ws.StepFailed(
                    step_id=step_id,
                    name="call-api",
                    kind=common_pb2.STEP_KIND_RUN,
                    error=common_pb2.ErrorInfo(name="TimeoutError", message="slow API"),
                    retriable=True,
                    retry_delay_ms=100,
                    started_at_ms=first.server_time_ms,
                    ended_at_ms=first.server_time_ms,
                ),
            )
        )
    )
    await worker.send(
        outcomes(
            ws.Outcome(
                seq=2, execution_id=first.execution_id, run_id=run_id, suspended=ws.Suspended()
            )
        )
    )

    retry = await _execute(worker)

    assert retry.server_time_ms >= first.server_time_ms + 100
    assert dict(retry.step_attempts) == {step_id: 1}
    assert not retry.steps
    [failure] = [h for h in admin.get(run_id).history if h.kind == rs.HISTORY_KIND_STEP_FAILED]
    assert failure.attempt == 1
    assert failure.error.message == "slow API"
    assert failure.until_ms - failure.ts_ms == 100


@pytest.mark.parametrize("name", ["parse", "rate-limit"])
async def test_outputs_that_are_not_json_are_refused(
    worker: RawWorker, admin: Admin, name: str
) -> None:
    await _connect(worker)
    admin.send("raw/go")
    first = await _execute(worker)
    bad = _completed(1, first, name, None)
    bad.step_completed.output = b"\xff{not json"
    await worker.send(outcomes(bad))

    cancel = await worker.receive_kind("cancel")
    again = await _execute(worker)

    assert f"'{name}' output is not valid UTF-8 JSON" in cancel.cancel.reason
    [memo] = again.steps
    assert memo.error.name == "InvalidOutput"


async def test_a_step_that_failed_for_good_is_memoized_as_an_error(
    worker: RawWorker, admin: Admin
) -> None:
    from tether._step_ids import hash_step_id

    await _connect(worker)
    [run_id] = admin.send("raw/go")
    first = await _execute(worker)
    await worker.send(
        outcomes(
            ws.Outcome(
                seq=1,
                execution_id=first.execution_id,
                run_id=run_id,
                step_failed=ws.StepFailed(
                    step_id=hash_step_id("charge"),
                    name="charge",
                    error=common_pb2.ErrorInfo(name="NonRetriableError", message="card declined"),
                    retriable=False,
                ),
            ),
            ws.Outcome(
                seq=2, execution_id=first.execution_id, run_id=run_id, suspended=ws.Suspended()
            ),
        )
    )

    again = await _execute(worker)

    [memo] = again.steps
    assert memo.step_id == hash_step_id("charge")
    assert memo.WhichOneof("result") == "error"
    assert memo.error.message == "card declined"


async def test_an_output_over_the_limit_fails_its_step(worker: RawWorker, admin: Admin) -> None:
    await _connect(worker)
    [run_id] = admin.send("raw/go")
    first = await _execute(worker)
    huge = "x" * (5 * 1024 * 1024)
    # The worker went on after the step and finished the run; none of it counts.
    await worker.send(
        outcomes(_completed(1, first, "download", huge), _run_completed(2, first, "done"))
    )

    acks = await worker.receive_kind("acks")
    [refusal] = acks.acks.refused
    assert refusal.seq == 2
    assert "limit is 4 MiB" in refusal.reason
    cancel = await worker.receive_kind("cancel")
    assert cancel.cancel.execution_id == first.execution_id
    again = await _execute(worker)
    assert admin.status(run_id) == common_pb2.RUN_STATUS_RUNNING

    [memo] = again.steps
    assert memo.WhichOneof("result") == "error"
    assert memo.error.name == "LimitExceeded"
    assert "'download' output is 5.0 MiB; the limit is 4 MiB per step" in memo.error.message


async def test_a_cancelled_runs_worker_confirms_and_its_running_step_is_recorded(
    worker: RawWorker, admin: Admin
) -> None:
    await _connect(worker)
    [run_id] = admin.send("raw/go")
    execute = await _execute(worker)

    cancelling = asyncio.create_task(
        asyncio.to_thread(
            admin.runs.CancelRun, rs.CancelRunRequest(run_id=run_id, reason="no longer needed")
        )
    )
    cancel = await worker.receive_kind("cancel")
    assert cancel.cancel.execution_id == execute.execution_id
    assert cancel.cancel.run_cancelled
    await asyncio.sleep(0)
    assert not cancelling.done(), "CancelRun returned before the worker confirmed"
    await worker.send(ws.WorkerFrame(cancel_ack=ws.CancelAck(execution_id=execute.execution_id)))
    cancelled = await cancelling
    assert cancelled.run.status == common_pb2.RUN_STATUS_CANCELLED

    # The step that was running when the worker heard reports; it is recorded.
    await worker.send(outcomes(_completed(1, execute, "in-flight", "finished")))
    acks = await worker.receive_kind("acks")
    assert list(acks.acks.refused) == []
    steps = admin.get(run_id).steps
    assert [(s.name, s.status) for s in steps] == [("in-flight", rs.STEP_STATUS_COMPLETED)]
    assert admin.status(run_id) == common_pb2.RUN_STATUS_CANCELLED


# -- how the control plane ends a stream ---------------------------------------------------


async def test_a_silent_worker_is_told_why_its_stream_ended(
    worker: RawWorker, admin: Admin, control_plane: ControlPlaneProcess
) -> None:
    await _connect(worker)
    [run_id] = admin.send("raw/go")
    held = await _execute(worker)

    # No Heartbeat, no frame at all: after a lease timeout (1,000 ms) the stream ends.
    code, details = await worker.end_status()

    assert code == grpc.StatusCode.UNAVAILABLE
    assert re.fullmatch(
        r"no word from the worker for \d+ ms; the limit is the lease timeout, 1000 ms "
        r"\(send a Heartbeat every 200 ms\)",
        details,
    ), details
    # What it held goes to the next worker.
    again = RawWorker(control_plane.address)
    try:
        await _connect(again)
        execute = await _execute(again)
        assert execute.run_id == run_id
        assert execute.execution_id != held.execution_id
    finally:
        await again.close()


def _no_kind(execute: ws.Execute) -> tuple[list[ws.Outcome], str]:
    bare = ws.Outcome(seq=2, execution_id=execute.execution_id, run_id=execute.run_id)
    return [_completed(1, execute, "first", 1), bare], (
        "outcome seq 2 has no kind: set one of step_completed, step_failed, suspended, "
        "run_completed, run_failed or non_determinism"
    )


def _wait_without_kind(execute: ws.Execute) -> tuple[list[ws.Outcome], str]:
    from tether._step_ids import hash_step_id

    suspended = ws.Outcome(
        seq=2,
        execution_id=execute.execution_id,
        run_id=execute.run_id,
        suspended=ws.Suspended(waits=[ws.PlannedWait(step_id=hash_step_id("pause"), name="pause")]),
    )
    return [_completed(1, execute, "first", 1), suspended], (
        "outcome seq 2: planned wait 'pause' has no kind: set one of sleep, wait_for_event "
        "or invoke"
    )


def _repeated_seq(execute: ws.Execute) -> tuple[list[ws.Outcome], str]:
    return [_completed(2, execute, "first", 1), _completed(2, execute, "second", 2)], (
        "outcome seq 2 does not increase: the previous outcome on this stream had seq 2"
    )


def _seq_zero(execute: ws.Execute) -> tuple[list[ws.Outcome], str]:
    return [_completed(0, execute, "first", 1)], (
        "outcome seq 0 is not allowed: seq starts at 1 on each stream and strictly increases"
    )


def _another_run(execute: ws.Execute) -> tuple[list[ws.Outcome], str]:
    stray = _completed(2, execute, "second", 2)
    stray.run_id = "01KDVDN9ZV79ZGKGQ4P5EPZ2H1"
    return [_completed(1, execute, "first", 1), stray], (
        f"outcome seq 2 names run '01KDVDN9ZV79ZGKGQ4P5EPZ2H1', but execution "
        f"{execute.execution_id} is of run {execute.run_id}"
    )


def _long_step_name(execute: ws.Execute) -> tuple[list[ws.Outcome], str]:
    name = "n" * 513
    return [_completed(1, execute, name, 1)], (
        f"outcome seq 1: step name {'n' * 64!r}... is 513 characters; the limit is 512"
    )


def _not_a_step_id(execute: ws.Execute) -> tuple[list[ws.Outcome], str]:
    completed = _completed(1, execute, "first", 1)
    completed.step_completed.step_id = "x" * 41
    return [completed], (
        f"outcome seq 1: step id {'x' * 41!r} is not a step id: it is the hex SHA-1 of the "
        "step's name, 40 characters"
    )


def _nul_in_a_name(execute: ws.Execute) -> tuple[list[ws.Outcome], str]:
    return [_completed(1, execute, "first", 1), _completed(2, execute, "se\x00cond", 2)], (
        "field outcomes[1].step_completed.name of an outcomes frame contains a NUL "
        "character (U+0000), which text cannot hold"
    )


@pytest.mark.parametrize(
    "broken",
    [
        _no_kind,
        _wait_without_kind,
        _repeated_seq,
        _seq_zero,
        _another_run,
        _long_step_name,
        _not_a_step_id,
        _nul_in_a_name,
    ],
)
async def test_a_protocol_error_ends_the_stream_with_invalid_argument_and_applies_nothing(
    worker: RawWorker,
    admin: Admin,
    broken: Callable[[ws.Execute], tuple[list[ws.Outcome], str]],
) -> None:
    await _connect(worker)
    [run_id] = admin.send("raw/go")
    execute = await _execute(worker)
    frame, message = broken(execute)

    await worker.send(outcomes(*frame))
    code, details = await worker.end_status()

    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, message)

    # Nothing of the frame was applied, and the stream's lease was released.
    async def lost() -> list[str]:
        run = await asyncio.to_thread(admin.get, run_id)
        return [h.message for h in run.history if h.kind == rs.HISTORY_KIND_EXECUTION_LOST]

    assert await wait_until_async(lost, what="the lease to be released") == [
        f"worker disconnected ({message})"
    ]
    assert not admin.get(run_id).steps


async def test_an_outcome_seq_that_does_not_increase_across_frames_ends_the_stream(
    worker: RawWorker, admin: Admin
) -> None:
    await _connect(worker)
    [run_id] = admin.send("raw/go")
    execute = await _execute(worker)
    await worker.send(outcomes(_completed(5, execute, "first", 1)))
    acks = await worker.receive_kind("acks")
    assert acks.acks.through_seq == 5

    await worker.send(outcomes(_completed(3, execute, "second", 2)))
    code, details = await worker.end_status()

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == (
        "outcome seq 3 does not increase: the previous outcome on this stream had seq 5"
    )
    assert [s.name for s in admin.get(run_id).steps] == ["first"]


async def test_a_second_hello_ends_the_stream_with_invalid_argument(worker: RawWorker) -> None:
    await _connect(worker)

    await worker.send(hello([definition("raw-fn", "raw/go")]))
    code, details = await worker.end_status()

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == (
        "a second Hello: Hello is only the first frame of a stream "
        "(open a new stream to register again)"
    )


async def test_a_frame_of_no_known_kind_is_ignored(worker: RawWorker, admin: Admin) -> None:
    await _connect(worker)
    await worker.send(ws.WorkerFrame())
    [run_id] = admin.send("raw/go")

    execute = await _execute(worker)
    await worker.send(outcomes(_run_completed(1, execute, "done")))

    acks = await worker.receive_kind("acks")
    assert acks.acks.through_seq == 1
    assert admin.status(run_id) == common_pb2.RUN_STATUS_COMPLETED


# -- what an Execute carries -----------------------------------------------------------


async def _replay(admin: Admin, run_id: str) -> str:
    response = await asyncio.to_thread(
        admin.runs.ReplayRun, rs.ReplayRunRequest(run_id=run_id, mode=rs.REPLAY_MODE_FROM_START)
    )
    return response.run.id


async def test_a_batched_run_gets_every_event_and_so_does_its_replay(
    worker: RawWorker, admin: Admin
) -> None:
    batched = definition("raw-fn", "raw/go")
    batched.batching.CopyFrom(common_pb2.Batching(max_size=3, timeout_ms=60_000))
    await worker.send(hello([batched]))
    assert (await worker.receive_kind("welcome")).welcome.session_id
    run_ids = set(admin.send_many([("raw/go", {"n": n}) for n in range(3)]))
    assert len(run_ids) == 1

    execute = await _execute(worker)

    assert [e.data for e in execute.events] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    assert not execute.HasField("cron")
    await worker.send(outcomes(_run_completed(1, execute, "done")))
    await worker.receive_kind("acks")

    replay_id = await _replay(admin, execute.run_id)
    replayed = await _execute(worker)
    assert replayed.run_id == replay_id
    assert [e.id for e in replayed.events] == [e.id for e in execute.events]


async def test_a_cron_run_has_no_event_and_its_replay_keeps_the_tick(
    db_url: str, tmp_path: Path
) -> None:
    plane = ControlPlaneProcess(
        db_url, tmp_path, clock="virtual", heartbeat_ms=200, lease_timeout_ms=1000
    ).start()
    worker = RawWorker(plane.address)
    admin = Admin(plane.address)
    clock = Clock(plane.address)
    try:
        scheduled = common_pb2.FunctionDefinition(id="raw-cron")
        scheduled.triggers.add(cron=common_pb2.CronTrigger(schedule="* * * * *"))
        await worker.send(hello([scheduled]))
        assert (await worker.receive_kind("welcome")).welcome.session_id
        await asyncio.to_thread(clock.advance, "1m")

        execute = await _execute(worker)

        assert not execute.events
        assert execute.cron.schedule == "* * * * *"
        assert execute.cron.timezone == ""
        assert execute.cron.scheduled_at_ms % 60_000 == 0
        assert execute.cron.scheduled_at_ms <= execute.server_time_ms
        await worker.send(outcomes(_run_completed(1, execute, "ticked")))
        await worker.receive_kind("acks")

        replay_id = await _replay(admin, execute.run_id)
        replayed = await _execute(worker)
        assert replayed.run_id == replay_id
        assert not replayed.events
        assert replayed.cron == execute.cron
    finally:
        await worker.close()
        admin.close()
        clock.close()
        plane.stop()


# -- RunService errors -------------------------------------------------------------------


def _status_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    error = raised.value
    assert isinstance(error, grpc.Call)
    return error.code(), error.details() or ""


async def test_pause_resume_and_list_events_answer_with_their_status_codes(
    worker: RawWorker, admin: Admin
) -> None:
    await _connect(worker)
    runs = admin.runs

    assert _status_of(lambda: runs.ListEvents(rs.ListEventsRequest(page_token="zzz"))) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_token is not one this server issued: pass the next_page_token of the previous "
        "page, or none for the first page",
    )
    assert _status_of(lambda: runs.ListEvents(rs.ListEventsRequest(page_size=1001))) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_size must be between 0 and 1000 (0: 50); got 1001",
    )
    assert _status_of(lambda: runs.PauseFunction(rs.PauseFunctionRequest(app_id="raw"))) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "name the function by its app id and function id",
    )
    unknown = rs.PauseFunctionRequest(app_id="raw", function_id="nope")
    assert _status_of(lambda: runs.PauseFunction(unknown)) == (
        grpc.StatusCode.NOT_FOUND,
        "function 'nope' of app 'raw' not found",
    )
    bad_mode = rs.PauseFunctionRequest(app_id="raw", function_id="raw-fn", mode=9)  # type: ignore[arg-type]
    assert _status_of(lambda: runs.PauseFunction(bad_mode)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "unknown pause mode 9",
    )
    resume_unknown = rs.ResumeFunctionRequest(app_id="raw", function_id="nope")
    assert _status_of(lambda: runs.ResumeFunction(resume_unknown)) == (
        grpc.StatusCode.NOT_FOUND,
        "function 'nope' of app 'raw' not found",
    )

    paused = runs.PauseFunction(rs.PauseFunctionRequest(app_id="raw", function_id="raw-fn"))
    assert paused.function.paused == rs.PAUSE_MODE_HOLD
    [run_id] = admin.send("raw/go")
    resumed = runs.ResumeFunction(rs.ResumeFunctionRequest(app_id="raw", function_id="raw-fn"))
    assert resumed.function.paused == rs.PAUSE_MODE_UNSPECIFIED
    assert resumed.released_runs == 1
    assert (await _execute(worker)).run_id == run_id
