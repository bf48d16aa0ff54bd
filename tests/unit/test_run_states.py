"""The run state machine: what `change` allows and how it refuses the rest."""

from __future__ import annotations

import itertools

import pytest

from controlplane.engine import run_states
from controlplane.engine.run_states import InvalidTransition
from controlplane.model import RunStatus
from controlplane.model.errors import Internal

ALL = list(RunStatus)


def test_every_status_has_its_row_in_the_table() -> None:
    assert set(run_states.TRANSITIONS) == set(RunStatus)


@pytest.mark.parametrize(
    ("current", "new"),
    [(c, n) for c, n in itertools.product(ALL, ALL) if n in run_states.TRANSITIONS[c]],
)
def test_an_allowed_change_returns_the_new_status(current: RunStatus, new: RunStatus) -> None:
    assert run_states.change("run-1", current, new) is new
    assert run_states.change("run-1", current.value, new) is new


@pytest.mark.parametrize(
    ("current", "new"),
    [(c, n) for c, n in itertools.product(ALL, ALL) if n not in run_states.TRANSITIONS[c]],
)
def test_any_other_change_is_refused_naming_the_run_and_both_statuses(
    current: RunStatus, new: RunStatus
) -> None:
    with pytest.raises(InvalidTransition) as raised:
        run_states.change("01JRUNID", current, new)
    message = str(raised.value)
    assert message.startswith(f"run 01JRUNID cannot go from {current.value} to {new.value}")
    assert isinstance(raised.value, Internal)


def test_what_users_see_of_the_machine() -> None:
    # Runs start queued; every unfinished run can be cancelled; the finished
    # statuses (the ones the model calls terminal) never change again.
    assert run_states.INITIAL is RunStatus.QUEUED
    for status in RunStatus:
        assert (not run_states.TRANSITIONS[status]) == status.is_terminal
        if not status.is_terminal:
            assert RunStatus.CANCELLED in run_states.TRANSITIONS[status]
    assert run_states.TRANSITIONS[RunStatus.QUEUED] == {RunStatus.RUNNING, RunStatus.CANCELLED}
    with pytest.raises(InvalidTransition, match="from completed it may go to: nothing"):
        run_states.change("r", RunStatus.COMPLETED, RunStatus.RUNNING)
