"""Runs started for one function with data: by ``step.invoke`` and by the UI's
and API's "invoke".

The run gets an event named ``tether/function.invoked`` carrying the data, so
``ctx.event.data`` is what was given. Triggers and event-only checks (rate
limit, idempotency, debounce…) do not apply; throttle, priority and
concurrency do, as for every created run.
"""

from __future__ import annotations

import json

from controlplane.engine.creation import NewRun, create_runs
from controlplane.engine.effects import Effects
from controlplane.engine.validation import INVOKED_EVENT
from controlplane.model import FunctionSpec, NewEvent, StoredEvent
from controlplane.model.ids import new_ulid
from controlplane.store.tx import WriteTx


def start_invoked_run(
    tx: WriteTx,
    spec: FunctionSpec,
    event_id: str,
    data: str,
    now_ms: int,
    effects: Effects,
    *,
    traceparent: str | None = None,
    parent_run_id: str | None = None,
    parent_step_id: str | None = None,
) -> str:
    """Store the invoked event (``data``: JSON text of an object) and create the
    run; returns its id. ``traceparent``: the span the run's span links to."""
    event_pk = new_ulid(now_ms)
    event = StoredEvent(event_id, INVOKED_EVENT, data.encode("utf-8"), b"", now_ms, now_ms)
    tx.add_events([NewEvent(event_pk, event, traceparent)])
    seen = {"id": event_id, "name": INVOKED_EVENT, "data": json.loads(data), "user": {}}
    [run_id] = create_runs(
        tx,
        [
            NewRun(
                spec,
                event_pk,
                seen | {"ts": now_ms},
                parent_run_id=parent_run_id,
                parent_step_id=parent_step_id,
            )
        ],
        now_ms,
        effects,
    )
    effects.changed_runs.add(run_id)
    return run_id


def invoke_function(
    tx: WriteTx, spec: FunctionSpec, data: str, now_ms: int
) -> tuple[str, str, Effects]:
    """Create a run of ``spec`` for ``data``; returns (run id, event id, effects)."""
    effects = Effects()
    event_id = f"invoke:{new_ulid(now_ms)}"
    run_id = start_invoked_run(tx, spec, event_id, data, now_ms, effects)
    return run_id, event_id, effects
