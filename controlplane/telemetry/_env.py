"""The standard OpenTelemetry environment variables the control plane reads."""

from __future__ import annotations

import os

DEFAULT_SERVICE_NAME = "tether-control-plane"


def otlp_endpoint(signal: str) -> str | None:
    """Where to export ``signal`` ("traces" or "metrics") over OTLP, if anywhere."""
    return (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or None
    )


def service_name(default: str = DEFAULT_SERVICE_NAME) -> str:
    return os.environ.get("OTEL_SERVICE_NAME") or default
