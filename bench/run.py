"""``python -m bench.run``: durable steps per second and latency of Tether on
SQLite and PostgreSQL, next to DBOS 3.4 running the same workload.

The workload: N runs started at once, each running K trivial steps in a row
(defaults: 200 runs x 10 steps). Tether runs it through a real control-plane
process and a real worker process; DBOS runs it in-process. Each system does a
warm-up round, then several measured rounds; the report shows the median of the
rounds and their spread.
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
from bench.stats import Measurement, Spread
from bench.tether_workload import ProfileHook, measure_tether

BACKENDS = ("sqlite", "postgres")
#: The project's aim: durable steps/s on SQLite with 200 concurrent 10-step runs.
AIM_STEPS_PER_S = 2000


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=_positive, default=200, help="concurrent runs (N)")
    parser.add_argument("--steps", type=_positive, default=10, help="steps per run (K)")
    parser.add_argument("--rounds", type=_positive, default=3, help="measured rounds")
    parser.add_argument("--warmup", type=_not_negative, default=1, help="warm-up rounds")
    parser.add_argument(
        "--backends",
        type=_backends,
        default=list(BACKENDS),
        help="comma-separated: sqlite,postgres (default: both)",
    )
    parser.add_argument("--skip-dbos", action="store_true", help="measure Tether only")
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
    return _columns(rows, skip_width={i for i, row in enumerate(rows) if row[3:] == ("", "", "")})


def _columns(rows: Sequence[tuple[str, ...]], skip_width: set[int] | None = None) -> str:
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
    return _columns(rows)


def report(args: argparse.Namespace, env: dict[str, Any], measurements: list[Measurement]) -> str:
    lines = [
        "",
        f"{args.runs} concurrent runs x {args.steps} steps; {args.rounds} measured round(s) "
        f"after {args.warmup} warm-up; median of the rounds, [min-max] across them",
        f"machine: {env['cpus']} CPU(s), {env['cpu_model']}, Python {env['python']}, "
        f"SQLite {env['sqlite']}"
        + (f", PostgreSQL {env['postgres']}" if "postgres" in env else ""),
        f"load average (1/5/15 min) before: {_loads(env.get('load_average_before'))}, "
        f"after: {_loads(env.get('load_average_after'))}",
        "",
        table(measurements),
        "",
    ]
    found = ratios(measurements)
    if found:
        lines += [side_by_side(measurements, found), ""]
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


def _progress(measurement: Measurement) -> None:
    label = f"{measurement.system} on {measurement.backend}"
    if measurement.error:
        print(f"  {label}: failed: {measurement.error}", file=sys.stderr, flush=True)
        for key, value in measurement.notes.items():
            if key.endswith("log") and value:
                print(f"    {key}:\n{value}", file=sys.stderr)
        return
    rates = ", ".join(_number(r.steps_per_s) for r in measurement.rounds)
    print(f"  {label}: durable steps/s per round: {rates}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, Any], list[Measurement]]:
    env = environment(args.backends)
    measurements: list[Measurement] = []
    for backend in args.backends:
        print(f"Tether on {backend}...", file=sys.stderr, flush=True)
        profiler: ProfileHook | None = None
        if args.profile is not None:
            from bench.profiling import PySpyProfiler

            profiler = PySpyProfiler(args.profile, f"tether-{backend}")
        try:
            tether = measure_tether(
                backend,
                runs=args.runs,
                steps=args.steps,
                rounds=args.rounds,
                warmup=args.warmup,
                timeout=args.timeout,
                workdir=workdir,
                profile=profiler,
            )
        except Exception as error:  # a database that cannot be created, ...
            tether = Measurement("Tether", backend, error=f"{type(error).__name__}: {error}")
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
    return env, measurements


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.profile is not None:
        from bench.profiling import py_spy

        if py_spy() is None:
            print("--profile needs py-spy: .venv-bench/bin/pip install py-spy", file=sys.stderr)
            return 2
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        env, measurements = run(args, args.workdir.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="tether-bench-") as directory:
            env, measurements = run(args, Path(directory))
    env["load_average_after"] = _load_average()
    print(report(args, env, measurements))
    if args.json is not None:
        payload = {
            "workload": {
                "runs": args.runs,
                "steps": args.steps,
                "rounds": args.rounds,
                "warmup": args.warmup,
                "dbos_mode": None if args.skip_dbos else args.dbos_mode,
            },
            "environment": env,
            "results": [m.to_json() for m in measurements],
            "ratios": ratios(measurements),
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 1 if any(m.error for m in measurements) else 0


if __name__ == "__main__":
    sys.exit(main())
