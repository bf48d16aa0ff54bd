"""Checks on what users send: events and function definitions.

Every failure names the problem and, where one applies, the limit.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import zoneinfo
from typing import Any

from croniter import croniter

from controlplane.engine.expressions import (
    EVENT_AND_ASYNC,
    EVENT_ONLY,
    check_path,
    compile_expression,
)
from controlplane.engine.settings import Limits, format_bytes, format_duration
from controlplane.model import (
    MAX_RETRIES,
    ConcurrencyScope,
    CronTrigger,
    EventInput,
    EventTrigger,
    FunctionSpec,
    WorkerHello,
)
from controlplane.model.errors import InvalidArgument, LimitExceeded, WorkerRejected

PROTOCOL_VERSION = 1
RESERVED_EVENT_PREFIX = "tether/"
# The event an invoked run starts with; only that run receives it.
INVOKED_EVENT = "tether/function.invoked"
MAX_NAME_LENGTH = 256
MAX_EVENT_ID_LENGTH = 256
MAX_APP_ID_LENGTH = 128
MAX_FUNCTION_ID_LENGTH = 128
# A step's wire id (the hex SHA-1 of its name) and its name, suffixes included.
MAX_STEP_ID_LENGTH = 40
MAX_STEP_NAME_LENGTH = 512
# What one Hello may declare: checked before any other work on it, so that no
# worker can hold the control plane busy with its registration.
MAX_FUNCTIONS_PER_APP = 1000
#: How many executions one Hello may re-announce (Hello.held).
MAX_HELD_EXECUTIONS = 10_000
MAX_TRIGGERS_PER_FUNCTION = 32
MAX_CANCEL_ON_PER_FUNCTION = 16
MAX_DEFINITION_BYTES = 64 * 1024

# How deeply arrays and objects may nest in any JSON a client sends: deeper is
# refused before it is parsed, so that no parser (here, in CEL, in an SDK)
# recurses without bound.
MAX_JSON_DEPTH = 64

_FUNCTION_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_APP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_WHITESPACE = re.compile(r"\s")
# json_depth_over's tools: escapes (removed first, so that no escaped quote ends
# a string), strings (once only brackets and quotes are left), the other bytes.
_JSON_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_JSON_STRING = re.compile(rb'"[^"]*"')
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_SQUARE_BRACKETS = bytes.maketrans(b"{}", b"[]")
_DEPTH_STEP = [0] * 256
_DEPTH_STEP[ord("[")] = 1
_DEPTH_STEP[ord("]")] = -1


def event_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid event name, or None."""
    if not name:
        return "the name is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"the name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
    if _WHITESPACE.search(name) or not name.isprintable():
        return f"the name {name!r} contains whitespace or control characters"
    return None


def exact_event_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be waited for (a wait or cancel_on), or None."""
    problem = event_name_problem(name)
    if problem is None and "*" in name:
        problem = (
            f"{name!r} has a wildcard; only triggers match names by prefix, "
            "waits and cancel_on need the exact name"
        )
    if problem is None and name == INVOKED_EVENT:
        problem = f"{INVOKED_EVENT} goes only to the invoked run; it cannot be waited for"
    return problem


def validate_events(events: list[EventInput], limits: Limits) -> None:
    """Raise for the first invalid event; nothing is stored unless all are valid."""
    if not events:
        raise InvalidArgument("no events to send: the batch is empty")
    if len(events) > limits.max_events_per_send:
        raise LimitExceeded(
            f"{len(events)} events in one call; the limit is {limits.max_events_per_send}"
        )
    for index, event in enumerate(events):
        where = f"event {index}" + (f" ({event.name!r})" if event.name else "")
        problem = event_name_problem(event.name)
        if problem:
            raise InvalidArgument(f"{where}: {problem}")
        if event.name.startswith(RESERVED_EVENT_PREFIX):
            raise InvalidArgument(
                f"{where}: names starting with {RESERVED_EVENT_PREFIX!r} are reserved "
                "for events the control plane emits"
            )
        if len(event.id) > MAX_EVENT_ID_LENGTH:
            raise InvalidArgument(
                f"{where}: the id is {len(event.id)} characters long; "
                f"the limit is {MAX_EVENT_ID_LENGTH}"
            )
        size = len(event.name.encode()) + len(event.data) + len(event.user)
        if size > limits.max_event_bytes:
            raise LimitExceeded(
                f"{where} is {format_bytes(size)}; the limit is "
                f"{format_bytes(limits.max_event_bytes)} per event"
            )
        check_json_object(event.data, f"{where}: data", required=False)
        check_json_object(event.user, f"{where}: user", required=False)
        if event.ts_ms < 0:
            raise InvalidArgument(f"{where}: ts_ms is negative ({event.ts_ms})")


def check_json_object(payload: bytes, what: str, *, required: bool) -> None:
    """Raise InvalidArgument unless ``payload`` is the JSON of an object (or empty,
    when not ``required``), as ``load_json`` takes it, naming ``what``."""
    if not payload:
        if required:
            raise InvalidArgument(f"{what} is missing")
        return
    value = load_json(payload, what)
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a JSON object, not {_json_type(value)}")


def load_json(payload: bytes, what: str) -> Any:
    """The value of ``payload``, which must be UTF-8 JSON nested at most
    MAX_JSON_DEPTH levels deep; InvalidArgument naming ``what`` and the problem
    otherwise. Every JSON a client sends is read through here (event data and
    user, step and run outputs, invoke data), so that none is deeper."""
    depth = json_depth_over(payload, MAX_JSON_DEPTH)
    if depth:
        raise InvalidArgument(
            f"{what} is nested {depth} levels deep; the limit is {MAX_JSON_DEPTH} levels "
            "of arrays and objects"
        )
    try:
        value = _DECODER.decode(payload.decode("utf-8"))
        if b"\\u" in payload and _LONE_SURROGATE.search(payload):
            # Escapes of half a UTF-16 pair parse, but make text no UTF-8 holds
            # (nor the store, nor any reader): refused like any other bad text.
            json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise InvalidArgument(f"{what} is not valid UTF-8 JSON: {error}") from None
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value (JSON has no NaN or Infinity; send null)")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(
            f"the number {text[:32]} is too large for a double (at most about 1.8e308)"
        )
    return number


# Python reads NaN, Infinity and 1e999 (as infinity) by default; other readers do not.
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)

# An escaped UTF-16 surrogate (\\uD800-\\uDFFF); whether it is alone is found on encoding.
_LONE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def json_depth_over(payload: bytes, limit: int) -> int:
    """How many levels deep arrays and objects nest in the JSON ``payload`` when
    that is more than ``limit``, else 0. It parses nothing (strings are skipped,
    brackets counted), so a payload 10,000 levels deep costs a pass or two over
    its bytes and no recursion."""
    if payload.count(b"[") + payload.count(b"{") <= limit:
        return 0
    if b"\\" in payload:
        payload = _JSON_ESCAPE.sub(b"", payload)
    structure = payload.translate(_SQUARE_BRACKETS, _NOT_STRUCTURE)
    if b'"' in structure:
        structure = _JSON_STRING.sub(b"", structure)
    # Each pass removes the innermost level (every "[]" left), so after n passes
    # the rest nests n levels less. Most payloads are gone in a few passes.
    passes = 0
    while passes < limit:
        shorter = structure.replace(b"[]", b"")
        if not shorter:
            return 0
        if len(shorter) == len(structure):
            break  # unbalanced: not JSON, counted as it stands
        structure = shorter
        passes += 1
    depth = passes + max(itertools.accumulate(map(_DEPTH_STEP.__getitem__, structure)), default=0)
    return depth if depth > limit else 0


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


def app_id_problem(app_id: str) -> str | None:
    """Why ``app_id`` is not a valid app id, or None."""
    if not app_id:
        return "the app id is empty"
    if len(app_id) > MAX_APP_ID_LENGTH or not _APP_ID.fullmatch(app_id):
        return (
            f"invalid app id {app_id[: MAX_APP_ID_LENGTH + 1]!r}: use letters, digits, '-', '_' "
            f"and '.', at most {MAX_APP_ID_LENGTH} characters"
        )
    return None


def hello_size_problem(app_id: str, function_count: int, held_count: int = 0) -> str | None:
    """Why a Hello declares too many functions or held executions, or None."""
    if function_count > MAX_FUNCTIONS_PER_APP:
        return (
            f"app {app_id!r} declares {function_count:,} functions; "
            f"the limit is {MAX_FUNCTIONS_PER_APP:,} per app"
        )
    if held_count > MAX_HELD_EXECUTIONS:
        return (
            f"the Hello re-announces {held_count:,} held executions; "
            f"the limit is {MAX_HELD_EXECUTIONS:,}"
        )
    return None


def definition_size_problem(size_bytes: int, triggers: int, cancel_on: int) -> str | None:
    """Why a function definition is too large to register, or None."""
    if size_bytes > MAX_DEFINITION_BYTES:
        return (
            f"its definition is {format_bytes(size_bytes)}; "
            f"the limit is {format_bytes(MAX_DEFINITION_BYTES)}"
        )
    if triggers > MAX_TRIGGERS_PER_FUNCTION:
        return f"{triggers} triggers; the limit is {MAX_TRIGGERS_PER_FUNCTION}"
    if cancel_on > MAX_CANCEL_ON_PER_FUNCTION:
        return f"{cancel_on} cancel_on entries; the limit is {MAX_CANCEL_ON_PER_FUNCTION}"
    return None


def validate_hello(hello: WorkerHello) -> None:
    """Raise WorkerRejected naming the first problem with a worker's Hello."""
    problem = hello_size_problem(hello.app_id, len(hello.functions))
    if problem:
        raise WorkerRejected("invalid_hello", problem)
    if hello.protocol_version != PROTOCOL_VERSION:
        raise WorkerRejected(
            "unsupported_protocol",
            f"unsupported protocol version {hello.protocol_version}; "
            f"this control plane speaks version {PROTOCOL_VERSION}",
        )
    problem = app_id_problem(hello.app_id)
    if problem:
        raise WorkerRejected("invalid_hello", problem)
    if hello.capacity < 1:
        raise WorkerRejected("invalid_hello", "capacity must be at least 1")
    seen: set[str] = set()
    for spec in hello.functions:
        if spec.id in seen:
            raise WorkerRejected(
                "duplicate_function",
                f"duplicate function id {spec.id!r} in app {hello.app_id!r}",
            )
        seen.add(spec.id)
        problem = function_problem(spec)
        if problem:
            raise WorkerRejected("invalid_function", f"function {spec.id!r}: {problem}")


def function_problem(spec: FunctionSpec) -> str | None:
    """Why a function definition is invalid, or None."""
    if not spec.id:
        return "the id is empty"
    if len(spec.id) > MAX_FUNCTION_ID_LENGTH:
        return f"the id is longer than {MAX_FUNCTION_ID_LENGTH} characters"
    if not _FUNCTION_ID.fullmatch(spec.id):
        return "ids are kebab-case: lowercase letters and digits joined by single '-'"
    size = definition_size_problem(0, len(spec.triggers), len(spec.cancel_on))
    if size:
        return size
    if len(spec.name) > MAX_NAME_LENGTH:
        return f"the name is {len(spec.name)} characters long; the limit is {MAX_NAME_LENGTH}"
    if not 0 <= spec.retries <= MAX_RETRIES:
        return f"retries must be between 0 and {MAX_RETRIES}, not {spec.retries}"
    try:
        _check_options(spec)
    except InvalidArgument as error:
        return str(error)
    return None


def _check_options(spec: FunctionSpec) -> None:
    """Raise InvalidArgument for the first bad trigger or option."""
    for trigger in spec.triggers:
        if isinstance(trigger, EventTrigger):
            problem = event_name_problem(trigger.name) or _wildcard_problem(trigger.name)
            if problem:
                raise InvalidArgument(f"event trigger: {problem}")
            if trigger.if_expression:
                compile_expression(trigger.if_expression, EVENT_ONLY, f"trigger {trigger.name!r}")
        elif isinstance(trigger, CronTrigger):
            problem = cron_problem(trigger.schedule, trigger.timezone)
            if problem:
                raise InvalidArgument(f"cron trigger: {problem}")
    for cancel in spec.cancel_on:
        what = f"cancel_on {cancel.event!r}"
        problem = exact_event_name_problem(cancel.event)
        if problem:
            raise InvalidArgument(f"cancel_on: {problem}")
        if cancel.match:
            check_path(cancel.match, what)
        if cancel.if_expression:
            compile_expression(cancel.if_expression, EVENT_AND_ASYNC, what)
        if cancel.timeout_ms < 0:
            raise InvalidArgument(f"{what}: the timeout is negative")
    if spec.idempotency:
        compile_expression(spec.idempotency, EVENT_ONLY, "idempotency")
    if spec.timeouts.start_ms < 0 or spec.timeouts.finish_ms < 0:
        raise InvalidArgument("timeouts must not be negative")
    _check_flow_control(spec)


SECOND_MS = 1000
HOUR_MS = 3600 * SECOND_MS
DAY_MS = 24 * HOUR_MS
MAX_CONCURRENCY_LIMITS = 2
MAX_CONCURRENCY = 100_000
MAX_RATE = 100_000
MAX_BATCH_SIZE = 1000


def cron_problem(schedule: str, timezone: str) -> str | None:
    """Why a cron schedule or its time zone is invalid, or None."""
    fields = schedule.split()
    if len(fields) != 5:
        return (
            f"{schedule!r} has {len(fields)} field(s); a cron expression has five: "
            "minute hour day-of-month month day-of-week, like '0 9 * * *'"
        )
    if not croniter.is_valid(schedule):
        return f"{schedule!r} is not a valid cron expression (minute hour day month weekday)"
    if timezone:
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return f"unknown time zone {timezone!r}: use an IANA name such as 'Europe/Paris'"
    return None


def _check_period(what: str, period_ms: int, low_ms: int, high_ms: int) -> None:
    if not low_ms <= period_ms <= high_ms:
        raise InvalidArgument(
            f"{what} must be between {format_duration(low_ms)} and {format_duration(high_ms)}, "
            f"not {period_ms} ms"
        )


def _check_count(what: str, value: int, high: int) -> None:
    if not 1 <= value <= high:
        raise InvalidArgument(f"{what} must be between 1 and {high:,}, not {value}")


def _check_key(key: str, what: str) -> None:
    if key:
        compile_expression(key, EVENT_ONLY, f"{what} key")


def _check_flow_control(spec: FunctionSpec) -> None:
    if len(spec.concurrency) > MAX_CONCURRENCY_LIMITS:
        raise InvalidArgument(
            f"{len(spec.concurrency)} concurrency limits; the limit is {MAX_CONCURRENCY_LIMITS}"
        )
    for limit in spec.concurrency:
        _check_count("the concurrency limit", limit.limit, MAX_CONCURRENCY)
        if limit.scope != ConcurrencyScope.FUNCTION and not limit.key:
            raise InvalidArgument(
                f"a concurrency limit with scope {limit.scope.value!r} needs a key: the key's "
                "value names the limit that functions share"
            )
        _check_key(limit.key, "concurrency")
    if spec.throttle is not None:
        _check_count("the throttle limit", spec.throttle.limit, MAX_RATE)
        _check_count("the throttle burst", spec.throttle.burst, MAX_RATE)
        _check_period("the throttle period", spec.throttle.period_ms, SECOND_MS, 7 * DAY_MS)
        _check_key(spec.throttle.key, "throttle")
    if spec.rate_limit is not None:
        _check_count("the rate limit", spec.rate_limit.limit, MAX_RATE)
        _check_period("the rate limit period", spec.rate_limit.period_ms, SECOND_MS, DAY_MS)
        _check_key(spec.rate_limit.key, "rate limit")
    if spec.debounce is not None:
        _check_period("the debounce period", spec.debounce.period_ms, SECOND_MS, 7 * DAY_MS)
        if spec.debounce.timeout_ms:
            _check_period("the debounce timeout", spec.debounce.timeout_ms, SECOND_MS, 7 * DAY_MS)
        _check_key(spec.debounce.key, "debounce")
    if spec.priority:
        compile_expression(spec.priority, EVENT_ONLY, "priority")
    if spec.retention_ms:
        _check_period("the retention", spec.retention_ms, 60 * SECOND_MS, 100 * 365 * DAY_MS)
    if spec.batching is not None:
        _check_count("the batch max_size", spec.batching.max_size, MAX_BATCH_SIZE)
        _check_period("the batch timeout", spec.batching.timeout_ms, SECOND_MS, HOUR_MS)
        _check_key(spec.batching.key, "batching")
        clashes = [
            name
            for name, used in (
                ("debounce", spec.debounce is not None),
                ("idempotency", bool(spec.idempotency)),
                ("rate_limit", spec.rate_limit is not None),
                ("singleton", spec.singleton is not None),
                ("cancel_on", bool(spec.cancel_on)),
            )
            if used
        ]
        if clashes:
            raise InvalidArgument(
                f"batching cannot be combined with {', '.join(clashes)}: a batched run has "
                "many events, and these options work on the one event of a run"
            )
    if spec.singleton is not None:
        _check_key(spec.singleton.key, "singleton")


def _wildcard_problem(name: str) -> str | None:
    star = name.find("*")
    if star == -1:
        return None
    if star != len(name) - 1 or star == 0:
        return f"in {name!r}, '*' may only end a name after a prefix, like 'app/user.*'"
    return None
