"""How the CLI renders durations, payloads, run tables and a run's timeline."""

from __future__ import annotations

import datetime as dt
import zoneinfo

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


def test_a_table_header_has_no_trailing_padding() -> None:
    text = click.unstyle(_format.table(["A", "LONG"], [["x", "a much longer cell"]]))
    assert text.split("\n") == ["A  LONG", "x  a much longer cell"]


# -- functions ---------------------------------------------------------------------------------

PARIS = zoneinfo.ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0s"),
        (500, "500ms"),
        (1_000, "1s"),
        (60_000, "1m"),
        (5_400_000, "1h30m"),
        (86_400_000, "1d"),
        (7 * 86_400_000, "7d"),
        (90_061_001, "1d1h1m1s1ms"),
    ],
)
def test_period(ms: int, text: str) -> None:
    assert _format.period(ms) == text


@pytest.mark.parametrize(
    ("delta_ms", "text"),
    [
        (5 * 3_600_000 + 12 * 60_000 + 59_999, "in 5h 12m"),
        (42_500, "in 42s"),
        (3 * 86_400_000 + 3_600_000 + 60_000, "in 3d 1h"),
        (400, "now"),
        (-400, "now"),
        (-(3 * 60_000 + 10_000), "3m 10s ago"),
    ],
)
def test_relative(delta_ms: int, text: str) -> None:
    assert _format.relative(T0 + delta_ms, T0) == text


def test_local_time() -> None:
    assert _format.local_time(T0, dt.UTC) == "2023-11-14 22:13 UTC"
    assert _format.local_time(T0, PARIS) == "2023-11-14 23:13 CET"
    # Without a zone: the machine's local time, with its abbreviation.
    local = dt.datetime.fromtimestamp(T0 / 1000).astimezone()
    assert _format.local_time(T0) == local.strftime("%Y-%m-%d %H:%M %Z").rstrip()


def flow_definition() -> common.FunctionDefinition:
    return common.FunctionDefinition(
        id="sync-account",
        name="sync-account",
        retries=2,
        triggers=[
            common.Trigger(
                event=common.EventTrigger(name="app/sync", if_expression="event.data.full")
            ),
            common.Trigger(
                cron=common.CronTrigger(
                    schedule="0 9 * * *",
                    timezone="Europe/Paris",
                    catch_up=common.CRON_CATCH_UP_ALL,
                )
            ),
            common.Trigger(cron=common.CronTrigger(schedule="0 0 1 1 *")),
        ],
        concurrency=[
            common.Concurrency(limit=5),
            common.Concurrency(
                limit=1, key="event.data.account", scope=common.CONCURRENCY_SCOPE_APP
            ),
        ],
        throttle=common.Throttle(limit=10, period_ms=60_000, burst=3, key="event.data.user"),
        rate_limit=common.RateLimit(limit=100, period_ms=3_600_000),
        debounce=common.Debounce(period_ms=30_000, timeout_ms=300_000, key="event.data.doc"),
        priority=common.Priority(run="event.data.vip ? 60 : 0"),
        batching=common.Batching(max_size=50, timeout_ms=5000, key="event.data.tenant"),
        singleton=common.Singleton(key="event.data.user", mode=common.SINGLETON_MODE_CANCEL),
    )


NEXT_FIRE = T0 + 5 * 3_600_000 + 12 * 60_000


def paused_info() -> rs.FunctionInfo:
    return rs.FunctionInfo(
        app_id="shop",
        definition=flow_definition(),
        connected_workers=0,
        registered_at_ms=T0,
        updated_at_ms=T0 + 1000,
        paused=rs.PAUSE_MODE_HOLD,
        next_fire_ms=[NEXT_FIRE, 0],
    )


def test_flow_control_text() -> None:
    assert _format.flow_control_text(flow_definition()) == (
        "concurrency 5; concurrency 1 per event.data.account (app); "
        "throttle 10/1m burst 3 per event.data.user; rate limit 100/1h; "
        "debounce 30s max 5m per event.data.doc; priority event.data.vip ? 60 : 0; "
        "batch 50 or 5s per event.data.tenant; singleton (cancel) per event.data.user"
    )
    assert _format.flow_control_text(common.FunctionDefinition(id="plain")) == ""
    assert (
        _format.flow_control_text(
            common.FunctionDefinition(
                throttle=common.Throttle(limit=1, period_ms=1000),
                singleton=common.Singleton(),
            )
        )
        == "throttle 1/1s; singleton (skip)"
    )


def test_triggers_text_shows_the_next_tick_of_each_cron_trigger() -> None:
    assert _format.triggers_text(paused_info(), T0, PARIS) == (
        "app/sync if event.data.full, "
        "cron 0 9 * * * Europe/Paris → 2023-11-15 04:25 CET (in 5h 12m), "
        "cron 0 0 1 1 *"
    )


def test_pause_state() -> None:
    assert _format.pause_state(rs.PAUSE_MODE_UNSPECIFIED) == "active"
    assert _format.pause_state(rs.PAUSE_MODE_HOLD) == click.style("paused (hold)", fg="yellow")
    assert click.unstyle(_format.pause_state(rs.PAUSE_MODE_SKIP)) == "paused (skip)"


def test_functions_table() -> None:
    plain = rs.FunctionInfo(
        app_id="shop",
        definition=common.FunctionDefinition(
            id="welcome",
            retries=4,
            triggers=[common.Trigger(event=common.EventTrigger(name="app/user.signup"))],
        ),
        connected_workers=2,
    )
    lines = click.unstyle(_format.functions_table([plain, paused_info()], T0, dt.UTC)).split("\n")
    triggers = (
        "app/sync if event.data.full, "
        "cron 0 9 * * * Europe/Paris → 2023-11-15 03:25 UTC (in 5h 12m), cron 0 0 1 1 *"
    )
    width = len(triggers)
    assert lines == [
        f"APP   FUNCTION      {'TRIGGERS':<{width}}  RETRIES  WORKERS  STATE          FLOW CONTROL",
        f"shop  welcome       {'app/user.signup':<{width}}  4        2        active",
        f"shop  sync-account  {triggers}  2        0        paused (hold)  "
        + _format.flow_control_text(flow_definition()),
    ]


def test_function_json() -> None:
    assert _format.function_json(paused_info()) == {
        "app_id": "shop",
        "id": "sync-account",
        "name": "sync-account",
        "triggers": [
            {"event": "app/sync", "if": "event.data.full"},
            {
                "cron": "0 9 * * *",
                "timezone": "Europe/Paris",
                "catch_up": "all",
                "next_fire": "2023-11-15T03:25:20.000+00:00",
            },
            {"cron": "0 0 1 1 *", "timezone": "", "catch_up": "one", "next_fire": None},
        ],
        "retries": 2,
        "connected_workers": 0,
        "registered_at": "2023-11-14T22:13:20.000+00:00",
        "updated_at": "2023-11-14T22:13:21.000+00:00",
        "paused": "hold",
        "concurrency": [
            {"limit": 5, "key": None, "scope": "fn"},
            {"limit": 1, "key": "event.data.account", "scope": "app"},
        ],
        "throttle": {"limit": 10, "period_ms": 60_000, "burst": 3, "key": "event.data.user"},
        "rate_limit": {"limit": 100, "period_ms": 3_600_000, "key": None},
        "debounce": {"period_ms": 30_000, "timeout_ms": 300_000, "key": "event.data.doc"},
        "priority": "event.data.vip ? 60 : 0",
        "batching": {"max_size": 50, "timeout_ms": 5000, "key": "event.data.tenant"},
        "singleton": {"key": "event.data.user", "mode": "cancel"},
    }


def test_function_json_of_a_plain_running_function() -> None:
    value = _format.function_json(
        rs.FunctionInfo(app_id="shop", definition=common.FunctionDefinition(id="welcome"))
    )
    assert value["paused"] is None
    assert value["concurrency"] == []
    assert all(
        value[name] is None
        for name in ("throttle", "rate_limit", "debounce", "priority", "batching", "singleton")
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
