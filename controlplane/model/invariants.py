"""The invariants a durable engine keeps, and a violation of one (``tether
doctor`` and the control plane's background check find them)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Invariant(enum.StrEnum):
    #: An unfinished run has a queue entry (it is due, leased, or waits for its time).
    RUN_WITHOUT_QUEUE_ENTRY = "run_without_queue_entry"
    #: A queue entry (and the lease or concurrency slot on it) belongs to an unfinished run.
    QUEUE_ENTRY_OF_FINISHED_RUN = "queue_entry_of_finished_run"
    #: A lease past its deadline is taken back by a control plane within seconds.
    STALE_LEASE = "stale_lease"
    #: A wait or cancel_on watch belongs to an unfinished run.
    WAIT_OF_FINISHED_RUN = "wait_of_finished_run"
    #: A registered function's cron trigger has its schedule (its next tick).
    SCHEDULE_MISSING = "schedule_missing"
    #: A schedule belongs to a registered function's cron trigger.
    SCHEDULE_ORPHANED = "schedule_orphaned"


@dataclass(frozen=True, slots=True)
class Violation:
    """One thing found broken: the invariant, the run it concerns (empty for
    schedules), and a sentence that says what is wrong."""

    invariant: Invariant
    run_id: str
    detail: str
    #: What the repair needs besides the run id (a step id, a flow key, a
    #: function and trigger position), as strings.
    subject: tuple[str, ...] = ()
