"""Operator controls (API.md, "Operating running workflows"): pause and resume, on real
Postgres with a real worker."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

import durable
from durable import WorkflowContext, activity, workflow
from durable._store.sql.workflow_tasks import _CLAIM_WORKFLOWS_SQL

from .conftest import wait_for

RELEASED = asyncio.Event()


@activity
async def held_activity(label: str) -> str:
    await RELEASED.wait()
    return label


@workflow
async def pausable_wf(ctx: WorkflowContext) -> list[str]:
    seen: list[str] = []
    ctx.on_signal("add", seen.append)
    ctx.on_query("seen", lambda: list(seen))
    seen.append(await ctx.activity(held_activity, "activity"))
    await ctx.sleep(0.2)
    seen.append("timer")
    await ctx.wait_until(lambda: len(seen) >= 5)
    return seen


@workflow
async def waiting_wf(ctx: WorkflowContext) -> str:
    await ctx.wait_signal("go")
    return "went"


def _worker(client: durable.Client, queue: str) -> durable.Worker:
    return durable.Worker(
        client, task_queue=queue, workflows=[pausable_wf, waiting_wf], activities=[held_activity]
    )


async def _status(handle: durable.WorkflowHandle[Any]) -> str:
    return (await handle.describe()).status


async def test_a_paused_run_takes_in_nothing_until_resumed_then_everything_in_order(
    client: durable.Client,
) -> None:
    RELEASED.clear()
    async with _worker(client, "pause-q"):
        handle = await client.start(pausable_wf, id="paused-1", task_queue="pause-q")
        await wait_for(lambda: _pending_activities(handle))
        await handle.pause("maintenance")
        desc = await handle.describe()
        assert (desc.status, desc.pause_reason) == ("paused", "maintenance")
        assert desc.paused_at is not None
        length = desc.history_length

        RELEASED.set()  # the activity's outcome, then signals, arrive while paused
        await wait_for(lambda: _no_pending_activities(handle))
        await handle.signal("add", "s1")
        await handle.signal("add", "s2")
        await asyncio.sleep(0.5)  # time for a workflow task, had the run been running
        assert (await handle.describe()).history_length == length
        assert await handle.query("seen") == []  # answered from what it has taken in
        assert [d.workflow_id async for d in client.list(status="paused")] == ["paused-1"]
        assert [d.workflow_id async for d in client.list(status="running")] == []

        await handle.resume()
        await handle.signal("add", "s3")
        assert sorted(await handle.result(timeout=10)) == ["activity", "s1", "s2", "s3", "timer"]
        arrived = [
            e.type if e.type == "ACTIVITY_COMPLETED" else e.args[0][0]
            for e in await handle.history()
            if e.type in ("ACTIVITY_COMPLETED", "SIGNAL_RECEIVED")
        ]
        assert arrived == ["ACTIVITY_COMPLETED", "s1", "s2", "s3"]  # in the order they came


async def _pending_activities(handle: durable.WorkflowHandle[Any]) -> bool:
    return bool((await handle.describe()).pending_activities)


async def _no_pending_activities(handle: durable.WorkflowHandle[Any]) -> bool:
    return not (await handle.describe()).pending_activities


async def test_a_run_paused_before_it_began_starts_once_resumed(client: durable.Client) -> None:
    handle = await client.start(waiting_wf, id="paused-pending", task_queue="pause-pending-q")
    await handle.pause()
    await handle.pause()  # pausing a paused run changes nothing
    async with _worker(client, "pause-pending-q"):
        await asyncio.sleep(0.5)
        desc = await handle.describe()
        assert (desc.status, desc.history_length) == ("paused", 1)
        await handle.signal("go")
        await handle.resume()
        assert await handle.result(timeout=10) == "went"
    for closed_run in (handle.pause, handle.resume):  # an error, not a silent no-op
        with pytest.raises(durable.WorkflowError, match="closed"):
            await closed_run()


async def test_cancel_and_terminate_reach_a_paused_run(client: durable.Client) -> None:
    async with _worker(client, "pause-cancel-q"):
        cancelled = await client.start(waiting_wf, id="paused-cancel", task_queue="pause-cancel-q")
        terminated = await client.start(waiting_wf, id="paused-term", task_queue="pause-cancel-q")
        for handle in (cancelled, terminated):
            await wait_for(lambda h=handle: _status_is(h, "running"))
            await handle.pause()
        await cancelled.cancel("no longer wanted")  # its code runs again to see it
        with pytest.raises(durable.WorkflowCancelledError):
            await cancelled.result(timeout=10)
        await terminated.terminate("bad deploy")
        with pytest.raises(durable.WorkflowTerminatedError):
            await terminated.result(timeout=10)
        assert await _status(terminated) == "terminated"


async def _status_is(handle: durable.WorkflowHandle[Any], status: str) -> bool:
    return await _status(handle) == status


async def test_pause_is_applied_once_per_request_id(client: durable.Client) -> None:
    handle = await client.start(waiting_wf, id="paused-once", task_queue="nobody-q")
    await handle.pause(request_id="op-1")
    await handle.resume(request_id="op-2")
    await handle.pause(request_id="op-1")  # a retry of the first request: already applied
    assert await _status(handle) == "pending"
    await handle.terminate()


async def test_pause_of_an_unknown_workflow_is_not_found(client: durable.Client) -> None:
    with pytest.raises(durable.WorkflowNotFoundError):
        await client.get_handle("no-such-workflow").pause()
    with pytest.raises(ValueError, match="reason"):
        await client.get_handle("no-such-workflow").pause(reason=42)  # type: ignore[arg-type]


def _rows_filtered_out(plan: dict[str, Any]) -> int:
    own = int(plan.get("Rows Removed by Filter", 0))
    return own + sum(_rows_filtered_out(p) for p in plan.get("Plans", []))


async def test_paused_runs_cost_a_claim_nothing(client: durable.Client) -> None:
    """Thousands of paused due runs (a batch pause) are not in the claims' index: a claim
    neither reads nor filters them."""
    pool = client.store.pool
    await pool.execute(
        "INSERT INTO durable.workflows (workflow_id, run_id, workflow_name, task_queue, status,"
        " ready_at, paused_at) SELECT 'paused-' || i, gen_random_uuid(), 'waiting_wf', 'plan-q',"
        " 'running', now() - interval '1 minute', now() FROM generate_series(1, 3000) AS i"
    )
    await pool.execute("ANALYZE durable.workflows")
    args = ["plan-q", str(uuid.uuid4()), ["waiting_wf"], [], 10, [], None]
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            explained = await conn.fetchval(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + _CLAIM_WORKFLOWS_SQL, *args
            )
        finally:
            await transaction.rollback()
    plan = json.loads(explained)[0]["Plan"]
    assert _rows_filtered_out(plan) == 0, json.dumps(plan, indent=1)
    assert "workflows_ready_by_owner" in explained
    assert await client.store.claim_workflow_tasks("plan-q", args[1], ["waiting_wf"], [], 10) == []
