"""Cron triggers: their ticks, their schedules in the store, and firing them.

**Ticks** are computed with croniter on timezone-aware datetimes (zoneinfo;
an empty time zone means UTC), so ``0 9 * * *`` in Europe/Paris is 09:00 Paris
time on both sides of a daylight-saving change. Across a change we do what
Vixie cron does:

- spring forward: a wall-clock time inside the gap (02:30 when 02:00 jumps to
  03:00) runs once, at the end of the gap (03:00);
- fall back: when the hour field is fixed (anything but ``*`` or ``*/n``), the
  second pass through a repeated wall-clock time is skipped, so ``30 2 * * *``
  runs once that night; with a wildcard hour the schedule follows real time
  (``0 * * * *`` runs at 02:00 summer time and again at 02:00 winter time, one
  hour apart).

**Schedules** are rows of the ``schedules`` table, one per cron trigger of a
registered function (keyed by the trigger's position among the function's
triggers) with its next tick, ``next_fire_ms``. Registering functions
(:func:`sync_schedules`, in the same write as the function rows) inserts a
row for a new trigger with the first tick after now, keeps the next tick of a
trigger whose schedule and time zone did not change (so ticks missed while no
control plane ran are found later), replaces a changed one and deletes the rows
of triggers a function no longer has.

**Firing** (:func:`fire_due`, the dispatcher calls it when the earliest
``next_fire_ms`` comes) starts a run for each due tick, with no event and the
tick in ``runs.cron``. Ticks may be late: the control plane was down, or a
virtual clock jumped. A tick is *on time* when it is found less than
:data:`GRACE_MS` (60 s) after it was due and *missed* otherwise; the
trigger's catch-up decides what runs:

- ``one``: a single run, for the latest due tick, on time or missed;
- ``none``: a run per on-time tick; missed ticks start nothing;
- ``all``: a run per due tick, the latest :data:`MAX_CATCH_UP` (100) of them.

The schedule then moves to its first tick after now.

**One run per tick, across control planes.** Firing is one writer
transaction: it selects the due rows (on PostgreSQL ``FOR UPDATE SKIP
LOCKED``), creates their runs and moves ``next_fire_ms`` past now before it
commits. The row lock is the lease on the tick: another control plane sharing
the database skips a row that is being fired, and once the transaction commits
the row is no longer due; if it rolls back, neither the runs nor the advance
happened and the tick is fired again. No leader is needed: whichever node
reaches a tick first fires it, exactly once.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

from controlplane.engine.creation import NewRun, create_runs
from controlplane.engine.effects import Effects
from controlplane.model import (
    CatchUp,
    CronTick,
    CronTrigger,
    FunctionKey,
    FunctionSpec,
    PauseMode,
)
from controlplane.store.schedules_tx import ScheduleRow
from controlplane.store.tx import WriteTx

log = logging.getLogger(__name__)

#: A tick found this late or later was missed (the catch-up decides).
GRACE_MS = 60_000
#: The most runs ``catch_up="all"`` starts for one schedule at once.
MAX_CATCH_UP = 100
#: Schedules fired per transaction; more are fired by the next one at once.
FIRE_BATCH = 256
# Consecutive skipped ticks tolerated before giving up (a fixed hour with every
# minute repeats 60 ticks on the night the clocks go back).
_MAX_SKIPPED = 1000


# -- ticks -------------------------------------------------------------------------------


def _zone(timezone: str) -> dt.tzinfo:
    return ZoneInfo(timezone) if timezone else dt.UTC


def _local(at_ms: int, zone: dt.tzinfo) -> dt.datetime:
    return dt.datetime.fromtimestamp(at_ms / 1000, zone)


def _ms(at: dt.datetime) -> int:
    return round(at.timestamp() * 1000)


def _fixed_hour(schedule: str) -> bool:
    """Whether the hour field names hours (not ``*`` or ``*/n``)."""
    fields = schedule.split()
    return len(fields) > 1 and not fields[1].startswith("*")


def _repeated(at_ms: int, zone: dt.tzinfo) -> bool:
    """Whether ``at_ms`` is the second pass through a wall-clock time that the
    clocks going back repeat."""
    local = _local(at_ms, zone)
    return local.fold == 1 and local.utcoffset() != local.replace(fold=0).utcoffset()


def next_tick(schedule: str, timezone: str, after_ms: int) -> int | None:
    """The schedule's first tick strictly after ``after_ms`` (ms since the epoch),
    or None if it never fires (``0 0 31 2 *``)."""
    zone = _zone(timezone)
    skip_repeats = _fixed_hour(schedule)
    ticks = croniter(schedule, _local(after_ms, zone))
    for _ in range(_MAX_SKIPPED):
        try:
            at = _ms(ticks.get_next(dt.datetime))
        except CroniterBadDateError:
            return None
        if at > after_ms and not (skip_repeats and _repeated(at, zone)):
            return at
    return None


def ticks_between(
    schedule: str, timezone: str, start_ms: int, end_ms: int, limit: int
) -> list[int]:
    """The latest ``limit`` ticks in [``start_ms``, ``end_ms``], oldest first."""
    zone = _zone(timezone)
    skip_repeats = _fixed_hour(schedule)
    # Walk back from the end: the work is bounded by ``limit``, however long ago
    # the start is.
    ticks = croniter(schedule, _local(end_ms + 1, zone))
    found: list[int] = []
    skipped = 0
    while len(found) < limit and skipped < _MAX_SKIPPED:
        try:
            at = _ms(ticks.get_prev(dt.datetime))
        except CroniterBadDateError:
            break
        if at < start_ms:
            break
        if at > end_ms or (skip_repeats and _repeated(at, zone)):
            skipped += 1
            continue
        found.append(at)
    found.reverse()
    return found


def due_ticks(
    schedule: str, timezone: str, catch_up: CatchUp, next_fire_ms: int, now_ms: int
) -> list[int]:
    """The ticks to start runs for, now that a schedule whose next tick was
    ``next_fire_ms`` is looked at, at ``now_ms`` (see the module docstring)."""
    if next_fire_ms > now_ms:
        return []
    if catch_up is CatchUp.ONE:
        return ticks_between(schedule, timezone, next_fire_ms, now_ms, 1)
    if catch_up is CatchUp.NONE:
        start = max(next_fire_ms, now_ms - GRACE_MS + 1)
        return ticks_between(schedule, timezone, start, now_ms, MAX_CATCH_UP)
    return ticks_between(schedule, timezone, next_fire_ms, now_ms, MAX_CATCH_UP)


# -- registration ------------------------------------------------------------------------


def sync_schedules(
    tx: WriteTx, app_id: str, specs: Sequence[FunctionSpec], now_ms: int
) -> int | None:
    """Bring the schedules of these functions (of one app) in line with their
    cron triggers; returns their earliest next tick."""
    existing = {
        (r.function_id, r.position): r for r in tx.schedules_of(app_id, [s.id for s in specs])
    }
    put: list[ScheduleRow] = []
    catch_ups: list[ScheduleRow] = []
    fires: list[int] = []
    for spec in specs:
        for position, trigger in enumerate(spec.triggers):
            if not isinstance(trigger, CronTrigger):
                continue
            row = existing.get((spec.id, position))
            if row is not None and (row.schedule, row.timezone) == (
                trigger.schedule,
                trigger.timezone,
            ):
                # Unchanged: keep its next tick, even one in the past (missed).
                del existing[(spec.id, position)]
                fires.append(row.next_fire_ms)
                if row.catch_up != trigger.catch_up.value:
                    catch_ups.append(replace(row, catch_up=trigger.catch_up.value))
                continue
            first = next_tick(trigger.schedule, trigger.timezone, now_ms)
            if first is None:
                log.warning("function %s: cron %r never fires", spec.key, trigger.schedule)
                continue  # a row for the old schedule, if any, is deleted below
            existing.pop((spec.id, position), None)
            fires.append(first)
            put.append(
                ScheduleRow(
                    app_id,
                    spec.id,
                    position,
                    trigger.schedule,
                    trigger.timezone,
                    trigger.catch_up.value,
                    first,
                )
            )
    tx.put_schedules(put)
    tx.set_catch_ups(catch_ups)
    tx.delete_schedules(app_id, sorted(existing))
    return min(fires, default=None)


# -- firing ------------------------------------------------------------------------------


@dataclass(slots=True)
class Fired:
    """What a firing pass did."""

    #: The time it fired at.
    now_ms: int
    #: When the next pass is due: the earliest tick after now, ``now_ms`` if
    #: due schedules were left for another pass, None without schedules.
    next_check_ms: int | None
    run_ids: list[str] = field(default_factory=list)
    effects: Effects = field(default_factory=Effects)


def fire_due(
    tx: WriteTx, now_ms: int, spec_of: Callable[[FunctionKey], FunctionSpec | None]
) -> Fired:
    """Start the runs of every due schedule and move each to its next tick, in
    this transaction. Schedules of functions this node does not know are left
    for one that does."""
    rows = tx.due_schedules(now_ms, FIRE_BATCH)
    fired = Fired(now_ms, None)
    if not rows:
        fired.next_check_ms = tx.next_fire_after(now_ms)
        return fired
    paused = tx.paused_functions()
    new: list[NewRun] = []
    advanced: list[ScheduleRow] = []
    gone: dict[str, list[tuple[str, int]]] = {}
    for row in rows:
        spec = spec_of(row.key)
        if spec is None:
            continue
        ticks = due_ticks(
            row.schedule, row.timezone, CatchUp(row.catch_up), row.next_fire_ms, now_ms
        )
        if paused.get(row.key) is PauseMode.SKIP:
            if ticks:
                log.info("function %s is paused: %d cron tick(s) skipped", row.key, len(ticks))
        else:
            new.extend(
                NewRun(spec, None, None, cron=CronTick(row.schedule, row.timezone, at))
                for at in ticks
            )
        following = next_tick(row.schedule, row.timezone, now_ms)
        if following is None:
            gone.setdefault(row.app_id, []).append((row.function_id, row.position))
            continue
        advanced.append(replace(row, next_fire_ms=following))
    fired.run_ids = create_runs(tx, new, now_ms, fired.effects)
    tx.advance_schedules(advanced)
    for app_id, keys in gone.items():
        tx.delete_schedules(app_id, keys)
    full = len(rows) == FIRE_BATCH and bool(advanced or gone)
    fired.next_check_ms = now_ms if full else tx.next_fire_after(now_ms)
    return fired
