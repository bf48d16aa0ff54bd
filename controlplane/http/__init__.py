"""The HTTP side: the dev UI, the JSON API (OpenAPI at /api/openapi.json),
/metrics and /healthz."""

from controlplane.http.server import HttpServer, build_app

__all__ = ["HttpServer", "build_app"]
