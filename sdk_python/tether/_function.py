"""A durable function: its id, triggers, options and handler."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tether._durations import DurationLike, to_milliseconds
from tether._errors import ConfigError
from tether._flow import FlowControl, fill_definition
from tether._triggers import CronTrigger, EventTrigger, Trigger
from tether.v1 import common_pb2

if TYPE_CHECKING:
    from tether._context import Context

Handler = Callable[["Context"], Awaitable[Any]]

CATCH_UP_TO_PB = {
    "one": common_pb2.CRON_CATCH_UP_ONE,
    "none": common_pb2.CRON_CATCH_UP_NONE,
    "all": common_pb2.CRON_CATCH_UP_ALL,
}

DEFAULT_RETRIES = 4
MAX_RETRIES = 20
MAX_ID_LENGTH = 128
_KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass(frozen=True, slots=True)
class CancelOn:
    """Cancel a run when a matching event arrives: ``match`` compares a path of
    both events (``"data.order_id"``), ``if_`` is a CEL expression over ``event``
    (the run's) and ``async`` (the incoming one); ``timeout`` bounds how long after
    the run started the event counts."""

    event: str
    match: str = ""
    if_: str = ""
    timeout: DurationLike | None = None


@dataclass(frozen=True, slots=True)
class Function:
    """What ``@app.function(...)`` returns; ``await fn.handler(ctx)`` runs the code."""

    id: str
    name: str
    triggers: tuple[Trigger, ...]
    retries: int
    handler: Handler
    cancel_on: tuple[CancelOn, ...] = ()
    idempotency: str = ""
    start_timeout_ms: int = 0
    finish_timeout_ms: int = 0
    #: concurrency, throttle, rate_limit, debounce, priority, batching, singleton.
    flow: FlowControl = field(default_factory=FlowControl)
    #: How long finished runs are kept (ms); 0: the environment's retention.
    retention_ms: int = 0

    def definition(self) -> common_pb2.FunctionDefinition:
        definition = common_pb2.FunctionDefinition(
            id=self.id,
            name=self.name,
            retries=self.retries,
            cancel_on=[
                common_pb2.CancelOn(
                    event=c.event,
                    match=c.match,
                    if_expression=c.if_,
                    timeout_ms=to_milliseconds(c.timeout) if c.timeout is not None else 0,
                )
                for c in self.cancel_on
            ],
            idempotency=self.idempotency,
            timeouts=common_pb2.Timeouts(
                start_ms=self.start_timeout_ms, finish_ms=self.finish_timeout_ms
            ),
            retention_ms=self.retention_ms,
        )
        for trigger in self.triggers:
            if isinstance(trigger, EventTrigger):
                definition.triggers.add(
                    event=common_pb2.EventTrigger(name=trigger.name, if_expression=trigger.if_)
                )
            elif isinstance(trigger, CronTrigger):
                definition.triggers.add(
                    cron=common_pb2.CronTrigger(
                        schedule=trigger.schedule,
                        timezone=trigger.tz,
                        catch_up=CATCH_UP_TO_PB[trigger.catch_up],
                    )
                )
        fill_definition(definition, self.flow)
        return definition


def check_function_id(function_id: str) -> None:
    if not isinstance(function_id, str) or not function_id:
        raise ConfigError("a function needs an id, like id='send-welcome-email'")
    if len(function_id) > MAX_ID_LENGTH:
        raise ConfigError(
            f"function id {function_id[:40]!r}... is {len(function_id)} characters; "
            f"the limit is {MAX_ID_LENGTH}"
        )
    if not _KEBAB.fullmatch(function_id):
        suggestion = re.sub(r"[^a-z0-9]+", "-", function_id.lower()).strip("-")
        raise ConfigError(
            f"function id {function_id!r} is not kebab-case: use lowercase letters and "
            f"digits joined by '-', like {suggestion or 'my-function'!r}"
        )


def check_retries(function_id: str, retries: int) -> None:
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise ConfigError(f"function {function_id!r}: retries must be an integer")
    if not 0 <= retries <= MAX_RETRIES:
        raise ConfigError(
            f"function {function_id!r}: retries must be between 0 and {MAX_RETRIES}, not {retries}"
        )


def cancel_on_list(function_id: str, items: object) -> tuple[CancelOn, ...]:
    """cancel_on as given: CancelOn objects or dicts with event/match/if_/timeout."""
    if items is None:
        return ()
    if not isinstance(items, list | tuple):
        items = [items]
    result = []
    for item in items:
        if isinstance(item, dict):
            unknown = set(item) - {"event", "match", "if_", "timeout"}
            if unknown or "event" not in item:
                raise ConfigError(
                    f"function {function_id!r}: cancel_on entries look like "
                    "{'event': 'app/order.cancelled', 'match': 'data.order_id'}"
                    + (f"; unknown key(s) {sorted(unknown)}" if unknown else "")
                )
            item = CancelOn(**item)
        if not isinstance(item, CancelOn) or not item.event:
            raise ConfigError(f"function {function_id!r}: each cancel_on entry needs an event name")
        if item.timeout is not None:
            try:
                to_milliseconds(item.timeout)
            except (TypeError, ValueError) as error:
                raise ConfigError(f"function {function_id!r}: cancel_on timeout: {error}") from None
        result.append(item)
    return tuple(result)


def timeouts_of(function_id: str, timeouts: object) -> tuple[int, int]:
    """(start_ms, finish_ms) from ``{"start": "10s", "finish": "1h"}``."""
    if timeouts is None:
        return 0, 0
    if not isinstance(timeouts, dict) or set(timeouts) - {"start", "finish"}:
        raise ConfigError(
            f"function {function_id!r}: timeouts look like {{'start': '10m', 'finish': '1h'}}"
        )
    try:
        start = to_milliseconds(timeouts["start"]) if "start" in timeouts else 0
        finish = to_milliseconds(timeouts["finish"]) if "finish" in timeouts else 0
    except (TypeError, ValueError) as error:
        raise ConfigError(f"function {function_id!r}: timeouts: {error}") from None
    return start, finish


def retention_of(function_id: str, retention: object) -> int:
    """A function's own retention in ms (0: none), at least a minute."""
    if retention is None:
        return 0
    try:
        ms = to_milliseconds(retention)  # type: ignore[arg-type]
    except (TypeError, ValueError) as error:
        raise ConfigError(f"function {function_id!r}: retention: {error}") from None
    if ms < 60_000:
        raise ConfigError(
            f"function {function_id!r}: retention must be at least a minute; got {retention!r}"
        )
    return ms


def check_handler(function_id: str, handler: object) -> None:
    if not inspect.iscoroutinefunction(handler):
        raise ConfigError(
            f"function {function_id!r} must be an async function: 'async def ...(ctx)'"
        )
