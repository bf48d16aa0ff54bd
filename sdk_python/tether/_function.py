"""A durable function: its id, triggers, options and handler."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tether._errors import ConfigError
from tether._triggers import CronTrigger, EventTrigger, Trigger
from tether.v1 import common_pb2

if TYPE_CHECKING:
    from tether._context import Context

Handler = Callable[["Context"], Awaitable[Any]]

DEFAULT_RETRIES = 4
MAX_RETRIES = 20
MAX_ID_LENGTH = 128
_KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass(frozen=True, slots=True)
class Function:
    """What ``@app.function(...)`` returns; ``await fn.handler(ctx)`` runs the code."""

    id: str
    name: str
    triggers: tuple[Trigger, ...]
    retries: int
    handler: Handler

    def definition(self) -> common_pb2.FunctionDefinition:
        definition = common_pb2.FunctionDefinition(id=self.id, name=self.name, retries=self.retries)
        for trigger in self.triggers:
            if isinstance(trigger, EventTrigger):
                definition.triggers.add(
                    event=common_pb2.EventTrigger(name=trigger.name, if_expression=trigger.if_)
                )
            elif isinstance(trigger, CronTrigger):
                definition.triggers.add(
                    cron=common_pb2.CronTrigger(schedule=trigger.schedule, timezone=trigger.tz)
                )
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


def check_handler(function_id: str, handler: object) -> None:
    if not inspect.iscoroutinefunction(handler):
        raise ConfigError(
            f"function {function_id!r} must be an async function: 'async def ...(ctx)'"
        )
