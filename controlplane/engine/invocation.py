"""Starting one function's run directly, with data (the UI's and API's "invoke").

The run gets an event named ``tether/function.invoked`` carrying the data, as a
run started by ``step.invoke`` does, so ``ctx.event.data`` is what was given.
Triggers and event-only checks (rate limit, idempotency, debounce…) do not
apply; throttle, priority and concurrency do, as for every created run.
"""

from __future__ import annotations

import json
from typing import Any

from controlplane.engine.creation import NewRun, create_runs
from controlplane.engine.effects import Effects
from controlplane.engine.ids import new_ulid
from controlplane.engine.models import FunctionSpec
from controlplane.engine.validation import INVOKED_EVENT
from controlplane.store.schema import events
from controlplane.store.tx import WriteTx


def invoked_event_row(event_id: str, data: str, now_ms: int) -> dict[str, Any]:
    """The stored event of an invoked run (``data`` is JSON text of an object)."""
    return {
        "pk": new_ulid(now_ms),
        "id": event_id,
        "name": INVOKED_EVENT,
        "data": data,
        "user_data": None,
        "ts_ms": now_ms,
        "received_at_ms": now_ms,
    }


def invoke_function(
    tx: WriteTx, spec: FunctionSpec, data: str, now_ms: int
) -> tuple[str, str, Effects]:
    """Create a run of ``spec`` for ``data``; returns (run id, event id, effects)."""
    effects = Effects()
    event = invoked_event_row(f"invoke:{new_ulid(now_ms)}", data, now_ms)
    tx.insert_rows(events, [event])
    [run_id] = create_runs(
        tx,
        [
            NewRun(
                spec,
                event["pk"],
                {
                    "id": event["id"],
                    "name": INVOKED_EVENT,
                    "data": json.loads(data),
                    "user": {},
                    "ts": now_ms,
                },
            )
        ],
        now_ms,
        effects,
    )
    return run_id, event["id"], effects
