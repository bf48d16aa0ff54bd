"""Environments against a real control plane, as two teams sharing it would
try them: the same app deployed in ``default`` and in ``prod``, each with its
own keys; nothing sent, read, resumed or cancelled in one reaches the other,
over gRPC, the JSON API or the CLI; and a deleted environment stops at once."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from sqlalchemy import create_engine, inspect, make_url

from controlplane.model.access import Role
from tests.e2e.cli import tether
from tests.support.processes import ControlPlaneProcess, WorkerProcess
from tests.support.waiting import wait_until, wait_until_async
from tether import NotFoundError, RunStatus, Tether, UnauthenticatedError
from tether.v1 import key_service_pb2 as ks
from tether.v1 import key_service_pb2_grpc as ks_grpc

APP = "tests.integration.apps.tenants:app"


def create_key(db_url: str, environment: str, role: Role, *apps: str) -> str:
    app_args = [arg for app in apps for arg in ("--app", app)]
    made = tether(
        "keys", "create", "--name", f"{environment} {role}", "--role", role,
        "--env", environment, *app_args, "--db", db_url,
    ).ok()  # fmt: skip
    [secret] = made.stdout.splitlines()
    return secret


@dataclass
class Team:
    """One environment's keys and its worker."""

    environment: str
    worker_key: str
    admin_key: str
    read_key: str
    worker: WorkerProcess


@pytest.fixture
def control_plane(db_url: str, tmp_path: Path) -> Iterator[ControlPlaneProcess]:
    process = ControlPlaneProcess(
        db_url, tmp_path, http=True, extra_args=["--api-key", "bootstrap-admin-key"]
    ).start()
    yield process
    process.stop()


@pytest.fixture
def teams(control_plane: ControlPlaneProcess, tmp_path: Path) -> Iterator[dict[str, Team]]:
    db_url = control_plane.db_url
    tether("env", "create", "prod", "--db", db_url).ok()
    made: dict[str, Team] = {}
    for environment in ("default", "prod"):
        worker_key = create_key(db_url, environment, Role.WORKER, "shop")
        worker = WorkerProcess(
            APP,
            control_plane.address,
            tmp_path,
            name=environment,
            env={"TETHER_API_KEY": worker_key, "TETHER_TEST_WORKER": environment},
        ).start()
        made[environment] = Team(
            environment,
            worker_key,
            create_key(db_url, environment, Role.ADMIN),
            create_key(db_url, environment, Role.READ),
            worker,
        )
    yield made
    for team in made.values():
        team.worker.kill()


@pytest.fixture
async def clients(
    control_plane: ControlPlaneProcess, teams: dict[str, Team]
) -> AsyncIterator[dict[str, Tether]]:
    opened = {
        name: Tether(app_id="shop", address=control_plane.address, api_key=team.admin_key)
        for name, team in teams.items()
    }
    for name, client in opened.items():

        async def registered(client: Tether = client) -> bool:
            return len(await client.functions.list()) == 2

        await wait_until_async(registered, timeout=30, what=f"the {name} worker to register")
    yield opened
    for client in opened.values():
        await client.close()


def http_get(url: str, key: str) -> tuple[int, object]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_nothing_in_one_environment_reaches_another(
    control_plane: ControlPlaneProcess, teams: dict[str, Team], clients: dict[str, Tether]
) -> None:
    default, prod = clients["default"], clients["prod"]
    [paid] = await prod.send({"name": "order/paid", "data": {"order": 1, "card": "4242"}})
    [other] = await default.send({"name": "order/paid", "data": {"order": 2}})
    assert len(paid.run_ids) == 2, "fulfil and audit of prod, nothing of default"
    assert len(other.run_ids) == 2

    runs = {run_id: await prod.runs.get(run_id) for run_id in paid.run_ids}
    [fulfil_id] = [i for i, run in runs.items() if run.function_id == "fulfil"]
    await prod.runs.wait(fulfil_id, until=RunStatus.WAITING, timeout=30)
    assert (await prod.runs.get(fulfil_id)).steps[0].output == "prod", "ran on prod's worker"

    # default's admin key sees nothing of prod: not its runs, not its events.
    listed = {run.id for run in (await default.runs.list(all_apps=True)).runs}
    assert listed == set(other.run_ids)
    for run_id in paid.run_ids:
        with pytest.raises(NotFoundError):
            await default.runs.get(run_id)
        with pytest.raises(NotFoundError):
            await default.runs.cancel(run_id)
    code, _ = http_get(
        f"{control_plane.http_url}/api/events/{paid.event_id}", teams["default"].read_key
    )
    assert code == 404
    code, body = http_get(f"{control_plane.http_url}/api/runs", teams["default"].read_key)
    assert code == 200
    assert isinstance(body, dict)
    assert {run["id"] for run in body["runs"]} == set(other.run_ids)
    code, body = http_get(f"{control_plane.http_url}/api/runs", teams["prod"].read_key)
    assert code == 200
    assert isinstance(body, dict)
    assert {run["id"] for run in body["runs"]} == set(paid.run_ids)

    # An event of the same name and order in default resumes nothing in prod.
    [shipped_elsewhere] = await default.send({"name": "order/shipped", "data": {"order": 1}})
    assert fulfil_id not in shipped_elsewhere.resumed_run_ids
    assert (await prod.runs.get(fulfil_id)).status is RunStatus.WAITING
    [shipped] = await prod.send({"name": "order/shipped", "data": {"order": 1}})
    done = await prod.runs.wait(fulfil_id, timeout=30)
    assert done.output == {"packed_by": "prod", "shipped": True}
    assert len(shipped.run_ids) == 1, "prod's audit, not default's"
    assert completed_runs(control_plane, "prod", "fulfil") == 1
    assert completed_runs(control_plane, "default", "fulfil") == 0

    # prod's admin manages prod's keys, and cannot even see default's.
    with grpc.insecure_channel(control_plane.address) as channel:
        keys = ks_grpc.KeyServiceStub(channel)
        as_prod = (("authorization", f"Bearer {teams['prod'].admin_key}"),)
        as_default = (("authorization", f"Bearer {teams['default'].admin_key}"),)
        prod_keys = {k.id for k in keys.ListKeys(ks.ListKeysRequest(), metadata=as_prod).keys}
        default_keys = {k.id for k in keys.ListKeys(ks.ListKeysRequest(), metadata=as_default).keys}
        assert len(prod_keys) == len(default_keys) == 3
        assert not prod_keys & default_keys
        for key_id in default_keys:
            with pytest.raises(grpc.RpcError) as refused:
                keys.RevokeKey(ks.RevokeKeyRequest(key_id=key_id), metadata=as_prod)
            assert refused.value.code() == grpc.StatusCode.NOT_FOUND

    # The CLI with a read key of default lists default's events only.
    listed_events = tether(
        "events", "list", "--json", "--address", control_plane.address,
        env={"TETHER_API_KEY": teams["default"].read_key},
    ).ok()  # fmt: skip
    ids = {event["id"] for event in listed_events.json()}
    assert ids == {other.event_id, shipped_elsewhere.event_id}


def completed_runs(control_plane: ControlPlaneProcess, environment: str, function: str) -> float:
    """tether_runs_completed_total of a function of an environment, from /metrics."""
    with urllib.request.urlopen(f"{control_plane.http_url}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("tether_runs_completed_total{") and (
            f'tether_environment="{environment}"' in line
            and f'tether_function_id="{function}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _holds_prod(db_url: str, tmp_path: Path) -> bool:
    """Whether prod's data is still in the database."""
    if make_url(db_url).get_backend_name() == "sqlite":
        return (tmp_path / "tether.env-prod.db").exists()
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return "tether_env_prod" in inspect(conn).get_schema_names()
    finally:
        engine.dispose()


async def test_a_deleted_environment_stops_serving_and_its_data_goes(
    control_plane: ControlPlaneProcess,
    teams: dict[str, Team],
    clients: dict[str, Tether],
    tmp_path: Path,
) -> None:
    prod = clients["prod"]
    [paid] = await prod.send({"name": "order/paid", "data": {"order": 7}})
    assert _holds_prod(control_plane.db_url, tmp_path)

    deleted = tether("env", "delete", "prod", "--yes", "--db", control_plane.db_url).ok()
    assert "deleted the data of environment prod" in deleted.stdout

    with pytest.raises(UnauthenticatedError):
        await prod.runs.get(paid.run_ids[0])
    wait_until(
        lambda: (
            "the environment was deleted" in teams["prod"].worker.logs()
            or "UNAUTHENTICATED" in teams["prod"].worker.logs()
            or not teams["prod"].worker.alive()
        ),
        timeout=30,
        what="prod's worker to be disconnected",
    )
    assert not _holds_prod(control_plane.db_url, tmp_path)
    assert "default" in tether("env", "list", "--db", control_plane.db_url).ok().stdout
    assert "prod" not in tether("env", "list", "--db", control_plane.db_url).ok().stdout
    # default goes on, and so do its metrics (prod's are gone).
    [again] = await clients["default"].send({"name": "order/paid", "data": {"order": 8}})
    assert len(again.run_ids) == 2
    [audit] = [
        i for i in again.run_ids if (await clients["default"].runs.get(i)).function_id == "audit"
    ]
    await clients["default"].runs.wait(audit, timeout=30)
    assert completed_runs(control_plane, "default", "audit") == 1
    assert completed_runs(control_plane, "prod", "audit") == 0


def test_environment_and_key_mistakes_are_named(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'tether.db'}"
    bad = tether("env", "create", "Prod_1", "--db", db_url)
    assert bad.code != 0
    assert "invalid environment name 'Prod_1': use 1 to 32 lowercase letters" in bad.stderr
    unknown = tether(
        "keys", "create", "--name", "x", "--role", "send", "--env", "nope", "--db", db_url
    )
    assert unknown.code != 0
    assert "no environment 'nope'" in unknown.stderr
    tether("env", "create", "prod", "--db", db_url).ok()
    again = tether("env", "create", "prod", "--db", db_url)
    assert again.code != 0
    assert "an environment named 'prod' already exists" in again.stderr
    default = tether("env", "delete", "default", "--yes", "--db", db_url)
    assert default.code != 0
    assert "the default environment cannot be deleted" in default.stderr
    assert "Traceback" not in bad.stderr + unknown.stderr + again.stderr + default.stderr
