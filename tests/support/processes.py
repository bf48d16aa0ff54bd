"""The control plane and workers as real processes, the way users run them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class ControlPlaneProcess:
    """``tether server`` in a subprocess, on a port chosen by the OS the first
    time and kept across restarts (so workers find it again)."""

    def __init__(
        self,
        db_url: str,
        workdir: Path,
        *,
        clock: str = "system",
        heartbeat_ms: int = 500,
        lease_timeout_ms: int = 3000,
        extra_args: Sequence[str] = (),
        http: bool = False,
    ) -> None:
        self.db_url = db_url
        self.http = http
        self.http_port = 0
        self.workdir = workdir
        self.clock = clock
        self.heartbeat_ms = heartbeat_ms
        self.lease_timeout_ms = lease_timeout_ms
        self.extra_args = list(extra_args)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"control-plane-{self.starts}.log"

    def start(self, timeout: float = 30.0) -> ControlPlaneProcess:
        self.starts += 1
        ready = self.workdir / f"ready-{self.starts}.json"
        command = [
            sys.executable,
            "-m",
            "controlplane",
            "server",
            "--db",
            self.db_url,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--clock",
            self.clock,
            "--heartbeat-ms",
            str(self.heartbeat_ms),
            "--lease-timeout-ms",
            str(self.lease_timeout_ms),
            "--ready-file",
            str(ready),
            *(["--http-port", str(self.http_port)] if self.http else ["--no-http"]),
            # A virtual clock skips days: retention would delete what a test looks at.
            *(["--retention", "forever"] if self.clock == "virtual" else []),
            *self.extra_args,
        ]
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        log.close()
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"the control plane exited:\n{self.log_path.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the control plane did not start:\n{self.log_path.read_text()}")
            time.sleep(0.02)
        ports = json.loads(ready.read_text())
        self.port = ports["grpc_port"]
        self.http_port = ports["http_port"] or 0
        return self

    @property
    def http_url(self) -> str:
        """The base URL of the UI and JSON API (started with ``http=True``)."""
        assert self.http_port, "started without HTTP"
        return f"http://127.0.0.1:{self.http_port}"

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, like a crash or an OOM kill."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def logs(self) -> str:
        return "\n".join(
            (self.workdir / f"control-plane-{n}.log").read_text(errors="replace")
            for n in range(1, self.starts + 1)
        )


class WorkerProcess:
    """``tether worker MODULE:APP`` in a subprocess; or, with ``command``, any
    SDK's worker (``node --import tsx app.ts``), run from the repository root."""

    def __init__(
        self,
        target: str,
        address: str,
        workdir: Path,
        *,
        name: str = "worker",
        capacity: int = 100,
        env: dict[str, str] | None = None,
        command: Sequence[str] | None = None,
    ) -> None:
        self.target = target
        self.command = list(command) if command is not None else None
        self.address = address
        self.workdir = workdir
        self.name = name
        self.capacity = capacity
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> WorkerProcess:
        env = dict(os.environ, TETHER_ADDRESS=self.address, PYTHONUNBUFFERED="1", **self.env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        log = self.log_path.open("ab")
        command = self.command or [
            sys.executable,
            "-m",
            "controlplane",
            "worker",
            self.target,
            "--capacity",
            str(self.capacity),
        ]
        self.process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
        )
        log.close()
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait for the drain to finish; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def typescript_worker(
    script: str, address: str, workdir: Path, *, name: str, env: dict[str, str] | None = None
) -> WorkerProcess:
    """A TypeScript worker: ``script`` (relative to the repository root) run by
    Node through tsx, against the built SDK of the workspace."""
    command = ["node", "--import", "tsx", script]
    return WorkerProcess(script, address, workdir, name=name, env=env, command=command)
