"""The log formatters: JSON lines carry a run's ids; readable lines show a short run id."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

import pytest

from controlplane.cli._logging import JsonFormatter, ReadableFormatter
from controlplane.engine.observer import run_log_extra
from tether import Context, Tether
from tether.testing import run_function

RUN_ID = "01J9ZQ4XK0000000004XK9ZQ2M"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def _record(message: str, extra: dict[str, str] | None = None) -> logging.LogRecord:
    logger = logging.getLogger("tether.engine")
    record = logger.makeRecord(
        "tether.engine", logging.INFO, __file__, 1, message, (), None, extra=extra
    )
    record.created = dt.datetime(2024, 5, 6, 7, 8, 9, 123_000, dt.UTC).timestamp()
    record.msecs = 123
    return record


def test_a_json_line_carries_the_run_ids() -> None:
    extra = run_log_extra(
        RUN_ID,
        app_id="shop",
        function_id="onboarding",
        trace_id=TRACE_ID,
        span_id="00f067aa0ba902b7",
        step_id="send-email",
        execution_id="e" * 32,
    )

    line = JsonFormatter().format(_record(f"run {RUN_ID} completed", extra))

    assert "\n" not in line
    assert json.loads(line) == {
        "ts": "2024-05-06T07:08:09.123Z",
        "level": "info",
        "logger": "tether.engine",
        "message": f"run {RUN_ID} completed",
        "app_id": "shop",
        "function_id": "onboarding",
        "run_id": RUN_ID,
        "execution_id": "e" * 32,
        "step_id": "send-email",
        "trace_id": TRACE_ID,
        "span_id": "00f067aa0ba902b7",
    }


def test_a_json_line_without_a_run_has_no_ids_and_keeps_the_traceback() -> None:
    record = _record("dispatcher round failed")
    try:
        raise RuntimeError("the database went away")
    except RuntimeError:
        record.exc_info = sys.exc_info()

    value = json.loads(JsonFormatter().format(record))

    assert set(value) == {"ts", "level", "logger", "message", "exception"}
    assert "RuntimeError: the database went away" in value["exception"]


def test_run_log_extra_leaves_out_unknown_ids() -> None:
    assert run_log_extra(RUN_ID, function_id="f") == {"run_id": RUN_ID, "function_id": "f"}


def test_a_readable_line_shows_a_short_run_id() -> None:
    formatter = ReadableFormatter(color=False)

    with_run = formatter.format(_record("step failed", {"run_id": RUN_ID}))
    without = formatter.format(_record("worker connected"))

    assert with_run.endswith(" info    tether.engine [run 4XK9ZQ2M]: step failed")
    assert without.endswith(" info    tether.engine: worker connected")


async def test_ctx_logger_records_carry_the_run_and_step(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Tether(app_id="shop", address="localhost:1")

    @app.function(id="flow", trigger="app/test")
    async def flow(ctx: Context) -> None:
        ctx.logger.info("starting")

        def work() -> None:
            ctx.logger.info("in a step")

        await ctx.step.run("work", work)

    with caplog.at_level(logging.INFO, logger="tether.functions.flow"):
        result = await run_function(flow)

    assert result.error is None
    outside, inside = [r for r in caplog.records if r.name == "tether.functions.flow"]
    assert (outside.getMessage(), inside.getMessage()) == ("starting", "in a step")
    for record in (outside, inside):
        assert record.__dict__["function_id"] == "flow"
        assert record.__dict__["run_id"] == "harness-run"
    assert "step_id" not in outside.__dict__
    assert inside.__dict__["step_id"] == "work"
