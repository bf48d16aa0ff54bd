"""``tether functions pause|resume``, and what ``tether functions list`` shows of
paused functions and cron schedules."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from tests.e2e.cli import tether
from tests.e2e.conftest import Plane
from tests.e2e.test_functions_and_events import table_rows
from tether.v1 import common_pb2

APP = "cli-tests"


def listed(plane: Plane, function_id: str) -> dict[str, Any]:
    """The function as ``tether functions list --json`` shows it."""
    items = tether("functions", "list", "--json", address=plane.address).json()
    return next(f for f in items if f["id"] == function_id)


def table_row(plane: Plane, function_id: str, env: dict[str, str] | None = None) -> list[str]:
    """The function's row of the ``tether functions list`` table, by column."""
    result = tether("functions", "list", "--app", APP, address=plane.address, env=env).ok()
    lines = result.stdout.splitlines()
    header = lines[0]
    starts = [header.index(name) for name in table_rows(header)[0]]
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        if cells[1] == function_id:
            return cells
    raise AssertionError(f"no row for {function_id}:\n{result}")


def test_pause_holds_new_runs_until_resume_releases_them(plane: Plane) -> None:
    paused = tether("functions", "pause", "pausable", "--app", APP, address=plane.address).ok()

    assert paused.stdout.splitlines() == [
        f"paused {APP}/pausable: its runs start no execution; new events queue runs that are "
        "held until it is resumed",
        f"resume it with: tether functions resume pausable --app {APP}",
    ]
    assert listed(plane, "pausable")["paused"] == "hold"
    assert table_row(plane, "pausable")[5] == "paused (hold)"

    sent = tether("send", "e2e/pausable.requested", "--json", address=plane.address).json()
    [run_id] = sent["run_ids"]
    # A run of another function sent after it completes: the dispatcher has
    # had its chances, and passed the paused one over.
    other = tether("send", "e2e/steps.requested", "--json", address=plane.address).json()
    plane.finished(other["run_ids"][0])
    assert plane.admin.status(run_id) == common_pb2.RUN_STATUS_QUEUED
    assert plane.ledger(run_id) == []

    resumed = tether("functions", "resume", "pausable", "--app", APP, address=plane.address).ok()

    assert resumed.stdout == f"resumed {APP}/pausable: 1 held run released\n"
    plane.finished(run_id)
    assert plane.admin.output(run_id) == {"work": "worked"}
    assert plane.ledger(run_id) == [["work"]]
    assert listed(plane, "pausable")["paused"] is None
    assert table_row(plane, "pausable")[5] == "active"


def test_pause_with_skip_is_recorded_and_shown(plane: Plane) -> None:
    paused = tether(
        "functions", "pause", "sync-account", "--app", APP, "--skip", address=plane.address
    ).ok()

    assert paused.stdout.splitlines()[0] == (
        f"paused {APP}/sync-account: its runs start no execution; new events start nothing "
        "and are recorded as skipped"
    )
    assert listed(plane, "sync-account")["paused"] == "skip"
    assert table_row(plane, "sync-account")[5] == "paused (skip)"

    resumed = tether("functions", "resume", "sync-account", "--app", APP, address=plane.address)

    assert resumed.ok().stdout == f"resumed {APP}/sync-account: 0 held runs released\n"
    assert listed(plane, "sync-account")["paused"] is None


def test_list_shows_the_next_cron_tick(plane: Plane) -> None:
    now = dt.datetime.now(dt.UTC)
    # new-year fires at 00:00 UTC on January 1st.
    tick = dt.datetime(now.year + 1, 1, 1, tzinfo=dt.UTC)

    [trigger] = listed(plane, "new-year")["triggers"]

    assert trigger == {
        "cron": "0 0 1 1 *",
        "timezone": "",
        "catch_up": "none",
        "next_fire": tick.isoformat(timespec="milliseconds"),
    }
    # In the table: the tick in the local time zone, and how far away it is.
    cells = table_row(plane, "new-year", env={"TZ": "Asia/Tokyo"})
    local = tick.astimezone(dt.timezone(dt.timedelta(hours=9))).strftime("%Y-%m-%d %H:%M")
    assert re.fullmatch(rf"cron 0 0 1 1 \* → {local} JST \(in \d+[dhm]( \d+[hms])?\)", cells[2]), (
        cells
    )


def test_pausing_or_resuming_an_unknown_function_fails(plane: Plane) -> None:
    for command in ("pause", "resume"):
        result = tether(
            "functions", command, "no-such-function", "--app", APP, address=plane.address
        )

        assert result.code == 1, result
        assert result.stdout == ""
        assert result.error_lines == [
            f"Error: function 'no-such-function' of app '{APP}' not found (NOT_FOUND)"
        ], result


def test_pause_needs_the_app(plane: Plane) -> None:
    result = tether("functions", "pause", "pausable", address=plane.address)

    assert result.code == 2, result
    assert result.error_lines[-1] == "Error: Missing option '--app'."
