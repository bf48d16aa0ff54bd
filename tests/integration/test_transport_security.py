"""Transport security of `tether server`, with real processes: mutual TLS on the
gRPC port (the Python SDK, the CLI and both SDKs' workers presenting client
certificates; clients without one, or with one from another CA, refused), HTTPS
on the HTTP port with the same certificate (and client certificates under
mutual TLS), and the refusal to serve an unauthenticated control plane beyond
loopback. On SQLite: transport does not depend on the store."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from tests.support import ledger
from tests.support.processes import ROOT, ControlPlaneProcess, WorkerProcess, typescript_worker
from tests.support.waiting import wait_until, wait_until_async
from tether import ConfigError, Tether, UnavailableError
from tether.v1 import run_service_pb2, run_service_pb2_grpc

PYTHON_APP = "tests.integration.apps.durable:app"
TYPESCRIPT_APP = "tests/integration/apps/typescript/durable.ts"

# -- certificates ---------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A CA, the server's certificate (for 127.0.0.1 and localhost) and a client
    certificate it signed; and a stranger: a client certificate of another CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    stranger_key: Path

    @property
    def client_files(self) -> dict[str, str]:
        """The SDKs' and the CLI's environment variables for the client certificate."""
        return {
            "TETHER_TLS_CA": str(self.ca),
            "TETHER_TLS_CLIENT_CERT": str(self.client_cert),
            "TETHER_TLS_CLIENT_KEY": str(self.client_key),
        }


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _key_and_request(directory: Path, name: str, subject: str) -> tuple[Path, Path]:
    key, request = directory / f"{name}.key", directory / f"{name}.csr"
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-subj", subject, "-keyout", str(key), "-out", str(request),
    )  # fmt: skip
    return key, request


def _sign(directory: Path, request: Path, ca: str, name: str, extensions: str) -> Path:
    cert, ext = directory / f"{name}.pem", directory / f"{name}.ext"
    ext.write_text(extensions)
    _openssl(
        "x509", "-req", "-in", str(request), "-days", "1", "-extfile", str(ext),
        "-CA", str(directory / f"{ca}.pem"), "-CAkey", str(directory / f"{ca}.key"),
        "-CAcreateserial", "-out", str(cert),
    )  # fmt: skip
    return cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", f"/CN=Tether test {ca}",
            "-keyout", str(directory / f"{ca}.key"), "-out", str(directory / f"{ca}.pem"),
        )  # fmt: skip
    server_key, server_request = _key_and_request(directory, "server", "/CN=localhost")
    server_cert = _sign(
        directory,
        server_request,
        "ca",
        "server",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    client_key, client_request = _key_and_request(directory, "client", "/CN=team-a-worker")
    client_cert = _sign(directory, client_request, "ca", "client", "extendedKeyUsage=clientAuth\n")
    stranger_key, stranger_request = _key_and_request(directory, "stranger", "/CN=stranger")
    stranger_cert = _sign(
        directory, stranger_request, "other-ca", "stranger", "extendedKeyUsage=clientAuth\n"
    )
    return Pki(
        directory / "ca.pem",
        server_cert,
        server_key,
        client_cert,
        client_key,
        stranger_cert,
        stranger_key,
    )


# -- processes ------------------------------------------------------------------------


def _server_tls_args(pki: Pki, *, mutual: bool) -> list[str]:
    args = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    return [*args, "--tls-client-ca", str(pki.ca)] if mutual else args


@pytest.fixture
def mutual_tls(pki: Pki, tmp_path: Path) -> Iterator[ControlPlaneProcess]:
    """A control plane requiring client certificates from the CA, on both ports."""
    process = ControlPlaneProcess(
        f"sqlite:///{tmp_path / 'tether.db'}",
        tmp_path,
        http=True,
        extra_args=_server_tls_args(pki, mutual=True),
    ).start()
    yield process
    process.stop()


def _environment(**extra: str) -> dict[str, str]:
    """This process's environment without any TETHER_* setting, plus ``extra``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    return {**clean, "PYTHONUNBUFFERED": "1", **extra}


def _tether(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The ``tether`` command, to its end."""
    return subprocess.run(
        [sys.executable, "-m", "controlplane", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_environment(**(env or {})),
        timeout=60,
        check=False,
    )


def _grpc_error(
    address: str, credentials: grpc.ChannelCredentials | None
) -> grpc.StatusCode | None:
    """The status code a ListFunctions call over ``credentials`` (None: plaintext)
    fails with; None when it worked."""
    if credentials is None:
        channel = grpc.insecure_channel(address)
    else:
        channel = grpc.secure_channel(address, credentials)
    try:
        stub = run_service_pb2_grpc.RunServiceStub(channel)
        stub.ListFunctions(run_service_pb2.ListFunctionsRequest(), timeout=10)
    except grpc.RpcError as error:
        code: grpc.StatusCode = (
            error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
        )
        return code
    finally:
        channel.close()
    return None


def _https_context(pki: Pki, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.ca)
    if cert is not None and key is not None:
        context.load_cert_chain(cert, key)
    return context


def _https_get(
    port: int, path: str, context: ssl.SSLContext, token: str = ""
) -> tuple[int, bytes, bytes]:
    """GET over HTTPS: the status, the body and the server's certificate (DER)."""
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        assert isinstance(connection.sock, ssl.SSLSocket)
        peer = connection.sock.getpeercert(binary_form=True)
        assert peer is not None
        return response.status, body, peer
    finally:
        connection.close()


# What a refused connection raises: the server closes it at once (a timeout,
# also an OSError, would not count).
REFUSED = (ssl.SSLError, ConnectionError, http.client.HTTPException)


def _plain_http_get(port: int, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


# -- mutual TLS on the gRPC port --------------------------------------------------------


async def test_a_client_with_a_certificate_from_the_ca_connects_and_sends(
    pki: Pki, mutual_tls: ControlPlaneProcess
) -> None:
    app = Tether(
        app_id="durable",
        address=mutual_tls.address,
        tls_ca=pki.ca,
        tls_client_cert=pki.client_cert,
        tls_client_key=pki.client_key,
    )
    try:
        [result] = await app.send({"name": "test/napper", "data": {"seconds": 0}})
        assert result.event_id
        assert await app.functions.list() == []
    finally:
        await app.close()
    # The CLI, with flags and with the SDKs' environment variables.
    flags = ["--tls-ca", str(pki.ca), "--tls-client-cert", str(pki.client_cert),
             "--tls-client-key", str(pki.client_key)]  # fmt: skip
    sent = _tether("send", "test/napper", "--json", "--address", mutual_tls.address, *flags)
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["event_id"]
    listed = _tether("events", "list", "--address", mutual_tls.address, env=pki.client_files)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("test/napper") == 2


def test_workers_of_both_sdks_present_their_certificates_and_run_functions(
    pki: Pki, mutual_tls: ControlPlaneProcess, tmp_path: Path
) -> None:
    env = {**pki.client_files, ledger.LEDGER_VARIABLE: str(tmp_path / "ledger.tsv")}
    workers = [
        WorkerProcess(PYTHON_APP, mutual_tls.address, tmp_path, name="python", env=env).start(),
        typescript_worker(
            TYPESCRIPT_APP, mutual_tls.address, tmp_path, name="typescript", env=env
        ).start(),
    ]
    try:
        cli = ["--address", mutual_tls.address]

        def served() -> bool:
            for worker in workers:
                assert worker.alive(), f"the {worker.name} worker exited:\n{worker.logs()}"
            listed = _tether("functions", "list", "--json", *cli, env=pki.client_files)
            assert listed.returncode == 0, listed.stderr
            connected = {f["id"] for f in json.loads(listed.stdout) if f["connected_workers"]}
            return {"napper", "slow-step"} <= connected

        wait_until(served, timeout=60, interval=0.2, what="both workers to connect over mTLS")
        for event in ("test/napper", "test-ts/slow-step"):
            sent = _tether(
                "send", event, "--data", '{"seconds": 0}', "--json", *cli, env=pki.client_files
            )
            assert sent.returncode == 0, sent.stderr
            [run_id] = json.loads(sent.stdout)["run_ids"]

            def completed(run_id: str = run_id) -> bool:
                shown = _tether("runs", "show", run_id, *cli, env=pki.client_files)
                assert shown.returncode == 0, shown.stderr
                return "■ completed" in shown.stdout

            wait_until(completed, timeout=60, interval=0.2, what=f"the run of {event}")
    finally:
        for worker in workers:
            worker.kill()


async def test_clients_without_a_certificate_from_the_ca_are_refused(
    pki: Pki, mutual_tls: ControlPlaneProcess, tmp_path: Path
) -> None:
    ca = pki.ca.read_bytes()
    client = (pki.client_key.read_bytes(), pki.client_cert.read_bytes())
    stranger = (pki.stranger_key.read_bytes(), pki.stranger_cert.read_bytes())
    address = mutual_tls.address
    # The same channel with the CA's client certificate works: what differs is
    # only the certificate presented.
    assert _grpc_error(address, grpc.ssl_channel_credentials(ca, *client)) is None
    # A TLS handshake the server refuses is UNAVAILABLE to the client.
    assert _grpc_error(address, grpc.ssl_channel_credentials(ca)) is grpc.StatusCode.UNAVAILABLE
    assert (
        _grpc_error(address, grpc.ssl_channel_credentials(ca, *stranger))
        is grpc.StatusCode.UNAVAILABLE
    )
    assert _grpc_error(address, None) is grpc.StatusCode.UNAVAILABLE

    # The SDK and the CLI with the stranger's certificate.
    app = Tether(
        app_id="durable",
        address=address,
        tls_ca=pki.ca,
        tls_client_cert=pki.stranger_cert,
        tls_client_key=pki.stranger_key,
    )
    try:
        with pytest.raises(UnavailableError, match="is unavailable"):
            await app.send({"name": "test/napper", "data": {"seconds": 0}})
    finally:
        await app.close()
    refused_cli = _tether(
        "runs", "list", "--address", address, "--tls-ca", str(pki.ca),
        "--tls-client-cert", str(pki.stranger_cert), "--tls-client-key", str(pki.stranger_key),
    )  # fmt: skip
    assert refused_cli.returncode == 1
    assert "over TLS, is its certificate signed by --tls-ca" in refused_cli.stderr
    assert "Traceback" not in refused_cli.stderr

    # A worker without a client certificate never registers anything.
    worker = WorkerProcess(
        PYTHON_APP,
        address,
        tmp_path,
        name="no-certificate",
        env={"TETHER_TLS_CA": str(pki.ca), ledger.LEDGER_VARIABLE: str(tmp_path / "l.tsv")},
    ).start()
    try:
        wait_until(
            lambda: f"connection to {address} lost" in worker.logs(),
            timeout=30,
            what="the worker without a certificate to be refused",
        )
        assert f"connected to {address}" not in worker.logs()
        listed = _tether("functions", "list", "--json", "--address", address, env=pki.client_files)
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout) == []
    finally:
        worker.kill()


# -- HTTPS on the HTTP port -------------------------------------------------------------


def test_the_http_port_serves_https_with_the_servers_certificate(pki: Pki, tmp_path: Path) -> None:
    plane = ControlPlaneProcess(
        f"sqlite:///{tmp_path / 'tether.db'}",
        tmp_path,
        http=True,
        extra_args=[*_server_tls_args(pki, mutual=False), "--api-key", "s3cret"],
    ).start()
    try:
        context = _https_context(pki)
        status, body, peer = _https_get(plane.http_port, "/healthz", context)
        assert (status, json.loads(body)) == (200, {"status": "serving"})
        assert peer == ssl.PEM_cert_to_DER_cert(pki.server_cert.read_text())
        # The API key the UI sends travels inside TLS, and is still required.
        assert _https_get(plane.http_port, "/api/functions", context, "s3cret")[0] == 200
        assert _https_get(plane.http_port, "/api/functions", context)[0] == 401
        with pytest.raises(REFUSED):
            _plain_http_get(plane.http_port, "/healthz")
        assert f"dev UI and JSON API on https://127.0.0.1:{plane.http_port}" in plane.logs()
        # The gRPC port: TLS with the same certificate, no client certificate needed.
        credentials = grpc.ssl_channel_credentials(pki.ca.read_bytes())
        assert _grpc_error(plane.address, credentials) is grpc.StatusCode.UNAUTHENTICATED
    finally:
        plane.stop()


def test_under_mutual_tls_the_http_port_requires_a_client_certificate_too(
    pki: Pki, mutual_tls: ControlPlaneProcess
) -> None:
    port = mutual_tls.http_port
    trusted = _https_context(pki, pki.client_cert, pki.client_key)
    status, body, _ = _https_get(port, "/healthz", trusted)
    assert (status, json.loads(body)) == (200, {"status": "serving"})
    assert _https_get(port, "/api/functions", trusted)[0] == 200
    for context in (_https_context(pki), _https_context(pki, pki.stranger_cert, pki.stranger_key)):
        with pytest.raises(REFUSED):
            _https_get(port, "/healthz", context)
    with pytest.raises(REFUSED):
        _plain_http_get(port, "/healthz")


# -- no accidental open control plane ---------------------------------------------------

GUARD_MESSAGE = "refusing to listen on {host} without authentication"


@pytest.mark.parametrize("host_args", [[], ["--host", "0.0.0.0"], ["--host", "10.1.2.3"]])
def test_no_api_key_beyond_loopback_is_refused(tmp_path: Path, host_args: list[str]) -> None:
    host = host_args[1] if host_args else "0.0.0.0"  # the default
    refused = _tether(
        "server", "--db", f"sqlite:///{tmp_path / 'tether.db'}", "--port", "0", "--no-http",
        *host_args,
    )  # fmt: skip
    assert refused.returncode == 1
    message = refused.stderr.strip()
    assert "\n" not in message, message
    assert message.startswith("Error: " + GUARD_MESSAGE.format(host=host)), message
    assert (
        "configure a key (--api-key or TETHER_API_KEYS, or 'tether keys create --role admin')"
        in message
    )
    assert "--insecure-no-auth" in message
    assert not (tmp_path / "tether.db").exists(), "it opened the store before refusing"


def test_insecure_no_auth_serves_beyond_loopback_with_a_warning(tmp_path: Path) -> None:
    plane = ControlPlaneProcess(
        f"sqlite:///{tmp_path / 'tether.db'}",
        tmp_path,
        extra_args=["--host", "0.0.0.0", "--insecure-no-auth"],
    ).start()
    try:
        assert _grpc_error(plane.address, None) is None
        warnings = [line for line in plane.logs().splitlines() if "--insecure-no-auth" in line]
        assert len(warnings) == 1, plane.logs()
        assert "warning" in warnings[0]
        assert "serving 0.0.0.0 with no API key and no client certificates" in warnings[0]
    finally:
        plane.stop()


@pytest.mark.parametrize("auth", ["loopback", "api key", "client CA"])
def test_loopback_or_authentication_needs_no_flag(pki: Pki, tmp_path: Path, auth: str) -> None:
    """127.0.0.1 without a key, or any host with an API key or client certificates."""
    args = {
        "loopback": [],
        "api key": ["--host", "0.0.0.0", "--api-key", "s3cret"],
        "client CA": ["--host", "0.0.0.0", *_server_tls_args(pki, mutual=True)],
    }[auth]
    plane = ControlPlaneProcess(
        f"sqlite:///{tmp_path / 'tether.db'}", tmp_path, extra_args=args
    ).start()
    try:
        assert "--insecure-no-auth" not in plane.logs()
        if auth == "loopback":
            assert _grpc_error(plane.address, None) is None
    finally:
        plane.stop()


def _ipv6_loopback() -> bool:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6_loopback_needs_no_flag_either(tmp_path: Path) -> None:
    plane = ControlPlaneProcess(
        f"sqlite:///{tmp_path / 'tether.db'}", tmp_path, http=True, extra_args=["--host", "::1"]
    ).start()
    try:
        assert _grpc_error(f"[::1]:{plane.port}", None) is None
        connection = http.client.HTTPConnection("::1", plane.http_port, timeout=10)
        try:
            connection.request("GET", "/healthz")
            assert connection.getresponse().status == 200
        finally:
            connection.close()
    finally:
        plane.stop()


def test_dev_refuses_a_host_beyond_loopback(tmp_path: Path) -> None:
    refused = _tether("dev", "--db", f"sqlite:///{tmp_path / 'dev.db'}", "--host", "0.0.0.0")
    assert refused.returncode == 2
    assert "0.0.0.0 is not a loopback address: tether dev has no authentication" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "dev.db").exists()


# -- bad TLS input: one line naming the problem -----------------------------------------


def _bad_server_args(pki: Pki, case: str, scratch: Path) -> tuple[list[str], str]:
    garbage = scratch / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cert, key = str(pki.server_cert), str(pki.server_key)
    return {
        "client CA without TLS": (
            ["--tls-client-ca", str(pki.ca)],
            "--tls-client-ca needs TLS: give the server's certificate and key too",
        ),
        "key of another certificate": (
            ["--tls-cert", cert, "--tls-key", str(pki.client_key)],
            "the key is not the certificate's",
        ),
        "not a certificate": (
            ["--tls-cert", str(garbage), "--tls-key", key],
            f"{garbage} is not a PEM certificate (--tls-cert)",
        ),
        "client CA not PEM": (
            ["--tls-cert", cert, "--tls-key", key, "--tls-client-ca", str(garbage)],
            f"{garbage} is not a PEM file of CA certificates (--tls-client-ca)",
        ),
    }[case]


@pytest.mark.parametrize(
    "case",
    [
        "client CA without TLS",
        "key of another certificate",
        "not a certificate",
        "client CA not PEM",
    ],
)
def test_unusable_tls_files_are_named(pki: Pki, tmp_path: Path, case: str) -> None:
    args, expected = _bad_server_args(pki, case, tmp_path)
    refused = _tether(
        "server", "--db", f"sqlite:///{tmp_path / 'tether.db'}", "--host", "127.0.0.1",
        "--port", "0", "--no-http", *args,
    )  # fmt: skip
    assert refused.returncode == 1
    assert expected in refused.stderr
    assert refused.stderr.strip().count("\n") == 0, refused.stderr


def test_unusable_client_tls_settings_are_named(pki: Pki, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="a TLS client cert needs its key too"):
        Tether(app_id="x", tls_client_cert=pki.client_cert)
    with pytest.raises(ConfigError, match="the key is not the certificate's"):
        Tether(app_id="x", tls_client_cert=pki.client_cert, tls_client_key=pki.stranger_key)
    with pytest.raises(ConfigError, match="is not a PEM file of CA certificates"):
        Tether(app_id="x", tls_ca=garbage)
    with pytest.raises(ConfigError, match="tls=False, but tls_ca"):
        Tether(app_id="x", tls=False, tls_ca=pki.ca)
    cli = _tether("runs", "list", "--tls-client-cert", str(pki.client_cert),
                  "--tls-client-key", str(garbage))  # fmt: skip
    assert cli.returncode == 2
    assert f"{garbage} is not a PEM private key (--tls-client-key)" in cli.stderr
    # A worker given unusable files by its environment says so in one line.
    worker = _run_worker_once({"TETHER_TLS_CA": str(garbage)})
    assert worker.returncode != 0
    assert worker.stderr.strip() == (
        f"{PYTHON_APP}: {garbage} is not a PEM file of CA certificates (tls_ca, TETHER_TLS_CA): "
        "no '-----BEGIN ...CERTIFICATE-----' block in it"
    )


def _run_worker_once(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controlplane", "worker", PYTHON_APP],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_environment(PYTHONPATH=str(ROOT), **env),
        timeout=60,
        check=False,
    )


async def test_tls_settings_survive_a_change_of_address(pki: Pki, tmp_path: Path) -> None:
    """tether.testing points an app elsewhere; its TLS files go with it."""
    plane = ControlPlaneProcess(
        f"sqlite:///{tmp_path / 'tether.db'}",
        tmp_path,
        extra_args=_server_tls_args(pki, mutual=True),
    ).start()
    app = Tether(
        app_id="durable",
        address="127.0.0.1:1",
        tls_ca=pki.ca,
        tls_client_cert=pki.client_cert,
        tls_client_key=pki.client_key,
    )
    try:
        app._set_address(plane.address)

        async def sent() -> bool:
            [result] = await app.send({"name": "test/napper", "data": {"seconds": 0}})
            return bool(result.event_id)

        await wait_until_async(sent, what="a send over mTLS after the address changed")
    finally:
        await app.close()
        plane.stop()
