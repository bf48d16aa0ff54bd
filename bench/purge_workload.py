"""Tether: the steps workload while retention purges 100,000 finished runs.

The claim: while a control plane purges 100,000 finished runs (retention.py:
at start, then every 30 s, in transactions of 500 runs), the durable steps/s of
a concurrent workload drop by no more than 10 %.

Each round has a fresh database, seeded directly (SQLAlchemy Core, in batches of
SEED_BATCH runs, after migrating it as the control plane does) with the seeded
number of finished runs of the benchmark app that ended two days before: each
with its event, one step (two attempts) and three history rows, as the control
plane stores a run whose one step failed once and then succeeded. Then a real
control-plane process starts on it, with

- ``--retention forever`` in a *baseline* round: nothing is purged;
- ``--retention 1d`` in a *purge* round: its start-up purge deletes every
  seeded run (with its step, history and event) while the workload runs.

As soon as the control plane is ready a worker connects and the workload
starts: the steps scenario's N runs x K steps (defaults 200 x 10), one warm-up
batch and then ``batches`` measured ones, back to back (each sent at once and
waited for until no run is unfinished). Its durable steps/s are the measured
batches' steps over the time from the first one's send to the last one's end.
A thread of the benchmark polls the smallest ``created_at_ms`` among the runs
every POLL_S (an index lookup: the purge deletes the oldest runs first), from
before the control plane starts: the purge started when it first moved, ended
when no seeded run is left; the round records how long that took and how much
of the workload it covered. A purge round then waits for the purge to finish
and checks the control plane's log line (``retention: deleted 100000 finished
run(s) ...``); a baseline round checks that every seeded run is still there.
Rounds alternate, baseline then purge; warm-up rounds (a pair each) come first
and are not counted.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import Engine, create_engine, func, select, text

from bench import tether_app
from bench.databases import fresh_database, redact
from bench.stats import Spread, columns, percentile, step_gaps_ms
from bench.tether_workload import Client, Cluster, describe_error
from controlplane.model.ids import new_hex_id, new_ulid
from controlplane.store import open_store
from controlplane.store.migrate import migrate
from controlplane.store.schema import events, history, runs, steps

#: The claim: steps/s during the purge at least this fraction of the baseline's.
TARGET_RATIO = 0.9
SEEDED_RUNS = 100_000
#: Measured batches of N runs x K steps per round (after one warm-up batch).
BATCHES = 20
BASELINE = "baseline"
PURGE = "purge"
VARIANTS = (BASELINE, PURGE)
#: The control plane's --retention in each kind of round.
RETENTION = {BASELINE: "forever", PURGE: "1d"}
DAY_MS = 86_400_000
#: The seeded runs ended about this long before the round (retention 1d purges them).
AGE_MS = 2 * DAY_MS
#: ... and were created over this span.
SPREAD_MS = 3_600_000
#: Runs per INSERT batch while seeding (each table's rows for this many runs).
SEED_BATCH = 5_000
POLL_S = 0.02
STEP_NAME = "step-0"
STEP_ID = hashlib.sha1(STEP_NAME.encode()).hexdigest()
_DELETED = re.compile(r"retention: deleted (\d+) finished run\(s\) and (\d+) event\(s\)")


# -- seeding ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seeded:
    """What a round's database holds before its control plane starts."""

    runs: int
    #: created_at_ms of the first and the last seeded run.
    first_ms: int
    last_ms: int
    seconds: float


def seed(url: str, count: int, *, now_ms: int) -> Seeded:
    """Migrate the database at ``url`` as the control plane does, then insert
    ``count`` finished runs that ended about AGE_MS before ``now_ms``."""
    started = time.perf_counter()
    last_ms = now_ms - AGE_MS - 1_100
    first_ms = last_ms - SPREAD_MS
    spacing = SPREAD_MS / max(count - 1, 1)
    store = open_store(url)
    try:
        migrate(store.engine)
        for start in range(0, count, SEED_BATCH):
            chunk = range(start, min(count, start + SEED_BATCH))
            _insert(store.engine, [_run_rows(first_ms + round(i * spacing)) for i in chunk])
        if store.engine.dialect.name == "postgresql":
            # What autovacuum does to a table that grew this much, long before
            # its runs are old enough to purge.
            with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
    finally:
        store.engine.dispose()
    return Seeded(count, first_ms, last_ms, time.perf_counter() - started)


def _run_rows(created_ms: int) -> dict[str, Any]:
    """One seeded run's rows, by table: a run of one step that failed once
    (a ConnectionError) and then succeeded."""
    event_pk = new_ulid(created_ms)
    run_id = new_ulid(created_ms)
    started_ms, failed_ms, ended_ms = created_ms + 4, created_ms + 9, created_ms + 1_030
    error = {"name": "ConnectionError", "message": "upstream refused the connection", "stack": ""}
    return {
        "event": {
            "pk": event_pk,
            "id": new_ulid(created_ms),
            "name": tether_app.EVENT_NAME,
            "data": json.dumps({"steps": 1, "round": 0, "n": created_ms % 1000}),
            "user_data": None,
            "ts_ms": created_ms,
            "received_at_ms": created_ms,
            "traceparent": f"00-{new_hex_id(16)}-{new_hex_id(8)}-01",
        },
        "run": {
            "id": run_id,
            "app_id": tether_app.APP_ID,
            "function_id": tether_app.FUNCTION_ID,
            "status": "completed",
            "event_pk": event_pk,
            "attempt": 0,
            "created_at_ms": created_ms,
            "started_at_ms": started_ms,
            "ended_at_ms": ended_ms,
            "updated_at_ms": ended_ms,
            "output": '{"steps":1,"total":0}',
            "error": None,
            "replay_of": None,
            "trace_id": new_hex_id(16),
            "root_span_id": new_hex_id(8),
            "parent_run_id": None,
            "parent_step_id": None,
            "cancelled_execution_id": None,
            "cron": None,
        },
        "step": {
            "run_id": run_id,
            "step_id": STEP_ID,
            "name": STEP_NAME,
            "kind": "run",
            "status": "completed",
            "output": '{"i":0}',
            "error": None,
            "attempts": 2,
            "started_at_ms": started_ms,
            "ended_at_ms": ended_ms - 2,
            "retry_at_ms": None,
            "child_run_id": None,
            "position": 1,
        },
        "history": [
            _history(
                run_id, started_ms, "execution.started", attempt=0, execution_id=new_hex_id(16)
            ),
            _history(
                run_id,
                failed_ms,
                "step.failed",
                step_id=STEP_ID,
                step_name=STEP_NAME,
                attempt=1,
                until_ms=failed_ms + 1_000,
                detail=json.dumps({"error": error, "started_at_ms": started_ms}),
            ),
            _history(run_id, ended_ms, "run.completed"),
        ],
    }


def _history(run_id: str, ts_ms: int, kind: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(
        ("step_id", "step_name", "attempt", "until_ms", "execution_id", "detail")
    )
    row.update(run_id=run_id, ts_ms=ts_ms, kind=kind, **values)
    return row


def _insert(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        conn.execute(events.insert(), [r["event"] for r in rows])
        conn.execute(runs.insert(), [r["run"] for r in rows])
        conn.execute(steps.insert(), [r["step"] for r in rows])
        conn.execute(history.insert(), [h for r in rows for h in r["history"]])


def seeded_left(url: str, seeded: Seeded) -> int:
    """How many of the seeded runs are still stored."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            query = (
                select(func.count()).select_from(runs).where(runs.c.created_at_ms <= seeded.last_ms)
            )
            return int(conn.execute(query).scalar() or 0)
    finally:
        engine.dispose()


# -- watching the purge -------------------------------------------------------------------


class PurgeWatch:
    """A thread polling the oldest run's ``created_at_ms``: the purge deletes
    the oldest runs first, so it moves past the first seeded run when the
    first batch commits, and past the last when none is left. Times are
    ``time.monotonic()``."""

    def __init__(self, url: str, seeded: Seeded) -> None:
        self.seeded = seeded
        self.engine = create_engine(url, isolation_level="AUTOCOMMIT")
        self.started: float | None = None
        self.ended: float | None = None
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="purge-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.engine.dispose()

    def _run(self) -> None:
        query = select(func.min(runs.c.created_at_ms))
        with self.engine.connect() as conn:
            while not self._stop.is_set() and self.ended is None:
                try:
                    oldest = conn.execute(query).scalar()
                except Exception:  # a busy database: try again
                    oldest = self.seeded.first_ms
                now = time.monotonic()
                self.polls += 1
                if self.started is None and (oldest is None or oldest > self.seeded.first_ms):
                    self.started = now
                if oldest is None or oldest > self.seeded.last_ms:
                    self.ended = now
                    return
                self._stop.wait(POLL_S)


# -- one round ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PurgeRound:
    """One round: the workload on a control plane with a baseline or a purging
    retention. Times in seconds relative to the measured workload's start."""

    variant: str
    seed_s: float
    batches: int
    elapsed_s: float
    steps_per_s: float
    run_latency_p50_ms: float
    run_latency_p99_ms: float
    step_gap_p99_ms: float
    #: Durable steps/s of each measured batch.
    batch_steps_per_s: tuple[float, ...]
    #: When the control plane was started, the worker connected, the purge
    #: started and ended (NaN: it never did), and the workload ended.
    control_plane_started_s: float
    worker_connected_s: float
    purge_started_s: float
    purge_ended_s: float
    workload_ended_s: float
    #: The part of the measured workload's time the purge was running (0-1).
    overlap: float
    #: Seeded runs left at the end of the round; runs the log says were deleted.
    seeded_left: int
    logged_deleted_runs: int
    logged_deleted_events: int

    @property
    def purge_s(self) -> float:
        return self.purge_ended_s - self.purge_started_s

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"purge_s": self.purge_s}


def _batch(client: Client, runs: int, steps: int, index: int, timeout: float) -> list[str]:
    run_ids = client.send_runs(runs, steps, index, timeout)
    client.wait_all_finished(time.monotonic() + timeout)
    if len(run_ids) != runs:
        raise RuntimeError(f"{runs} events started {len(run_ids)} runs")
    return run_ids


def _logged(log_path: Path, offset: int) -> tuple[int, int]:
    """Runs and events the control plane's log (from ``offset`` on) says
    retention deleted."""
    if not log_path.exists():
        return 0, 0
    with log_path.open("rb") as log:
        log.seek(offset)
        found = _DELETED.findall(log.read().decode(errors="replace"))
    return sum(int(r) for r, _ in found), sum(int(e) for _, e in found)


def _round(
    url: str,
    directory: Path,
    variant: str,
    *,
    seeded_runs: int,
    runs: int,
    steps: int,
    batches: int,
    timeout: float,
) -> PurgeRound:
    seeded = seed(url, seeded_runs, now_ms=time.time_ns() // 1_000_000)
    watch = PurgeWatch(url, seeded)
    watch.start()
    log_path = directory / "control-plane.log"
    offset = log_path.stat().st_size if log_path.exists() else 0
    spawned = time.monotonic()
    cluster: Cluster | None = None
    try:
        cluster = Cluster(url, directory, ["--retention", RETENTION[variant]])
        cluster.connect(max(runs, 1), [tether_app.FUNCTION_ID])
        connected = time.monotonic()
        client = cluster.client
        _batch(client, runs, steps, -1, timeout)  # warm-up, not counted
        started = time.monotonic()
        timed = [_batch(client, runs, steps, index, timeout) for index in range(batches)]
        ended = time.monotonic()
        if variant == PURGE:
            deadline = time.monotonic() + timeout
            while watch.ended is None:
                if time.monotonic() > deadline:
                    raise TimeoutError("the purge had not finished at the deadline")
                time.sleep(POLL_S)
            # The log line follows the last batch's transaction (and the state's).
            wait_deadline = time.monotonic() + 10
            while _logged(log_path, offset)[0] < seeded_runs and time.monotonic() < wait_deadline:
                time.sleep(0.05)
        gaps: list[float] = []
        latencies: list[float] = []
        rates: list[float] = []
        for run_ids in timed:
            found = client.completed_runs(run_ids, steps)
            for run, completed in found:
                gaps.extend(step_gaps_ms([(s.started_at_ms, s.ended_at_ms) for s in completed]))
                latencies.append(float(run.ended_at_ms - run.created_at_ms))
            first = min(run.created_at_ms for run, _ in found)
            last = max(run.ended_at_ms for run, _ in found)
            rates.append(runs * steps * 1000 / max(last - first, 1))
    finally:
        if cluster is not None:
            cluster.stop()
        watch.stop()
    left = seeded_left(url, seeded)
    deleted_runs, deleted_events = _logged(log_path, offset)
    if variant == BASELINE and left != seeded_runs:
        raise RuntimeError(f"baseline round: {seeded_runs - left} seeded runs were deleted")
    if variant == PURGE and (left or deleted_runs != seeded_runs):
        raise RuntimeError(
            f"purge round: {left} seeded runs left, the log says {deleted_runs} deleted"
        )
    elapsed = ended - started

    def since(moment: float | None) -> float:
        return math.nan if moment is None else moment - started

    overlap = math.nan
    if watch.started is not None and elapsed > 0:
        purge_end = watch.ended if watch.ended is not None else ended
        covered = min(purge_end, ended) - max(watch.started, started)
        overlap = max(0.0, covered) / elapsed
    return PurgeRound(
        variant=variant,
        seed_s=seeded.seconds,
        batches=batches,
        elapsed_s=elapsed,
        steps_per_s=runs * steps * batches / elapsed,
        run_latency_p50_ms=percentile(latencies, 50),
        run_latency_p99_ms=percentile(latencies, 99),
        step_gap_p99_ms=percentile(gaps, 99),
        batch_steps_per_s=tuple(round(r, 1) for r in rates),
        control_plane_started_s=spawned - started,
        worker_connected_s=connected - started,
        purge_started_s=since(watch.started),
        purge_ended_s=since(watch.ended),
        workload_ended_s=elapsed,
        overlap=0.0 if variant == BASELINE else overlap,
        seeded_left=left,
        logged_deleted_runs=deleted_runs,
        logged_deleted_events=deleted_events,
    )


# -- one backend --------------------------------------------------------------------------


@dataclass(slots=True)
class PurgeMeasurement:
    """Baseline and purge rounds on one backend, or why there are none."""

    backend: str
    seeded_runs: int
    runs: int
    steps: int
    batches: int
    baseline: list[PurgeRound] = field(default_factory=list)
    purge: list[PurgeRound] = field(default_factory=list)
    error: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    def summary(self, variant: str, metric: str) -> Spread:
        chosen = self.baseline if variant == BASELINE else self.purge
        return Spread.of([getattr(r, metric) for r in chosen])

    def pair_ratios(self) -> list[float]:
        """Each purge round's steps/s over the baseline round just before it."""
        return [
            p.steps_per_s / b.steps_per_s for b, p in zip(self.baseline, self.purge, strict=False)
        ]

    def ratio(self) -> float:
        """Median steps/s during the purge over the baseline's median."""
        if not self.baseline or not self.purge:
            return math.nan
        return (
            self.summary(PURGE, "steps_per_s").median / self.summary(BASELINE, "steps_per_s").median
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "seeded_runs": self.seeded_runs,
            "runs": self.runs,
            "steps": self.steps,
            "batches": self.batches,
            "baseline": [r.to_json() for r in self.baseline],
            "purge": [r.to_json() for r in self.purge],
            "ratio_of_medians": self.ratio(),
            "pair_ratios": self.pair_ratios(),
            "error": self.error,
            "notes": self.notes,
        }


def measure_purge(
    backend: str,
    *,
    seeded_runs: int,
    runs: int,
    steps: int,
    batches: int,
    rounds: int,
    warmup: int,
    timeout: float,
    workdir: Path,
    progress: Callable[[str], None] | None = None,
) -> PurgeMeasurement:
    """``warmup`` pairs of rounds, then ``rounds`` measured pairs, each a
    baseline round then a purge round, each on a freshly seeded database."""
    measurement = PurgeMeasurement(backend, seeded_runs, runs, steps, batches)
    directory = workdir / f"purge-{backend}"
    directory.mkdir(parents=True, exist_ok=True)
    try:
        for index in range(warmup + rounds):
            for variant in VARIANTS:
                with fresh_database(backend, directory, "tether_bench_purge") as url:
                    measurement.notes["database"] = redact(url)
                    try:
                        result = _round(
                            url,
                            directory,
                            variant,
                            seeded_runs=seeded_runs,
                            runs=runs,
                            steps=steps,
                            batches=batches,
                            timeout=timeout,
                        )
                    except (RuntimeError, TimeoutError, grpc.RpcError) as error:
                        measurement.error = f"{variant} round: {describe_error(error)}"
                        log = directory / "control-plane.log"
                        if log.exists():
                            tail = log.read_text(errors="replace").splitlines()[-15:]
                            measurement.notes["control plane log"] = "\n".join(tail)
                        return measurement
                warm = index < warmup
                if not warm:
                    (measurement.baseline if variant == BASELINE else measurement.purge).append(
                        result
                    )
                if progress is not None:
                    progress(_describe(result, warm))
    finally:
        if backend == "sqlite":
            for leftover in directory.glob("tether_bench_purge.db*"):
                leftover.unlink(missing_ok=True)
    return measurement


def _describe(r: PurgeRound, warm: bool) -> str:
    kind = f"{r.variant} ({'warm-up' if warm else 'measured'})"
    line = f"{kind}: seeded in {r.seed_s:.1f} s, {r.steps_per_s:,.0f} durable steps/s"
    if r.variant == PURGE:
        line += (
            f", purge {r.purge_s:.1f} s ({r.purge_started_s:+.1f} to {r.purge_ended_s:+.1f} s "
            f"from the workload's start, which ended at {r.workload_ended_s:.1f} s; "
            f"overlap {100 * r.overlap:.0f}%)"
        )
    return line


# -- the report ---------------------------------------------------------------------------


def _number(value: float, digits: int = 0) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def _spread(spread: Spread, digits: int = 0) -> str:
    return (
        f"{_number(spread.median, digits)}  "
        f"[{_number(spread.low, digits)}-{_number(spread.high, digits)}]"
    )


def table(measurements: Sequence[PurgeMeasurement]) -> str:
    rows: list[tuple[str, ...]] = [
        (
            "backend",
            "baseline steps/s",
            "steps/s while purging",
            "purging / baseline",
            "run ms p99 baseline / purging",
            "purge s",
            "purge running (of the workload)",
        )
    ]
    failed: set[int] = set()
    for m in measurements:
        if m.error and not m.purge:
            failed.add(len(rows))
            rows.append((m.backend, f"failed: {m.error.strip().splitlines()[0]}", *[""] * 5))
            continue
        pairs = Spread.of(m.pair_ratios())
        after = sum(1 for r in m.purge if r.purge_ended_s >= r.workload_ended_s)
        rows.append(
            (
                m.backend,
                _spread(m.summary(BASELINE, "steps_per_s")),
                _spread(m.summary(PURGE, "steps_per_s")),
                f"{m.ratio():.2f}  [{pairs.low:.2f}-{pairs.high:.2f}]",
                f"{_number(m.summary(BASELINE, 'run_latency_p99_ms').median)} / "
                f"{_number(m.summary(PURGE, 'run_latency_p99_ms').median)}",
                _spread(m.summary(PURGE, "purge_s"), 1),
                f"{100 * m.summary(PURGE, 'overlap').low:.0f}-"
                f"{100 * m.summary(PURGE, 'overlap').high:.0f}%; ended after it in "
                f"{after}/{len(m.purge)}",
            )
        )
        if m.error:
            failed.add(len(rows))
            rows.append((m.backend, f"failed: {m.error.strip().splitlines()[0]}", *[""] * 5))
    return columns(rows, failed)


def _change(drop: float) -> str:
    return f"{100 * drop:.1f}% lower" if drop >= 0 else f"{-100 * drop:.1f}% higher"


def verdicts(measurements: Sequence[PurgeMeasurement]) -> list[str]:
    lines = []
    for m in measurements:
        if not m.purge or not m.baseline:
            continue
        drop = 1 - m.ratio()
        verdict = "holds" if drop <= 1 - TARGET_RATIO else "does NOT hold"
        lines.append(
            f"{m.backend}: durable steps/s {_change(drop)} while purging (medians; worst pair "
            f"{_change(1 - min(m.pair_ratios()))}): the target (at most "
            f"{100 * (1 - TARGET_RATIO):.0f}% lower) {verdict}"
        )
    return lines
