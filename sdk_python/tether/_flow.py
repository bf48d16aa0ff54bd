"""Flow control options of ``@app.function``: concurrency, throttle, rate_limit,
debounce, priority, batching and singleton.

Each option takes its dataclass or a dict with the same keys. The checks here
mirror the limits the control plane enforces at registration
(``controlplane/engine/validation.py``), so a mistake fails at import time;
CEL expressions are checked by the control plane only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from tether._durations import DurationLike, to_milliseconds
from tether._errors import ConfigError
from tether.v1 import common_pb2

SECOND_MS = 1000
HOUR_MS = 3600 * SECOND_MS
DAY_MS = 24 * HOUR_MS
MAX_CONCURRENCY_LIMITS = 2
MAX_CONCURRENCY = 100_000
MAX_RATE = 100_000
MAX_BATCH_SIZE = 1000

ConcurrencyScope = Literal["fn", "app", "global"]
SingletonMode = Literal["skip", "cancel"]

_SCOPES: dict[str, common_pb2.ConcurrencyScope.ValueType] = {
    "fn": common_pb2.CONCURRENCY_SCOPE_FUNCTION,
    "app": common_pb2.CONCURRENCY_SCOPE_APP,
    "global": common_pb2.CONCURRENCY_SCOPE_GLOBAL,
}
_SINGLETON_MODES: dict[str, common_pb2.SingletonMode.ValueType] = {
    "skip": common_pb2.SINGLETON_MODE_SKIP,
    "cancel": common_pb2.SINGLETON_MODE_CANCEL,
}


@dataclass(frozen=True, slots=True)
class Concurrency:
    """At most ``limit`` runs execute at once, per value of ``key`` (a CEL
    expression over ``event``). ``scope`` "app" or "global" shares the count with
    the app's (or every app's) functions that use the same key value."""

    limit: int
    key: str | None = None
    scope: ConcurrencyScope = "fn"


@dataclass(frozen=True, slots=True)
class Throttle:
    """Start at most ``limit`` runs per ``period`` (per ``key``), evenly spaced,
    ``burst`` at once; runs over the rate wait in the queue."""

    limit: int
    period: DurationLike
    burst: int = 1
    key: str | None = None


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Start at most ``limit`` runs per ``period`` (per ``key``); events over the
    limit start nothing and are recorded as skipped."""

    limit: int
    period: DurationLike
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Debounce:
    """Start a run once no event (per ``key``) arrived for ``period``, with the
    last event; ``timeout`` caps the delay after the first one."""

    period: DurationLike
    key: str | None = None
    timeout: DurationLike | None = None


@dataclass(frozen=True, slots=True)
class Priority:
    """``run``: a CEL expression over ``event`` giving seconds (-600 to 600) to
    start ahead of due runs (positive) or later (negative)."""

    run: str


@dataclass(frozen=True, slots=True)
class Batching:
    """One run for up to ``max_size`` events (per ``key``), started when the
    batch is full or ``timeout`` after its first event; ``ctx.events`` has them."""

    max_size: int
    timeout: DurationLike
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Singleton:
    """At most one unfinished run (per ``key``): a new event is skipped
    (``mode="skip"``) or cancels the unfinished run (``mode="cancel"``)."""

    key: str | None = None
    mode: SingletonMode = "skip"


ConcurrencyLike = int | Concurrency | Mapping[str, Any]
ThrottleLike = Throttle | Mapping[str, Any]
RateLimitLike = RateLimit | Mapping[str, Any]
DebounceLike = Debounce | Mapping[str, Any]
PriorityLike = str | Priority | Mapping[str, Any]
BatchingLike = Batching | Mapping[str, Any]
SingletonLike = Singleton | Mapping[str, Any]

_Option = TypeVar(
    "_Option", Concurrency, Throttle, RateLimit, Debounce, Priority, Batching, Singleton
)


@dataclass(frozen=True, slots=True)
class FlowControl:
    """The flow control options of one function, checked."""

    concurrency: tuple[Concurrency, ...] = ()
    throttle: Throttle | None = None
    rate_limit: RateLimit | None = None
    debounce: Debounce | None = None
    priority: Priority | None = None
    batching: Batching | None = None
    singleton: Singleton | None = None


def flow_control(
    function_id: str,
    *,
    concurrency: ConcurrencyLike | Sequence[ConcurrencyLike] | None = None,
    throttle: ThrottleLike | None = None,
    rate_limit: RateLimitLike | None = None,
    debounce: DebounceLike | None = None,
    priority: PriorityLike | None = None,
    batching: BatchingLike | None = None,
    singleton: SingletonLike | None = None,
    idempotency: bool = False,
    cancel_on: bool = False,
) -> FlowControl:
    """The options as given, as dataclasses; raises ConfigError naming the
    function, the option and the problem. ``idempotency`` and ``cancel_on``
    say whether the function uses them (batching excludes them)."""
    check = _Checker(function_id)
    result = FlowControl(
        concurrency=check.concurrency(concurrency),
        throttle=check.throttle(throttle),
        rate_limit=check.rate_limit(rate_limit),
        debounce=check.debounce(debounce),
        priority=check.priority(priority),
        batching=check.batching(batching),
        singleton=check.singleton(singleton),
    )
    if result.batching is not None:
        clashes = [
            name
            for name, used in (
                ("debounce", result.debounce is not None),
                ("idempotency", idempotency),
                ("rate_limit", result.rate_limit is not None),
                ("singleton", result.singleton is not None),
                ("cancel_on", cancel_on),
            )
            if used
        ]
        if clashes:
            raise check.error(
                "batching",
                f"cannot be combined with {', '.join(clashes)}: a batched run has many "
                "events, and these options work on the one event of a run",
            )
    return result


class _Checker:
    """Normalizes and checks one function's options."""

    def __init__(self, function_id: str) -> None:
        self.function_id = function_id

    def error(self, option: str, problem: str) -> ConfigError:
        return ConfigError(f"function {self.function_id!r}: {option} {problem}")

    def build(self, option: str, value: object, kind: type[_Option]) -> _Option:
        """``value`` as ``kind``: an instance, or a dict with its fields."""
        if isinstance(value, kind):
            return value
        fields = [f.name for f in dataclasses.fields(kind)]
        required = [
            f.name
            for f in dataclasses.fields(kind)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        shape = f"{kind.__name__}(...) or a dict with the keys {', '.join(fields)}"
        if not isinstance(value, Mapping):
            raise self.error(option, f"is {shape}, not {type(value).__name__}")
        unknown = sorted(str(k) for k in set(value) - set(fields))
        if unknown:
            raise self.error(option, f"has unknown key(s) {unknown}; it takes {', '.join(fields)}")
        missing = [name for name in required if name not in value]
        if missing:
            raise self.error(option, f"needs {', '.join(missing)}")
        return kind(**value)

    def count(self, what: str, value: object, high: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(what, f"must be an integer, not {type(value).__name__}")
        if not 1 <= value <= high:
            raise self.error(what, f"must be between 1 and {high:,}, not {value}")

    def period(self, what: str, value: object, low_ms: int, high_ms: int) -> None:
        try:
            ms = to_milliseconds(value)  # type: ignore[arg-type]
        except (TypeError, ValueError) as error:
            raise self.error(what, f"is not a valid duration: {error}") from None
        if not low_ms <= ms <= high_ms:
            raise self.error(
                what,
                f"must be between {_duration(low_ms)} and {_duration(high_ms)}, not {value!r}",
            )

    def key(self, option: str, key: object) -> None:
        if key is not None and not isinstance(key, str):
            raise self.error(
                f"{option} key",
                f"is a CEL expression such as 'event.data.customer_id', not {type(key).__name__}",
            )

    def choice(self, what: str, value: object, choices: Mapping[str, object]) -> None:
        if not isinstance(value, str) or value not in choices:
            raise self.error(what, f"is one of {', '.join(map(repr, choices))}, not {value!r}")

    def concurrency(
        self, value: ConcurrencyLike | Sequence[ConcurrencyLike] | None
    ) -> tuple[Concurrency, ...]:
        if value is None:
            return ()
        items: Sequence[object] = value if isinstance(value, list | tuple) else [value]
        if len(items) > MAX_CONCURRENCY_LIMITS:
            raise self.error(
                "concurrency",
                f"has {len(items)} limits; the limit is {MAX_CONCURRENCY_LIMITS}",
            )
        result = []
        for item in items:
            if isinstance(item, int) and not isinstance(item, bool):
                item = Concurrency(item)
            limit = self.build("concurrency", item, Concurrency)
            self.count("concurrency limit", limit.limit, MAX_CONCURRENCY)
            self.key("concurrency", limit.key)
            self.choice("concurrency scope", limit.scope, _SCOPES)
            if limit.scope != "fn" and not limit.key:
                raise self.error(
                    "concurrency",
                    f"with scope {limit.scope!r} needs a key: the key's value names the "
                    "limit that functions share",
                )
            result.append(limit)
        return tuple(result)

    def throttle(self, value: ThrottleLike | None) -> Throttle | None:
        if value is None:
            return None
        throttle = self.build("throttle", value, Throttle)
        self.count("throttle limit", throttle.limit, MAX_RATE)
        self.count("throttle burst", throttle.burst, MAX_RATE)
        self.period("throttle period", throttle.period, SECOND_MS, 7 * DAY_MS)
        self.key("throttle", throttle.key)
        return throttle

    def rate_limit(self, value: RateLimitLike | None) -> RateLimit | None:
        if value is None:
            return None
        rate_limit = self.build("rate_limit", value, RateLimit)
        self.count("rate_limit limit", rate_limit.limit, MAX_RATE)
        self.period("rate_limit period", rate_limit.period, SECOND_MS, DAY_MS)
        self.key("rate_limit", rate_limit.key)
        return rate_limit

    def debounce(self, value: DebounceLike | None) -> Debounce | None:
        if value is None:
            return None
        debounce = self.build("debounce", value, Debounce)
        self.period("debounce period", debounce.period, SECOND_MS, 7 * DAY_MS)
        if debounce.timeout is not None:
            self.period("debounce timeout", debounce.timeout, SECOND_MS, 7 * DAY_MS)
        self.key("debounce", debounce.key)
        return debounce

    def priority(self, value: PriorityLike | None) -> Priority | None:
        if value is None:
            return None
        priority = self.build(
            "priority", Priority(value) if isinstance(value, str) else value, Priority
        )
        if not isinstance(priority.run, str) or not priority.run.strip():
            raise self.error(
                "priority",
                "is a CEL expression giving seconds, such as "
                "\"event.data.plan == 'enterprise' ? 120 : 0\"",
            )
        return priority

    def batching(self, value: BatchingLike | None) -> Batching | None:
        if value is None:
            return None
        batching = self.build("batching", value, Batching)
        self.count("batching max_size", batching.max_size, MAX_BATCH_SIZE)
        self.period("batching timeout", batching.timeout, SECOND_MS, HOUR_MS)
        self.key("batching", batching.key)
        return batching

    def singleton(self, value: SingletonLike | None) -> Singleton | None:
        if value is None:
            return None
        singleton = self.build("singleton", value, Singleton)
        self.key("singleton", singleton.key)
        self.choice("singleton mode", singleton.mode, _SINGLETON_MODES)
        return singleton


def _duration(ms: int) -> str:
    for unit, size in (("d", DAY_MS), ("h", HOUR_MS), ("s", SECOND_MS)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def fill_definition(definition: common_pb2.FunctionDefinition, flow: FlowControl) -> None:
    """Set the flow control fields of ``definition``."""
    for c in flow.concurrency:
        definition.concurrency.add(limit=c.limit, key=c.key or "", scope=_SCOPES[c.scope])
    if flow.throttle is not None:
        t = flow.throttle
        definition.throttle.CopyFrom(
            common_pb2.Throttle(
                limit=t.limit, period_ms=to_milliseconds(t.period), burst=t.burst, key=t.key or ""
            )
        )
    if flow.rate_limit is not None:
        r = flow.rate_limit
        definition.rate_limit.CopyFrom(
            common_pb2.RateLimit(
                limit=r.limit, period_ms=to_milliseconds(r.period), key=r.key or ""
            )
        )
    if flow.debounce is not None:
        d = flow.debounce
        definition.debounce.CopyFrom(
            common_pb2.Debounce(
                period_ms=to_milliseconds(d.period),
                key=d.key or "",
                timeout_ms=to_milliseconds(d.timeout) if d.timeout is not None else 0,
            )
        )
    if flow.priority is not None:
        definition.priority.CopyFrom(common_pb2.Priority(run=flow.priority.run))
    if flow.batching is not None:
        b = flow.batching
        definition.batching.CopyFrom(
            common_pb2.Batching(
                max_size=b.max_size, timeout_ms=to_milliseconds(b.timeout), key=b.key or ""
            )
        )
    if flow.singleton is not None:
        s = flow.singleton
        definition.singleton.CopyFrom(
            common_pb2.Singleton(key=s.key or "", mode=_SINGLETON_MODES[s.mode])
        )
