"""gRPC stubs for CLI commands, with the address, API key and TLS from options."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import grpc
from click.core import ParameterSource

from controlplane.config import check_ca, check_cert_and_key, read_key_file
from tether.v1 import clock_service_pb2_grpc, event_service_pb2_grpc, run_service_pb2_grpc

DEFAULT_ADDRESS = "localhost:4770"
_OPTIONS = [("grpc.max_receive_message_length", 128 * 1024 * 1024)]


# The --tls-ca, --tls-client-cert and --tls-client-key values, kept in the click
# context's meta (so that commands need no parameters for them).
_TLS_META = "tether.tls_files"
_KEY_FILE_META = "tether.api_key_file"
_TLS_PARAMS = ("tls_ca", "tls_client_cert", "tls_client_key")


@dataclass(frozen=True)
class TlsFiles:
    """The CA the control plane's certificate is checked against (None: the
    system's roots) and the client certificate and key for mutual TLS."""

    ca: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    @property
    def given(self) -> bool:
        return any(value is not None for value in (self.ca, self.client_cert, self.client_key))

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes() if self.ca else None,
            private_key=self.client_key.read_bytes() if self.client_key else None,
            certificate_chain=self.client_cert.read_bytes() if self.client_cert else None,
        )

    def check(self) -> None:
        """Fail with a one-line error naming the file that cannot be used."""
        if (self.client_cert is None) != (self.client_key is None):
            raise click.UsageError(
                "--tls-client-cert and --tls-client-key go together (TETHER_TLS_CLIENT_CERT, "
                "TETHER_TLS_CLIENT_KEY): a client certificate is presented with its key"
            )
        try:
            if self.ca is not None:
                check_ca(self.ca, "--tls-ca")
            if self.client_cert is not None and self.client_key is not None:
                check_cert_and_key(
                    self.client_cert,
                    self.client_key,
                    "client certificate",
                    "--tls-client-cert",
                    "--tls-client-key",
                )
        except ValueError as error:
            raise click.UsageError(str(error)) from None


@dataclass
class Remote:
    address: str
    api_key: str | None
    tls: bool
    tls_files: TlsFiles = TlsFiles()

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else ()

    @contextmanager
    def channel(self) -> Iterator[grpc.Channel]:
        if self.tls:
            channel = grpc.secure_channel(self.address, self.tls_files.credentials(), _OPTIONS)
        else:
            channel = grpc.insecure_channel(self.address, _OPTIONS)
        try:
            yield channel
        finally:
            channel.close()

    @contextmanager
    def runs(self) -> Iterator[run_service_pb2_grpc.RunServiceStub]:
        with self.channel() as channel, rpc_errors(self.address, tls=self.tls):
            yield run_service_pb2_grpc.RunServiceStub(channel)

    @contextmanager
    def clock(self) -> Iterator[clock_service_pb2_grpc.ClockServiceStub]:
        with self.channel() as channel, rpc_errors(self.address, tls=self.tls):
            yield clock_service_pb2_grpc.ClockServiceStub(channel)

    @contextmanager
    def events(self) -> Iterator[event_service_pb2_grpc.EventServiceStub]:
        with self.channel() as channel, rpc_errors(self.address, tls=self.tls):
            yield event_service_pb2_grpc.EventServiceStub(channel)


@contextmanager
def rpc_errors(address: str, *, tls: bool = False) -> Iterator[None]:
    """Turn gRPC failures into one-line CLI errors."""
    try:
        yield
    except grpc.RpcError as error:
        code = error.code() if isinstance(error, grpc.Call) else None
        details = error.details() if isinstance(error, grpc.Call) else str(error)
        if code is grpc.StatusCode.UNAVAILABLE:
            # A refused TLS handshake (a certificate not trusted either way) looks
            # the same from here as a control plane that is not running.
            tls_hint = (
                "; over TLS, is its certificate signed by --tls-ca, and does it require "
                "a client certificate (--tls-client-cert, --tls-client-key)?"
                if tls
                else ""
            )
            raise click.ClickException(
                f"cannot reach the control plane at {address}: is 'tether dev' or "
                f"'tether server' running? (set --address or TETHER_ADDRESS){tls_hint}"
            ) from None
        name = code.name if code else "ERROR"
        raise click.ClickException(f"{details} ({name})") from None


def _keep_tls_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    assert param.name is not None
    from_env = ctx.get_parameter_source(param.name) is ParameterSource.ENVIRONMENT
    files: dict[str, tuple[Path | None, bool]] = ctx.meta.setdefault(_TLS_META, {})
    files[param.name] = (value, from_env)


_TLS_FILE_OPTIONS = (
    (
        "--tls-ca",
        "TETHER_TLS_CA",
        "PEM CA certificate(s) that signed the control plane's certificate "
        "(default: the system's roots)",
    ),
    (
        "--tls-client-cert",
        "TETHER_TLS_CLIENT_CERT",
        "PEM client certificate, for a control plane that requires mutual TLS "
        "(with --tls-client-key)",
    ),
    ("--tls-client-key", "TETHER_TLS_CLIENT_KEY", "Unencrypted PEM key of --tls-client-cert"),
)


def remote_options(fn: Any) -> Any:
    """--address, --api-key and --tls (with its files) for commands that call a
    control plane."""
    tls_file = click.Path(exists=True, dir_okay=False, path_type=Path)
    for name, envvar, text in reversed(_TLS_FILE_OPTIONS):
        fn = click.option(
            name,
            type=tls_file,
            envvar=envvar,
            default=None,
            expose_value=False,
            callback=_keep_tls_file,
            help=f"{text}; implies --tls ({envvar}).",
        )(fn)
    fn = click.option(
        "--tls/--no-tls", default=None, help="Use TLS (default: TETHER_TLS, else off)."
    )(fn)
    fn = click.option(
        "--api-key-file",
        type=click.Path(dir_okay=False),
        envvar="TETHER_API_KEY_FILE",
        default=None,
        expose_value=False,
        callback=_keep_key_file,
        help="A file holding the API key (TETHER_API_KEY_FILE), used when no key is given.",
    )(fn)
    fn = click.option(
        "--api-key", envvar="TETHER_API_KEY", default=None, help="API key (TETHER_API_KEY)."
    )(fn)
    fn = click.option(
        "--address",
        envvar="TETHER_ADDRESS",
        default=DEFAULT_ADDRESS,
        show_default=True,
        help="Control plane gRPC address (TETHER_ADDRESS).",
    )(fn)
    return fn


def _keep_key_file(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    ctx.meta[_KEY_FILE_META] = value


def make_remote(address: str, api_key: str | None, tls: bool | None) -> Remote:
    """The control plane the options name; the TLS files come from the current
    command's --tls-ca, --tls-client-cert and --tls-client-key, the key from
    --api-key-file when none is given."""
    ctx = click.get_current_context(silent=True)
    key_file = ctx.meta.get(_KEY_FILE_META) if ctx else None
    if not api_key and key_file:
        try:
            keys = read_key_file(Path(key_file))
        except ValueError as error:
            raise click.UsageError(str(error)) from None
        if len(keys) != 1:
            raise click.UsageError(
                f"the API key file {key_file} must hold one key; it holds {len(keys)}"
            )
        api_key = keys[0]
    kept: dict[str, tuple[Path | None, bool]] = ctx.meta.get(_TLS_META, {}) if ctx else {}
    if tls is False:
        # --no-tls wins over the TETHER_TLS_* variables, not over flags given with it.
        if any(value is not None and not from_env for value, from_env in kept.values()):
            raise click.UsageError(
                "--no-tls, but --tls-ca, --tls-client-cert or --tls-client-key is given: "
                "they are for TLS connections"
            )
        kept = {}
    files = TlsFiles(*(kept.get(name, (None, False))[0] for name in _TLS_PARAMS))
    files.check()
    if tls is not None:
        use_tls = tls
    else:
        use_tls = files.given or os.environ.get("TETHER_TLS", "") in ("1", "true")
    return Remote(address, api_key, use_tls, files)
