"""tests/cli_workflows.py after an incompatible change: `greeter` calls another activity."""

from __future__ import annotations

from durable import WorkflowContext, activity, workflow


@activity
async def wave(name: str) -> str:
    return f"hi {name}"


@workflow(name="greeter")
async def greeter(ctx: WorkflowContext, name: str) -> str:
    greeting = await ctx.activity(wave, name)
    suffix = await ctx.wait_signal("finish")
    return f"{greeting}{suffix}"
