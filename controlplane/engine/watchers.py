"""Wakes whoever waits on a run when its state changes."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class RunWatchers:
    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = defaultdict(set)

    @contextmanager
    def watch(self, run_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever the run changes, for the duration of the block."""
        event = asyncio.Event()
        self._events[run_id].add(event)
        try:
            yield event
        finally:
            self._events[run_id].discard(event)
            if not self._events[run_id]:
                del self._events[run_id]

    def notify(self, run_ids: Iterable[str]) -> None:
        if not self._events:
            return
        for run_id in run_ids:
            for event in self._events.get(run_id, ()):
                event.set()
