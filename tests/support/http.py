"""A tiny JSON-over-HTTP client for the control plane's API (real HTTP on loopback)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str

    def json(self) -> Any:
        return json.loads(self.body)


class Http:
    def __init__(self, base_url: str, token: str = "") -> None:
        self.base_url = base_url
        self.token = token

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Reply:
        data = json.dumps(body).encode() if body is not None else None
        headers = dict(headers or {})
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return Reply(response.status, response.read(), response.headers["Content-Type"])
        except urllib.error.HTTPError as error:
            return Reply(error.code, error.read(), error.headers["Content-Type"])

    def get(self, path: str) -> Any:
        """GET a JSON body; fails unless the status is 200."""
        reply = self.request("GET", path)
        assert reply.status == 200, f"GET {path}: {reply.status} {reply.body!r}"
        return reply.json()

    def post(self, path: str, body: Any = None) -> Any:
        """POST JSON; fails unless the status is 200."""
        reply = self.request("POST", path, body if body is not None else {})
        assert reply.status == 200, f"POST {path}: {reply.status} {reply.body!r}"
        return reply.json()
