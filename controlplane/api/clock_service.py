"""ClockService: moving a virtual clock (tests, time-skipping development)."""

from __future__ import annotations

from typing import Any

import grpc

from controlplane.api.auth import InCallersEnvironment
from controlplane.api.errors import unary
from controlplane.engine.clock import Clock, VirtualClock
from controlplane.model.errors import FailedPrecondition
from tether.v1 import clock_service_pb2 as cs
from tether.v1 import clock_service_pb2_grpc as cs_grpc

Context = grpc.aio.ServicerContext[Any, cs.GetTimeResponse]


class ClockServicer(InCallersEnvironment, cs_grpc.ClockServiceServicer):
    @property
    def _clock(self) -> Clock:
        return self._engine.clock

    def _virtual(self) -> VirtualClock:
        if not isinstance(self._clock, VirtualClock):
            raise FailedPrecondition(
                "this control plane runs on the system clock; start it with --clock virtual"
            )
        return self._clock

    def _time(self) -> cs.GetTimeResponse:
        clock = self._clock
        auto = clock.auto_skip if isinstance(clock, VirtualClock) else False
        return cs.GetTimeResponse(now_ms=clock.now_ms(), auto_skip=auto)

    @unary
    async def GetTime(self, request: cs.GetTimeRequest, context: Context) -> cs.GetTimeResponse:
        return self._time()

    @unary
    async def Advance(self, request: cs.AdvanceRequest, context: Context) -> cs.GetTimeResponse:
        await self._engine.advance_clock(request.by_ms)
        return self._time()

    @unary
    async def SetAutoSkip(
        self, request: cs.SetAutoSkipRequest, context: Context
    ) -> cs.GetTimeResponse:
        self._virtual().auto_skip = request.enabled
        self._engine.dispatcher.wake()
        return self._time()
