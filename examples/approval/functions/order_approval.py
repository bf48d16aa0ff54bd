"""When an order is placed, wait up to a day for someone to approve it: an
approval ships it; no approval in time cancels and refunds it."""

from __future__ import annotations

from typing import Any

from tether import Context, NonRetriableError

from .. import services
from ..client import app


@app.function(id="order-approval", trigger="app/order.placed")
async def order_approval(ctx: Context) -> dict[str, Any]:
    order_id = ctx.event.data.get("order_id")
    if not isinstance(order_id, str) or not order_id:
        raise NonRetriableError("app/order.placed needs data.order_id (a string)")

    # Only an approval for this order counts: its data.order_id must equal ours.
    approval = await ctx.step.wait_for_event(
        "wait-for-approval", event="app/order.approved", match="data.order_id", timeout="24h"
    )
    if approval is None:
        await ctx.step.run("refund-order", services.payments.refund, order_id)
        return {"order_id": order_id, "status": "cancelled", "reason": "not approved within 24h"}

    shipment = await ctx.step.run("ship-order", services.warehouse.ship, order_id)
    return {
        "order_id": order_id,
        "status": "shipped",
        "approved_by": approval.data.get("approver"),
        "tracking": shipment["tracking"],
    }
