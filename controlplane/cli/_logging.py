"""Readable, coloured logs for people; JSON lines for machines.

Log lines about a run carry its ids as record attributes (``extra=``, see
``run_log_extra`` in controlplane/engine/observer.py; the SDK's ``ctx.logger``
sets them too): JSON lines include them, readable lines show a short run id.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time

import click

# Record attributes copied into JSON lines when present, in this order.
CONTEXT_KEYS = (
    "app_id",
    "function_id",
    "run_id",
    "execution_id",
    "step_id",
    "trace_id",
    "span_id",
)
# Run ids are ULIDs: the first characters are a time, the last ones random.
_SHORT_RUN_ID = 8


def short_run_id(run_id: str) -> str:
    return run_id[-_SHORT_RUN_ID:]


_LEVEL_COLORS = {
    logging.DEBUG: "bright_black",
    logging.INFO: "cyan",
    logging.WARNING: "yellow",
    logging.ERROR: "red",
    logging.CRITICAL: "red",
}


class ReadableFormatter(logging.Formatter):
    def __init__(self, color: bool) -> None:
        super().__init__()
        self._color = color

    def format(self, record: logging.LogRecord) -> str:
        when = (
            time.strftime("%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        )
        level = record.levelname.lower()
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        run_id = getattr(record, "run_id", None)
        run = f" [run {short_run_id(run_id)}]" if isinstance(run_id, str) and run_id else ""
        if not self._color:
            return f"{when} {level:<7} {record.name}{run}: {message}"
        return (
            click.style(when, dim=True)
            + " "
            + click.style(f"{level:<7}", fg=_LEVEL_COLORS.get(record.levelno, "white"))
            + " "
            + click.style(record.name, dim=True)
            + click.style(run, fg="magenta")
            + ": "
            + message
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (ISO 8601, UTC, milliseconds), ``level``,
    ``logger``, ``message``, the ids of CONTEXT_KEYS the record has, and
    ``exception`` (the traceback) if any."""

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.UTC)
        value: dict[str, object] = {
            "ts": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            found = getattr(record, key, None)
            if found is not None and found != "":
                value[key] = found
        if record.exc_info:
            value["exception"] = self.formatException(record.exc_info)
        return json.dumps(value, default=str)


def configure(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(ReadableFormatter(color=sys.stderr.isatty()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Alembic announces every migration step at INFO; we log the result ourselves.
    logging.getLogger("alembic").setLevel(logging.WARNING)
