"""Runs every scenario of scenarios.json against every SDK of sdks.json, on
SQLite and PostgreSQL (see README.md for the vocabulary)."""

from __future__ import annotations

import itertools
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.conftest import ConformanceCluster
from tests.support.admin import FINISHED
from tests.support.waiting import wait_until
from tether.v1 import common_pb2, event_service_pb2
from tether.v1 import run_service_pb2 as rs

SCENARIOS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "scenarios.json").read_text()
)["scenarios"]

STATUS = {
    name: common_pb2.RunStatus.Value(f"RUN_STATUS_{name.upper()}")
    for name in ("queued", "running", "sleeping", "waiting", "completed", "failed", "cancelled")
}
STATUS_NAME: dict[int, str] = {int(value): name for name, value in STATUS.items()}
HISTORY_NAME = {
    value: rs.HistoryKind.Name(value).removeprefix("HISTORY_KIND_").lower().replace("_", ".", 1)
    for value in rs.HistoryKind.values()
}
HISTORY_NAME[rs.HISTORY_KIND_NON_DETERMINISM] = "non_determinism"
TIMEOUT = 60.0


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["id"] for s in SCENARIOS])
def test_scenario(cluster: ConformanceCluster, scenario: dict[str, Any]) -> None:
    run = ScenarioRun(cluster, scenario)
    run.perform()
    run.check()


class ScenarioRun:
    """One scenario on one cluster: its key, its run, what it sent."""

    def __init__(self, cluster: ConformanceCluster, scenario: dict[str, Any]) -> None:
        self.cluster = cluster
        self.scenario = scenario
        self.key = f"{scenario['id']}-{cluster.sdk}-{cluster.db}-{uuid.uuid4().hex[:8]}"
        self.run_id = ""
        self.sent = 0
        self.last_send: event_service_pb2.SendResult | None = None
        self.tick_ms = 0
        self.function = scenario["id"]

    # -- the script ---------------------------------------------------------------------

    def perform(self) -> None:
        for action in self.scenario["script"]:
            (verb,) = [k for k in action if k != "count"]
            getattr(self, f"do_{verb}")(action[verb], action)
        if self.run_id:
            self.until_finished()

    def send(self, events: list[dict[str, Any]]) -> list[event_service_pb2.SendResult]:
        request = event_service_pb2.SendRequest(
            events=[
                common_pb2.Event(
                    name=e["name"], data=json.dumps({**e.get("data", {}), "key": self.key}).encode()
                )
                for e in events
            ]
        )
        results = list(self.cluster.admin.events.Send(request).results)
        self.sent += len(events)
        self.last_send = results[-1]
        return results

    def do_send(self, event: dict[str, Any], _: dict[str, Any]) -> None:
        (result,) = self.send([event])
        assert result.run_ids, f"{event['name']} started no run: {result}"
        self.run_id = result.run_ids[0]

    def do_send_other(self, event: dict[str, Any], _: dict[str, Any]) -> None:
        self.send([event])

    def do_send_many(self, event: dict[str, Any], action: dict[str, Any]) -> None:
        self.send([event] * int(action["count"]))

    def do_send_batch(self, events: list[dict[str, Any]], _: dict[str, Any]) -> None:
        self.send(events)
        runs = wait_until(
            lambda: self.runs_of(self.function), timeout=TIMEOUT, what="the batch's run"
        )
        self.run_id = runs[0].id

    def do_hold_clock(self, held: bool, _: dict[str, Any]) -> None:
        self.cluster.clock.set_auto_skip(not held)

    def do_until_status(self, status: str, _: dict[str, Any]) -> None:
        wait_until(
            lambda: self.cluster.admin.status(self.run_id) == STATUS[status],
            timeout=TIMEOUT,
            what=f"run {self.run_id} to be {status}",
        )

    def do_until_finished(self, _: object, __: dict[str, Any]) -> None:
        self.until_finished()

    def until_finished(self) -> rs.GetRunResponse | None:
        return wait_until(
            lambda: self.cluster.admin.finished(self.run_id),
            timeout=TIMEOUT,
            what=f"run {self.run_id} to finish",
        )

    def do_until_all_finished(self, function: str, _: dict[str, Any]) -> None:
        def done() -> bool:
            runs = self.runs_of(function)
            return len(runs) >= self.sent and all(r.status in FINISHED for r in runs)

        wait_until(done, timeout=TIMEOUT, what=f"every run of {function} to finish")

    def do_until_ledger(self, label: str, _: dict[str, Any]) -> None:
        wait_until(
            lambda: any(row[1] == label for row in self.cluster.ledger_rows(self.key)),
            timeout=TIMEOUT,
            what=f"the ledger to show {label!r}",
        )

    def do_until_step_completed(self, step: str, _: dict[str, Any]) -> None:
        """Wait until a step's result is durable (checkpointing sends it while
        the function goes on, so the next step may start before it is stored)."""

        def completed() -> bool:
            steps = self.cluster.admin.get(self.run_id).steps
            return any(s.name == step and s.status == rs.STEP_STATUS_COMPLETED for s in steps)

        wait_until(completed, timeout=TIMEOUT, what=f"step {step!r} to be stored")

    def do_cancel(self, reason: str, _: dict[str, Any]) -> None:
        self.cluster.admin.runs.CancelRun(rs.CancelRunRequest(run_id=self.run_id, reason=reason))

    def do_switch(self, position: str, _: dict[str, Any]) -> None:
        path = self.cluster.gates / f"{self.key}.broken"
        if position == "on":
            path.touch()
        else:
            path.unlink()

    def do_open_gate(self, _: object, __: dict[str, Any]) -> None:
        (self.cluster.gates / f"{self.key}.open").touch()

    def do_expect_status(self, status: str, _: dict[str, Any]) -> None:
        got = STATUS_NAME.get(self.cluster.admin.status(self.run_id))
        assert got == status, f"run {self.run_id} is {got}, not {status}"

    def do_replay(self, mode: str, _: dict[str, Any]) -> None:
        request = rs.ReplayRunRequest(
            run_id=self.run_id, mode=rs.ReplayMode.Value(f"REPLAY_MODE_{mode.upper()}")
        )
        self.run_id = self.cluster.admin.runs.ReplayRun(request).run.id

    def do_kill_worker(self, _: object, __: dict[str, Any]) -> None:
        self.cluster.worker.kill()

    def do_start_worker(self, _: object, __: dict[str, Any]) -> None:
        self.cluster.start_worker()

    def do_restart_control_plane(self, _: object, __: dict[str, Any]) -> None:
        self.cluster.restart_control_plane()

    def do_advance_to_next_tick(self, function: str, _: dict[str, Any]) -> None:
        admin, clock = self.cluster.admin, self.cluster.clock

        def next_tick() -> int:
            info = next(f for f in admin.functions() if f.definition.id == function)
            fires = [ms for ms in info.next_fire_ms if ms > 0]
            return min(fires) if fires and min(fires) > clock.now_ms() else 0

        # A tick the clock already passed is being moved on by the dispatcher.
        self.tick_ms = wait_until(next_tick, timeout=TIMEOUT, what=f"the next tick of {function}")
        clock.advance(f"{self.tick_ms - clock.now_ms()}ms")

        def tick_run() -> str:
            for run in admin.runs_of(function):
                output = json.loads(run.output) if run.output else None
                if run.created_at_ms >= self.tick_ms and (
                    output is None or output.get("scheduled_at_ms") == self.tick_ms
                ):
                    return run.id
            return ""

        self.run_id = wait_until(
            tick_run, timeout=TIMEOUT, what=f"the run of the tick {self.tick_ms}"
        )

    # -- what must hold -----------------------------------------------------------------

    def runs_of(self, function: str) -> list[rs.Run]:
        """The runs of ``function`` whose event carries this scenario's key."""
        admin = self.cluster.admin
        runs = []
        for run in admin.runs_of(function):
            events = admin.get(run.id).events
            if events and json.loads(events[0].data or b"{}").get("key") == self.key:
                runs.append(run)
        return runs

    def check(self) -> None:
        expect: dict[str, Any] = self.scenario["expect"]
        detail = self.cluster.admin.get(self.run_id) if self.run_id else None
        for name, expected in expect.items():
            getattr(self, f"check_{name}")(expected, detail)

    def check_status(self, expected: str, detail: rs.GetRunResponse) -> None:
        got = STATUS_NAME.get(detail.run.status)
        assert got == expected, f"status {got}, expected {expected}; error: {detail.run.error}"

    def check_output(self, expected: Any, detail: rs.GetRunResponse) -> None:
        output = json.loads(detail.run.output) if detail.run.output else None
        if isinstance(expected, dict):
            expected = {k: self.tick_ms if v == "$tick" else v for k, v in expected.items()}
        assert output == expected

    def check_error(self, expected: dict[str, str], detail: rs.GetRunResponse) -> None:
        error = detail.run.error
        assert error.name == expected["name"], error
        if "message" in expected:
            assert error.message == expected["message"]
        if "message_starts" in expected:
            assert error.message.startswith(expected["message_starts"]), error.message

    def check_executions(self, expected: dict[str, int], _: object) -> None:
        labels = [row[1] for row in self.cluster.ledger_rows(self.key)]
        assert {label: labels.count(label) for label in expected} == expected, labels

    def history(self, detail: rs.GetRunResponse) -> list[str]:
        return [HISTORY_NAME[h.kind] for h in detail.history]

    def check_history(self, expected: list[str], detail: rs.GetRunResponse) -> None:
        assert self.history(detail) == expected

    def check_history_contains(self, expected: list[str], detail: rs.GetRunResponse) -> None:
        history = self.history(detail)
        assert all(kind in history for kind in expected), history

    def check_retry_delays_ms(self, expected: list[list[int]], detail: rs.GetRunResponse) -> None:
        delays = [
            h.until_ms - h.ts_ms
            for h in detail.history
            if h.kind == rs.HISTORY_KIND_STEP_FAILED and h.until_ms
        ]
        assert len(delays) == len(expected), delays
        for delay, (low, high) in zip(delays, expected, strict=True):
            assert low <= delay <= high, f"a retry delay of {delay} ms, expected {low}-{high}"

    def check_sleep_ms(self, expected: list[int], detail: rs.GetRunResponse) -> None:
        sleeps = [
            s.ended_at_ms - s.started_at_ms
            for s in detail.steps
            if s.kind == common_pb2.STEP_KIND_SLEEP
        ]
        assert sleeps == expected

    def check_runs(self, expected: dict[str, int], _: object) -> None:
        counts = {function: len(self.runs_of(function)) for function in expected}
        assert counts == expected

    def check_all_status(self, expected: str, _: object) -> None:
        statuses = {STATUS_NAME.get(r.status) for r in self.runs_of(self.function)}
        assert statuses == {expected}

    def check_max_overlap(self, expected: dict[str, Any], _: object) -> None:
        changes = sorted(
            (int(row[2]), -1 if row[1] == expected["end"] else 1)
            for row in self.cluster.ledger_rows(self.key)
            if row[1] in (expected["start"], expected["end"])
        )
        running = highest = 0
        for _at, change in changes:
            running += change
            highest = max(highest, running)
        assert highest == expected["is"], changes

    def check_start_spacing_ms(self, expected: int, _: object) -> None:
        starts = sorted(r.started_at_ms for r in self.runs_of(self.function))
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert gaps, starts
        # A run starts when it is leased, a few milliseconds after its turn.
        assert min(gaps) >= expected - 100, gaps

    def check_last_send_skipped(self, expected: str, _: object) -> None:
        assert self.last_send is not None
        assert self.last_send.skipped, self.last_send
        assert expected in self.last_send.skipped[0].reason
