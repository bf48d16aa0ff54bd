"""The control plane as one object: store, engine and gRPC server, started and
stopped together."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from grpc_health.v1 import health_pb2

from controlplane import __version__
from controlplane.access.environments import HostedEnvironments, store_location
from controlplane.access.keys import KeyRing
from controlplane.api.server import GrpcServer, build_server
from controlplane.config import Config
from controlplane.engine.clock import Clock, SystemClock, VirtualClock
from controlplane.engine.engine import Engine
from controlplane.engine.observer import Observers
from controlplane.engine.settings import EngineSettings
from controlplane.model.access import DEFAULT_ENVIRONMENT, FOREVER
from controlplane.store import Store, migrate, open_store
from controlplane.telemetry import Metrics, RunTracer

if TYPE_CHECKING:
    from controlplane.http import HttpServer

log = logging.getLogger("tether")

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ControlPlane:
    def __init__(self, config: Config, *, tracer: RunTracer | None = None) -> None:
        self.config = config
        self._tracer = tracer
        self.store: Store | None = None
        self.engine: Engine | None = None
        self.grpc: GrpcServer | None = None
        self.http: HttpServer | None = None
        self.metrics: Metrics | None = None
        self._stopped = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self.keys: KeyRing | None = None
        self.environments: HostedEnvironments | None = None
        self._run_tracer: RunTracer | None = None

    @property
    def port(self) -> int:
        assert self.grpc is not None, "not started"
        return self.grpc.port

    @property
    def http_port(self) -> int | None:
        """The HTTP port (UI, JSON API, /metrics), None when HTTP is off."""
        return self.http.port if self.http is not None else None

    async def start(self) -> None:
        config = self.config
        # Shared by every environment's engine, and shut down by stop().
        self._run_tracer = self._tracer or RunTracer.from_environment()
        # GET /metrics renders it (render_prometheus); it also exports over OTLP if told to.
        self.metrics = Metrics.from_environment()
        self.engine = await self._open_engine(DEFAULT_ENVIRONMENT)
        store = self.store = self.engine.store
        keys = KeyRing(store, config.api_keys)
        await keys.reload()
        self.keys = keys
        self._start_background(keys.keep_fresh())
        environments = HostedEnvironments(
            store, self.engine, self._open_listening_engine, self._close_engine
        )
        await environments.reload()
        self.environments = environments
        self._start_background(environments.keep_fresh())
        engine = self.engine

        def peer_changed(kind: str) -> None:
            if kind == "keys":
                self._start_background(keys.reload())
            elif kind == "environments":
                self._start_background(environments.reload())
            else:
                engine.peer_changed(kind)

        store.listen(peer_changed)
        tls = None
        client_ca = None
        if config.tls is not None:
            tls = (config.tls.key.read_bytes(), config.tls.cert.read_bytes())
            if config.tls.client_ca is not None:
                client_ca = config.tls.client_ca.read_bytes()
        self.grpc = await build_server(
            environments,
            config.grpc_address,
            keys=keys,
            tls=tls,
            client_ca=client_ca,
        )
        await self.grpc.server.start()
        store.availability.listen(self._database_changed)
        if config.http_port is not None:
            await self._start_http(config.http_port)
        log.info(
            "Tether %s listening on %s:%d (gRPC%s%s), %s clock",
            __version__,
            config.host,
            self.grpc.port,
            ", mutual TLS" if client_ca else ", TLS" if tls else "",
            ", API keys required" if keys.required else "",
            config.clock,
        )
        if config.ready_file is not None:
            payload = {
                "grpc_port": self.grpc.port,
                "http_port": self.http_port,
                "pid": os.getpid(),
            }
            tmp = config.ready_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(payload))
            tmp.replace(config.ready_file)

    async def _open_engine(self, environment: str) -> Engine:
        """The started engine of ``environment``, on its store (migrated)."""
        config = self.config
        url, schema = store_location(config.db_url, environment)
        store = open_store(
            url,
            sqlite_synchronous=config.sqlite_synchronous,
            schema=schema,
            hold_window_s=config.outage_window_s,
        )
        revision = await asyncio.to_thread(migrate, store.engine, schema)
        where = _redact(url) + (f", schema {schema}" if schema else "")
        log.info("environment %r: database %s at schema revision %s", environment, where, revision)
        await store.start()
        clock: Clock = SystemClock()
        if config.clock == "virtual":
            # A virtual clock never runs backwards across restarts: due times,
            # leases and deadlines in the store were set on the clock it had.
            recorded = await store.read(lambda tx: tx.latest_recorded_ms())
            clock = VirtualClock(max(recorded, time.time_ns() // 1_000_000))
        settings = EngineSettings(
            heartbeat_interval_ms=config.heartbeat_interval_ms,
            lease_timeout_ms=config.lease_timeout_ms,
            cap_leases_on_start=not store.shared,
            retention_ms=await self._retention_of(environment),
        )
        assert self.metrics is not None
        assert self._run_tracer is not None
        observer = Observers(self._run_tracer, self.metrics.environment(environment), owned=False)
        engine = Engine(store, clock, settings, observer)
        try:
            await engine.start()
        except BaseException:
            await store.close()
            raise
        self.metrics.start(engine.stats, environment)
        return engine

    async def _retention_of(self, environment: str) -> int | None:
        """The environment's own retention if it set one, else the control plane's."""
        own: int | None = None
        if environment != DEFAULT_ENVIRONMENT and self.store is not None:
            listed = await self.store.read(lambda r: r.environments())
            own = next((e.retention_ms for e in listed if e.name == environment), None)
        if own is None:
            return self.config.retention_ms
        return None if own == FOREVER else own

    async def _open_listening_engine(self, environment: str) -> Engine:
        engine = await self._open_engine(environment)
        engine.store.listen(engine.peer_changed)
        return engine

    async def _close_engine(self, environment: str, engine: Engine) -> None:
        engine.begin_shutdown()
        if self.grpc is not None:
            self.grpc.workers.close_environment(environment, "the environment was deleted")
        await engine.stop()
        await engine.store.close()
        if self.metrics is not None:
            self.metrics.forget(environment)

    def _database_changed(self, available: bool) -> None:
        """The gRPC health service says what the database does (as /readyz does)."""
        if self.grpc is not None and not (self.engine is not None and self.engine.stopping):
            status = health_pb2.HealthCheckResponse.SERVING if available else NOT_SERVING
            self._start_background(self.grpc.set_health(status))

    def _start_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _start_http(self, port: int) -> None:
        # Imported here: a control plane without HTTP does not load FastAPI.
        from controlplane.http import HttpServer, build_app

        assert self.engine is not None
        assert self.metrics is not None
        assert self.keys is not None
        assert self.environments is not None
        app = build_app(
            self.environments,
            keys=self.keys,
            metrics=self.metrics.render_prometheus,
            metrics_need_key=self.config.metrics_need_key,
        )
        self.http = HttpServer(app, self.config.host, port, tls=self.config.tls)
        await self.http.start()
        log.info(
            "dev UI and JSON API on %s://%s:%d",
            self.http.scheme,
            _browsable(self.config.host),
            self.http.port,
        )

    async def stop(self, grace_s: float = 5.0) -> None:
        if self.engine is not None:
            self.engine.begin_shutdown()
        if self.http is not None:
            await self.http.stop()
            self.http = None
        if self.grpc is not None:
            await self.grpc.set_health(NOT_SERVING)
            self.grpc.workers.close_all()
            await self.grpc.server.stop(grace_s)
            self.grpc = None
        if self.environments is not None:
            await self.environments.close()
            self.environments = None
        if self.engine is not None:
            await self.engine.stop()
            self.engine = None
        # After every engine: their last reports are in.
        for shared in (self.metrics, self._run_tracer):
            if shared is not None:
                await shared.shutdown()
        self._run_tracer = None
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.store is not None:
            await self.store.close()
            self.store = None
        self._stopped.set()

    async def run_until_signalled(self) -> None:
        """Start, serve until SIGTERM or SIGINT, then stop cleanly."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await self.start()
        except BaseException:
            # Stop what did start (the engine's tasks would keep the process up).
            await self.stop()
            raise
        await stop.wait()
        log.info("shutting down")
        await self.stop()


def _browsable(host: str) -> str:
    """The address to open in a browser for a server bound to ``host``."""
    return "localhost" if host in ("0.0.0.0", "::", "") else host


def _redact(url: str) -> str:
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)
