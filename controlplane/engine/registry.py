"""Known functions and which ones an event name starts."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from controlplane.engine.models import (
    CancelOn,
    CronTrigger,
    EventTrigger,
    FunctionKey,
    FunctionSpec,
    Timeouts,
    Trigger,
)


def spec_to_json(spec: FunctionSpec) -> str:
    triggers: list[dict[str, Any]] = []
    for trigger in spec.triggers:
        if isinstance(trigger, EventTrigger):
            triggers.append({"event": trigger.name, "if": trigger.if_expression})
        else:
            triggers.append({"cron": trigger.schedule, "timezone": trigger.timezone})
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
        }
    )


def spec_from_json(app_id: str, function_id: str, raw: str) -> FunctionSpec:
    value = json.loads(raw)
    triggers: list[Trigger] = []
    for item in value.get("triggers", []):
        if "event" in item:
            triggers.append(EventTrigger(item["event"], item.get("if", "")))
        else:
            triggers.append(CronTrigger(item["cron"], item.get("timezone", "")))
    timeouts = value.get("timeouts") or {}
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
    )


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

    def put(self, spec: FunctionSpec, registered_at_ms: int, updated_at_ms: int) -> None:
        key = spec.key
        specs = dict(self._specs)
        specs[key] = spec
        registered = dict(self._registered_at)
        first = registered.get(key, (registered_at_ms, updated_at_ms))[0]
        registered[key] = (first, updated_at_ms)
        self._specs, self._registered_at = specs, registered
        self._reindex()

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
