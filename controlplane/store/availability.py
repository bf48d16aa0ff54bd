"""Whether the database answers, as every operation and a periodic probe find.

An outage is logged twice, when it starts and when it ends, however many
operations fail in between; each failing operation raises
:class:`~controlplane.model.errors.Unavailable` for its caller instead.
Listeners (health reporting) hear of each change on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable

from controlplane.model.errors import Unavailable

log = logging.getLogger("tether.store")

UNAVAILABLE = "database unavailable, retrying"


class Availability:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._listeners: list[Callable[[bool], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def available(self) -> bool:
        return self._down_since is None

    def listen(self, on_change: Callable[[bool], None]) -> None:
        """Call ``on_change(available)`` on the running event loop on each change."""
        self._loop = asyncio.get_running_loop()
        self._listeners.append(on_change)

    def failed(self, error: BaseException) -> Unavailable:
        """The database could not be reached: the error for the caller."""
        with self._lock:
            starting = self._down_since is None
            if starting:
                self._down_since = time.monotonic()
        if starting:
            log.error("%s: %s", UNAVAILABLE, _first_line(error))
            self._notify(False)
        return Unavailable(UNAVAILABLE)

    def succeeded(self) -> None:
        """An operation reached the database."""
        if self._down_since is None:  # the common case, without the lock
            return
        with self._lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            log.warning("database available again after %.1f s", time.monotonic() - since)
            self._notify(True)

    def _notify(self, available: bool) -> None:
        loop = self._loop
        if loop is None:
            return
        for listener in self._listeners:
            with contextlib.suppress(RuntimeError):  # the loop closed
                loop.call_soon_threadsafe(listener, available)


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__
