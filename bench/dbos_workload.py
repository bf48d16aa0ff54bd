"""The same workload on DBOS 3.4, for comparison.

DBOS runs workflows in-process: each run is a workflow of K ``@DBOS.step()``
steps (each a trivial function returning a small JSON value), N of them started
at once. Every step's result is written to the system database before the next
step starts.

This module runs in its own process (``python -m bench.dbos_workload``), so that
DBOS, a process-wide singleton with its own threads and logging, starts fresh for
each backend; :func:`measure_dbos` starts it. DBOS is installed only in the
benchmark virtualenv and imported lazily.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from pathlib import Path
from typing import Any

from bench.databases import fresh_database
from bench.processes import ROOT
from bench.stats import Measurement, RoundResult, step_gaps_ms

APP_NAME = "dbos-bench"
MODES = ("async", "threads")

AsyncWorkflow = Callable[[int], Coroutine[Any, Any, dict[str, int]]]
SyncWorkflow = Callable[[int], dict[str, int]]


# -- the parent side ------------------------------------------------------------------


def measure_dbos(
    backend: str,
    *,
    runs: int,
    steps: int,
    rounds: int,
    warmup: int,
    mode: str,
    timeout: float,
    workdir: Path,
) -> Measurement:
    """Run the DBOS workload on a fresh ``backend`` database in a child process."""
    measurement = Measurement("DBOS", backend, notes={"mode": mode})
    if importlib.util.find_spec("dbos") is None:
        measurement.error = (
            "DBOS is not installed here: run `make bench` (it uses .venv-bench) or pass --skip-dbos"
        )
        return measurement
    out = workdir / f"dbos-{backend}.json"
    log_path = workdir / f"dbos-{backend}.log"
    out.unlink(missing_ok=True)
    with fresh_database(backend, workdir, "dbos_bench") as url:
        command = [
            sys.executable,
            "-m",
            "bench.dbos_workload",
            "--db",
            url,
            "--runs",
            str(runs),
            "--steps",
            str(steps),
            "--rounds",
            str(rounds),
            "--warmup",
            str(warmup),
            "--mode",
            mode,
            "--timeout",
            str(timeout),
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
    data = json.loads(out.read_text())
    measurement.rounds = [RoundResult.from_json(r) for r in data["rounds"]]
    measurement.notes.update(data.get("notes", {}))
    return measurement


# -- the child side ----------------------------------------------------------------------


async def trivial_step_async(index: int) -> dict[str, int]:
    return {"i": index}


def trivial_step_sync(index: int) -> dict[str, int]:
    return {"i": index}


def _register(mode: str) -> tuple[AsyncWorkflow | None, SyncWorkflow | None]:
    """Register the workflow and its step with DBOS (before launch)."""
    from dbos import DBOS

    if mode == "async":
        step_async: Callable[[int], Awaitable[dict[str, int]]] = DBOS.step()(trivial_step_async)

        async def bench_workflow_async(steps: int) -> dict[str, int]:
            total = 0
            for index in range(steps):
                result = await step_async(index)
                total += result["i"]
            return {"steps": steps, "total": total}

        workflow_async: AsyncWorkflow = DBOS.workflow()(bench_workflow_async)
        return workflow_async, None

    step_sync: Callable[[int], dict[str, int]] = DBOS.step()(trivial_step_sync)

    def bench_workflow_sync(steps: int) -> dict[str, int]:
        total = 0
        for index in range(steps):
            total += step_sync(index)["i"]
        return {"steps": steps, "total": total}

    workflow_sync: SyncWorkflow = DBOS.workflow()(bench_workflow_sync)
    return None, workflow_sync


def _result(
    runs: int,
    steps: int,
    elapsed: float,
    timings: Sequence[tuple[float, float]],
    statuses: Sequence[Any],
    step_lists: Sequence[Any],
) -> RoundResult:
    """Turn one round into the common metrics. ``timings``: for each workflow, when
    it was started and when its result was available (epoch ms, taken here:
    DBOS stores a workflow's creation time to the second on SQLite)."""
    gaps: list[float] = []
    run_latencies: list[float] = []
    first_steps: list[float] = []
    for (started_ms, ended_ms), status, step_list in zip(
        timings, statuses, step_lists, strict=True
    ):
        if status.status != "SUCCESS":
            raise RuntimeError(f"workflow {status.workflow_id} ended {status.status}")
        if len(step_list) != steps:
            raise RuntimeError(
                f"workflow {status.workflow_id} recorded {len(step_list)} steps, not {steps}"
            )
        step_times = [
            (int(s["started_at_epoch_ms"]), int(s["completed_at_epoch_ms"])) for s in step_list
        ]
        gaps.extend(step_gaps_ms(step_times))
        run_latencies.append(ended_ms - started_ms)
        first_steps.append(min(t[0] for t in step_times) - started_ms)
    return RoundResult.from_samples(
        runs=runs,
        steps=steps,
        elapsed_s=elapsed,
        step_gaps=gaps,
        run_latencies=run_latencies,
        first_step_latencies=first_steps,
    )


def _now_ms() -> float:
    return time.time() * 1000


async def _round_async(
    workflow: AsyncWorkflow, runs: int, steps: int, timeout: float
) -> tuple[RoundResult, float]:
    from dbos import DBOS

    async def run_one() -> tuple[float, float, str]:
        started_ms = _now_ms()
        handle = await DBOS.start_workflow_async(workflow, steps)
        await handle.get_result()
        return started_ms, _now_ms(), handle.get_workflow_id()

    cpu = time.process_time()
    started = time.perf_counter()
    done = await asyncio.wait_for(asyncio.gather(*(run_one() for _ in range(runs))), timeout)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    ids = [workflow_id for _, _, workflow_id in done]
    statuses = await asyncio.gather(*(DBOS.get_workflow_status_async(i) for i in ids))
    step_lists = await asyncio.gather(*(DBOS.list_workflow_steps_async(i) for i in ids))
    timings = [(s, e) for s, e, _ in done]
    return _result(runs, steps, elapsed, timings, statuses, step_lists), cpu


def _round_threads(
    workflow: SyncWorkflow, runs: int, steps: int, timeout: float
) -> tuple[RoundResult, float]:
    """Returns the round and the CPU seconds this process spent in its timed part."""
    from dbos import DBOS

    def run_one() -> tuple[float, float, str]:
        started_ms = _now_ms()
        handle = DBOS.start_workflow(workflow, steps)
        handle.get_result()
        return started_ms, _now_ms(), handle.get_workflow_id()

    pool = ThreadPoolExecutor(runs, thread_name_prefix="bench-client")
    try:
        cpu = time.process_time()
        started = time.perf_counter()
        futures = [pool.submit(run_one) for _ in range(runs)]
        _, pending = wait_futures(futures, timeout)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        if pending:
            raise TimeoutError(f"{len(pending)} workflow(s) not finished after {timeout:.0f} s")
        done = [f.result() for f in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    ids = [workflow_id for _, _, workflow_id in done]
    statuses = [DBOS.get_workflow_status(i) for i in ids]
    step_lists = [DBOS.list_workflow_steps(i) for i in ids]
    timings = [(s, e) for s, e, _ in done]
    return _result(runs, steps, elapsed, timings, statuses, step_lists), cpu


def run_workload(
    db_url: str, *, runs: int, steps: int, rounds: int, warmup: int, mode: str, timeout: float
) -> tuple[list[RoundResult], dict[str, Any]]:
    """Launch DBOS on ``db_url``; run ``warmup`` rounds, then ``rounds`` measured ones."""
    import dbos
    from dbos import DBOS, DBOSConfig

    workflow_async, workflow_sync = _register(mode)
    config: DBOSConfig = {
        "name": APP_NAME,
        "system_database_url": db_url,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    results: list[RoundResult] = []
    cpu_spent = 0.0
    try:
        for index in range(warmup + rounds):
            if workflow_async is not None:
                result, cpu = asyncio.run(_round_async(workflow_async, runs, steps, timeout))
            else:
                assert workflow_sync is not None
                result, cpu = _round_threads(workflow_sync, runs, steps, timeout)
            if index >= warmup:
                results.append(result)
                cpu_spent += cpu
    finally:
        DBOS.destroy()
    notes: dict[str, Any] = {
        "dbos_version": getattr(dbos, "__version__", "") or _installed_version("dbos")
    }
    if results:
        notes["cpu_ms_per_1000_steps"] = {
            "dbos-process": round(cpu_spent * 1e6 / (runs * steps * len(results)), 1)
        }
    return results, notes


def _installed_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return ""


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dbos_workload", description=__doc__)
    parser.add_argument("--db", required=True, help="system database URL")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--mode", choices=MODES, default="threads")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    rounds, notes = run_workload(
        args.db,
        runs=args.runs,
        steps=args.steps,
        rounds=args.rounds,
        warmup=args.warmup,
        mode=args.mode,
        timeout=args.timeout,
    )
    args.out.write_text(json.dumps({"rounds": [r.to_json() for r in rounds], "notes": notes}))


if __name__ == "__main__":
    main()
