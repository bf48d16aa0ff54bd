"""W3C trace context as the engine stores it, and the span ids it derives.

The engine never talks to OpenTelemetry; it only draws and stores ids so that
spans can be emitted after the fact (see controlplane/telemetry).
"""

from __future__ import annotations

import hashlib
import re

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def traceparent(trace_id: str, span_id: str) -> str:
    """A sampled W3C traceparent for these hex ids."""
    return f"00-{trace_id}-{span_id}-01"


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """(trace id, span id) in hex from a W3C traceparent; None if absent,
    malformed or all zeros."""
    if not value:
        return None
    found = _TRACEPARENT.match(value.strip().lower())
    if found is None:
        return None
    trace_id, span_id = found.groups()
    if not trace_id.strip("0") or not span_id.strip("0"):
        return None
    return trace_id, span_id


def step_span_id(run_id: str, step_id: str, attempt: int) -> str:
    """The span id of a step attempt: the first 16 hex digits of
    SHA-1("<run id>:<hashed step id>:<attempt>"). Workers compute the same.
    A sleep, wait or invoke is attempt 0 of its step."""
    digest = hashlib.sha1(f"{run_id}:{step_id}:{attempt}".encode()).hexdigest()[:16]
    return digest if digest.strip("0") else "0000000000000001"
