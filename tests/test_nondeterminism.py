"""Changed workflow code is detected on replay and never corrupts the recorded history."""

from __future__ import annotations

import logging
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


async def test_changed_code_raises_and_old_code_resumes(
    client: durable.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="durable")
    async with _worker(client, original):
        handle = await client.start(original, 1, id="nd")
        await wait_for(lambda: _has_event(handle, "ACTIVITY_COMPLETED"))
    before = await handle.history()

    await handle.signal("go")
    async with _worker(client, changed):
        description = await wait_for(lambda: _failed_task(handle))
        await wait_for(lambda: _failures(handle, 3), timeout=20)  # tried again and again
    logged = [r for r in caplog.records if "nd" in r.getMessage() and "fetch" in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in logged]  # logged once, not per attempt
    assert "NondeterminismError" in (description.last_error or "")
    assert "other" in description.last_error and "fetch" in description.last_error
    assert description.status == "running"
    after = await handle.history()
    assert [(e.seq, e.type) for e in after] == [(e.seq, e.type) for e in before]

    async with _worker(client, original):
        assert await handle.result(timeout=20) == 3


async def test_a_query_to_a_run_stuck_on_nondeterminism_says_why(client: durable.Client) -> None:
    """The query waits for the signal sent before it, which the run cannot take in while its
    code does not replay: it is answered with that reason, not left to time out as if no
    worker ran."""
    async with _worker(client, original):
        handle = await client.start(original, 1, id="nd-query")
        await wait_for(lambda: _has_event(handle, "ACTIVITY_COMPLETED"))
    await handle.signal("go")
    async with _worker(client, changed):
        await wait_for(lambda: _failed_task(handle))
        with pytest.raises(durable.QueryError, match="NondeterminismError") as caught:
            await handle.query("anything", timeout=15)
    assert "ACTIVITY_SCHEDULED(name='fetch')" in str(caught.value)
    assert "messages sent before this query" in str(caught.value)


async def _failures(handle: durable.WorkflowHandle[int], at_least: int) -> bool:
    failures = await handle.client.store.pool.fetchval(
        "SELECT task_failures FROM durable.workflows WHERE workflow_id = $1 AND closed_at IS NULL",
        handle.workflow_id,
    )
    return bool(failures is not None and failures >= at_least)


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
