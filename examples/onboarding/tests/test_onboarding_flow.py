"""The onboarding flow, tested the way an app tests its own functions.

TestEnvironment runs a real control plane on a virtual clock: the flow's 24 h
and 48 h sleeps pass in milliseconds. run_function runs the function alone with
mocked steps.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tether import RunStatus
from tether.testing import TestEnvironment, run_function

from .. import services
from ..client import app
from ..functions.onboarding_flow import onboarding_flow

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[TestEnvironment]:
    async with TestEnvironment(app) as environment:
        yield environment


@pytest.fixture(autouse=True)
def fresh_services() -> None:
    services.email.sent.clear()
    services.projects.owners.clear()


async def _signup(user_id: int) -> str:
    [result] = await app.send(
        {
            "name": "app/user.signup",
            "data": {"user_id": user_id, "email": f"user{user_id}@example.com"},
        }
    )
    [run_id] = result.run_ids
    return run_id


async def test_a_user_without_a_project_gets_nudged(env: TestEnvironment) -> None:
    run = await app.runs.wait(await _signup(1), timeout=10)

    assert run.status is RunStatus.COMPLETED
    assert run.output == {"user_id": 1, "nudged": True}
    assert [(m.to, m.template) for m in services.email.sent] == [
        ("user1@example.com", "welcome"),
        ("user1@example.com", "getting-started"),
        ("user1@example.com", "nudge"),
    ]
    steps = {s.id: s for s in run.steps}
    assert list(steps) == [
        "send-welcome-email",
        "wait-1d",
        "send-getting-started-guide",
        "check-for-project",
        "wait-2d",
        "send-nudge-email",
    ]
    assert steps["check-for-project"].output is False
    # The guide went out a day after the welcome, the nudge two days later.
    welcome, guide, nudge = (
        steps[name].started_at
        for name in ("send-welcome-email", "send-getting-started-guide", "send-nudge-email")
    )
    assert welcome is not None
    assert guide is not None
    assert nudge is not None
    assert guide - welcome >= dt.timedelta(hours=24)
    assert nudge - guide >= dt.timedelta(hours=48)


async def test_a_user_with_a_project_is_not_nudged(env: TestEnvironment) -> None:
    services.projects.add(2)

    run = await app.runs.wait(await _signup(2), timeout=10)

    assert run.status is RunStatus.COMPLETED
    assert run.output == {"user_id": 2, "nudged": False}
    assert [m.template for m in services.email.sent] == ["welcome", "getting-started"]
    assert "wait-2d" not in [s.id for s in run.steps]


async def test_a_project_recorded_by_event_stops_the_nudge(env: TestEnvironment) -> None:
    [recorded] = await app.send({"name": "app/project.created", "data": {"user_id": 3}})
    await app.runs.wait(recorded.run_ids[0], timeout=10)

    run = await app.runs.wait(await _signup(3), timeout=10)

    assert run.output == {"user_id": 3, "nudged": False}


async def test_a_signup_without_an_email_fails_without_retrying(env: TestEnvironment) -> None:
    [result] = await app.send({"name": "app/user.signup", "data": {"user_id": 4}})

    run = await app.runs.wait(result.run_ids[0], timeout=10)

    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert "needs data.user_id (an integer) and data.email" in run.error.message
    assert run.attempt == 1
    assert services.email.sent == []


async def test_the_flow_alone_with_mocked_steps() -> None:
    result = await run_function(
        onboarding_flow,
        event={"name": "app/user.signup", "data": {"user_id": 5, "email": "five@example.com"}},
        steps={"send-welcome-email": None, "check-for-project": True},
    )

    assert result.error is None
    assert result.output == {"user_id": 5, "nudged": False}
    assert result.step_ids == [
        "send-welcome-email",
        "wait-1d",
        "send-getting-started-guide",
        "check-for-project",
    ]
    assert result.step("wait-1d").slept == dt.timedelta(hours=24)
    assert result.step("send-welcome-email").mocked
    assert [m.template for m in services.email.sent] == ["getting-started"]
