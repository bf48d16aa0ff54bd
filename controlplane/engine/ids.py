"""Identifiers: ULIDs for stored things, random hex for sessions and traces."""

from __future__ import annotations

import os

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid(now_ms: int) -> str:
    """A 26-character ULID: 48 bits of time then 80 random bits, sortable by time."""
    value = (now_ms & 0xFFFF_FFFF_FFFF) << 80 | int.from_bytes(os.urandom(10), "big")
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
