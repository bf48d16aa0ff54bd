"""gRPC channels to a control plane on loopback, sending an API key with
every call when given one (plain TCP: local credentials let call credentials
ride an unencrypted loopback connection)."""

from __future__ import annotations

import grpc


def _credentials(api_key: str) -> grpc.ChannelCredentials:
    return grpc.composite_channel_credentials(
        grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP),
        grpc.access_token_call_credentials(api_key),
    )


def channel(address: str, api_key: str | None = None) -> grpc.Channel:
    if api_key is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, _credentials(api_key))


def aio_channel(address: str, api_key: str | None = None) -> grpc.aio.Channel:
    if api_key is None:
        return grpc.aio.insecure_channel(address)
    return grpc.aio.secure_channel(address, _credentials(api_key))
