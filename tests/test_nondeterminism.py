"""Changed workflow code is detected on replay and never corrupts the recorded history."""

from __future__ import annotations

from datetime import timedelta

import pytest

import durable
from durable import WorkflowContext, activity, workflow
from durable._replayer import WorkflowInstance

from .conftest import wait_for


@activity
async def fetch(x: int) -> int:
    return x + 1


@activity
async def other(x: int) -> int:
    return x * 100


@workflow(name="versioned")
async def original(ctx: WorkflowContext, x: int) -> int:
    first = await ctx.activity(fetch, x)
    await ctx.wait_signal("go")
    return await ctx.activity(fetch, first)


@workflow(name="versioned")
async def changed(ctx: WorkflowContext, x: int) -> int:
    first = await ctx.activity(other, x)  # a different activity at the same position
    await ctx.wait_signal("go")
    return await ctx.activity(fetch, first)


def _worker(client: durable.Client, definition: durable.WorkflowDefinition) -> durable.Worker:  # type: ignore[type-arg]
    return durable.Worker(
        client,
        workflows=[definition],
        activities=[fetch, other],
        poll_interval=timedelta(milliseconds=100),
    )


async def _has_event(handle: durable.WorkflowHandle[int], kind: str) -> bool:
    return any(e.type == kind for e in await handle.history())


async def test_changed_code_raises_and_old_code_resumes(client: durable.Client) -> None:
    async with _worker(client, original):
        handle = await client.start(original, 1, id="nd")
        await wait_for(lambda: _has_event(handle, "ACTIVITY_COMPLETED"))
    before = await handle.history()

    await handle.signal("go")
    async with _worker(client, changed):
        description = await wait_for(lambda: _failed_task(handle))
    assert "NondeterminismError" in (description.last_error or "")
    assert "other" in description.last_error and "fetch" in description.last_error
    assert description.status == "running"
    after = await handle.history()
    assert [(e.seq, e.type) for e in after] == [(e.seq, e.type) for e in before]

    async with _worker(client, original):
        assert await handle.result(timeout=20) == 3


async def _failed_task(handle: durable.WorkflowHandle[int]) -> durable.WorkflowDescription | None:
    description = await handle.describe()
    return description if description.last_error else None


async def test_replaying_history_against_changed_code(client: durable.Client) -> None:
    async with _worker(client, original):
        handle = await client.start(original, 1, id="nd-replay")
        await handle.signal("go")
        await handle.result(timeout=20)
    run = await handle.describe()
    history = await client.store.load_history("nd-replay", run.run_id)

    WorkflowInstance(original, "nd-replay", run.run_id, history).replay()
    with pytest.raises(durable.NondeterminismError, match="other"):
        WorkflowInstance(changed, "nd-replay", run.run_id, history).replay()
