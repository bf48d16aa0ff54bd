"""Control-plane configuration, from flags and TETHER_* environment variables."""

from __future__ import annotations

import ipaddress
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ClockKind = Literal["system", "virtual"]

DEFAULT_GRPC_PORT = 4770
DEFAULT_HTTP_PORT = 4771
DEV_DATABASE = "sqlite:///.tether/tether.db"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The server's certificate and key (PEM) for both ports; with ``client_ca``,
    clients must present a certificate signed by that CA (mutual TLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None


@dataclass(frozen=True, slots=True)
class Config:
    db_url: str = DEV_DATABASE
    host: str = "127.0.0.1"
    port: int = DEFAULT_GRPC_PORT
    # The dev UI, JSON API, /metrics and /healthz; None serves no HTTP.
    http_port: int | None = None
    clock: ClockKind = "system"
    sqlite_synchronous: str = "FULL"
    heartbeat_interval_ms: int = 3_000
    lease_timeout_ms: int = 15_000
    # Accepted bearer tokens; empty means no authentication (development).
    api_keys: tuple[str, ...] = field(default_factory=tuple)
    #: Whether the store holds API keys (``tether keys create``): calls need one.
    stored_keys: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Clients (gRPC and HTTP) must present a certificate signed by this CA.
    tls_client_ca: Path | None = None
    # Serve a host other than loopback without API keys or client certificates.
    insecure_no_auth: bool = False
    # GET /metrics needs a read (or admin) key of the default environment.
    metrics_need_key: bool = False
    # How long what workers report waits out a database outage (seconds; 0: not at all).
    outage_window_s: float = 30.0
    # How long finished runs (and events nothing needs) are kept; None: forever.
    # An environment may set its own (tether env create --retention).
    retention_ms: int | None = None
    # Written once the servers listen: {"grpc_port": ..., "http_port": ..., "pid": ...}.
    # For tools and tests that start a control plane on port 0.
    ready_file: Path | None = None

    def __post_init__(self) -> None:
        if self.host.startswith("[") and self.host.endswith("]"):
            object.__setattr__(self, "host", self.host[1:-1])  # [::1] means ::1
        if self.clock not in ("system", "virtual"):
            raise ValueError(f"unknown clock {self.clock!r}: use 'system' or 'virtual'")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate and a key (--tls-cert and --tls-key)")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError(
                "--tls-client-ca needs TLS: give the server's certificate and key too "
                "(--tls-cert and --tls-key)"
            )
        if self.tls is not None:
            check_tls_files(self.tls)
        for name, port in (("port", self.port), ("HTTP port", self.http_port)):
            if port is not None and not 0 <= port <= 65535:
                raise ValueError(f"{name} {port} is out of range 0-65535")
        if self.heartbeat_interval_ms <= 0 or self.lease_timeout_ms <= self.heartbeat_interval_ms:
            raise ValueError(
                "the lease timeout must be longer than the heartbeat interval "
                f"(got {self.lease_timeout_ms} ms and {self.heartbeat_interval_ms} ms)"
            )
        if not self.authenticated and not self.insecure_no_auth and not is_loopback(self.host):
            raise ValueError(
                f"refusing to listen on {self.host or 'every interface'} without "
                "authentication: no API key is configured, so anyone who can reach it could "
                "send events and control runs; configure a key (--api-key or TETHER_API_KEYS, "
                "or 'tether keys create --role admin') or pass --insecure-no-auth to serve it "
                "open anyway"
            )

    @property
    def tls(self) -> TlsFiles | None:
        """The TLS files of both ports, or None for plaintext."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        return TlsFiles(self.tls_cert, self.tls_key, self.tls_client_ca)

    @property
    def authenticated(self) -> bool:
        """Whether clients must prove who they are: an API key or a client certificate."""
        return bool(self.api_keys) or self.stored_keys or self.tls_client_ca is not None

    @property
    def grpc_address(self) -> str:
        """``host:port`` for gRPC (an IPv6 host in brackets)."""
        return grpc_address(self.host, self.port)


def grpc_address(host: str, port: int) -> str:
    """``host:port``, or ``[host]:port`` for an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost``: reachable from this machine only."""
    host = host.strip().removeprefix("[").removesuffix("]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_tls_files(tls: TlsFiles) -> None:
    """Fail now, with the file and the reason, on TLS files that cannot serve."""
    check_cert_and_key(tls.cert, tls.key, "TLS certificate", "--tls-cert", "--tls-key")
    if tls.client_ca is not None:
        check_ca(tls.client_ca, "--tls-client-ca")


def check_cert_and_key(cert: Path, key: Path, what: str, cert_flag: str, key_flag: str) -> None:
    """ValueError naming the file unless ``cert`` and ``key`` are PEM, the key
    unencrypted and the certificate's."""
    _check_pem(cert, "CERTIFICATE-----", f"a PEM certificate ({cert_flag})")
    _check_pem(key, "PRIVATE KEY-----", f"a PEM private key ({key_flag})")
    if "ENCRYPTED" in key.read_text(errors="replace"):
        raise ValueError(
            f"the private key {key} ({key_flag}) is encrypted, and Tether cannot ask for its "
            "passphrase: give it unencrypted (openssl pkey -in KEY -out PLAIN_KEY)"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=lambda: b"")
    except (ssl.SSLError, OSError) as error:
        raise ValueError(
            f"cannot use the {what} {cert} ({cert_flag}) with the key {key} ({key_flag}): "
            f"{_reason(error)}"
        ) from None


def check_ca(ca: Path, flag: str) -> None:
    """ValueError naming the file unless ``ca`` holds PEM CA certificates."""
    _check_pem(ca, "CERTIFICATE-----", f"a PEM file of CA certificates ({flag})")
    try:
        ssl.create_default_context(cafile=ca)
    except (ssl.SSLError, OSError) as error:
        raise ValueError(f"cannot use {ca} as CA certificates ({flag}): {_reason(error)}") from None


def _check_pem(path: Path, marker: str, expected: str) -> None:
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror or error}") from None
    if "-----BEGIN" not in text or marker not in text:
        raise ValueError(f"{path} is not {expected}: no '-----BEGIN ...{marker}' block in it")


def _reason(error: ssl.SSLError | OSError) -> str:
    if isinstance(error, ssl.SSLError):
        if error.reason == "KEY_VALUES_MISMATCH":
            return "the key is not the certificate's"
        if error.reason:
            return error.reason.lower().replace("_", " ")
        return "OpenSSL could not load it"
    return error.strerror or str(error)


def read_key_file(path: Path) -> tuple[str, ...]:
    """The keys in a key file: one per line; blank lines and lines starting
    with ``#`` are skipped. ValueError naming the file if it cannot be read or
    holds no key."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the API key file {path}: {error}") from None
    keys = tuple(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )
    if not keys:
        raise ValueError(f"the API key file {path} holds no key (one key per line)")
    return keys


_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_retention(text: str) -> int | None:
    """``7d``, ``36h``, ``1d12h``, ``90m`` in milliseconds; ``forever``: None."""
    if text.strip().lower() == "forever":
        return None
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(
            f"invalid retention {text!r}: use days, hours, minutes or seconds such as "
            "'7d', '36h' or '1d12h', or 'forever'"
        )
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    ms = (((days * 24 + hours) * 60 + minutes) * 60 + seconds) * 1000
    if ms < 60_000:
        raise ValueError(f"invalid retention {text!r}: keep runs for at least a minute")
    return ms
