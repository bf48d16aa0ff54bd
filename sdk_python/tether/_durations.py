"""Durations as users write them: "1h30m", timedelta, or seconds."""

from __future__ import annotations

import datetime as dt
import re

DurationLike = str | dt.timedelta | int | float

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def to_milliseconds(duration: DurationLike) -> int:
    """Milliseconds in ``duration``; "1h30m", "500ms", "2d", a timedelta or seconds."""
    if isinstance(duration, bool):
        raise TypeError("a duration cannot be a boolean")
    if isinstance(duration, dt.timedelta):
        ms = duration.total_seconds() * 1000
    elif isinstance(duration, int | float):
        ms = float(duration) * 1000
    elif isinstance(duration, str):
        ms = _parse(duration)
    else:
        raise TypeError(
            "a duration is a string like '1h30m', a timedelta or seconds, "
            f"not {type(duration).__name__}"
        )
    if ms < 0:
        raise ValueError(f"a duration cannot be negative: {duration!r}")
    return round(ms)


def _parse(text: str) -> float:
    compact = text.replace(" ", "").lower()
    if not compact:
        raise ValueError("empty duration: write it like '30s', '1h30m' or '2d'")
    position = 0
    total = 0.0
    for match in _PART.finditer(compact):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS_MS[match.group(2)]
        position = match.end()
    if position != len(compact):
        raise ValueError(
            f"invalid duration {text!r}: write it like '30s', '1h30m', '500ms' or '2d' "
            "(units: ms, s, m, h, d, w)"
        )
    return total
