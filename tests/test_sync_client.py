"""SyncClient: every Client call blocking, from threads that have no event loop (as in a
Django or Flask view), against a real worker and Postgres."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

import durable
from durable import WorkflowContext, activity, workflow


@activity
async def double(n: int) -> int:
    return 2 * n


@workflow
async def doubled(ctx: WorkflowContext, n: int) -> int:
    return await ctx.activity(double, n)


@workflow
async def counter(ctx: WorkflowContext) -> int:
    total = 0
    ctx.on_query("total", lambda: total)
    while True:
        added: int = await ctx.wait_signal("add")
        if added == 0:
            return total
        total += added


def _from_threads(dsn: str) -> dict[str, object]:
    """What a threaded web application would do: one SyncClient shared by 8 threads."""
    with durable.SyncClient.connect(dsn) as client:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda n: client.execute(doubled, n, id=f"d-{n}"), range(16)))
        handle = client.start(counter, id="counter")
        for n in (1, 2, 3):
            handle.signal("add", n)

        def total_is_6() -> bool:
            return bool(handle.query("total") == 6)

        while not total_is_6():
            threading.Event().wait(0.02)
        handle.signal("add", 0)
        outcome = {
            "results": results,
            "counter": handle.result(timeout=30),
            "status": handle.describe().status,
            "history": [e.type for e in handle.history() if e.type == "SIGNAL_RECEIVED"],
            "listed": sorted(d.workflow_id for d in client.list(workflow_name="doubled")),
            "again": client.get_handle("d-3").result(),
        }
    return outcome


async def test_a_sync_client_shared_by_threads_does_every_call(dsn: str) -> None:
    async with (
        await durable.Client.connect(dsn) as worker_client,
        durable.Worker(worker_client, workflows=[doubled, counter], activities=[double]),
    ):
        outcome = await asyncio.to_thread(_from_threads, dsn)
    assert outcome["results"] == [2 * n for n in range(16)]
    assert outcome["counter"] == 6 and outcome["status"] == "completed"
    assert outcome["history"] == ["SIGNAL_RECEIVED"] * 4
    assert outcome["listed"] == sorted(f"d-{n}" for n in range(16))
    assert outcome["again"] == 6


def test_errors_reach_the_caller_and_its_own_loop_is_refused(dsn: str) -> None:
    with durable.SyncClient.connect(dsn) as client:
        with pytest.raises(durable.WorkflowNotFoundError):
            client.get_handle("nobody").describe()
        with pytest.raises(durable.PayloadError, match="'n'"):  # checked before it is written
            client.start(doubled, "two")  # type: ignore[arg-type]
        assert list(client.list()) == []

        async def inside_its_loop() -> None:
            client.get_handle("nobody").describe()

        with pytest.raises(durable.DurableError, match="its own event loop"):
            client._runner.call(inside_its_loop())
    with pytest.raises(durable.DurableError, match="cannot connect"):
        durable.SyncClient.connect("postgresql://nobody@127.0.0.1:1/x", connect_timeout=2)


def test_every_client_and_handle_method_has_a_blocking_twin() -> None:
    for async_class, sync_class in (
        (durable.Client, durable.SyncClient),
        (durable.WorkflowHandle, durable.SyncWorkflowHandle),
        (durable.ScheduleHandle, durable.SyncScheduleHandle),
    ):
        public = {  # (the Client's methods come from several classes)
            n for c in async_class.__mro__[:-1] for n in vars(c) if not n.startswith("_")
        }
        public -= {"connect", "store"}  # (SyncClient.connect takes the same options)
        missing = sorted(n for n in public if not hasattr(sync_class, n))
        assert missing == [], f"{sync_class.__name__} lacks {missing}"
