"""Which waiting runs an incoming event concerns.

Waits for events (``step.wait_for_event``) and cancel_on watches are indexed by
event name, the path of their equality (``match``, or an ``async.X == event.Y``
clause of their expression) and the value it must have. An event is looked up
once per path in use for its name (the ``wait_paths`` table), so the cost of an
event does not grow with the number of runs waiting for other values.
"""

from __future__ import annotations

from typing import Any

from controlplane.engine.expressions import MISSING, canonical, event_object, event_value
from controlplane.engine.models import StoredEvent
from controlplane.engine.waits import wait_matches
from controlplane.store.tx import WriteTx


def waits_matched_by(tx: WriteTx, event: StoredEvent, now_ms: int) -> list[Any]:
    """Unexpired waits and watches this event satisfies, oldest first."""
    paths = tx.wait_paths_for(event.name)
    if not paths:
        return []
    incoming = event_object(event)
    candidates: list[Any] = []
    for path in paths:
        if not path:
            candidates.extend(tx.waits_matching(event.name, "", None))
            continue
        value = event_value(incoming, path)
        if value is not MISSING:
            candidates.extend(tx.waits_matching(event.name, path, canonical(value)))
    candidates = [
        w for w in candidates if w.until_ms > now_ms and w.created_at_ms <= event.received_at_ms
    ]
    if not candidates:
        return []
    trigger_pks = [w.trigger_event_pk for w in candidates if w.expression and w.trigger_event_pk]
    triggers = tx.events_by_pk(trigger_pks) if trigger_pks else {}
    matched = []
    for wait in sorted(candidates, key=lambda w: (w.created_at_ms, w.run_id, w.step_id)):
        trigger = triggers.get(wait.trigger_event_pk or "")
        if wait_matches(wait, incoming, event_object(trigger) if trigger else None):
            matched.append(wait)
    return matched
