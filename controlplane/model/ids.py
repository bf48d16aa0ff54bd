"""Identifiers: ULIDs for stored things, random hex for sessions and traces."""

from __future__ import annotations

import os
import threading

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class _MonotonicUlids:
    """ULIDs that sort in the order they were made in this process: within one
    millisecond the random part is incremented, so that events received
    together keep their order (the look-back of waits relies on it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def new(self, now_ms: int) -> int:
        fresh = (now_ms & 0xFFFF_FFFF_FFFF) << 80 | int.from_bytes(os.urandom(10), "big")
        with self._lock:
            same_ms = fresh >> 80 == self._last >> 80
            value = self._last + 1 if same_ms and fresh <= self._last else fresh
            self._last = value
        return value


_ULIDS = _MonotonicUlids()


def new_ulid(now_ms: int) -> str:
    """A 26-character ULID: 48 bits of time then 80 random bits, sortable by time
    and, within this process, by creation."""
    value = _ULIDS.new(now_ms)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 0x1F])
        value >>= 5
    return "".join(reversed(chars))


def new_hex_id(n_bytes: int) -> str:
    """Random lowercase hex; 16 bytes for trace ids, 8 for span ids."""
    value = os.urandom(n_bytes).hex()
    # An all-zero trace or span id is invalid in W3C trace context.
    return value if value.strip("0") else new_hex_id(n_bytes)
