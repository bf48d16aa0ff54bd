"""Engine errors become gRPC status codes with the engine's sentence as message;
any other failure becomes INTERNAL with a sentence (never UNKNOWN with an
exception's text), its traceback going to the log."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc

from controlplane.model.errors import (
    EngineError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    Unavailable,
)

log = logging.getLogger("tether.api")

Req = TypeVar("Req")
Resp = TypeVar("Resp")

_CODES: list[tuple[type[EngineError], grpc.StatusCode]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (LimitExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (Internal, grpc.StatusCode.INTERNAL),
]


# A status message travels percent-encoded in HTTP/2 trailers, which clients
# refuse past 8 KiB (their soft limit): a message quoting a huge value the
# caller sent is cut to this many bytes of UTF-8 (at most three times as many
# once encoded).
MAX_MESSAGE_BYTES = 2000


def status_message(error: EngineError) -> str:
    """The error's sentence, cut to MAX_MESSAGE_BYTES so that it reaches the client."""
    text = str(error)
    encoded = text.encode("utf-8")
    if len(encoded) <= MAX_MESSAGE_BYTES:
        return text
    cut = encoded[:MAX_MESSAGE_BYTES].decode("utf-8", errors="ignore")
    return f"{cut}... (cut to {MAX_MESSAGE_BYTES:,} bytes)"


def status_code(error: EngineError) -> grpc.StatusCode:
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: EngineError) -> NoReturn:
    await context.abort(status_code(error), status_message(error))
    raise AssertionError("unreachable")  # context.abort raises


async def abort_internal(
    context: grpc.aio.ServicerContext[Any, Any], method: str, error: Exception
) -> NoReturn:
    log.error("%s failed unexpectedly", method, exc_info=error)
    await context.abort(
        grpc.StatusCode.INTERNAL,
        f"the control plane failed while handling {method}; its log has the details",
    )
    raise AssertionError("unreachable")  # context.abort raises


def unary(
    method: Callable[[Any, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]:
    """Wrap a unary handler so that engine errors become status codes."""

    @functools.wraps(method)
    async def wrapper(
        self: Any, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> Resp:
        try:
            return await method(self, request, context)
        except EngineError as error:
            await abort(context, error)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await abort_internal(context, method.__name__, error)

    return wrapper


def server_stream(
    method: Callable[[Any, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]]:
    """Wrap a server-streaming handler so that engine errors become status codes."""

    @functools.wraps(method)
    async def wrapper(
        self: Any, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> AsyncIterator[Resp]:
        try:
            async for item in method(self, request, context):
                yield item
        except EngineError as error:
            await abort(context, error)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await abort_internal(context, method.__name__, error)

    return wrapper
