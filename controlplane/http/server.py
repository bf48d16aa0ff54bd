"""The HTTP side of the control plane (port 4771): the dev UI, the JSON API,
/metrics and /healthz, served by uvicorn on the control plane's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Generator
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from controlplane import __version__
from controlplane.access.environments import HostedEnvironments
from controlplane.access.keys import KeyRing
from controlplane.config import TlsFiles
from controlplane.http import problems
from controlplane.http.api import CALLER_SCOPE_KEY, router
from controlplane.http.schemas import Problem
from controlplane.model.access import DEFAULT_ENVIRONMENT, Role
from controlplane.model.errors import (
    EngineError,
    FailedPrecondition,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    Unavailable,
)

log = logging.getLogger("tether.http")

STATIC = Path(__file__).parent / "static"
RenderMetrics = Callable[[], Awaitable[tuple[bytes, str]]]

_ERROR_STATUS: dict[type[EngineError], tuple[int, str]] = {
    InvalidArgument: (400, "invalid_argument"),
    NotFound: (404, "not_found"),
    FailedPrecondition: (409, "failed_precondition"),
    LimitExceeded: (413, "limit_exceeded"),
    Unavailable: (503, "unavailable"),
}


def build_app(
    environments: HostedEnvironments,
    *,
    keys: KeyRing,
    metrics: RenderMetrics | None = None,
    metrics_need_key: bool = False,
) -> FastAPI:
    """The ASGI application: UI at /, the API under /api (each call on the
    environment of its key), /metrics (open unless ``metrics_need_key``), /healthz."""
    app = FastAPI(
        title="Tether",
        version=__version__,
        summary="The control plane's JSON API (what the dev UI uses).",
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
        responses={
            400: {"model": Problem, "description": "Invalid request"},
            404: {"model": Problem, "description": "Not found"},
        },
    )
    app.state.environments = environments
    app.state.keys = keys
    engine = environments.engine(DEFAULT_ENVIRONMENT)
    app.include_router(router)
    app.add_middleware(
        _Authorize, keys=keys, environments=environments, metrics_need_key=metrics_need_key
    )

    @app.exception_handler(EngineError)
    async def engine_error(_: Request, error: EngineError) -> JSONResponse:
        status, code = next(
            (v for k, v in _ERROR_STATUS.items() if isinstance(error, k)), (500, "internal")
        )
        return _problem(status, code, str(error))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        return problems.invalid_request(error)

    @app.exception_handler(HTTPException)
    async def http_refusal(request: Request, error: HTTPException) -> JSONResponse:
        return problems.http_error(request, error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        return problems.unexpected(request, error)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers (whatever the database does)."""
        return {"status": "serving"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """Readiness: the database answers and the control plane is not stopping."""
        if engine.ready:
            return JSONResponse({"status": "ready"})
        return _problem(503, "unavailable", "not ready: database unavailable or shutting down")

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        if metrics is None:
            return Response("metrics are off\n", status_code=404, media_type="text/plain")
        body, content_type = await metrics()
        return Response(body, media_type=content_type)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/ui", StaticFiles(directory=STATIC), name="ui")
    return app


def _problem(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(Problem(error=code, message=message).model_dump(), status_code=status)


def route_role(method: str, path: str) -> Role | None:
    """The role a call of the JSON API needs: reading is ``read``, sending
    events ``send``, keys and anything else that changes something ``admin``;
    ``/api/me`` only a valid key (None)."""
    if path == "/api/me":
        return None
    if path == "/api/keys" or path.startswith("/api/keys/"):
        return Role.ADMIN
    if method in ("GET", "HEAD"):
        return Role.READ
    if path == "/api/events":
        return Role.SEND
    return Role.ADMIN


class _Authorize(BaseHTTPMiddleware):
    """/api needs ``Authorization: Bearer KEY`` of a role that allows the call
    (when any key is configured or stored)."""

    def __init__(
        self,
        app: object,
        keys: KeyRing,
        environments: HostedEnvironments,
        metrics_need_key: bool = False,
    ) -> None:
        super().__init__(app)  # type: ignore[arg-type]
        self._keys = keys
        self._environments = environments
        self._metrics_need_key = metrics_need_key

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        path = request.url.path
        metrics = path == "/metrics" and self._metrics_need_key
        if (path.startswith("/api/") and path != "/api/openapi.json") or metrics:
            try:
                caller = await self._keys.authenticate(request.headers.get("authorization"))
                if caller is not None:
                    await self._environments.ensure(caller.environment)
            except Unavailable as error:  # a key not yet in memory, and no database
                return _problem(503, "unavailable", str(error))
            if caller is None:
                return _problem(401, "unauthenticated", "send 'Authorization: Bearer <API key>'")
            needed = route_role(request.method, path)
            if needed is not None and not caller.may(needed):
                refusal = caller.refusal(f"{request.method} {path}", needed)
                return _problem(403, "permission_denied", refusal)
            if metrics and caller.environment != DEFAULT_ENVIRONMENT:
                return _problem(
                    403,
                    "permission_denied",
                    "GET /metrics covers every environment: it needs a key of the default one",
                )
            request.scope[CALLER_SCOPE_KEY] = caller
        return await call_next(request)


class _Server(uvicorn.Server):
    # The control plane handles signals itself.
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpServer:
    """uvicorn on a socket bound here (so port 0 works and a busy port fails at once).

    With ``tls`` it serves HTTPS with the gRPC port's certificate and key; with its
    ``client_ca`` too, every connection must present a client certificate signed by
    that CA (browsers included), as on the gRPC port.
    """

    def __init__(self, app: FastAPI, host: str, port: int, *, tls: TlsFiles | None = None) -> None:
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET  # ::1 is IPv6
            self._socket = socket.create_server((host, port), family=family)
        except OSError as error:
            raise OSError(
                error.errno, f"HTTP port {port}: {error.strerror} (choose another with --http-port)"
            ) from None
        self.port: int = self._socket.getsockname()[1]
        # The control plane logs what matters (address, errors); uvicorn's own
        # start and stop lines would only repeat it.
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        self.tls = tls
        client_ca = tls.client_ca if tls is not None else None
        self._server = _Server(
            uvicorn.Config(
                app,
                log_config=None,
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=2,
                ssl_certfile=tls.cert if tls is not None else None,
                ssl_keyfile=tls.key if tls is not None else None,
                ssl_ca_certs=client_ca,
                ssl_cert_reqs=ssl.CERT_REQUIRED if client_ca is not None else ssl.CERT_NONE,
            )
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the HTTP server stopped while starting")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        if self._task is None:
            self._socket.close()
            return
        self._server.should_exit = True
        await self._task
        self._task = None
