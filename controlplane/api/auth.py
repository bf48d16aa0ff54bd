"""Who may call what: ``authorization: Bearer <key>`` on every call, and the
role each method needs (model/access.py), checked before the servicer runs.

With no key configured or stored, calls need none (``tether dev``; ``tether
server`` then only listens on loopback, see config.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import grpc

from controlplane.access.environments import HostedEnvironments
from controlplane.access.keys import KeyRing
from controlplane.engine.engine import Engine
from controlplane.model.access import Caller, Role
from controlplane.model.errors import Unavailable

# Health checks stay open so that load balancers and orchestrators can probe, and
# reflection so that tools can list the (public) schema.
_OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/")

#: The role each method needs (a method not listed is unknown: UNIMPLEMENTED).
METHOD_ROLES: dict[str, Role] = {
    "/tether.v1.EventService/Send": Role.SEND,
    "/tether.v1.WorkerService/Connect": Role.WORKER,
    "/tether.v1.RunService/GetRun": Role.READ,
    "/tether.v1.RunService/ListRuns": Role.READ,
    "/tether.v1.RunService/WaitRun": Role.READ,
    "/tether.v1.RunService/ListFunctions": Role.READ,
    "/tether.v1.RunService/ListEvents": Role.READ,
    "/tether.v1.RunService/GetEvent": Role.READ,
    "/tether.v1.RunService/CancelRun": Role.ADMIN,
    "/tether.v1.RunService/CancelRuns": Role.ADMIN,
    "/tether.v1.RunService/ReplayRun": Role.ADMIN,
    "/tether.v1.RunService/PauseFunction": Role.ADMIN,
    "/tether.v1.RunService/ResumeFunction": Role.ADMIN,
    "/tether.v1.ClockService/GetTime": Role.READ,
    "/tether.v1.ClockService/Advance": Role.ADMIN,
    "/tether.v1.ClockService/SetAutoSkip": Role.ADMIN,
    "/tether.v1.KeyService/CreateKey": Role.ADMIN,
    "/tether.v1.KeyService/ListKeys": Role.ADMIN,
    "/tether.v1.KeyService/RotateKey": Role.ADMIN,
    "/tether.v1.KeyService/RevokeKey": Role.ADMIN,
}

#: How long a refused stream waits for its first frame before it ends.
_FIRST_FRAME_WAIT_S = 1.0

UNAUTHENTICATED = "missing or invalid API key: send 'authorization: Bearer <key>'"

#: Who makes the call being served: set by the Authorizer, in the call's task,
#: before its servicer runs.
current_caller: ContextVar[Caller] = ContextVar("current_caller")


class InCallersEnvironment:
    """A servicer whose every call works on the engine of its caller's environment."""

    def __init__(self, environments: HostedEnvironments) -> None:
        self._environments = environments

    @property
    def _engine(self) -> Engine:
        return self._environments.engine(current_caller.get().environment)


if TYPE_CHECKING:
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # not subscriptable at run time
    _Interceptor = grpc.aio.ServerInterceptor


async def caller_of(keys: KeyRing, metadata: Any) -> Caller | None:
    """Who makes a call with this gRPC metadata, or None (see KeyRing.authenticate)."""
    for key, value in metadata or ():
        if key == "authorization":
            return await keys.authenticate(value.decode() if isinstance(value, bytes) else value)
    return await keys.authenticate(None)


class Authorizer(_Interceptor):
    def __init__(self, keys: KeyRing, environments: HostedEnvironments) -> None:
        self._keys = keys
        self._environments = environments

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method = handler_call_details.method or ""
        needed = METHOD_ROLES.get(method)
        if method.startswith(_OPEN_PREFIXES) or needed is None:
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        try:
            caller = await caller_of(self._keys, handler_call_details.invocation_metadata)
            if caller is not None:
                await self._environments.ensure(caller.environment)
        except Unavailable as error:  # a key not yet in memory, and no database to ask
            return _deny(handler, grpc.StatusCode.UNAVAILABLE, str(error))
        if caller is None:
            return _deny(handler, grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED)
        if not caller.may(needed):
            refusal = caller.refusal(method.rsplit("/", 1)[-1], needed)
            return _deny(handler, grpc.StatusCode.PERMISSION_DENIED, refusal)
        # gRPC runs the servicer in this same task, after the interceptors.
        current_caller.set(caller)
        return handler


def _deny(
    handler: grpc.RpcMethodHandler[Any, Any] | None, code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler[Any, Any]:
    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)

    async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)
        yield  # pragma: no cover - makes this an async generator

    async def after_first_frame(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        # A client that writes its first frame as the stream opens (a worker's
        # Hello) would otherwise race the refusal: its write fails locally and
        # its gRPC library reports INTERNAL "Internal error from Core" instead of
        # this status. Reading that frame first (raw bytes, never decoded) lets
        # the write finish.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(anext(aiter(requests)), _FIRST_FRAME_WAIT_S)
        await context.abort(code, message)

    async def stream_in_stream_out(
        requests: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        await after_first_frame(requests, context)
        yield  # pragma: no cover - makes this an async generator

    if handler is not None and (handler.request_streaming or handler.response_streaming):
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(stream_in_stream_out)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(stream)
        return grpc.stream_unary_rpc_method_handler(after_first_frame)
    return grpc.unary_unary_rpc_method_handler(unary)
