"""Running the ``tether`` command the way a user does: a separate process, its exit
code and what it prints."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from tests.support.processes import ROOT

RUN_ID = re.compile(r"started run (\S+)")


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"$ tether {' '.join(self.args)}\nexit code {self.code}\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )

    def ok(self) -> Result:
        """This result, after checking the command succeeded."""
        assert self.code == 0, str(self)
        return self

    def json(self) -> Any:
        assert self.code == 0, str(self)
        try:
            return json.loads(self.stdout)
        except ValueError as error:
            raise AssertionError(f"not JSON ({error}):\n{self}") from None

    @property
    def error_lines(self) -> list[str]:
        """The non-empty lines printed on stderr."""
        return [line for line in self.stderr.splitlines() if line.strip()]

    def started_runs(self) -> list[str]:
        """The run ids a plain ``tether send`` reported."""
        return RUN_ID.findall(self.stdout)


def tether(
    *args: str,
    address: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Result:
    """Run ``tether ARGS`` (``--address ADDRESS`` appended when given) and wait for it."""
    command = list(args)
    if address is not None:
        command += ["--address", address]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    environment.update(env or {})
    completed = subprocess.run(
        [sys.executable, "-m", "controlplane", *command],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=environment,
        check=False,
    )
    return Result(tuple(command), completed.returncode, completed.stdout, completed.stderr)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
