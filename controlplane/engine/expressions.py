"""CEL expressions: trigger filters, waits, cancel_on and idempotency keys.

Expressions are compiled when a function registers (or a wait is planned), so a
typo is a clear error up front, not a silent never-match. Variables are events
as JSON objects: ``event`` (the run's event) and, for waits and cancel_on,
``async`` (the incoming event), each ``{"id", "name", "data", "user", "ts"}``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import cel

from controlplane.model import StoredEvent
from controlplane.model.errors import InvalidArgument

EVENT_ONLY = frozenset({"event"})
EVENT_AND_ASYNC = frozenset({"event", "async"})
MAX_PATH_LENGTH = 256

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
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidArgument(
            f"{what}: the match path is {len(path)} characters long; the limit is {MAX_PATH_LENGTH}"
        )
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


# Index keys longer than this are stored as their digest (a B-tree entry has a
# size limit, and a key column a length).
MAX_KEY_LENGTH = 200


def bounded_key(text: str) -> str:
    """``text``, or ``sha256:<hex>`` of it when it is longer than MAX_KEY_LENGTH
    or holds a NUL character (which PostgreSQL text cannot store)."""
    if len(text) <= MAX_KEY_LENGTH and "\x00" not in text:
        return text
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical(value: Any) -> str:
    """A value as the index stores it: 1 and 1.0 are the same key, at any depth;
    long values by their digest."""
    return bounded_key(json.dumps(_whole_numbers(value), sort_keys=True, separators=(",", ":")))


def _whole_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    return value


def indexable_equality(source: str) -> tuple[str, str] | None:
    """(path on ``async``, path on ``event``) when ``source`` is a plain AND of
    comparisons one of which is ``async.X == event.Y`` (either way round), so
    that waits can be found by value instead of evaluated one by one.
    Conservative: anything more complex returns None."""
    # Only && may join the clauses: || and ?: bind more loosely than it.
    if any(c in source for c in "()|?'\"!"):
        return None
    for conjunct in source.split("&&"):
        match = _EQUALITY.match(conjunct)
        if not match:
            continue
        left_var, left_path, right_var, right_path = match.groups()
        if {left_var, right_var} == {"async", "event"}:
            return (left_path, right_path) if left_var == "async" else (right_path, left_path)
    return None


def equality_index(if_expression: str, trigger: dict[str, Any] | None) -> tuple[str, str] | None:
    """For a wait or watch without ``match``: the (path on the incoming event,
    canonical value) that an ``async.X == event.Y`` clause of its expression
    requires, so that it is indexed like a match; None when there is none."""
    pair = indexable_equality(if_expression) if if_expression else None
    if pair is None or trigger is None or len(pair[0]) > MAX_PATH_LENGTH:
        return None
    value = event_value(trigger, pair[1])
    if value is MISSING:
        return None
    return pair[0], canonical(value)
