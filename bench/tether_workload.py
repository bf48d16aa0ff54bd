"""Tether: N concurrent runs of K steps through a real control-plane process and a
real worker process.

Each round sends N events in one ``EventService.Send`` batch (each starts one run
of ``bench-flow``), then waits until no run of the app is unfinished: it asks
``ListRuns`` for an unfinished run and follows it with ``WaitRun`` until it ends,
again and again, so that nothing polls on a timer. The clock stops then. Only
after that does it read every run (``GetRun``) to check that it completed with
its K steps and to take the timings the control plane stored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc

from bench import tether_app
from bench.databases import fresh_database, redact
from bench.processes import (
    Process,
    start_control_plane,
    start_typescript_worker,
    start_worker,
    wait_for,
)
from bench.profiling import cpu_seconds
from bench.stats import Measurement, RoundResult, step_gaps_ms
from tether.v1 import common_pb2, event_service_pb2, event_service_pb2_grpc, run_service_pb2_grpc
from tether.v1 import run_service_pb2 as rs

WORKER_TARGET = "bench.tether_app:app"
#: The same workload (``bench-flow``) in a TypeScript worker.
TYPESCRIPT_WORKER = "bench/typescript/tether_app.ts"
#: The SDKs whose workers can run the steps workload, and how a result names each.
WORKERS = {"python": "Tether", "typescript": "Tether (TypeScript worker)"}
# The control plane takes at most this many events in one Send (its limit).
MAX_EVENTS_PER_SEND = 1000
UNFINISHED = [
    common_pb2.RUN_STATUS_QUEUED,
    common_pb2.RUN_STATUS_RUNNING,
    common_pb2.RUN_STATUS_SLEEPING,
    common_pb2.RUN_STATUS_WAITING,
]

#: Called with the processes before a measured phase (the measured rounds once
#: the worker is connected and warmed up), and again with ``None`` after it: a
#: profiler's hook (``bench.profiling.PySpyProfiler``).
ProfileHook = Callable[[dict[str, Process] | None], None]

T = TypeVar("T")


class Client:
    """The benchmark's own gRPC client of the control plane (synchronous stubs)."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.events = event_service_pb2_grpc.EventServiceStub(self.channel)
        self.runs = run_service_pb2_grpc.RunServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def serving(self, function_ids: Sequence[str]) -> bool:
        """Whether a worker is connected for every one of these functions."""
        response = self.runs.ListFunctions(
            rs.ListFunctionsRequest(app_id=tether_app.APP_ID), timeout=5
        )
        connected = {f.definition.id for f in response.functions if f.connected_workers > 0}
        return all(function_id in connected for function_id in function_ids)

    def send_runs(
        self,
        runs: int,
        steps: int,
        round_index: int,
        timeout: float,
        *,
        event: str = tether_app.EVENT_NAME,
        keys: int = 0,
    ) -> list[str]:
        """Send one ``event`` per run, in one batch (in batches of the most the
        control plane takes at once when there are more); returns the run ids in
        the events' order. ``keys``: give the events a ``data.key`` of that many
        values, in turn."""
        events = [
            common_pb2.Event(
                name=event,
                data=json.dumps(
                    {"steps": steps, "round": round_index, "n": n}
                    | ({"key": f"k{n % keys}"} if keys else {})
                ).encode(),
            )
            for n in range(runs)
        ]
        run_ids: list[str] = []
        for start in range(0, len(events), MAX_EVENTS_PER_SEND):
            request = event_service_pb2.SendRequest(
                events=events[start : start + MAX_EVENTS_PER_SEND]
            )
            response = self.events.Send(request, timeout=timeout)
            run_ids.extend(run_id for result in response.results for run_id in result.run_ids)
        return run_ids

    def wait_all_finished(
        self, deadline: float, *, function_id: str = "", created_after_ms: int = 0
    ) -> None:
        """Until no run of the app (of ``function_id``, created at or after
        ``created_after_ms``) is unfinished: find one, follow it to its end."""
        request = rs.ListRunsRequest(
            app_id=tether_app.APP_ID,
            function_id=function_id,
            statuses=UNFINISHED,
            created_after_ms=created_after_ms,
            page_size=1,
        )
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("runs still unfinished at the deadline")
            try:
                page = self.runs.ListRuns(request, timeout=remaining)
                if not page.runs:
                    return
                stream = self.runs.WaitRun(
                    rs.WaitRunRequest(run_id=page.runs[0].id), timeout=remaining
                )
                for _ in stream:
                    pass
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise TimeoutError("runs still unfinished at the deadline") from None
                raise

    def completed_runs(
        self, run_ids: Sequence[str], steps: int
    ) -> list[tuple[rs.Run, list[rs.StepRecord]]]:
        """Each run with its completed steps, in the order of ``run_ids``;
        raises unless every run completed with ``steps`` steps."""
        found: list[tuple[rs.Run, list[rs.StepRecord]]] = []
        for run_id in run_ids:
            detail = self.runs.GetRun(rs.GetRunRequest(run_id=run_id), timeout=30)
            run = detail.run
            if run.status != common_pb2.RUN_STATUS_COMPLETED:
                name = common_pb2.RunStatus.Name(run.status)
                raise RuntimeError(f"run {run_id} ended {name}: {run.error.message}")
            completed = [s for s in detail.steps if s.status == rs.STEP_STATUS_COMPLETED]
            if len(completed) != steps:
                raise RuntimeError(
                    f"run {run_id} has {len(completed)} completed steps, not {steps}"
                )
            found.append((run, completed))
        return found

    def round_result(
        self, run_ids: Sequence[str], runs: int, steps: int, elapsed: float
    ) -> RoundResult:
        gaps: list[float] = []
        run_latencies: list[float] = []
        first_steps: list[float] = []
        for run, completed in self.completed_runs(run_ids, steps):
            timings = [(s.started_at_ms, s.ended_at_ms) for s in completed]
            gaps.extend(step_gaps_ms(timings))
            run_latencies.append(float(run.ended_at_ms - run.created_at_ms))
            first_steps.append(float(min(t[0] for t in timings) - run.created_at_ms))
        return RoundResult.from_samples(
            runs=runs,
            steps=steps,
            elapsed_s=elapsed,
            step_gaps=gaps,
            run_latencies=run_latencies,
            first_step_latencies=first_steps,
        )


class CpuMeter:
    """CPU seconds the processes spent inside the timed part of the rounds."""

    def __init__(self, processes: dict[str, Process]) -> None:
        self.processes = processes
        self.spent: dict[str, float] = dict.fromkeys(processes, 0.0)
        self._start: dict[str, float | None] = {}

    def start(self) -> None:
        self._start = {name: cpu_seconds(p.pid) for name, p in self.processes.items()}

    def stop(self) -> None:
        for name, process in self.processes.items():
            before, after = self._start.get(name), cpu_seconds(process.pid)
            if before is not None and after is not None:
                self.spent[name] += after - before


def _timed_round(
    client: Client, runs: int, steps: int, index: int, timeout: float, meter: CpuMeter
) -> tuple[list[str], float]:
    """Send the runs and wait for them all to finish: (run ids, seconds)."""
    meter.start()
    started = time.perf_counter()
    run_ids = client.send_runs(runs, steps, index, timeout)
    client.wait_all_finished(time.monotonic() + timeout)
    elapsed = time.perf_counter() - started
    meter.stop()
    if len(run_ids) != runs:
        raise RuntimeError(f"{runs} events started {len(run_ids)} runs")
    return run_ids, elapsed


def measure_tether(
    backend: str,
    *,
    runs: int,
    steps: int,
    rounds: int,
    warmup: int,
    timeout: float,
    workdir: Path,
    profile: ProfileHook | None = None,
    worker: str = "python",
) -> Measurement:
    """Start a control plane on a fresh ``backend`` database and a worker (of
    the ``worker`` SDK) with capacity for every run at once; run ``warmup``
    rounds, then ``rounds`` measured ones."""
    measurement = Measurement(WORKERS[worker], backend)
    directory = workdir / f"tether-{backend}-{worker}"
    directory.mkdir(parents=True, exist_ok=True)
    capacity = max(runs, 1)
    with fresh_database(backend, directory, "tether_bench") as url:
        measurement.notes = {
            "database": redact(url),
            "worker_capacity": capacity,
            "worker_sdk": worker,
        }
        cluster = Cluster(url, directory)
        client, processes = cluster.client, cluster.processes
        try:
            cluster.connect(capacity, [tether_app.FUNCTION_ID], worker=worker)
            meter = CpuMeter(processes)
            for index in range(warmup):
                run_ids, elapsed = _timed_round(client, runs, steps, -1 - index, timeout, meter)
                client.round_result(run_ids, runs, steps, elapsed)
            meter.spent = dict.fromkeys(processes, 0.0)
            if profile is not None:
                profile(processes)
            timed: list[tuple[list[str], float]] = []
            try:
                # Back to back; every run is read and checked afterwards, so that
                # neither the CPU figures nor a profile include those reads.
                for index in range(rounds):
                    timed.append(_timed_round(client, runs, steps, index, timeout, meter))
            finally:
                if profile is not None:
                    profile(None)
            for run_ids, elapsed in timed:
                measurement.rounds.append(client.round_result(run_ids, runs, steps, elapsed))
            measured_steps = runs * steps * len(measurement.rounds)
            if measured_steps:
                measurement.notes["cpu_ms_per_1000_steps"] = {
                    name: round(seconds * 1e6 / measured_steps, 1)
                    for name, seconds in meter.spent.items()
                }
        except (RuntimeError, TimeoutError, grpc.RpcError) as error:
            measurement.error = describe_error(error)
            measurement.notes.update(cluster.logs())
        finally:
            cluster.stop()
    return measurement


class Cluster:
    """A control plane on a database and a worker of the benchmark app: start
    with :meth:`connect`, always :meth:`stop`."""

    def __init__(self, url: str, directory: Path, server_args: Sequence[str] = ()) -> None:
        self.directory = directory
        self.control_plane, port = start_control_plane(url, directory, extra_args=server_args)
        self.address = f"127.0.0.1:{port}"
        self.client = Client(self.address)
        self.processes: dict[str, Process] = {"control-plane": self.control_plane}

    def connect(
        self, capacity: int, function_ids: Sequence[str], *, worker: str = "python"
    ) -> None:
        """Start the worker (of the ``worker`` SDK); return once it serves
        these functions."""
        if worker == "typescript":
            self.processes["worker"] = start_typescript_worker(
                TYPESCRIPT_WORKER, self.address, capacity, self.directory
            )
        else:
            self.processes["worker"] = start_worker(
                WORKER_TARGET, self.address, capacity, self.directory
            )

        def connected() -> bool:
            for process in self.processes.values():
                if process.exited() is not None:
                    raise RuntimeError(f"the {process.name} exited:\n{process.tail()}")
            return self.client.serving(function_ids)

        wait_for(connected, timeout=60, what="the worker to connect")

    def logs(self) -> dict[str, str]:
        """The end of each process's log, for a failed measurement's notes."""
        return {f"{p.name} log": p.tail(15) for p in self.processes.values()}

    def stop(self) -> None:
        self.client.close()
        for process in reversed(self.processes.values()):
            process.stop()


def rounds_on_a_cluster(
    backend: str,
    directory: Path,
    database: str,
    *,
    capacity: int,
    function_ids: Sequence[str],
    rounds: int,
    warmup: int,
    one_round: Callable[[Cluster], T],
    notes: dict[str, Any],
) -> tuple[list[T], str]:
    """A control plane on a fresh ``backend`` database named ``database`` and a
    Python worker of ``capacity`` serving ``function_ids``; ``warmup`` rounds,
    then ``rounds`` measured ones of ``one_round``. Returns the measured
    rounds and why they stopped ("" when all ran); ``notes`` gets the database
    and, on a failure, the processes' logs."""
    directory.mkdir(parents=True, exist_ok=True)
    measured: list[T] = []
    with fresh_database(backend, directory, database) as url:
        notes["database"] = redact(url)
        cluster = Cluster(url, directory)
        try:
            cluster.connect(capacity, function_ids)
            for index in range(warmup + rounds):
                result = one_round(cluster)
                if index >= warmup:
                    measured.append(result)
        except (RuntimeError, TimeoutError, grpc.RpcError) as error:
            notes.update(cluster.logs())
            return measured, describe_error(error)
        finally:
            cluster.stop()
    return measured, ""


def describe_error(error: BaseException) -> str:
    """An error as the report shows it (gRPC: its code and details)."""
    if isinstance(error, grpc.RpcError):
        return f"{error.code().name}: {error.details()}"
    return str(error) or type(error).__name__
