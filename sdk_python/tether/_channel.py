"""Connections to the control plane: address, TLS, API key, channel options."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import ssl
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

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


PathLike = str | os.PathLike[str]


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """What a TLS channel trusts and presents, read from PEM files: the CA
    certificates that signed the control plane's certificate (None: the system's
    roots), and a client certificate and its key for mutual TLS."""

    #: Whether any file was given (then TLS is on unless tls=False).
    given: bool = False
    root_certificates: bytes | None = None
    client_cert: bytes | None = None
    client_key: bytes | None = None

    @classmethod
    def load(
        cls, ca: PathLike | None, client_cert: PathLike | None, client_key: PathLike | None
    ) -> TlsFiles:
        """Read and check the files; a ConfigError names the one that cannot be used."""
        if (client_cert is None) != (client_key is None):
            given, missing = ("cert", "key") if client_key is None else ("key", "cert")
            raise _errors.ConfigError(
                f"a TLS client {given} needs its {missing} too: set tls_client_{missing} "
                f"(TETHER_TLS_CLIENT_{missing.upper()})"
            )
        if ca is not None:
            _check_pem(
                ca, "CERTIFICATE-----", "a PEM file of CA certificates (tls_ca, TETHER_TLS_CA)"
            )
            try:
                ssl.create_default_context(cafile=os.fspath(ca))
            except (ssl.SSLError, OSError) as error:
                raise _errors.ConfigError(
                    f"cannot use {os.fspath(ca)} as the TLS CA (tls_ca, TETHER_TLS_CA): "
                    f"{_reason(error)}"
                ) from None
        if client_cert is not None and client_key is not None:
            _check_pem(
                client_cert,
                "CERTIFICATE-----",
                "a PEM certificate (tls_client_cert, TETHER_TLS_CLIENT_CERT)",
            )
            _check_pem(
                client_key,
                "PRIVATE KEY-----",
                "a PEM private key (tls_client_key, TETHER_TLS_CLIENT_KEY)",
            )
            if "ENCRYPTED" in Path(client_key).read_text(errors="replace"):
                raise _errors.ConfigError(
                    f"the TLS client key {os.fspath(client_key)} is encrypted, and Tether "
                    "cannot ask for its passphrase: give it unencrypted "
                    "(openssl pkey -in KEY -out PLAIN_KEY)"
                )
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            try:
                context.load_cert_chain(
                    os.fspath(client_cert), os.fspath(client_key), password=lambda: b""
                )
            except (ssl.SSLError, OSError) as error:
                raise _errors.ConfigError(
                    f"cannot use the TLS client certificate {os.fspath(client_cert)} with the "
                    f"key {os.fspath(client_key)}: {_reason(error)}"
                ) from None
        return cls(
            given=any(value is not None for value in (ca, client_cert, client_key)),
            root_certificates=Path(ca).read_bytes() if ca is not None else None,
            client_cert=Path(client_cert).read_bytes() if client_cert is not None else None,
            client_key=Path(client_key).read_bytes() if client_key is not None else None,
        )

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.client_key,
            certificate_chain=self.client_cert,
        )


def read_api_key_file(path: str) -> str:
    """The key in a key file (a mounted secret): its one line that is not
    blank or a ``#`` comment."""
    try:
        with open(path, encoding="utf-8") as file:
            lines = [line.strip() for line in file if line.strip() and not line.startswith("#")]
    except (OSError, UnicodeDecodeError) as error:
        raise _errors.ConfigError(f"cannot read the API key file {path}: {error}") from None
    if len(lines) != 1:
        raise _errors.ConfigError(
            f"the API key file {path} must hold one key; it holds {len(lines)}"
        )
    return lines[0]


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    address: str
    api_key: str | None
    tls: bool
    tls_files: TlsFiles = TlsFiles()

    @classmethod
    def resolve(
        cls,
        address: str | None,
        api_key: str | None,
        tls: bool | None,
        *,
        tls_ca: PathLike | None = None,
        tls_client_cert: PathLike | None = None,
        tls_client_key: PathLike | None = None,
    ) -> ChannelConfig:
        """Explicit arguments win, then TETHER_ADDRESS / TETHER_API_KEY (else the
        file TETHER_API_KEY_FILE names) / TETHER_TLS /
        TETHER_TLS_CA / TETHER_TLS_CLIENT_CERT / TETHER_TLS_CLIENT_KEY. A CA or a
        client certificate turns TLS on; ``tls=False`` ignores those of the
        environment (and refuses those given with it)."""
        env = os.environ
        if tls is False:
            if any(value is not None for value in (tls_ca, tls_client_cert, tls_client_key)):
                raise _errors.ConfigError(
                    "tls=False, but tls_ca, tls_client_cert or tls_client_key is given: "
                    "they are for TLS connections"
                )
            files = TlsFiles()
        else:
            ca = tls_ca or env.get("TETHER_TLS_CA") or None
            client_cert = tls_client_cert or env.get("TETHER_TLS_CLIENT_CERT") or None
            client_key = tls_client_key or env.get("TETHER_TLS_CLIENT_KEY") or None
            files = TlsFiles.load(ca, client_cert, client_key)
        if tls is None:
            tls = files.given or env.get("TETHER_TLS", "") in ("1", "true")
        key_file = env.get("TETHER_API_KEY_FILE") or None
        return cls(
            address=address or env.get("TETHER_ADDRESS") or DEFAULT_ADDRESS,
            api_key=api_key
            or env.get("TETHER_API_KEY")
            or (read_api_key_file(key_file) if key_file else None),
            tls=tls,
            tls_files=files,
        )

    def at(self, address: str) -> ChannelConfig:
        """The same settings, elsewhere."""
        return dataclasses.replace(self, address=address)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else ()

    def aio_channel(self) -> grpc.aio.Channel:
        if self.tls:
            return grpc.aio.secure_channel(
                self.address, self.tls_files.credentials(), options=CHANNEL_OPTIONS
            )
        return grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS)

    def sync_channel(self) -> grpc.Channel:
        if self.tls:
            return grpc.secure_channel(
                self.address, self.tls_files.credentials(), options=CHANNEL_OPTIONS
            )
        return grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)


def _check_pem(path: PathLike, marker: str, expected: str) -> None:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as error:
        raise _errors.ConfigError(
            f"cannot read {os.fspath(path)}: {error.strerror or error}"
        ) from None
    if "-----BEGIN" not in text or marker not in text:
        raise _errors.ConfigError(
            f"{os.fspath(path)} is not {expected}: no '-----BEGIN ...{marker}' block in it"
        )


def _reason(error: ssl.SSLError | OSError) -> str:
    if isinstance(error, ssl.SSLError):
        if error.reason == "KEY_VALUES_MISMATCH":
            return "the key is not the certificate's"
        if error.reason:
            return error.reason.lower().replace("_", " ")
        return "OpenSSL could not load it"
    return error.strerror or str(error)


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
    grpc.StatusCode.PERMISSION_DENIED: _errors.PermissionDeniedError,
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
