"""A worker speaking the wire protocol by hand, frame by frame (no SDK)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import grpc

from tests.support.channels import aio_channel
from tether.v1 import common_pb2
from tether.v1 import worker_service_pb2 as ws
from tether.v1 import worker_service_pb2_grpc as ws_grpc

EOF_MARKER: object = grpc.aio.EOF  # type: ignore[attr-defined]


def definition(
    function_id: str, event: str, retries: int | None = None
) -> common_pb2.FunctionDefinition:
    result = common_pb2.FunctionDefinition(id=function_id)
    result.triggers.add(event=common_pb2.EventTrigger(name=event))
    if retries is not None:
        result.retries = retries
    return result


def hello(
    functions: list[common_pb2.FunctionDefinition],
    *,
    app_id: str = "raw",
    capacity: int = 10,
    protocol_version: int = 1,
) -> ws.WorkerFrame:
    return ws.WorkerFrame(
        hello=ws.Hello(
            protocol_version=protocol_version,
            app_id=app_id,
            instance_id="raw-worker",
            sdk_language="test",
            sdk_version="0",
            functions=functions,
            capacity=capacity,
        )
    )


def outcomes(*items: ws.Outcome) -> ws.WorkerFrame:
    return ws.WorkerFrame(outcomes=ws.Outcomes(outcomes=list(items)))


def payload(value: Any) -> bytes:
    return json.dumps(value).encode()


class RawWorker:
    def __init__(self, address: str, api_key: str | None = None) -> None:
        self.channel = aio_channel(address, api_key)
        self.stub = ws_grpc.WorkerServiceStub(self.channel)
        self.call: Any = self.stub.Connect()  # type: ignore[call-arg]
        # gRPC takes one write at a time on a stream.
        self._writing = asyncio.Lock()

    async def send(self, frame: ws.WorkerFrame) -> None:
        async with self._writing:
            await self.call.write(frame)

    async def receive(self, timeout: float = 10.0) -> ws.ServerFrame | None:
        """The next frame, or None at the end of the stream."""
        frame = await asyncio.wait_for(self.call.read(), timeout)
        if frame is EOF_MARKER:
            return None
        assert isinstance(frame, ws.ServerFrame)
        return frame

    async def receive_kind(self, kind: str, timeout: float = 10.0) -> ws.ServerFrame:
        """The next frame of this kind, skipping pings (and acks unless asked)."""
        while True:
            frame = await self.receive(timeout)
            assert frame is not None, f"the stream ended while waiting for {kind}"
            if frame.WhichOneof("frame") == kind:
                return frame
            if frame.WhichOneof("frame") not in ("ping", "acks"):
                raise AssertionError(f"expected {kind}, got {frame}")

    async def end_status(self, timeout: float = 10.0) -> tuple[grpc.StatusCode, str]:
        """Read (and drop) frames until the stream ends; its status code and
        details. Fails if it has not ended within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        try:
            while await self.receive(max(0.0, deadline - time.monotonic())) is not None:
                pass
        except grpc.aio.AioRpcError as error:
            return error.code(), error.details() or ""
        return await self.call.code(), await self.call.details()

    async def close(self) -> None:
        await self.channel.close(grace=None)
