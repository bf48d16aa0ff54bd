"""Run timeouts: a run that waited too long to start, or ran too long, is
cancelled with the reason recorded."""

from __future__ import annotations

from collections.abc import Callable

from controlplane.engine import admin
from controlplane.engine.effects import Effects
from controlplane.engine.settings import format_duration
from controlplane.model import FunctionKey, FunctionSpec
from controlplane.store.tx import WriteTx

TIMEOUT_ERROR = "Timeout"


def cancel_overdue(
    tx: WriteTx, now_ms: int, spec_of: Callable[[FunctionKey], FunctionSpec | None]
) -> Effects:
    effects = Effects()
    for row in tx.deadlines_due(now_ms):
        run = tx.run_state(row.run_id)
        if run is None:
            continue
        spec = spec_of(FunctionKey(run.app_id, run.function_id))
        if row.start_deadline_ms is not None and row.start_deadline_ms <= now_ms:
            limit = spec.timeouts.start_ms if spec else row.start_deadline_ms - run.created_at_ms
            reason = f"timed out: did not start within {format_duration(limit)} (timeouts.start)"
        else:
            limit = spec.timeouts.finish_ms if spec else 0
            reason = (
                f"timed out: did not finish within {format_duration(limit)} of starting "
                "(timeouts.finish)"
            )
        done = admin.cancel_unfinished(tx, row.run_id, reason, now_ms, error_name=TIMEOUT_ERROR)
        if done is not None:
            effects.merge(done)
    return effects
