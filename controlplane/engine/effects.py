"""What a write changed, for the event loop to act on once it is committed."""

from __future__ import annotations

from dataclasses import dataclass, field

from controlplane.engine.models import RunSpanRecord, RunStatus, StepSpanRecord


@dataclass(slots=True)
class Effects:
    # Runs whose state changed (run watchers are told).
    changed_runs: set[str] = field(default_factory=set)
    # Something became due now (new runs, resolved waits): wake the dispatcher.
    wake: bool = False
    # Runs cancelled, with the execution that held each one's lease (to be told).
    cancelled: list[tuple[str, str | None]] = field(default_factory=list)
    finished: list[tuple[str, RunStatus]] = field(default_factory=list)
    step_spans: list[StepSpanRecord] = field(default_factory=list)
    run_spans: list[RunSpanRecord] = field(default_factory=list)
    # The earliest run deadline (timeouts) this write set, for the dispatcher.
    deadline_ms: int | None = None

    def note_deadline(self, at_ms: int) -> None:
        if self.deadline_ms is None or at_ms < self.deadline_ms:
            self.deadline_ms = at_ms

    def merge(self, other: Effects) -> None:
        self.changed_runs |= other.changed_runs
        self.wake = self.wake or other.wake
        self.cancelled.extend(other.cancelled)
        self.finished.extend(other.finished)
        self.step_spans.extend(other.step_spans)
        self.run_spans.extend(other.run_spans)
        if other.deadline_ms is not None:
            self.note_deadline(other.deadline_ms)
