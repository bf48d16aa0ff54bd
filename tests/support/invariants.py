"""The doctor's checks, run by tests on a database a control plane has left."""

from __future__ import annotations

import time

from controlplane.engine.doctor import examine
from controlplane.model.invariants import Violation
from controlplane.store import open_store
from controlplane.store.tx import ReadTx


def violations(db_url: str) -> list[Violation]:
    """What ``tether doctor`` would find in the store at ``db_url`` now."""
    store = open_store(db_url)
    try:
        with store.engine.connect() as conn, conn.begin():
            tx = ReadTx(conn, store.insert)
            return examine(tx, max(time.time_ns() // 1_000_000, tx.latest_recorded_ms()))
    finally:
        store.engine.dispose()
