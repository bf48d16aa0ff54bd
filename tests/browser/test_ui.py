"""The dev UI as a user sees it, in a real browser, against a real control plane
and a real worker (see conftest.py and apps/shop.py)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from playwright.sync_api import Locator, Page, expect

from tests.browser.cluster import ShopCluster
from tests.browser.conftest import Shoot
from tests.support.waiting import wait_until

FINISHED = ("completed", "failed", "cancelled")


def _finished(shop: ShopCluster, run_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        run: dict[str, Any] = shop.http.get(f"/api/runs/{run_id}")["run"]
        return run if run["status"] in FINISHED else None

    run = wait_until(done, what=f"run {run_id} to finish")
    assert run is not None
    return run


def _start(shop: ShopCluster, name: str, data: dict[str, Any]) -> str:
    [run_id] = shop.send(name, data)["run_ids"]
    return str(run_id)


def _run_status(page: Page) -> Locator:
    return page.get_by_test_id("run-status")


def _run_id_in_hash(page: Page) -> str:
    match = re.search(r"#/runs/([^/?]+)$", page.url)
    assert match, page.url
    return match.group(1)


def test_the_timeline_shows_each_attempt_and_its_details(
    page: Page, shop: ShopCluster, shoot: Shoot
) -> None:
    run_id = _start(shop, "shop/inventory.sync", {"supplier": "initech"})
    page.goto(f"/#/runs/{run_id}")
    expect(page.get_by_test_id("run-id")).to_have_text(run_id)
    expect(_run_status(page)).to_have_text("completed", timeout=15_000)

    rows = page.get_by_test_id("timeline-row")
    expect(rows).to_have_count(4)
    seen = [
        (
            row.get_attribute("data-name"),
            row.get_attribute("data-kind"),
            row.get_attribute("data-attempt"),
            row.get_attribute("data-status"),
        )
        for row in rows.all()
    ]
    assert seen == [
        ("fetch-supplier-feed", "run", "1", "failed"),
        ("fetch-supplier-feed", "run", "2", "completed"),
        ("let-caches-settle", "sleep", "1", "completed"),
        ("update-stock", "run", "1", "completed"),
    ]
    expect(rows.nth(0)).to_contain_text("attempt 1")
    expect(rows.nth(0)).to_contain_text("RetryAfterError")
    expect(rows.nth(1)).to_contain_text("attempt 2")
    expect(rows.nth(2)).to_contain_text(re.compile(r"1\.0\ds"))  # the one-second sleep
    expect(page.get_by_test_id("timeline-bar")).to_have_count(4)

    details = page.get_by_test_id("step-details")
    rows.nth(1).click()
    expect(details).to_contain_text("fetch-supplier-feed")
    expect(details.get_by_test_id("step-output")).to_contain_text('"tea-01"')

    rows.nth(0).click()
    expect(rows.nth(0)).to_have_attribute("aria-pressed", "true")
    expect(details).to_contain_text("RetryAfterError")
    expect(details).to_contain_text("supplier API answered 503 Service Unavailable")
    expect(details).to_contain_text("Retry at")
    expect(details.locator("pre.stack")).to_contain_text("Traceback")

    # The step list selects the same bars; the history lists raw entries.
    page.get_by_test_id("step-row").filter(has_text="update-stock").click()
    expect(rows.nth(3)).to_have_attribute("aria-pressed", "true")
    rows.nth(0).click()
    expect(page.get_by_test_id("run-output")).to_contain_text('"updated"')
    page.get_by_text("History", exact=True).click()
    expect(page.get_by_test_id("history-table")).to_contain_text("step.failed")
    expect(page.get_by_test_id("history-table")).to_contain_text("run.completed")
    # The screenshot shows a step's output, not a stack trace (it names files of this machine).
    rows.nth(1).click()
    expect(details.get_by_test_id("step-output")).to_contain_text('"tea-01"')
    shoot(page, "run-timeline")


def test_cancel_a_sleeping_run_from_its_page(page: Page, shop: ShopCluster, shoot: Shoot) -> None:
    run_id = _start(shop, "shop/cart.abandoned", {"cart_id": uuid.uuid4().int % 10_000})
    page.goto(f"/#/runs/{run_id}")
    expect(_run_status(page)).to_have_text("sleeping")
    sleep = page.locator('[data-testid="timeline-row"][data-kind="sleep"]')
    expect(sleep).to_have_attribute("data-status", "waiting")
    expect(sleep).to_contain_text("until")
    # A day's sleep next to millisecond steps: the axis breaks, every bar stays visible.
    expect(page.locator(".tl-break-label")).to_contain_text("23h")
    for bar in page.get_by_test_id("timeline-bar").all():
        box = bar.bounding_box()
        assert box is not None
        assert box["width"] >= 3, box

    page.get_by_test_id("cancel-run").click()
    confirm = page.get_by_test_id("confirm-dialog")
    expect(confirm).to_contain_text("Cancel this run?")
    confirm.get_by_role("button", name="Cancel run").click()

    expect(_run_status(page)).to_have_text("cancelled")
    expect(page.get_by_test_id("cancel-run")).to_have_count(0)
    expect(page.get_by_test_id("run-cancelled")).to_contain_text("cancelled from the dev UI")
    expect(sleep).to_have_attribute("data-status", "interrupted")
    assert shop.http.get(f"/api/runs/{run_id}")["run"]["status"] == "cancelled"
    shoot(page, "run-cancelled")


def test_replay_lands_on_a_new_run(page: Page, shop: ShopCluster, shoot: Shoot) -> None:
    original = _start(shop, "shop/order.placed", {"order_id": 7001, "items": ["tea"]})
    _finished(shop, original)
    page.goto(f"/#/runs/{original}")
    expect(_run_status(page)).to_have_text("completed")
    page.get_by_test_id("replay").click()

    expect(page).not_to_have_url(re.compile(original))
    replay = _run_id_in_hash(page)
    expect(page.get_by_test_id("run-id")).to_have_text(replay)
    expect(_run_status(page)).to_have_text("completed")
    expect(page.get_by_text("Replay of", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name=original)).to_be_visible()
    expect(page.get_by_test_id("run-output")).to_contain_text("7001")

    # A failed run offers to replay from the failed step.
    failed = _start(shop, "shop/order.placed", {"order_id": 7002, "card": "declined"})
    page.goto(f"/#/runs/{failed}")
    expect(_run_status(page)).to_have_text("failed")
    expect(page.get_by_test_id("run-error")).to_contain_text("the card was declined")
    expect(page.get_by_test_id("replay")).to_have_text("Replay from start")
    page.get_by_test_id("replay-from-failed").click()
    expect(page).not_to_have_url(re.compile(failed))
    expect(_run_status(page)).to_have_text("failed")
    expect(page.get_by_role("link", name=failed)).to_be_visible()
    shoot(page, "run-replay")


def test_invoke_a_function_with_data(page: Page, shop: ShopCluster, shoot: Shoot) -> None:
    page.goto("/#/functions")
    row = page.locator('[data-testid="function"][data-function="process-order"]')
    row.get_by_test_id("invoke").click()
    dialog = page.get_by_test_id("invoke-dialog")
    expect(dialog).to_contain_text("Invoke shop/process-order")
    dialog.get_by_test_id("invoke-data").fill('{"order_id": 4242, "items": ["mug", "tea"]}')
    dialog.get_by_role("button", name="Invoke").click()

    expect(page).to_have_url(re.compile(r"#/runs/\w+$"))
    expect(_run_status(page)).to_have_text("completed")
    expect(page.get_by_test_id("run-output")).to_contain_text("4242")
    expect(page.get_by_test_id("run-output")).to_contain_text("25")
    expect(page.locator(".event-block")).to_contain_text("tether/function.invoked")
    expect(page.locator(".event-block")).to_contain_text('"mug"')
    shoot(page, "invoke")


def test_the_functions_page_shows_triggers_workers_and_pause(
    page: Page, shop: ShopCluster, shoot: Shoot
) -> None:
    page.goto("/#/functions")
    functions = page.get_by_test_id("function")
    expect(functions).to_have_count(5)

    nightly = functions.and_(page.locator('[data-function="nightly-report"]'))
    expect(nightly.get_by_test_id("cron-trigger")).to_contain_text("0 2 * * *")
    expect(nightly.get_by_test_id("cron-trigger")).to_contain_text("Europe/Paris")
    expect(nightly.get_by_test_id("next-fire")).to_contain_text(
        re.compile(r"next \d{4}-\d\d-\d\d \d\d:\d\d:\d\d · in (\d+h )?\d+m")
    )
    expect(nightly.get_by_test_id("workers")).to_have_text("1 worker")

    refund = functions.and_(page.locator('[data-function="issue-refund"]'))
    expect(refund).to_contain_text("shop/refund.requested")
    expect(refund).to_contain_text("if event.data.amount > 0")
    expect(refund).to_contain_text("throttle 10/1m")
    expect(refund).to_contain_text("idempotency event.data.order_id")
    expect(refund).to_contain_text("retries 2")
    cart = functions.and_(page.locator('[data-function="abandoned-cart"]'))
    expect(cart).to_contain_text("cancel on shop/order.placed match data.cart_id")
    shoot(page, "functions")

    refund.get_by_test_id("pause").click()
    page.get_by_test_id("pause-dialog").get_by_role("button", name="Pause").click()
    expect(refund.get_by_test_id("paused")).to_have_text("paused · hold")
    refund.get_by_test_id("resume").click()
    page.get_by_test_id("confirm-dialog").get_by_role("button", name="Resume").click()
    expect(refund.get_by_test_id("paused")).to_have_count(0)
    expect(refund.get_by_test_id("pause")).to_be_visible()

    shop.stop_worker()
    try:
        expect(nightly.get_by_test_id("workers")).to_have_text(
            "no worker connected — events will queue"
        )
    finally:
        shop.restart_worker()
    expect(nightly.get_by_test_id("workers")).to_have_text("1 worker")


def test_events_search_finds_the_event_and_the_run_it_started(
    page: Page, shop: ShopCluster, shoot: Shoot
) -> None:
    order_id = 8000 + uuid.uuid4().int % 1000
    sent = shop.send("shop/order.placed", {"order_id": order_id, "items": ["kettle"]})
    [run_id] = sent["run_ids"]
    first = shop.send("shop/refund.requested", {"order_id": order_id, "amount": 20})
    second = shop.send("shop/refund.requested", {"order_id": order_id, "amount": 20})
    assert second["run_ids"] == []

    page.goto("/#/events")
    expect(page.locator(f'tr[data-event-id="{second["event_id"]}"]')).to_be_visible()
    shoot(page, "events")

    page.get_by_test_id("event-search").fill("shop/order.placed")
    page.get_by_test_id("event-search").press("Enter")
    expect(page).to_have_url(re.compile(r"#/events\?name=shop%2Forder\.placed$"))
    rows = page.get_by_test_id("event-row")
    expect(rows.first).to_have_attribute("data-event-id", sent["event_id"])
    expect(
        page.locator('[data-testid="event-row"]:not([data-name="shop/order.placed"])')
    ).to_have_count(0)
    rows.first.get_by_role("link").click()

    expect(page.get_by_test_id("event-name")).to_have_text("shop/order.placed")
    expect(page.get_by_test_id("event-data")).to_contain_text(str(order_id))
    expect(page.get_by_test_id("event-runs")).to_contain_text("process-order")
    page.get_by_test_id("event-runs").get_by_role("link", name=run_id).click()
    expect(page.get_by_test_id("run-id")).to_have_text(run_id)

    # The second refund request was skipped by idempotency; its page says so.
    page.goto(f"/#/events/{second['event_id']}")
    skipped = page.get_by_test_id("event-skipped")
    expect(skipped).to_contain_text("shop/issue-refund")
    expect(skipped).to_contain_text("idempotency key")
    expect(skipped.get_by_role("link", name=first["run_ids"][0])).to_be_visible()
    expect(page.get_by_test_id("event-runs")).to_contain_text("It started no run.")
    shoot(page, "event")


def test_bad_input_in_the_send_form_shows_a_clear_error(
    page: Page, shop: ShopCluster, shoot: Shoot
) -> None:
    name = f"shop/typo.{uuid.uuid4().hex[:8]}"
    page.goto("/#/events")
    page.get_by_test_id("events-send").click()
    dialog = page.get_by_test_id("send-dialog")
    dialog.get_by_label("Name").fill(name)
    data = dialog.get_by_test_id("send-data")
    error = dialog.get_by_test_id("dialog-error")
    send = dialog.get_by_role("button", name="Send event")

    data.fill('{"user_id": 1,}')
    send.click()
    expect(error).to_be_visible()
    expect(error).to_contain_text("Data is not valid JSON")
    expect(error).to_contain_text("line 1")
    shoot(page, "send-event-error", full_page=False)

    data.fill("[1, 2]")
    expect(error).to_be_hidden()
    send.click()
    expect(error).to_have_text('Data must be a JSON object, like {"user_id": 1}')
    assert shop.http.get(f"/api/events?name={name}")["events"] == []

    # What the API refuses, it explains; the dialog shows its message as it is.
    dialog.get_by_label("Name").fill("shop/has space")
    data.fill('{"user_id": 1}')
    send.click()
    expect(error).to_contain_text("invalid_argument")
    expect(error).to_contain_text("contains whitespace or control characters")

    dialog.get_by_label("Name").fill(name)
    send.click()
    expect(dialog.get_by_test_id("send-result")).to_contain_text(
        f"No function is triggered by {name}"
    )
    expect(error).to_be_hidden()


def test_an_event_sent_from_the_form_starts_a_run_that_completes_live(
    page: Page, shop: ShopCluster, shoot: Shoot
) -> None:
    page.goto("/#/runs")
    expect(page).to_have_title(re.compile("Tether"))
    expect(page.get_by_test_id("run-row").first).to_be_visible()
    page.evaluate("window.__notReloaded = true")

    page.get_by_role("button", name="Send event").first.click()
    dialog = page.get_by_test_id("send-dialog")
    dialog.get_by_label("Name").fill("shop/inventory.sync")
    dialog.get_by_test_id("send-data").fill('{"supplier": "globex", "full": true}')
    dialog.get_by_role("button", name="Send event").click()
    result = dialog.get_by_test_id("send-result")
    expect(result).to_contain_text("Event sent")
    expect(result).to_contain_text("Started 1 run")
    run_id = dialog.get_by_test_id("sent-run-link").inner_text()
    shoot(page, "send-event", full_page=False)
    dialog.get_by_role("button", name="Close").first.click()
    expect(dialog).to_have_count(0)

    # The runs list picks it up and follows it to the end by itself.
    row = page.locator(f'tr[data-run-id="{run_id}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("sync-inventory")
    expect(row.get_by_test_id("status")).to_have_text("completed", timeout=15_000)
    expect(row).to_contain_text('{"updated":2}')
    expect(page.get_by_test_id("run-row").first).to_have_attribute("data-run-id", run_id)
    assert page.evaluate("window.__notReloaded") is True
    shoot(page, "runs")

    # Filters live in the hash: failed runs of process-order only.
    page.get_by_test_id("filter-function").select_option("shop/process-order")
    page.get_by_test_id("filter-status-failed").click()
    expect(page).to_have_url(re.compile(r"fn=shop%2Fprocess-order&status=failed"))
    rows = page.get_by_test_id("run-row")
    expect(rows.first).to_be_visible()
    # The list re-renders after the URL changes: wait for it, not just read it.
    expect(rows.get_by_test_id("status").filter(has_not_text="failed")).to_have_count(0)
    expect(row).to_have_count(0)
