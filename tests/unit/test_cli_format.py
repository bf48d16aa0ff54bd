"""How the CLI renders durations, payloads, run tables and a run's timeline."""

from __future__ import annotations

import click
import pytest

from controlplane.cli import _format
from tether.v1 import common_pb2 as common
from tether.v1 import run_service_pb2 as rs

# 2023-11-14 22:13:20 UTC, in milliseconds.
T0 = 1_700_000_000_000


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0 ms"),
        (999, "999 ms"),
        (1_000, "1.0 s"),
        (1_234, "1.2 s"),
        (59_000, "59.0 s"),
        (60_000, "1 m"),
        (90_000, "1 m 30 s"),
        (3_600_000, "1 h"),
        (3_661_000, "1 h 1 m"),
        (7_322_000, "2 h 2 m"),
        (86_400_000, "1 d"),
        (90_000_000, "1 d 1 h"),
        (3 * 86_400_000 + 5 * 3_600_000 + 7 * 60_000, "3 d 5 h"),
    ],
)
def test_duration(ms: int, text: str) -> None:
    assert _format.duration(ms) == text


def test_timestamp() -> None:
    assert _format.timestamp(T0 + 5) == "2023-11-14 22:13:20.005"
    assert _format.timestamp(0) == "-"
    assert _format.iso(T0) == "2023-11-14T22:13:20.000+00:00"
    assert _format.iso(0) is None


def test_payload_is_compact_readable_json() -> None:
    assert _format.payload(b'{"a":1,"b":[true,null]}') == '{"a": 1, "b": [true, null]}'
    assert _format.payload('{"city":"Zürich"}'.encode()) == '{"city": "Zürich"}'
    assert _format.payload(b"") == ""


def test_payload_is_truncated_to_the_limit_with_an_ellipsis() -> None:
    raw = b'"' + b"x" * 200 + b'"'
    text = _format.payload(raw)
    assert len(text) == 80
    assert text == '"' + "x" * 78 + "…"
    assert _format.payload(raw, limit=10) == '"xxxxxxxx…'


def test_payload_at_the_limit_is_not_truncated() -> None:
    raw = b'"' + b"x" * 78 + b'"'
    assert _format.payload(raw) == '"' + "x" * 78 + '"'


def test_payload_that_is_not_json_is_shown_as_text() -> None:
    assert _format.payload(b"not json") == "not json"
    assert _format.payload(b"\xff{") == "\ufffd{"


def test_decoded() -> None:
    assert _format.decoded(b'{"a":1}') == {"a": 1}
    assert _format.decoded(b"") is None
    assert _format.decoded(b"oops") == "oops"


def test_status_names() -> None:
    assert _format.status_name(common.RUN_STATUS_SLEEPING) == "sleeping"
    assert _format.status_name(99) == "unknown"
    assert click.unstyle(_format.styled_status(common.RUN_STATUS_FAILED)) == "failed"


# -- runs table ----------------------------------------------------------------------------


def test_runs_table() -> None:
    runs = [
        rs.Run(
            id="01A",
            function_id="f",
            status=common.RUN_STATUS_COMPLETED,
            created_at_ms=T0,
            ended_at_ms=T0 + 1_234,
        ),
        rs.Run(
            id="01BB",
            function_id="onboarding-flow",
            status=common.RUN_STATUS_RUNNING,
            created_at_ms=T0 + 60_000,
        ),
    ]
    lines = click.unstyle(_format.runs_table(runs)).split("\n")
    assert [line.rstrip() for line in lines] == [
        "RUN   FUNCTION         STATUS     CREATED (UTC)            TOOK",
        "01A   f                completed  2023-11-14 22:13:20.000  1.2 s",
        "01BB  onboarding-flow  running    2023-11-14 22:14:20.000",
    ]


def test_runs_table_colours_the_status() -> None:
    runs = [rs.Run(id="r", function_id="f", status=common.RUN_STATUS_FAILED, created_at_ms=T0)]
    assert click.style("failed", fg="red", bold=True) in _format.runs_table(runs)


def test_empty_runs_table_is_just_the_header() -> None:
    assert click.unstyle(_format.runs_table([])).rstrip() == (
        "RUN  FUNCTION  STATUS  CREATED (UTC)  TOOK"
    )


# -- timeline -------------------------------------------------------------------------------


def completed_run() -> rs.GetRunResponse:
    declined = common.ErrorInfo(name="ValueError", message="card declined", stack="...")
    return rs.GetRunResponse(
        run=rs.Run(
            id="01RUN",
            app_id="shop",
            function_id="onboarding-flow",
            status=common.RUN_STATUS_COMPLETED,
            event_id="01EVT",
            created_at_ms=T0,
            started_at_ms=T0 + 50,
            ended_at_ms=T0 + 3_605_000,
            output=b'{"sent":true}',
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        ),
        events=[common.Event(id="01EVT", name="app/user.signup", data=b'{"user_id":1}')],
        steps=[
            rs.StepRecord(
                step_id="h1",
                name="send-welcome-email",
                kind=common.STEP_KIND_RUN,
                status=rs.STEP_STATUS_COMPLETED,
                output=b'"ok"',
                attempts=3,
                started_at_ms=T0 + 100,
                ended_at_ms=T0 + 1_334,
            ),
            rs.StepRecord(
                step_id="h2",
                name="wait-1h",
                kind=common.STEP_KIND_SLEEP,
                status=rs.STEP_STATUS_COMPLETED,
                attempts=1,
                started_at_ms=T0 + 1_400,
                ended_at_ms=T0 + 3_601_400,
            ),
            rs.StepRecord(
                step_id="h3",
                name="charge",
                kind=common.STEP_KIND_RUN,
                status=rs.STEP_STATUS_FAILED,
                error=declined,
                attempts=2,
                started_at_ms=T0 + 3_602_000,
                ended_at_ms=T0 + 3_602_400,
            ),
        ],
        history=[
            rs.HistoryEntry(ts_ms=T0 + 50, kind=rs.HISTORY_KIND_EXECUTION_STARTED),
            rs.HistoryEntry(
                ts_ms=T0 + 500,
                kind=rs.HISTORY_KIND_STEP_FAILED,
                step_name="send-welcome-email",
                attempt=1,
                error=common.ErrorInfo(name="ConnectionError", message="timeout"),
                until_ms=T0 + 10_500,
            ),
            rs.HistoryEntry(
                ts_ms=T0 + 1_400,
                kind=rs.HISTORY_KIND_SLEEP_STARTED,
                step_id="h2",
                step_name="wait-1h",
                until_ms=T0 + 3_601_400,
            ),
            rs.HistoryEntry(
                ts_ms=T0 + 3_601_400,
                kind=rs.HISTORY_KIND_SLEEP_ENDED,
                step_id="h2",
                step_name="wait-1h",
            ),
            rs.HistoryEntry(
                ts_ms=T0 + 3_602_500,
                kind=rs.HISTORY_KIND_STEP_FAILED,
                step_name="charge",
                attempt=2,
                error=declined,
            ),
            rs.HistoryEntry(ts_ms=T0 + 3_605_000, kind=rs.HISTORY_KIND_RUN_COMPLETED),
        ],
    )


def test_timeline_of_a_completed_run() -> None:
    text = click.unstyle(_format.timeline(completed_run()))
    assert text.split("\n") == [
        "Run 01RUN  onboarding-flow (app shop)  completed",
        '  event    01EVT  app/user.signup  {"user_id": 1}',
        "  created  2023-11-14 22:13:20.000   ended 2023-11-14 23:13:25.000  took 1 h 5 s",
        "  trace    4bf92f3577b34da6a3ce929d0e0e4736",
        '  output   {"sent": true}',
        "",
        "      +50 ms  ▶ execution started",
        '     +100 ms  ✓ send-welcome-email  1.2 s  3 attempts  → "ok"',
        "     +500 ms  ✗ send-welcome-email  attempt 1 failed: ConnectionError: timeout; "
        "retry at 2023-11-14 22:13:30.500",
        "      +1.4 s  ⏸ sleep wait-1h  1 h",
        "    +1 h 2 s  ✗ charge  failed for good  2 attempts: ValueError: card declined",
        "    +1 h 2 s  ✗ charge  attempt 2 failed: ValueError: card declined; no retries left",
        "    +1 h 5 s  ■ completed",
    ]


def test_timeline_of_a_failed_run_in_progress_of_retries() -> None:
    response = rs.GetRunResponse(
        run=rs.Run(
            id="01RUN",
            app_id="shop",
            function_id="sync",
            status=common.RUN_STATUS_FAILED,
            created_at_ms=T0,
            ended_at_ms=T0 + 61_000,
            error=common.ErrorInfo(name="StepError", message="step 'push' failed"),
            replay_of="01OLD",
        ),
        steps=[
            rs.StepRecord(
                name="push",
                kind=common.STEP_KIND_RUN,
                status=rs.STEP_STATUS_RETRYING,
                attempts=1,
                started_at_ms=T0 + 1_000,
            ),
            rs.StepRecord(
                name="wait-1d",
                kind=common.STEP_KIND_SLEEP,
                status=rs.STEP_STATUS_PENDING,
                started_at_ms=T0 + 2_000,
                ended_at_ms=T0 + 86_402_000,
            ),
        ],
        history=[
            rs.HistoryEntry(ts_ms=T0, kind=rs.HISTORY_KIND_EXECUTION_STARTED, attempt=1),
            rs.HistoryEntry(
                ts_ms=T0 + 30_000,
                kind=rs.HISTORY_KIND_RUN_RETRY_SCHEDULED,
                attempt=1,
                error=common.ErrorInfo(name="KeyError", message="'plan'"),
                until_ms=T0 + 40_000,
            ),
            rs.HistoryEntry(
                ts_ms=T0 + 60_000,
                kind=rs.HISTORY_KIND_EXECUTION_LOST,
                message="worker w-1 missed heartbeats",
            ),
            rs.HistoryEntry(
                ts_ms=T0 + 61_000,
                kind=rs.HISTORY_KIND_RUN_FAILED,
                error=common.ErrorInfo(name="StepError", message="step 'push' failed"),
            ),
        ],
    )
    text = click.unstyle(_format.timeline(response))
    assert text.split("\n") == [
        "Run 01RUN  sync (app shop)  failed",
        "  created  2023-11-14 22:13:20.000   ended 2023-11-14 22:14:21.000  took 1 m 1 s",
        "  replays  01OLD",
        "  error    StepError: step 'push' failed",
        "",
        "       +0 ms  ▶ execution started (run attempt 2)",
        "      +1.0 s  ↻ push  retrying after 1 failed attempt(s)",
        "      +2.0 s  ⏸ sleep wait-1d  until 2023-11-15 22:13:22.000",
        "     +30.0 s  ✗ function attempt 1 failed: KeyError: 'plan'; "
        "retry at 2023-11-14 22:14:00.000",
        "        +1 m  ⚠ execution lost: worker w-1 missed heartbeats",
        "    +1 m 1 s  ■ failed: StepError: step 'push' failed",
    ]


def test_timeline_of_a_run_that_has_not_started() -> None:
    response = rs.GetRunResponse(
        run=rs.Run(
            id="01RUN",
            app_id="shop",
            function_id="f",
            status=common.RUN_STATUS_QUEUED,
            created_at_ms=T0,
        )
    )
    assert click.unstyle(_format.timeline(response)).split("\n") == [
        "Run 01RUN  f (app shop)  queued",
        "  created  2023-11-14 22:13:20.000   ended -",
        "",
        "  (no steps yet)",
    ]


def test_timeline_of_cancelled_replayed_and_diverged_runs() -> None:
    response = rs.GetRunResponse(
        run=rs.Run(
            id="r",
            app_id="a",
            function_id="f",
            status=common.RUN_STATUS_CANCELLED,
            created_at_ms=T0,
            ended_at_ms=T0 + 3_000,
        ),
        history=[
            rs.HistoryEntry(
                ts_ms=T0 + 1_000, kind=rs.HISTORY_KIND_RUN_REPLAYED, message="replay of r0"
            ),
            rs.HistoryEntry(
                ts_ms=T0 + 2_000,
                kind=rs.HISTORY_KIND_NON_DETERMINISM,
                message="1 memoized step(s) were never reached",
            ),
            rs.HistoryEntry(
                ts_ms=T0 + 3_000, kind=rs.HISTORY_KIND_RUN_CANCELLED, message="by an operator"
            ),
        ],
    )
    lines = click.unstyle(_format.timeline(response)).split("\n")
    assert lines[-3:] == [
        "      +1.0 s  ↺ replay of r0",
        "      +2.0 s  ⚠ non-determinism: 1 memoized step(s) were never reached",
        "      +3.0 s  ■ cancelled: by an operator",
    ]


def test_an_execution_start_comes_before_its_steps_in_the_same_millisecond() -> None:
    response = rs.GetRunResponse(
        run=rs.Run(id="r", app_id="a", function_id="f", created_at_ms=T0),
        steps=[
            rs.StepRecord(
                name="first",
                kind=common.STEP_KIND_RUN,
                status=rs.STEP_STATUS_COMPLETED,
                output=b"1",
                started_at_ms=T0 + 10,
                ended_at_ms=T0 + 10,
            ),
            rs.StepRecord(
                name="second",
                kind=common.STEP_KIND_RUN,
                status=rs.STEP_STATUS_COMPLETED,
                output=b"2",
                started_at_ms=T0 + 10,
                ended_at_ms=T0 + 10,
            ),
        ],
        history=[rs.HistoryEntry(ts_ms=T0 + 10, kind=rs.HISTORY_KIND_EXECUTION_STARTED)],
    )
    lines = click.unstyle(_format.timeline(response)).split("\n")
    assert lines[-3:] == [
        "      +10 ms  ▶ execution started",
        "      +10 ms  ✓ first  0 ms  → 1",
        "      +10 ms  ✓ second  0 ms  → 2",
    ]


def test_a_sleep_the_run_never_woke_from_stays_on_the_timeline() -> None:
    response = rs.GetRunResponse(
        run=rs.Run(id="r", app_id="a", function_id="f", created_at_ms=T0),
        history=[
            rs.HistoryEntry(
                ts_ms=T0 + 5,
                kind=rs.HISTORY_KIND_SLEEP_STARTED,
                step_id="h1",
                step_name="nap",
                until_ms=T0 + 3_600_005,
            ),
            rs.HistoryEntry(
                ts_ms=T0 + 90, kind=rs.HISTORY_KIND_RUN_CANCELLED, message="customer left"
            ),
        ],
    )
    lines = click.unstyle(_format.timeline(response)).split("\n")
    assert lines[-2:] == [
        "       +5 ms  ⏸ sleep nap  until 2023-11-14 23:13:20.005, never reached",
        "      +90 ms  ■ cancelled: customer left",
    ]
