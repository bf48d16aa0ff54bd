"""Rendering runs, timelines, functions and events for people and as JSON."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import click

from controlplane.api.convert import HISTORY_KIND_TO_PB
from tether.v1 import common_pb2, run_service_pb2

STATUS_NAMES: dict[int, str] = {
    common_pb2.RUN_STATUS_QUEUED: "queued",
    common_pb2.RUN_STATUS_RUNNING: "running",
    common_pb2.RUN_STATUS_SLEEPING: "sleeping",
    common_pb2.RUN_STATUS_WAITING: "waiting",
    common_pb2.RUN_STATUS_COMPLETED: "completed",
    common_pb2.RUN_STATUS_FAILED: "failed",
    common_pb2.RUN_STATUS_CANCELLED: "cancelled",
}
STATUS_BY_NAME: dict[str, int] = {v: k for k, v in STATUS_NAMES.items()}
STATUS_COLORS = {
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "sleeping": "blue",
    "waiting": "blue",
    "queued": "white",
}
STEP_KIND_NAMES: dict[int, str] = {
    common_pb2.STEP_KIND_RUN: "run",
    common_pb2.STEP_KIND_SLEEP: "sleep",
    common_pb2.STEP_KIND_WAIT_FOR_EVENT: "wait_for_event",
    common_pb2.STEP_KIND_INVOKE: "invoke",
    common_pb2.STEP_KIND_SEND_EVENT: "send_event",
}
STEP_STATUS_NAMES: dict[int, str] = {
    run_service_pb2.STEP_STATUS_COMPLETED: "completed",
    run_service_pb2.STEP_STATUS_FAILED: "failed",
    run_service_pb2.STEP_STATUS_RETRYING: "retrying",
    run_service_pb2.STEP_STATUS_PENDING: "pending",
}
HISTORY_NAMES: dict[int, str] = {pb: kind.value for kind, pb in HISTORY_KIND_TO_PB.items()}
PAUSE_MODE_NAMES: dict[int, str] = {
    run_service_pb2.PAUSE_MODE_HOLD: "hold",
    run_service_pb2.PAUSE_MODE_SKIP: "skip",
}
CATCH_UP_NAMES: dict[int, str] = {
    common_pb2.CRON_CATCH_UP_ONE: "one",
    common_pb2.CRON_CATCH_UP_NONE: "none",
    common_pb2.CRON_CATCH_UP_ALL: "all",
}
SCOPE_NAMES: dict[int, str] = {
    common_pb2.CONCURRENCY_SCOPE_FUNCTION: "fn",
    common_pb2.CONCURRENCY_SCOPE_APP: "app",
    common_pb2.CONCURRENCY_SCOPE_GLOBAL: "global",
}
SINGLETON_MODE_NAMES: dict[int, str] = {
    common_pb2.SINGLETON_MODE_SKIP: "skip",
    common_pb2.SINGLETON_MODE_CANCEL: "cancel",
}


# -- small pieces ------------------------------------------------------------------


def timestamp(ms: int) -> str:
    if not ms:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def iso(ms: int) -> str | None:
    if not ms:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))


def _parts(ms: int) -> list[tuple[int, str]]:
    """``5_400_000`` -> ``[(1, "h"), (30, "m")]``: the non-zero units, largest first."""
    parts = []
    for name, size in _UNITS:
        if ms >= size:
            parts.append((ms // size, name))
            ms %= size
    return parts


def duration(ms: int) -> str:
    """``1234`` -> ``1.2 s``; ``90000000`` -> ``1 d 1 h``."""
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return " ".join(f"{n} {unit}" for n, unit in _parts(ms - ms % 1000)[:2])


def period(ms: int) -> str:
    """A configured period, exactly and compactly: ``60000`` -> ``1m``,
    ``5400000`` -> ``1h30m``."""
    return "".join(f"{n}{unit}" for n, unit in _parts(ms)) or "0s"


def relative(ms: int, now_ms: int) -> str:
    """When ``ms`` is, seen from ``now_ms``: ``in 5h 12m``, ``3m 10s ago``, ``now``."""
    delta = abs(ms - now_ms)
    if delta < 1000:
        return "now"
    text = " ".join(f"{n}{unit}" for n, unit in _parts(delta - delta % 1000)[:2])
    return f"in {text}" if ms > now_ms else f"{text} ago"


def local_time(ms: int, tz: dt.tzinfo | None = None) -> str:
    """``2023-11-14 23:13 CET``: a minute in ``tz`` (default: the local time zone)."""
    moment = dt.datetime.fromtimestamp(ms / 1000, tz or dt.UTC)
    if tz is None:
        moment = moment.astimezone()
    return moment.strftime("%Y-%m-%d %H:%M %Z").rstrip()


def payload(raw: bytes, limit: int = 80) -> str:
    """JSON bytes, compact and shortened for a table."""
    if not raw:
        return ""
    try:
        text = json.dumps(json.loads(raw), separators=(", ", ": "), ensure_ascii=False)
    except ValueError:
        text = raw.decode("utf-8", "replace")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def decoded(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def status_name(status: int) -> str:
    return STATUS_NAMES.get(status, "unknown")


def styled_status(status: int) -> str:
    name = status_name(status)
    return click.style(name, fg=STATUS_COLORS.get(name, "white"), bold=name == "failed")


def error_text(error: common_pb2.ErrorInfo) -> str:
    return f"{error.name}: {error.message}" if error.name else error.message


# -- JSON ------------------------------------------------------------------------------


def error_json(error: common_pb2.ErrorInfo | None) -> dict[str, str] | None:
    if error is None or not (error.name or error.message):
        return None
    return {"name": error.name, "message": error.message, "stack": error.stack}


def run_json(run: run_service_pb2.Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "app_id": run.app_id,
        "function_id": run.function_id,
        "status": status_name(run.status),
        "event_id": run.event_id,
        "attempt": run.attempt,
        "created_at": iso(run.created_at_ms),
        "started_at": iso(run.started_at_ms),
        "ended_at": iso(run.ended_at_ms),
        "output": decoded(run.output),
        "error": error_json(run.error) if run.HasField("error") else None,
        "replay_of": run.replay_of or None,
        "parent_run_id": run.parent_run_id or None,
        "trace_id": run.trace_id,
    }


def event_json(event: common_pb2.Event, received_at_ms: int = 0) -> dict[str, Any]:
    result = {
        "id": event.id,
        "name": event.name,
        "data": decoded(event.data) or {},
        "user": decoded(event.user),
        "ts": iso(event.ts_ms),
    }
    if received_at_ms:
        result["received_at"] = iso(received_at_ms)
    return result


def run_detail_json(response: run_service_pb2.GetRunResponse) -> dict[str, Any]:
    result = run_json(response.run)
    result["events"] = [event_json(e) for e in response.events]
    result["steps"] = [
        {
            "id": s.name,
            "hashed_id": s.step_id,
            "kind": STEP_KIND_NAMES.get(s.kind, "run"),
            "status": STEP_STATUS_NAMES.get(s.status, "completed"),
            "attempts": s.attempts,
            "started_at": iso(s.started_at_ms),
            "ended_at": iso(s.ended_at_ms),
            "output": decoded(s.output),
            "error": error_json(s.error) if s.HasField("error") else None,
            "child_run_id": s.child_run_id or None,
            "waiting_for": s.waiting_for or None,
        }
        for s in response.steps
    ]
    result["history"] = [
        {
            "at": iso(h.ts_ms),
            "kind": HISTORY_NAMES.get(h.kind, "unknown"),
            "step": h.step_name or None,
            "attempt": h.attempt or None,
            "until": iso(h.until_ms),
            "error": error_json(h.error) if h.HasField("error") else None,
            "message": h.message or None,
        }
        for h in response.history
    ]
    return result


def function_json(info: run_service_pb2.FunctionInfo) -> dict[str, Any]:
    definition = info.definition
    triggers: list[dict[str, str | None]] = []
    fires = iter(info.next_fire_ms)
    for trigger in definition.triggers:
        if trigger.WhichOneof("kind") == "event":
            triggers.append({"event": trigger.event.name, "if": trigger.event.if_expression})
        else:
            cron = trigger.cron
            triggers.append(
                {
                    "cron": cron.schedule,
                    "timezone": cron.timezone,
                    "catch_up": CATCH_UP_NAMES.get(cron.catch_up, "one"),
                    "next_fire": iso(next(fires, 0)),
                }
            )
    return {
        "app_id": info.app_id,
        "id": definition.id,
        "name": definition.name,
        "triggers": triggers,
        "retries": definition.retries,
        "connected_workers": info.connected_workers,
        "registered_at": iso(info.registered_at_ms),
        "updated_at": iso(info.updated_at_ms),
        "paused": PAUSE_MODE_NAMES.get(info.paused),
        **flow_control_json(definition),
    }


def flow_control_json(definition: common_pb2.FunctionDefinition) -> dict[str, Any]:
    """The flow control options of a definition; None for those not set."""
    d = definition
    return {
        "concurrency": [
            {"limit": c.limit, "key": c.key or None, "scope": SCOPE_NAMES.get(c.scope, "fn")}
            for c in d.concurrency
        ],
        "throttle": {
            "limit": d.throttle.limit,
            "period_ms": d.throttle.period_ms,
            "burst": d.throttle.burst or 1,
            "key": d.throttle.key or None,
        }
        if d.HasField("throttle")
        else None,
        "rate_limit": {
            "limit": d.rate_limit.limit,
            "period_ms": d.rate_limit.period_ms,
            "key": d.rate_limit.key or None,
        }
        if d.HasField("rate_limit")
        else None,
        "debounce": {
            "period_ms": d.debounce.period_ms,
            "timeout_ms": d.debounce.timeout_ms or None,
            "key": d.debounce.key or None,
        }
        if d.HasField("debounce")
        else None,
        "priority": d.priority.run if d.HasField("priority") else None,
        "batching": {
            "max_size": d.batching.max_size,
            "timeout_ms": d.batching.timeout_ms,
            "key": d.batching.key or None,
        }
        if d.HasField("batching")
        else None,
        "singleton": {
            "key": d.singleton.key or None,
            "mode": SINGLETON_MODE_NAMES.get(d.singleton.mode, "skip"),
        }
        if d.HasField("singleton")
        else None,
    }


def dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


# -- tables ------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain aligned table; cells may carry ANSI styles."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(click.unstyle(cell)))
    last = len(headers) - 1
    lines = [
        "  ".join(
            click.style(h if i == last else h.ljust(widths[i]), bold=True)
            for i, h in enumerate(headers)
        )
    ]
    for row in rows:
        cells = [cell + " " * (widths[i] - len(click.unstyle(cell))) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def triggers_text(
    info: run_service_pb2.FunctionInfo, now_ms: int, tz: dt.tzinfo | None = None
) -> str:
    """``app/x if <CEL>, cron 0 9 * * * Europe/Paris → 2023-11-15 09:00 CET (in 9h 46m)``."""
    parts = []
    fires = iter(info.next_fire_ms)
    for trigger in info.definition.triggers:
        if trigger.WhichOneof("kind") == "event":
            condition = trigger.event.if_expression
            parts.append(trigger.event.name + (f" if {condition}" if condition else ""))
            continue
        text = f"cron {trigger.cron.schedule}"
        if trigger.cron.timezone:
            text += f" {trigger.cron.timezone}"
        fire = next(fires, 0)
        if fire:
            text += f" → {local_time(fire, tz)} ({relative(fire, now_ms)})"
        parts.append(text)
    return ", ".join(parts)


def _per(key: str) -> str:
    return f" per {key}" if key else ""


def flow_control_text(definition: common_pb2.FunctionDefinition) -> str:
    """``concurrency 5 per event.data.user_id; throttle 10/1m``: the options set."""
    d = definition
    parts = []
    for c in d.concurrency:
        scope = SCOPE_NAMES.get(c.scope, "fn")
        parts.append(
            f"concurrency {c.limit}{_per(c.key)}" + (f" ({scope})" if scope != "fn" else "")
        )
    if d.HasField("throttle"):
        t = d.throttle
        burst = f" burst {t.burst}" if t.burst > 1 else ""
        parts.append(f"throttle {t.limit}/{period(t.period_ms)}{burst}{_per(t.key)}")
    if d.HasField("rate_limit"):
        r = d.rate_limit
        parts.append(f"rate limit {r.limit}/{period(r.period_ms)}{_per(r.key)}")
    if d.HasField("debounce"):
        b = d.debounce
        cap = f" max {period(b.timeout_ms)}" if b.timeout_ms else ""
        parts.append(f"debounce {period(b.period_ms)}{cap}{_per(b.key)}")
    if d.HasField("priority"):
        parts.append(f"priority {d.priority.run}")
    if d.HasField("batching"):
        g = d.batching
        parts.append(f"batch {g.max_size} or {period(g.timeout_ms)}{_per(g.key)}")
    if d.HasField("singleton"):
        mode = SINGLETON_MODE_NAMES.get(d.singleton.mode, "skip")
        parts.append(f"singleton ({mode}){_per(d.singleton.key)}")
    return "; ".join(parts)


def pause_state(mode: int) -> str:
    """``active``, or ``paused (hold)`` / ``paused (skip)`` in yellow."""
    name = PAUSE_MODE_NAMES.get(mode)
    return click.style(f"paused ({name})", fg="yellow") if name else "active"


def functions_table(
    infos: list[run_service_pb2.FunctionInfo], now_ms: int, tz: dt.tzinfo | None = None
) -> str:
    rows = []
    for info in infos:
        workers = info.connected_workers
        rows.append(
            [
                info.app_id,
                info.definition.id,
                triggers_text(info, now_ms, tz),
                str(info.definition.retries),
                click.style(str(workers), fg="green" if workers else "yellow"),
                pause_state(info.paused),
                flow_control_text(info.definition),
            ]
        )
    return table(
        ["APP", "FUNCTION", "TRIGGERS", "RETRIES", "WORKERS", "STATE", "FLOW CONTROL"], rows
    )


def runs_table(runs: list[run_service_pb2.Run]) -> str:
    rows = []
    for run in runs:
        took = ""
        if run.ended_at_ms and run.created_at_ms:
            took = duration(run.ended_at_ms - run.created_at_ms)
        rows.append(
            [
                run.id,
                run.function_id,
                styled_status(run.status),
                timestamp(run.created_at_ms),
                took,
            ]
        )
    return table(["RUN", "FUNCTION", "STATUS", "CREATED (UTC)", "TOOK"], rows)


# -- the timeline ------------------------------------------------------------------------


@dataclass(order=True)
class _Line:
    at_ms: int
    order: int
    text: str


def timeline(response: run_service_pb2.GetRunResponse) -> str:
    """A run as people read it: header, then each step, attempt, sleep, in time order."""
    run = response.run
    out = [
        f"{click.style('Run', bold=True)} {run.id}  {run.function_id} "
        f"(app {run.app_id})  {styled_status(run.status)}"
    ]
    for event in response.events:
        out.append(f"  event    {event.id}  {event.name}  {payload(event.data, 100)}")
    took = f"  took {duration(run.ended_at_ms - run.created_at_ms)}" if run.ended_at_ms else ""
    out.append(
        f"  created  {timestamp(run.created_at_ms)}   ended {timestamp(run.ended_at_ms)}{took}"
    )
    if run.replay_of:
        out.append(f"  replays  {run.replay_of}")
    if run.parent_run_id:
        out.append(f"  invoked by run {run.parent_run_id}")
    if run.trace_id:
        out.append(f"  trace    {run.trace_id}")
    if run.status == common_pb2.RUN_STATUS_COMPLETED:
        out.append(f"  output   {payload(run.output, 200)}")
    elif run.HasField("error") and (run.error.name or run.error.message):
        out.append("  error    " + click.style(error_text(run.error), fg="red"))
    out.append("")
    base = run.created_at_ms
    lines: list[_Line] = []
    # On a tie in time an execution's start comes first, then steps in order,
    # then the other entries.
    for order, step in enumerate(response.steps):
        lines.append(_Line(step.started_at_ms, 1_000_000 + order, _step_line(step)))
    shown = {s.step_id for s in response.steps}
    for order, entry in enumerate(response.history):
        text = _history_line(entry)
        rank = (
            order
            if entry.kind == run_service_pb2.HISTORY_KIND_EXECUTION_STARTED
            else 2_000_000 + order
        )
        if entry.kind == run_service_pb2.HISTORY_KIND_SLEEP_STARTED and entry.step_id not in shown:
            # A sleep the run never woke from (it was cancelled or failed meanwhile).
            text = (
                click.style("⏸", fg="blue")
                + f" sleep {entry.step_name}  until {timestamp(entry.until_ms)}, never reached"
            )
            shown.add(entry.step_id)
        if text:
            lines.append(_Line(entry.ts_ms, rank, text))
    lines.sort()
    for line in lines:
        offset = f"+{duration(max(0, line.at_ms - base))}"
        out.append(f"  {offset:>10}  {line.text}")
    if not lines:
        out.append("  (no steps yet)")
    return "\n".join(out)


def _step_line(step: run_service_pb2.StepRecord) -> str:
    kind = STEP_KIND_NAMES.get(step.kind, "run")
    status = STEP_STATUS_NAMES.get(step.status, "completed")
    took = duration(max(0, step.ended_at_ms - step.started_at_ms))
    attempts = f"  {step.attempts} attempts" if step.attempts > 1 else ""
    if kind == "sleep":
        if status == "pending":
            return (
                click.style("⏸", fg="blue")
                + f" sleep {step.name}  until {timestamp(step.ended_at_ms)}"
            )
        return click.style("⏸", fg="blue") + f" sleep {step.name}  {took}"
    if kind == "wait_for_event":
        mark = click.style("⧗", fg="blue")
        if status == "pending":
            until = f" until {timestamp(step.ended_at_ms)}" if step.ended_at_ms else ""
            return f"{mark} wait {step.name}  for {step.waiting_for}{until}"
        if status == "completed":
            got = payload(step.output) if step.output and step.output != b"null" else "timed out"
            return f"{mark} wait {step.name}  {took}  → {got}"
    if kind == "invoke":
        mark = click.style("↪", fg="blue")
        child = f" run {step.child_run_id}" if step.child_run_id else ""
        if status == "pending":
            return f"{mark} invoke {step.name}  waiting for{child}"
        if status == "completed":
            return f"{mark} invoke {step.name}{child}  {took}  → {payload(step.output)}"
    if status == "completed":
        mark = click.style("✓", fg="green")
        return f"{mark} {step.name}  {took}{attempts}  → {payload(step.output)}"
    if status == "failed":
        mark = click.style("✗", fg="red")
        return f"{mark} {step.name}  failed for good{attempts}: {error_text(step.error)}"
    mark = click.style("↻", fg="yellow")
    return f"{mark} {step.name}  retrying after {step.attempts} failed attempt(s)"


def _history_line(entry: run_service_pb2.HistoryEntry) -> str | None:
    kind = entry.kind
    h = run_service_pb2
    if kind == h.HISTORY_KIND_EXECUTION_STARTED:
        attempt = f" (run attempt {entry.attempt + 1})" if entry.attempt else ""
        return click.style("▶ execution started", dim=True) + attempt
    if kind == h.HISTORY_KIND_EXECUTION_LOST:
        return click.style("⚠ execution lost", fg="yellow") + f": {entry.message}"
    if kind == h.HISTORY_KIND_STEP_FAILED:
        retry = f"; retry at {timestamp(entry.until_ms)}" if entry.until_ms else "; no retries left"
        return (
            click.style("✗", fg="red")
            + f" {entry.step_name}  attempt {entry.attempt} failed: "
            + f"{error_text(entry.error)}{retry}"
        )
    if kind == h.HISTORY_KIND_SLEEP_STARTED:
        return None  # shown by the sleep step itself
    if kind == h.HISTORY_KIND_SLEEP_ENDED:
        return None
    if kind == h.HISTORY_KIND_RUN_RETRY_SCHEDULED:
        return (
            click.style("✗", fg="red")
            + f" function attempt {entry.attempt} failed: {error_text(entry.error)}; "
            f"retry at {timestamp(entry.until_ms)}"
        )
    if kind == h.HISTORY_KIND_RUN_COMPLETED:
        return click.style("■ completed", fg="green")
    if kind == h.HISTORY_KIND_RUN_FAILED:
        return click.style("■ failed", fg="red") + f": {error_text(entry.error)}"
    if kind == h.HISTORY_KIND_RUN_CANCELLED:
        return click.style("■ cancelled", fg="yellow") + f": {entry.message}"
    if kind == h.HISTORY_KIND_NON_DETERMINISM:
        return click.style("⚠ non-determinism", fg="yellow") + f": {entry.message}"
    if kind == h.HISTORY_KIND_RUN_REPLAYED:
        return click.style("↺", fg="cyan") + f" {entry.message}"
    if kind in (h.HISTORY_KIND_WAIT_STARTED, h.HISTORY_KIND_INVOKE_STARTED):
        return None  # shown by the step itself
    if kind == h.HISTORY_KIND_WAIT_ENDED:
        return click.style("⧗", fg="blue", dim=True) + f" {entry.step_name}: {entry.message}"
    if kind == h.HISTORY_KIND_INVOKE_ENDED:
        return click.style("↪", fg="blue", dim=True) + f" {entry.step_name}: {entry.message}"
    return None


@contextlib.contextmanager
def progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """Progress of a long operation on standard error: a bar in a terminal, a
    line per step otherwise (logs, CI). Yields ``advance(n)``."""
    if sys.stderr.isatty():
        with click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True) as bar:
            yield bar.update
        return
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        click.echo(f"{label}: {done:,}/{total:,}", err=True)

    yield advance
