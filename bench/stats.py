"""Round results and the statistics the report prints (standard library only, so
that the DBOS side, which runs in its own process, shares them)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), interpolated linearly between ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def step_gaps_ms(steps: Iterable[tuple[int, int]]) -> list[float]:
    """Gaps between one step's end and the next step's start in one run, from
    (started_at_ms, ended_at_ms) pairs in any order."""
    ordered = sorted(steps)
    return [float(ordered[i + 1][0] - ordered[i][1]) for i in range(len(ordered) - 1)]


@dataclass(frozen=True, slots=True)
class RoundResult:
    """One measured round: N runs of K steps, all durable and completed."""

    runs: int
    steps: int
    elapsed_s: float
    steps_per_s: float
    step_gap_p50_ms: float
    step_gap_p99_ms: float
    run_latency_p50_ms: float
    run_latency_p99_ms: float
    #: Run created -> its first step started (queueing and dispatch).
    first_step_p50_ms: float
    run_latency_max_ms: float = math.nan

    @classmethod
    def from_samples(
        cls,
        *,
        runs: int,
        steps: int,
        elapsed_s: float,
        step_gaps: Sequence[float],
        run_latencies: Sequence[float],
        first_step_latencies: Sequence[float],
    ) -> RoundResult:
        return cls(
            runs=runs,
            steps=steps,
            elapsed_s=elapsed_s,
            steps_per_s=runs * steps / elapsed_s if elapsed_s > 0 else math.nan,
            step_gap_p50_ms=percentile(step_gaps, 50),
            step_gap_p99_ms=percentile(step_gaps, 99),
            run_latency_p50_ms=percentile(run_latencies, 50),
            run_latency_p99_ms=percentile(run_latencies, 99),
            first_step_p50_ms=percentile(first_step_latencies, 50),
            run_latency_max_ms=max(run_latencies, default=math.nan),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RoundResult:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


#: The metrics summarised over rounds, in the order the report shows them.
METRICS = (
    "steps_per_s",
    "step_gap_p50_ms",
    "step_gap_p99_ms",
    "run_latency_p50_ms",
    "run_latency_p99_ms",
    "run_latency_max_ms",
    "first_step_p50_ms",
    "elapsed_s",
)


@dataclass(frozen=True, slots=True)
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            return cls(math.nan, math.nan, math.nan)
        return cls(statistics.median(values), min(values), max(values))

    @property
    def relative(self) -> float:
        """(high - low) / median: how far apart the rounds were."""
        if not self.median or math.isnan(self.median):
            return math.nan
        return (self.high - self.low) / self.median


@dataclass(slots=True)
class Measurement:
    """One system on one backend: its measured rounds, or why there are none."""

    system: str
    backend: str
    rounds: list[RoundResult] = field(default_factory=list)
    error: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    def summary(self, metric: str) -> Spread:
        return Spread.of([getattr(r, metric) for r in self.rounds])

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "backend": self.backend,
            "error": self.error,
            "notes": self.notes,
            "rounds": [r.to_json() for r in self.rounds],
            "summary": {
                metric: asdict(self.summary(metric))
                | {"relative_spread": self.summary(metric).relative}
                for metric in METRICS
            }
            if self.rounds
            else {},
        }


def columns(rows: Sequence[tuple[str, ...]], skip_width: set[int] | None = None) -> str:
    """Left-aligned columns under a ruled header; rows in ``skip_width`` (long
    failure messages) do not widen the columns."""
    skip = skip_width or set()
    measured = [row for index, row in enumerate(rows) if index not in skip]
    widths = [max(len(row[i]) for row in measured) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)
