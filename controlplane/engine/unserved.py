"""The most common reason a function never runs: no worker serving it is
connected. Say so in the log when runs queue up for such a function."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from controlplane.engine.sessions import SessionTable
from controlplane.model import FunctionKey

log = logging.getLogger("tether.engine")


class UnservedWarnings:
    """Warns at most once per ``interval_s`` per function."""

    def __init__(self, sessions: SessionTable, interval_s: float = 60.0) -> None:
        self._sessions = sessions
        self._interval_s = interval_s
        self._warned_at: dict[FunctionKey, float] = {}

    def runs_queued(self, keys: Iterable[FunctionKey]) -> None:
        now = time.monotonic()
        for key in set(keys):
            if self._sessions.serving(key.app_id, key.function_id):
                continue
            last = self._warned_at.get(key)
            if last is not None and now - last < self._interval_s:
                continue
            self._warned_at[key] = now
            log.warning(
                "function %s has new runs but no connected worker serves it: they wait in the "
                "queue until one does (start one with 'tether worker MODULE:APP' or "
                "'tether dev --worker MODULE:APP')",
                key,
                extra={"app_id": key.app_id, "function_id": key.function_id},
            )
