"""Control-plane configuration, from flags and TETHER_* environment variables."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ClockKind = Literal["system", "virtual"]

DEFAULT_GRPC_PORT = 4770
DEFAULT_HTTP_PORT = 4771
DEV_DATABASE = "sqlite:///.tether/tether.db"


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
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Written once the servers listen: {"grpc_port": ..., "http_port": ..., "pid": ...}.
    # For tools and tests that start a control plane on port 0.
    ready_file: Path | None = None

    def __post_init__(self) -> None:
        if self.clock not in ("system", "virtual"):
            raise ValueError(f"unknown clock {self.clock!r}: use 'system' or 'virtual'")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate and a key (--tls-cert and --tls-key)")
        for name, port in (("port", self.port), ("HTTP port", self.http_port)):
            if port is not None and not 0 <= port <= 65535:
                raise ValueError(f"{name} {port} is out of range 0-65535")
        if self.heartbeat_interval_ms <= 0 or self.lease_timeout_ms <= self.heartbeat_interval_ms:
            raise ValueError(
                "the lease timeout must be longer than the heartbeat interval "
                f"(got {self.lease_timeout_ms} ms and {self.heartbeat_interval_ms} ms)"
            )
