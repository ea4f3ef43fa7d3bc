"""A 30-day trial tested in well under a second (docs/guide/testing.md).

pytest -p durable.testing docs/examples/test_time_skipping.py
"""

import time
from datetime import timedelta

import pytest

import durable
from durable.testing import WorkflowEnvironment


# --8<-- [start:workflow]
@durable.activity
async def send_reminder(email: str) -> str:
    return f"reminded {email}"


@durable.workflow
async def trial(ctx: durable.WorkflowContext, email: str) -> str:
    try:
        await ctx.wait_signal("subscribed", timeout=timedelta(days=30))
        return "subscribed"
    except TimeoutError:
        return await ctx.activity(send_reminder, email)


# --8<-- [end:workflow]


# --8<-- [start:environment]
@pytest.mark.asyncio
async def test_the_trial_reminds_after_30_days() -> None:
    async with WorkflowEnvironment.start_time_skipping(
        workflows=[trial], activities=[send_reminder]
    ) as env:  # a database of its own, a worker, a clock that skips
        began, started_at = time.monotonic(), env.now()
        handle = await env.client.start(trial, "ada@example.com", task_queue=env.task_queue)
        assert await handle.result() == "reminded ada@example.com"  # time skips meanwhile
        assert env.now() - started_at >= timedelta(days=30)
        assert time.monotonic() - began < 5  # (about 50 ms on a laptop)


# --8<-- [end:environment]


# --8<-- [start:sleep]
@pytest.mark.asyncio
async def test_a_signal_within_the_trial() -> None:
    async with WorkflowEnvironment.start_time_skipping(
        workflows=[trial], activities=[send_reminder]
    ) as env:
        handle = await env.client.start(trial, "bob@example.com", task_queue=env.task_queue)
        await env.sleep(timedelta(days=29))  # 29 days pass; nothing was due
        assert (await handle.describe()).status == "running"
        await handle.signal("subscribed")
        assert await handle.result() == "subscribed"


# --8<-- [end:sleep]


# --8<-- [start:plugin]
@pytest.mark.asyncio
@pytest.mark.durable(workflows=[trial], activities=[send_reminder])
async def test_with_the_fixtures(
    durable_env: WorkflowEnvironment, durable_client: durable.Client
) -> None:
    handle = await durable_client.start(trial, "eve@example.com", task_queue=durable_env.task_queue)
    await durable_env.sleep(timedelta(days=31))  # the timeout fires, the reminder runs
    assert await handle.result() == "reminded eve@example.com"


# --8<-- [end:plugin]
