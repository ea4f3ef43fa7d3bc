"""The tutorial's workflow code: one activity and one workflow (docs/guide/tutorial.md)."""

from datetime import timedelta

from durable import RetryPolicy, WorkflowContext, activity, workflow

QUEUE = "tutorial"


# --8<-- [start:activity]
@activity(
    retry=RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=3),
    start_to_close_timeout=timedelta(seconds=10),
)
async def compose_greeting(name: str) -> str:
    # Anything with side effects (HTTP calls, e-mail, database writes) belongs here.
    return f"Hello, {name}!"


# --8<-- [end:activity]


# --8<-- [start:workflow]
@workflow(task_queue=QUEUE)
async def greet(ctx: WorkflowContext, name: str) -> str:
    greeting = await ctx.activity(compose_greeting, name)
    await ctx.sleep(timedelta(seconds=1))  # a durable timer, recorded in the history
    return greeting


# --8<-- [end:workflow]
