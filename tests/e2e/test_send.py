"""``tether send NAME --data JSON``."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.e2e.cli import tether
from tests.e2e.conftest import Plane
from tests.support.waiting import wait_until
from tether.v1 import common_pb2


def test_send_prints_the_event_id_and_the_run_it_started(plane: Plane) -> None:
    result = tether("send", "e2e/steps.requested", "--data", '{"n": 4}', address=plane.address).ok()

    lines = result.stdout.splitlines()
    assert lines[0].startswith("sent event "), result
    event_id = lines[0].removeprefix("sent event ").strip()
    assert event_id
    run_ids = result.started_runs()
    assert len(run_ids) == 1, result
    assert f"tether runs watch {run_ids[0]}" in result.stdout
    assert result.stderr == ""
    plane.finished(run_ids[0])
    run = plane.admin.get(run_ids[0]).run
    assert run.event_id == event_id
    assert run.function_id == "three-steps"
    assert plane.admin.output(run_ids[0]) == {"n": 4, "doubled": 8, "stored": "stored 8"}


def test_send_json_output_parses(plane: Plane) -> None:
    data = {"n": 2, "big": 2**60 + 1, "text": "zoë"}
    value = tether(
        "send", "e2e/steps.requested", "--data", json.dumps(data), "--json", address=plane.address
    ).json()

    assert set(value) == {
        "event_id",
        "duplicate",
        "run_ids",
        "skipped",
        "resumed_run_ids",
        "cancelled_run_ids",
    }
    assert value["skipped"] == []
    assert isinstance(value["event_id"], str)
    assert value["event_id"]
    assert value["duplicate"] is False
    assert len(value["run_ids"]) == 1
    plane.finished(value["run_ids"][0])
    assert plane.admin.output(value["run_ids"][0])["doubled"] == 4
    stored = plane.admin.get(value["run_ids"][0]).events[0]
    assert stored.id == value["event_id"]
    assert json.loads(stored.data) == data


def test_the_same_id_twice_is_reported_as_a_duplicate(plane: Plane) -> None:
    event_id = f"signup-{uuid.uuid4().hex}"
    first = tether(
        "send", "e2e/steps.requested", "--id", event_id, "--json", address=plane.address
    ).json()
    assert first["event_id"] == event_id
    assert first["duplicate"] is False
    assert len(first["run_ids"]) == 1

    again = tether(
        "send", "e2e/steps.requested", "--id", event_id, "--json", address=plane.address
    ).json()
    assert again == {
        "event_id": event_id,
        "duplicate": True,
        "run_ids": [],
        "skipped": [],
        "resumed_run_ids": [],
        "cancelled_run_ids": [],
    }

    text = tether("send", "e2e/steps.requested", "--id", event_id, address=plane.address).ok()
    assert text.stdout.strip() == (
        f"event {event_id} was already received in the last 24 hours; nothing started"
    )
    assert plane.events_named("e2e/steps.requested").count(event_id) == 1


def test_an_event_no_function_listens_to_says_so(plane: Plane) -> None:
    # The address comes from TETHER_ADDRESS this time.
    result = tether("send", "e2e/nobody.listens", env={"TETHER_ADDRESS": plane.address}).ok()

    assert result.stdout.startswith("sent event ")
    assert result.started_runs() == []
    assert "no function is triggered by e2e/nobody.listens" in result.stdout
    event_id = result.stdout.splitlines()[0].removeprefix("sent event ").strip()
    assert event_id in plane.events_named("e2e/nobody.listens")


def test_send_says_which_waiting_run_it_resumed(plane: Plane) -> None:
    order = f"order-{uuid.uuid4().hex[:8]}"
    (run_id,) = plane.admin.send("e2e/order.placed", {"order_id": order})
    wait_until(
        lambda: plane.admin.status(run_id) == common_pb2.RUN_STATUS_WAITING,
        what=f"run {run_id} to wait",
    )
    other = json.dumps({"order_id": "someone-else", "by": "bob"})
    mine = json.dumps({"order_id": order, "by": "ann"})

    missed = tether("send", "e2e/order.approved", "--data", other, address=plane.address).ok()
    resumed = tether("send", "e2e/order.approved", "--data", mine, address=plane.address).ok()

    assert "resumed" not in missed.stdout
    assert (
        "no function is triggered by e2e/order.approved and no waiting run matched it"
        in missed.stdout
    )
    assert resumed.stdout.splitlines()[1:] == [f"resumed waiting run {run_id}"], resumed
    plane.finished(run_id)
    assert plane.admin.output(run_id) == {"approved_by": "ann"}


@pytest.mark.parametrize(
    ("option", "value", "complaint"),
    [
        ("--data", '{"n": 1', "not valid JSON"),
        ("--data", "[1, 2]", "must be a JSON object"),
        ("--data", "42", "must be a JSON object"),
        ("--user", '"me"', "must be a JSON object"),
    ],
)
def test_data_that_is_not_a_json_object_is_refused_and_nothing_is_sent(
    plane: Plane, option: str, value: str, complaint: str
) -> None:
    name = f"e2e/refused.{uuid.uuid4().hex[:8]}"
    result = tether("send", name, option, value, address=plane.address)

    assert result.code == 2, result
    assert result.stdout == ""
    error = result.error_lines[-1]
    assert error.startswith(f"Error: Invalid value for {option}: {complaint}"), result
    assert plane.events_named(name) == []


def test_an_invalid_event_name_is_refused_by_the_control_plane(plane: Plane) -> None:
    result = tether("send", "has space", address=plane.address)

    assert result.code == 1, result
    assert result.stdout == ""
    assert result.error_lines == [
        "Error: event 0 ('has space'): the name 'has space' contains whitespace or "
        "control characters (INVALID_ARGUMENT)"
    ]
    assert plane.events_named("has space") == []


def test_send_file_sends_every_event_in_batches_with_progress(plane: Plane, tmp_path: Path) -> None:
    count = 1_200  # three batches
    path = tmp_path / "events.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"name": "e2e/steps.requested", "data": {"n": i}, "id": f"bulk-{i}"})
            for i in range(count)
        )
        + "\n"
    )
    result = tether("send", "--file", str(path), address=plane.address).ok()
    assert result.stdout.strip() == (
        f"sent {count:,} event(s): {count:,} run(s) started, 0 skipped, 0 duplicate(s)"
    )
    assert result.stderr.splitlines() == [
        "sending events: 500/1,200",
        "sending events: 1,000/1,200",
        "sending events: 1,200/1,200",
    ]

    again = tether("send", "--file", str(path), "--json", address=plane.address).json()
    assert len(again) == count
    assert all(r["duplicate"] for r in again)


def test_send_file_names_the_bad_line(plane: Plane, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    name = f"e2e/bulk-{uuid.uuid4().hex[:8]}"
    path.write_text(
        json.dumps({"name": name, "data": {}}) + "\n" + json.dumps({"name": name, "data": [1]})
    )
    result = tether("send", "--file", str(path), address=plane.address)
    assert result.code == 2
    assert 'line 2: "data" must be a JSON object' in result.stderr
    listed = tether("events", "list", "--name", name, "--json", address=plane.address).json()
    assert listed == [], "nothing of a file with a bad line is sent"
