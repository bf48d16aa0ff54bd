"""Lease bookkeeping: heartbeats extend, disconnects and deadlines release."""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.model import HistoryKind, HistoryRecord
from controlplane.store.tx import WriteTx


def extend(tx: WriteTx, execution_ids: Sequence[str], deadline_ms: int) -> set[str]:
    """Extend leases; returns the execution ids that no longer hold one."""
    held = tx.extend_leases(execution_ids, deadline_ms)
    return set(execution_ids) - held


def release(
    tx: WriteTx,
    execution_ids: Sequence[str],
    now_ms: int,
    reason: str,
    *,
    expired_only: bool = False,
) -> list[tuple[str, str]]:
    """Requeue the runs these executions held (due now, or at a pending step
    retry); returns (run id, execution id). With ``expired_only``, a lease
    extended meanwhile (by another control plane) is left alone."""
    released = tx.release_leases(execution_ids, now_ms, expired_only=expired_only)
    tx.add_history(
        [
            HistoryRecord(
                run_id, now_ms, HistoryKind.EXECUTION_LOST, execution_id=eid, message=reason
            )
            for run_id, eid in released
        ],
    )
    return released


def release_expired(tx: WriteTx, now_ms: int, lease_timeout_ms: int) -> list[tuple[str, str]]:
    expired = tx.expired_leases(now_ms)
    if not expired:
        return []
    reason = f"lease expired: no heartbeat from the worker for {lease_timeout_ms} ms"
    return release(tx, expired, now_ms, reason, expired_only=True)
