"""The app the browser tests drive: a small shop, served by a real worker process
(``tether worker tests.browser.apps.shop:app``).

- ``process-order`` (shop/order.placed): three quick steps; a card of "declined"
  fails the run for good (NonRetriableError).
- ``sync-inventory`` (shop/inventory.sync): its first step fails once and is
  retried half a second later, then a one-second sleep and a last step.
- ``abandoned-cart`` (shop/cart.abandoned): one step, then sleeps a day (a run to
  cancel); an order for the same cart cancels it.
- ``issue-refund`` (shop/refund.requested if amount > 0): flow-control options
  for the functions page.
- ``nightly-report``: a cron trigger, for the next fire time.
"""

from __future__ import annotations

from typing import Any

from tether import Context, NonRetriableError, RetryAfterError, Tether, Throttle, cron, event

app = Tether(app_id="shop")


@app.function(id="process-order", trigger="shop/order.placed", concurrency=5)
async def process_order(ctx: Context) -> dict[str, Any]:
    order = ctx.event.data
    items = order.get("items", ["tea"])

    def validate() -> dict[str, Any]:
        return {"order_id": order.get("order_id", 1), "items": len(items)}

    def charge() -> dict[str, Any]:
        if order.get("card") == "declined":
            raise NonRetriableError("the card was declined by the issuer")
        return {"charged": 12.5 * len(items), "currency": "EUR"}

    validated = await ctx.step.run("validate-order", validate)
    payment = await ctx.step.run("charge-card", charge)
    await ctx.step.run("send-receipt", lambda: {"sent_to": order.get("email", "ada@example.com")})
    return {"order_id": validated["order_id"], "charged": payment["charged"]}


@app.function(id="sync-inventory", trigger="shop/inventory.sync", retries=3)
async def sync_inventory(ctx: Context) -> dict[str, Any]:
    def fetch_feed() -> list[dict[str, Any]]:
        if ctx.attempt == 0:
            raise RetryAfterError("supplier API answered 503 Service Unavailable", 0.5)
        return [{"sku": "tea-01", "stock": 12}, {"sku": "cup-02", "stock": 3}]

    feed = await ctx.step.run("fetch-supplier-feed", fetch_feed)
    await ctx.step.sleep("let-caches-settle", 1)
    updated = await ctx.step.run("update-stock", lambda: len(feed))
    return {"updated": updated}


@app.function(
    id="abandoned-cart",
    trigger="shop/cart.abandoned",
    cancel_on=[{"event": "shop/order.placed", "match": "data.cart_id"}],
)
async def abandoned_cart(ctx: Context) -> str:
    cart_id = ctx.event.data.get("cart_id", 0)
    await ctx.step.run("record-cart", lambda: {"cart_id": cart_id})
    await ctx.step.sleep("wait-a-day", "24h")
    await ctx.step.run("send-reminder", lambda: "reminded")
    return "reminded"


@app.function(
    id="issue-refund",
    trigger=event("shop/refund.requested", if_="event.data.amount > 0"),
    retries=2,
    throttle=Throttle(10, "1m"),
    idempotency="event.data.order_id",
)
async def issue_refund(ctx: Context) -> dict[str, Any]:
    amount = ctx.event.data.get("amount", 0)
    return await ctx.step.run("refund", lambda: {"refunded": amount})


@app.function(id="nightly-report", trigger=cron("0 2 * * *", tz="Europe/Paris"))
async def nightly_report(ctx: Context) -> str:
    return await ctx.step.run("build-report", lambda: "report.pdf")
