"""What each kind of API key sees in the dev UI, in a real browser, against a real
control plane started with ``--api-key`` (an admin key), keys made with ``tether
keys create`` and a real shop worker. The control plane refuses what a role may
not do; the UI does not offer it in the first place."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.cluster import ShopCluster
from tests.browser.conftest import running
from tests.e2e.cli import tether
from tests.support.waiting import wait_until

ADMIN_KEY = "browser-admin-key"
FINISHED = ("completed", "failed", "cancelled")


@pytest.fixture(scope="module")
def shop(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ShopCluster]:
    """The shop cluster of conftest.py, but every call needs a key."""
    cluster = ShopCluster(tmp_path_factory.mktemp("shop-keys"), api_key=ADMIN_KEY)
    with running(cluster, request) as started:
        yield started


@pytest.fixture(scope="module")
def secrets(shop: ShopCluster) -> dict[str, str]:
    """A stored key per role the tests use, made the way an operator does."""
    return {role: _create_key(shop.db_url, role) for role in ("read", "send")}


@pytest.fixture(scope="module")
def runs(shop: ShopCluster) -> dict[str, str]:
    """A sleeping run (an admin may cancel it) and a failed one (an admin may replay it)."""
    sleeping = _start(shop, "shop/cart.abandoned", {"cart_id": uuid.uuid4().int % 10_000})
    failed = _start(shop, "shop/order.placed", {"order_id": 6001, "card": "declined"})
    wait_until(lambda: _status(shop, sleeping) == "sleeping", what=f"run {sleeping} to sleep")
    wait_until(lambda: _status(shop, failed) in FINISHED, what=f"run {failed} to finish")
    assert _status(shop, failed) == "failed"
    return {"sleeping": sleeping, "failed": failed}


def _create_key(db_url: str, role: str) -> str:
    """The secret of a new key: ``tether keys create`` ends its stdout with it."""
    made = tether("keys", "create", "--name", f"browser {role}", "--role", role, "--db", db_url)
    assert made.code == 0, str(made)
    secret = made.stdout.splitlines()[-1]
    assert secret.startswith("tk_"), str(made)
    return secret


def _start(shop: ShopCluster, name: str, data: dict[str, Any]) -> str:
    [run_id] = shop.send(name, data)["run_ids"]
    return str(run_id)


def _status(shop: ShopCluster, run_id: str) -> str:
    return str(shop.http.get(f"/api/runs/{run_id}")["run"]["status"])


def _enter_key(page: Page, secret: str) -> None:
    """Type the key into the form the UI shows when the control plane asks for one."""
    form = page.get_by_test_id("api-key-form")
    expect(form).to_contain_text("This control plane needs an API key")
    form.get_by_label("API key").fill(secret)
    form.get_by_role("button", name="Use key").click()
    expect(form).to_have_count(0)


def _actions(page: Page) -> Locator:
    """Every visible button that changes something: cancel, replay, pause, resume,
    invoke and the ways to send an event."""
    return page.get_by_role(
        "button",
        name=re.compile(r"^(Cancel run|Replay.*|Pause|Resume|Invoke|Send event|Send a copy)$"),
    )


def _caller(page: Page) -> Locator:
    return page.get_by_test_id("caller")


def test_a_read_key_sees_runs_events_and_functions_but_no_action(
    page: Page, shop: ShopCluster, secrets: dict[str, str], runs: dict[str, str]
) -> None:
    page.goto("/#/runs")
    expect(page.get_by_test_id("api-key-form")).to_be_visible()
    expect(_actions(page)).to_have_count(0)  # without a key, nothing is offered
    _enter_key(page, secrets["read"])
    expect(_caller(page)).to_have_text("default · read-only")
    expect(page.locator(f'tr[data-run-id="{runs["sleeping"]}"]')).to_be_visible()
    expect(page.locator(f'tr[data-run-id="{runs["failed"]}"]')).to_be_visible()
    expect(_actions(page)).to_have_count(0)

    # A sleeping run would offer Cancel, a failed one both Replays: none is there.
    page.get_by_role("link", name=runs["sleeping"]).click()
    expect(page.get_by_test_id("run-id")).to_have_text(runs["sleeping"])
    expect(page.get_by_test_id("run-status")).to_have_text("sleeping")
    expect(page.get_by_test_id("timeline-row").first).to_be_visible()
    expect(_actions(page)).to_have_count(0)
    expect(page.get_by_role("alert")).to_have_count(0)

    page.goto(f"/#/runs/{runs['failed']}")
    expect(page.get_by_test_id("run-status")).to_have_text("failed")
    expect(page.get_by_test_id("run-error")).to_contain_text("the card was declined")
    expect(_actions(page)).to_have_count(0)

    # The key stays in this browser: a reload asks who it is again, at start.
    page.reload()
    expect(page.get_by_test_id("run-status")).to_have_text("failed")
    expect(_caller(page)).to_have_text("default · read-only")
    expect(page.get_by_test_id("api-key-form")).to_have_count(0)
    expect(_actions(page)).to_have_count(0)

    page.goto("/#/functions")
    expect(page.get_by_test_id("function")).to_have_count(5)
    expect(page.get_by_test_id("workers").first).to_have_text("1 worker")
    expect(_actions(page)).to_have_count(0)

    page.goto("/#/events")
    rows = page.get_by_test_id("event-row")
    expect(rows.first).to_be_visible()
    expect(_actions(page)).to_have_count(0)
    rows.first.get_by_role("link").click()
    expect(page.get_by_test_id("event-data")).to_be_visible()
    expect(_actions(page)).to_have_count(0)


def test_an_admin_key_is_offered_every_action(
    page: Page, shop: ShopCluster, runs: dict[str, str]
) -> None:
    page.goto(f"/#/runs/{runs['sleeping']}")
    _enter_key(page, ADMIN_KEY)
    expect(_caller(page)).to_have_text("default · admin")
    expect(page.get_by_test_id("run-status")).to_have_text("sleeping")
    expect(page.get_by_role("button", name="Cancel run")).to_be_visible()
    sidebar = page.get_by_role("navigation", name="Main")
    expect(sidebar.get_by_role("button", name="Send event")).to_be_visible()

    page.goto(f"/#/runs/{runs['failed']}")
    expect(page.get_by_test_id("run-status")).to_have_text("failed")
    expect(page.get_by_role("button", name="Replay from failed step")).to_be_visible()
    expect(page.get_by_role("button", name="Replay from start")).to_be_visible()

    page.goto("/#/functions")
    expect(page.get_by_test_id("function")).to_have_count(5)
    expect(page.get_by_role("button", name="Invoke")).to_have_count(5)
    refund = page.locator('[data-testid="function"][data-function="issue-refund"]')
    expect(refund.get_by_role("button", name="Pause")).to_be_visible()

    page.goto("/#/events")
    expect(page.get_by_test_id("events-send")).to_be_visible()
    page.get_by_test_id("event-row").first.get_by_role("link").click()
    expect(page.get_by_role("button", name="Send a copy")).to_be_visible()


def test_a_send_key_may_send_events_and_nothing_else(
    page: Page, shop: ShopCluster, secrets: dict[str, str]
) -> None:
    page.goto("/#/runs")
    _enter_key(page, secrets["send"])
    expect(_caller(page)).to_have_text("default · send-only")
    # The runs list is not for this key: the page says why, and offers no action but sending.
    expect(page.get_by_role("alert")).to_contain_text("permission_denied")
    expect(page.get_by_role("alert")).to_contain_text("needs the 'read' role")
    expect(_actions(page)).to_have_text(["Send event"])

    order_id = 6100 + uuid.uuid4().int % 100
    page.get_by_role("button", name="Send event").click()
    dialog = page.get_by_test_id("send-dialog")
    dialog.get_by_label("Name").fill("shop/order.placed")
    dialog.get_by_test_id("send-data").fill(f'{{"order_id": {order_id}, "items": ["tea"]}}')
    dialog.get_by_role("button", name="Send event").click()
    expect(dialog.get_by_test_id("send-result")).to_contain_text("Event sent")
    expect(dialog.get_by_test_id("send-result")).to_contain_text("Started 1 run")
    events = shop.http.get("/api/events?name=shop/order.placed")["events"]
    assert any(event["data"].get("order_id") == order_id for event in events)
