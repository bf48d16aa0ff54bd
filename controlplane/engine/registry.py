"""Known functions and which ones an event name starts."""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from controlplane.model import (
    Batching,
    CancelOn,
    CatchUp,
    Concurrency,
    ConcurrencyScope,
    CronTrigger,
    Debounce,
    EventTrigger,
    FunctionKey,
    FunctionSpec,
    RateLimit,
    Singleton,
    SingletonMode,
    Throttle,
    Timeouts,
    Trigger,
)


def _options(value: Any) -> dict[str, Any] | None:
    return dataclasses.asdict(value) if value is not None else None


def spec_to_json(spec: FunctionSpec) -> str:
    triggers: list[dict[str, Any]] = []
    for trigger in spec.triggers:
        if isinstance(trigger, EventTrigger):
            triggers.append({"event": trigger.name, "if": trigger.if_expression})
        else:
            triggers.append(
                {
                    "cron": trigger.schedule,
                    "timezone": trigger.timezone,
                    "catch_up": trigger.catch_up.value,
                }
            )
    return json.dumps(
        {
            "name": spec.name,
            "triggers": triggers,
            "retries": spec.retries,
            "cancel_on": [
                {
                    "event": c.event,
                    "match": c.match,
                    "if": c.if_expression,
                    "timeout_ms": c.timeout_ms,
                }
                for c in spec.cancel_on
            ],
            "idempotency": spec.idempotency,
            "timeouts": {"start_ms": spec.timeouts.start_ms, "finish_ms": spec.timeouts.finish_ms},
            "concurrency": [dataclasses.asdict(c) for c in spec.concurrency],
            "throttle": _options(spec.throttle),
            "rate_limit": _options(spec.rate_limit),
            "debounce": _options(spec.debounce),
            "priority": spec.priority,
            "batching": _options(spec.batching),
            "singleton": _options(spec.singleton),
            "retention_ms": spec.retention_ms,
        }
    )


def spec_from_json(app_id: str, function_id: str, raw: str) -> FunctionSpec:
    value = json.loads(raw)
    triggers: list[Trigger] = []
    for item in value.get("triggers", []):
        if "event" in item:
            triggers.append(EventTrigger(item["event"], item.get("if", "")))
        else:
            catch_up = CatchUp(item.get("catch_up", CatchUp.ONE.value))
            triggers.append(CronTrigger(item["cron"], item.get("timezone", ""), catch_up))
    timeouts = value.get("timeouts") or {}
    singleton = value.get("singleton")
    return FunctionSpec(
        app_id=app_id,
        id=function_id,
        name=value.get("name") or function_id,
        triggers=tuple(triggers),
        retries=int(value.get("retries", 4)),
        cancel_on=tuple(
            CancelOn(c["event"], c.get("match", ""), c.get("if", ""), int(c.get("timeout_ms", 0)))
            for c in value.get("cancel_on", [])
        ),
        idempotency=value.get("idempotency", ""),
        timeouts=Timeouts(int(timeouts.get("start_ms", 0)), int(timeouts.get("finish_ms", 0))),
        concurrency=tuple(
            Concurrency(c["limit"], c["key"], ConcurrencyScope(c["scope"]))
            for c in value.get("concurrency", [])
        ),
        throttle=_load(Throttle, value.get("throttle")),
        rate_limit=_load(RateLimit, value.get("rate_limit")),
        debounce=_load(Debounce, value.get("debounce")),
        priority=value.get("priority", ""),
        batching=_load(Batching, value.get("batching")),
        singleton=(
            Singleton(singleton["key"], SingletonMode(singleton["mode"]))
            if singleton is not None
            else None
        ),
        retention_ms=int(value.get("retention_ms", 0)),
    )


def _load(cls: Any, value: dict[str, Any] | None) -> Any:
    return cls(**value) if value is not None else None


class FunctionRegistry:
    """In-memory view of the functions table, indexed by trigger event name.

    Read from the writer thread too: updates replace whole dictionaries, never
    mutate ones in use.
    """

    def __init__(self) -> None:
        self._specs: dict[FunctionKey, FunctionSpec] = {}
        self._registered_at: dict[FunctionKey, tuple[int, int]] = {}
        self._by_event: dict[str, list[tuple[FunctionKey, EventTrigger]]] = {}
        self._by_prefix: list[tuple[str, FunctionKey, EventTrigger]] = []

    def put_all(self, functions: Iterable[tuple[FunctionSpec, int, int]]) -> None:
        """Add or replace functions, each with its registration and update times
        (a function keeps its first registration time); indexed once."""
        specs = dict(self._specs)
        registered = dict(self._registered_at)
        for spec, registered_at_ms, updated_at_ms in functions:
            key = spec.key
            specs[key] = spec
            first = registered.get(key, (registered_at_ms, updated_at_ms))[0]
            registered[key] = (first, updated_at_ms)
        self._specs, self._registered_at = specs, registered
        self._reindex()

    def count_of(self, app_id: str, adding: Iterable[str] = ()) -> int:
        """How many functions app ``app_id`` has, with those of ids ``adding``."""
        ids = {key.function_id for key in self._specs if key.app_id == app_id}
        return len(ids.union(adding))

    def _reindex(self) -> None:
        exact: dict[str, list[tuple[FunctionKey, EventTrigger]]] = defaultdict(list)
        prefixes: list[tuple[str, FunctionKey, EventTrigger]] = []
        for key, spec in sorted(self._specs.items(), key=lambda kv: str(kv[0])):
            for trigger in spec.triggers:
                if not isinstance(trigger, EventTrigger):
                    continue
                if trigger.name.endswith("*"):
                    prefixes.append((trigger.name[:-1], key, trigger))
                else:
                    exact[trigger.name].append((key, trigger))
        self._by_event, self._by_prefix = dict(exact), prefixes

    def get(self, key: FunctionKey) -> FunctionSpec | None:
        return self._specs.get(key)

    def retries(self, app_id: str, function_id: str) -> int:
        spec = self._specs.get(FunctionKey(app_id, function_id))
        return spec.retries if spec else 0

    def matching(self, event_name: str) -> dict[FunctionKey, list[EventTrigger]]:
        """Functions with an event trigger for this name (exact or by prefix),
        each with its triggers that match it."""
        found: dict[FunctionKey, list[EventTrigger]] = {}
        for key, trigger in self._by_event.get(event_name, ()):
            found.setdefault(key, []).append(trigger)
        for prefix, key, trigger in self._by_prefix:
            if event_name.startswith(prefix):
                found.setdefault(key, []).append(trigger)
        return found

    def all(self) -> list[tuple[FunctionSpec, int, int]]:
        return [
            (spec, *self._registered_at[key])
            for key, spec in sorted(self._specs.items(), key=lambda kv: str(kv[0]))
        ]
