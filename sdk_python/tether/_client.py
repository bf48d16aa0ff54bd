"""``Tether``: the client an app creates once, to define, serve and send."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc

from tether._channel import ChannelConfig, Connection, PathLike
from tether._convert import EventLike, event_message
from tether._durations import DurationLike
from tether._errors import ConfigError, InvalidArgumentError
from tether._flow import (
    BatchingLike,
    ConcurrencyLike,
    DebounceLike,
    PriorityLike,
    RateLimitLike,
    SingletonLike,
    ThrottleLike,
    flow_control,
)
from tether._function import (
    DEFAULT_RETRIES,
    CancelOn,
    Function,
    Handler,
    cancel_on_list,
    check_function_id,
    check_handler,
    check_retries,
    retention_of,
    timeouts_of,
)
from tether._functions_admin import FunctionsClient
from tether._models import SendResult, SkippedRun
from tether._runs import RunsClient
from tether._telemetry import configure_from_environment, trace_metadata
from tether._triggers import EventTrigger, TriggerLike, normalize_triggers
from tether._worker import Worker
from tether.v1 import common_pb2, event_service_pb2, event_service_pb2_grpc

log = logging.getLogger("tether")

#: The event the control plane emits when a run fails for good.
FUNCTION_FAILED = "tether/function.failed"


class Tether:
    """One per app. ``address`` defaults to TETHER_ADDRESS, then localhost:4770.

    ``api_key`` (TETHER_API_KEY) is sent with every call. ``tls=True`` (TETHER_TLS=1)
    connects over TLS, trusting the system's root certificates, or the PEM
    certificates of ``tls_ca`` (TETHER_TLS_CA). ``tls_client_cert`` and
    ``tls_client_key`` (TETHER_TLS_CLIENT_CERT, TETHER_TLS_CLIENT_KEY), PEM files,
    are the client certificate a control plane with mutual TLS asks for. Any of
    the three turns TLS on.
    """

    def __init__(
        self,
        app_id: str,
        *,
        address: str | None = None,
        api_key: str | None = None,
        tls: bool | None = None,
        tls_ca: PathLike | None = None,
        tls_client_cert: PathLike | None = None,
        tls_client_key: PathLike | None = None,
    ) -> None:
        if not app_id or not isinstance(app_id, str):
            raise ConfigError("Tether needs an app_id, like Tether(app_id='shop')")
        self.app_id = app_id
        self._connection = Connection(
            ChannelConfig.resolve(
                address,
                api_key,
                tls,
                tls_ca=tls_ca,
                tls_client_cert=tls_client_cert,
                tls_client_key=tls_client_key,
            )
        )
        self._functions: dict[str, Function] = {}
        #: Admin from code: ``await app.runs.get(run_id)``.
        self.runs = RunsClient(app_id, self._current_connection)
        #: Admin from code: ``await app.functions.pause("sync-accounts")``.
        self.functions = FunctionsClient(app_id, self._current_connection)

    @property
    def address(self) -> str:
        return self._connection.address

    def _current_connection(self) -> Connection:
        return self._connection

    def _set_address(self, address: str) -> None:
        """Point this client somewhere else (used by tether.testing)."""
        config = self._connection.config
        self._connection.close_sync()
        self._connection = Connection(config.at(address))

    # -- defining functions --------------------------------------------------------------

    def function(
        self,
        *,
        id: str,
        trigger: TriggerLike,
        retries: int = DEFAULT_RETRIES,
        name: str | None = None,
        cancel_on: Sequence[CancelOn | Mapping[str, Any]] | None = None,
        idempotency: str | None = None,
        timeouts: Mapping[str, DurationLike] | None = None,
        on_failure: Handler | None = None,
        concurrency: ConcurrencyLike | Sequence[ConcurrencyLike] | None = None,
        throttle: ThrottleLike | None = None,
        rate_limit: RateLimitLike | None = None,
        debounce: DebounceLike | None = None,
        priority: PriorityLike | None = None,
        batching: BatchingLike | None = None,
        singleton: SingletonLike | None = None,
        retention: DurationLike | None = None,
    ) -> Callable[[Handler], Function]:
        """Declare a durable function::

        @app.function(id="onboarding-flow", trigger="app/user.signup")
        async def onboarding(ctx: Context) -> None: ...

        ``cancel_on`` cancels a run when a matching event arrives;
        ``idempotency`` (a CEL expression over ``event``) allows one run per key
        per 24 hours; ``timeouts={"start": ..., "finish": ...}`` cancels runs
        that wait too long to start or run too long; ``on_failure`` runs with
        the failed run's event and error (ctx.event is ``tether/function.failed``).

        Flow control (each takes its class or a dict of the same keys; a ``key``
        is a CEL expression over ``event`` giving each value its own limit;
        periods are "1m", a timedelta or seconds):

        - ``concurrency=5`` or ``Concurrency(limit, key=, scope="fn"|"app"|"global")``,
          or a list of two: at most so many runs *execute* at once; runs that
          sleep, wait for an event or back off before a retry do not count.
        - ``throttle=Throttle(limit, period, burst=1, key=)``: start at most
          ``limit`` runs per period, evenly spaced; the others wait in the queue.
        - ``rate_limit=RateLimit(limit, period, key=)``: at most ``limit`` runs per
          period; events over it start nothing and are recorded as skipped.
        - ``debounce=Debounce(period, key=, timeout=)``: start one run with the
          last event once none arrived for ``period`` (``timeout`` caps the wait).
        - ``priority=Priority(run="event.data.vip ? 60 : 0")`` (or the string):
          seconds, -600 to 600, to start ahead of due runs (or behind them).
        - ``batching=Batching(max_size, timeout, key=)``: one run for up to
          ``max_size`` events (``ctx.events``), started when full or after ``timeout``.
        - ``singleton=Singleton(key=, mode="skip"|"cancel")``: at most one
          unfinished run per key; a new event is skipped or cancels that run.

        ``retention="90d"`` keeps this function's finished runs that long (at
        least a minute) instead of the environment's retention.
        """
        check_function_id(id)
        check_retries(id, retries)
        retention_ms = retention_of(id, retention)
        triggers = normalize_triggers(id, trigger)
        watches = cancel_on_list(id, list(cancel_on) if cancel_on is not None else None)
        start_ms, finish_ms = timeouts_of(id, dict(timeouts) if timeouts is not None else None)
        if idempotency is not None and (not isinstance(idempotency, str) or not idempotency):
            raise ConfigError(
                f"function {id!r}: idempotency is a CEL expression such as 'event.data.order_id'"
            )
        flow = flow_control(
            id,
            concurrency=concurrency,
            throttle=throttle,
            rate_limit=rate_limit,
            debounce=debounce,
            priority=priority,
            batching=batching,
            singleton=singleton,
            idempotency=bool(idempotency),
            cancel_on=bool(watches),
        )
        for taken in (id, f"{id}-failure") if on_failure is not None else (id,):
            if taken in self._functions:
                raise ConfigError(
                    f"duplicate function id {taken!r} in app {self.app_id!r}: each function of an "
                    "app needs its own id"
                )

        def register(handler: Handler) -> Function:
            check_handler(id, handler)
            if id in self._functions:
                raise ConfigError(f"duplicate function id {id!r} in app {self.app_id!r}")
            function = Function(
                id=id,
                name=name or id,
                triggers=triggers,
                retries=retries,
                handler=handler,
                cancel_on=watches,
                idempotency=idempotency or "",
                start_timeout_ms=start_ms,
                finish_timeout_ms=finish_ms,
                flow=flow,
                retention_ms=retention_ms,
            )
            self._functions[id] = function
            if on_failure is not None:
                self._register_failure_handler(function, on_failure)
            return function

        return register

    def _register_failure_handler(self, function: Function, handler: Handler) -> None:
        """``on_failure``: a companion function, ``<id>-failure``, triggered by the
        failed runs of ``function`` (tether/function.failed)."""
        failure_id = f"{function.id}-failure"
        check_function_id(failure_id)
        check_handler(failure_id, handler)
        if failure_id in self._functions:
            raise ConfigError(f"duplicate function id {failure_id!r} in app {self.app_id!r}")
        condition = (
            f"event.data.function_id == {json.dumps(function.id)} "
            f"&& event.data.app_id == {json.dumps(self.app_id)}"
        )
        self._functions[failure_id] = Function(
            id=failure_id,
            name=f"{function.name} (on failure)",
            triggers=(EventTrigger(FUNCTION_FAILED, condition),),
            retries=function.retries,
            handler=handler,
        )

    @property
    def registered_functions(self) -> list[Function]:
        """The functions declared on this client, in declaration order."""
        return list(self._functions.values())

    # -- sending events ---------------------------------------------------------------------

    def _send_request(
        self, events: EventLike | Sequence[EventLike]
    ) -> event_service_pb2.SendRequest:
        items: Sequence[EventLike]
        if isinstance(events, Sequence) and not isinstance(events, str | bytes):
            items = events
        else:
            items = [events]
        if not items:
            raise InvalidArgumentError("no events to send")
        return event_service_pb2.SendRequest(
            events=[event_message(e, i) for i, e in enumerate(items)]
        )

    async def _send_messages(self, messages: list[common_pb2.Event]) -> list[str]:
        """Send prepared events (step.send_event); returns their ids."""
        results = await self._send(event_service_pb2.SendRequest(events=messages))
        return [r.event_id for r in results]

    async def send(self, events: EventLike | Sequence[EventLike]) -> list[SendResult]:
        """Send one event or a list: ``await app.send({"name": "app/x", "data": {...}})``."""
        return await self._send(self._send_request(events))

    async def _send(self, request: event_service_pb2.SendRequest) -> list[SendResult]:
        stub: Any = event_service_pb2_grpc.EventServiceStub(self._connection.aio_channel())
        try:
            response = await stub.Send(request, metadata=self._send_metadata())
        except grpc.RpcError as error:
            raise self._connection.error(error) from None
        return [_send_result(r) for r in response.results]

    def _send_metadata(self) -> tuple[tuple[str, str], ...]:
        # The current span goes along: the event's span is a child of it.
        return self._connection.metadata + trace_metadata()

    def send_sync(self, events: EventLike | Sequence[EventLike]) -> list[SendResult]:
        """``send`` for code without an event loop."""
        request = self._send_request(events)
        stub = event_service_pb2_grpc.EventServiceStub(self._connection.sync_channel())
        try:
            response = stub.Send(request, metadata=self._send_metadata())
        except grpc.RpcError as error:
            raise self._connection.error(error) from None
        return [_send_result(r) for r in response.results]

    # -- serving -------------------------------------------------------------------------------

    def worker(
        self,
        *,
        functions: Sequence[Function] | None = None,
        capacity: int = 100,
        threads: int | None = None,
    ) -> Worker:
        """A worker for this app's functions (or a subset), to run in your own loop."""
        return Worker(
            self.app_id,
            self._current_connection,
            self._send_messages,
            functions or self.registered_functions,
            capacity=capacity,
            threads=threads,
        )

    def serve(
        self,
        *,
        functions: Sequence[Function] | None = None,
        capacity: int = 100,
        threads: int | None = None,
        drain_timeout_s: float = 30.0,
    ) -> None:
        """Serve this app's functions until SIGTERM or SIGINT. The first signal
        drains (finishes in-flight work, takes no more); a second one stops now."""
        if not logging.getLogger().handlers:
            logging.basicConfig(
                level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
            )
        configure_from_environment(f"tether-worker-{self.app_id}")
        asyncio.run(self._serve(functions, capacity, threads, drain_timeout_s))

    async def _serve(
        self,
        functions: Sequence[Function] | None,
        capacity: int,
        threads: int | None,
        drain_timeout_s: float,
    ) -> None:
        worker = self.worker(functions=functions, capacity=capacity, threads=threads)
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if worker.draining:
                log.warning("second signal: stopping now")
                worker.stop()
                return
            worker.drain()
            loop.call_later(drain_timeout_s, worker.stop)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        try:
            await worker.run()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self.close()

    async def close(self) -> None:
        """Close this client's connections."""
        await self._connection.close()


def _send_result(result: event_service_pb2.SendResult) -> SendResult:
    return SendResult(
        result.event_id,
        result.duplicate,
        list(result.run_ids),
        [SkippedRun(s.app_id, s.function_id, s.reason, s.existing_run_id) for s in result.skipped],
        list(result.resumed_run_ids),
        list(result.cancelled_run_ids),
    )
