"""What one worker may declare and send: the limits of a Hello and of a frame,
and that registering a large app never holds up other callers (a real control
plane, workers speaking the protocol)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.processes import ControlPlaneProcess
from tests.support.raw_worker import RawWorker, definition, hello
from tether.v1 import common_pb2
from tether.v1 import worker_service_pb2 as ws

# A freeze (as a quadratic registration once caused) shows as seconds; a
# healthy control plane answers in milliseconds even on a busy machine.
FROZEN_S = 1.0


@pytest.fixture
def control_plane(db_url: str, tmp_path: Path) -> Iterator[ControlPlaneProcess]:
    process = ControlPlaneProcess(db_url, tmp_path).start()
    yield process
    process.stop()


def rich_definition(index: int) -> common_pb2.FunctionDefinition:
    """A function with an expression in every place one may go."""
    result = definition(f"fn-{index}", f"limits/e{index}")
    result.triggers[0].event.if_expression = f"event.data.n != {index}"
    result.idempotency = f"event.data.id + '-{index}'"
    result.cancel_on.add(event="limits/stop", if_expression=f"async.data.n == {index}")
    result.concurrency.add(limit=5, key=f"event.data.user + '{index}'")
    return result


async def rejection(address: str, frame: ws.WorkerFrame) -> ws.Rejected:
    worker = RawWorker(address)
    try:
        await worker.send(frame)
        reply = await worker.receive_kind("rejected")
        return reply.rejected
    finally:
        await worker.close()


async def test_a_hello_over_the_function_limit_is_rejected_naming_it(
    control_plane: ControlPlaneProcess,
) -> None:
    functions = [definition(f"fn-{i}", "limits/go") for i in range(1001)]
    rejected = await rejection(control_plane.address, hello(functions, app_id="big"))
    assert rejected.code == ws.REJECT_CODE_INVALID_HELLO
    assert rejected.reason == "app 'big' declares 1,001 functions; the limit is 1,000 per app"


async def test_a_hello_reannouncing_too_many_executions_is_rejected_naming_the_limit(
    control_plane: ControlPlaneProcess,
) -> None:
    frame = hello([definition("fn", "limits/go")], app_id="busy")
    frame.hello.held.extend(
        ws.HeldExecution(execution_id=f"{i:032x}", run_id=f"run-{i}") for i in range(10_001)
    )
    rejected = await rejection(control_plane.address, frame)
    assert rejected.code == ws.REJECT_CODE_INVALID_HELLO
    assert rejected.reason == ("the Hello re-announces 10,001 held executions; the limit is 10,000")


async def test_an_oversized_definition_is_rejected_naming_the_function_and_limit(
    control_plane: ControlPlaneProcess,
) -> None:
    huge = definition("huge", "limits/go")
    huge.triggers[0].event.if_expression = "true || " + " || ".join(["true"] * 20_000)
    triggers = definition("many-triggers", "limits/go")
    for i in range(40):
        triggers.triggers.add(event=common_pb2.EventTrigger(name=f"limits/t{i}"))

    rejected = await rejection(control_plane.address, hello([huge]))
    assert rejected.code == ws.REJECT_CODE_INVALID_FUNCTION
    assert rejected.reason.startswith("function 'huge': its definition is ")
    assert rejected.reason.endswith("; the limit is 64 KiB")
    rejected = await rejection(control_plane.address, hello([triggers]))
    assert rejected.reason == "function 'many-triggers': 41 triggers; the limit is 32"


async def test_an_app_cannot_grow_past_the_limit_over_several_hellos(
    control_plane: ControlPlaneProcess,
) -> None:
    first = RawWorker(control_plane.address)
    try:
        await first.send(hello([definition(f"a-{i}", "limits/go") for i in range(600)]))
        assert (await first.receive_kind("welcome")).welcome.session_id
        others = [definition(f"b-{i}", "limits/go") for i in range(600)]
        rejected = await rejection(control_plane.address, hello(others))
        assert rejected.code == ws.REJECT_CODE_INVALID_HELLO
        assert rejected.reason == "app 'raw' would have 1,200 functions; the limit is 1,000 per app"
    finally:
        await first.close()


async def test_registering_a_large_app_does_not_hold_up_health_checks(
    control_plane: ControlPlaneProcess,
) -> None:
    channel = grpc.aio.insecure_channel(control_plane.address)
    health = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service="")
    slowest = 0.0
    registered = asyncio.Event()

    async def probe() -> int:
        nonlocal slowest
        answered = 0
        while not registered.is_set():
            started = time.monotonic()
            reply = await health.Check(request, timeout=10)
            slowest = max(slowest, time.monotonic() - started)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            answered += 1
            await asyncio.sleep(0.005)
        return answered

    try:
        probing = asyncio.create_task(probe())
        # Twice, so that the second registration replaces 1,000 stored functions.
        for _ in range(2):
            worker = RawWorker(control_plane.address)
            await worker.send(hello([rich_definition(i) for i in range(1000)]))
            assert (await worker.receive_kind("welcome", timeout=60)).welcome.session_id
            await worker.close()
        registered.set()
        answered = await probing
    finally:
        await channel.close(grace=None)
    assert answered > 0
    assert slowest < FROZEN_S, f"a health check took {slowest:.3f} s during registration"


async def test_a_frame_over_the_announced_limit_ends_the_stream_naming_it(
    control_plane: ControlPlaneProcess,
) -> None:
    worker = RawWorker(control_plane.address)
    try:
        await worker.send(hello([definition("fn", "limits/go")]))
        welcome = (await worker.receive_kind("welcome")).welcome
        limit = welcome.limits.max_frame_bytes
        oversized = ws.WorkerFrame(
            heartbeat=ws.Heartbeat(execution_ids=["x" * 1024] * (limit // 1024 + 1))
        )
        await worker.send(oversized)
        code, details = await worker.end_status()
    finally:
        await worker.close()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert re.fullmatch(
        r"a frame of 64\.\d MiB; the limit is 64 MiB \(Welcome\.limits\.max_frame_bytes\): "
        r"split outcomes across frames",
        details,
    ), details
