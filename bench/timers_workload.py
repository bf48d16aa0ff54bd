"""The timers scenario: N runs asleep at once, all due at the same moment, and
how late each one's next step body runs.

Each round sends N events (``bench/sleep.requested``, in Sends of 1,000) that
start runs of ``bench-sleeper``; each sleeps until the ``wake_at_ms`` its event
carries (the same for all: 2 s after the round began, plus 1 ms per run for
creating them and running them to their sleep), then runs one step that
returns the wall clock. Lateness is that stamp less ``wake_at_ms``: the timer
firing, the lease, the dispatch and the worker starting the step. The round
checks that every run was asleep before the moment came (else it measured
creation, not timers).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import tether_app
from bench.stats import Spread, columns, percentile
from bench.tether_workload import MAX_EVENTS_PER_SEND, Cluster, rounds_on_a_cluster
from tether.v1 import common_pb2, event_service_pb2
from tether.v1 import run_service_pb2 as rs

SLEEP_MS = 2000
QUANTILES = (("p50", 50.0), ("p99", 99.0), ("max", 100.0))


@dataclass(slots=True)
class TimersMeasurement:
    backend: str
    runs: int
    #: Each round's lateness of every run, in ms.
    rounds: list[list[float]] = field(default_factory=list)
    error: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    def spread(self, q: float) -> Spread:
        return Spread.of([percentile(r, q) for r in self.rounds if r])

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "runs": self.runs,
            "error": self.error,
            "notes": self.notes,
            "rounds": [{name: percentile(r, q) for name, q in QUANTILES} for r in self.rounds],
        }


def measure_timers(
    backend: str, *, runs: int, rounds: int, warmup: int, timeout: float, workdir: Path
) -> TimersMeasurement:
    """A control plane on a fresh ``backend`` database and a Python worker with
    room for every run; ``warmup`` rounds, then ``rounds`` measured ones."""
    measurement = TimersMeasurement(backend, runs)
    measurement.rounds, measurement.error = rounds_on_a_cluster(
        backend,
        workdir / f"tether-timers-{backend}-{runs}",
        "tether_timers",
        capacity=runs,
        function_ids=[tether_app.SLEEPER_ID],
        rounds=rounds,
        warmup=warmup,
        one_round=lambda cluster: _round(cluster, runs, timeout),
        notes=measurement.notes,
    )
    return measurement


def _round(cluster: Cluster, runs: int, timeout: float) -> list[float]:
    client = cluster.client
    wake_at_ms = time.time_ns() // 1_000_000 + SLEEP_MS + runs
    data = json.dumps({"wake_at_ms": wake_at_ms}).encode()
    run_ids: list[str] = []
    for start in range(0, runs, MAX_EVENTS_PER_SEND):
        count = min(MAX_EVENTS_PER_SEND, runs - start)
        request = event_service_pb2.SendRequest(
            events=[common_pb2.Event(name=tether_app.SLEEPER_EVENT, data=data)] * count
        )
        response = client.events.Send(request, timeout=timeout)
        run_ids.extend(r for result in response.results for r in result.run_ids)
    # Every run asleep before the moment: else this would time creation.
    sleeping = rs.ListRunsRequest(
        app_id=tether_app.APP_ID,
        function_id=tether_app.SLEEPER_ID,
        statuses=[common_pb2.RUN_STATUS_QUEUED, common_pb2.RUN_STATUS_RUNNING],
        page_size=1,
    )
    while client.runs.ListRuns(sleeping, timeout=timeout).runs:
        if time.time_ns() // 1_000_000 >= wake_at_ms:
            raise RuntimeError(
                f"{runs} runs were not all asleep {SLEEP_MS + runs} ms after the round began"
            )
        time.sleep(0.05)
    client.wait_all_finished(time.monotonic() + timeout, function_id=tether_app.SLEEPER_ID)
    lateness: list[float] = []
    for run_id in run_ids:
        run = client.runs.GetRun(rs.GetRunRequest(run_id=run_id), timeout=timeout).run
        if run.status != common_pb2.RUN_STATUS_COMPLETED:
            raise RuntimeError(f"run {run_id} ended {common_pb2.RunStatus.Name(run.status)}")
        lateness.append(json.loads(run.output) / 1e6 - wake_at_ms)
    return lateness


def _cell(spread: Spread) -> str:
    if spread.low != spread.low:  # NaN: no rounds
        return "-"
    return f"{spread.median:.1f} [{spread.low:.1f}-{spread.high:.1f}]"


def table(measurements: Sequence[TimersMeasurement]) -> str:
    rows: list[tuple[str, ...]] = [("backend", "runs asleep", "late p50 ms", "p99 ms", "max ms")]
    failed: set[int] = set()
    for m in measurements:
        if m.error:
            failed.add(len(rows))
            rows.append((m.backend, f"{m.runs:,}", f"failed: {m.error}", "", ""))
            continue
        rows.append((m.backend, f"{m.runs:,}", *(_cell(m.spread(q)) for _, q in QUANTILES)))
    return columns(rows, failed)
