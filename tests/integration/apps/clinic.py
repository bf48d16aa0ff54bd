"""An app for the doctor's tests (tests/integration/test_doctor.py): a
one-step function and a nightly cron function."""

from __future__ import annotations

from tether import Context, Tether, cron

app = Tether(app_id="clinic")


@app.function(id="quick", trigger="clinic/go")
async def quick(ctx: Context) -> int:
    return int(await ctx.step.run("double", lambda: int(ctx.event.data.get("n", 1)) * 2))


@app.function(id="nightly", trigger=cron("0 3 * * *"))
async def nightly(ctx: Context) -> str:
    return "swept"


@app.function(id="keeper", trigger="clinic/keep", retention="3d")
async def keeper(ctx: Context) -> str:
    """Its finished runs outlive the environment's retention (3 days)."""
    return "kept"
