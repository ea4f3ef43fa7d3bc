"""The tutorial's workflow, changed in a way recorded runs cannot replay
(docs/guide/testing.md)."""

from tutorial_app import compose_greeting

from durable import WorkflowContext, workflow


@workflow(name="greet")
async def greet(ctx: WorkflowContext, name: str) -> str:
    # The timer is gone and a second activity call was added: old histories disagree.
    first = await ctx.activity(compose_greeting, name)
    second = await ctx.activity(compose_greeting, name.upper())
    return f"{first} {second}"
