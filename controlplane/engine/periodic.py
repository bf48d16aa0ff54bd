"""A pass an engine runs in the background at a fixed interval (the doctor's
checks, the retention purge)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class Periodic:
    """Runs ``work`` every ``interval_s`` (the first time after
    ``first_after_s``) until stopped. A failing pass is skipped: the store
    reports an outage itself, once."""

    def __init__(
        self,
        name: str,
        work: Callable[[], Awaitable[object]],
        interval_s: float,
        *,
        first_after_s: float,
    ) -> None:
        self._name = name
        self._work = work
        self._interval_s = interval_s
        self._first_after_s = first_after_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        await asyncio.sleep(self._first_after_s)
        while True:
            with contextlib.suppress(Exception):
                await self._work()
            await asyncio.sleep(self._interval_s)
