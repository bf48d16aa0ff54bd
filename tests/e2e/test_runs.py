"""``tether runs list|show|cancel|replay|watch``."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from controlplane.cli import _format
from tests.e2e.cli import tether
from tests.e2e.conftest import Plane
from tests.support.waiting import wait_until
from tether.v1 import common_pb2
from tether.v1 import run_service_pb2 as rs

CHARGE_ERROR = "NonRetriableError: card declined: the gate is closed"


def when(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def start(plane: Plane, name: str, data: dict[str, Any] | None = None) -> str:
    (run_id,) = plane.admin.send(name, data)
    return run_id


def finished_run(plane: Plane, name: str, data: dict[str, Any] | None = None) -> str:
    run_id = start(plane, name, data)
    plane.finished(run_id)
    return run_id


def sleeping_run(plane: Plane, seconds: float = 3600) -> str:
    """A run of ``sleeper``, once it sleeps (for an hour unless told)."""
    run_id = start(plane, "e2e/nap.requested", {"seconds": seconds})
    wait_until(
        lambda: plane.admin.status(run_id) == common_pb2.RUN_STATUS_SLEEPING,
        what=f"run {run_id} to sleep",
    )
    return run_id


def failed_charge(plane: Plane, gate: Path) -> str:
    run_id = finished_run(plane, "e2e/charge.requested", {"gate": str(gate)})
    assert plane.admin.status(run_id) == common_pb2.RUN_STATUS_FAILED
    return run_id


def show(plane: Plane, run_id: str) -> dict[str, Any]:
    value: dict[str, Any] = tether("runs", "show", run_id, "--json", address=plane.address).json()
    return value


def table_rows(text: str) -> list[list[str]]:
    """The cells of each row of a printed table (header first)."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]


# -- list -------------------------------------------------------------------------------


def test_runs_list_prints_a_table_newest_first(plane: Plane) -> None:
    run_ids = [finished_run(plane, "e2e/steps.requested", {"n": n}) for n in range(3)]

    result = tether(
        "runs", "list", "--function", "three-steps", "--limit", "3", address=plane.address
    ).ok()

    rows = table_rows(result.stdout.split("\n\nmore:")[0])
    assert rows[0] == ["RUN", "FUNCTION", "STATUS", "CREATED (UTC)", "TOOK"]
    assert [row[0] for row in rows[1:]] == run_ids[::-1]
    for row in rows[1:]:
        assert row[1:3] == ["three-steps", "completed"], result
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", row[3]), row
        assert re.fullmatch(r"\d+ ms|\d+\.\d s", row[4]), row


def test_runs_list_filters_by_function_and_status(plane: Plane, tmp_path: Path) -> None:
    failed = failed_charge(plane, tmp_path / "closed-gate")
    completed = finished_run(plane, "e2e/steps.requested")

    only_failed = tether(
        "runs", "list", "--status", "failed", "--limit", "1000", "--json", address=plane.address
    ).json()["runs"]
    assert failed in [r["id"] for r in only_failed]
    assert {r["status"] for r in only_failed} == {"failed"}

    either = tether(
        "runs",
        "list",
        "--status",
        "failed",
        "--status",
        "completed",
        "--limit",
        "1000",
        "--json",
        address=plane.address,
    ).json()["runs"]
    assert {failed, completed} <= {r["id"] for r in either}
    assert {r["status"] for r in either} == {"failed", "completed"}

    charges = tether(
        "runs", "list", "--function", "gated-charge", "--status", "failed", address=plane.address
    ).ok()
    rows = table_rows(charges.stdout)
    assert failed in [row[0] for row in rows[1:]]
    assert {tuple(row[1:3]) for row in rows[1:]} == {("gated-charge", "failed")}

    none = tether("runs", "list", "--function", "no-such-function", address=plane.address).ok()
    assert none.stdout.strip() == "no runs"


def test_runs_list_json_parses(plane: Plane) -> None:
    finished_run(plane, "e2e/steps.requested", {"n": 4})
    run_id = finished_run(plane, "e2e/steps.requested", {"n": 5})

    value = tether(
        "runs",
        "list",
        "--function",
        "three-steps",
        "--limit",
        "1",
        "--json",
        address=plane.address,
    ).json()

    assert set(value) == {"runs", "next_page_token"}
    (run,) = value["runs"]
    assert run["id"] == run_id
    assert run["function_id"] == "three-steps"
    assert run["app_id"] == "cli-tests"
    assert run["status"] == "completed"
    assert run["output"] == {"n": 5, "doubled": 10, "stored": "stored 10"}
    assert run["error"] is None
    assert when(run["created_at"]) <= when(run["ended_at"])
    assert isinstance(value["next_page_token"], str)


def test_runs_list_pages_with_limit_and_page_token(plane: Plane) -> None:
    for n in range(3):
        finished_run(plane, "e2e/steps.requested", {"n": n})
    everything = plane.admin.runs.ListRuns(
        rs.ListRunsRequest(function_id="three-steps", page_size=1000)
    ).runs
    expected = [r.id for r in everything]
    assert len(expected) >= 3

    first = tether(
        "runs", "list", "--function", "three-steps", "--limit", "2", address=plane.address
    ).ok()
    hint = re.search(r"^more: --page-token (\S+)$", first.stdout, re.MULTILINE)
    assert hint is not None, first
    assert [row[0] for row in table_rows(first.stdout)[1:3]] == expected[:2]

    seen = [row[0] for row in table_rows(first.stdout)[1:3]]
    token: str | None = hint.group(1)
    pages = 1
    while token:
        page = tether(
            "runs",
            "list",
            "--function",
            "three-steps",
            "--limit",
            "2",
            "--page-token",
            token,
            "--json",
            address=plane.address,
        ).json()
        assert 1 <= len(page["runs"]) <= 2
        seen += [r["id"] for r in page["runs"]]
        token = page["next_page_token"]
        pages += 1
        assert pages <= len(expected), "paging does not end"
    assert seen == expected


# -- show -------------------------------------------------------------------------------


def test_runs_show_prints_every_step_and_the_output(plane: Plane) -> None:
    run_id = finished_run(plane, "e2e/steps.requested", {"n": 3})

    text = tether("runs", "show", run_id, address=plane.address).ok().stdout

    lines = text.splitlines()
    assert re.fullmatch(rf"Run {run_id}  three-steps \(app cli-tests\)  completed", lines[0])
    assert re.search(r"^  event    \S+  e2e/steps.requested  \{\"n\": 3\}$", text, re.M), text
    assert re.search(r"^  created  .+   ended .+  took \d+", text, re.M), text
    assert '  output   {"n": 3, "doubled": 6, "stored": "stored 6"}' in lines
    steps = [line for line in lines if "✓" in line]
    assert [re.findall(r"✓ (\S+)", line) for line in steps] == [["fetch"], ["double"], ["store"]]
    assert steps[0].endswith("→ 3")
    assert steps[1].endswith("→ 6")
    assert steps[2].endswith('→ "stored 6"')
    assert lines[-1].strip().endswith("■ completed")

    detail = show(plane, run_id)
    assert detail["status"] == "completed"
    assert detail["output"] == {"n": 3, "doubled": 6, "stored": "stored 6"}
    assert [
        (s["id"], s["kind"], s["status"], s["attempts"], s["output"]) for s in detail["steps"]
    ] == [
        ("fetch", "run", "completed", 1, 3),
        ("double", "run", "completed", 1, 6),
        ("store", "run", "completed", 1, "stored 6"),
    ]
    kinds = [h["kind"] for h in detail["history"]]
    assert kinds[0] == "execution.started"
    assert kinds[-1] == "run.completed"
    assert [e["data"] for e in detail["events"]] == [{"n": 3}]
    assert plane.ledger(run_id) == [["fetch"], ["double"], ["store"]]


def test_runs_show_counts_the_attempts_of_a_retried_step(plane: Plane) -> None:
    run_id = finished_run(plane, "e2e/flaky.requested", {"failures": 2, "delay": 0.2})

    text = tether("runs", "show", run_id, address=plane.address).ok().stdout

    assert text.splitlines()[0].endswith("completed"), text
    for attempt in (1, 2):
        assert re.search(
            rf"✗ call-flaky-service  attempt {attempt} failed: RetryAfterError: "
            rf"service busy \(attempt {attempt}\); retry at \d{{4}}-",
            text,
        ), text
    assert re.search(r'✓ call-flaky-service  \d+ ms  3 attempts  → "ok after 3 attempts"', text), (
        text
    )
    assert '  output   {"result": "ok after 3 attempts"}' in text

    detail = show(plane, run_id)
    (step,) = detail["steps"]
    assert (step["id"], step["status"], step["attempts"]) == ("call-flaky-service", "completed", 3)
    failures = [h for h in detail["history"] if h["kind"] == "step.failed"]
    assert [(h["step"], h["attempt"]) for h in failures] == [
        ("call-flaky-service", 1),
        ("call-flaky-service", 2),
    ]
    assert all(h["error"]["name"] == "RetryAfterError" for h in failures)
    # Each retry waited for the time the timeline announced.
    started = [when(h["at"]) for h in detail["history"] if h["kind"] == "execution.started"]
    assert len(started) == 3
    for failure, retried in zip(failures, started[1:], strict=True):
        assert retried >= when(failure["until"]) >= when(failure["at"]), detail["history"]
    assert plane.ledger(run_id) == [["call-flaky-service", str(a)] for a in range(3)]


def test_runs_show_prints_the_error_of_a_failed_run(plane: Plane, tmp_path: Path) -> None:
    run_id = failed_charge(plane, tmp_path / "closed-gate")

    text = tether("runs", "show", run_id, address=plane.address).ok().stdout

    lines = text.splitlines()
    assert lines[0] == f"Run {run_id}  gated-charge (app cli-tests)  failed"
    assert f"  error    StepError: step 'charge' failed: {CHARGE_ERROR}" in lines
    assert "output" not in text
    assert re.search(r'✓ prepare  \d+ ms  → "prepared"', text), text
    assert f"✗ charge  failed for good: {CHARGE_ERROR}" in text
    assert f"✗ charge  attempt 1 failed: {CHARGE_ERROR}; no retries left" in text
    assert lines[-1].strip().endswith(f"■ failed: StepError: step 'charge' failed: {CHARGE_ERROR}")

    detail = show(plane, run_id)
    assert detail["status"] == "failed"
    assert detail["output"] is None
    assert detail["error"]["name"] == "StepError"
    assert CHARGE_ERROR in detail["error"]["message"]
    assert [(s["id"], s["status"]) for s in detail["steps"]] == [
        ("prepare", "completed"),
        ("charge", "failed"),
    ]
    charge = detail["steps"][1]
    assert charge["error"]["name"] == "NonRetriableError"
    assert charge["error"]["message"] == "card declined: the gate is closed"
    assert detail["history"][-1]["kind"] == "run.failed"


def test_runs_show_prints_a_pending_sleep(plane: Plane) -> None:
    run_id = sleeping_run(plane)

    text = tether("runs", "show", run_id, address=plane.address).ok().stdout

    lines = text.splitlines()
    assert lines[0] == f"Run {run_id}  sleeper (app cli-tests)  sleeping"
    assert "   ended -" in text
    assert re.search(r'✓ before-nap  \d+ ms  → "awake"', text), text
    sleep = re.search(r"⏸ sleep nap  until (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})", text)
    assert sleep is not None, text
    until = dt.datetime.strptime(sleep.group(1), "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=dt.UTC)
    assert dt.timedelta(minutes=59) < until - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=1)
    assert "after-nap" not in text

    detail = show(plane, run_id)
    assert detail["status"] == "sleeping"
    assert [(s["id"], s["kind"], s["status"]) for s in detail["steps"]] == [
        ("before-nap", "run", "completed"),
        ("nap", "sleep", "pending"),
    ]
    assert "sleep.started" in [h["kind"] for h in detail["history"]]


def test_runs_show_links_a_parent_and_the_child_it_invoked(plane: Plane) -> None:
    parent = finished_run(plane, "e2e/invoke.requested")
    detail = show(plane, parent)
    [call] = detail["steps"]
    child = call["child_run_id"]

    parent_text = tether("runs", "show", parent, address=plane.address).ok().stdout
    child_text = tether("runs", "show", child, address=plane.address).ok().stdout

    assert detail["output"] == {"n": 3, "doubled": 6, "stored": "stored 6"}
    assert (call["id"], call["kind"]) == ("call-three-steps", "invoke")
    assert f"run {child}" in parent_text, parent_text
    assert f"invoked by run {parent}" in child_text, child_text
    assert show(plane, child)["parent_run_id"] == parent


# -- cancel ------------------------------------------------------------------------------


def test_cancelling_a_sleeping_run(plane: Plane) -> None:
    run_id = sleeping_run(plane)

    result = tether(
        "runs", "cancel", run_id, "--reason", "user deleted their account", address=plane.address
    ).ok()

    assert result.stdout.strip() == f"run {run_id} cancelled"
    assert plane.admin.status(run_id) == common_pb2.RUN_STATUS_CANCELLED
    text = tether("runs", "show", run_id, address=plane.address).ok().stdout
    assert text.splitlines()[0] == f"Run {run_id}  sleeper (app cli-tests)  cancelled"
    assert "■ cancelled: user deleted their account" in text
    detail = show(plane, run_id)
    assert detail["status"] == "cancelled"
    assert detail["ended_at"] is not None
    assert detail["history"][-1]["kind"] == "run.cancelled"
    assert detail["history"][-1]["message"] == "user deleted their account"
    assert plane.ledger(run_id) == [["before-nap"]]


def test_the_timeline_of_a_cancelled_run_still_shows_its_sleep(plane: Plane) -> None:
    run_id = sleeping_run(plane)
    tether("runs", "cancel", run_id, address=plane.address).ok()

    text = tether("runs", "show", run_id, address=plane.address).ok().stdout

    assert "sleep nap" in text, text


def test_cancelling_a_finished_run_fails_clearly(plane: Plane) -> None:
    run_id = finished_run(plane, "e2e/steps.requested")

    result = tether("runs", "cancel", run_id, address=plane.address)

    assert result.code == 1, result
    assert result.stdout == ""
    assert result.error_lines == [
        f"Error: run '{run_id}' already finished (completed) (FAILED_PRECONDITION)"
    ]
    assert plane.admin.status(run_id) == common_pb2.RUN_STATUS_COMPLETED


def test_cancelling_the_runs_of_a_function_created_in_a_time_range(plane: Plane) -> None:
    older, inside, newer = (sleeping_run(plane) for _ in range(3))
    created = {r.id: r.created_at_ms for r in plane.admin.runs_of("sleeper")}
    after = _format.timestamp(created[inside])  # as `runs list` prints it, in UTC
    before = _format.iso(created[newer])  # ISO 8601 with its offset works too

    result = tether(
        "runs",
        "cancel",
        "--function",
        "sleeper",
        "--app",
        "cli-tests",
        "--created-after",
        after,
        "--created-before",
        str(before),
        "--reason",
        "bulk test",
        address=plane.address,
    ).ok()

    assert result.stdout.strip() == "cancelled 1 run(s)", result
    assert plane.admin.status(inside) == common_pb2.RUN_STATUS_CANCELLED
    assert plane.admin.get(inside).run.error.message == "bulk test"
    assert plane.admin.status(older) == common_pb2.RUN_STATUS_SLEEPING
    assert plane.admin.status(newer) == common_pb2.RUN_STATUS_SLEEPING


def test_bulk_cancel_needs_the_app_and_a_readable_time(plane: Plane) -> None:
    no_app = tether("runs", "cancel", "--function", "sleeper", address=plane.address)
    bad_time = tether(
        "runs",
        "cancel",
        "--function",
        "sleeper",
        "--app",
        "cli-tests",
        "--created-after",
        "yesterday",
        address=plane.address,
    )

    assert no_app.code == 2, no_app
    assert "--function needs --app" in no_app.stderr
    assert bad_time.code == 2, bad_time
    assert "'yesterday' is not an ISO 8601 time" in bad_time.stderr


# -- replay -------------------------------------------------------------------------------


def test_replay_from_the_start_runs_every_step_again(plane: Plane, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    failed = failed_charge(plane, gate)
    assert plane.ledger(failed) == [["prepare"], ["charge"]]
    gate.touch()

    result = tether("runs", "replay", failed, address=plane.address).ok()

    match = re.fullmatch(
        rf"started run (\S+) replaying {failed}   \(tether runs watch \1\)\n", result.stdout
    )
    assert match is not None, result
    replay = match.group(1)
    assert replay != failed
    watched = tether("runs", "watch", replay, "--timeout", "20", address=plane.address).ok()
    assert f"run {replay} completed" in watched.stdout
    assert plane.ledger(replay) == [["prepare"], ["charge"]]
    detail = show(plane, replay)
    assert detail["replay_of"] == failed
    assert detail["output"] == {"prepare": "prepared", "charge": "charged"}
    replayed = [h for h in detail["history"] if h["kind"] == "run.replayed"]
    assert [h["message"] for h in replayed] == [f"replay of run {failed} from the start"]
    assert plane.admin.status(failed) == common_pb2.RUN_STATUS_FAILED


def test_replay_from_the_failed_step_keeps_completed_steps(plane: Plane, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    failed = failed_charge(plane, gate)
    gate.touch()

    run = tether(
        "runs", "replay", failed, "--from-failed-step", "--json", address=plane.address
    ).json()

    replay = run["id"]
    assert run["replay_of"] == failed
    assert run["function_id"] == "gated-charge"
    assert run["event_id"] == plane.admin.get(failed).run.event_id
    watched = tether("runs", "watch", replay, "--timeout", "20", address=plane.address).ok()
    assert f"replays  {failed}" in watched.stdout
    assert "keeping 1 completed step(s)" in watched.stdout
    # "prepare" was kept: only the failed step ran again.
    assert plane.ledger(replay) == [["charge"]]
    detail = show(plane, replay)
    assert detail["status"] == "completed"
    assert detail["output"] == {"prepare": "prepared", "charge": "charged"}
    assert [(s["id"], s["status"], s["output"]) for s in detail["steps"]] == [
        ("prepare", "completed", "prepared"),
        ("charge", "completed", "charged"),
    ]


def test_replaying_an_unfinished_run_fails_clearly(plane: Plane) -> None:
    run_id = sleeping_run(plane)

    result = tether("runs", "replay", run_id, address=plane.address)

    assert result.code == 1, result
    assert result.error_lines == [
        f"Error: run '{run_id}' is still sleeping; only finished runs can be replayed "
        "(FAILED_PRECONDITION)"
    ]
    assert plane.admin.status(run_id) == common_pb2.RUN_STATUS_SLEEPING


# -- watch ------------------------------------------------------------------------------


def test_watch_follows_a_run_to_the_end(plane: Plane) -> None:
    run_id = sleeping_run(plane, seconds=2)

    result = tether("runs", "watch", run_id, "--timeout", "20", address=plane.address).ok()

    head, _, timeline = result.stdout.partition("\n\n")
    updates = [line.split()[-1] for line in head.splitlines()]
    assert all(
        re.fullmatch(rf"\d\d:\d\d:\d\d  run {run_id} \w+", line) for line in head.splitlines()
    ), result
    assert "sleeping" in updates
    assert updates[-1] == "completed"
    assert timeline.splitlines()[0] == f"Run {run_id}  sleeper (app cli-tests)  completed"
    assert re.search(r"⏸ sleep nap  2\.\d s", timeline), timeline
    assert re.search(r'✓ after-nap  \d+ ms  → "rested"', timeline), timeline
    assert '  output   {"slept": 2.0}' in timeline


def test_watch_gives_up_after_its_timeout(plane: Plane) -> None:
    run_id = sleeping_run(plane)

    result = tether("runs", "watch", run_id, "--timeout", "1", address=plane.address)

    assert result.code == 1, result
    assert f"run {run_id} sleeping" in result.stdout
    assert result.error_lines == [f"Error: run {run_id} did not finish within 1.0 s"]
    assert plane.admin.status(run_id) == common_pb2.RUN_STATUS_SLEEPING
