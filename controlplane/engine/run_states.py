"""The run state machine: the statuses a run moves through and the only changes
allowed between them (``TRANSITIONS``). Every status the engine writes is
checked here first (``change``); a finished run never changes again (a replay
is a new run).
"""

from __future__ import annotations

from collections.abc import Mapping

from controlplane.model import RunStatus
from controlplane.model.errors import Internal

QUEUED, RUNNING, SLEEPING, WAITING = (
    RunStatus.QUEUED,
    RunStatus.RUNNING,
    RunStatus.SLEEPING,
    RunStatus.WAITING,
)
COMPLETED, FAILED, CANCELLED = RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED

#: Status -> the statuses a run in it may move to.
TRANSITIONS: Mapping[RunStatus, frozenset[RunStatus]] = {
    # Created, due now or later: a worker claims it, or it is cancelled.
    QUEUED: frozenset({RUNNING, CANCELLED}),
    # Leased to a worker. Its execution's terminal outcome decides: completed or
    # failed; suspended on a sleep (sleeping) or on an event or a child run
    # (waiting); running again when a retry of the whole run is scheduled or a
    # suspension leaves only a step's retry pending. A re-claim after its worker
    # was lost writes running again too.
    RUNNING: frozenset({RUNNING, SLEEPING, WAITING, COMPLETED, FAILED, CANCELLED}),
    # Claimed again (running) once what it waits for resolves or times out.
    SLEEPING: frozenset({RUNNING, CANCELLED}),
    WAITING: frozenset({RUNNING, CANCELLED}),
    COMPLETED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}

#: The status every run is created in.
INITIAL = RunStatus.QUEUED


class InvalidTransition(Internal):
    """The engine tried a status change the state machine does not allow: a bug,
    reported as INTERNAL; the transaction that tried it is rolled back."""


def change(run_id: str, current: RunStatus | str, new: RunStatus) -> RunStatus:
    """``new``, once checked against ``current``; raises InvalidTransition."""
    now = RunStatus(current)
    if new not in TRANSITIONS[now]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[now])) or "nothing"
        raise InvalidTransition(
            f"run {run_id} cannot go from {now.value} to {new.value} "
            f"(from {now.value} it may go to: {allowed})"
        )
    return new
