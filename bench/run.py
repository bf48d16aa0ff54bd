"""``python -m bench.run``: durable steps per second and latency of Tether on
SQLite and PostgreSQL, next to DBOS 3.4 running the same workload; and Tether's
event ingestion with many runs waiting for events.

The steps scenario: N runs started at once, each running K trivial steps in a
row (defaults: 200 runs x 10 steps). Tether runs it through a real control-plane
process and a real worker process, of the Python SDK and then of the TypeScript
SDK (``--workers``); DBOS runs it in-process. Each system does a
warm-up round, then several measured rounds; the report shows the median of the
rounds and their spread.

The waits scenario: for each number of pending waits (default 0, 1, 1,000 and
10,000 runs suspended in ``wait_for_event``), events/s the control plane takes
for events nothing waits for, and how fast it resumes and completes the runs
that matching events resolve (see bench/waits_workload.py).

The flow scenario: the steps workload (N runs x K steps) run by a function with
no flow control, by functions with concurrency limits (10, 20, and 1 per key
over 20 keys) and by one with a throttle (100 starts/s): durable steps/s of each,
how many runs were in flight, and the throttle's achieved start rate next to the
configured one (see bench/flow_workload.py).

The registration scenario: a raw worker registers an app of 1,000 functions,
then registers it again (replacing them), while a client probes the control
plane's health check every ~5 ms; the registration times and the health checks'
latency, next to rounds of probing alone (see bench/registration_workload.py).

The purge scenario: the steps workload (batches of N runs x K steps, back to
back) on a control plane started with ``--retention forever`` (baseline) and with
``--retention 1d``, whose start-up purge deletes 100,000 finished runs seeded
into the database two days old while the workload runs; the steps/s of both,
their ratio and how long the purge took (see bench/purge_workload.py).

The latency scenario: one event at a time to an idle engine (one ``Send`` per
event, the next only after the run completed), each starting a run of K stamped
steps: the Send call, the event to the first step's body and the event to the
run completed, p50/p99/max, next to DBOS doing the same in-process (see
bench/latency_workload.py).

The timers scenario: 1,000 and 10,000 runs asleep at once, all due at the same
moment, and how late each one's next step body runs (see
bench/timers_workload.py).

The curve scenario: the steps workload at 1, 10, 100 and 1,000 concurrent
runs (``--curve-runs``), Tether next to DBOS at each: durable steps/s and the
run latency (created to ended) p50/p99/max, with Tether/DBOS ratios.

The load scenario: one event per Send call, each sent as the previous one
returns, while rounds of the steps workload run back to back: the Send
latency, the producer's runs started per second and the background's durable
steps per second (see bench/load_workload.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sqlite3
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.databases import postgres_base_url, redact
from bench.dbos_workload import MODES, measure_dbos
from bench.flow_workload import VARIANTS, FlowMeasurement, measure_flow, violations
from bench.flow_workload import table as flow_table
from bench.latency_workload import (
    LatencyMeasurement,
    measure_dbos_latency,
    measure_tether_latency,
)
from bench.latency_workload import table as latency_table
from bench.load_workload import LoadMeasurement, measure_load
from bench.load_workload import table as load_table
from bench.machine import describe as describe_machine
from bench.machine import measure_machine
from bench.purge_workload import BATCHES, SEEDED_RUNS, PurgeMeasurement, measure_purge
from bench.purge_workload import table as purge_table
from bench.purge_workload import verdicts as purge_verdicts
from bench.registration_workload import (
    MAX_FUNCTIONS,
    TARGET_MS,
    RegistrationMeasurement,
    measure_registration,
    verdicts,
)
from bench.registration_workload import table as registration_table
from bench.restate_workload import measure_restate_latency
from bench.stats import Measurement, Spread, columns, percentile
from bench.tether_workload import MAX_EVENTS_PER_SEND, WORKERS, ProfileHook, measure_tether
from bench.timers_workload import TimersMeasurement, measure_timers
from bench.timers_workload import table as timers_table
from bench.waits_workload import KINDS, RESOLVE, WaitsMeasurement, measure_waits
from bench.waits_workload import table as waits_table

BACKENDS = ("sqlite", "postgres")
SCENARIOS = (
    "steps",
    "curve",
    "latency",
    "timers",
    "load",
    "waits",
    "flow",
    "registration",
    "purge",
)
#: The project's aim: durable steps/s on SQLite with 200 concurrent 10-step runs.
AIM_STEPS_PER_S = 2000


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--scenario",
        type=_scenarios,
        default=list(SCENARIOS),
        metavar="all|steps|curve|latency|timers|load|waits|flow|registration|purge",
        help="steps: durable steps/s (Tether and DBOS); waits: event ingestion with "
        "waits pending (Tether); flow: durable steps/s under concurrency limits and a "
        "throttle (Tether); registration: health-check latency while a large app "
        "registers (Tether); purge: durable steps/s while retention purges 100,000 "
        "finished runs (Tether); latency: one event at a time, event to first step and "
        "to completed (Tether and DBOS); timers: how late runs asleep at once wake "
        "(Tether); load: one event per Send while the engine is busy (Tether); curve: "
        "the steps workload at several concurrencies (Tether and DBOS); all: "
        "every one but purge (default); or a "
        "comma-separated list, e.g. steps,flow",
    )
    parser.add_argument(
        "--runs",
        type=_positive,
        default=200,
        help="concurrent runs (N; steps, flow and purge: per batch)",
    )
    parser.add_argument(
        "--steps", type=_positive, default=10, help="steps per run (K; steps, flow and purge)"
    )
    parser.add_argument(
        "--rounds",
        type=_positive,
        default=3,
        help="measured rounds (steps scenario; flow: of each function; purge: of each "
        "retention, alternating)",
    )
    parser.add_argument(
        "--warmup", type=_not_negative, default=1, help="warm-up rounds (every scenario)"
    )
    parser.add_argument(
        "--waits-pending",
        type=_counts,
        default=[0, 1, 1000, 10000],
        metavar="LIST",
        help="waits scenario: comma-separated numbers of pending waits, each measured "
        "on a fresh database (default: 0,1,1000,10000)",
    )
    parser.add_argument(
        "--waits-rounds",
        type=_positive,
        default=5,
        metavar="R",
        help="waits scenario: measured ingestion rounds of each kind (default 5)",
    )
    parser.add_argument(
        "--waits-events",
        type=_positive,
        default=2000,
        metavar="M",
        help="waits scenario: events of each kind per ingestion round (default 2000)",
    )
    parser.add_argument(
        "--waits-batch",
        type=_batch,
        default=100,
        metavar="B",
        help="waits scenario: events per Send call (default 100)",
    )
    parser.add_argument(
        "--waits-resolve",
        type=_not_negative,
        default=1000,
        metavar="K",
        help="waits scenario: pending waits resolved by matching events (default 1000)",
    )
    parser.add_argument(
        "--latency-samples",
        type=_positive,
        default=200,
        metavar="N",
        help="latency scenario: events sent one at a time per round (default 200)",
    )
    parser.add_argument(
        "--timers-runs",
        type=_counts,
        default=[1000, 10000],
        metavar="N,...",
        help="timers scenario: runs asleep at once, each measured on its own (default 1000,10000)",
    )
    parser.add_argument(
        "--curve-runs",
        type=_counts,
        default=[1, 10, 100, 1000],
        metavar="N,...",
        help="curve scenario: concurrent runs, each measured on its own (default "
        "1,10,100,1000; at most 100 runs, each takes at least 10 rounds, one run 30)",
    )
    parser.add_argument(
        "--load-seconds",
        type=_positive,
        default=5,
        metavar="S",
        help="load scenario: how long the producer sends, per round (default 5)",
    )
    parser.add_argument(
        "--registration-rounds",
        type=_positive,
        default=10,
        metavar="R",
        help="registration scenario: measured rounds, each an idle round of probing "
        "and a registration round (default 10)",
    )
    parser.add_argument(
        "--registration-functions",
        type=_functions,
        default=MAX_FUNCTIONS,
        metavar="N",
        help=f"registration scenario: functions of the app registered (default and "
        f"most {MAX_FUNCTIONS})",
    )
    parser.add_argument(
        "--purge-runs",
        type=_positive,
        default=SEEDED_RUNS,
        metavar="N",
        help=f"purge scenario: finished runs seeded two days old into each round's "
        f"database (default {SEEDED_RUNS})",
    )
    parser.add_argument(
        "--purge-batches",
        type=_positive,
        default=BATCHES,
        metavar="B",
        help=f"purge scenario: measured batches of --runs x --steps per round, after one "
        f"warm-up batch (default {BATCHES})",
    )
    parser.add_argument(
        "--backends",
        type=_backends,
        default=list(BACKENDS),
        help="comma-separated: sqlite,postgres (default: both)",
    )
    parser.add_argument("--skip-dbos", action="store_true", help="measure Tether only")
    parser.add_argument(
        "--skip-restate",
        action="store_true",
        help="latency scenario: leave out Restate (its server and its own storage)",
    )
    parser.add_argument(
        "--workers",
        type=_workers,
        default=list(WORKERS),
        help="steps scenario: the SDKs whose workers run Tether's workload, comma-separated "
        "(default: python,typescript)",
    )
    parser.add_argument(
        "--dbos-mode",
        choices=MODES,
        default="threads",
        help="DBOS: sync workflows on threads (DBOS.start_workflow), or async ones "
        "(DBOS.start_workflow_async) on one event loop",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write results here")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds allowed for one round"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        metavar="DIR",
        help="keep databases and process logs here (default: a temporary directory)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record py-spy profiles of the Tether processes during the measured rounds",
    )
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _not_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {value}")
    return value


def _batch(text: str) -> int:
    value = _positive(text)
    if value > MAX_EVENTS_PER_SEND:
        raise argparse.ArgumentTypeError(f"at most {MAX_EVENTS_PER_SEND} events per Send")
    return value


def _functions(text: str) -> int:
    value = _positive(text)
    if value > MAX_FUNCTIONS:
        raise argparse.ArgumentTypeError(f"an app declares at most {MAX_FUNCTIONS} functions")
    return value


def _counts(text: str) -> list[int]:
    try:
        values = [_not_negative(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated counts, not {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one count")
    return sorted(set(values))


def _scenarios(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["all"]:
        # The purge scenario (about 9 minutes) only when asked for.
        return [name for name in SCENARIOS if name != "purge"]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"scenarios are all or a list of {', '.join(SCENARIOS)}; got {text!r}"
        )
    return [name for name in SCENARIOS if name in names]


def _workers(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in chosen if name not in WORKERS]
    if not chosen or unknown:
        raise argparse.ArgumentTypeError(
            f"workers are a list of {', '.join(WORKERS)}; got {text!r}"
        )
    return chosen


def _backends(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in BACKENDS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"backends are {', '.join(BACKENDS)}; got {text!r}")
    return list(dict.fromkeys(names))


# -- the machine ------------------------------------------------------------------------


def environment(backends: Sequence[str]) -> dict[str, Any]:
    from tether import __version__ as tether_version

    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "tether": tether_version,
        "load_average_before": _load_average(),
    }
    if "postgres" in backends:
        info["postgres_url"] = redact(postgres_base_url())
        info["postgres"] = _postgres_version()
    return info


def _load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: other work on the machine skews results."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _postgres_version() -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_base_url())
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar())
    except Exception as error:  # reported in the run itself
        return f"unavailable ({type(error).__name__})"
    finally:
        engine.dispose()


# -- the report ---------------------------------------------------------------------------


def _loads(values: list[float] | None) -> str:
    return "/".join(f"{v:.2f}" for v in values) if values else "-"


def _number(value: float, digits: int = 0) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def _latency(value: float) -> str:
    return _number(value, 1 if value < 10 else 0)


def _throughput(spread: Spread) -> str:
    return (
        f"{_number(spread.median)}  [{_number(spread.low)}-{_number(spread.high)}]"
        f"  ±{_number(50 * spread.relative)}%"
    )


def _cpu(measurement: Measurement) -> str:
    cpu = measurement.notes.get("cpu_ms_per_1000_steps") or {}
    short = {"control-plane": "cp", "worker": "worker", "dbos-process": "process"}
    return ", ".join(f"{short.get(name, name)} {_number(ms)}" for name, ms in cpu.items())


def table(measurements: Sequence[Measurement]) -> str:
    header = (
        "system",
        "backend",
        "durable steps/s  median [min-max] ±half-range",
        "step gap ms p50 / p99",
        "run latency ms p50 / p99",
        "CPU ms per 1,000 steps",
    )
    rows: list[tuple[str, ...]] = [header]
    for m in measurements:
        name = m.system if m.system != "DBOS" else f"DBOS ({m.notes.get('mode', '')})"
        if m.error or not m.rounds:
            reason = m.error.strip().splitlines()[0] if m.error.strip() else "no rounds"
            rows.append((name, m.backend, f"failed: {reason}", "", "", ""))
            continue
        rows.append(
            (
                name,
                m.backend,
                _throughput(m.summary("steps_per_s")),
                f"{_latency(m.summary('step_gap_p50_ms').median)} / "
                f"{_latency(m.summary('step_gap_p99_ms').median)}",
                f"{_latency(m.summary('run_latency_p50_ms').median)} / "
                f"{_latency(m.summary('run_latency_p99_ms').median)}",
                _cpu(m),
            )
        )
    return columns(rows, skip_width={i for i, row in enumerate(rows) if row[3:] == ("", "", "")})


def ratios(measurements: Sequence[Measurement]) -> dict[str, dict[str, float]]:
    """Per backend: Tether/DBOS durable steps/s, and DBOS/Tether run latency p50."""
    by_key = {(m.system, m.backend): m for m in measurements if m.rounds and not m.error}
    found: dict[str, dict[str, float]] = {}
    for backend in BACKENDS:
        tether, dbos = by_key.get(("Tether", backend)), by_key.get(("DBOS", backend))
        if tether is None or dbos is None:
            continue
        found[backend] = {
            "steps_per_s_tether_over_dbos": tether.summary("steps_per_s").median
            / dbos.summary("steps_per_s").median,
            "run_latency_p50_dbos_over_tether": dbos.summary("run_latency_p50_ms").median
            / max(tether.summary("run_latency_p50_ms").median, 1e-9),
        }
    return found


def side_by_side(measurements: Sequence[Measurement], found: dict[str, dict[str, float]]) -> str:
    """Tether next to DBOS on each backend, with the ratios."""
    by_key = {(m.system, m.backend): m for m in measurements}
    rows: list[tuple[str, ...]] = [
        (
            "backend",
            "Tether steps/s",
            "DBOS steps/s",
            "Tether/DBOS",
            "Tether run p50 ms",
            "DBOS run p50 ms",
            "DBOS/Tether",
        )
    ]
    for backend, ratio in found.items():
        tether, dbos = by_key[("Tether", backend)], by_key[("DBOS", backend)]
        rows.append(
            (
                backend,
                _number(tether.summary("steps_per_s").median),
                _number(dbos.summary("steps_per_s").median),
                f"{ratio['steps_per_s_tether_over_dbos']:.1f}x",
                _latency(tether.summary("run_latency_p50_ms").median),
                _latency(dbos.summary("run_latency_p50_ms").median),
                f"{ratio['run_latency_p50_dbos_over_tether']:.1f}x",
            )
        )
    return columns(rows)


def _header(args: argparse.Namespace, env: dict[str, Any]) -> list[str]:
    return [
        "",
        f"machine: {env['cpus']} CPU(s), {env['cpu_model']}, Python {env['python']}, "
        f"SQLite {env['sqlite']}"
        + (f", PostgreSQL {env['postgres']}" if "postgres" in env else ""),
        f"load average (1/5/15 min) before: {_loads(env.get('load_average_before'))}, "
        f"after: {_loads(env.get('load_average_after'))}",
        *([describe_machine(env["machine_limits"])] if env.get("machine_limits") else []),
    ]


def workers_compared(measurements: Sequence[Measurement]) -> list[str]:
    """Per backend, the TypeScript worker's durable steps/s over the Python worker's."""
    by_key = {(m.system, m.backend): m for m in measurements if m.rounds}
    lines = []
    for backend in BACKENDS:
        python = by_key.get((WORKERS["python"], backend))
        typescript = by_key.get((WORKERS["typescript"], backend))
        if python is None or typescript is None:
            continue
        a, b = python.summary("steps_per_s").median, typescript.summary("steps_per_s").median
        lines.append(
            f"{backend}: TypeScript worker {_number(b)} durable steps/s, Python worker "
            f"{_number(a)} ({b / a:.2f}x)"
        )
    return [*lines, ""] if lines else []


def report(args: argparse.Namespace, env: dict[str, Any], measurements: list[Measurement]) -> str:
    """The steps scenario."""
    lines = [
        "",
        f"{args.runs} concurrent runs x {args.steps} steps; {args.rounds} measured round(s) "
        f"after {args.warmup} warm-up; median of the rounds, [min-max] across them",
        "",
        table(measurements),
        "",
    ]
    found = ratios(measurements)
    if found:
        lines += [side_by_side(measurements, found), ""]
    lines += workers_compared(measurements)
    sqlite = next(
        (m for m in measurements if m.system == "Tether" and m.backend == "sqlite" and m.rounds),
        None,
    )
    if sqlite is not None:
        value = sqlite.summary("steps_per_s").median
        verdict = "met" if value >= AIM_STEPS_PER_S else "NOT met"
        lines.append(
            f"Aim (>= {AIM_STEPS_PER_S:,} durable steps/s on SQLite, 200 runs x 10 steps): "
            f"{verdict} with {_number(value)}"
            + ("" if (args.runs, args.steps) == (200, 10) else " (at a different N x K)")
        )
    lines.append(
        "step gap: a step's end to the next step's start in the same run; "
        "run latency: run created to run ended"
    )
    return "\n".join(lines)


def waits_report(args: argparse.Namespace, measurements: list[WaitsMeasurement]) -> str:
    """The waits scenario."""
    return "\n".join(
        [
            "",
            "Event ingestion with runs waiting for events (wait_for_event, match=data.key): "
            f"{args.waits_events:,} events of each kind per round in Sends of "
            f"{args.waits_batch}, {args.waits_rounds} measured round(s) of each kind after "
            f"{args.warmup} warm-up; median [min-max] of the rounds "
            "(and its change from 0 pending waits)",
            "",
            waits_table(measurements),
            "",
            "start to waiting: sending the start events until every run is suspended "
            "(not counted); unrelated: events no function or wait concerns; non-matching: "
            "bench/wait.done events whose data.key no wait has; resolve: matching events "
            "sent until the runs they resumed completed",
        ]
    )


def registration_report(
    args: argparse.Namespace, measurements: list[RegistrationMeasurement]
) -> str:
    """The registration scenario."""
    return "\n".join(
        [
            "",
            f"Registering an app of {args.registration_functions:,} functions, then the same "
            f"app again (replacing them), while health checks are probed every "
            f"~5 ms; {args.registration_rounds} measured round(s) after {args.warmup} "
            "warm-up, each on a fresh database and control plane; median [min-max] across "
            "rounds",
            "",
            registration_table(measurements),
            "",
            "register new / again: Hello sent to Welcome received, for the new app and for "
            "the same Hello again; health p50 / p99 / max: of the checks of one round "
            "(Check call to answer, from the benchmark); idle rounds: probing alone, as long "
            f"as the registration round before; > {TARGET_MS:.0f} ms: checks over the target, "
            "of all checks of those rounds",
            *verdicts(measurements),
        ]
    )


def purge_report(args: argparse.Namespace, measurements: list[PurgeMeasurement]) -> str:
    """The purge scenario."""
    return "\n".join(
        [
            "",
            f"Durable steps/s while retention purges {args.purge_runs:,} finished runs: "
            f"{args.purge_batches} batches of {args.runs} runs x {args.steps} steps back to back "
            f"(after 1 warm-up batch) on a control plane with --retention forever (baseline) "
            f"and with --retention 1d (its start-up purge deletes the seeded runs); "
            f"{args.rounds} measured round(s) of each, alternating, after {args.warmup} warm-up "
            "pair(s), each on a freshly seeded database; median [min-max] across rounds",
            "",
            purge_table(measurements),
            "",
            "purging / baseline: the ratio of the medians [min-max of each purge round over the "
            "baseline round before it]; purge s: the first purge transaction seen committed to "
            "no seeded run left (polled every 20 ms); purge running: the part of the measured "
            "workload's time during which the purge ran, and in how many rounds it ended after "
            "the workload",
            *purge_verdicts(measurements),
        ]
    )


def _registration_progress(measurement: RegistrationMeasurement) -> None:
    for kind, done in (("idle", measurement.idle), ("registering", measurement.registering)):
        if not done:
            continue
        slowest = ", ".join(_latency(r.health_max_ms) for r in done)
        print(
            f"  {kind} on {measurement.backend}: slowest health check per round (ms): {slowest}",
            file=sys.stderr,
            flush=True,
        )
    if measurement.error:
        print(
            f"  registration on {measurement.backend}: failed: {measurement.error}",
            file=sys.stderr,
            flush=True,
        )
        _print_logs(measurement.notes)


def _progress(measurement: Measurement) -> None:
    label = f"{measurement.system} on {measurement.backend}"
    if measurement.error:
        print(f"  {label}: failed: {measurement.error}", file=sys.stderr, flush=True)
        _print_logs(measurement.notes)
        return
    rates = ", ".join(_number(r.steps_per_s) for r in measurement.rounds)
    print(f"  {label}: durable steps/s per round: {rates}", file=sys.stderr, flush=True)


def _waits_progress(measurement: WaitsMeasurement) -> None:
    waits = "wait" if measurement.pending == 1 else "waits"
    label = f"{measurement.pending:,} {waits} pending on {measurement.backend}"
    if measurement.error:
        print(f"  {label}: failed: {measurement.error}", file=sys.stderr, flush=True)
        _print_logs(measurement.notes)
        return
    unrelated = ", ".join(_number(r) for r in measurement.unrelated_per_s)
    unmatched = ", ".join(_number(r) for r in measurement.unmatched_per_s)
    print(
        f"  {label}: events/s per round: unrelated {unrelated}; non-matching {unmatched}",
        file=sys.stderr,
        flush=True,
    )


def flow_report(
    args: argparse.Namespace, measurements: list[FlowMeasurement], steps: list[Measurement]
) -> str:
    """The flow scenario (and, when the steps scenario ran too, its unlimited
    function next to the steps scenario's figure)."""
    lines = [
        "",
        f"Flow control: {args.runs} runs x {args.steps} steps sent at once, per function; "
        f"{args.rounds} measured round(s) after {args.warmup} warm-up; median of the rounds "
        "[min-max]",
        "",
        flow_table(measurements),
        "",
        "run ms: a run's first lease to its end; in flight: runs between their first lease "
        "and their end, on average over the round / at most (the limit); slot free: a run's end "
        "to the start of the run that took its place; starts/s: the runs' "
        "start rate (least-squares fit of start time against order); late: a start's delay "
        "after its place on the throttle's even grid",
    ]
    for backend in args.backends:
        tether = next(
            (m for m in steps if m.system == "Tether" and m.backend == backend and m.rounds),
            None,
        )
        flow = next((m for m in measurements if m.backend == backend and m.results), None)
        if tether is None or flow is None or not flow.results[0].rounds:
            continue
        a = tether.summary("steps_per_s").median
        b = flow.results[0].summary("steps_per_s").median
        lines.append(
            f"{backend}: unlimited function {_number(b)} steps/s here, {_number(a)} in the "
            f"steps scenario of this invocation ({100 * (b - a) / a:+.0f}%)"
        )
    broken = violations(measurements)
    lines += [f"LIMIT NOT HELD: {text}" for text in broken]
    return "\n".join(lines)


def _flow_progress(measurement: FlowMeasurement) -> None:
    for result in measurement.results:
        rates = ", ".join(_number(r.steps_per_s) for r in result.rounds)
        print(
            f"  {result.variant.name} on {measurement.backend}: durable steps/s per round: {rates}",
            file=sys.stderr,
            flush=True,
        )
    if measurement.error:
        print(
            f"  flow on {measurement.backend}: failed: {measurement.error}",
            file=sys.stderr,
            flush=True,
        )
        _print_logs(measurement.notes)


def _print_logs(notes: dict[str, Any]) -> None:
    for key, value in notes.items():
        if key.endswith("log") and value:
            print(f"    {key}:\n{value}", file=sys.stderr)


def _profiler(args: argparse.Namespace, label: str) -> ProfileHook | None:
    if args.profile is None:
        return None
    from bench.profiling import PySpyProfiler

    return PySpyProfiler(args.profile, label)


def _waits_profilers(
    args: argparse.Namespace, backend: str, pending: int
) -> dict[str, ProfileHook] | None:
    if args.profile is None:
        return None
    found: dict[str, ProfileHook] = {}
    for phase in (*KINDS, RESOLVE):
        hook = _profiler(args, f"waits-{backend}-{pending}-{phase}")
        if hook is not None:
            found[phase] = hook
    return found


def run_steps(args: argparse.Namespace, workdir: Path, env: dict[str, Any]) -> list[Measurement]:
    measurements: list[Measurement] = []
    for backend in args.backends:
        for worker in args.workers:
            print(f"Tether on {backend}, {worker} worker...", file=sys.stderr, flush=True)
            try:
                tether = measure_tether(
                    backend,
                    runs=args.runs,
                    steps=args.steps,
                    rounds=args.rounds,
                    warmup=args.warmup,
                    timeout=args.timeout,
                    workdir=workdir,
                    profile=_profiler(args, f"tether-{backend}-{worker}"),
                    worker=worker,
                )
            except Exception as error:  # a database that cannot be created, ...
                tether = Measurement(
                    WORKERS[worker], backend, error=f"{type(error).__name__}: {error}"
                )
            measurements.append(tether)
            _progress(tether)
        if args.skip_dbos:
            continue
        print(f"DBOS on {backend} ({args.dbos_mode})...", file=sys.stderr, flush=True)
        try:
            dbos = measure_dbos(
                backend,
                runs=args.runs,
                steps=args.steps,
                rounds=args.rounds,
                warmup=args.warmup,
                mode=args.dbos_mode,
                timeout=args.timeout,
                workdir=workdir,
            )
        except Exception as error:
            dbos = Measurement(
                "DBOS",
                backend,
                error=f"{type(error).__name__}: {error}",
                notes={"mode": args.dbos_mode},
            )
        measurements.append(dbos)
        _progress(dbos)
        env.setdefault("dbos", dbos.notes.get("dbos_version", ""))
    return measurements


def _flow_profilers(args: argparse.Namespace, backend: str) -> dict[str, ProfileHook] | None:
    if args.profile is None:
        return None
    found: dict[str, ProfileHook] = {}
    for variant in VARIANTS:
        hook = _profiler(args, f"flow-{backend}-{variant.slug()}")
        if hook is not None:
            found[variant.name] = hook
    return found


def run_flow(args: argparse.Namespace, workdir: Path) -> list[FlowMeasurement]:
    measurements: list[FlowMeasurement] = []
    for backend in args.backends:
        print(f"Tether on {backend}, flow control...", file=sys.stderr, flush=True)
        try:
            measurement = measure_flow(
                backend,
                runs=args.runs,
                steps=args.steps,
                rounds=args.rounds,
                warmup=args.warmup,
                timeout=args.timeout,
                workdir=workdir,
                profile=_flow_profilers(args, backend),
            )
        except Exception as error:  # a database that cannot be created, ...
            measurement = FlowMeasurement(
                backend, args.runs, args.steps, error=f"{type(error).__name__}: {error}"
            )
        measurements.append(measurement)
        _flow_progress(measurement)
    return measurements


def run_waits(args: argparse.Namespace, workdir: Path) -> list[WaitsMeasurement]:
    measurements: list[WaitsMeasurement] = []
    for backend in args.backends:
        for pending in args.waits_pending:
            waits = "wait" if pending == 1 else "waits"
            print(
                f"Tether on {backend}, {pending:,} {waits} pending...", file=sys.stderr, flush=True
            )
            try:
                measurement = measure_waits(
                    backend,
                    pending=pending,
                    events=args.waits_events,
                    batch=args.waits_batch,
                    resolve=args.waits_resolve,
                    rounds=args.waits_rounds,
                    warmup=args.warmup,
                    timeout=args.timeout,
                    workdir=workdir,
                    profiles=_waits_profilers(args, backend, pending),
                )
            except Exception as error:  # a database that cannot be created, ...
                measurement = WaitsMeasurement(
                    backend, pending, error=f"{type(error).__name__}: {error}"
                )
            measurements.append(measurement)
            _waits_progress(measurement)
    return measurements


def run_purge(args: argparse.Namespace, workdir: Path) -> list[PurgeMeasurement]:
    measurements: list[PurgeMeasurement] = []
    for backend in args.backends:
        print(
            f"Tether on {backend}, purging {args.purge_runs:,} finished runs...",
            file=sys.stderr,
            flush=True,
        )

        def progress(line: str, backend: str = backend) -> None:
            print(f"  {backend}: {line}", file=sys.stderr, flush=True)

        try:
            measurement = measure_purge(
                backend,
                seeded_runs=args.purge_runs,
                runs=args.runs,
                steps=args.steps,
                batches=args.purge_batches,
                rounds=args.rounds,
                warmup=args.warmup,
                timeout=args.timeout,
                workdir=workdir,
                progress=progress,
            )
        except Exception as error:  # a database that cannot be created, ...
            measurement = PurgeMeasurement(
                backend,
                args.purge_runs,
                args.runs,
                args.steps,
                args.purge_batches,
                error=f"{type(error).__name__}: {error}",
            )
        if measurement.error:
            print(f"  purge on {backend}: failed: {measurement.error}", file=sys.stderr, flush=True)
            _print_logs(measurement.notes)
        measurements.append(measurement)
    return measurements


def run_latency(args: argparse.Namespace, workdir: Path) -> list[LatencyMeasurement]:
    measurements: list[LatencyMeasurement] = []
    systems = [("Tether", measure_tether_latency)]
    if not args.skip_dbos:
        systems.append(("DBOS", measure_dbos_latency))
    for backend in args.backends:
        for system, measure in systems:
            print(f"{system} on {backend}, one event at a time...", file=sys.stderr, flush=True)
            try:
                measurement = measure(
                    backend,
                    samples=args.latency_samples,
                    steps=args.steps,
                    rounds=args.rounds,
                    warmup=args.warmup,
                    timeout=args.timeout,
                    workdir=workdir,
                )
            except Exception as error:  # a database that cannot be created, ...
                measurement = LatencyMeasurement(
                    system, backend, args.steps, error=f"{type(error).__name__}: {error}"
                )
            if measurement.error:
                print(f"  failed: {measurement.error}", file=sys.stderr, flush=True)
                _print_logs(measurement.notes)
            measurements.append(measurement)
    if not args.skip_restate:
        print("Restate, one invocation at a time...", file=sys.stderr, flush=True)
        restate = measure_restate_latency(
            samples=args.latency_samples,
            steps=args.steps,
            rounds=args.rounds,
            warmup=args.warmup,
            timeout=args.timeout,
            workdir=workdir,
        )
        if restate.error:
            print(f"  failed: {restate.error}", file=sys.stderr, flush=True)
            _print_logs(restate.notes)
        measurements.append(restate)
    return measurements


def run_timers(args: argparse.Namespace, workdir: Path) -> list[TimersMeasurement]:
    measurements: list[TimersMeasurement] = []
    for backend in args.backends:
        for runs in args.timers_runs:
            print(f"Tether on {backend}, {runs:,} runs asleep...", file=sys.stderr, flush=True)
            try:
                measurement = measure_timers(
                    backend,
                    runs=runs,
                    rounds=args.rounds,
                    warmup=args.warmup,
                    timeout=args.timeout,
                    workdir=workdir,
                )
            except Exception as error:  # a database that cannot be created, ...
                measurement = TimersMeasurement(
                    backend, runs, error=f"{type(error).__name__}: {error}"
                )
            if measurement.error:
                print(f"  failed: {measurement.error}", file=sys.stderr, flush=True)
                _print_logs(measurement.notes)
            measurements.append(measurement)
    return measurements


def timers_report(args: argparse.Namespace, measurements: list[TimersMeasurement]) -> str:
    """The timers scenario."""
    return "\n".join(
        [
            "",
            f"Runs asleep at once, all due at the same moment ({args.rounds} measured round(s) "
            f"after {args.warmup} warm-up): how late each one's next step body ran; each "
            "quantile is the median [min-max] of the rounds",
            "",
            timers_table(measurements),
        ]
    )


def _curve_rounds(args: argparse.Namespace, runs: int) -> int:
    """Enough runs for a p99: small concurrencies take more rounds."""
    rounds: int = args.rounds
    if runs == 1:
        return max(rounds, 30)
    return max(rounds, 10) if runs <= 100 else rounds


def run_curve(args: argparse.Namespace, workdir: Path) -> list[tuple[int, list[Measurement]]]:
    curve: list[tuple[int, list[Measurement]]] = []
    for runs in args.curve_runs:
        point = argparse.Namespace(**vars(args))
        point.runs = runs
        point.rounds = _curve_rounds(args, runs)
        point.workers = ["python"]
        point.profile = None
        print(f"curve: {runs:,} concurrent run(s)...", file=sys.stderr, flush=True)
        curve.append((runs, run_steps(point, workdir, {})))
    return curve


def curve_report(args: argparse.Namespace, curve: list[tuple[int, list[Measurement]]]) -> str:
    """The curve scenario."""
    rows: list[tuple[str, ...]] = [
        (
            "runs",
            "system",
            "backend",
            "steps/s",
            "run ms p50",
            "p99",
            "max",
            "Tether/DBOS steps/s",
            "Tether/DBOS p50",
        )
    ]
    failed: set[int] = set()
    for runs, measurements in curve:
        dbos = {m.backend: m for m in measurements if m.system == "DBOS" and m.rounds}
        for m in measurements:
            if m.error:
                failed.add(len(rows))
                rows.append((f"{runs:,}", m.system, m.backend, f"failed: {m.error}", *[""] * 5))
                continue
            ratio_rate = ratio_p50 = ""
            other = dbos.get(m.backend)
            if m.system != "DBOS" and other is not None:
                ratio_rate = (
                    f"{m.summary('steps_per_s').median / other.summary('steps_per_s').median:.2f}"
                )
                theirs = other.summary("run_latency_p50_ms").median
                ratio_p50 = (
                    f"{m.summary('run_latency_p50_ms').median / theirs:.2f}" if theirs else ""
                )
            rows.append(
                (
                    f"{runs:,}",
                    m.system,
                    m.backend,
                    _throughput(m.summary("steps_per_s")),
                    _latency(m.summary("run_latency_p50_ms").median),
                    _latency(percentile([r.run_latency_p99_ms for r in m.rounds], 99)),
                    _latency(max(r.run_latency_max_ms for r in m.rounds)),
                    ratio_rate,
                    ratio_p50,
                )
            )
    return "\n".join(
        [
            "",
            f"The steps workload ({args.steps} steps per run) at each concurrency; median of "
            "the rounds (steps/s: [min-max]); run latency, created to ended: the median of "
            "the rounds' p50, the 99th percentile of their p99, the largest of all",
            "",
            columns(rows, failed),
        ]
    )


def run_load(args: argparse.Namespace, workdir: Path) -> list[LoadMeasurement]:
    measurements: list[LoadMeasurement] = []
    for backend in args.backends:
        print(f"Tether on {backend}, one Send at a time under load...", file=sys.stderr, flush=True)
        try:
            measurement = measure_load(
                backend,
                runs=args.runs,
                steps=args.steps,
                seconds=args.load_seconds,
                rounds=args.rounds,
                warmup=args.warmup,
                timeout=args.timeout,
                workdir=workdir,
            )
        except Exception as error:  # a database that cannot be created, ...
            measurement = LoadMeasurement(backend, error=f"{type(error).__name__}: {error}")
        if measurement.error:
            print(f"  failed: {measurement.error}", file=sys.stderr, flush=True)
            _print_logs(measurement.notes)
        measurements.append(measurement)
    return measurements


def load_report(args: argparse.Namespace, measurements: list[LoadMeasurement]) -> str:
    """The load scenario."""
    return "\n".join(
        [
            "",
            f"One event per Send, each as the previous returned, for {args.load_seconds} s "
            f"while rounds of {args.runs} runs x {args.steps} steps run back to back "
            f"({args.rounds} measured round(s) after {args.warmup} warm-up; median "
            "[min-max] of the rounds)",
            "",
            load_table(measurements),
        ]
    )


def latency_report(args: argparse.Namespace, measurements: list[LatencyMeasurement]) -> str:
    """The latency scenario."""
    return "\n".join(
        [
            "",
            f"One event at a time to an idle engine, each starting a run of {args.steps} "
            f"steps: {args.latency_samples} events per round, {args.rounds} measured "
            f"round(s) after {args.warmup} warm-up; each quantile is the median [min-max] "
            "of the rounds",
            "",
            latency_table(measurements),
        ]
    )


def run_registration(args: argparse.Namespace, workdir: Path) -> list[RegistrationMeasurement]:
    measurements: list[RegistrationMeasurement] = []
    for backend in args.backends:
        print(
            f"Tether on {backend}, registering {args.registration_functions:,} functions...",
            file=sys.stderr,
            flush=True,
        )
        try:
            measurement = measure_registration(
                backend,
                functions=args.registration_functions,
                rounds=args.registration_rounds,
                warmup=args.warmup,
                timeout=args.timeout,
                workdir=workdir,
            )
        except Exception as error:  # a database that cannot be created, ...
            measurement = RegistrationMeasurement(
                backend, args.registration_functions, error=f"{type(error).__name__}: {error}"
            )
        measurements.append(measurement)
        _registration_progress(measurement)
    return measurements


class Results:
    """What every scenario measured (empty for a scenario not run)."""

    def __init__(self, env: dict[str, Any]) -> None:
        self.env = env
        self.steps: list[Measurement] = []
        self.waits: list[WaitsMeasurement] = []
        self.flow: list[FlowMeasurement] = []
        self.registration: list[RegistrationMeasurement] = []
        self.purge: list[PurgeMeasurement] = []
        self.latency: list[LatencyMeasurement] = []
        self.timers: list[TimersMeasurement] = []
        self.load: list[LoadMeasurement] = []
        self.curve: list[tuple[int, list[Measurement]]] = []


def run(args: argparse.Namespace, workdir: Path) -> Results:
    results = Results(environment(args.backends))
    print("measuring the machine's limits...", file=sys.stderr, flush=True)
    results.env["machine_limits"] = measure_machine(args.backends, workdir)
    if "steps" in args.scenario:
        results.steps = run_steps(args, workdir, results.env)
    if "latency" in args.scenario:
        results.latency = run_latency(args, workdir)
    if "timers" in args.scenario:
        results.timers = run_timers(args, workdir)
    if "curve" in args.scenario:
        results.curve = run_curve(args, workdir)
    if "load" in args.scenario:
        results.load = run_load(args, workdir)
    if "waits" in args.scenario:
        results.waits = run_waits(args, workdir)
    if "flow" in args.scenario:
        results.flow = run_flow(args, workdir)
    if "registration" in args.scenario:
        results.registration = run_registration(args, workdir)
    if "purge" in args.scenario:
        results.purge = run_purge(args, workdir)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.profile is not None:
        from bench.profiling import py_spy

        if py_spy() is None:
            print("--profile needs py-spy: .venv-bench/bin/pip install py-spy", file=sys.stderr)
            return 2
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        results = run(args, args.workdir.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="tether-bench-") as directory:
            results = run(args, Path(directory))
    env, measurements, waits, flow = results.env, results.steps, results.waits, results.flow
    registration, purge = results.registration, results.purge
    env["load_average_after"] = _load_average()
    print("\n".join(_header(args, env)))
    if measurements:
        print(report(args, env, measurements))
    if results.latency:
        print(latency_report(args, results.latency))
    if results.timers:
        print(timers_report(args, results.timers))
    if results.curve:
        print(curve_report(args, results.curve))
    if results.load:
        print(load_report(args, results.load))
    if waits:
        print(waits_report(args, waits))
    if flow:
        print(flow_report(args, flow, measurements))
    if registration:
        print(registration_report(args, registration))
    if purge:
        print(purge_report(args, purge))
    if args.json is not None:
        payload = {
            "workload": {
                "scenario": args.scenario,
                "runs": args.runs,
                "steps": args.steps,
                "rounds": args.rounds,
                "warmup": args.warmup,
                "workers": args.workers,
                "dbos_mode": None
                if args.skip_dbos or "steps" not in args.scenario
                else args.dbos_mode,
                "waits_pending": args.waits_pending,
                "waits_rounds": args.waits_rounds,
                "waits_events": args.waits_events,
                "waits_batch": args.waits_batch,
                "waits_resolve": args.waits_resolve,
                "registration_rounds": args.registration_rounds,
                "registration_functions": args.registration_functions,
                "purge_runs": args.purge_runs,
                "purge_batches": args.purge_batches,
                "latency_samples": args.latency_samples,
                "timers_runs": args.timers_runs,
                "load_seconds": args.load_seconds,
                "curve_runs": args.curve_runs,
            },
            "environment": env,
            "results": [m.to_json() for m in measurements],
            "ratios": ratios(measurements),
            "waits": [m.to_json() for m in waits],
            "flow": [m.to_json() for m in flow],
            "registration": [m.to_json() for m in registration],
            "purge": [m.to_json() for m in purge],
            "latency": [m.to_json() for m in results.latency],
            "timers": [m.to_json() for m in results.timers],
            "load": [m.to_json() for m in results.load],
            "curve": [
                {"runs": runs, "results": [m.to_json() for m in ms], "ratios": ratios(ms)}
                for runs, ms in results.curve
            ],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    failed = (
        any(m.error for m in measurements)
        or any(m.error for m in waits)
        or any(m.error for m in flow)
        or any(m.error for m in registration)
        or any(m.error for m in purge)
        or any(m.error for m in results.latency)
        or any(m.error for m in results.timers)
        or any(m.error for m in results.load)
        or any(m.error for _, ms in results.curve for m in ms)
        or bool(violations(flow))
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
