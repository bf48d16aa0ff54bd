"""Tunable limits and timings of the engine."""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True, slots=True)
class Limits:
    """What the control plane accepts. Sent to workers in Welcome."""

    max_event_bytes: int = 512 * KIB
    max_step_output_bytes: int = 4 * MIB
    max_run_state_bytes: int = 32 * MIB
    max_steps_per_run: int = 1000
    max_events_per_send: int = 1000
    # Frames carry batches; a frame holds at least one full run state.
    max_frame_bytes: int = 64 * MIB


@dataclass(frozen=True, slots=True)
class EngineSettings:
    limits: Limits = Limits()
    heartbeat_interval_ms: int = 3_000
    lease_timeout_ms: int = 15_000
    # How long CancelRun waits for the cancelled execution's worker to confirm
    # (CancelAck) that it starts no further step.
    cancel_ack_timeout_ms: int = 5_000
    # Events with the same id within this window are one event.
    dedupe_window_ms: int = 24 * 3600 * 1000
    # Most executions leased in one claim, whatever the free capacity.
    max_claim_batch: int = 256
    # A worker's stream is not read while this many of its outcomes wait for
    # their commit: its frames stay in its buffers (gRPC flow control), not ours.
    max_unacknowledged_outcomes: int = 10_000
    # At start-up, bring every lease deadline to at most a lease timeout from
    # now: on a store no one else uses (SQLite), the leases are the previous
    # process's, and its clock (a virtual one) may have been ahead of this one's.
    cap_leases_on_start: bool = False
    # How often the doctor's checks run in the background (0: never).
    invariant_check_interval_ms: int = 300_000
    # Finished runs, and events nothing needs, are deleted this long after
    # they ended (None: kept forever). See retention.py.
    retention_ms: int | None = None


def format_bytes(n: int) -> str:
    """``4194304`` -> ``4 MiB``; used in limit messages."""
    for unit, size in (("MiB", MIB), ("KiB", KIB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    if n >= MIB:
        return f"{n / MIB:.1f} MiB"
    if n >= KIB:
        return f"{n / KIB:.1f} KiB"
    return "1 byte" if n == 1 else f"{n} bytes"


def format_duration(ms: int) -> str:
    """``90000`` -> ``1m30s``; used in timeout messages."""
    if ms < 1000:
        return f"{ms}ms"
    parts = []
    rest = ms // 1000
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)
