"""Administering runs from code: ``app.runs.get/list/cancel/replay/wait``."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterable

import grpc

from tether import _convert
from tether._channel import ConnectionProvider
from tether._models import Run, RunPage, RunStatus
from tether.v1 import run_service_pb2, run_service_pb2_grpc


def _ms(value: dt.datetime | None) -> int:
    if value is None:
        return 0
    return int((value if value.tzinfo else value.astimezone()).timestamp() * 1000)


class AdminClient:
    """Calls to the RunService on the app's connection, errors translated."""

    def __init__(self, app_id: str, connection: ConnectionProvider) -> None:
        self._app_id = app_id
        self._connection = connection

    def _stub(self) -> run_service_pb2_grpc.RunServiceAsyncStub:
        return run_service_pb2_grpc.RunServiceStub(self._connection().aio_channel())

    async def _call(self, method: Callable[..., object], request: object) -> object:
        connection = self._connection()
        try:
            return await method(request, metadata=connection.metadata)  # type: ignore[misc]
        except grpc.RpcError as error:
            raise connection.error(error) from None


class RunsClient(AdminClient):
    """``app.runs``: get, list, cancel, replay and wait for runs."""

    async def get(self, run_id: str) -> Run:
        """A run with its steps, history and event. Raises NotFoundError."""
        response = await self._call(
            self._stub().GetRun, run_service_pb2.GetRunRequest(run_id=run_id)
        )
        assert isinstance(response, run_service_pb2.GetRunResponse)
        return _convert.run_detail(response)

    async def list(
        self,
        *,
        function_id: str | None = None,
        status: RunStatus | str | Iterable[RunStatus | str] | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        limit: int = 50,
        page_token: str = "",
        all_apps: bool = False,
    ) -> RunPage:
        """Runs of this app (of every app with ``all_apps``), newest first."""
        statuses: list[RunStatus] = []
        if status is not None:
            items = [status] if isinstance(status, str) else list(status)
            statuses = [RunStatus(s) for s in items]
        request = run_service_pb2.ListRunsRequest(
            app_id="" if all_apps else self._app_id,
            function_id=function_id or "",
            statuses=[_convert.RUN_STATUS_TO_PB[s] for s in statuses],
            created_after_ms=_ms(created_after),
            created_before_ms=_ms(created_before),
            page_size=limit,
            page_token=page_token,
        )
        response = await self._call(self._stub().ListRuns, request)
        assert isinstance(response, run_service_pb2.ListRunsResponse)
        return RunPage([_convert.run(r) for r in response.runs], response.next_page_token)

    async def cancel(self, run_id: str, reason: str = "") -> Run:
        """Cancel a run: it starts no further step."""
        request = run_service_pb2.CancelRunRequest(
            run_id=run_id, reason=reason or "cancelled from the SDK"
        )
        response = await self._call(self._stub().CancelRun, request)
        assert isinstance(response, run_service_pb2.CancelRunResponse)
        return _convert.run(response.run)

    async def cancel_many(
        self,
        *,
        function_id: str,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        reason: str = "",
    ) -> int:
        """Cancel every unfinished run of one of this app's functions created in
        a time range; returns how many were cancelled."""
        request = run_service_pb2.CancelRunsRequest(
            app_id=self._app_id,
            function_id=function_id,
            created_after_ms=_ms(created_after),
            created_before_ms=_ms(created_before),
            reason=reason or "cancelled in bulk from the SDK",
        )
        response = await self._call(self._stub().CancelRuns, request)
        assert isinstance(response, run_service_pb2.CancelRunsResponse)
        return response.cancelled

    async def replay(self, run_id: str, *, from_failed_step: bool = False) -> Run:
        """Start a new run with the same event(s); with ``from_failed_step`` the
        steps that completed before the failed one are kept."""
        mode = (
            run_service_pb2.REPLAY_MODE_FROM_FAILED_STEP
            if from_failed_step
            else run_service_pb2.REPLAY_MODE_FROM_START
        )
        response = await self._call(
            self._stub().ReplayRun, run_service_pb2.ReplayRunRequest(run_id=run_id, mode=mode)
        )
        assert isinstance(response, run_service_pb2.ReplayRunResponse)
        return _convert.run(response.run)

    async def wait(
        self,
        run_id: str,
        *,
        until: RunStatus | str | Iterable[RunStatus | str] | None = None,
        timeout: float | None = None,
    ) -> Run:
        """Wait until the run finishes and return it. With ``until``, return as
        soon as the run has reached one of those statuses instead (or finished
        without reaching them); the run returned is read then, so a run that
        moves on quickly may already show a later status. Raises TimeoutError
        after ``timeout`` seconds."""
        stub = self._stub()
        connection = self._connection()
        metadata = connection.metadata
        items = [until] if isinstance(until, str) else list(until or ())
        wanted = {RunStatus(s) for s in items}
        last: Run | None = None

        async def follow() -> Run | None:
            nonlocal last
            call = stub.WaitRun(run_service_pb2.WaitRunRequest(run_id=run_id), metadata=metadata)
            async for update in call:
                last = _convert.run(update.run)
                if last.status in wanted:
                    call.cancel()
                    return last
            return last

        try:
            result = await asyncio.wait_for(follow(), timeout)
        except grpc.RpcError as error:
            raise connection.error(error) from None
        except TimeoutError:
            state = f" (still {last.status.value})" if last else ""
            goal = "become " + " or ".join(sorted(s.value for s in wanted)) if wanted else "finish"
            raise TimeoutError(f"run {run_id} did not {goal} within {timeout} s{state}") from None
        if result is None or not (result.status.is_finished or result.status in wanted):
            raise TimeoutError(f"the control plane stopped reporting on run {run_id}")
        return await self.get(run_id)
