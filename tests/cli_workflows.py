"""Workflow code served by `durable worker tests.cli_workflows` in tests/test_cli.py."""

from __future__ import annotations

import durable
from durable import WorkflowContext, activity, workflow


@activity
async def greet(name: str) -> str:
    return f"hello {name}"


@workflow(name="greeter")
async def greeter(ctx: WorkflowContext, name: str) -> str:
    status = "greeting"
    ctx.on_query("status", lambda: status)
    ctx.on_update("shout", lambda word: f"{word.upper()}!")
    ctx.set_attributes(customer=name)
    greeting = await ctx.activity(greet, name)
    status = "waiting"
    suffix = await ctx.wait_signal("finish")
    return f"{greeting}{suffix}"


everything = [greeter, greet]  # `durable worker tests.cli_workflows:everything`


def make_worker(client: durable.Client) -> durable.Worker:  # `...:make_worker`
    return durable.Worker(client, workflows=[greeter], activities=[greet])
