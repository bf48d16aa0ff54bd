"""Retention: nothing grows forever. Finished runs (with their steps, history
and event links) are deleted once they ended longer ago than the retention
period, and events once no stored run was started by them, no wait reads them
and they were received before the same cutoff; expired idempotency keys and
flow-control state that holds nothing go too. Unfinished runs, and the events
they still need, are never touched.

The purge works in small transactions (PURGE_BATCH runs, then as many events),
so that it never holds the writer (or a lock) for long. A control plane runs
it in the background every PURGE_INTERVAL_S, in smaller transactions and
pausing between them so that it takes at most BACKGROUND_SHARE of the writer's
time (measured: at full speed it cost a concurrent workload a quarter to a
third of its steps/s); ``tether purge`` runs it once, at full speed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controlplane.engine.clock import Clock
from controlplane.engine.periodic import Periodic
from controlplane.engine.settings import format_duration
from controlplane.model import FunctionKey
from controlplane.store import Store
from controlplane.store.tx import WriteTx

log = logging.getLogger("tether.engine")

PURGE_BATCH = 500
PURGE_INTERVAL_S = 30.0
# The background purge: small transactions, and at most this part of the
# writer's time (a backlog of 100,000 runs then takes about three minutes).
BACKGROUND_BATCH = 200
BACKGROUND_SHARE = 0.1


@dataclass(slots=True)
class Purged:
    """How much a purge deleted."""

    runs: int = 0
    events: int = 0
    #: Expired idempotency keys and flow-control state.
    state: int = 0

    def add(self, other: Purged) -> None:
        self.runs += other.runs
        self.events += other.events
        self.state += other.state


def purge_batch(
    tx: WriteTx,
    cutoff_ms: int,
    batch: int = PURGE_BATCH,
    *,
    only: FunctionKey | None = None,
    excluding: Sequence[FunctionKey] = (),
    events: bool = True,
) -> Purged:
    """One transaction's worth: up to ``batch`` runs that ended before
    ``cutoff_ms`` (of one function, or of all but some), then up to ``batch``
    events received before it that nothing needs any more."""
    run_ids = tx.runs_ended_before(cutoff_ms, batch, only=only, excluding=excluding)
    tx.delete_runs(run_ids)
    gone = tx.delete_events(tx.events_unneeded_before(cutoff_ms, batch)) if events else 0
    return Purged(len(run_ids), gone)


async def purge(
    store: Store,
    now_ms: int,
    older_than_ms: int | None,
    functions: Mapping[FunctionKey, int] | None = None,
    batch: int = PURGE_BATCH,
    *,
    share: float = 1.0,
) -> Purged:
    """Everything older than ``older_than_ms`` (None: keep, but for
    ``functions``), batch after batch; the runs of ``functions`` by their own
    retention (ms) instead. ``share`` is the part of the writer's time the
    purge may take: after each batch it pauses so that batches take no more
    (1.0: no pause, for ``tether purge``)."""
    own = dict(functions or {})
    total = Purged()
    pause_per_s = (1 - share) / share

    async def drain(cutoff: int, **scope: Any) -> None:
        while True:
            started = time.monotonic()
            done = await store.write(lambda tx: purge_batch(tx, cutoff, batch, **scope))
            total.add(done)
            if done.runs < batch and done.events < batch:
                return
            # Let the workload's writes in between batches.
            await asyncio.sleep((time.monotonic() - started) * pause_per_s)

    if older_than_ms is not None:
        await drain(now_ms - older_than_ms, excluding=sorted(own))
    for key, retention_ms in sorted(own.items()):
        await drain(now_ms - retention_ms, only=key, events=False)
    total.state = await store.write(lambda tx: tx.delete_expired_state(now_ms))
    return total


class RetentionPurge:
    """The purge a control plane runs in the background; ``purged`` counts
    what it deleted since start, for metrics."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        retention_ms: int | None,
        functions: Callable[[], Mapping[FunctionKey, int]] = dict,
    ) -> None:
        self._store = store
        self._clock = clock
        self.retention_ms = retention_ms
        # The functions with a retention of their own (FunctionSpec.retention_ms).
        self._functions = functions
        self.purged = Purged()
        self._pass = Periodic("tether-purge", self.run_once, PURGE_INTERVAL_S, first_after_s=0)

    def start(self) -> None:
        self._pass.start()

    async def stop(self) -> None:
        await self._pass.stop()

    async def run_once(self) -> Purged:
        functions = self._functions()
        if self.retention_ms is None and not functions:
            return Purged()
        done = await purge(
            self._store,
            self._clock.now_ms(),
            self.retention_ms,
            functions,
            BACKGROUND_BATCH,
            share=BACKGROUND_SHARE,
        )
        self.purged.add(done)
        if done.runs or done.events:
            log.info(
                "retention: deleted %d finished run(s) and %d event(s) older than %s",
                done.runs,
                done.events,
                format_duration(self.retention_ms)
                if self.retention_ms
                else "their functions' retention",
            )
        return done
