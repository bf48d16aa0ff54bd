"""Python and TypeScript workers on one control plane: each invokes the other's
functions, a TypeScript sendEvent resumes a Python wait, and the same options
declared in either SDK register the same definition."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.admin import Admin
from tests.support.clock import Clock
from tests.support.processes import ControlPlaneProcess, WorkerProcess, typescript_worker
from tests.support.waiting import wait_until
from tether.v1 import common_pb2
from tether.v1 import run_service_pb2 as rs

PYTHON_APP = "tests.integration.apps.cross:app"
TYPESCRIPT_APP = "tests/integration/apps/typescript/cross.ts"


class Polyglot:
    def __init__(self, db_url: str, workdir: Path) -> None:
        self.control_plane = ControlPlaneProcess(db_url, workdir, clock="virtual").start()
        address = self.control_plane.address
        self.admin = Admin(address)
        self.clock = Clock(address)
        self.workers = [
            WorkerProcess(PYTHON_APP, address, workdir, name="python").start(),
            typescript_worker(TYPESCRIPT_APP, address, workdir, name="typescript").start(),
        ]
        wait_until(
            lambda: self.admin.connected("py-double") and self.admin.connected("ts-double"),
            timeout=60,
            what="both workers to connect",
        )

    def run(self, name: str, data: dict[str, Any]) -> rs.GetRunResponse:
        [run_id] = self.admin.send(name, data)
        finished = wait_until(lambda: self.admin.finished(run_id), timeout=30, what=name)
        assert finished is not None
        return finished

    def definition(self, app_id: str, function_id: str) -> rs.FunctionInfo:
        return next(
            f
            for f in self.admin.functions()
            if f.app_id == app_id and f.definition.id == function_id
        )

    def logs(self) -> str:
        return "\n".join(
            [self.control_plane.logs(), *(f"--- {w.name} ---\n{w.logs()}" for w in self.workers)]
        )

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.admin.close()
        self.clock.close()
        self.control_plane.stop()


@pytest.fixture
def polyglot(db_url: str, tmp_path: Path) -> Iterator[Polyglot]:
    cluster = Polyglot(db_url, tmp_path)
    try:
        yield cluster
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.close()


def output(run: rs.GetRunResponse) -> Any:
    assert run.run.status == common_pb2.RUN_STATUS_COMPLETED, run.run.error
    return json.loads(run.run.output)


def test_python_invokes_typescript(polyglot: Polyglot) -> None:
    run = polyglot.run("cross/py-invokes-ts", {"n": 21})
    assert output(run) == {"from_typescript": {"doubled": 42, "sdk": "typescript"}}
    [step] = run.steps
    child = polyglot.admin.get(step.child_run_id).run
    assert (child.app_id, child.function_id, child.parent_run_id) == (
        "ts-app",
        "ts-double",
        run.run.id,
    )


def test_typescript_invokes_python(polyglot: Polyglot) -> None:
    run = polyglot.run("cross/ts-invokes-py", {"n": 5})
    assert output(run) == {"from_python": {"doubled": 10, "sdk": "python"}}


def test_a_typescript_send_event_resumes_a_python_wait(polyglot: Polyglot) -> None:
    key = uuid.uuid4().hex
    with polyglot.clock.held():
        [waiting] = polyglot.admin.send("cross/py-waits", {"key": key})
        wait_until(
            lambda: polyglot.admin.status(waiting) == common_pb2.RUN_STATUS_WAITING,
            what="the Python run to wait",
        )
        polyglot.run("cross/ts-say", {"key": key, "words": "hello from TypeScript"})
        finished = wait_until(lambda: polyglot.admin.finished(waiting), what="the Python run")
    assert finished is not None
    assert output(finished) == {"heard": "hello from TypeScript"}


@pytest.mark.parametrize("function_id", ["every-option", "batched"])
def test_the_same_options_register_the_same_definition(
    polyglot: Polyglot, function_id: str
) -> None:
    python = polyglot.definition("py-app", function_id)
    typescript = polyglot.definition("ts-app", function_id)
    assert python.definition.SerializeToString() == typescript.definition.SerializeToString()
    assert list(python.next_fire_ms) == list(typescript.next_fire_ms)
    if function_id == "every-option":
        [next_tick] = python.next_fire_ms  # the one cron trigger's
        assert next_tick > polyglot.clock.now_ms()
