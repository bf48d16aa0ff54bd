"""Durability with real processes: steps run once, retries follow their rules,
crashes of workers and of the control plane lose nothing."""

from __future__ import annotations

from collections import Counter
from typing import Any

from controlplane.engine.backoff import delay_bounds_ms
from tests.integration.conftest import Cluster
from tests.support import ledger
from tests.support.clock import Clock
from tests.support.waiting import wait_until
from tether.v1 import common_pb2
from tether.v1 import run_service_pb2 as rs

COMPLETED = common_pb2.RUN_STATUS_COMPLETED
FAILED = common_pb2.RUN_STATUS_FAILED


def _counts(cluster: Cluster, run_id: str) -> Counter[str]:
    return Counter(row[1] for row in ledger.read(cluster.ledger) if row[0] == run_id)


def _wait_finished(cluster: Cluster, run_id: str, timeout: float = 20) -> rs.GetRunResponse:
    finished = wait_until(
        lambda: cluster.admin.finished(run_id), timeout=timeout, what=f"run {run_id} to finish"
    )
    assert finished is not None
    return finished


def _step(response: rs.GetRunResponse, name: str) -> rs.StepRecord:
    for step in response.steps:
        if step.name == name:
            return step
    raise AssertionError(f"no step {name!r} in {[s.name for s in response.steps]}")


def _history(response: rs.GetRunResponse, kind: int) -> list[rs.HistoryEntry]:
    return [h for h in response.history if h.kind == kind]


def _connected(cluster: Cluster, function_id: str) -> None:
    wait_until(lambda: cluster.admin.connected(function_id), what=f"a worker serving {function_id}")


def test_completed_steps_run_once_across_step_retries(virtual_cluster: Cluster) -> None:
    cluster = virtual_cluster
    cluster.worker()
    _connected(cluster, "flaky")
    [run_id] = cluster.admin.send("test/flaky", {"fail_times": 2})

    run = _wait_finished(cluster, run_id)

    assert run.run.status == COMPLETED
    counts = _counts(cluster, run_id)
    assert counts["first"] == 1, "a completed step ran again"
    assert counts["middle"] == 3
    assert counts["last"] == 1
    assert _step(run, "middle").attempts == 3
    assert _step(run, "first").attempts == 1


def test_backoff_follows_the_schedule(virtual_cluster: Cluster) -> None:
    cluster = virtual_cluster
    cluster.worker()
    _connected(cluster, "flaky")
    [run_id] = cluster.admin.send("test/flaky", {"fail_times": 4})

    run = _wait_finished(cluster, run_id)

    assert run.run.status == COMPLETED
    failures = _history(run, rs.HISTORY_KIND_STEP_FAILED)
    assert [f.attempt for f in failures] == [1, 2, 3, 4]
    for failure in failures:
        low, high = delay_bounds_ms(failure.attempt)
        assert low <= failure.until_ms - failure.ts_ms <= high, (failure.attempt, failure)
    # Each retry ran when it was due: the next failure (or the success) came at
    # or after the scheduled time, not before.
    next_attempt_times = [f.ts_ms for f in failures[1:]] + [_step(run, "middle").started_at_ms]
    for failure, retried_at in zip(failures, next_attempt_times, strict=True):
        assert retried_at >= failure.until_ms
        assert retried_at - failure.until_ms < 5_000


def test_retry_after_error_sets_the_retry_time(virtual_cluster: Cluster) -> None:
    cluster = virtual_cluster
    cluster.worker()
    _connected(cluster, "retry-after")
    [run_id] = cluster.admin.send("test/retry-after")

    run = _wait_finished(cluster, run_id)

    assert run.run.status == COMPLETED
    [failure] = _history(run, rs.HISTORY_KIND_STEP_FAILED)
    assert failure.until_ms - failure.ts_ms == 2 * 3600 * 1000
    assert "rate limited" in failure.error.message
    assert _step(run, "call-api").started_at_ms >= failure.until_ms
    assert _counts(cluster, run_id)["call-api"] == 2


def test_non_retriable_error_fails_the_step_at_once(cluster: Cluster) -> None:
    cluster.worker()
    _connected(cluster, "non-retriable")
    [run_id] = cluster.admin.send("test/non-retriable")

    run = _wait_finished(cluster, run_id)

    assert run.run.status == FAILED
    assert _counts(cluster, run_id)["validate"] == 1
    step = _step(run, "validate")
    assert step.status == rs.STEP_STATUS_FAILED
    assert step.attempts == 1
    assert run.run.error.name == "StepError"
    assert "validate" in run.run.error.message
    assert "card number is invalid" in run.run.error.message


def test_caught_step_error_lets_the_function_carry_on(virtual_cluster: Cluster) -> None:
    cluster = virtual_cluster
    cluster.worker()
    _connected(cluster, "caught")
    [run_id] = cluster.admin.send("test/caught")

    run = _wait_finished(cluster, run_id)

    assert run.run.status == COMPLETED
    assert cluster.admin.output(run_id) == {"fallback": True, "error": "ValueError"}
    counts = _counts(cluster, run_id)
    assert counts["charge"] == 2  # retries=1: two attempts, then StepError
    assert counts["notify"] == 1


def test_error_outside_steps_retries_from_memoized_state(virtual_cluster: Cluster) -> None:
    cluster = virtual_cluster
    cluster.worker()
    _connected(cluster, "body-fails")
    [run_id] = cluster.admin.send("test/body-fails")

    run = _wait_finished(cluster, run_id)

    assert run.run.status == COMPLETED
    assert cluster.admin.output(run_id) == {"total": 42, "attempt": 1}
    assert run.run.attempt == 1
    [retry] = _history(run, rs.HISTORY_KIND_RUN_RETRY_SCHEDULED)
    assert "outside any step" in retry.error.message
    counts = _counts(cluster, run_id)
    assert counts["before"] == 1, "the memoized step ran again on the function retry"
    assert counts["after"] == 1


def test_sleep_wakes_within_100_ms_of_its_due_time(cluster: Cluster) -> None:
    cluster.worker()
    _connected(cluster, "napper")
    [run_id] = cluster.admin.send("test/napper", {"seconds": 1})

    run = _wait_finished(cluster, run_id, timeout=20)

    assert run.run.status == COMPLETED
    nap = _step(run, "nap")
    after = _step(run, "after")
    assert nap.kind == common_pb2.STEP_KIND_SLEEP
    assert nap.ended_at_ms - nap.started_at_ms >= 1000
    lateness = after.started_at_ms - nap.ended_at_ms
    assert 0 <= lateness < 100, f"woke {lateness} ms after the sleep's due time"


def test_killed_worker_hands_its_runs_to_another(cluster: Cluster) -> None:
    first = cluster.worker("first", TETHER_TEST_BLOCK="1")
    _connected(cluster, "gated")
    run_ids = cluster.admin.send_many([("test/gated", {}) for _ in range(5)])

    # Every run is stuck in step two on the first worker, with step one durable.
    def step_one_durable_everywhere() -> bool:
        for run_id in run_ids:
            steps = {s.name: s for s in cluster.admin.get(run_id).steps}
            if "one" not in steps or _counts(cluster, run_id)["two-start"] < 1:
                return False
        return True

    wait_until(step_one_durable_everywhere, what="step one to be durable in every run")
    first.kill()
    cluster.worker("second")

    finished = [_wait_finished(cluster, run_id) for run_id in run_ids]

    for run_id, run in zip(run_ids, finished, strict=True):
        assert run.run.status == COMPLETED
        assert cluster.admin.output(run_id) == {"sum": 4, "second_ran_on": "second"}
        counts = _counts(cluster, run_id)
        assert counts["one"] == 1, "a durable step ran again after the worker died"
        assert counts["two-start"] == 2  # started on both workers, finished on one
        assert counts["two"] == 1
        assert counts["three"] == 1
        lost = _history(run, rs.HISTORY_KIND_EXECUTION_LOST)
        assert lost
        assert "worker disconnected" in lost[0].message
        started = _history(run, rs.HISTORY_KIND_EXECUTION_STARTED)
        assert lost[0].execution_id == started[0].execution_id


def test_killed_control_plane_loses_no_run(cluster: Cluster) -> None:
    cluster.worker(capacity=200)
    _connected(cluster, "load")
    run_ids = cluster.admin.send_many([("test/load", {}) for _ in range(200)])

    def completed() -> int:
        page = cluster.admin.runs.ListRuns(rs.ListRunsRequest(statuses=[COMPLETED], page_size=1000))
        return len(page.runs)

    wait_until(lambda: completed() >= 20, what="some runs to complete")
    cluster.control_plane.kill()
    cluster.restart_control_plane()

    wait_until(lambda: completed() == 200, timeout=60, what="every run to complete")
    for run_id in run_ids:
        run = cluster.admin.get(run_id)
        assert run.run.status == COMPLETED
        assert cluster.admin.output(run_id) == 0 + 1 + 2 + 3 + 4
        assert [s.name for s in run.steps] == ["add", "add:1", "add:2", "add:3", "add:4"]


def test_a_killed_control_plane_reruns_no_running_step(cluster_factory: Any) -> None:
    """Workers keep running through a kill -9 of the control plane, re-announce
    what they hold to the restarted one and send what it had not acknowledged:
    no step runs twice, and nothing waits for a lease to time out (a minute
    here, longer than the test's deadline)."""
    cluster: Cluster = cluster_factory(lease_timeout_ms=60_000)
    cluster.worker(capacity=50)
    _connected(cluster, "paced")
    run_ids = cluster.admin.send_many([("test/paced", {}) for _ in range(20)])

    def in_second_step_everywhere() -> bool:
        started = {row[0] for row in ledger.read(cluster.ledger) if row[1] == "step-1"}
        return started >= set(run_ids)

    wait_until(in_second_step_everywhere, what="every run to be in its second step")
    cluster.control_plane.kill()
    cluster.restart_control_plane()

    for run_id in run_ids:
        run = _wait_finished(cluster, run_id, timeout=30)
        assert run.run.status == COMPLETED
        assert cluster.admin.output(run_id) == sum(range(6))
        counts = _counts(cluster, run_id)
        assert [counts[f"step-{i}"] for i in range(6)] == [1] * 6, "a step ran again"
        assert not _history(run, rs.HISTORY_KIND_EXECUTION_LOST)
        assert len(_history(run, rs.HISTORY_KIND_EXECUTION_STARTED)) == 1


def test_heartbeats_keep_a_long_step_on_its_worker(cluster_factory: Any) -> None:
    cluster: Cluster = cluster_factory(heartbeat_ms=200, lease_timeout_ms=1000)
    cluster.worker()
    _connected(cluster, "slow-step")
    [run_id] = cluster.admin.send("test/slow-step", {"seconds": 2.5})

    run = _wait_finished(cluster, run_id)

    assert run.run.status == COMPLETED
    assert _counts(cluster, run_id)["slow-start"] == 1
    assert not _history(run, rs.HISTORY_KIND_EXECUTION_LOST)


def test_a_frozen_worker_loses_its_run_and_its_late_result(cluster_factory: Any) -> None:
    """A worker frozen past its lease loses the run to another worker; when it
    wakes up, its late result changes nothing: the run keeps the new one."""
    cluster: Cluster = cluster_factory(heartbeat_ms=200, lease_timeout_ms=1000)
    frozen = cluster.worker("frozen")
    _connected(cluster, "slow-step")
    [run_id] = cluster.admin.send("test/slow-step", {"seconds": 1.5})
    wait_until(lambda: _counts(cluster, run_id)["slow-start"] == 1, what="the step to start")
    assert frozen.process is not None
    frozen.process.send_signal(19)  # SIGSTOP: alive, silent, holding its lease
    cluster.worker("rescuer")

    run = _wait_finished(cluster, run_id, timeout=30)
    frozen.process.send_signal(18)  # SIGCONT: its step finishes and reports late

    assert run.run.status == COMPLETED
    assert cluster.admin.output(run_id) == "rescuer"
    lost = _history(run, rs.HISTORY_KIND_EXECUTION_LOST)
    assert lost
    assert "lease expired" in lost[0].message
    wait_until(
        lambda: _counts(cluster, run_id)["slow"] == 2, what="the frozen worker to finish its step"
    )
    wait_until(lambda: cluster.admin.connected("slow-step"), what="workers to be connected")
    assert cluster.admin.output(run_id) == "rescuer"
    assert _step(cluster.admin.get(run_id), "slow").attempts == 1


def test_sigterm_drains_in_flight_work(cluster: Cluster) -> None:
    worker = cluster.worker()
    _connected(cluster, "slow-step")
    [run_id] = cluster.admin.send("test/slow-step", {"seconds": 1})
    wait_until(lambda: _counts(cluster, run_id)["slow-start"] == 1, what="the step to start")

    code = worker.terminate(timeout=30)

    assert code == 0
    run = cluster.admin.get(run_id)
    assert run.run.status == COMPLETED, "the worker exited before finishing its run"
    assert _counts(cluster, run_id)["slow"] == 1


def test_a_virtual_clock_resumes_where_it_was_after_a_restart(cluster_factory: Any) -> None:
    """Due times, leases and deadlines in the store were set on the clock the
    control plane had; a restarted virtual clock must not start behind them."""
    cluster = cluster_factory(clock="virtual")
    clock = Clock(cluster.control_plane.address)
    try:
        ahead = clock.advance("10d")
        cluster.admin.send("test/nothing-listens", {})
        cluster.control_plane.kill()
        cluster.restart_control_plane()
    finally:
        clock.close()
    clock = Clock(cluster.control_plane.address)
    try:
        assert clock.now_ms() >= ahead
    finally:
        clock.close()
