"""CEL expressions: trigger filters, waits, cancel_on and idempotency keys.

Expressions are compiled when a function registers (or a wait is planned), so a
typo is a clear error up front, not a silent never-match. Variables are events
as JSON objects: ``event`` (the run's event) and, for waits and cancel_on,
``async`` (the incoming event), each ``{"id", "name", "data", "user", "ts"}``.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

import cel

from controlplane.engine.errors import InvalidArgument
from controlplane.engine.models import StoredEvent

EVENT_ONLY = frozenset({"event"})
EVENT_AND_ASYNC = frozenset({"event", "async"})

_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_EQUALITY = re.compile(
    r"^\s*(async|event)\.([A-Za-z_][\w.]*)\s*==\s*(async|event)\.([A-Za-z_][\w.]*)\s*$"
)


class _Missing:
    """What a path into an event yields when a field is absent."""


MISSING = _Missing()


@dataclass(frozen=True, slots=True)
class Expression:
    source: str
    program: Any

    def evaluate(self, variables: dict[str, Any]) -> Any:
        """The value, or MISSING when it reads a field the event does not have.
        Type errors (comparing a string with a number...) count as MISSING too:
        an expression that cannot be evaluated on an event does not match it."""
        try:
            return self.program.execute(variables)
        except (KeyError, TypeError, RuntimeError, ValueError):
            return MISSING

    def holds(self, variables: dict[str, Any]) -> bool:
        return self.evaluate(variables) is True


def compile_expression(source: str, allowed: frozenset[str], what: str) -> Expression:
    """Compile ``source``; raise InvalidArgument naming ``what`` and the problem."""
    return _compile(source, allowed, what)


@functools.lru_cache(maxsize=4096)
def _compile(source: str, allowed: frozenset[str], what: str) -> Expression:
    if not source.strip():
        raise InvalidArgument(f"{what}: the expression is empty")
    try:
        program = cel.compile(source)
    except ValueError as error:
        detail = str(error).split("ERROR: <input>:", 1)[-1].strip()
        raise InvalidArgument(f"{what}: invalid CEL expression {source!r}: {detail}") from None
    unknown = sorted(set(program.variables()) - allowed)
    if unknown:
        names = " and ".join(f"'{v}'" for v in sorted(allowed))
        raise InvalidArgument(
            f"{what}: unknown variable {', '.join(repr(u) for u in unknown)} in {source!r} "
            f"(use {names})"
        )
    return Expression(source, program)


def check_path(path: str, what: str) -> str:
    """A dotted path such as ``data.user_id``."""
    if not _PATH.match(path):
        raise InvalidArgument(
            f"{what}: invalid match path {path!r}: use a dotted path such as 'data.user_id'"
        )
    return path


def event_value(event: StoredEvent | dict[str, Any], path: str) -> Any:
    """The value at ``path`` (``data.user_id``) in an event, or MISSING."""
    value: Any = event_object(event) if isinstance(event, StoredEvent) else event
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def event_object(event: StoredEvent) -> dict[str, Any]:
    """An event as expressions (and wait results) see it."""
    return {
        "id": event.id,
        "name": event.name,
        "data": json.loads(event.data) if event.data else {},
        "user": json.loads(event.user) if event.user else {},
        "ts": event.ts_ms,
    }


def canonical(value: Any) -> str:
    """A value as the index stores it: 1 and 1.0 are the same key."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def indexable_equality(source: str) -> tuple[str, str] | None:
    """(path on ``async``, path on ``event``) when ``source`` is a plain AND of
    comparisons one of which is ``async.X == event.Y`` (either way round), so
    that waits can be found by value instead of evaluated one by one.
    Conservative: anything more complex returns None."""
    if any(c in source for c in "()|'\"!"):
        return None
    for conjunct in source.split("&&"):
        match = _EQUALITY.match(conjunct)
        if not match:
            continue
        left_var, left_path, right_var, right_path = match.groups()
        if {left_var, right_var} == {"async", "event"}:
            return (left_path, right_path) if left_var == "async" else (right_path, left_path)
    return None
