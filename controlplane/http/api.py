"""The JSON HTTP API under /api: what the dev UI uses, documented by OpenAPI at
/api/openapi.json. Handlers translate and delegate to the engine."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.routing import APIRoute

from controlplane.access.environments import HostedEnvironments
from controlplane.access.keys import KeyRing
from controlplane.engine.clock import SystemClock
from controlplane.engine.engine import Engine
from controlplane.engine.validation import MAX_JSON_DEPTH, json_depth_over
from controlplane.http import schemas as s
from controlplane.model import (
    EventFilter,
    EventInput,
    PauseMode,
    ReplayMode,
    RunFilter,
    RunStatus,
)
from controlplane.model.access import Caller, Role
from controlplane.model.errors import InvalidArgument

_STATUSES = {status.value for status in RunStatus}
# The levels a body adds around its payloads: an array of events, the event.
_BODY_ENVELOPE = 2


class CheckedRoute(APIRoute):
    """Checks made before FastAPI reads a request: no path or query parameter
    holds a NUL character (no database stores one), and a body nests no deeper
    than its payloads may (parsing one 10,000 levels deep would exhaust Python's
    recursion: FastAPI's answer is then a bare "error parsing the body")."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            params = [("path", k, v) for k, v in request.path_params.items()]
            params += [("query", k, v) for k, v in request.query_params.multi_items()]
            for where, name, value in params:
                if isinstance(value, str) and "\x00" in value:
                    raise InvalidArgument(
                        f"the {where} parameter {name!r} contains a NUL character (U+0000), "
                        "which text cannot hold"
                    )
            depth = json_depth_over(await request.body(), MAX_JSON_DEPTH + _BODY_ENVELOPE)
            if depth:
                raise InvalidArgument(
                    f"the request body is nested {depth} levels deep; payloads (event data "
                    f"and user, invoke data) may nest at most {MAX_JSON_DEPTH} levels of arrays "
                    "and objects"
                )
            return await handler(request)

        return checked


router = APIRouter(prefix="/api", route_class=CheckedRoute)


#: Where the authorization middleware leaves the caller, in the request's scope.
CALLER_SCOPE_KEY = "tether.caller"


def _caller(request: Request) -> Caller:
    caller: Caller = request.scope[CALLER_SCOPE_KEY]
    return caller


CallerDep = Annotated[Caller, Depends(_caller)]


def _engine(request: Request, caller: CallerDep) -> Engine:
    """The engine of the caller's environment."""
    environments: HostedEnvironments = request.app.state.environments
    return environments.engine(caller.environment)


def _keys(request: Request) -> KeyRing:
    keys: KeyRing = request.app.state.keys
    return keys


EngineDep = Annotated[Engine, Depends(_engine)]
KeysDep = Annotated[KeyRing, Depends(_keys)]
PageToken = Annotated[str, Query(description="next_page_token of the previous page")]
Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page (at most 1,000).")]
# A time filter: any int64, as the gRPC API takes (a larger one no database stores).
TimeMs = Annotated[int, Query(ge=s.INT64_MIN, le=s.INT64_MAX)]


# -- functions ----------------------------------------------------------------------


@router.get("/functions", tags=["functions"])
async def list_functions(engine: EngineDep, app_id: str = "") -> s.FunctionList:
    """Registered functions: triggers (with each cron trigger's next tick), options,
    connected workers and whether they are paused."""
    infos = await engine.list_functions(app_id)
    return s.FunctionList(functions=[s.function_out(info) for info in infos])


@router.post("/functions/{app_id}/{function_id}/invoke", tags=["functions"])
async def invoke_function(
    engine: EngineDep, app_id: str, function_id: str, body: s.InvokeIn
) -> s.InvokeOut:
    """Start a run of the function now, with ``data`` as its event's data
    (event name ``tether/function.invoked``), whatever its triggers."""
    run_id, event_id = await engine.invoke_function(
        app_id, function_id, json.dumps(body.data).encode()
    )
    return s.InvokeOut(run_id=run_id, event_id=event_id)


@router.post("/functions/{app_id}/{function_id}/pause", tags=["functions"])
async def pause_function(
    engine: EngineDep, app_id: str, function_id: str, body: s.PauseIn
) -> s.FunctionOne:
    """Start none of the function's runs until it is resumed."""
    info = await engine.pause_function(app_id, function_id, PauseMode(body.mode))
    return s.FunctionOne(function=s.function_out(info))


@router.post("/functions/{app_id}/{function_id}/resume", tags=["functions"])
async def resume_function(engine: EngineDep, app_id: str, function_id: str) -> s.ResumeOut:
    """Resume a paused function; its held runs start."""
    info, released = await engine.resume_function(app_id, function_id)
    return s.ResumeOut(function=s.function_out(info), released=released)


# -- events -------------------------------------------------------------------------


@router.post("/events", tags=["events"])
async def send_events(
    engine: EngineDep,
    body: s.EventIn | list[s.EventIn],
    traceparent: Annotated[
        str | None, Header(description="W3C trace context: the events' spans become its children.")
    ] = None,
) -> s.SendEventsOut:
    """Send one event (an object) or several (an array), as EventService.Send does."""
    batch = body if isinstance(body, list) else [body]
    inputs = [
        EventInput(
            id=event.id,
            name=event.name,
            data=json.dumps(event.data).encode(),
            user=json.dumps(event.user).encode() if event.user is not None else b"",
            ts_ms=event.ts_ms,
        )
        for event in batch
    ]
    results = await engine.send_events(inputs, traceparent)
    return s.SendEventsOut(results=[s.send_result_out(r) for r in results])


@router.get("/events", tags=["events"])
async def list_events(
    engine: EngineDep,
    name: Annotated[str, Query(description="Only events of this exact name.")] = "",
    received_after_ms: TimeMs = 0,
    received_before_ms: TimeMs = 0,
    limit: Limit = 50,
    page_token: PageToken = "",
) -> s.EventPage:
    """Events, newest first."""
    page = await engine.list_events(
        EventFilter(
            name=name,
            received_after_ms=received_after_ms,
            received_before_ms=received_before_ms,
        ),
        limit,
        page_token,
    )
    return s.EventPage(events=[s.event_out(e) for e in page.items], next_page_token=page.next_token)


@router.get("/events/{event_id}", tags=["events"])
async def get_event(engine: EngineDep, event_id: str) -> s.EventDetailOut:
    """An event, the runs it started and the functions it matched that skipped it."""
    return s.event_detail_out(await engine.get_event(event_id))


# -- runs ---------------------------------------------------------------------------


@router.get("/runs", tags=["runs"])
async def list_runs(
    engine: EngineDep,
    app_id: str = "",
    function_id: str = "",
    status: Annotated[
        str, Query(description="Comma-separated statuses, e.g. failed,cancelled.")
    ] = "",
    created_after_ms: TimeMs = 0,
    created_before_ms: TimeMs = 0,
    limit: Limit = 50,
    page_token: PageToken = "",
) -> s.RunPage:
    """Runs, newest first."""
    statuses = [part for part in status.split(",") if part]
    unknown = [part for part in statuses if part not in _STATUSES]
    if unknown:
        raise InvalidArgument(
            f"unknown run status {unknown[0]!r}: use one of {', '.join(sorted(_STATUSES))}"
        )
    page = await engine.list_runs(
        RunFilter(
            app_id=app_id,
            function_id=function_id,
            statuses=tuple(RunStatus(part) for part in statuses),
            created_after_ms=created_after_ms,
            created_before_ms=created_before_ms,
        ),
        limit,
        page_token,
    )
    return s.RunPage(runs=[s.run_out(r) for r in page.items], next_page_token=page.next_token)


@router.get("/runs/{run_id}", tags=["runs"])
async def get_run(engine: EngineDep, run_id: str) -> s.RunDetailOut:
    """A run with its events, steps, history and timeline."""
    return s.run_detail_out(await engine.get_run(run_id))


@router.post("/runs/{run_id}/cancel", tags=["runs"])
async def cancel_run(engine: EngineDep, run_id: str, body: s.CancelIn | None = None) -> s.RunOne:
    """Cancel an unfinished run; returns once its worker starts no further step."""
    reason = body.reason if body is not None and body.reason else "cancelled from the HTTP API"
    return s.RunOne(run=s.run_out(await engine.cancel_run(run_id, reason)))


@router.post("/runs/{run_id}/replay", tags=["runs"])
async def replay_run(engine: EngineDep, run_id: str, body: s.ReplayIn | None = None) -> s.RunOne:
    """Start a new run with the same event(s): from the start, or keeping the steps
    that completed before the one that failed."""
    mode = ReplayMode(body.mode if body is not None else "from_start")
    return s.RunOne(run=s.run_out(await engine.replay_run(run_id, mode)))


# -- access -------------------------------------------------------------------------

# Keys are stamped on the wall clock, whatever clock the engines run on.
_WALL = SystemClock()


@router.get("/me", tags=["access"])
async def who_am_i(caller: CallerDep) -> s.CallerOut:
    """The environment and role of the key sent (any valid key may ask): the UI
    offers only what the role allows."""
    return s.caller_out(caller)


@router.get("/keys", tags=["access"])
async def list_keys(
    keys: KeysDep, caller: CallerDep, include_revoked: bool = False
) -> s.ApiKeyList:
    """The API keys of the caller's environment, never their secrets (admin)."""
    found = await keys.list(include_revoked=include_revoked, environment=caller.environment)
    return s.ApiKeyList(keys=[s.api_key_out(key) for key in found])


@router.post("/keys", tags=["access"])
async def create_key(keys: KeysDep, caller: CallerDep, body: s.ApiKeyIn) -> s.ApiKeyCreated:
    """A new key of the caller's environment; its secret is in this response only (admin)."""
    key, secret = await keys.create(
        body.name,
        Role(body.role),
        tuple(body.apps),
        now_ms=_WALL.now_ms(),
        environment=caller.environment,
    )
    return s.ApiKeyCreated(key=s.api_key_out(key), secret=secret)


@router.post("/keys/{key_id}/rotate", tags=["access"])
async def rotate_key(keys: KeysDep, caller: CallerDep, key_id: str) -> s.ApiKeyCreated:
    """A new secret for a key's name, role and apps; the old one is revoked (admin)."""
    key, secret = await keys.rotate(key_id, now_ms=_WALL.now_ms(), environment=caller.environment)
    return s.ApiKeyCreated(key=s.api_key_out(key), secret=secret)


@router.post("/keys/{key_id}/revoke", tags=["access"])
async def revoke_key(keys: KeysDep, caller: CallerDep, key_id: str) -> dict[str, str]:
    """Revoke a key: calls with it are refused from now on (admin)."""
    await keys.revoke(key_id, now_ms=_WALL.now_ms(), environment=caller.environment)
    return {"revoked": key_id}
