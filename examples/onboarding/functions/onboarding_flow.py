"""On signup: welcome email; a day later the getting-started guide; if the user
still has no project two days after that, a nudge."""

from __future__ import annotations

from typing import Any

from tether import Context, NonRetriableError

from .. import services
from ..client import app


@app.function(id="onboarding-flow", trigger="app/user.signup")
async def onboarding_flow(ctx: Context) -> dict[str, Any]:
    user_id = ctx.event.data.get("user_id")
    email = ctx.event.data.get("email")
    if not isinstance(user_id, int) or not email:
        raise NonRetriableError("app/user.signup needs data.user_id (an integer) and data.email")

    await ctx.step.run("send-welcome-email", services.email.send, email, "welcome")
    await ctx.step.sleep("wait-1d", "24h")
    await ctx.step.run("send-getting-started-guide", services.email.send, email, "getting-started")

    has_project = await ctx.step.run("check-for-project", services.projects.has_project, user_id)
    if has_project:
        ctx.logger.info("user %s created a project; no nudge needed", user_id)
        return {"user_id": user_id, "nudged": False}

    await ctx.step.sleep("wait-2d", "48h")
    await ctx.step.run("send-nudge-email", services.email.send, email, "nudge")
    return {"user_id": user_id, "nudged": True}
