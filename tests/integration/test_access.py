"""Keys with roles against a real control plane, as an attacker would try them:
every method with every role (the table says which may), no key and a forged
one, a worker key used for another app, a key revoked while the server runs,
and the JSON API's routes."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from controlplane.api.auth import METHOD_ROLES
from controlplane.http.server import route_role
from controlplane.model.access import Caller, Role
from tests.e2e.cli import tether
from tests.support.processes import ControlPlaneProcess
from tests.support.raw_worker import definition, hello
from tests.support.waiting import wait_until
from tether import PermissionDeniedError, Tether
from tether.v1 import key_service_pb2 as ks
from tether.v1 import key_service_pb2_grpc as ks_grpc
from tether.v1 import worker_service_pb2 as ws

BOOTSTRAP = "bootstrap-admin-key"


def create_key(db_url: str, role: Role, *apps: str) -> tuple[str, str]:
    """(key id, secret) of a key made with ``tether keys create``."""
    app_args = [arg for app in apps for arg in ("--app", app)]
    made = tether(
        "keys", "create", "--name", f"{role} key", "--role", role, *app_args, "--db", db_url
    )
    assert made.code == 0, made.stderr
    [secret] = made.stdout.splitlines()
    assert "only time the key is shown" in made.stderr
    key_id = made.stderr.split()[2]
    return key_id, secret


@pytest.fixture
def control_plane(db_url: str, tmp_path: Path) -> Iterator[ControlPlaneProcess]:
    process = ControlPlaneProcess(
        db_url, tmp_path, http=True, extra_args=["--api-key", BOOTSTRAP]
    ).start()
    yield process
    process.stop()


@pytest.fixture
def secrets(control_plane: ControlPlaneProcess) -> dict[Role, str]:
    return {role: create_key(control_plane.db_url, role)[1] for role in Role}


def call(address: str, method: str, key: str | None) -> tuple[grpc.StatusCode, str]:
    """The status of ``method`` called with an empty request and this key."""
    metadata: tuple[tuple[str, str | bytes], ...] = (
        (("authorization", f"Bearer {key}"),) if key is not None else ()
    )
    raw: dict[str, Any] = {"request_serializer": None, "response_deserializer": None}
    with grpc.insecure_channel(address) as channel:
        try:
            if method.endswith("/Connect"):
                frames = channel.stream_stream(method, **raw)(
                    iter([]), metadata=metadata, timeout=10
                )
                list(frames)
            elif method.endswith("/WaitRun"):
                list(channel.unary_stream(method, **raw)(b"", metadata=metadata, timeout=10))
            else:
                channel.unary_unary(method, **raw)(b"", metadata=metadata, timeout=10)
        except grpc.RpcError as error:
            return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


@pytest.mark.parametrize("role", list(Role), ids=str)
def test_every_method_allows_exactly_the_roles_the_table_gives(
    control_plane: ControlPlaneProcess, secrets: dict[Role, str], role: Role
) -> None:
    for method, needed in METHOD_ROLES.items():
        code, details = call(control_plane.address, method, secrets[role])
        if Caller(role).may(needed):
            assert code not in (
                grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.UNAUTHENTICATED,
            ), f"{method} refused a {role} key: {details}"
        else:
            name = method.rsplit("/", 1)[-1]
            alternative = "" if needed is Role.ADMIN else " (or 'admin')"
            assert (code, details) == (
                grpc.StatusCode.PERMISSION_DENIED,
                f"{name} needs the '{needed}' role{alternative}; "
                f"this API key has the '{role}' role",
            ), method


def test_no_key_or_a_forged_one_is_unauthenticated_everywhere(
    control_plane: ControlPlaneProcess, secrets: dict[Role, str]
) -> None:
    forged = secrets[Role.ADMIN][:-4] + "AAAA"
    for method in METHOD_ROLES:
        for key in (None, forged, ""):
            code, details = call(control_plane.address, method, key)
            assert code == grpc.StatusCode.UNAUTHENTICATED, (method, key, details)
            assert details == "missing or invalid API key: send 'authorization: Bearer <key>'"


async def test_a_worker_key_serves_its_apps_and_no_other(
    control_plane: ControlPlaneProcess,
) -> None:
    _, secret = create_key(control_plane.db_url, Role.WORKER, "shop")
    metadata = (("authorization", f"Bearer {secret}"),)
    async with grpc.aio.insecure_channel(control_plane.address) as channel:
        connect: Any = channel.stream_stream(
            "/tether.v1.WorkerService/Connect",
            request_serializer=ws.WorkerFrame.SerializeToString,
            response_deserializer=ws.ServerFrame.FromString,
        )
        impostor = connect(metadata=metadata)
        await impostor.write(hello([definition("steal", "billing/paid")], app_id="billing"))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await impostor.read()
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert refused.value.details() == "this API key may serve app(s) 'shop' only, not 'billing'"

        own = connect(metadata=metadata)
        await own.write(hello([definition("fulfil", "shop/paid")], app_id="shop"))
        frame = await own.read()
        assert frame.WhichOneof("frame") == "welcome"
        own.cancel()


def test_a_revoked_key_stops_working_without_a_restart(
    control_plane: ControlPlaneProcess,
) -> None:
    key_id, secret = create_key(control_plane.db_url, Role.SEND)
    send = "/tether.v1.EventService/Send"
    # Created by another process: it works at once.
    assert call(control_plane.address, send, secret)[0] != grpc.StatusCode.UNAUTHENTICATED
    revoked = tether("keys", "revoke", key_id, "--db", control_plane.db_url)
    assert revoked.code == 0, revoked.stderr
    wait_until(
        lambda: call(control_plane.address, send, secret)[0] == grpc.StatusCode.UNAUTHENTICATED,
        timeout=20,
        what="the revoked key to be refused",
    )
    listed = tether("keys", "list", "--all", "--json", "--db", control_plane.db_url)
    [entry] = [json.loads(line) for line in listed.stdout.splitlines() if key_id in line]
    assert entry["revoked_at_ms"]
    assert secret not in listed.stdout


def http(url: str, key: str | None, method: str = "GET", body: object = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_json_api_checks_the_role_of_each_route(
    control_plane: ControlPlaneProcess, secrets: dict[Role, str]
) -> None:
    base = control_plane.http_url
    event = {"name": "shop/paid", "data": {}}
    assert http(f"{base}/api/runs", None)[0] == 401
    assert http(f"{base}/api/runs", secrets[Role.READ])[0] == 200
    assert http(f"{base}/api/events", secrets[Role.SEND], "POST", event)[0] == 200
    status, problem = http(f"{base}/api/events", secrets[Role.READ], "POST", event)
    assert (status, problem["error"]) == (403, "permission_denied")
    assert problem["message"] == (
        "POST /api/events needs the 'send' role (or 'admin'); this API key has the 'read' role"
    )
    status, problem = http(
        f"{base}/api/runs/01ZZZZZZZZZZZZZZZZZZZZZZZZ/cancel", secrets[Role.READ], "POST", {}
    )
    assert (status, problem["error"]) == (403, "permission_denied")
    assert http(f"{base}/api/runs", secrets[Role.SEND])[0] == 403
    assert http(f"{base}/api/runs", secrets[Role.ADMIN])[0] == 200
    assert http(f"{base}/healthz", None)[0] == 200


def test_stored_keys_are_authentication_enough_to_listen_beyond_loopback(
    tmp_path: Path,
) -> None:
    db_url = f"sqlite:///{tmp_path / 'tether.db'}"
    create_key(db_url, Role.ADMIN)
    process = ControlPlaneProcess(db_url, tmp_path, extra_args=["--host", "0.0.0.0"]).start()
    try:
        code, _ = call(process.address, "/tether.v1.RunService/ListRuns", None)
        assert code == grpc.StatusCode.UNAUTHENTICATED
    finally:
        process.stop()


def test_a_key_on_the_command_line_is_warned_about(tmp_path: Path) -> None:
    process = ControlPlaneProcess(
        f"sqlite:///{tmp_path / 'tether.db'}", tmp_path, extra_args=["--api-key", BOOTSTRAP]
    ).start()
    process.stop()
    [warning] = [line for line in process.logs().splitlines() if "process list" in line]
    assert "set TETHER_API_KEYS or --api-key-file instead" in warning


def test_admins_manage_keys_over_grpc_and_http_and_no_one_else_does(
    control_plane: ControlPlaneProcess, secrets: dict[Role, str]
) -> None:
    base = control_plane.http_url
    admin = (("authorization", f"Bearer {secrets[Role.ADMIN]}"),)
    with grpc.insecure_channel(control_plane.address) as channel:
        keys = ks_grpc.KeyServiceStub(channel)
        made = keys.CreateKey(ks.CreateKeyRequest(name="dashboards", role="read"), metadata=admin)
        assert made.secret.startswith("tk_")
        assert (made.key.role, made.key.name) == ("read", "dashboards")
        assert call(control_plane.address, "/tether.v1.RunService/ListRuns", made.secret)[0] == (
            grpc.StatusCode.OK
        )
        listed = keys.ListKeys(ks.ListKeysRequest(), metadata=admin)
        assert made.key.id in {key.id for key in listed.keys}
        assert made.secret not in str(listed)

        status, created = http(
            f"{base}/api/keys", secrets[Role.ADMIN], "POST", {"name": "web", "role": "send"}
        )
        assert status == 200
        sender = created["secret"]
        assert http(f"{base}/api/me", sender)[1] == {
            "environment": "default",
            "role": "send",
            "apps": [],
            "key_id": created["key"]["id"],
        }
        status, rotated = http(
            f"{base}/api/keys/{created['key']['id']}/rotate", secrets[Role.ADMIN], "POST", {}
        )
        assert status == 200
        assert http(f"{base}/api/me", sender)[0] == 401, "the rotated-away secret"
        assert http(f"{base}/api/me", rotated["secret"])[1]["role"] == "send"

        keys.RevokeKey(ks.RevokeKeyRequest(key_id=made.key.id), metadata=admin)
        assert call(control_plane.address, "/tether.v1.RunService/ListRuns", made.secret)[0] == (
            grpc.StatusCode.UNAUTHENTICATED
        )
        with pytest.raises(grpc.RpcError) as unknown:
            keys.RevokeKey(ks.RevokeKeyRequest(key_id=made.key.id), metadata=admin)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as bad_role:
            keys.CreateKey(ks.CreateKeyRequest(name="x", role="owner"), metadata=admin)
        assert bad_role.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "unknown role 'owner'" in (bad_role.value.details() or "")

    # Reading runs is not reading keys.
    status, problem = http(f"{base}/api/keys", secrets[Role.READ])
    assert (status, problem["message"]) == (
        403,
        "GET /api/keys needs the 'admin' role; this API key has the 'read' role",
    )
    status, _ = http(
        f"{base}/api/keys", secrets[Role.WORKER], "POST", {"name": "x", "role": "admin"}
    )
    assert status == 403


async def test_keys_kept_in_files_work_for_the_server_the_cli_and_the_sdk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server_keys = tmp_path / "server-keys"
    server_keys.write_text("# bootstrap admin keys\nfile-admin-key\n\nsecond-admin-key\n")
    process = ControlPlaneProcess(
        f"sqlite:///{tmp_path / 'tether.db'}",
        tmp_path,
        extra_args=["--api-key-file", str(server_keys)],
    ).start()
    try:
        assert "process list" not in process.logs()
        client_key = tmp_path / "client-key"
        client_key.write_text("second-admin-key\n")
        listed = tether("runs", "list", "--api-key-file", str(client_key), address=process.address)
        assert listed.code == 0, listed.stderr
        refused = tether("runs", "list", address=process.address)
        assert refused.code != 0
        assert "missing or invalid API key" in refused.stderr

        reader = create_key(process.db_url, Role.READ)[1]
        (tmp_path / "reader-key").write_text(reader)
        monkeypatch.setenv("TETHER_API_KEY_FILE", str(tmp_path / "reader-key"))
        app = Tether(app_id="shop", address=process.address)
        try:
            assert (await app.runs.list()).runs == []
            with pytest.raises(PermissionDeniedError, match="CancelRun needs the 'admin' role"):
                await app.runs.cancel("01ZZZZZZZZZZZZZZZZZZZZZZZZ")
        finally:
            await app.close()
    finally:
        process.stop()
    empty = tmp_path / "empty-keys"
    empty.write_text("# none yet\n")
    started = tether(
        "server", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--api-key-file", str(empty)
    )
    assert started.code != 0
    assert f"the API key file {empty} holds no key (one key per line)" in started.stderr


def test_metrics_can_be_closed_to_all_but_read_keys(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'tether.db'}"
    reader = create_key(db_url, Role.READ)[1]
    sender = create_key(db_url, Role.SEND)[1]
    process = ControlPlaneProcess(
        db_url, tmp_path, http=True, extra_args=["--metrics-need-key"]
    ).start()
    try:
        metrics = f"{process.http_url}/metrics"
        assert http(metrics, None)[0] == 401
        assert http(metrics, sender)[0] == 403
        request = urllib.request.Request(metrics, headers={"Authorization": f"Bearer {reader}"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert b"tether_" in reply.read()
        assert http(f"{process.http_url}/healthz", None)[0] == 200, "health stays open"
    finally:
        process.stop()


def test_every_route_allows_exactly_the_roles_route_role_gives(
    control_plane: ControlPlaneProcess, secrets: dict[Role, str]
) -> None:
    """Each route of the OpenAPI document, with each role: refused (403 naming
    the role) exactly when the role does not grant what the route needs."""
    base = control_plane.http_url
    status, document = http(f"{base}/api/openapi.json", None)
    assert status == 200
    routes = [
        (method.upper(), re.sub(r"\{[^}]+\}", "x", path))
        for path, operations in document["paths"].items()
        for method in operations
    ]
    assert len(routes) >= 15, routes
    for role, secret in secrets.items():
        for method, path in routes:
            body: object = {} if method == "POST" else None
            status, problem = http(f"{base}{path}", secret, method, body)
            needed = route_role(method, path)
            if needed is None or Caller(role).may(needed):
                assert status not in (401, 403), (role, method, path, problem)
            else:
                assert (status, problem["error"]) == (403, "permission_denied"), (role, path)
                assert f"needs the '{needed}' role" in problem["message"]
