"""RunService: reading and administering runs, functions and events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from controlplane.api import convert
from controlplane.api.auth import InCallersEnvironment
from controlplane.api.errors import server_stream, unary
from controlplane.model import EventFilter, ReplayMode, RunFilter
from controlplane.model.errors import InvalidArgument
from tether.v1 import run_service_pb2 as rs
from tether.v1 import run_service_pb2_grpc as rs_grpc

Context = grpc.aio.ServicerContext[Any, Any]

_REPLAY_MODES = {
    rs.REPLAY_MODE_UNSPECIFIED: ReplayMode.FROM_START,
    rs.REPLAY_MODE_FROM_START: ReplayMode.FROM_START,
    rs.REPLAY_MODE_FROM_FAILED_STEP: ReplayMode.FROM_FAILED_STEP,
}


def _require_id(value: str, what: str) -> str:
    if not value:
        raise InvalidArgument(f"{what} is required")
    return value


class RunServicer(InCallersEnvironment, rs_grpc.RunServiceServicer):
    @unary
    async def GetRun(self, request: rs.GetRunRequest, context: Context) -> rs.GetRunResponse:
        detail = await self._engine.get_run(_require_id(request.run_id, "run_id"))
        return rs.GetRunResponse(
            run=convert.run_message(detail.run),
            events=[convert.event_message(e) for e in detail.events],
            steps=[convert.step_record(s) for s in detail.steps],
            history=[convert.history_entry(h) for h in detail.history],
        )

    @unary
    async def ListRuns(self, request: rs.ListRunsRequest, context: Context) -> rs.ListRunsResponse:
        try:
            statuses = tuple(convert.RUN_STATUS_FROM_PB[s] for s in request.statuses)
        except KeyError:
            raise InvalidArgument("unknown run status in the filter") from None
        flt = RunFilter(
            app_id=request.app_id,
            function_id=request.function_id,
            statuses=statuses,
            created_after_ms=request.created_after_ms,
            created_before_ms=request.created_before_ms,
        )
        page = await self._engine.list_runs(flt, request.page_size, request.page_token)
        return rs.ListRunsResponse(
            runs=[convert.run_message(r) for r in page.items], next_page_token=page.next_token
        )

    @unary
    async def CancelRun(
        self, request: rs.CancelRunRequest, context: Context
    ) -> rs.CancelRunResponse:
        run = await self._engine.cancel_run(
            _require_id(request.run_id, "run_id"), request.reason or "cancelled by API"
        )
        return rs.CancelRunResponse(run=convert.run_message(run))

    @unary
    async def CancelRuns(
        self, request: rs.CancelRunsRequest, context: Context
    ) -> rs.CancelRunsResponse:
        count = await self._engine.cancel_runs(
            request.app_id,
            request.function_id,
            request.created_after_ms,
            request.created_before_ms,
            request.reason or "cancelled in bulk",
        )
        return rs.CancelRunsResponse(cancelled=count)

    @unary
    async def ReplayRun(
        self, request: rs.ReplayRunRequest, context: Context
    ) -> rs.ReplayRunResponse:
        mode = _REPLAY_MODES.get(request.mode)
        if mode is None:
            raise InvalidArgument(f"unknown replay mode {request.mode}")
        run = await self._engine.replay_run(_require_id(request.run_id, "run_id"), mode)
        return rs.ReplayRunResponse(run=convert.run_message(run))

    @server_stream
    async def WaitRun(
        self, request: rs.WaitRunRequest, context: Context
    ) -> AsyncIterator[rs.WaitRunResponse]:
        async for run in self._engine.watch_run(_require_id(request.run_id, "run_id")):
            yield rs.WaitRunResponse(run=convert.run_message(run))

    @unary
    async def ListFunctions(
        self, request: rs.ListFunctionsRequest, context: Context
    ) -> rs.ListFunctionsResponse:
        infos = await self._engine.list_functions(request.app_id)
        return rs.ListFunctionsResponse(functions=[convert.function_info(i) for i in infos])

    @unary
    async def PauseFunction(
        self, request: rs.PauseFunctionRequest, context: Context
    ) -> rs.PauseFunctionResponse:
        mode = convert.PAUSE_MODE_FROM_PB.get(request.mode)
        if mode is None:
            raise InvalidArgument(f"unknown pause mode {request.mode}")
        info = await self._engine.pause_function(request.app_id, request.function_id, mode)
        return rs.PauseFunctionResponse(function=convert.function_info(info))

    @unary
    async def ResumeFunction(
        self, request: rs.ResumeFunctionRequest, context: Context
    ) -> rs.ResumeFunctionResponse:
        info, released = await self._engine.resume_function(request.app_id, request.function_id)
        return rs.ResumeFunctionResponse(
            function=convert.function_info(info), released_runs=released
        )

    @unary
    async def ListEvents(
        self, request: rs.ListEventsRequest, context: Context
    ) -> rs.ListEventsResponse:
        flt = EventFilter(
            name=request.name,
            received_after_ms=request.received_after_ms,
            received_before_ms=request.received_before_ms,
        )
        page = await self._engine.list_events(flt, request.page_size, request.page_token)
        return rs.ListEventsResponse(
            events=[convert.stored_event(e) for e in page.items], next_page_token=page.next_token
        )

    @unary
    async def GetEvent(self, request: rs.GetEventRequest, context: Context) -> rs.GetEventResponse:
        detail = await self._engine.get_event(_require_id(request.event_id, "event_id"))
        return rs.GetEventResponse(
            event=convert.stored_event(detail.event),
            runs=[convert.run_message(r) for r in detail.runs],
            skipped=[convert.skipped_run(s) for s in detail.skipped],
        )
