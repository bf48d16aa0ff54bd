"""Administering functions from code: ``app.functions.list/pause/resume``."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from tether import _convert
from tether._function import CATCH_UP_TO_PB
from tether._runs import AdminClient
from tether._triggers import CronTrigger, EventTrigger, Trigger
from tether.v1 import run_service_pb2


class PauseMode(enum.StrEnum):
    """What a paused function does with new events."""

    #: They queue runs that are held until the function is resumed.
    HOLD = "hold"
    #: They start nothing; each is recorded as skipped.
    SKIP = "skip"


_PAUSE_MODE_TO_PB = {
    PauseMode.HOLD: run_service_pb2.PAUSE_MODE_HOLD,
    PauseMode.SKIP: run_service_pb2.PAUSE_MODE_SKIP,
}
_PAUSE_MODE = {v: k for k, v in _PAUSE_MODE_TO_PB.items()}
_CATCH_UP = {v: k for k, v in CATCH_UP_TO_PB.items()}


@dataclass(frozen=True, slots=True)
class FunctionInfo:
    """A function as the control plane knows it."""

    app_id: str
    id: str
    name: str
    triggers: tuple[Trigger, ...]
    #: Workers connected now that serve it.
    connected_workers: int
    registered_at: dt.datetime | None
    updated_at: dt.datetime | None
    #: How it is paused; None when it is not.
    paused: PauseMode | None
    #: The next tick of each cron trigger, in trigger order (None: no next tick).
    next_fires: tuple[dt.datetime | None, ...]


class FunctionsClient(AdminClient):
    """``app.functions``: list, pause and resume the app's functions."""

    async def list(self, *, all_apps: bool = False) -> list[FunctionInfo]:
        """This app's functions (every app's with ``all_apps``), by id."""
        request = run_service_pb2.ListFunctionsRequest(app_id="" if all_apps else self._app_id)
        response = await self._call(self._stub().ListFunctions, request)
        assert isinstance(response, run_service_pb2.ListFunctionsResponse)
        return [function_info(f) for f in response.functions]

    async def pause(self, function_id: str, mode: PauseMode | str = PauseMode.HOLD) -> FunctionInfo:
        """Pause one of this app's functions: its runs start no execution until
        it is resumed. New events queue held runs (``"hold"``) or start nothing
        (``"skip"``). Raises NotFoundError for an unknown function."""
        if mode not in _PAUSE_MODE_TO_PB:
            raise ValueError(f"a pause mode is 'hold' or 'skip', not {mode!r}")
        request = run_service_pb2.PauseFunctionRequest(
            app_id=self._app_id,
            function_id=function_id,
            mode=_PAUSE_MODE_TO_PB[PauseMode(mode)],
        )
        response = await self._call(self._stub().PauseFunction, request)
        assert isinstance(response, run_service_pb2.PauseFunctionResponse)
        return function_info(response.function)

    async def resume(self, function_id: str) -> int:
        """Resume a paused function; returns how many held runs it released."""
        request = run_service_pb2.ResumeFunctionRequest(
            app_id=self._app_id, function_id=function_id
        )
        response = await self._call(self._stub().ResumeFunction, request)
        assert isinstance(response, run_service_pb2.ResumeFunctionResponse)
        return response.released_runs


def function_info(info: run_service_pb2.FunctionInfo) -> FunctionInfo:
    definition = info.definition
    triggers: list[Trigger] = []
    for trigger in definition.triggers:
        if trigger.WhichOneof("kind") == "event":
            triggers.append(EventTrigger(trigger.event.name, trigger.event.if_expression))
        else:
            cron = trigger.cron
            triggers.append(
                CronTrigger(cron.schedule, cron.timezone, _CATCH_UP.get(cron.catch_up, "one"))
            )
    return FunctionInfo(
        app_id=info.app_id,
        id=definition.id,
        name=definition.name or definition.id,
        triggers=tuple(triggers),
        connected_workers=info.connected_workers,
        registered_at=_convert.timestamp(info.registered_at_ms),
        updated_at=_convert.timestamp(info.updated_at_ms),
        paused=_PAUSE_MODE.get(info.paused),
        next_fires=tuple(_convert.timestamp(ms) for ms in info.next_fire_ms),
    )
