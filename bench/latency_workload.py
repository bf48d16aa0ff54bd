"""The latency scenario: one event at a time to an idle engine, as a web handler
sends them, and how long until the run's first step body runs and until the
run of K steps has completed.

Each sample sends one event (``bench/latency.requested``, one ``Send`` call)
that starts one run of ``bench-latency``, whose K steps each return the wall
clock (ns) when their body ran; the client then follows the run with
``WaitRun`` until it completes, and only then sends the next event. Three
figures per sample, all on the client's and the worker's clocks (one machine):
the ``Send`` call's own time, the event to the first step's body (the client's
clock before the call to the step's stamp), and the event to the run completed
as the client learns it.

DBOS does the same in-process: ``DBOS.start_workflow`` of a workflow of K
stamped steps, then ``get_result``. It runs in its own process
(``python -m bench.latency_workload``), like bench/dbos_workload.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import tether_app
from bench.databases import fresh_database
from bench.processes import ROOT
from bench.stats import Spread, columns, percentile
from bench.tether_workload import Cluster, rounds_on_a_cluster
from tether.v1 import common_pb2, event_service_pb2
from tether.v1 import run_service_pb2 as rs

#: The figures of a sample, in the order the report shows them.
FIGURES = ("send_ms", "first_step_ms", "completed_ms")
FIGURE_TITLES = {
    "send_ms": "Send call",
    "first_step_ms": "event -> first step",
    "completed_ms": "event -> completed",
}
QUANTILES = (("p50", 50.0), ("p99", 99.0), ("max", 100.0))


@dataclass(slots=True)
class LatencyRound:
    """One round's samples of each figure, in milliseconds."""

    samples: dict[str, list[float]] = field(default_factory=lambda: {f: [] for f in FIGURES})

    def add(self, send_ms: float, first_step_ms: float, completed_ms: float) -> None:
        self.samples["send_ms"].append(send_ms)
        self.samples["first_step_ms"].append(first_step_ms)
        self.samples["completed_ms"].append(completed_ms)

    def quantile(self, figure: str, q: float) -> float:
        return percentile(self.samples[figure], q)


@dataclass(slots=True)
class LatencyMeasurement:
    system: str
    backend: str
    steps: int
    rounds: list[LatencyRound] = field(default_factory=list)
    error: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    def spread(self, figure: str, q: float) -> Spread:
        """A quantile of a figure over the rounds: median [min-max]."""
        return Spread.of([r.quantile(figure, q) for r in self.rounds if r.samples[figure]])

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "backend": self.backend,
            "steps": self.steps,
            "error": self.error,
            "notes": self.notes,
            "rounds": [
                {f"{f}_{name}": r.quantile(f, q) for f in FIGURES for name, q in QUANTILES}
                for r in self.rounds
            ],
            "summary": {
                f"{f}_{name}": asdict(self.spread(f, q)) for f in FIGURES for name, q in QUANTILES
            },
        }


# -- Tether -------------------------------------------------------------------------------


def measure_tether_latency(
    backend: str,
    *,
    samples: int,
    steps: int,
    rounds: int,
    warmup: int,
    timeout: float,
    workdir: Path,
) -> LatencyMeasurement:
    """A control plane on a fresh ``backend`` database and a Python worker;
    ``warmup`` rounds, then ``rounds`` measured ones of ``samples`` events each."""
    measurement = LatencyMeasurement("Tether", backend, steps)
    measurement.rounds, measurement.error = rounds_on_a_cluster(
        backend,
        workdir / f"tether-latency-{backend}",
        "tether_latency",
        capacity=10,
        function_ids=[tether_app.LATENCY_ID],
        rounds=rounds,
        warmup=warmup,
        one_round=lambda cluster: _tether_round(cluster, samples, steps, timeout),
        notes=measurement.notes,
    )
    return measurement


def _tether_round(cluster: Cluster, samples: int, steps: int, timeout: float) -> LatencyRound:
    client = cluster.client
    data = json.dumps({"steps": steps}).encode()
    result = LatencyRound()
    sent: list[tuple[str, int, int, int]] = []
    for _ in range(samples):
        request = event_service_pb2.SendRequest(
            events=[common_pb2.Event(name=tether_app.LATENCY_EVENT, data=data)]
        )
        started = time.time_ns()
        response = client.events.Send(request, timeout=timeout)
        returned = time.time_ns()
        (run_id,) = response.results[0].run_ids
        for _ in client.runs.WaitRun(rs.WaitRunRequest(run_id=run_id), timeout=timeout):
            pass
        sent.append((run_id, started, returned, time.time_ns()))
        time.sleep(0.002)  # idle between events, as between a web handler's requests
    for run_id, started, returned, completed in sent:
        run = client.runs.GetRun(rs.GetRunRequest(run_id=run_id), timeout=timeout).run
        if run.status != common_pb2.RUN_STATUS_COMPLETED:
            raise RuntimeError(f"run {run_id} ended {common_pb2.RunStatus.Name(run.status)}")
        stamps: list[int] = json.loads(run.output)
        result.add(
            (returned - started) / 1e6, (stamps[0] - started) / 1e6, (completed - started) / 1e6
        )
    return result


# -- DBOS: the parent side -------------------------------------------------------------------


def measure_dbos_latency(
    backend: str,
    *,
    samples: int,
    steps: int,
    rounds: int,
    warmup: int,
    timeout: float,
    workdir: Path,
) -> LatencyMeasurement:
    """The same on DBOS, in a child process on a fresh ``backend`` database."""
    measurement = LatencyMeasurement("DBOS", backend, steps)
    if importlib.util.find_spec("dbos") is None:
        measurement.error = (
            "DBOS is not installed here: run `make bench` (it uses .venv-bench) or pass --skip-dbos"
        )
        return measurement
    out = workdir / f"dbos-latency-{backend}.json"
    log_path = workdir / f"dbos-latency-{backend}.log"
    out.unlink(missing_ok=True)
    with fresh_database(backend, workdir, "dbos_latency") as url:
        command = [
            sys.executable,
            "-m",
            "bench.latency_workload",
            "--db",
            url,
            "--samples",
            str(samples),
            "--steps",
            str(steps),
            "--rounds",
            str(rounds),
            "--warmup",
            str(warmup),
            "--out",
            str(out),
        ]
        budget = timeout * (rounds + warmup) + 120
        with log_path.open("wb") as log:
            try:
                finished = subprocess.run(
                    command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, timeout=budget
                )
            except subprocess.TimeoutExpired:
                measurement.error = f"DBOS did not finish within {budget:.0f} s"
                return measurement
    if finished.returncode != 0 or not out.exists():
        lines = log_path.read_text(errors="replace").strip().splitlines()
        measurement.error = lines[-1] if lines else f"exit code {finished.returncode}"
        return measurement
    for samples_of in json.loads(out.read_text()):
        measurement.rounds.append(LatencyRound(samples_of))
    return measurement


# -- DBOS: the child side --------------------------------------------------------------------


def _dbos_rounds(db_url: str, samples: int, steps: int, rounds: int, warmup: int) -> list[Any]:
    from dbos import DBOS, DBOSConfig

    def stamp(index: int) -> int:
        return time.time_ns()

    stamped_step: Callable[[int], int] = DBOS.step()(stamp)

    def workflow(count: int) -> list[int]:
        return [stamped_step(index) for index in range(count)]

    bench_latency: Callable[[int], list[int]] = DBOS.workflow()(workflow)

    config: DBOSConfig = {"name": "dbos-latency", "system_database_url": db_url}
    config["log_level"] = "WARNING"
    DBOS(config=config)
    DBOS.launch()
    measured: list[Any] = []
    try:
        for index in range(warmup + rounds):
            result = LatencyRound()
            for _ in range(samples):
                started = time.time_ns()
                handle = DBOS.start_workflow(bench_latency, steps)
                returned = time.time_ns()
                stamps = handle.get_result()
                completed = time.time_ns()
                result.add(
                    (returned - started) / 1e6,
                    (stamps[0] - started) / 1e6,
                    (completed - started) / 1e6,
                )
                time.sleep(0.002)
            if index >= warmup:
                measured.append(result.samples)
    finally:
        DBOS.destroy()
    return measured


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.latency_workload", description=__doc__)
    parser.add_argument("--db", required=True, help="system database URL")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    measured = _dbos_rounds(args.db, args.samples, args.steps, args.rounds, args.warmup)
    args.out.write_text(json.dumps(measured))


if __name__ == "__main__":
    main()


# -- the report ------------------------------------------------------------------------------


def _cell(spread: Spread) -> str:
    if spread.low != spread.low:  # NaN: no rounds
        return "-"
    return f"{spread.median:.1f} [{spread.low:.1f}-{spread.high:.1f}]"


def table(measurements: Sequence[LatencyMeasurement]) -> str:
    """Each figure's p50, p99 and max per system and backend: median [min-max]
    of the rounds; and Tether's p50 over DBOS's on the same backend, and over
    Restate's."""
    header = (
        "system",
        "backend",
        "figure",
        "p50 ms",
        "p99 ms",
        "max ms",
        "p50 Tether/DBOS",
        "p50 Tether/Restate",
    )
    rows: list[tuple[str, ...]] = [header]
    failed: set[int] = set()
    by_key = {(m.system, m.backend): m for m in measurements}
    for m in measurements:
        if m.error:
            failed.add(len(rows))
            rows.append((m.system, m.backend, f"failed: {m.error}", "", "", "", "", ""))
            continue
        others = (by_key.get(("DBOS", m.backend)), by_key.get(("Restate", "restate")))
        for figure in FIGURES:
            ratios = []
            for other in others:
                ratio = ""
                if m.system == "Tether" and other is not None and other.rounds:
                    ours, theirs = m.spread(figure, 50).median, other.spread(figure, 50).median
                    ratio = f"{ours / theirs:.2f}" if theirs else ""
                ratios.append(ratio)
            rows.append(
                (
                    m.system,
                    m.backend,
                    FIGURE_TITLES[figure],
                    *(_cell(m.spread(figure, q)) for _, q in QUANTILES),
                    *ratios,
                )
            )
    return columns(rows, failed)
