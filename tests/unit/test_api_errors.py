"""Engine errors and unexpected failures as the status codes callers receive."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from controlplane.api.errors import server_stream, unary
from controlplane.model.errors import InvalidArgument, NotFound


class Aborted(Exception):
    pass


class FakeContext:
    """Records what the handler aborted with (a real context raises too)."""

    def __init__(self) -> None:
        self.status: tuple[grpc.StatusCode, str] | None = None

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.status = (code, details)
        raise Aborted


def _as_context(context: FakeContext) -> Any:
    return context


class Servicer:
    @unary
    async def Lookup(self, request: str, context: Any) -> str:
        if request == "missing":
            raise NotFound("run 'missing' not found")
        if request == "bug":
            raise KeyError("a bug")
        return request

    @server_stream
    async def Watch(self, request: str, context: Any) -> AsyncIterator[str]:
        yield "first"
        if request == "bad":
            raise InvalidArgument("bad request")
        raise RuntimeError("the database went away")


async def test_an_engine_error_becomes_its_status_code_and_sentence() -> None:
    context = FakeContext()
    with pytest.raises(Aborted):
        await Servicer().Lookup("missing", _as_context(context))
    assert context.status == (grpc.StatusCode.NOT_FOUND, "run 'missing' not found")


async def test_an_unexpected_failure_is_internal_with_a_sentence_not_the_exception() -> None:
    context = FakeContext()
    with pytest.raises(Aborted):
        await Servicer().Lookup("bug", _as_context(context))
    assert context.status == (
        grpc.StatusCode.INTERNAL,
        "the control plane failed while handling Lookup; its log has the details",
    )


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        ("bad", (grpc.StatusCode.INVALID_ARGUMENT, "bad request")),
        (
            "other",
            (
                grpc.StatusCode.INTERNAL,
                "the control plane failed while handling Watch; its log has the details",
            ),
        ),
    ],
)
async def test_a_server_stream_ends_with_the_same_statuses(
    request_: str, status: tuple[grpc.StatusCode, str]
) -> None:
    context = FakeContext()
    received: list[str] = []

    async def watch() -> None:
        async for item in Servicer().Watch(request_, _as_context(context)):
            received.append(item)

    with pytest.raises(Aborted):
        await watch()
    assert received == ["first"]
    assert context.status == status
