"""Known functions and which ones an event name starts."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from controlplane.engine.models import (
    CronTrigger,
    EventTrigger,
    FunctionKey,
    FunctionSpec,
    Trigger,
)


def spec_to_json(spec: FunctionSpec) -> str:
    triggers: list[dict[str, Any]] = []
    for trigger in spec.triggers:
        if isinstance(trigger, EventTrigger):
            triggers.append({"event": trigger.name, "if": trigger.if_expression})
        else:
            triggers.append({"cron": trigger.schedule, "timezone": trigger.timezone})
    return json.dumps({"name": spec.name, "triggers": triggers, "retries": spec.retries})


def spec_from_json(app_id: str, function_id: str, raw: str) -> FunctionSpec:
    value = json.loads(raw)
    triggers: list[Trigger] = []
    for item in value.get("triggers", []):
        if "event" in item:
            triggers.append(EventTrigger(item["event"], item.get("if", "")))
        else:
            triggers.append(CronTrigger(item["cron"], item.get("timezone", "")))
    return FunctionSpec(
        app_id=app_id,
        id=function_id,
        name=value.get("name") or function_id,
        triggers=tuple(triggers),
        retries=int(value.get("retries", 4)),
    )


class FunctionRegistry:
    """In-memory view of the functions table, indexed by trigger event name."""

    def __init__(self) -> None:
        self._specs: dict[FunctionKey, FunctionSpec] = {}
        self._registered_at: dict[FunctionKey, tuple[int, int]] = {}
        self._by_event: dict[str, list[FunctionKey]] = defaultdict(list)

    def put(self, spec: FunctionSpec, registered_at_ms: int, updated_at_ms: int) -> None:
        key = spec.key
        self._specs[key] = spec
        first = self._registered_at.get(key, (registered_at_ms, updated_at_ms))[0]
        self._registered_at[key] = (first, updated_at_ms)
        self._reindex()

    def _reindex(self) -> None:
        index: dict[str, list[FunctionKey]] = defaultdict(list)
        for key, spec in sorted(self._specs.items(), key=lambda kv: str(kv[0])):
            for trigger in spec.triggers:
                if isinstance(trigger, EventTrigger) and key not in index[trigger.name]:
                    index[trigger.name].append(key)
        self._by_event = index

    def get(self, key: FunctionKey) -> FunctionSpec | None:
        return self._specs.get(key)

    def retries(self, app_id: str, function_id: str) -> int:
        spec = self._specs.get(FunctionKey(app_id, function_id))
        return spec.retries if spec else 0

    def matching(self, event_name: str) -> list[FunctionKey]:
        """Functions with an event trigger for this name."""
        return list(self._by_event.get(event_name, ()))

    def all(self) -> list[tuple[FunctionSpec, int, int]]:
        return [
            (spec, *self._registered_at[key])
            for key, spec in sorted(self._specs.items(), key=lambda kv: str(kv[0]))
        ]
