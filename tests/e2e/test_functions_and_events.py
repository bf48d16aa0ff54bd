"""``tether functions list`` and ``tether events list|show``."""

from __future__ import annotations

import json
import re
import uuid

from tests.e2e.cli import tether
from tests.e2e.conftest import APP_FUNCTIONS, APP_TARGET, Plane
from tests.support import ledger
from tests.support.processes import WorkerProcess
from tests.support.waiting import wait_until


def table_rows(text: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]


def worker_counts(plane: Plane) -> dict[str, int]:
    return {f.definition.id: f.connected_workers for f in plane.admin.functions()}


# -- functions ---------------------------------------------------------------------------


def test_functions_list_prints_a_table(plane: Plane) -> None:
    result = tether("functions", "list", address=plane.address).ok()

    rows = table_rows(result.stdout)
    assert rows[0] == [
        "APP",
        "FUNCTION",
        "TRIGGERS",
        "RETRIES",
        "WORKERS",
        "STATE",
        "FLOW CONTROL",
    ]
    by_id = {row[1]: row for row in rows[1:]}
    assert set(by_id) == set(APP_FUNCTIONS)
    assert by_id["three-steps"] == [
        "cli-tests",
        "three-steps",
        "e2e/steps.requested",
        "4",
        "1",
        "active",
    ]
    assert by_id["gated-charge"] == [
        "cli-tests",
        "gated-charge",
        "e2e/charge.requested",
        "0",
        "1",
        "active",
    ]
    assert by_id["sleeper"][2] == "e2e/nap.requested"
    assert by_id["sync-account"][2:] == [
        "e2e/sync.requested",
        "4",
        "1",
        "active",
        "concurrency 2; concurrency 1 per event.data.account_id; throttle 10/1m burst 2; "
        "singleton (skip) per event.data.account_id",
    ]


def test_functions_list_json_has_the_flow_control_options(plane: Plane) -> None:
    items = tether("functions", "list", "--json", address=plane.address).json()
    by_id = {f["id"]: f for f in items}

    sync = by_id["sync-account"]
    assert sync["concurrency"] == [
        {"limit": 2, "key": None, "scope": "fn"},
        {"limit": 1, "key": "event.data.account_id", "scope": "fn"},
    ]
    assert sync["throttle"] == {"limit": 10, "period_ms": 60_000, "burst": 2, "key": None}
    assert sync["singleton"] == {"key": "event.data.account_id", "mode": "skip"}
    assert sync["rate_limit"] is sync["debounce"] is sync["priority"] is sync["batching"] is None
    assert sync["paused"] is None
    plain = by_id["three-steps"]
    assert plain["concurrency"] == []
    assert plain["throttle"] is plain["singleton"] is None


def test_functions_list_json_counts_connected_workers(plane: Plane) -> None:
    before = tether("functions", "list", "--json", address=plane.address).json()
    assert {f["id"]: f["connected_workers"] for f in before} == dict.fromkeys(APP_FUNCTIONS, 1)
    flaky = next(f for f in before if f["id"] == "flaky-then-fine")
    assert flaky["app_id"] == "cli-tests"
    assert flaky["name"] == "flaky-then-fine"
    assert flaky["retries"] == 4
    assert flaky["triggers"] == [{"event": "e2e/flaky.requested", "if": ""}]
    assert flaky["registered_at"]

    second = WorkerProcess(
        APP_TARGET,
        plane.address,
        plane.ledger_path.parent,
        name="second-worker",
        env={ledger.LEDGER_VARIABLE: str(plane.ledger_path)},
    ).start()
    try:
        wait_until(
            lambda: set(worker_counts(plane).values()) == {2}, what="a second worker to connect"
        )
        during = tether("functions", "list", "--json", address=plane.address).json()
        assert {f["id"]: f["connected_workers"] for f in during} == dict.fromkeys(APP_FUNCTIONS, 2)
        table = table_rows(tether("functions", "list", address=plane.address).ok().stdout)
        assert {row[4] for row in table[1:]} == {"2"}
    finally:
        assert second.terminate(timeout=15) == 0, second.logs()

    wait_until(lambda: set(worker_counts(plane).values()) == {1}, what="the second worker to leave")
    after = tether("functions", "list", "--json", address=plane.address).json()
    assert {f["id"]: f["connected_workers"] for f in after} == dict.fromkeys(APP_FUNCTIONS, 1)


def test_functions_list_filters_by_app(plane: Plane) -> None:
    mine = tether("functions", "list", "--app", "cli-tests", "--json", address=plane.address)
    assert sorted(f["id"] for f in mine.json()) == sorted(APP_FUNCTIONS)

    other = tether("functions", "list", "--app", "another-app", "--json", address=plane.address)
    assert other.json() == []


# -- events -----------------------------------------------------------------------------


def test_events_list_and_show(plane: Plane) -> None:
    marker = uuid.uuid4().hex
    sent = [
        tether(
            "send",
            "e2e/steps.requested",
            "--data",
            json.dumps({"n": n, "marker": marker}),
            "--user",
            '{"id": "u-1"}',
            "--json",
            address=plane.address,
        ).json()
        for n in (1, 2)
    ]
    for value in sent:
        plane.finished(value["run_ids"][0])
    newest, older = sent[1], sent[0]

    listed = tether(
        "events", "list", "--name", "e2e/steps.requested", "--limit", "2", address=plane.address
    ).ok()
    rows = table_rows(listed.stdout)
    assert rows[0] == ["EVENT", "NAME", "RECEIVED (UTC)", "DATA"]
    assert [row[0] for row in rows[1:]] == [newest["event_id"], older["event_id"]]
    assert rows[1][1] == "e2e/steps.requested"
    assert rows[1][3] == f'{{"n": 2, "marker": "{marker}"}}'

    as_json = tether(
        "events",
        "list",
        "--name",
        "e2e/steps.requested",
        "--limit",
        "1",
        "--json",
        address=plane.address,
    ).json()
    (event,) = as_json
    assert event["id"] == newest["event_id"]
    assert event["name"] == "e2e/steps.requested"
    assert event["data"] == {"n": 2, "marker": marker}
    assert event["user"] == {"id": "u-1"}
    assert event["received_at"]

    shown = tether("events", "show", newest["event_id"], address=plane.address).ok().stdout
    lines = shown.splitlines()
    assert lines[0] == f"Event {newest['event_id']}  e2e/steps.requested"
    assert lines[2] == f'  data     {{"n": 2, "marker": "{marker}"}}'
    run_rows = table_rows(shown.split("\n\n", 1)[1])
    assert run_rows[0][0] == "RUN"
    assert [row[:3] for row in run_rows[1:]] == [[newest["run_ids"][0], "three-steps", "completed"]]

    detail = tether("events", "show", older["event_id"], "--json", address=plane.address).json()
    assert detail["id"] == older["event_id"]
    assert detail["data"] == {"n": 1, "marker": marker}
    assert [(r["id"], r["status"]) for r in detail["runs"]] == [(older["run_ids"][0], "completed")]
    assert detail["runs"][0]["output"] == {"n": 1, "doubled": 2, "stored": "stored 2"}


def test_events_show_of_an_event_that_started_nothing(plane: Plane) -> None:
    value = tether("send", "e2e/nobody.listens", "--json", address=plane.address).json()

    detail = tether("events", "show", value["event_id"], "--json", address=plane.address).json()

    assert detail["name"] == "e2e/nobody.listens"
    assert detail["runs"] == []


def test_events_show_of_an_unknown_event_is_not_found(plane: Plane) -> None:
    result = tether("events", "show", "no-such-event", address=plane.address)

    assert result.code == 1, result
    assert result.stdout == ""
    assert result.error_lines == ["Error: event 'no-such-event' not found (NOT_FOUND)"]
