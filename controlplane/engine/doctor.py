"""The doctor: checks the invariants a durable engine keeps (model/invariants.py)
and repairs what can be repaired safely.

Concurrency slots are queue entries, so a finished run holding one is a queue
entry of a finished run. A singleton key, a debounce or a batch counts as held
only while its run is unfinished (flow.py reads the run's status), so flow
state never holds anything for a finished run.

The checks are read queries, each bounded; ``tether doctor`` runs them once,
the control plane in the background at a low rate (exported as the gauge
``tether.invariant.violations``). A repair runs the checks again inside its
write transaction and fixes what they find then, so it never acts on a state
a running control plane has meanwhile moved on from:

- a run with no queue entry is queued again, due now (it resumes from its
  memoized steps);
- a queue entry of a finished (or missing) run is deleted, and with it the
  lease and the concurrency slots it held;
- a lease a minute past its deadline is released (its late outcomes are
  refused by fencing) and the run queued again;
- waits and watches of a finished run are deleted;
- schedules are brought in line with the registered cron triggers (a missing
  one starts from the next tick after now; an orphan is deleted).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from controlplane.engine import cron, leases
from controlplane.engine.clock import Clock
from controlplane.engine.flow import concurrency_slots
from controlplane.engine.periodic import Periodic
from controlplane.engine.registry import spec_from_json
from controlplane.model import CronTrigger, FunctionKey, FunctionSpec, QueueEntry
from controlplane.model.invariants import Invariant, Violation
from controlplane.store import Store
from controlplane.store.tx import ReadTx, WriteTx

log = logging.getLogger("tether.engine")

#: How far past its deadline a lease counts as stale: control planes take an
#: expired lease back within a heartbeat interval, so a minute means none does.
STALE_LEASE_GRACE_MS = 60_000
#: At most this many violations of each invariant per check.
CHECK_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Repair:
    """What a repair did about one violation."""

    violation: Violation
    action: str


def examine(tx: ReadTx, now_ms: int) -> list[Violation]:
    """Every violation found (at most CHECK_LIMIT of each invariant)."""
    found: list[Violation] = []
    for run in tx.runs_without_queue_entry(CHECK_LIMIT):
        found.append(
            Violation(
                Invariant.RUN_WITHOUT_QUEUE_ENTRY,
                run.run_id,
                f"run of {run.app_id}/{run.function_id} is {run.status} but has no queue "
                "entry: nothing would ever run it",
                (run.app_id, run.function_id, run.event_pk or ""),
            )
        )
    for run_id, execution_id in tx.queue_entries_without_unfinished_run(CHECK_LIMIT):
        held = f", leased by execution {execution_id}" if execution_id else ""
        found.append(
            Violation(
                Invariant.QUEUE_ENTRY_OF_FINISHED_RUN,
                run_id,
                f"queue entry{held} of a run that is finished or does not exist: it "
                "holds its concurrency slots",
            )
        )
    stale_before = now_ms - STALE_LEASE_GRACE_MS
    for run_id, execution_id, deadline in tx.leases_expired_before(stale_before, CHECK_LIMIT):
        found.append(
            Violation(
                Invariant.STALE_LEASE,
                run_id,
                f"lease of execution {execution_id} expired {(now_ms - deadline) // 1000} s "
                "ago and no control plane took it back",
                (execution_id,),
            )
        )
    for run_id, step_id, name, kind in tx.waits_of_finished_runs(CHECK_LIMIT):
        found.append(
            Violation(
                Invariant.WAIT_OF_FINISHED_RUN,
                run_id,
                f"{kind} {name!r} of a run that is finished or does not exist",
                (step_id,),
            )
        )
    found.extend(_schedule_violations(tx, now_ms))
    return found


def repair(tx: WriteTx, now_ms: int) -> list[Repair]:
    """Fix what the checks find now, in this transaction; what was done."""
    found = examine(tx, now_ms)
    specs = _registered(tx)
    done: list[Repair] = []
    by_invariant: dict[Invariant, list[Violation]] = {}
    for violation in found:
        by_invariant.setdefault(violation.invariant, []).append(violation)

    stranded = by_invariant.get(Invariant.RUN_WITHOUT_QUEUE_ENTRY, [])
    if stranded:
        tx.add_queue_items(_requeued(tx, stranded, specs, now_ms))
        done += [Repair(v, "queued again, due now") for v in stranded]

    orphans = by_invariant.get(Invariant.QUEUE_ENTRY_OF_FINISHED_RUN, [])
    tx.delete_queue_items([v.run_id for v in orphans])
    done += [Repair(v, "deleted the queue entry") for v in orphans]

    stale = by_invariant.get(Invariant.STALE_LEASE, [])
    if stale:
        message = "lease released by tether doctor (no control plane took it back)"
        execution_ids = [v.subject[0] for v in stale]
        released = leases.release(tx, execution_ids, now_ms, message, expired_only=True)
        back = {execution_id for _, execution_id in released}
        done += [
            Repair(v, "released the lease; queued again") for v in stale if v.subject[0] in back
        ]

    stray = by_invariant.get(Invariant.WAIT_OF_FINISHED_RUN, [])
    tx.delete_waits([(v.run_id, v.subject[0]) for v in stray])
    done += [Repair(v, "deleted the wait") for v in stray]

    schedule_faults = [
        v for v in found if v.invariant in (Invariant.SCHEDULE_MISSING, Invariant.SCHEDULE_ORPHANED)
    ]
    if schedule_faults:
        apps = {v.subject[0] for v in schedule_faults}
        for app_id in sorted(apps):
            cron.sync_schedules(
                tx, app_id, [s for s in specs.values() if s.app_id == app_id], now_ms
            )
        for v in schedule_faults:
            if (
                v.invariant is Invariant.SCHEDULE_ORPHANED
                and FunctionKey(*v.subject[:2]) not in specs
            ):
                tx.delete_schedules(v.subject[0], [(v.subject[1], int(v.subject[2]))])
        done += [
            Repair(
                v,
                "scheduled from the next tick after now"
                if v.invariant is Invariant.SCHEDULE_MISSING
                else "deleted the schedule",
            )
            for v in schedule_faults
        ]
    return done


def _requeued(
    tx: WriteTx, stranded: list[Violation], specs: dict[FunctionKey, FunctionSpec], now_ms: int
) -> list[QueueEntry]:
    """Queue entries due now for these runs, counting against their
    function's concurrency limits as a new run of it would."""
    stored = tx.events_by_pk([v.subject[2] for v in stranded if v.subject[2]])
    entries: list[QueueEntry] = []
    for violation in stranded:
        app_id, function_id, event_pk = violation.subject
        key = FunctionKey(app_id, function_id)
        spec = specs.get(key)
        event = stored.get(event_pk)
        data = json.loads(event.data) if event is not None else None
        slots = concurrency_slots(spec, data) if spec is not None else ()
        entries.append(QueueEntry(violation.run_id, key, now_ms, concurrency=slots))
    return entries


def _registered(tx: ReadTx) -> dict[FunctionKey, FunctionSpec]:
    specs = (spec_from_json(r.app_id, r.function_id, r.definition) for r in tx.load_functions())
    return {spec.key: spec for spec in specs}


def _schedule_violations(tx: ReadTx, now_ms: int) -> Iterable[Violation]:
    specs = _registered(tx)
    wanted = {
        (spec.app_id, spec.id, position)
        for spec in specs.values()
        for position, trigger in enumerate(spec.triggers)
        # A schedule that never fires (February 30th) has no row, by design.
        if isinstance(trigger, CronTrigger)
        and cron.next_tick(trigger.schedule, trigger.timezone, now_ms) is not None
    }
    stored = set(tx.schedule_keys())
    for app_id, function_id, position in sorted(wanted - stored):
        yield Violation(
            Invariant.SCHEDULE_MISSING,
            "",
            f"cron trigger {position} of {app_id}/{function_id} has no schedule: it never fires",
            (app_id, function_id, str(position)),
        )
    for app_id, function_id, position in sorted(stored - wanted):
        yield Violation(
            Invariant.SCHEDULE_ORPHANED,
            "",
            f"schedule {position} of {app_id}/{function_id} belongs to no registered cron trigger",
            (app_id, function_id, str(position)),
        )


class InvariantWatch:
    """The checks, run by a control plane in the background at a low rate;
    ``counts`` (per invariant) is what the last pass found, for the gauge."""

    def __init__(self, store: Store, clock: Clock, interval_ms: int) -> None:
        self._store = store
        self._clock = clock
        self.counts: dict[str, int] = dict.fromkeys(Invariant, 0)
        interval_s = interval_ms / 1000
        self._pass = (
            Periodic("tether-invariants", self.check, interval_s, first_after_s=interval_s)
            if interval_s > 0
            else None
        )

    def start(self) -> None:
        if self._pass is not None:
            self._pass.start()

    async def stop(self) -> None:
        if self._pass is not None:
            await self._pass.stop()

    async def check(self) -> list[Violation]:
        """One pass now."""
        now = self._clock.now_ms()
        found = await self._store.read(lambda tx: examine(tx, now))
        counts = Counter(v.invariant.value for v in found)
        fresh = {invariant.value: counts.get(invariant.value, 0) for invariant in Invariant}
        if found and fresh != self.counts:
            summary = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
            log.warning(
                "invariant violations found (%s): 'tether doctor' lists them, "
                "'tether doctor --repair' fixes them",
                summary,
            )
        self.counts = fresh
        return found
