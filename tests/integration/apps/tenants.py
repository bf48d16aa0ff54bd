"""The same app deployed in two environments (tests/integration/test_environments.py).

TETHER_TEST_WORKER names the worker (its environment) in step outputs.
"""

from __future__ import annotations

import os
from typing import Any

from tether import Context, Tether

app = Tether(app_id="shop")


@app.function(id="fulfil", trigger="order/paid")
async def fulfil(ctx: Context) -> dict[str, Any]:
    """Packs the order, then waits for it to ship."""
    packed_by = await ctx.step.run("pack", lambda: os.environ.get("TETHER_TEST_WORKER", ""))
    shipped = await ctx.step.wait_for_event(
        "shipped", event="order/shipped", timeout="1h", match="data.order"
    )
    return {"packed_by": packed_by, "shipped": shipped is not None}


@app.function(id="audit", trigger="order/*")
async def audit(ctx: Context) -> str:
    """Sees every order event of its environment (and nothing else)."""
    return ctx.event.name
