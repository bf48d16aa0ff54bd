"""The control plane and the worker as real processes, started the way users
start them (``python -m controlplane server|worker``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def wait_for(condition: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def _python_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class Process:
    def __init__(self, name: str, command: list[str], log_path: Path, env: dict[str, str]):
        self.name = name
        self.command = command
        self.log_path = log_path
        self.env = env
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=self.env
            )

    def exited(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_control_plane(
    db_url: str, workdir: Path, *, timeout: float = 60.0, extra_args: Sequence[str] = ()
) -> tuple[Process, int]:
    """``tether server`` on a port chosen by the OS (with ``extra_args`` after
    the others, e.g. ``--retention 1d``); returns it and its port."""
    ready = workdir / "control-plane.ready.json"
    # A file left by an earlier run in the same directory names a dead port.
    ready.unlink(missing_ok=True)
    process = Process(
        "control plane",
        [
            sys.executable,
            "-m",
            "controlplane",
            "server",
            "--db",
            db_url,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--ready-file",
            str(ready),
            "--no-http",
            *extra_args,
        ],
        workdir / "control-plane.log",
        _python_env(),
    )
    process.start()

    def is_ready() -> bool:
        if process.exited() is not None:
            raise RuntimeError(f"the control plane exited:\n{process.tail()}")
        return ready.exists()

    wait_for(is_ready, timeout=timeout, what="the control plane to listen")
    port = int(json.loads(ready.read_text())["grpc_port"])
    return process, port


def start_typescript_worker(script: str, address: str, capacity: int, workdir: Path) -> Process:
    """A TypeScript worker: ``script`` run by Node through tsx, pointed at ``address``."""
    process = Process(
        "worker",
        ["node", "--import", "tsx", script],
        workdir / "worker.log",
        dict(os.environ, TETHER_ADDRESS=address, TETHER_BENCH_CAPACITY=str(capacity)),
    )
    process.start()
    return process


def start_worker(target: str, address: str, capacity: int, workdir: Path) -> Process:
    """``tether worker MODULE:APP --capacity N`` pointed at ``address``."""
    process = Process(
        "worker",
        [
            sys.executable,
            "-m",
            "controlplane",
            "worker",
            target,
            "--capacity",
            str(capacity),
        ],
        workdir / "worker.log",
        _python_env(TETHER_ADDRESS=address),
    )
    process.start()
    return process
