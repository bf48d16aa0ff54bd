"""gRPC stubs for CLI commands, with the address and API key from options."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click
import grpc

from tether.v1 import clock_service_pb2_grpc, event_service_pb2_grpc, run_service_pb2_grpc

DEFAULT_ADDRESS = "localhost:4770"
_OPTIONS = [("grpc.max_receive_message_length", 128 * 1024 * 1024)]


@dataclass
class Remote:
    address: str
    api_key: str | None
    tls: bool

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else ()

    @contextmanager
    def channel(self) -> Iterator[grpc.Channel]:
        if self.tls:
            channel = grpc.secure_channel(self.address, grpc.ssl_channel_credentials(), _OPTIONS)
        else:
            channel = grpc.insecure_channel(self.address, _OPTIONS)
        try:
            yield channel
        finally:
            channel.close()

    @contextmanager
    def runs(self) -> Iterator[run_service_pb2_grpc.RunServiceStub]:
        with self.channel() as channel, rpc_errors(self.address):
            yield run_service_pb2_grpc.RunServiceStub(channel)

    @contextmanager
    def clock(self) -> Iterator[clock_service_pb2_grpc.ClockServiceStub]:
        with self.channel() as channel, rpc_errors(self.address):
            yield clock_service_pb2_grpc.ClockServiceStub(channel)

    @contextmanager
    def events(self) -> Iterator[event_service_pb2_grpc.EventServiceStub]:
        with self.channel() as channel, rpc_errors(self.address):
            yield event_service_pb2_grpc.EventServiceStub(channel)


@contextmanager
def rpc_errors(address: str) -> Iterator[None]:
    """Turn gRPC failures into one-line CLI errors."""
    try:
        yield
    except grpc.RpcError as error:
        code = error.code() if isinstance(error, grpc.Call) else None
        details = error.details() if isinstance(error, grpc.Call) else str(error)
        if code is grpc.StatusCode.UNAVAILABLE:
            raise click.ClickException(
                f"cannot reach the control plane at {address}: is 'tether dev' or "
                "'tether server' running? (set --address or TETHER_ADDRESS)"
            ) from None
        name = code.name if code else "ERROR"
        raise click.ClickException(f"{details} ({name})") from None


def remote_options(fn: Any) -> Any:
    """--address, --api-key and --tls for commands that call a control plane."""
    fn = click.option(
        "--tls/--no-tls", default=None, help="Use TLS (default: TETHER_TLS, else off)."
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


def make_remote(address: str, api_key: str | None, tls: bool | None) -> Remote:
    use_tls = tls if tls is not None else os.environ.get("TETHER_TLS", "") in ("1", "true")
    return Remote(address, api_key, use_tls)
