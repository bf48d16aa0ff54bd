"""The control plane's clock from a synchronous test (ClockService)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc

from tether._durations import DurationLike, to_milliseconds
from tether.v1 import clock_service_pb2 as cs
from tether.v1 import clock_service_pb2_grpc


class Clock:
    """Read the control plane's time; on a virtual clock, move it and turn its
    skipping ahead (to the next timer whenever idle) off and on."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = clock_service_pb2_grpc.ClockServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def now_ms(self) -> int:
        return self.stub.GetTime(cs.GetTimeRequest()).now_ms

    def advance(self, duration: DurationLike) -> int:
        """Move the virtual clock forward; returns the new time (ms)."""
        return self.stub.Advance(cs.AdvanceRequest(by_ms=to_milliseconds(duration))).now_ms

    def set_auto_skip(self, enabled: bool) -> None:
        self.stub.SetAutoSkip(cs.SetAutoSkipRequest(enabled=enabled))

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """In the block the clock moves only at its real pace and by
        :meth:`advance`; skipping ahead resumes as it was when it ends."""
        previous = self.stub.GetTime(cs.GetTimeRequest()).auto_skip
        self.set_auto_skip(False)
        try:
            yield
        finally:
            self.set_auto_skip(previous)
