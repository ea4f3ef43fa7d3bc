"""Batch actions (API.md, "Operating running workflows"): client.batch over a list filter,
on real Postgres with real workers."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import pytest

import durable
from durable import WorkflowContext, workflow
from durable._client.operations import _BATCH_CHUNK

from .conftest import wait_for


@workflow
async def collecting_wf(ctx: WorkflowContext) -> list[str]:
    got: list[str] = []
    ctx.on_signal("add", got.append)
    ctx.on_query("got", lambda: list(got))
    await ctx.wait_until(lambda: "stop" in got)
    return got


@workflow
async def parked_wf(ctx: WorkflowContext) -> str:
    await ctx.wait_signal("never")
    return "unreachable"


def _worker(client: durable.Client, queue: str) -> durable.Worker:
    return durable.Worker(client, task_queue=queue, workflows=[collecting_wf, parked_wf])


async def _start_many(
    client: durable.Client, wf: Any, count: int, queue: str, prefix: str, **options: Any
) -> list[durable.WorkflowHandle[Any]]:
    return list(
        await asyncio.gather(
            *(
                client.start(wf, id=f"{prefix}-{i}", task_queue=queue, **options)
                for i in range(count)
            )
        )
    )


async def _count(client: durable.Client, sql: str, *args: Any) -> int:
    value: int = await client.store.pool.fetchval(sql, *args)
    return value


async def _running(client: durable.Client, prefix: str) -> int:
    return await _count(
        client,
        "SELECT count(*) FROM durable.workflows WHERE workflow_id LIKE $1 || '-%' "
        "AND status = 'running' AND closed_at IS NULL",
        prefix,
    )


async def test_batch_terminate_of_10000_running_workflows(client: durable.Client) -> None:
    """The database does it in chunks; the figure is printed, not asserted."""
    count = 10_000
    async with _worker(client, "batch-big"):
        began = time.perf_counter()
        await _start_many(client, parked_wf, count, "batch-big", "big")
        await wait_for(lambda: _running_all(client, count), timeout=120)
        ran = time.perf_counter() - began
        began = time.perf_counter()
        n = await client.batch(
            "terminate", status="running", workflow_name="parked_wf", reason="bad deploy"
        )
        took = time.perf_counter() - began
    print(
        f"\nbatch terminate: {n} running workflows in {took:.2f} s ({n / took:,.0f}/s); "
        f"starting them and their first steps took {ran:.2f} s"
    )
    assert n == count
    terminated = await _count(
        client,
        "SELECT count(*) FROM durable.workflows WHERE status = 'terminated' "
        "AND failure IS NOT NULL AND closed_at IS NOT NULL",
    )
    closing_events = await _count(
        client,
        "SELECT count(*) FROM durable.history WHERE kind = $1",
        int(durable._events.EventType.WORKFLOW_TERMINATED),
    )
    assert (terminated, closing_events) == (count, count)
    desc = await client.get_handle("big-77").describe()
    assert (desc.status, desc.failure) == ("terminated", "bad deploy")
    assert await client.batch("terminate", status="running", workflow_name="parked_wf") == 0
    await _reset_the_10000(client, count)


async def _reset_the_10000(client: durable.Client, count: int) -> None:
    """Undone: each terminated run reset to its default point, in chunks too, once."""
    undo = {"status": "terminated", "workflow_name": "parked_wf", "request_id": "undo"}
    began = time.perf_counter()
    n = await client.batch("reset", **undo)
    took = time.perf_counter() - began
    print(f"batch reset: {n} terminated workflows in {took:.2f} s ({n / took:,.0f}/s)")
    assert n == count
    assert await client.batch("reset", **undo) == 0
    reset_runs = await _count(
        client,
        "SELECT count(*) FROM durable.workflows WHERE reset_from_run IS NOT NULL "
        "AND closed_at IS NULL AND workflow_name = 'parked_wf'",
    )
    assert reset_runs == count
    desc = await client.get_handle("big-77").describe()
    assert desc.status == "pending" and desc.reset_from is not None  # reset to its start
    # no worker serves them now: closed again, so that no test after this one sees them
    assert await client.batch("terminate", workflow_name="parked_wf", reason="done") == count


async def _running_all(client: durable.Client, count: int) -> bool:
    return await _running(client, "big") == count


async def test_batch_signal_goes_once_per_request_id(client: durable.Client) -> None:
    async with _worker(client, "batch-sig"):
        handles = await _start_many(client, collecting_wf, 30, "batch-sig", "sig")
        await wait_for(lambda: _running_count(client, "sig", 30))
        sent = {"signal": "add", "signal_args": ["hello"], "request_id": "batch-1"}
        assert await client.batch("signal", workflow_name="collecting_wf", **sent) == 30
        assert await client.batch("signal", workflow_name="collecting_wf", **sent) == 0
        again = await client.batch(
            "signal", workflow_name="collecting_wf", signal="add", signal_args=["again"]
        )
        assert again == 30
        assert await client.batch("signal", signal="add", signal_args=["stop"]) == 30
        results = await asyncio.gather(*(h.result(timeout=30) for h in handles))
    assert results == [["hello", "again", "stop"]] * 30
    assert await client.batch("signal", signal="add", signal_args=["late"]) == 0


async def _running_count(client: durable.Client, prefix: str, count: int) -> bool:
    return await _running(client, prefix) == count


async def test_batch_pause_and_resume_follow_the_filter(client: durable.Client) -> None:
    async with _worker(client, "batch-pause"):
        t1 = await _start_many(
            client, collecting_wf, 5, "batch-pause", "t1", attributes={"tenant": "t1"}
        )
        t2 = await _start_many(
            client, collecting_wf, 5, "batch-pause", "t2", attributes={"tenant": "t2"}
        )
        await wait_for(lambda: _running_count(client, "t1", 5))
        await wait_for(lambda: _running_count(client, "t2", 5))
        assert await client.batch("pause", attributes={"tenant": "t1"}, reason="audit") == 5
        assert await client.batch("pause", attributes={"tenant": "t1"}) == 0
        assert {d.workflow_id async for d in client.list(status="paused")} == {
            f"t1-{i}" for i in range(5)
        }
        assert await client.batch("signal", signal="add", signal_args=["stop"]) == 10
        await asyncio.gather(*(h.result(timeout=30) for h in t2))
        await asyncio.sleep(0.3)  # time for a workflow task, had a paused run been running
        assert {(await h.describe()).status for h in t1} == {"paused"}
        assert await client.batch("resume", status="running") == 0  # none matches
        assert await client.batch("resume", attributes={"tenant": "t1"}) == 5
        assert await client.batch("resume", attributes={"tenant": "t1"}) == 0
        assert await asyncio.gather(*(h.result(timeout=30) for h in t1)) == [["stop"]] * 5


async def test_batch_cancel_closes_pending_runs_and_asks_the_others(
    client: durable.Client,
) -> None:
    pending = await _start_many(client, parked_wf, 4, "batch-nobody", "pend")
    async with _worker(client, "batch-cancel"):
        running = await _start_many(client, parked_wf, 4, "batch-cancel", "run")
        await wait_for(lambda: _running_count(client, "run", 4))
        await running[0].pause()
        assert await client.batch("cancel", workflow_name="parked_wf", reason="cleanup") == 8
        for handle in running:  # the paused one too: it was resumed to see the request
            with pytest.raises(durable.WorkflowCancelledError):
                await handle.result(timeout=30)
    assert {(await h.describe()).status for h in [*pending, *running]} == {"cancelled"}
    assert await client.batch("cancel", workflow_name="parked_wf") == 0


async def test_batch_refuses_bad_input_and_changes_nothing(client: durable.Client) -> None:
    handle = await client.start(parked_wf, id="untouched", task_queue="batch-nobody")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"action": "stop"}, "action must be one of"),
        ({"action": "signal"}, "needs signal=NAME"),
        ({"action": "terminate", "signal": "add"}, "are for action 'signal'"),
        ({"action": "signal", "signal": "add", "signal_args": "x"}, "signal_args must be"),
        ({"action": "terminate", "status": "Running"}, "status must be one of"),
        ({"action": "terminate", "attributes": ["tenant"]}, "attributes must be a dict"),
        ({"action": "pause", "reason": 7}, "reason must be a string"),
        ({"action": "terminate", "started_after": "yesterday"}, "started_after must be"),
    ]
    for options, message in cases:
        with pytest.raises(ValueError, match=message):
            await client.batch(**options)
    assert (await handle.describe()).status == "pending"


async def test_sync_client_batch(dsn: str) -> None:
    sync = await asyncio.to_thread(durable.SyncClient.connect, dsn)
    try:
        await asyncio.to_thread(sync.start, parked_wf, id="sync-batch", task_queue="batch-nobody")
        n = await asyncio.to_thread(sync.batch, "terminate", workflow_name="parked_wf")
        assert n == 1
    finally:
        await asyncio.to_thread(sync.close)


_BATCH_PROCESS = """
import asyncio, sys
import durable

async def main() -> None:
    client = await durable.Client.connect(sys.argv[1])
    await client.batch("signal", signal="add", signal_args=["once"], request_id=sys.argv[2])

asyncio.run(main())
"""


async def test_a_batch_killed_part_way_finishes_when_run_again(client: durable.Client) -> None:
    """A client process running a signal batch is SIGKILLed while its third chunk waits
    for a lock (two chunks committed, the third not); run again with the same request id,
    the batch signals only the rest: every workflow ends with exactly one signal."""
    committed = 2 * _BATCH_CHUNK  # the chunks done before the one that waits
    count = committed + 3 * _BATCH_CHUNK
    await _start_many(client, parked_wf, count, "batch-nobody", "kill")
    ordered = await client.store.pool.fetch(
        "SELECT workflow_id FROM durable.workflows ORDER BY started_at, workflow_id, run_id::text"
    )
    async with client.store.pool.acquire() as blocker, blocker.transaction():
        await blocker.execute(
            "SELECT 1 FROM durable.workflows WHERE workflow_id = $1 FOR UPDATE",
            ordered[committed + _BATCH_CHUNK // 2]["workflow_id"],
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _BATCH_PROCESS, client.store.dsn, "batch-kill"
        )
        try:
            await wait_for(lambda: _signals(client, committed), timeout=60)
            await wait_for(lambda: _waiting_for_a_lock(client), timeout=30)
        finally:
            process.kill()
            await process.wait()
        await client.store.pool.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event_type = "
            "'Lock' AND datname = current_database()"
        )
    assert await _signals(client, committed)
    again = await client.batch(
        "signal", signal="add", signal_args=["once"], request_id="batch-kill"
    )
    assert again == count - committed
    per_workflow = await client.store.pool.fetchrow(
        "SELECT count(*) AS signals, count(DISTINCT workflow_id) AS workflows FROM durable.inbox"
    )
    assert (per_workflow["signals"], per_workflow["workflows"]) == (count, count)


async def _signals(client: durable.Client, count: int) -> bool:
    return await _count(client, "SELECT count(*) FROM durable.inbox") == count


async def _waiting_for_a_lock(client: durable.Client) -> bool:
    return bool(
        await _count(
            client,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()",
        )
    )
