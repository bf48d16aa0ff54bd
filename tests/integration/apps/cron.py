"""Cron functions that the cron tests run in real worker processes, one app per
test scenario (a worker serves one app). Each returns what its ``ctx`` saw.

TETHER_TEST_CRON replaces the schedule of ``daily/report`` ("" removes its cron
trigger): a worker re-registering a changed function.
"""

from __future__ import annotations

import os
from typing import Any

from tether import Context, Tether, cron

daily = Tether(app_id="daily")
catchup = Tether(app_id="catchup")
shared = Tether(app_id="shared")

HOURLY = "0 * * * *"


def seen(ctx: Context) -> dict[str, Any]:
    tick = ctx.cron
    return {
        "cron": None
        if tick is None
        else {
            "schedule": tick.schedule,
            "timezone": tick.timezone,
            "scheduled_at": tick.scheduled_at.isoformat(),
            "scheduled_at_ms": round(tick.scheduled_at.timestamp() * 1000),
        },
        "event": {"name": ctx.event.name, "data": ctx.event.data},
        "events": len(ctx.events),
    }


_schedule = os.environ.get("TETHER_TEST_CRON", "0 9 * * *")
_daily_triggers: list[Any] = ["daily/report.requested"]
if _schedule:
    _daily_triggers.append(cron(_schedule, tz="Europe/Paris"))


@daily.function(id="report", trigger=_daily_triggers)
async def report(ctx: Context) -> dict[str, Any]:
    return await ctx.step.run("look", seen, ctx)


@catchup.function(id="hourly-one", trigger=cron(HOURLY, catch_up="one"))
async def hourly_one(ctx: Context) -> dict[str, Any]:
    return seen(ctx)


@catchup.function(id="hourly-all", trigger=cron(HOURLY, catch_up="all"))
async def hourly_all(ctx: Context) -> dict[str, Any]:
    return seen(ctx)


@catchup.function(id="hourly-none", trigger=cron(HOURLY, catch_up="none"))
async def hourly_none(ctx: Context) -> dict[str, Any]:
    return seen(ctx)


@shared.function(id="hourly", trigger=cron(HOURLY, catch_up="all"))
async def hourly(ctx: Context) -> dict[str, Any]:
    return seen(ctx)
