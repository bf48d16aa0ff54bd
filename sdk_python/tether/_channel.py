"""Connections to the control plane: address, TLS, API key, channel options."""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc

from tether import _errors

DEFAULT_ADDRESS = "localhost:4770"
MAX_MESSAGE_BYTES = 128 * 1024 * 1024

CHANNEL_OPTIONS: Sequence[tuple[str, int]] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    address: str
    api_key: str | None
    tls: bool

    @classmethod
    def resolve(cls, address: str | None, api_key: str | None, tls: bool | None) -> ChannelConfig:
        """Explicit arguments win, then TETHER_ADDRESS / TETHER_API_KEY / TETHER_TLS."""
        resolved_tls = tls if tls is not None else os.environ.get("TETHER_TLS", "") in ("1", "true")
        return cls(
            address=address or os.environ.get("TETHER_ADDRESS") or DEFAULT_ADDRESS,
            api_key=api_key or os.environ.get("TETHER_API_KEY") or None,
            tls=resolved_tls,
        )

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else ()

    def aio_channel(self) -> grpc.aio.Channel:
        if self.tls:
            return grpc.aio.secure_channel(
                self.address, grpc.ssl_channel_credentials(), options=CHANNEL_OPTIONS
            )
        return grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS)

    def sync_channel(self) -> grpc.Channel:
        if self.tls:
            return grpc.secure_channel(
                self.address, grpc.ssl_channel_credentials(), options=CHANNEL_OPTIONS
            )
        return grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)


class Connection:
    """An app's way to the control plane: where it is, how to authenticate, and
    the channels made for it (one per event loop, one for blocking calls)."""

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config
        self._aio_channels: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, grpc.aio.Channel
        ] = weakref.WeakKeyDictionary()
        self._sync_channel: grpc.Channel | None = None

    @property
    def address(self) -> str:
        return self.config.address

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata every request carries (the API key)."""
        return self.config.metadata

    def aio_channel(self) -> grpc.aio.Channel:
        """The shared channel of the running event loop."""
        loop = asyncio.get_running_loop()
        channel = self._aio_channels.get(loop)
        if channel is None:
            channel = self.config.aio_channel()
            self._aio_channels[loop] = channel
        return channel

    def sync_channel(self) -> grpc.Channel:
        if self._sync_channel is None:
            self._sync_channel = self.config.sync_channel()
        return self._sync_channel

    def error(self, error: grpc.RpcError) -> _errors.TetherError:
        """A failed call as the SDK's error (see ``translate``)."""
        return translate(error, self.address)

    async def close(self) -> None:
        channels = list(self._aio_channels.values())
        self._aio_channels = weakref.WeakKeyDictionary()
        for channel in channels:
            await channel.close(grace=None)
        self.close_sync()

    def close_sync(self) -> None:
        if self._sync_channel is not None:
            self._sync_channel.close()
            self._sync_channel = None


#: Hands out an app's current connection (the address may change in tests).
ConnectionProvider = Callable[[], Connection]


_ERRORS: dict[grpc.StatusCode, type[_errors.TetherError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: _errors.InvalidArgumentError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: _errors.LimitExceededError,
    grpc.StatusCode.NOT_FOUND: _errors.NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: _errors.FailedPreconditionError,
    grpc.StatusCode.UNAVAILABLE: _errors.UnavailableError,
    grpc.StatusCode.UNAUTHENTICATED: _errors.UnauthenticatedError,
}


def translate(error: grpc.RpcError, address: str) -> _errors.TetherError:
    """A gRPC failure as the SDK's error, with the control plane's message."""
    # Both sync (grpc.Call) and asyncio (AioRpcError) errors carry these.
    code_of = getattr(error, "code", None)
    details_of = getattr(error, "details", None)
    code = code_of() if callable(code_of) else grpc.StatusCode.UNKNOWN
    details = details_of() if callable(details_of) else str(error)
    kind = _ERRORS.get(code, _errors.TetherError)
    if code is grpc.StatusCode.UNAVAILABLE:
        details = f"the control plane at {address} is unavailable: {details}"
    return kind(details or code.name)
