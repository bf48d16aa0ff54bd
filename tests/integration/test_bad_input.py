"""What a client's mistake gets, from a real control plane: a status code (gRPC)
or a 4xx with a problem body (HTTP) whose message names the problem and the
limit; never UNKNOWN, a 500, a Python class name or a traceback. After every
hostile call the control plane still serves: health answers and a sent event
still starts a run."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from controlplane.api.server import SERVICE_NAMES
from tests.support.admin import Admin
from tests.support.processes import ControlPlaneProcess
from tests.support.raw_worker import (
    EOF_MARKER,
    RawWorker,
    definition,
    hello,
    outcomes,
    payload,
)
from tests.support.waiting import wait_until_async
from tether.v1 import common_pb2, event_service_pb2, event_service_pb2_grpc
from tether.v1 import run_service_pb2 as rs
from tether.v1 import worker_service_pb2 as ws

# Not protobuf: a varint that never ends.
UNDECODABLE = b"\xff\xff\xff"
CONNECT = "/tether.v1.WorkerService/Connect"
DEPTH_LIMIT = "the limit is 64 levels of arrays and objects"


@pytest.fixture
def control_plane(db_url: str, tmp_path: Path) -> Iterator[ControlPlaneProcess]:
    process = ControlPlaneProcess(
        db_url, tmp_path, heartbeat_ms=200, lease_timeout_ms=1000, http=True
    ).start()
    yield process
    process.stop()


def _clean(message: str) -> bool:
    """A message for people: no Python class, no traceback."""
    return "<class" not in message and "Traceback" not in message and "Error:" not in message


def _nested(levels: int) -> bytes:
    """A JSON object ``levels`` levels deep."""
    return b'{"a":' * (levels - 1) + b"{}" + b"}" * (levels - 1)


async def _still_serving(address: str) -> None:
    """Health answers SERVING, and a sent event starts a run a worker is given."""
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        after = RawWorker(address)
        try:
            await after.send(hello([definition("after-fn", "after/go")], app_id="after"))
            assert (await after.receive_kind("welcome")).welcome.session_id
            sent = await event_service_pb2_grpc.EventServiceStub(channel).Send(
                event_service_pb2.SendRequest(events=[common_pb2.Event(name="after/go")])
            )
            [run_id] = sent.results[0].run_ids
            dispatch = await after.receive_kind("dispatch")
            assert [e.run_id for e in dispatch.dispatch.executions] == [run_id]
        finally:
            await after.close()


# -- undecodable requests ----------------------------------------------------------------


def _methods() -> list[tuple[str, MethodDescriptor]]:
    """Every method the control plane serves, from the services' descriptors: a new
    method is covered without a word here."""
    names = (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME)
    pool = descriptor_pool.Default()
    return [
        (f"/{service.full_name}/{method.name}", method)
        for service in (pool.FindServiceByName(name) for name in names)
        for method in service.methods
    ]


async def _end_of(call: Any) -> tuple[grpc.StatusCode, str]:
    """Read a response stream to its end; the status it ended with."""
    try:
        while await call.read() is not EOF_MARKER:
            pass
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return await call.code(), await call.details()


async def _raw_status(
    channel: grpc.aio.Channel,
    path: str,
    method: MethodDescriptor,
    body: bytes,
    metadata: tuple[tuple[str, str], ...] = (),
) -> tuple[grpc.StatusCode, str]:
    """Send ``body`` as the (first) request of ``path``, as bytes; the status the
    call ends with."""
    raw: Any = channel  # bytes in and out: no serializers
    codecs: dict[str, Any] = {"request_serializer": None, "response_deserializer": None}
    try:
        if method.client_streaming:
            kind = raw.stream_stream if method.server_streaming else raw.stream_unary
            call = kind(path, **codecs)(metadata=metadata, timeout=10)
            await call.write(body)
            if method.server_streaming:
                return await _end_of(call)
            await call.done_writing()
            await call
        elif method.server_streaming:
            return await _end_of(
                raw.unary_stream(path, **codecs)(body, metadata=metadata, timeout=10)
            )
        else:
            await raw.unary_unary(path, **codecs)(body, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


async def test_every_method_refuses_undecodable_bytes_with_invalid_argument_naming_the_type(
    control_plane: ControlPlaneProcess,
) -> None:
    methods = _methods()
    paths = {path for path, _ in methods}
    assert {"/tether.v1.EventService/Send", CONNECT, "/grpc.health.v1.Health/Check"} <= paths
    async with grpc.aio.insecure_channel(control_plane.address) as channel:
        answers = {
            path: await _raw_status(channel, path, method, UNDECODABLE) for path, method in methods
        }
        # A method the control plane leaves to its generated base class says so.
        listing = "/grpc.health.v1.Health/List"
        unimplemented = await _raw_status(channel, listing, dict(methods)[listing], b"")
    assert unimplemented == (
        grpc.StatusCode.UNIMPLEMENTED,
        "this control plane does not implement grpc.health.v1.Health/List",
    )

    for (path, method), (code, message) in zip(methods, answers.values(), strict=True):
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (path, code, message)
        assert f"is not a valid {method.input_type.full_name} message: " in message, path
        assert _clean(message), (path, message)
    assert answers["/tether.v1.EventService/Send"][1] == (
        "the request is not a valid tether.v1.SendRequest message: wire format was corrupt"
    )
    assert answers[CONNECT][1] == (
        "the first frame is not a valid tether.v1.WorkerFrame message: wire format was corrupt"
    )
    await _still_serving(control_plane.address)


async def test_without_an_api_key_an_undecodable_request_is_unauthenticated(
    db_url: str, tmp_path: Path
) -> None:
    plane = ControlPlaneProcess(db_url, tmp_path, extra_args=["--api-key", "sesame"]).start()
    try:
        send = "/tether.v1.EventService/Send"
        methods = dict(_methods())
        async with grpc.aio.insecure_channel(plane.address) as channel:
            for path in (send, CONNECT):
                code, message = await _raw_status(channel, path, methods[path], UNDECODABLE)
                assert code == grpc.StatusCode.UNAUTHENTICATED, (path, message)
            key = (("authorization", "Bearer sesame"),)
            for path in (send, CONNECT):
                code, message = await _raw_status(channel, path, methods[path], UNDECODABLE, key)
                assert code == grpc.StatusCode.INVALID_ARGUMENT, (path, message)
    finally:
        plane.stop()


async def test_an_undecodable_frame_after_welcome_ends_the_stream_and_keeps_what_came_before(
    control_plane: ControlPlaneProcess, admin: Admin
) -> None:
    from tether._step_ids import hash_step_id

    async with grpc.aio.insecure_channel(control_plane.address) as channel:
        raw: Any = channel  # frames written as bytes
        call = raw.stream_stream(
            CONNECT, request_serializer=None, response_deserializer=ws.ServerFrame.FromString
        )()
        await call.write(hello([definition("raw-fn", "raw/go")]).SerializeToString())
        assert (await call.read()).WhichOneof("frame") == "welcome"
        [run_id] = await asyncio.to_thread(admin.send, "raw/go")
        frame = await call.read()
        while frame.WhichOneof("frame") != "dispatch":
            frame = await call.read()
        [execute] = frame.dispatch.executions
        step = ws.StepCompleted(step_id=hash_step_id("kept"), name="kept", output=b"1")
        kept = ws.Outcome(
            seq=1, execution_id=execute.execution_id, run_id=run_id, step_completed=step
        )
        await call.write(outcomes(kept).SerializeToString())
        frame = await call.read()
        while frame.WhichOneof("frame") != "acks":
            frame = await call.read()
        assert frame.acks.through_seq == 1

        await call.write(b"\x0a\x03\x12\x01\xff")  # a Hello whose app id is not UTF-8
        ended = await _end_of(call)

    problem = "a frame is not a valid tether.v1.WorkerFrame message: string field had bad UTF-8"
    assert ended == (grpc.StatusCode.INVALID_ARGUMENT, problem)

    async def lost() -> list[str]:
        run = await asyncio.to_thread(admin.get, run_id)
        return [h.message for h in run.history if h.kind == rs.HISTORY_KIND_EXECUTION_LOST]

    assert await wait_until_async(lost, what="the lease to be released") == [
        f"worker disconnected ({problem})"
    ]
    assert [s.name for s in admin.get(run_id).steps] == ["kept"]
    await _still_serving(control_plane.address)


async def test_text_holding_a_nul_character_is_refused_before_any_database_sees_it(
    control_plane: ControlPlaneProcess, admin: Admin, worker: RawWorker
) -> None:
    assert _refusal(lambda: admin.runs.GetRun(rs.GetRunRequest(run_id="01\x00"))) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "field run_id of the request contains a NUL character (U+0000), which text cannot hold",
    )
    event = common_pb2.Event(name="a/b", id="x\x00y")
    assert _refusal(lambda: admin.events.Send(event_service_pb2.SendRequest(events=[event]))) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "field events[0].id of the request contains a NUL character (U+0000), which text "
        "cannot hold",
    )
    named = definition("raw-fn", "raw/go")
    named.name = "Raw\x00"
    await worker.send(hello([named]))
    rejected = await worker.receive_kind("rejected")
    assert rejected.rejected.code == ws.REJECT_CODE_INVALID_HELLO
    assert rejected.rejected.reason == (
        "field functions[0].name of the Hello contains a NUL character (U+0000), which text "
        "cannot hold"
    )
    await _still_serving(control_plane.address)


def _refusal(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    """The status a synchronous call fails with."""
    with pytest.raises(grpc.RpcError) as raised:
        call()
    error: Any = raised.value
    return error.code(), error.details()


# -- page tokens and sizes ---------------------------------------------------------------


def _token(*parts: object) -> str:
    return base64.urlsafe_b64encode("\x1f".join(map(str, parts)).encode()).decode().rstrip("=")


BAD_TOKENS = [
    "zzz",
    "é",
    "not a token at all",
    _token("12"),  # one part
    _token(10**30, "01HZX3K8Q9ZQ5V6W7X8Y9Z0ABC"),  # a time no database stores
    _token("soon", "01HZX3K8Q9ZQ5V6W7X8Y9Z0ABC"),
    _token(1_700_000_000_000, "01\x00"),  # PostgreSQL stores no NUL
]
TOKEN_PROBLEM = (
    "page_token is not one this server issued: pass the next_page_token of the previous "
    "page, or none for the first page"
)


async def test_lists_refuse_page_tokens_they_did_not_issue_and_sizes_over_the_limit(
    control_plane: ControlPlaneProcess, admin: Admin
) -> None:
    admin.send_many([("page/x", {"n": n}) for n in range(3)])
    runs, events = admin.runs.ListRuns, admin.runs.ListEvents
    invalid = grpc.StatusCode.INVALID_ARGUMENT

    for token in BAD_TOKENS:
        listing = rs.ListRunsRequest(page_token=token)
        assert _refusal(partial(runs, listing)) == (invalid, TOKEN_PROBLEM), token
        event_listing = rs.ListEventsRequest(page_token=token)
        assert _refusal(partial(events, event_listing)) == (invalid, TOKEN_PROBLEM), token
    size_problem = "page_size must be between 0 and 1000 (0: 50); got 1001"
    assert _refusal(partial(runs, rs.ListRunsRequest(page_size=1001))) == (invalid, size_problem)
    assert _refusal(partial(events, rs.ListEventsRequest(page_size=1001))) == (
        invalid,
        size_problem,
    )

    # What was accepted still is: sizes 0 (the default) to 1,000, and issued tokens.
    assert len(events(rs.ListEventsRequest(page_size=0)).events) == 3
    assert len(events(rs.ListEventsRequest(page_size=1000)).events) == 3
    first = events(rs.ListEventsRequest(page_size=2))
    assert first.next_page_token
    rest = events(rs.ListEventsRequest(page_size=2, page_token=first.next_page_token))
    assert len(first.events) + len(rest.events) == 3
    assert not rest.next_page_token
    await _still_serving(control_plane.address)


# -- JSON nested too deep ----------------------------------------------------------------


async def test_event_data_and_user_nested_deeper_than_64_levels_are_refused_naming_the_limit(
    control_plane: ControlPlaneProcess, admin: Admin
) -> None:
    def send(data: bytes = b"{}", user: bytes = b"") -> tuple[grpc.StatusCode, str]:
        event = common_pb2.Event(name="deep/x", data=data, user=user)
        try:
            admin.events.Send(event_service_pb2.SendRequest(events=[event]))
        except grpc.RpcError as error:
            failed: Any = error
            return failed.code(), failed.details()
        return grpc.StatusCode.OK, ""

    assert send(_nested(64)) == (grpc.StatusCode.OK, "")
    assert send(user=_nested(64)) == (grpc.StatusCode.OK, "")
    assert send(_nested(65)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        f"event 0 ('deep/x'): data is nested 65 levels deep; {DEPTH_LIMIT}",
    )
    started = time.monotonic()
    assert send(user=_nested(10_000)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        f"event 0 ('deep/x'): user is nested 10000 levels deep; {DEPTH_LIMIT}",
    )
    assert time.monotonic() - started < 2, "a deep payload is refused without parsing it"
    await _still_serving(control_plane.address)


async def _connect(worker: RawWorker) -> None:
    await worker.send(
        hello([definition("raw-fn", "raw/go"), common_pb2.FunctionDefinition(id="raw-child")])
    )
    assert (await worker.receive_kind("welcome")).welcome.session_id


async def _execute(worker: RawWorker) -> ws.Execute:
    frame = await worker.receive_kind("dispatch")
    [execute] = frame.dispatch.executions
    return execute


def _step(seq: int, execute: ws.Execute, name: str, output: bytes) -> ws.Outcome:
    from tether._step_ids import hash_step_id

    completed = ws.StepCompleted(
        step_id=hash_step_id(name), name=name, kind=common_pb2.STEP_KIND_RUN, output=output
    )
    return ws.Outcome(
        seq=seq, execution_id=execute.execution_id, run_id=execute.run_id, step_completed=completed
    )


async def test_a_step_output_nested_too_deep_fails_the_step_as_invalid_output(
    control_plane: ControlPlaneProcess, admin: Admin, worker: RawWorker
) -> None:
    await _connect(worker)
    [run_id] = admin.send("raw/go")
    first = await _execute(worker)

    await worker.send(
        outcomes(_step(1, first, "shallow", _nested(64)), _step(2, first, "deep", _nested(65)))
    )
    problem = f"step 'deep' output is nested 65 levels deep; {DEPTH_LIMIT}"
    assert (await worker.receive_kind("cancel")).cancel.reason == problem
    again = await _execute(worker)
    kept, failed = again.steps
    assert json.loads(kept.output) == json.loads(_nested(64))
    assert (failed.error.name, failed.error.message) == ("InvalidOutput", problem)

    await worker.send(outcomes(_step(3, again, "deeper", _nested(10_000))))
    cancel = await worker.receive_kind("cancel")
    assert (
        cancel.cancel.reason == f"step 'deeper' output is nested 10000 levels deep; {DEPTH_LIMIT}"
    )
    last = await _execute(worker)
    assert [s.error.name for s in last.steps if s.WhichOneof("result") == "error"] == [
        "InvalidOutput",
        "InvalidOutput",
    ]
    assert admin.status(run_id) == common_pb2.RUN_STATUS_RUNNING
    await _still_serving(control_plane.address)


async def test_a_run_output_nested_too_deep_fails_the_run(
    control_plane: ControlPlaneProcess, admin: Admin, worker: RawWorker
) -> None:
    await _connect(worker)
    [run_id] = admin.send("raw/go")
    execute = await _execute(worker)

    done = ws.RunCompleted(output=_nested(65))
    await worker.send(
        outcomes(
            ws.Outcome(seq=1, execution_id=execute.execution_id, run_id=run_id, run_completed=done)
        )
    )
    await worker.receive_kind("acks")

    run = admin.get(run_id).run
    assert run.status == common_pb2.RUN_STATUS_FAILED
    assert (run.error.name, run.error.message) == (
        "InvalidOutput",
        f"the function's return value is nested 65 levels deep; {DEPTH_LIMIT}",
    )
    await _still_serving(control_plane.address)


async def test_invoke_data_nested_too_deep_fails_the_invoke_step(
    control_plane: ControlPlaneProcess, admin: Admin, worker: RawWorker
) -> None:
    from tether._step_ids import hash_step_id

    await _connect(worker)
    [run_id] = admin.send("raw/go")
    execute = await _execute(worker)
    invoke = ws.PlannedWait(
        step_id=hash_step_id("child"),
        name="child",
        invoke=ws.Invoke(function_id="raw-child", data=_nested(65)),
    )
    await worker.send(
        outcomes(
            ws.Outcome(
                seq=1,
                execution_id=execute.execution_id,
                run_id=run_id,
                suspended=ws.Suspended(waits=[invoke]),
            )
        )
    )

    again = await _execute(worker)
    [memo] = again.steps
    assert (memo.error.name, memo.error.message) == (
        "InvokeError",
        f"invoke 'child': data is nested 65 levels deep; {DEPTH_LIMIT}",
    )
    assert not admin.runs_of("raw-child"), "no child run started"
    await _still_serving(control_plane.address)


# -- the worker stream's protocol ---------------------------------------------------------


async def test_heartbeats_acks_and_outcomes_for_executions_the_stream_does_not_hold(
    control_plane: ControlPlaneProcess, admin: Admin, worker: RawWorker
) -> None:
    await _connect(worker)
    stranger = "0" * 32

    # A heartbeat for an unknown execution: its lease is reported lost.
    await worker.send(ws.WorkerFrame(heartbeat=ws.Heartbeat(execution_ids=[stranger])))
    cancel = (await worker.receive_kind("cancel")).cancel
    assert (cancel.execution_id, cancel.run_id, cancel.reason) == (
        stranger,
        "",
        "lease lost: the run was given to another worker",
    )
    # A CancelAck for one is ignored.
    await worker.send(ws.WorkerFrame(cancel_ack=ws.CancelAck(execution_id=stranger)))
    # An outcome for one is refused, with the same reason.
    await worker.send(
        outcomes(
            ws.Outcome(
                seq=1,
                execution_id=stranger,
                run_id="01HZX3K8Q9ZQ5V6W7X8Y9Z0ABC",
                run_completed=ws.RunCompleted(output=payload("done")),
            )
        )
    )
    acks = (await worker.receive_kind("acks")).acks
    assert acks.through_seq == 1
    assert [(r.seq, r.execution_id, r.reason) for r in acks.refused] == [
        (1, stranger, "lease lost: the run was given to another worker")
    ]

    # The stream goes on as usual.
    [run_id] = admin.send("raw/go")
    execute = await _execute(worker)
    done = ws.RunCompleted(output=payload("done"))
    await worker.send(
        outcomes(
            ws.Outcome(seq=2, execution_id=execute.execution_id, run_id=run_id, run_completed=done)
        )
    )
    assert (await worker.receive_kind("acks")).acks.through_seq == 2
    assert admin.status(run_id) == common_pb2.RUN_STATUS_COMPLETED
    await _still_serving(control_plane.address)


# -- the HTTP API --------------------------------------------------------------------------


def _http(
    base: str, method: str, path: str, body: bytes | None = None, content_type: str = ""
) -> tuple[int, Any]:
    headers = {"Content-Type": content_type or "application/json"} if body is not None else {}
    request = urllib.request.Request(base + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw)
        except ValueError:
            return error.code, raw


def _event(data: bytes) -> bytes:
    return b'{"name": "raw/go", "data": ' + data + b"}"


HTTP_MISTAKES: list[tuple[str, str, bytes | None, int, str]] = [
    # method, path, body, status, a part of the message
    ("POST", "/api/events", b"{not json", 400, "the body is not valid JSON: Expecting property"),
    ("POST", "/api/events", b"\xff\xfe\x00", 400, "the body is not valid JSON"),
    ("POST", "/api/events", b'{"name": 5}', 400, "name: Input should be a valid string"),
    ("POST", "/api/events", b'{"name": "a/b", "data": [1]}', 400, "data: Input should be a"),
    ("POST", "/api/events", b'[{"name": "a/b"}, 3]', 400, "[1]: Input should be a valid"),
    ("POST", "/api/events", b'{"name": "a/b", "ts_ms": 1e999}', 400, "ts_ms: Input should"),
    (
        "POST",
        "/api/events",
        b'{"name": "a/b", "ts_ms": 99999999999999999999}',
        400,
        "ts_ms: Input should be less than or equal to 9223372036854775807",
    ),
    ("POST", "/api/events", b'{"name": "a/b", "id": "\\u0000"}', 400, "id: Value error, contains"),
    ("POST", "/api/events", b'{"name": "tether/x"}', 400, "names starting with 'tether/'"),
    (
        "POST",
        "/api/events",
        _event(_nested(65)),
        400,
        f"data is nested 65 levels deep; {DEPTH_LIMIT}",
    ),
    (
        "POST",
        "/api/events",
        _event(_nested(10_000)),
        400,
        "the request body is nested 10001 levels deep; payloads (event data and user, invoke "
        "data) may nest at most 64 levels of arrays and objects",
    ),
    (
        "POST",
        "/api/functions/raw/raw-child/invoke",
        b'{"data": ' + _nested(65) + b"}",
        400,
        f"invoke data is nested 65 levels deep; {DEPTH_LIMIT}",
    ),
    (
        "POST",
        "/api/functions/raw/nope/invoke",
        b"{}",
        404,
        "function 'nope' of app 'raw' not found",
    ),
    ("POST", "/api/functions/raw/raw-fn/pause", b'{"mode": "x"}', 400, "mode: Input should be"),
    ("GET", "/api/events?page_token=zzz", None, 400, TOKEN_PROBLEM),
    ("GET", f"/api/runs?page_token={BAD_TOKENS[4]}", None, 400, TOKEN_PROBLEM),
    ("GET", f"/api/events?page_token={BAD_TOKENS[6]}", None, 400, TOKEN_PROBLEM),
    ("GET", "/api/runs?limit=0", None, 400, "query.limit: Input should be greater than or equal"),
    ("GET", "/api/runs?limit=1001", None, 400, "query.limit: Input should be less than or equal"),
    ("GET", "/api/events?limit=abc", None, 400, "query.limit: Input should be a valid integer"),
    ("GET", "/api/runs?created_after_ms=1" + "0" * 30, None, 400, "query.created_after_ms: "),
    ("GET", "/api/runs?status=sleepy", None, 400, "unknown run status 'sleepy'"),
    ("GET", "/api/runs/01HZX3K8Q9ZQ5V6W7X8Y9Z0ABC", None, 404, "run '01HZX3K8Q9ZQ5V6W7X8Y9Z0ABC'"),
    ("GET", "/api/runs/a%00b", None, 400, "the path parameter 'run_id' contains a NUL"),
    ("GET", "/api/events?name=a%00b", None, 400, "the query parameter 'name' contains a NUL"),
    ("GET", "/api/events/nope", None, 404, "event 'nope' not found"),
    ("POST", "/api/runs/nope/cancel", b'{"reason": 5}', 400, "reason: Input should be a valid"),
    ("POST", "/api/runs/nope/cancel", b"{}", 404, "run 'nope' not found"),
    ("POST", "/api/runs/nope/replay", b'{"mode": "back"}', 400, "mode: Input should be"),
    ("GET", "/api/nothing", None, 404, "no such path: GET /api/nothing"),
    ("DELETE", "/api/runs", None, 405, "DELETE is not allowed on /api/runs"),
]


async def test_the_http_api_answers_a_clients_mistakes_with_a_4xx_problem(
    control_plane: ControlPlaneProcess, worker: RawWorker
) -> None:
    await _connect(worker)
    base = control_plane.http_url

    for method, path, body, status, part in HTTP_MISTAKES:
        code, reply = await asyncio.to_thread(_http, base, method, path, body)
        assert code == status, (method, path, code, reply)
        assert isinstance(reply, dict), (method, path, reply)
        assert set(reply) == {"error", "message"}, (method, path, reply)
        assert part in reply["message"], (method, path, reply)
        assert _clean(reply["message"]), (method, path, reply)

    # 64 levels are fine; and the server still serves, over HTTP too.
    code, reply = await asyncio.to_thread(_http, base, "POST", "/api/events", _event(_nested(64)))
    assert code == 200, reply
    [run_id] = reply["results"][0]["run_ids"]
    assert (await _execute(worker)).run_id == run_id
    assert await asyncio.to_thread(_http, base, "GET", "/healthz") == (200, {"status": "serving"})
    await _still_serving(control_plane.address)
