"""`tether server` as production runs it: API keys, TLS, health checks, reflection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from tests.support.admin import FINISHED
from tests.support.ledger import LEDGER_VARIABLE
from tests.support.processes import ROOT, ControlPlaneProcess, WorkerProcess
from tests.support.waiting import wait_until
from tether import Tether, UnauthenticatedError
from tether.v1 import common_pb2, run_service_pb2, run_service_pb2_grpc

APP = "tests.integration.apps.durable:app"


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[ControlPlaneProcess]:
    process = ControlPlaneProcess(
        f"sqlite:///{tmp_path / 'tether.db'}", tmp_path, extra_args=["--api-key", "s3cret"]
    ).start()
    yield process
    process.stop()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controlplane", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


async def test_calls_without_the_api_key_are_refused(keyed: ControlPlaneProcess) -> None:
    anonymous = Tether(app_id="durable", address=keyed.address)
    trusted = Tether(app_id="durable", address=keyed.address, api_key="s3cret")
    try:
        with pytest.raises(UnauthenticatedError, match="missing or invalid API key"):
            await anonymous.send({"name": "test/napper", "data": {}})
        with pytest.raises(UnauthenticatedError):
            await Tether(app_id="durable", address=keyed.address, api_key="wrong").runs.list()
        [result] = await trusted.send({"name": "test/napper", "data": {"seconds": 0}})
        assert result.event_id
    finally:
        await anonymous.close()
        await trusted.close()


def test_workers_need_the_api_key(keyed: ControlPlaneProcess, tmp_path: Path) -> None:
    env = {LEDGER_VARIABLE: str(tmp_path / "ledger.tsv")}
    stranger = WorkerProcess(APP, keyed.address, tmp_path, name="stranger", env=env).start()
    assert stranger.process is not None
    assert stranger.process.wait(60) != 0
    assert "missing or invalid API key" in stranger.logs()

    member = WorkerProcess(
        APP, keyed.address, tmp_path, name="member", env={**env, "TETHER_API_KEY": "s3cret"}
    ).start()
    try:

        def registered() -> bool:
            listed = _cli("functions", "list", "--json", "--address", keyed.address,
                          "--api-key", "s3cret")  # fmt: skip
            return listed.returncode == 0 and any(
                f["id"] == "napper" and f["connected_workers"] for f in json.loads(listed.stdout)
            )

        wait_until(registered, what="the worker with the key to register")
        sent = _cli(
            "send", "test/napper", "--data", '{"seconds": 0}', "--json",
            "--address", keyed.address, "--api-key", "s3cret",
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        run_id = json.loads(sent.stdout)["run_ids"][0]
        channel = grpc.insecure_channel(keyed.address)
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        metadata = (("authorization", "Bearer s3cret"),)

        def finished() -> int | None:
            run = runs.GetRun(run_service_pb2.GetRunRequest(run_id=run_id), metadata=metadata).run
            return run.status if run.status in FINISHED else None

        assert wait_until(finished, what="the run") == common_pb2.RUN_STATUS_COMPLETED
        channel.close()
    finally:
        member.kill()


def test_health_checks_and_reflection_need_no_key(keyed: ControlPlaneProcess) -> None:
    channel = grpc.insecure_channel(keyed.address)
    try:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "tether.v1.WorkerService"):
            response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert {
            "tether.v1.EventService",
            "tether.v1.WorkerService",
            "tether.v1.RunService",
            "tether.v1.ClockService",
            "grpc.health.v1.Health",
        } <= services
    finally:
        channel.close()


def test_tls_end_to_end(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    plane = ControlPlaneProcess(
        f"sqlite:///{tmp_path / 'tether.db'}",
        tmp_path,
        extra_args=["--tls-cert", str(cert), "--tls-key", str(key)],
    ).start()
    # gRPC trusts this self-signed certificate through its roots file.
    trust = {"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(cert)}
    worker = WorkerProcess(
        APP,
        plane.address,
        tmp_path,
        env={**trust, "TETHER_TLS": "1", LEDGER_VARIABLE: str(tmp_path / "ledger.tsv")},
    ).start()
    try:

        def registered() -> bool:
            listed = _cli("functions", "list", "--json", "--tls", "--address", plane.address,
                          env=trust)  # fmt: skip
            return listed.returncode == 0 and '"connected_workers": 1' in listed.stdout

        wait_until(registered, timeout=30, what="the worker to connect over TLS")
        plain = _cli("runs", "list", "--address", plane.address)
        assert plain.returncode != 0, "a plaintext client reached a TLS server"

        sent = _cli(
            "send", "test/napper", "--data", '{"seconds": 0}', "--json", "--tls",
            "--address", plane.address,
            env=trust,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        run_id = json.loads(sent.stdout)["run_ids"][0]

        def completed() -> bool:
            watched = _cli("runs", "show", run_id, "--tls", "--address", plane.address, env=trust)
            return watched.returncode == 0 and "■ completed" in watched.stdout

        wait_until(completed, timeout=30, what="the run over TLS")
    finally:
        worker.kill()
        plane.stop()
