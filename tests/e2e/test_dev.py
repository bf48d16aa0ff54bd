"""``tether dev``: a control plane and its workers in one command, stopped by Ctrl-C."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cli import free_port, tether
from tests.support import ledger
from tests.support.http import Http
from tests.support.processes import ROOT, ControlPlaneProcess, WorkerProcess
from tests.support.waiting import wait_until


class DevServer:
    """``tether dev`` in its own process group, as in a terminal of its own."""

    def __init__(self, workdir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.db_url = f"sqlite:///{workdir / 'dev.db'}"
        self.port = free_port()
        self.http_port = free_port()
        self.args = [
            "--db",
            self.db_url,
            "--port",
            str(self.port),
            "--http-port",
            str(self.http_port),
            *args,
        ]
        self.env = env or {}
        self.log_path = workdir / "dev.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> DevServer:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
        environment.update(self.env, PYTHONUNBUFFERED="1")
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "controlplane", "dev", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=environment,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def functions(self) -> list[dict[str, Any]]:
        """``tether functions list --json``; fails at once if ``tether dev`` died."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"tether dev exited ({self.process.returncode}):\n{self.logs()}")
        result = tether("functions", "list", "--json", address=self.address)
        if result.code != 0:
            return []
        value: list[dict[str, Any]] = result.json()
        return value

    def wait_served(self, function_id: str) -> None:
        wait_until(
            lambda: any(
                f["id"] == function_id and f["connected_workers"] >= 1 for f in self.functions()
            ),
            timeout=30,
            interval=0.1,
            what=f"{function_id} to be served by a worker of tether dev",
        )

    def group_alive(self) -> bool:
        """Whether any process of the group (tether dev or a worker) is still running."""
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self, *, whole_group: bool = False) -> int:
        """SIGINT to ``tether dev`` (or, like Ctrl-C in a terminal, to its whole
        group); returns its exit code."""
        assert self.process is not None
        if whole_group:
            os.killpg(self.pid, signal.SIGINT)
        else:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"tether dev did not stop on SIGINT:\n{self.logs()}") from None

    def kill(self) -> None:
        if self.process is not None and self.group_alive():
            os.killpg(self.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)


@pytest.fixture
def dev_servers() -> Iterator[list[DevServer]]:
    """Every ``tether dev`` a test starts is killed afterwards, whatever happened."""
    servers: list[DevServer] = []
    yield servers
    for server in servers:
        server.kill()


def test_dev_runs_the_onboarding_example_on_a_virtual_clock(
    tmp_path: Path, dev_servers: list[DevServer]
) -> None:
    dev = DevServer(
        tmp_path, "--clock", "virtual", "--worker", "examples.onboarding.worker:app"
    ).start()
    dev_servers.append(dev)
    dev.wait_served("onboarding-flow")
    assert f"dev UI          http://localhost:{dev.http_port}" in dev.logs()
    assert Http(f"http://127.0.0.1:{dev.http_port}").get("/healthz") == {"status": "serving"}

    sent = tether(
        "send",
        "app/user.signup",
        "--data",
        '{"user_id": 1, "email": "a@example.com"}',
        "--json",
        address=dev.address,
    ).json()
    (run_id,) = sent["run_ids"]

    watched = tether("runs", "watch", run_id, "--timeout", "30", address=dev.address).ok()
    assert f"run {run_id} completed" in watched.stdout
    assert '  output   {"user_id": 1, "nudged": true}' in watched.stdout
    detail = tether("runs", "show", run_id, "--json", address=dev.address).json()
    assert detail["status"] == "completed"
    assert detail["output"] == {"user_id": 1, "nudged": True}
    assert [(s["id"], s["kind"]) for s in detail["steps"]] == [
        ("send-welcome-email", "run"),
        ("wait-1d", "sleep"),
        ("send-getting-started-guide", "run"),
        ("check-for-project", "run"),
        ("wait-2d", "sleep"),
        ("send-nudge-email", "run"),
    ]
    # Three days passed on the run's clock, in moments of real time.
    took = dt.datetime.fromisoformat(detail["ended_at"]) - dt.datetime.fromisoformat(
        detail["created_at"]
    )
    assert took >= dt.timedelta(hours=72), took

    assert dev.stop() == 0, dev.logs()
    wait_until(lambda: not dev.group_alive(), timeout=10, what="tether dev's worker to stop")
    after = tether("runs", "list", address=dev.address)
    assert after.code == 1
    assert "cannot reach the control plane" in after.stderr
    assert "Traceback" not in dev.logs(), dev.logs()


def test_ctrl_c_on_dev_lets_in_flight_steps_finish(
    tmp_path: Path, dev_servers: list[DevServer]
) -> None:
    ledger_path = tmp_path / "ledger.tsv"
    dev = DevServer(
        tmp_path,
        "--worker",
        "tests.e2e.apps.worker:app",
        env={ledger.LEDGER_VARIABLE: str(ledger_path)},
    ).start()
    dev_servers.append(dev)
    dev.wait_served("slow-step")
    sent = tether(
        "send", "e2e/slow.requested", "--data", '{"seconds": 1.5}', "--json", address=dev.address
    ).json()
    (run_id,) = sent["run_ids"]
    wait_until(
        lambda: [run_id, "slow-started"] in ledger.read(ledger_path),
        what="the slow step to start",
    )

    assert dev.stop(whole_group=True) == 0, dev.logs()
    wait_until(lambda: not dev.group_alive(), timeout=10, what="tether dev's worker to stop")

    # The step in flight at Ctrl-C finished and its result was kept.
    plane = ControlPlaneProcess(dev.db_url, tmp_path).start()
    try:
        detail = tether("runs", "show", run_id, "--json", address=plane.address).json()
    finally:
        plane.stop()
    assert [(s["id"], s["status"]) for s in detail["steps"]] == [("work", "completed")], dev.logs()
    assert detail["status"] == "completed"


def test_dev_warns_when_a_function_has_runs_but_no_worker(
    tmp_path: Path, dev_servers: list[DevServer]
) -> None:
    dev = DevServer(tmp_path).start()
    dev_servers.append(dev)
    wait_until(lambda: "Tether dev server" in dev.logs(), what="tether dev to start")
    worker = WorkerProcess("tests.e2e.apps.worker:app", dev.address, tmp_path).start()
    dev.wait_served("slow-step")
    warning = "function cli-tests/slow-step has new runs but no connected worker serves it"
    sent = tether("send", "e2e/slow.requested", "--json", address=dev.address).json()
    assert sent["run_ids"]
    assert warning not in dev.logs()

    assert worker.terminate() == 0
    wait_until(lambda: _no_workers(dev.functions()), what="the worker to go")
    sent = tether("send", "e2e/slow.requested", "--json", address=dev.address).json()
    assert sent["run_ids"]
    wait_until(lambda: warning in dev.logs(), what="the warning")
    assert "tether worker MODULE:APP" in dev.logs()


def _no_workers(functions: list[dict[str, Any]]) -> bool:
    """Functions are listed, and no worker serves any of them."""
    return bool(functions) and not any(f["connected_workers"] for f in functions)


def test_dev_runs_workers_of_both_languages_side_by_side(
    tmp_path: Path, dev_servers: list[DevServer]
) -> None:
    dev = DevServer(
        tmp_path,
        "--clock",
        "virtual",
        "--worker",
        "examples.onboarding.worker:app",
        "--worker-command",
        "node --import tsx examples/onboarding-ts/worker.ts",
    ).start()
    dev_servers.append(dev)
    wait_until(
        lambda: (
            {
                f["app_id"]
                for f in dev.functions()
                if f["id"] == "onboarding-flow" and f["connected_workers"]
            }
            == {"onboarding", "onboarding-ts"}
        ),
        timeout=60,
        interval=0.1,
        what="both onboarding apps to be served",
    )
    assert "node --import tsx examples/onboarding-ts/worker.ts" in dev.logs()

    # One signup fans out to both apps' flows.
    sent = tether(
        "send",
        "app/user.signup",
        "--data",
        '{"user_id": 7, "email": "g@example.com"}',
        "--json",
        address=dev.address,
    ).json()
    assert len(sent["run_ids"]) == 2
    for run_id in sent["run_ids"]:
        tether("runs", "watch", run_id, "--timeout", "30", address=dev.address).ok()
        detail = tether("runs", "show", run_id, "--json", address=dev.address).json()
        assert detail["status"] == "completed", detail
        assert detail["output"] == {"user_id": 7, "nudged": True}
    assert {
        tether("runs", "show", r, "--json", address=dev.address).json()["app_id"]
        for r in sent["run_ids"]
    } == {"onboarding", "onboarding-ts"}

    assert dev.stop() == 0, dev.logs()
    wait_until(lambda: not dev.group_alive(), timeout=30, what="both workers to stop")
