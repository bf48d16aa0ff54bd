"""The first and the last word on every call, whatever its method: a request that
is not a valid message, or whose text holds a NUL character, is INVALID_ARGUMENT
naming the problem; a failure no servicer caught is INTERNAL with a sentence.
Never gRPC's own UNKNOWN, whose message is a Python exception's class and text.

grpc.aio answers ``UNKNOWN "Unexpected <class '...DecodeError'>: ..."`` when a
request deserializer raises, before any servicer code runs. So this interceptor
rebuilds each handler: its deserializer returns an ``Undecodable`` instead of
raising, and its behaviour ends the call with INVALID_ARGUMENT when it meets one.
For request streams the check is made as the servicer takes each message from
the request iterator; a servicer that reads with ``context.read()`` gets the
``Undecodable`` itself and must check for it (WorkerService.Connect does: an
undecodable frame is a protocol error).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from controlplane.api.errors import abort_internal
from controlplane.model import (
    NonDeterminism,
    Outcome,
    PlannedEventWait,
    PlannedInvoke,
    RunFailed,
    StepCompleted,
    StepFailed,
    Suspended,
)

if TYPE_CHECKING:
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]
else:  # not subscriptable at run time
    _Interceptor = grpc.aio.ServerInterceptor
    Handler = grpc.RpcMethodHandler

Context = grpc.aio.ServicerContext[Any, Any]

# A deserializer's message, for the client: long enough for protobuf's reason.
_MAX_DETAIL = 200


@dataclass(frozen=True, slots=True)
class Undecodable:
    """What a rebuilt deserializer returns for bytes that are not a valid message."""

    type_name: str
    detail: str

    def problem(self, what: str = "the request") -> str:
        return f"{what} is not a valid {self.type_name} message: {self.detail}"


def nul_problem(message: Message, what: str = "the request") -> str | None:
    """Why ``message`` cannot be taken as it is (a text field holding U+0000,
    which databases cannot store), or None."""
    path = _nul_field(message, "")
    if path is None:
        return None
    return f"field {path} of {what} contains a NUL character (U+0000), which text cannot hold"


def outcome_holds_nul(outcome: Outcome) -> bool:
    """Whether any text of a converted outcome holds U+0000: a few ``in``
    tests, for every outcome frame (nul_problem then names the field)."""
    body = outcome.body
    texts: list[str] = [outcome.execution_id, outcome.run_id]
    if isinstance(body, StepCompleted):
        texts += (body.step_id, body.name)
    elif isinstance(body, StepFailed | RunFailed):
        if isinstance(body, StepFailed):
            texts += (body.step_id, body.name)
        texts += (body.error.name, body.error.message, body.error.stack)
    elif isinstance(body, Suspended):
        for wait in body.waits:
            texts += (wait.step_id, wait.name)
            if isinstance(wait, PlannedEventWait):
                texts += (wait.event, wait.match, wait.if_expression)
            elif isinstance(wait, PlannedInvoke):
                texts += (wait.app_id, wait.function_id)
    elif isinstance(body, NonDeterminism):
        texts += (body.message, *body.new_steps, *body.unreached_step_ids)
    return any("\x00" in text for text in texts)


def _nul_field(message: Message, prefix: str) -> str | None:
    for field, value in message.ListFields():
        name = prefix + field.name
        if field.type == FieldDescriptor.TYPE_STRING:
            items = enumerate(value) if field.is_repeated else [(None, value)]
            for index, text in items:
                if "\x00" in text:
                    return name if index is None else f"{name}[{index}]"
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                for key, item in value.items():
                    found = _nul_in_value(key, f"{name}[{key!r}]") or _nul_in_value(
                        item, f"{name}[{key!r}]"
                    )
                    if found:
                        return found
            elif field.is_repeated:
                for index, item in enumerate(value):
                    found = _nul_field(item, f"{name}[{index}].")
                    if found:
                        return found
            else:
                found = _nul_field(value, f"{name}.")
                if found:
                    return found
    return None


def _nul_in_value(value: object, path: str) -> str | None:
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, Message):
        return _nul_field(value, f"{path}.")
    return None


class DecodingInterceptor(_Interceptor):
    """Rebuilds every handler (see the module's docstring); a handler without a
    deserializer (the API-key refusal), or a streaming one with synchronous
    behaviour, is kept as it is."""

    def __init__(self) -> None:
        # method -> (the handler as registered, as rebuilt): built once per method.
        self._rebuilt: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        # None (an unknown method: gRPC answers UNIMPLEMENTED) goes back as it is.
        if handler is None or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method or ""
        known = self._rebuilt.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        rebuilt = _rebuilt(handler, method) or handler
        self._rebuilt[method] = (handler, rebuilt)
        return rebuilt


def _rebuilt(handler: Handler, method: str) -> Handler | None:
    deserializer = _deserializer(handler.request_deserializer, method)
    name = method.strip("/")
    serializer = handler.response_serializer
    if handler.request_streaming and handler.response_streaming:
        behaviour: Any = handler.stream_stream
        if not _is_async(behaviour):
            return None
        return grpc.stream_stream_rpc_method_handler(
            _stream_requests(behaviour, name), deserializer, serializer
        )
    if handler.request_streaming:
        behaviour = handler.stream_unary
        if not _is_async(behaviour):
            return None
        return grpc.stream_unary_rpc_method_handler(
            _stream_requests(behaviour, name), deserializer, serializer
        )
    if handler.response_streaming:
        behaviour = handler.unary_stream
        if not _is_async(behaviour):
            return None
        return grpc.unary_stream_rpc_method_handler(
            _one_request(behaviour, name), deserializer, serializer
        )
    # A synchronous unary behaviour (a generated base class's method the
    # servicer does not implement, such as Health/List) runs in a thread.
    return grpc.unary_unary_rpc_method_handler(
        _one_request(handler.unary_unary, name), deserializer, serializer
    )


def _is_async(behaviour: object) -> bool:
    return inspect.iscoroutinefunction(behaviour) or inspect.isasyncgenfunction(behaviour)


def _deserializer(original: Any, method: str) -> Callable[[bytes], Any]:
    type_name = _request_type(original, method)

    def deserialize(raw: bytes) -> Any:
        try:
            return original(raw)
        except Exception as error:  # DecodeError, or whatever a deserializer raises
            return Undecodable(type_name, _detail(error))

    return deserialize


def _request_type(deserializer: Any, method: str) -> str:
    """The full name of the method's request message, for messages."""
    service, _, name = method.strip("/").rpartition("/")
    try:
        return str(
            descriptor_pool.Default().FindMethodByName(f"{service}.{name}").input_type.full_name
        )
    except KeyError:
        pass
    message_class = getattr(deserializer, "__self__", None)
    descriptor = getattr(message_class, "DESCRIPTOR", None)
    full_name = getattr(descriptor, "full_name", None)
    return full_name if isinstance(full_name, str) else f"request message of {method}"


def _detail(error: Exception) -> str:
    """Protobuf's reason, without its prefix ("Error parsing message with type
    'x': Wire format was corrupt" becomes "wire format was corrupt")."""
    text = str(error)
    if text.startswith("Error parsing message") and ": " in text:
        text = text.split(": ", 1)[1]
    text = text.strip() or "the bytes do not decode"
    if len(text) > _MAX_DETAIL:
        text = text[:_MAX_DETAIL] + "..."
    return text[:1].lower() + text[1:]


async def _refuse(context: Context, problem: str) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)


def _check(request: Any) -> str | None:
    if isinstance(request, Undecodable):
        return request.problem()
    if isinstance(request, Message):
        return nul_problem(request)
    return None


def _one_request(behaviour: Any, name: str) -> Any:
    """Unary and server-streaming behaviours: the request is checked first."""
    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            problem = _check(request)
            if problem is not None:
                await _refuse(context, problem)
            try:
                async for response in behaviour(request, context):
                    yield response
            except Exception as error:
                await _unexpected(context, name, error)

        return stream

    asynchronous = inspect.iscoroutinefunction(behaviour)

    async def unary(request: Any, context: Context) -> Any:
        problem = _check(request)
        if problem is not None:
            await _refuse(context, problem)
        try:
            if asynchronous:
                return await behaviour(request, context)
            return await asyncio.to_thread(behaviour, request, context)
        except Exception as error:
            await _unexpected(context, name, error)

    return unary


def _stream_requests(behaviour: Any, name: str) -> Any:
    """Client- and bidirectional-streaming behaviours: each request is checked
    as the servicer takes it from the request iterator."""

    def checked(requests: Any, context: Context) -> AsyncIterator[Any]:
        async def each() -> AsyncIterator[Any]:
            async for request in requests:
                if isinstance(request, Undecodable):
                    await _refuse(context, request.problem("a message on the stream"))
                yield request

        return each()

    if inspect.isasyncgenfunction(behaviour):

        async def stream(requests: Any, context: Context) -> AsyncIterator[Any]:
            try:
                async for response in behaviour(checked(requests, context), context):
                    yield response
            except Exception as error:
                await _unexpected(context, name, error)

        return stream

    async def coroutine(requests: Any, context: Context) -> Any:
        try:
            return await behaviour(checked(requests, context), context)
        except Exception as error:
            await _unexpected(context, name, error)

    return coroutine


async def _unexpected(context: Context, name: str, error: Exception) -> None:
    """What a behaviour raised, for ``name`` ("<service>/<method>"): gRPC's own
    exceptions (an abort, a stream the client left) go on to gRPC; a method the
    servicer does not implement (the generated base class sets UNIMPLEMENTED and
    raises) is UNIMPLEMENTED with a sentence; anything else is a failure of the
    control plane: INTERNAL, logged."""
    if isinstance(error, grpc.aio.BaseError) and not isinstance(error, grpc.aio.UsageError):
        raise error
    if context.code() == grpc.StatusCode.UNIMPLEMENTED:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, f"this control plane does not implement {name}"
        )
    await abort_internal(context, name.rsplit("/", 1)[-1], error)
