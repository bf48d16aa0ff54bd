"""The approval flow, tested the way an app tests its own functions.

TestEnvironment runs a real control plane on a virtual clock: the 24 h wait for
an approval passes in milliseconds unless the test holds the clock to deliver
one. run_function runs the function alone with mocked steps.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tether import RunStatus
from tether.testing import TestEnvironment, run_function

from .. import services
from ..client import app
from ..functions.order_approval import order_approval

pytestmark = pytest.mark.asyncio(loop_scope="module")

order_numbers = itertools.count(1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[TestEnvironment]:
    async with TestEnvironment(app) as environment:
        yield environment


@pytest.fixture(autouse=True)
def fresh_services() -> None:
    services.warehouse.shipped.clear()
    services.payments.refunded.clear()


async def _place_order() -> tuple[str, str]:
    order_id = f"A-{next(order_numbers)}"
    [result] = await app.send({"name": "app/order.placed", "data": {"order_id": order_id}})
    [run_id] = result.run_ids
    return order_id, run_id


async def _approve(order_id: str, approver: str) -> None:
    await app.send(
        {"name": "app/order.approved", "data": {"order_id": order_id, "approver": approver}}
    )


async def test_an_approved_order_ships(env: TestEnvironment) -> None:
    async with env.hold_clock():
        order_id, run_id = await _place_order()
        await app.runs.wait(run_id, until=RunStatus.WAITING, timeout=10)
        await env.advance("3h")
        await _approve(order_id, "grace")

    run = await app.runs.wait(run_id, timeout=10)

    assert run.status is RunStatus.COMPLETED
    assert run.output == {
        "order_id": order_id,
        "status": "shipped",
        "approved_by": "grace",
        "tracking": f"TRK-{order_id}",
    }
    assert services.warehouse.shipped == [order_id]
    assert services.payments.refunded == []
    assert [s.id for s in run.steps] == ["wait-for-approval", "ship-order"]
    approval = run.steps[0].output
    assert approval["data"] == {"order_id": order_id, "approver": "grace"}


async def test_an_order_nobody_approves_is_refunded_after_a_day(env: TestEnvironment) -> None:
    order_id, run_id = await _place_order()

    run = await app.runs.wait(run_id, timeout=10)

    assert run.status is RunStatus.COMPLETED
    assert run.output == {
        "order_id": order_id,
        "status": "cancelled",
        "reason": "not approved within 24h",
    }
    assert services.payments.refunded == [order_id]
    assert services.warehouse.shipped == []
    assert run.ended_at is not None
    assert run.ended_at - run.created_at >= dt.timedelta(hours=24)


async def test_another_orders_approval_does_not_ship_this_one(env: TestEnvironment) -> None:
    async with env.hold_clock():
        order_id, run_id = await _place_order()
        other_id, other_run_id = await _place_order()
        await app.runs.wait(run_id, until=RunStatus.WAITING, timeout=10)
        await app.runs.wait(other_run_id, until=RunStatus.WAITING, timeout=10)
        await _approve(other_id, "grace")

    run = await app.runs.wait(run_id, timeout=10)
    other = await app.runs.wait(other_run_id, timeout=10)

    assert run.output["status"] == "cancelled"
    assert other.output["status"] == "shipped"
    assert services.warehouse.shipped == [other_id]
    assert services.payments.refunded == [order_id]


async def test_an_approval_a_day_late_does_not_ship(env: TestEnvironment) -> None:
    async with env.hold_clock():
        order_id, run_id = await _place_order()
        await app.runs.wait(run_id, until=RunStatus.WAITING, timeout=10)
        await env.advance("25h")
        await _approve(order_id, "grace")  # a day and an hour after the order
        run = await app.runs.wait(run_id, timeout=10)

    assert run.output["status"] == "cancelled"
    assert services.warehouse.shipped == []


async def test_an_order_without_an_id_fails_without_retrying(env: TestEnvironment) -> None:
    [result] = await app.send({"name": "app/order.placed", "data": {}})

    run = await app.runs.wait(result.run_ids[0], timeout=10)

    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert "needs data.order_id (a string)" in run.error.message
    assert run.attempt == 1


async def test_the_flow_alone_with_a_mocked_approval() -> None:
    result = await run_function(
        order_approval,
        event={"name": "app/order.placed", "data": {"order_id": "B-1"}},
        steps={
            "wait-for-approval": {
                "name": "app/order.approved",
                "data": {"order_id": "B-1", "approver": "ada"},
            }
        },
    )

    assert result.error is None
    assert result.output == {
        "order_id": "B-1",
        "status": "shipped",
        "approved_by": "ada",
        "tracking": "TRK-B-1",
    }
    assert result.step_ids == ["wait-for-approval", "ship-order"]
    assert services.warehouse.shipped == ["B-1"]


async def test_the_flow_alone_when_no_approval_comes() -> None:
    result = await run_function(
        order_approval, event={"name": "app/order.placed", "data": {"order_id": "B-2"}}
    )

    assert result.output["status"] == "cancelled"
    assert result.step_ids == ["wait-for-approval", "refund-order"]
    assert services.payments.refunded == ["B-2"]
