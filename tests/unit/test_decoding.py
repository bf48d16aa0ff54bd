"""DecodingInterceptor on an in-process gRPC server, for each kind of method: an
undecodable request is INVALID_ARGUMENT naming its type, a failure is INTERNAL
with a sentence, a method left to its generated base class is UNIMPLEMENTED;
never UNKNOWN with a Python exception's text."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from controlplane.api.decoding import DecodingInterceptor, nul_problem
from tests.support.raw_worker import EOF_MARKER
from tether.v1 import common_pb2
from tether.v1 import run_service_pb2 as rs

SERVICE = "test.Service"
EVENT = common_pb2.Event.FromString


async def _unary(request: common_pb2.Event, context: Any) -> bytes:
    if request.name == "fail":
        raise RuntimeError("the database went away")
    return request.name.encode()


async def _server_stream(request: common_pb2.Event, context: Any) -> AsyncIterator[bytes]:
    yield b"first"
    if request.name == "fail":
        raise RuntimeError("the database went away")


async def _client_stream(requests: AsyncIterator[common_pb2.Event], context: Any) -> bytes:
    names = [request.name async for request in requests]
    if "fail" in names:
        raise RuntimeError("the database went away")
    return ",".join(names).encode()


async def _bidi(requests: AsyncIterator[common_pb2.Event], context: Any) -> AsyncIterator[bytes]:
    async for request in requests:
        if request.name == "fail":
            raise KeyError("a bug")
        yield request.name.encode()


def _not_implemented(request: common_pb2.Event, context: Any) -> bytes:
    # What a generated base class does for a method its servicer leaves out.
    context.set_code(grpc.StatusCode.UNIMPLEMENTED)
    context.set_details("Method not implemented!")
    raise NotImplementedError("Method not implemented!")


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    kinds = {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary, EVENT),
        "ServerStream": grpc.unary_stream_rpc_method_handler(_server_stream, EVENT),
        "ClientStream": grpc.stream_unary_rpc_method_handler(_client_stream, EVENT),
        "Bidi": grpc.stream_stream_rpc_method_handler(_bidi, EVENT),
        "Missing": grpc.unary_unary_rpc_method_handler(_not_implemented, EVENT),
    }
    server = grpc.aio.server(interceptors=[DecodingInterceptor()])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, kinds),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as client:
        yield client
    await server.stop(None)


def _event(name: str) -> bytes:
    return common_pb2.Event(name=name).SerializeToString()


async def _call(channel: grpc.aio.Channel, method: str, *requests: bytes) -> tuple[Any, str]:
    """The method's answer (or its status code) and the status message."""
    raw: Any = channel
    path = f"/{SERVICE}/{method}"
    try:
        if method in ("Unary", "Missing"):
            return await raw.unary_unary(path)(requests[0], timeout=10), ""
        if method == "ServerStream":
            return [item async for item in raw.unary_stream(path)(requests[0], timeout=10)], ""
        call = (raw.stream_unary if method == "ClientStream" else raw.stream_stream)(path)(
            timeout=10
        )
        for request in requests:
            await call.write(request)
        await call.done_writing()
        if method == "ClientStream":
            return await call, ""
        items = []
        while (item := await call.read()) is not EOF_MARKER:
            items.append(item)
        return items, ""
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""


KINDS = ["Unary", "ServerStream", "ClientStream", "Bidi"]


@pytest.mark.parametrize("method", KINDS)
async def test_a_request_that_does_not_decode_is_invalid_argument_naming_its_type(
    channel: grpc.aio.Channel, method: str
) -> None:
    code, message = await _call(channel, method, b"\xff\xff")

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message.endswith("is not a valid tether.v1.Event message: wire format was corrupt"), (
        message
    )


@pytest.mark.parametrize("method", KINDS)
async def test_an_unexpected_failure_is_internal_with_a_sentence(
    channel: grpc.aio.Channel, method: str
) -> None:
    code, message = await _call(channel, method, _event("fail"))

    assert (code, message) == (
        grpc.StatusCode.INTERNAL,
        f"the control plane failed while handling {method}; its log has the details",
    )


async def test_good_requests_go_through(channel: grpc.aio.Channel) -> None:
    assert await _call(channel, "Unary", _event("a")) == (b"a", "")
    assert await _call(channel, "ServerStream", _event("a")) == ([b"first"], "")
    assert await _call(channel, "ClientStream", _event("a"), _event("b")) == (b"a,b", "")
    assert await _call(channel, "Bidi", _event("a"), _event("b")) == ([b"a", b"b"], "")


async def test_text_with_a_nul_character_is_refused_on_a_unary_request(
    channel: grpc.aio.Channel,
) -> None:
    assert await _call(channel, "Unary", _event("a\x00")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "field name of the request contains a NUL character (U+0000), which text cannot hold",
    )


async def test_a_method_left_unimplemented_says_so_in_a_sentence(
    channel: grpc.aio.Channel,
) -> None:
    assert await _call(channel, "Missing", _event("a")) == (
        grpc.StatusCode.UNIMPLEMENTED,
        "this control plane does not implement test.Service/Missing",
    )


def test_nul_problem_names_the_field_by_its_path() -> None:
    hello = common_pb2.FunctionDefinition(id="f")
    hello.triggers.add(event=common_pb2.EventTrigger(name="ok"))
    hello.triggers.add(event=common_pb2.EventTrigger(name="a/b", if_expression="\x00"))
    assert nul_problem(hello, "the Hello") == (
        "field triggers[1].event.if_expression of the Hello contains a NUL character "
        "(U+0000), which text cannot hold"
    )
    assert (
        nul_problem(rs.ListRunsRequest(app_id="shop", statuses=[common_pb2.RUN_STATUS_QUEUED]))
        is None
    )


def test_every_text_an_outcome_stores_is_checked_for_nul() -> None:
    """The cheap check on converted outcomes misses no text the store keeps
    (nul_problem then names the field)."""
    from controlplane.api import convert
    from controlplane.api.decoding import outcome_holds_nul
    from tether.v1 import common_pb2
    from tether.v1 import worker_service_pb2 as ws

    def frames(text: str) -> list[ws.Outcome]:
        error = common_pb2.ErrorInfo(name="E", message=text)
        event_wait = ws.PlannedWait(
            step_id="s", name="w", wait_for_event=ws.WaitForEvent(event="a/b", match=text)
        )
        invoke = ws.PlannedWait(step_id="s", name="i", invoke=ws.Invoke(function_id=text))
        return [
            ws.Outcome(seq=1, execution_id="e", run_id=text, run_completed=ws.RunCompleted()),
            ws.Outcome(
                seq=1, execution_id="e", run_id="r", step_completed=ws.StepCompleted(name=text)
            ),
            ws.Outcome(seq=1, execution_id="e", run_id="r", step_failed=ws.StepFailed(error=error)),
            ws.Outcome(seq=1, execution_id="e", run_id="r", run_failed=ws.RunFailed(error=error)),
            ws.Outcome(
                seq=1, execution_id="e", run_id="r", suspended=ws.Suspended(waits=[event_wait])
            ),
            ws.Outcome(seq=1, execution_id="e", run_id="r", suspended=ws.Suspended(waits=[invoke])),
            ws.Outcome(
                seq=1, execution_id="e", run_id="r", non_determinism=ws.NonDeterminism(message=text)
            ),
        ]

    for clean, dirty in zip(frames("fine"), frames("bad\x00"), strict=True):
        assert not outcome_holds_nul(convert.outcome(clean))
        assert outcome_holds_nul(convert.outcome(dirty)), dirty
