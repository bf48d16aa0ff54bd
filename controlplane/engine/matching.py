"""Which waiting runs incoming events concern.

Waits for events (``step.wait_for_event``) and cancel_on watches are indexed by
event name, the path of their equality (``match``, or an ``async.X == event.Y``
clause of their expression) and the value it must have. A batch of events is
matched with few queries whatever the number of runs waiting: the paths in use
for the batch's names are read once, then, per name and path, the waits for
every value the batch's events carry, at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from controlplane.engine.expressions import MISSING, canonical, event_object, event_value
from controlplane.engine.waits import wait_matches
from controlplane.model import StoredEvent
from controlplane.store.tx import WriteTx


class WaitMatcher:
    """Matches the events of one batch, in order, against stored waits.

    Waits are read once per batch; the caller reports what changes them while
    the batch is applied: waits it resolved, runs it ended, and names for which
    new waits (cancel_on watches of runs it started) were stored.
    """

    def __init__(self, tx: WriteTx, batch: Sequence[StoredEvent], now_ms: int) -> None:
        self.tx = tx
        self.now = now_ms
        self._objects = {e.id: event_object(e) for e in batch}
        self._names = sorted({e.name for e in batch})
        self._paths: dict[str, list[str]] | None = None
        # (name, path) -> canonical value ("" without a path) -> waits.
        self._index: dict[tuple[str, str], dict[str, list[Any]]] = {}
        self._triggers: dict[str, dict[str, Any] | None] = {}
        self._resolved: set[tuple[str, str]] = set()
        self._ended_runs: set[str] = set()

    def matched_by(self, event: StoredEvent) -> list[Any]:
        """Unexpired waits and watches this event satisfies, oldest first."""
        if self._paths is None:
            self._paths = self.tx.wait_paths_for(self._names)
        paths = self._paths.get(event.name)
        if not paths:
            return []
        incoming = self._objects.get(event.id) or event_object(event)
        candidates: list[Any] = []
        for path in paths:
            if not path:
                candidates.extend(self._waits(event.name, "").get("", ()))
                continue
            value = event_value(incoming, path)
            if value is not MISSING:
                candidates.extend(self._waits(event.name, path).get(canonical(value), ()))
        candidates = [
            w
            for w in candidates
            if w.until_ms > self.now
            and w.created_at_ms <= event.received_at_ms
            and (w.run_id, w.step_id) not in self._resolved
            and w.run_id not in self._ended_runs
        ]
        if not candidates:
            return []
        self._load_triggers(w.trigger_event_pk for w in candidates if w.expression)
        return [
            wait
            for wait in sorted(candidates, key=lambda w: (w.created_at_ms, w.run_id, w.step_id))
            if wait_matches(wait, incoming, self._triggers.get(wait.trigger_event_pk or ""))
        ]

    def resolved(self, wait: Any) -> None:
        self._resolved.add((wait.run_id, wait.step_id))

    def run_ended(self, run_id: str) -> None:
        self._ended_runs.add(run_id)

    def waits_stored(self, names: Iterable[str]) -> None:
        """New waits for these names exist: read them again when next needed."""
        changed = set(names)
        if changed & set(self._names):
            self._paths = None
            self._index = {k: v for k, v in self._index.items() if k[0] not in changed}

    def _waits(self, name: str, path: str) -> dict[str, list[Any]]:
        index = self._index.get((name, path))
        if index is None:
            values: list[str] = []
            if path:
                for obj in self._objects.values():
                    if obj["name"] == name:
                        value = event_value(obj, path)
                        if value is not MISSING:
                            values.append(canonical(value))
            index = {}
            for wait in self.tx.waits_matching(name, path, values):
                index.setdefault(wait.match_value or "", []).append(wait)
            self._index[(name, path)] = index
        return index

    def _load_triggers(self, pks: Iterable[str | None]) -> None:
        missing = {pk for pk in pks if pk and pk not in self._triggers}
        if missing:
            found = self.tx.events_by_pk(sorted(missing))
            for pk in missing:
                self._triggers[pk] = event_object(found[pk]) if pk in found else None
