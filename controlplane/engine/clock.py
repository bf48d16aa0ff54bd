"""The one source of time for the control plane.

Everything that reads the time (due times, leases, timestamps, ids) asks a
:class:`Clock`. :class:`SystemClock` is the wall clock; :class:`VirtualClock` runs
at the wall clock's pace from an offset that tests can move forward, which is how
a flow that sleeps for days is tested in milliseconds.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod


class Clock(ABC):
    """Milliseconds since the Unix epoch, in this control plane's timebase."""

    @abstractmethod
    def now_ms(self) -> int: ...

    @property
    def is_virtual(self) -> bool:
        return False

    def seconds_until(self, when_ms: int) -> float:
        """Real seconds to wait until ``when_ms`` (never negative)."""
        return max(0.0, (when_ms - self.now_ms()) / 1000.0)


class SystemClock(Clock):
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class VirtualClock(Clock):
    """Wall-clock pace plus an offset that only moves forward.

    With ``auto_skip`` on, the dispatcher jumps the clock to the next timer
    whenever nothing is executing and nothing is ready.
    """

    def __init__(self, start_ms: int | None = None, *, auto_skip: bool = True) -> None:
        start = start_ms if start_ms is not None else time.time_ns() // 1_000_000
        self._offset_ms = start - time.monotonic_ns() // 1_000_000
        self.auto_skip = auto_skip

    @property
    def is_virtual(self) -> bool:
        return True

    def now_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000 + self._offset_ms

    def advance(self, by_ms: int) -> int:
        if by_ms < 0:
            raise ValueError(f"the clock only moves forward; got {by_ms} ms")
        self._offset_ms += by_ms
        return self.now_ms()

    def advance_to(self, when_ms: int) -> int:
        """Move forward to ``when_ms``; a time in the past leaves the clock as is."""
        return self.advance(max(0, when_ms - self.now_ms()))
