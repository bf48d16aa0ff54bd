"""A PostgreSQL outage as callers and operators see it: UNAVAILABLE with a
sentence (never UNKNOWN), health that says NOT_SERVING until the database is
back, and two log lines, not a traceback per call. The cluster is the test's
own, stopped and started under a running control plane."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.e2e.cli import tether
from tests.support import ledger, private_postgres
from tests.support.admin import Admin
from tests.support.private_postgres import PrivatePostgres
from tests.support.processes import ControlPlaneProcess, WorkerProcess
from tests.support.raw_worker import RawWorker, definition, hello
from tests.support.waiting import wait_until
from tether.v1 import common_pb2
from tether.v1 import run_service_pb2 as rs

pytestmark = pytest.mark.skipif(
    not private_postgres.available(), reason="PostgreSQL's initdb and pg_ctl are not installed"
)

UNAVAILABLE = "database unavailable, retrying"


@pytest.fixture
def database() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres().start()
    yield cluster
    cluster.close()


@pytest.fixture
def control_plane(database: PrivatePostgres, tmp_path: Path) -> Iterator[ControlPlaneProcess]:
    process = ControlPlaneProcess(database.url, tmp_path, http=True).start()
    yield process
    process.stop()


def send_status(admin: Admin) -> tuple[grpc.StatusCode, str]:
    try:
        admin.send("outage/ping", {"n": 1})
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


async def connect_status(address: str) -> tuple[grpc.StatusCode, str]:
    worker = RawWorker(address)
    try:
        await worker.send(hello([definition("outage-fn", "outage/go")]))
        return await worker.end_status()
    finally:
        await worker.close()


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            status: int = reply.status
            return status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_an_outage_is_unavailable_to_callers_not_ready_in_health_and_two_log_lines(
    database: PrivatePostgres, control_plane: ControlPlaneProcess
) -> None:
    admin = Admin(control_plane.address)
    health = health_pb2_grpc.HealthStub(admin.channel)
    request = health_pb2.HealthCheckRequest(service="")
    base = control_plane.http_url
    try:
        assert send_status(admin) == (grpc.StatusCode.OK, "")
        assert health.Check(request).status == health_pb2.HealthCheckResponse.SERVING
        assert http_get(f"{base}/readyz")[0] == 200

        database.stop()
        wait_until(
            lambda: send_status(admin) == (grpc.StatusCode.UNAVAILABLE, UNAVAILABLE), timeout=30
        )
        wait_until(
            lambda: health.Check(request).status == health_pb2.HealthCheckResponse.NOT_SERVING,
            timeout=30,
        )
        assert http_get(f"{base}/readyz")[0] == 503
        assert http_get(f"{base}/healthz")[0] == 200, "liveness does not need the database"
        for _ in range(5):  # more failing calls, and no more log lines
            assert send_status(admin)[0] == grpc.StatusCode.UNAVAILABLE
        status, body = http_get(f"{base}/api/runs")
        assert (status, json.loads(body)["message"]) == (503, UNAVAILABLE)
        # A worker connecting now is told to come back, not rejected for good.
        assert asyncio.run(connect_status(control_plane.address)) == (
            grpc.StatusCode.UNAVAILABLE,
            UNAVAILABLE,
        )

        database.start()
        wait_until(lambda: send_status(admin) == (grpc.StatusCode.OK, ""), timeout=30)
        wait_until(
            lambda: health.Check(request).status == health_pb2.HealthCheckResponse.SERVING,
            timeout=30,
        )
        assert http_get(f"{base}/readyz")[0] == 200
    finally:
        admin.close()
    log = control_plane.logs()
    assert log.count(UNAVAILABLE) == 1, log
    assert log.count("database available again") == 1, log
    assert "Traceback" not in log, log


def test_a_key_looked_up_during_an_outage_is_unavailable_not_refused(
    database: PrivatePostgres, tmp_path: Path
) -> None:
    made = tether("keys", "create", "--name", "ops", "--role", "admin", "--db", database.url)
    [known] = made.ok().stdout.splitlines()
    process = ControlPlaneProcess(database.url, tmp_path, http=True).start()
    unknown = "tk_" + "A" * 43  # not in memory: only the database could say
    try:
        listing = "/tether.v1.RunService/ListRuns"
        assert call_status(process.address, listing, known)[0] == grpc.StatusCode.OK
        database.stop()
        wait_until(
            lambda: (
                call_status(process.address, listing, known)
                == (grpc.StatusCode.UNAVAILABLE, UNAVAILABLE)
            ),
            timeout=30,
            what="the outage to be seen",
        )
        assert call_status(process.address, listing, unknown) == (
            grpc.StatusCode.UNAVAILABLE,
            UNAVAILABLE,
        )
        request = urllib.request.Request(
            f"{process.http_url}/api/runs", headers={"Authorization": f"Bearer {unknown}"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 503
        assert json.loads(refused.value.read())["message"] == UNAVAILABLE

        database.start()
        wait_until(
            lambda: (
                call_status(process.address, listing, unknown)[0] == grpc.StatusCode.UNAUTHENTICATED
            ),
            timeout=30,
            what="the unknown key to be refused once the database answers",
        )
    finally:
        process.stop()
    assert "Traceback" not in process.logs()


def call_status(address: str, method: str, key: str) -> tuple[grpc.StatusCode, str]:
    with grpc.insecure_channel(address) as channel:
        try:
            channel.unary_unary(method, request_serializer=None, response_deserializer=None)(
                b"", metadata=(("authorization", f"Bearer {key}"),), timeout=10
            )
        except grpc.RpcError as error:
            return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


def test_a_short_outage_re_runs_no_step_and_the_runs_go_on(
    database: PrivatePostgres, control_plane: ControlPlaneProcess, tmp_path: Path
) -> None:
    """PostgreSQL stopped for 5 s while runs execute: the workers' results
    wait, unacknowledged, and are applied when it is back; no lease is lost."""
    journal = tmp_path / "ledger.tsv"
    worker = WorkerProcess(
        "tests.integration.apps.durable:app",
        control_plane.address,
        tmp_path,
        env={ledger.LEDGER_VARIABLE: str(journal)},
    ).start()
    admin = Admin(control_plane.address)
    try:
        wait_until(lambda: any(admin.workers_of("durable")), what="the worker to register")
        run_ids = admin.send_many([("test/paced", {}) for _ in range(10)])
        wait_until(
            lambda: journal.exists() and len(ledger.read(journal)) >= 10,
            what="steps to be running",
        )
        database.stop()
        time.sleep(5)  # the outage itself: five seconds without the database
        database.start()
        finished = [wait_until(lambda r=r: admin.finished(r), timeout=60) for r in run_ids]  # type: ignore[misc]
    finally:
        admin.close()
        worker.kill()
    for run_id, run in zip(run_ids, finished, strict=True):
        assert run is not None
        assert run.run.status == common_pb2.RUN_STATUS_COMPLETED, run.run.error
        lost = [h for h in run.history if h.kind == rs.HISTORY_KIND_EXECUTION_LOST]
        assert lost == [], f"run {run_id} lost its lease: {lost[0].message}"
    counts = Counter((row[0], row[1]) for row in ledger.read(journal))
    reruns = {key: n for key, n in counts.items() if n > 1}
    assert reruns == {}, "steps ran again after the outage"
    assert len(counts) == 10 * 6
