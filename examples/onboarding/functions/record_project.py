"""Keeps the project directory up to date when users create projects."""

from __future__ import annotations

from tether import Context, NonRetriableError

from .. import services
from ..client import app


@app.function(id="record-project", trigger="app/project.created")
async def record_project(ctx: Context) -> None:
    user_id = ctx.event.data.get("user_id")
    if not isinstance(user_id, int):
        raise NonRetriableError("app/project.created needs data.user_id (an integer)")
    await ctx.step.run("add-to-directory", services.projects.add, user_id)
