"""Changes the engine asks the store to make, as records (the store knows how)."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.model.outcomes import ErrorData
from controlplane.model.statuses import HistoryKind, RunStatus


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


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """A history entry to add to a run (read back as a HistoryEntry)."""

    run_id: str
    ts_ms: int
    kind: HistoryKind
    step_id: str | None = None
    step_name: str | None = None
    attempt: int | None = None
    until_ms: int | None = None
    execution_id: str | None = None
    error: ErrorData | None = None
    message: str = ""
    #: When the attempt began, for step failures.
    started_at_ms: int = 0
