"""The latency scenario on Restate, for comparison: a Restate server (its
own log and storage; the npm package ``@restatedev/restate-server``, pinned in
``bench/restate/``) and a Python service of the ``restate-sdk`` package served
over HTTP/2, both installed only for the benchmark.

The service's handler runs ``data["steps"]`` ``ctx.run`` steps, each returning
the wall clock (ns) when it ran. Each sample sends one invocation
(``POST /BenchLatency/run/send``: the Send call, answered once the invocation
is accepted), then attaches to it until it completes, and only then sends the
next: the same three figures as bench/latency_workload.py.

This module also runs the service itself (``python -m bench.restate_workload
serve --port P``), in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.latency_workload import LatencyMeasurement, LatencyRound
from bench.processes import ROOT, Process, _python_env, wait_for

SERVER = ROOT / "bench" / "restate" / "node_modules" / ".bin" / "restate-server"
SERVICE = "BenchLatency"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: Any, timeout: float, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **(headers or {})},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        data = response.read()
    return json.loads(data) if data else None


def _get(url: str, timeout: float) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def measure_restate_latency(
    *, samples: int, steps: int, rounds: int, warmup: int, timeout: float, workdir: Path
) -> LatencyMeasurement:
    """A Restate server and the Python service on loopback; ``warmup`` rounds,
    then ``rounds`` measured ones of ``samples`` invocations each."""
    measurement = LatencyMeasurement("Restate", "restate", steps)
    if not SERVER.exists():
        measurement.error = "the Restate server is not installed: run `make bench`"
        return measurement
    try:
        import restate  # noqa: F401
    except ImportError:
        measurement.error = "restate-sdk is not installed here: run `make bench`"
        return measurement
    directory = workdir / "restate"
    directory.mkdir(parents=True, exist_ok=True)
    ingress, admin, node, service_port = (_free_port() for _ in range(4))
    env = dict(os.environ)
    env.update(
        RESTATE_BASE_DIR=str(directory / "data"),
        RESTATE_INGRESS__BIND_ADDRESS=f"127.0.0.1:{ingress}",
        RESTATE_ADMIN__BIND_ADDRESS=f"127.0.0.1:{admin}",
        RESTATE_BIND_ADDRESS=f"127.0.0.1:{node}",
        RESTATE_LISTEN_MODE="tcp",
        RESTATE_LOG_FILTER="warn",
    )
    server = Process("restate-server", [str(SERVER), "--no-logo"], directory / "server.log", env)
    service = Process(
        "restate-service",
        [sys.executable, "-m", "bench.restate_workload", "serve", "--port", str(service_port)],
        directory / "service.log",
        _python_env(),
    )
    try:
        server.start()
        service.start()
        wait_for(lambda: _reachable(f"http://127.0.0.1:{admin}/health"), timeout=60, what="Restate")
        _post(
            f"http://127.0.0.1:{admin}/deployments",
            {"uri": f"http://127.0.0.1:{service_port}"},
            timeout,
        )
        measurement.notes = {"restate_server": _version(), "restate_sdk": _sdk_version()}
        base = f"http://127.0.0.1:{ingress}"
        for index in range(warmup + rounds):
            result = _round(base, samples, steps, timeout)
            if index >= warmup:
                measurement.rounds.append(result)
    except (OSError, RuntimeError, TimeoutError, ValueError) as error:
        measurement.error = f"{type(error).__name__}: {error}"
        measurement.notes.update({p.name: p.tail(10) for p in (server, service)})
    finally:
        service.stop()
        server.stop()
    return measurement


def _reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


def _round(base: str, samples: int, steps: int, timeout: float) -> LatencyRound:
    result = LatencyRound()
    for _ in range(samples):
        started = time.time_ns()
        accepted = _post(f"{base}/{SERVICE}/run/send", steps, timeout)
        returned = time.time_ns()
        stamps: list[int] = _get(
            f"{base}/restate/invocation/{accepted['invocationId']}/attach", timeout
        )
        completed = time.time_ns()
        result.add(
            (returned - started) / 1e6, (stamps[0] - started) / 1e6, (completed - started) / 1e6
        )
        time.sleep(0.002)
    return result


def _version() -> str:
    package = ROOT / "bench" / "restate" / "node_modules" / "@restatedev" / "restate-server"
    try:
        return str(json.loads((package / "package.json").read_text())["version"])
    except (OSError, KeyError, ValueError):
        return ""


def _sdk_version() -> str:
    from importlib.metadata import version

    return version("restate-sdk")


# -- the service (a child process) ---------------------------------------------------------


def serve(port: int) -> None:
    import asyncio

    import hypercorn.asyncio
    import hypercorn.config
    import restate

    service = restate.Service(SERVICE)

    def stamp() -> int:
        return time.time_ns()

    async def run(ctx: Any, steps: int) -> list[int]:
        stamps: list[int] = []
        for index in range(steps):
            stamps.append(await ctx.run(f"step-{index}", stamp))
        return stamps

    service.handler("run")(run)

    config = hypercorn.config.Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.h2_max_concurrent_streams = 2**31 - 1
    config.keep_alive_max_requests = 2**31 - 1
    config.keep_alive_timeout = 2**31 - 1
    asyncio.run(hypercorn.asyncio.serve(restate.app(services=[service]), config))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.restate_workload")
    commands = parser.add_subparsers(dest="command", required=True)
    serving = commands.add_parser("serve", help="serve the benchmark's Restate service")
    serving.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve(args.port)


if __name__ == "__main__":
    main()
