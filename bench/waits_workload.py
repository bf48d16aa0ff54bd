"""Tether: event ingestion with many runs suspended in ``step.wait_for_event``.

For each number P of pending waits (default 0, 1, 1,000 and 10,000), on a fresh
database, with a real control-plane process and a real worker process:

1. Setup (timed, not counted): P ``bench/wait.start`` events, each with its own
   ``data.key``, start P runs of ``waiter``; the worker runs each until it
   suspends in ``wait_for_event(event="bench/wait.done", match="data.key")``. The
   setup ends when no run of ``waiter`` is queued or running (``ListRuns`` with a
   status filter, polled until a deadline); then every one of the P runs must be
   ``waiting``.
2. Ingestion (after warm-up rounds, the measured rounds): R rounds of M events
   of a name that nothing waits for and nothing is triggered by
   (``bench/other.happened``), then R rounds of M ``bench/wait.done`` events
   whose keys match no wait; each round in ``Send`` calls of B events one after
   the other. ``Send`` returns once its events are durable (and matched against
   the waits), so a round's events/s = M / the time of its calls.
3. Resolving: K ``bench/wait.done`` events whose keys match K of the pending
   waits, in ``Send`` calls of B, timed from the first call until those K runs
   have completed (each resumes on the worker and returns). The K runs are the
   ones started last, so ``ListRuns`` with ``created_after_ms`` finds exactly
   them: the clock stops when none of them is unfinished (found with
   ``ListRuns``, followed with ``WaitRun`` until it ends). Afterwards the
   benchmark checks that exactly K runs completed and P - K are still waiting.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench import tether_app
from bench.databases import fresh_database, redact
from bench.processes import Process, wait_for
from bench.stats import columns
from bench.tether_workload import (
    MAX_EVENTS_PER_SEND,
    Client,
    Cluster,
    CpuMeter,
    ProfileHook,
    describe_error,
)
from tether.v1 import common_pb2, event_service_pb2
from tether.v1 import run_service_pb2 as rs

#: An event name no function is triggered by and no run waits for.
UNRELATED_EVENT = "bench/other.happened"
#: The two kinds of events whose ingestion is measured, in this order.
UNRELATED = "unrelated"
NON_MATCHING = "non-matching"
KINDS = (UNRELATED, NON_MATCHING)
#: The phase that resolves waits, for a profiler's hook.
RESOLVE = "resolve"
#: Executions the worker takes at once while the waiting runs start (a
#: suspended run holds none).
WORKER_CAPACITY = 1000
LIST_PAGE = 1000


@dataclass(slots=True)
class WaitsMeasurement:
    """Ingestion and resolving with ``pending`` waits, on one backend."""

    backend: str
    pending: int
    #: Seconds from the first start event until all ``pending`` runs waited.
    setup_s: float = math.nan
    #: Events/s per measured round: unrelated events, then non-matching ones.
    unrelated_per_s: list[float] = field(default_factory=list)
    unmatched_per_s: list[float] = field(default_factory=list)
    #: Matching events sent, and the time until their runs completed.
    resolved: int = 0
    resolve_s: float = math.nan
    #: The part of resolve_s spent in the Send calls.
    resolve_send_s: float = math.nan
    error: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def unrelated(self) -> float:
        return _median(self.unrelated_per_s)

    @property
    def unmatched(self) -> float:
        return _median(self.unmatched_per_s)

    @property
    def resolve_per_s(self) -> float:
        return self.resolved / self.resolve_s if self.resolve_s > 0 else math.nan

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "pending_waits": self.pending,
            "setup_s": _finite(self.setup_s),
            "unrelated_events_per_s": self.unrelated_per_s,
            "unmatched_events_per_s": self.unmatched_per_s,
            "unrelated_events_per_s_median": _finite(self.unrelated),
            "unmatched_events_per_s_median": _finite(self.unmatched),
            "resolved": self.resolved,
            "resolve_s": _finite(self.resolve_s),
            "resolve_send_s": _finite(self.resolve_send_s),
            "resolved_runs_per_s": _finite(self.resolve_per_s),
            "error": self.error,
            "notes": self.notes,
        }


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


# -- talking to the control plane ------------------------------------------------------


def _events(name: str, keys: Sequence[str]) -> list[common_pb2.Event]:
    return [common_pb2.Event(name=name, data=json.dumps({"key": k}).encode()) for k in keys]


@dataclass(slots=True)
class _Sent:
    """What a series of ``Send`` calls did: the runs started and resumed."""

    started: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)


def _send(client: Client, events: Sequence[common_pb2.Event], batch: int, timeout: float) -> _Sent:
    """Send ``events`` in calls of ``batch``, one after the other."""
    sent = _Sent()
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        response = client.events.Send(event_service_pb2.SendRequest(events=chunk), timeout=timeout)
        if len(response.results) != len(chunk):
            raise RuntimeError(f"{len(chunk)} events sent, {len(response.results)} results")
        for result in response.results:
            sent.started.extend(result.run_ids)
            sent.resumed.extend(result.resumed_run_ids)
    return sent


def _list(
    client: Client,
    statuses: Sequence[common_pb2.RunStatus.ValueType],
    *,
    created_after_ms: int = 0,
    page_size: int = LIST_PAGE,
    token: str = "",
) -> rs.ListRunsResponse:
    request = rs.ListRunsRequest(
        app_id=tether_app.APP_ID,
        function_id=tether_app.WAITER_ID,
        statuses=statuses,
        created_after_ms=created_after_ms,
        page_size=page_size,
        page_token=token,
    )
    response: rs.ListRunsResponse = client.runs.ListRuns(request, timeout=60)
    return response


def _count(
    client: Client, statuses: Sequence[common_pb2.RunStatus.ValueType], *, created_after_ms: int = 0
) -> int:
    """How many runs of ``waiter`` are in one of ``statuses`` (paging through)."""
    total, token = 0, ""
    while True:
        page = _list(client, statuses, created_after_ms=created_after_ms, token=token)
        total += len(page.runs)
        token = page.next_page_token
        if not token:
            return total


def _created_at_ms(client: Client, run_id: str) -> int:
    detail = client.runs.GetRun(rs.GetRunRequest(run_id=run_id), timeout=30)
    return int(detail.run.created_at_ms)


# -- the phases --------------------------------------------------------------------------


def _start_waiting_runs(
    client: Client,
    pending: int,
    resolve: int,
    processes: dict[str, Process],
    timeout: float,
) -> tuple[float, int, list[str]]:
    """Start ``pending`` waiter runs and wait until every one is waiting: (the
    seconds it took, the creation time of the last ``resolve`` runs, which were
    started after the others, and their ids)."""
    keys = [f"k{n}" for n in range(pending)]
    rest, last = keys[: pending - resolve], keys[pending - resolve :]
    started = time.perf_counter()
    start = tether_app.WAIT_START_EVENT
    rest_ids = _send(client, _events(start, rest), MAX_EVENTS_PER_SEND, 60).started
    last_ids = _send(client, _events(start, last), MAX_EVENTS_PER_SEND, 60).started
    if len(rest_ids) + len(last_ids) != pending:
        raise RuntimeError(f"{pending} start events started {len(rest_ids) + len(last_ids)} runs")

    def settled() -> bool:
        for process in processes.values():
            if process.exited() is not None:
                raise RuntimeError(f"the {process.name} exited:\n{process.tail()}")
        busy = [common_pb2.RUN_STATUS_QUEUED, common_pb2.RUN_STATUS_RUNNING]
        return not _list(client, busy, page_size=1).runs

    wait_for(settled, timeout=timeout, what=f"{pending:,} runs to wait")
    elapsed = time.perf_counter() - started
    waiting = _count(client, [common_pb2.RUN_STATUS_WAITING])
    if waiting != pending:
        raise RuntimeError(f"{waiting:,} of {pending:,} runs are waiting")
    boundary = 0
    if last_ids:
        boundary = _created_at_ms(client, last_ids[0])
        if rest_ids and _created_at_ms(client, rest_ids[-1]) >= boundary:
            raise RuntimeError("the runs to resolve share a creation time with the others")
        found = _count(client, [common_pb2.RUN_STATUS_WAITING], created_after_ms=boundary)
        if found != resolve:
            raise RuntimeError(f"{found} runs created since the boundary, not {resolve}")
    return elapsed, boundary, last_ids


def _kind_events(kind: str, label: str, events: int) -> list[common_pb2.Event]:
    """``events`` events of one kind (``unrelated`` or ``non-matching``), with
    keys unique to ``label``."""
    keys = [f"none-{label}-{n}" for n in range(events)]
    name = UNRELATED_EVENT if kind == UNRELATED else tether_app.WAIT_DONE_EVENT
    return _events(name, keys)


def _ingest(
    client: Client,
    kind: str,
    label: str,
    events: int,
    batch: int,
    timeout: float,
) -> float:
    """Send ``events`` events of ``kind`` in calls of ``batch``: events/s."""
    prepared = _kind_events(kind, label, events)
    started = time.perf_counter()
    sent = _send(client, prepared, batch, timeout)
    elapsed = time.perf_counter() - started
    if sent.started or sent.resumed:
        raise RuntimeError(
            f"events that concern no run started {len(sent.started)} runs "
            f"and resumed {len(sent.resumed)}"
        )
    return events / elapsed


def _resolve(
    client: Client,
    pending: int,
    run_ids: Sequence[str],
    boundary: int,
    batch: int,
    timeout: float,
) -> tuple[float, float]:
    """Send the events matching the waits of ``run_ids`` (the last runs
    started); (seconds until those runs completed, seconds of the Send calls)."""
    resolve = len(run_ids)
    keys = [f"k{n}" for n in range(pending - resolve, pending)]
    events = _events(tether_app.WAIT_DONE_EVENT, keys)
    started = time.perf_counter()
    sent = _send(client, events, batch, timeout)
    sending = time.perf_counter() - started
    client.wait_all_finished(
        time.monotonic() + timeout, function_id=tether_app.WAITER_ID, created_after_ms=boundary
    )
    elapsed = time.perf_counter() - started
    if sent.started or sorted(sent.resumed) != sorted(run_ids):
        raise RuntimeError(
            f"{resolve} matching events started {len(sent.started)} runs and resumed "
            f"{len(sent.resumed)}, not the {resolve} runs waiting for them"
        )
    completed = _count(client, [common_pb2.RUN_STATUS_COMPLETED], created_after_ms=boundary)
    if completed != resolve:
        raise RuntimeError(f"{completed} of the {resolve} matched runs completed")
    still = _count(client, [common_pb2.RUN_STATUS_WAITING])
    if still != pending - resolve:
        raise RuntimeError(f"{still:,} runs still waiting, not {pending - resolve:,}")
    return elapsed, sending


# -- one level ---------------------------------------------------------------------------


def measure_waits(
    backend: str,
    *,
    pending: int,
    events: int,
    batch: int,
    resolve: int,
    rounds: int,
    warmup: int,
    timeout: float,
    workdir: Path,
    profiles: dict[str, ProfileHook] | None = None,
) -> WaitsMeasurement:
    """Ingestion with ``pending`` waits on a fresh ``backend`` database, then
    (when there are waits) resolving ``min(resolve, pending)`` of them.
    ``profiles``: a profiler's hook per kind of event (``KINDS``), called around
    the measured rounds of that kind, and one for ``RESOLVE``, called around
    the resolving."""
    resolve = min(resolve, pending)
    measurement = WaitsMeasurement(backend, pending)
    directory = workdir / f"waits-{backend}-{pending}"
    directory.mkdir(parents=True, exist_ok=True)
    with fresh_database(backend, directory, "tether_bench_waits") as url:
        measurement.notes = {
            "database": redact(url),
            "worker_capacity": WORKER_CAPACITY,
            "events_per_round": events,
            "events_per_send": batch,
        }
        cluster = Cluster(url, directory)
        client, processes = cluster.client, cluster.processes
        try:
            cluster.connect(WORKER_CAPACITY, [tether_app.WAITER_ID])
            boundary = 0
            to_resolve: list[str] = []
            if pending:
                measurement.setup_s, boundary, to_resolve = _start_waiting_runs(
                    client, pending, resolve, processes, timeout
                )
            for index in range(warmup):
                for kind in KINDS:
                    _ingest(client, kind, f"w{index}", events, batch, timeout)
            rates = {
                UNRELATED: measurement.unrelated_per_s,
                NON_MATCHING: measurement.unmatched_per_s,
            }
            cpu: dict[str, dict[str, float]] = {}
            for kind in KINDS:
                meter = CpuMeter(processes)
                hook = (profiles or {}).get(kind)
                if hook is not None:
                    hook(processes)
                try:
                    for index in range(rounds):
                        meter.start()
                        rates[kind].append(
                            _ingest(client, kind, f"r{index}", events, batch, timeout)
                        )
                        meter.stop()
                finally:
                    if hook is not None:
                        hook(None)
                cpu[kind] = {
                    name: round(seconds * 1e6 / (events * rounds), 1)
                    for name, seconds in meter.spent.items()
                }
            measurement.notes["cpu_ms_per_1000_events"] = cpu
            if to_resolve:
                hook = (profiles or {}).get(RESOLVE)
                if hook is not None:
                    hook(processes)
                try:
                    measurement.resolve_s, measurement.resolve_send_s = _resolve(
                        client, pending, to_resolve, boundary, batch, timeout
                    )
                finally:
                    if hook is not None:
                        hook(None)
                measurement.resolved = len(to_resolve)
        except (RuntimeError, TimeoutError, grpc.RpcError) as error:
            measurement.error = describe_error(error)
            measurement.notes.update(cluster.logs())
        finally:
            cluster.stop()
    return measurement


# -- the report ----------------------------------------------------------------------------


def _number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"


def _range(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{_number(_median(values))}  [{_number(min(values))}-{_number(max(values))}]"


def _change(value: float, base: float) -> str:
    if math.isnan(value) or math.isnan(base) or not base:
        return ""
    return f" ({100 * (value - base) / base:+.0f}%)"


def table(measurements: Sequence[WaitsMeasurement]) -> str:
    """One row per backend and number of pending waits; throughput changes are
    relative to the same backend with no waits pending."""
    baseline = {m.backend: m for m in measurements if m.pending == 0 and not m.error}
    rows: list[tuple[str, ...]] = [
        (
            "backend",
            "pending waits",
            "start to waiting s",
            "unrelated events/s  median [min-max]",
            "non-matching wait.done events/s",
            "resolve: runs completed/s",
            "cp CPU ms / 1,000 events: unrelated / non-matching",
        )
    ]
    for m in measurements:
        if m.error:
            reason = m.error.strip().splitlines()[0] if m.error.strip() else "failed"
            rows.append((m.backend, f"{m.pending:,}", f"failed: {reason}", "", "", "", ""))
            continue
        base = baseline.get(m.backend)
        resolve = "-"
        if m.resolved:
            resolve = (
                f"{_number(m.resolve_per_s)} ({m.resolved:,} in {m.resolve_s:.2f} s, "
                f"sends {m.resolve_send_s:.2f} s)"
            )
        cpu = m.notes.get("cpu_ms_per_1000_events", {})
        cp = [cpu.get(kind, {}).get("control-plane") for kind in KINDS]
        rows.append(
            (
                m.backend,
                f"{m.pending:,}",
                "-" if math.isnan(m.setup_s) else f"{m.setup_s:.1f}",
                _range(m.unrelated_per_s)
                + (_change(m.unrelated, base.unrelated) if base and base is not m else ""),
                _range(m.unmatched_per_s)
                + (_change(m.unmatched, base.unmatched) if base and base is not m else ""),
                resolve,
                " / ".join("-" if ms is None else f"{ms:,.0f}" for ms in cp),
            )
        )
    skip = {i for i, row in enumerate(rows) if row[3:] == ("", "", "", "")}
    return columns(rows, skip)
