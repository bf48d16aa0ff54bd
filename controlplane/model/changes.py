"""Changes the engine asks the store to make, as records (the store knows how)."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.model.outcomes import ErrorData
from controlplane.model.statuses import RunStatus


@dataclass(frozen=True, slots=True)
class RunUpdate:
    """A run's new status (checked by engine/run_states.py) and what goes with it."""

    run_id: str
    status: RunStatus
    attempt: int
    #: The JSON output of a completed run.
    output: bytes | None = None
    error: ErrorData | None = None
    #: Set when the run finished.
    ended_at_ms: int | None = None
