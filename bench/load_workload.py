"""The sends-under-load scenario: a producer sending one event per call, as a
busy web handler does, while the engine runs other work flat out.

In the background, rounds of the steps workload (N runs x K steps of
``bench-flow``) run back to back. Meanwhile one producer thread sends one
event per ``Send`` call, each the moment the previous one returned, for a
fixed time: every event starts a one-step run of ``bench-latency``. The
scenario reports how long each Send took (p50/p99/max), how many runs a second
the producer started, and the durable steps a second of the background work
while it did (the Send calls' own runs not counted).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import tether_app
from bench.stats import Spread, columns, percentile
from bench.tether_workload import Client, rounds_on_a_cluster
from tether.v1 import common_pb2, event_service_pb2

QUANTILES = (("p50", 50.0), ("p99", 99.0), ("max", 100.0))


@dataclass(slots=True)
class LoadRound:
    send_ms: list[float]
    runs_per_s: float
    background_steps_per_s: float


@dataclass(slots=True)
class LoadMeasurement:
    backend: str
    rounds: list[LoadRound] = field(default_factory=list)
    error: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    def send(self, q: float) -> Spread:
        return Spread.of([percentile(r.send_ms, q) for r in self.rounds])

    def rate(self) -> Spread:
        return Spread.of([r.runs_per_s for r in self.rounds])

    def background(self) -> Spread:
        return Spread.of([r.background_steps_per_s for r in self.rounds])

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "error": self.error,
            "notes": self.notes,
            "rounds": [
                {f"send_{n}_ms": percentile(r.send_ms, q) for n, q in QUANTILES}
                | {"runs_per_s": r.runs_per_s, "background_steps_per_s": r.background_steps_per_s}
                for r in self.rounds
            ],
        }


def measure_load(
    backend: str,
    *,
    runs: int,
    steps: int,
    seconds: float,
    rounds: int,
    warmup: int,
    timeout: float,
    workdir: Path,
) -> LoadMeasurement:
    measurement = LoadMeasurement(backend, notes={"background": f"{runs} x {steps}"})
    measurement.rounds, measurement.error = rounds_on_a_cluster(
        backend,
        workdir / f"tether-load-{backend}",
        "tether_load",
        # Room for every background run and for the producer's.
        capacity=runs * 2,
        function_ids=[tether_app.FUNCTION_ID, tether_app.LATENCY_ID],
        rounds=rounds,
        warmup=warmup,
        one_round=lambda cluster: _round(cluster.address, runs, steps, seconds, timeout),
        notes=measurement.notes,
    )
    return measurement


def _round(address: str, runs: int, steps: int, seconds: float, timeout: float) -> LoadRound:
    stop = threading.Event()
    background_steps = [0]
    failure: list[BaseException] = []

    def background() -> None:
        client = Client(address)
        try:
            index = 0
            while not stop.is_set():
                client.send_runs(runs, steps, index, timeout)
                client.wait_all_finished(
                    time.monotonic() + timeout, function_id=tether_app.FUNCTION_ID
                )
                background_steps[0] += runs * steps
                index += 1
        except BaseException as error:
            failure.append(error)
        finally:
            client.close()

    thread = threading.Thread(target=background, name="bench-background")
    thread.start()
    producer = Client(address)
    data = json.dumps({"steps": 1}).encode()
    request = event_service_pb2.SendRequest(
        events=[common_pb2.Event(name=tether_app.LATENCY_EVENT, data=data)]
    )
    send_ms: list[float] = []
    try:
        time.sleep(0.5)  # the background work under way
        started = time.perf_counter()
        before = background_steps[0]
        while time.perf_counter() - started < seconds and not failure:
            t0 = time.perf_counter_ns()
            response = producer.events.Send(request, timeout=timeout)
            send_ms.append((time.perf_counter_ns() - t0) / 1e6)
            if len(response.results[0].run_ids) != 1:
                raise RuntimeError("an event of the producer started no run")
        elapsed = time.perf_counter() - started
        # Steps of background rounds that ended inside the window (rounds are
        # short next to it, so the count is close).
        done = background_steps[0] - before
    finally:
        stop.set()
        thread.join(timeout)
        producer.close()
    if failure:
        raise RuntimeError(f"the background work failed: {failure[0]}")
    return LoadRound(send_ms, len(send_ms) / elapsed, done / elapsed)


def _cell(spread: Spread, digits: int = 1) -> str:
    if spread.low != spread.low:
        return "-"
    return f"{spread.median:,.{digits}f} [{spread.low:,.{digits}f}-{spread.high:,.{digits}f}]"


def table(measurements: Sequence[LoadMeasurement]) -> str:
    rows: list[tuple[str, ...]] = [
        ("backend", "Send p50 ms", "p99 ms", "max ms", "runs/s started", "background steps/s")
    ]
    failed: set[int] = set()
    for m in measurements:
        if m.error:
            failed.add(len(rows))
            rows.append((m.backend, f"failed: {m.error}", "", "", "", ""))
            continue
        rows.append(
            (
                m.backend,
                *(_cell(m.send(q)) for _, q in QUANTILES),
                _cell(m.rate(), 0),
                _cell(m.background(), 0),
            )
        )
    return columns(rows, failed)
