"""A module for the command-line guide (docs/guide/cli.md): `durable worker cli_app`."""

import asyncio
from datetime import timedelta

from durable import WorkflowContext, activity, workflow


@activity
async def notify(who: str, text: str) -> None:
    print(f"to {who}: {text}")


@workflow(task_queue="cli")
async def ticket(ctx: WorkflowContext, title: str) -> dict[str, object]:
    comments: list[str] = []
    ctx.on_signal("comment", comments.append)
    ctx.on_query("comments", lambda: list(comments))

    def rename(new: str) -> str:
        nonlocal title
        old, title = title, new
        return old

    ctx.on_update("rename", rename)
    ctx.set_attributes(team="support")
    try:
        await ctx.wait_signal("close", timeout=timedelta(hours=1))
    except asyncio.CancelledError:
        await ctx.activity(notify, "ada", f"ticket {title!r} cancelled")  # clean up, then end
        raise
    await ctx.activity(notify, "ada", f"ticket {title!r} closed")
    return {"title": title, "comments": comments}


@workflow(task_queue="cli")
async def digest(ctx: WorkflowContext, team: str) -> str:
    """What the guide's schedules start."""
    await ctx.activity(notify, team, "your daily digest")
    return f"digest sent to {team}"
