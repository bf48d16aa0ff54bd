"""Tether: the steps workload under flow control (concurrency limits, throttle).

On a fresh database, with a real control-plane process and a real worker
process (capacity N, as in the steps scenario), the same workload of N runs x K
steps, sent in one ``Send`` and timed until every run has finished, runs once
per function of ``bench/tether_app.py``, one after the other:

- ``unlimited``: ``bench-flow``, the steps scenario's function (no flow control);
- ``concurrency=10`` and ``concurrency=20``: at most that many runs execute at
  once, so throughput should drop to about K x (runs a slot completes per second);
- ``keyed 1 x 20 keys``: ``Concurrency(1, key="event.data.key")`` with the
  events spread over 20 keys, at most 20 runs at once as with ``concurrency=20``
  but in 20 groups that the claim takes in turn (fair claiming);
- ``throttle 100/1s``: runs start at most 100 a second, evenly spaced; the rate is
  far below what the unlimited function reaches, so the throttle binds and the
  achieved start rate can be compared with the configured one.

Each function does warm-up rounds, then measured rounds, back to back. After the
rounds every run is read (``GetRun``): it must have completed with its K steps;
its ``started_at_ms`` (when the first execution was leased) and ``ended_at_ms``
give how many runs were in flight at once (the concurrency limits must hold) and
the spacing of the throttled starts.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import grpc

from bench import tether_app
from bench.databases import fresh_database, redact
from bench.processes import Process
from bench.stats import Spread, columns, percentile
from bench.tether_workload import Client, Cluster, CpuMeter, ProfileHook, describe_error
from tether.v1 import run_service_pb2 as rs


@dataclass(frozen=True, slots=True)
class Variant:
    """One function of the flow scenario and the limit it runs under."""

    name: str
    function_id: str
    event: str
    #: Values of ``data.key`` the events take in turn (0: no key).
    keys: int = 0
    #: The most runs that may execute at once (None: no limit).
    max_in_flight: int | None = None
    #: Configured starts per second (None: not throttled).
    rate_per_s: float | None = None

    def slug(self) -> str:
        """The name as a file name part (profiles)."""
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


VARIANTS = (
    Variant("unlimited", tether_app.FUNCTION_ID, tether_app.EVENT_NAME),
    Variant("concurrency=10", *tether_app.CONCURRENCY_10, max_in_flight=10),
    Variant("concurrency=20", *tether_app.CONCURRENCY_20, max_in_flight=20),
    Variant(
        f"keyed {tether_app.KEYED_LIMIT} x {tether_app.FLOW_KEYS} keys",
        *tether_app.KEYED,
        keys=tether_app.FLOW_KEYS,
        max_in_flight=tether_app.KEYED_LIMIT * tether_app.FLOW_KEYS,
    ),
    Variant(
        f"throttle {tether_app.THROTTLE_LIMIT}/{tether_app.THROTTLE_PERIOD_S}s",
        *tether_app.THROTTLED,
        rate_per_s=tether_app.THROTTLE_LIMIT / tether_app.THROTTLE_PERIOD_S,
    ),
)


@dataclass(frozen=True, slots=True)
class FlowRound:
    """One measured round of one function."""

    elapsed_s: float
    steps_per_s: float
    runs_per_s: float
    #: A run's first lease to its end, p50 (ms): how long one run holds a slot.
    run_duration_p50_ms: float
    #: Runs in flight on average over the round (sum of the runs' durations /
    #: first start to last end), and at most at any moment.
    mean_in_flight: float
    max_in_flight: int
    #: Starts per second: throttled, the inverse of the least-squares slope of
    #: the start times against the runs' order; otherwise (N - 1) / first to
    #: last start.
    start_rate_per_s: float
    #: Time between consecutive starts, in order of start (ms).
    start_gap_p50_ms: float
    start_gap_p99_ms: float
    #: How late a start came after its place on the throttle's even grid
    #: (anchored at the earliest start), p99 and max (ms); 0 when not throttled.
    start_late_p99_ms: float
    start_late_max_ms: float
    #: Concurrency limits: from a run's end to the start of the run that took
    #: its place, p50 (ms); NaN without a limit.
    handover_p50_ms: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class VariantResult:
    variant: Variant
    rounds: list[FlowRound] = field(default_factory=list)
    #: CPU ms of each process per 1,000 steps during the measured rounds.
    cpu_ms_per_1000_steps: dict[str, float] = field(default_factory=dict)

    def summary(self, metric: str) -> Spread:
        return Spread.of([getattr(r, metric) for r in self.rounds])

    def to_json(self) -> dict[str, Any]:
        return {
            "variant": asdict(self.variant),
            "rounds": [r.to_json() for r in self.rounds],
            "cpu_ms_per_1000_steps": self.cpu_ms_per_1000_steps,
            "summary": {
                name: asdict(self.summary(name))
                for name in FlowRound.__dataclass_fields__
                if self.rounds
            },
        }


@dataclass(slots=True)
class FlowMeasurement:
    """Every variant on one backend, or why they could not all be measured."""

    backend: str
    runs: int
    steps: int
    results: list[VariantResult] = field(default_factory=list)
    error: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "runs": self.runs,
            "steps": self.steps,
            "results": [r.to_json() for r in self.results],
            "error": self.error,
            "notes": self.notes,
        }


# -- one round ----------------------------------------------------------------------------


def _timed_round(
    client: Client,
    variant: Variant,
    runs: int,
    steps: int,
    index: int,
    timeout: float,
    meter: CpuMeter,
) -> tuple[list[str], float]:
    """Send the runs of ``variant`` and wait until none is unfinished."""
    meter.start()
    started = time.perf_counter()
    run_ids = client.send_runs(runs, steps, index, timeout, event=variant.event, keys=variant.keys)
    # The previous rounds and functions have finished: as in the steps scenario,
    # wait until no run of the app is unfinished.
    client.wait_all_finished(time.monotonic() + timeout)
    elapsed = time.perf_counter() - started
    meter.stop()
    if len(run_ids) != runs:
        raise RuntimeError(f"{runs} events started {len(run_ids)} runs")
    return run_ids, elapsed


def _in_flight(spans: Sequence[tuple[int, int]]) -> int:
    """The most spans (start, end) open at once; a run ending in the same
    millisecond as another starts counts as ended first (its lease is released
    in the transaction that records its end, before the next claim)."""
    points = sorted([(end, -1) for _, end in spans] + [(start, 1) for start, _ in spans])
    most = current = 0
    for _, change in points:
        current += change
        most = max(most, current)
    return most


def _span_rate(starts: Sequence[int]) -> float:
    """Starts per second from the first start to the last: (N - 1) / that span."""
    span = starts[-1] - starts[0]
    return (len(starts) - 1) * 1000 / span if span > 0 else math.nan


def _start_rate(spans: Sequence[tuple[int, int]]) -> float:
    """Starts per second as the throttle paced them: the inverse of the slope of
    the start times against the runs' order (least squares), so that one late
    start at either end does not tilt it."""
    if len(spans) < 2:
        return math.nan
    xs = range(len(spans))
    ys = [float(start) for start, _ in spans]
    slope = statistics.linear_regression(xs, ys).slope
    return 1000 / slope if slope > 0 else math.nan


def _handovers(variant: Variant, spans: Sequence[tuple[int, int]]) -> list[float]:
    """How long a slot of a concurrency limit stayed free: a run's end to the
    next start in its slot. With a key, the runs of one key follow one another
    (limit 1 per key: exactly); without one, the j-th start after the first
    ``limit`` takes the slot the j-th end freed (the limit is always reached
    while runs are queued)."""
    limit = variant.max_in_flight
    if limit is None:
        return []
    if variant.keys:
        per_key = limit // variant.keys
        found: list[float] = []
        for key in range(variant.keys):
            mine = sorted(spans[key :: variant.keys])
            found += [float(mine[i + per_key][0] - mine[i][1]) for i in range(len(mine) - per_key)]
        return found
    starts = sorted(start for start, _ in spans)
    ends = sorted(end for _, end in spans)
    return [float(starts[limit + j] - ends[j]) for j in range(len(spans) - limit)]


def round_of(variant: Variant, runs: Sequence[rs.Run], steps: int, elapsed: float) -> FlowRound:
    """The figures of a round from its runs as stored, in the events' order."""
    spans = [(int(r.started_at_ms), int(r.ended_at_ms)) for r in runs]
    starts = sorted(start for start, _ in spans)
    gaps = [float(b - a) for a, b in pairwise(starts)]
    span_ms = max(end for _, end in spans) - starts[0]
    durations = [float(end - start) for start, end in spans]
    late: list[float] = []
    if variant.rate_per_s:
        # The throttle spaces the starts of the runs, in the events' order, one
        # interval apart: the grid is the best fit that no start precedes.
        interval = 1000 / variant.rate_per_s
        offsets = [start - n * interval for n, (start, _) in enumerate(spans)]
        anchor = min(offsets)
        late = [offset - anchor for offset in offsets]
    handovers = _handovers(variant, spans)
    return FlowRound(
        elapsed_s=elapsed,
        steps_per_s=len(runs) * steps / elapsed,
        runs_per_s=len(runs) / elapsed,
        run_duration_p50_ms=percentile(durations, 50),
        mean_in_flight=sum(durations) / span_ms if span_ms > 0 else math.nan,
        max_in_flight=_in_flight(spans),
        start_rate_per_s=_start_rate(spans) if variant.rate_per_s else _span_rate(starts),
        start_gap_p50_ms=percentile(gaps, 50),
        start_gap_p99_ms=percentile(gaps, 99),
        start_late_p99_ms=percentile(late, 99) if late else 0.0,
        start_late_max_ms=max(late) if late else 0.0,
        handover_p50_ms=percentile(handovers, 50),
    )


# -- one backend ------------------------------------------------------------------------


def measure_flow(
    backend: str,
    *,
    runs: int,
    steps: int,
    rounds: int,
    warmup: int,
    timeout: float,
    workdir: Path,
    profile: dict[str, ProfileHook] | None = None,
) -> FlowMeasurement:
    """Every variant on a fresh ``backend`` database, one control plane and one
    worker (capacity ``runs``) for all of them. ``profile``: a profiler's hook
    per variant name, called around that variant's measured rounds."""
    measurement = FlowMeasurement(backend, runs, steps)
    directory = workdir / f"flow-{backend}"
    directory.mkdir(parents=True, exist_ok=True)
    capacity = max(runs, 1)
    with fresh_database(backend, directory, "tether_bench_flow") as url:
        measurement.notes = {"database": redact(url), "worker_capacity": capacity}
        cluster = Cluster(url, directory)
        client, processes = cluster.client, cluster.processes
        try:
            cluster.connect(capacity, [v.function_id for v in VARIANTS])
            for variant in VARIANTS:
                measurement.results.append(
                    _measure_variant(
                        client,
                        variant,
                        processes,
                        runs=runs,
                        steps=steps,
                        rounds=rounds,
                        warmup=warmup,
                        timeout=timeout,
                        profile=(profile or {}).get(variant.name),
                    )
                )
        except (RuntimeError, TimeoutError, grpc.RpcError) as error:
            measurement.error = describe_error(error)
            measurement.notes.update(cluster.logs())
        finally:
            cluster.stop()
    return measurement


def _measure_variant(
    client: Client,
    variant: Variant,
    processes: dict[str, Process],
    *,
    runs: int,
    steps: int,
    rounds: int,
    warmup: int,
    timeout: float,
    profile: ProfileHook | None,
) -> VariantResult:
    result = VariantResult(variant)
    meter = CpuMeter(processes)
    for index in range(warmup):
        run_ids, _ = _timed_round(client, variant, runs, steps, -1 - index, timeout, meter)
        client.completed_runs(run_ids, steps)
    meter.spent = dict.fromkeys(processes, 0.0)
    if profile is not None:
        profile(processes)
    timed: list[tuple[list[str], float]] = []
    try:
        for index in range(rounds):
            timed.append(_timed_round(client, variant, runs, steps, index, timeout, meter))
    finally:
        if profile is not None:
            profile(None)
    for run_ids, elapsed in timed:
        stored = [run for run, _ in client.completed_runs(run_ids, steps)]
        result.rounds.append(round_of(variant, stored, steps, elapsed))
    measured_steps = runs * steps * len(result.rounds)
    if measured_steps:
        result.cpu_ms_per_1000_steps = {
            name: round(seconds * 1e6 / measured_steps, 1) for name, seconds in meter.spent.items()
        }
    return result


# -- the report ---------------------------------------------------------------------------


def _number(value: float, digits: int = 0) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def _short(value: float) -> str:
    return _number(value, 1 if abs(value) < 10 else 0)


def table(measurements: Sequence[FlowMeasurement]) -> str:
    """One row per backend and function; throughput relative to the unlimited
    function on the same backend."""
    rows: list[tuple[str, ...]] = [
        (
            "backend",
            "function",
            "durable steps/s  median [min-max]",
            "vs unlimited",
            "runs/s",
            "run ms p50",
            "in flight mean / max (limit)",
            "slot free ms p50",
            "starts/s achieved / configured",
            "start gap ms p50 / p99",
            "late ms p99 / max",
            "CPU ms / 1,000 steps",
        )
    ]
    failed: set[int] = set()
    for m in measurements:
        if m.error and not m.results:
            reason = m.error.strip().splitlines()[0] if m.error.strip() else "failed"
            failed.add(len(rows))
            rows.append((m.backend, f"failed: {reason}", *[""] * 10))
            continue
        base = next((r for r in m.results if r.variant == VARIANTS[0]), None)
        base_rate = base.summary("steps_per_s").median if base and base.rounds else math.nan
        for r in m.results:
            v = r.variant
            steps = r.summary("steps_per_s")
            change = (
                f"{100 * (steps.median - base_rate) / base_rate:+.0f}%"
                if r is not base and base_rate > 0
                else ""
            )
            limit = "" if v.max_in_flight is None else f" ({v.max_in_flight})"
            configured = "" if v.rate_per_s is None else f" / {_number(v.rate_per_s)}"
            cpu = r.cpu_ms_per_1000_steps
            rows.append(
                (
                    m.backend,
                    v.name,
                    f"{_number(steps.median)}  [{_number(steps.low)}-{_number(steps.high)}]",
                    change,
                    _number(r.summary("runs_per_s").median),
                    _short(r.summary("run_duration_p50_ms").median),
                    f"{_short(r.summary('mean_in_flight').median)} / "
                    f"{_number(r.summary('max_in_flight').high)}{limit}",
                    "-" if v.max_in_flight is None else _short(r.summary("handover_p50_ms").median),
                    f"{_number(r.summary('start_rate_per_s').median, 1)}{configured}"
                    if v.rate_per_s
                    else "-",
                    f"{_short(r.summary('start_gap_p50_ms').median)} / "
                    f"{_short(r.summary('start_gap_p99_ms').median)}"
                    if v.rate_per_s
                    else "-",
                    f"{_short(r.summary('start_late_p99_ms').median)} / "
                    f"{_short(r.summary('start_late_max_ms').high)}"
                    if v.rate_per_s
                    else "-",
                    f"cp {_number(cpu.get('control-plane', math.nan))}, "
                    f"worker {_number(cpu.get('worker', math.nan))}",
                )
            )
        if m.error:
            failed.add(len(rows))
            rows.append((m.backend, f"failed: {m.error.strip().splitlines()[0]}", *[""] * 10))
    return columns(rows, failed)


def violations(measurements: Sequence[FlowMeasurement]) -> list[str]:
    """Limits that did not hold: more runs in flight than a concurrency limit."""
    found = []
    for m in measurements:
        for r in m.results:
            cap = r.variant.max_in_flight
            if cap is None:
                continue
            most = max((x.max_in_flight for x in r.rounds), default=0)
            if most > cap:
                found.append(f"{m.backend} {r.variant.name}: {most} runs in flight, limit {cap}")
    return found
