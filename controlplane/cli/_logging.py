"""Readable, coloured logs for people; JSON lines for machines."""

from __future__ import annotations

import json
import logging
import sys
import time

import click

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
        if not self._color:
            return f"{when} {level:<7} {record.name}: {message}"
        return (
            click.style(when, dim=True)
            + " "
            + click.style(f"{level:<7}", fg=_LEVEL_COLORS.get(record.levelno, "white"))
            + " "
            + click.style(record.name, dim=True)
            + ": "
            + message
        )


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        value = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("run_id", "function_id", "step_id", "trace_id"):
            if hasattr(record, key):
                value[key] = getattr(record, key)
        if record.exc_info:
            value["exception"] = self.formatException(record.exc_info)
        return json.dumps(value)


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
