"""Reset and fork (API.md, "Operating running workflows"): a run started again from a point
of its history replays the kept steps from their recorded results and runs live from
there; on real Postgres with real workers."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import pytest

import durable
from durable import ApplicationError, WorkflowContext, activity, workflow

from .conftest import wait_for

CALLS: collections.Counter[str] = collections.Counter()
FIXED = {"charge": False}


@activity
async def reserve(order: str, token: float) -> str:
    CALLS["reserve"] += 1
    return f"reserved {order}"


@activity
async def charge(order: str) -> str:
    CALLS["charge"] += 1
    if not FIXED["charge"]:
        raise ApplicationError("card declined", non_retryable=True)
    return f"charged {order}"


@workflow
async def order_wf(ctx: WorkflowContext, order: str) -> list[Any]:
    token = ctx.random().random()  # drawn before the failure: the same after a reset
    reserved = await ctx.activity(reserve, order, token)
    charged = await ctx.activity(charge, order)
    return [reserved, charged, token]


@workflow
async def collecting_wf(ctx: WorkflowContext) -> list[str]:
    seen: list[str] = []
    ctx.on_signal("add", seen.append)
    seen.append(await ctx.activity(reserve, "c", 0.0))
    await ctx.wait_until(lambda: len(seen) >= 4)
    return seen


@workflow
async def ledger_wf(ctx: WorkflowContext) -> list[str]:
    seen: list[str] = []

    def add(label: str) -> int:
        seen.append(label)
        return len(seen)

    async def hold() -> str:
        await ctx.wait_until(lambda: "release" in seen)
        return f"held until {len(seen)}"

    ctx.on_update("add", add)
    ctx.on_update("hold", hold)
    seen.append(await ctx.activity(reserve, "l", 0.0))
    await ctx.wait_until(lambda: len(seen) >= 4)
    await ctx.sleep(0.2)  # the hold update completes first
    return seen


@workflow
async def timer_wf(ctx: WorkflowContext) -> str:
    nap = asyncio.ensure_future(ctx.sleep(1.0))
    go = await ctx.wait_signal("go")
    await nap
    return f"woke after {go}"


@workflow
async def waiting_child_wf(ctx: WorkflowContext, label: str) -> str:
    return f"{label}: {await ctx.wait_signal('go')}"


@workflow
async def parent_wf(ctx: WorkflowContext) -> str:
    first = await ctx.child(waiting_child_wf, "first")  # a default child id
    return f"{first} / {await ctx.activity(charge, 'parent')}"


def _worker(client: durable.Client, queue: str) -> durable.Worker:
    return durable.Worker(
        client,
        task_queue=queue,
        workflows=[order_wf, collecting_wf, ledger_wf, timer_wf, waiting_child_wf, parent_wf],
        activities=[reserve, charge],
    )


@pytest.fixture(autouse=True)
def _fresh_counts() -> None:
    CALLS.clear()
    FIXED["charge"] = False


async def _failed(handle: durable.WorkflowHandle[Any]) -> None:
    with pytest.raises(durable.WorkflowFailedError):
        await handle.result(timeout=20)


async def test_reset_of_a_failed_run_reruns_the_failed_activity_only(
    client: durable.Client,
) -> None:
    async with _worker(client, "reset-q"):
        old = await client.start(order_wf, "o-1", id="reset-1", task_queue="reset-q")
        await _failed(old)
        old_events = await old.history()
        FIXED["charge"] = True
        new = await old.reset(reason="card fixed")
        reserved, charged, token = await new.result(timeout=20)
    assert (reserved, charged) == ("reserved o-1", "charged o-1")
    assert CALLS == {"reserve": 1, "charge": 2}
    scheduled = [e for e in old_events if e.type == "ACTIVITY_SCHEDULED"]
    assert token == scheduled[0].args[0][1]  # randomness replayed, not drawn anew
    failed_at = next(e.seq for e in old_events if e.type == "ACTIVITY_FAILED")
    described = await new.describe()
    assert described.reset_from == (old.run_id, failed_at)
    assert described.status == "completed"
    kept = [(e.seq, e.type) for e in await new.history() if e.seq < failed_at]
    assert kept == [(e.seq, e.type) for e in old_events if e.seq < failed_at]
    old_described = await client.get_handle("reset-1", run_id=old.run_id).describe()
    assert old_described.status == "failed"  # a closed run keeps its outcome
    assert old_described.failure_type == "ActivityError"
    assert old_described.failure_stack and "card declined" in old_described.failure_stack
    assert old_described.next_run_id == new.run_id
    assert (await client.get_handle("reset-1").describe()).run_id == new.run_id


async def test_reset_of_an_open_run_redelivers_the_signals_after_the_point(
    client: durable.Client,
) -> None:
    async with _worker(client, "reset-q"):
        old = await client.start(collecting_wf, id="reset-2", task_queue="reset-q")
        await wait_for(lambda: _has_event(old, "ACTIVITY_COMPLETED"))  # signals come after
        for label in ("s1", "s2"):
            await old.signal("add", label)
            await wait_for(
                lambda label=label: _has_signal(old, label)  # type: ignore[misc]
            )
        events = await old.history()
        first_signal = next(e for e in events if e.type == "SIGNAL_RECEIVED")
        new = await old.reset(seq=first_signal.seq, reason="operator")
        await new.signal("add", "s3")
        result = await old.result(timeout=20)  # the old run's handle follows the reset
    assert result == ["reserved c", "s1", "s2", "s3"]
    assert CALLS["reserve"] == 1
    closed = await client.get_handle("reset-2", run_id=old.run_id).describe()
    assert closed.status == "terminated"
    last = (await client.get_handle("reset-2", run_id=old.run_id).history())[-1]
    assert (last.type, last.reason, last.reset_run_id) == (
        "WORKFLOW_TERMINATED",
        "operator",
        new.run_id,
    )


async def test_reset_and_fork_deliver_the_updates_after_the_point_again(
    client: durable.Client,
) -> None:
    """An update completed after the point runs again in the new run (its caller keeps the
    answer it had); one still pending is answered by the run reset to, not cut off. A fork
    runs them too, but answers nobody: the original still holds its callers."""
    async with _worker(client, "reset-q"):
        old = await client.start(ledger_wf, id="reset-upd", task_queue="reset-q")
        await wait_for(lambda: _has_event(old, "ACTIVITY_COMPLETED"))
        assert [await old.update("add", label) for label in ("u1", "u2")] == [2, 3]
        holding = asyncio.ensure_future(old.update("hold", timeout=30))
        await wait_for(lambda: _count(old, "UPDATE_ACCEPTED", 3))
        first_update = next(e for e in await old.history() if e.type == "UPDATE_ACCEPTED")

        fork = await client.fork("reset-upd", seq=first_update.seq, new_id="reset-upd-fork")
        assert await fork.update("add", "release") == 4
        assert await fork.result(timeout=20) == ["reserved l", "u1", "u2", "release"]
        await asyncio.sleep(0.3)
        assert not holding.done(), "the fork answered a caller of the original"

        new = await old.reset(seq=first_update.seq, reason="operator")
        assert await new.update("add", "release") == 4
        assert await holding == "held until 4"
        assert await new.result(timeout=20) == ["reserved l", "u1", "u2", "release"]
    assert CALLS["reserve"] == 1
    redone = [e.result for e in await new.history() if e.type == "UPDATE_COMPLETED"]
    assert redone == [2, 3, 4, "held until 4"]  # u1, u2 again, then release and hold


async def _count(handle: durable.WorkflowHandle[Any], type_: str, n: int) -> bool:
    return sum(e.type == type_ for e in await handle.history()) >= n


async def _has_event(handle: durable.WorkflowHandle[Any], type_: str) -> bool:
    return any(e.type == type_ for e in await handle.history())


async def _has_signal(handle: durable.WorkflowHandle[Any], label: str) -> bool:
    return any(e.type == "SIGNAL_RECEIVED" and e.args[0] == [label] for e in await handle.history())


async def test_a_point_that_begins_no_workflow_task_is_refused_and_nothing_changes(
    client: durable.Client,
) -> None:
    async with _worker(client, "reset-q"):
        handle = await client.start(order_wf, "o-3", id="reset-3", task_queue="reset-q")
        await _failed(handle)
        events = await handle.history()
        scheduled = next(e.seq for e in events if e.type == "ACTIVITY_SCHEDULED")
        with pytest.raises(ValueError, match=r"valid reset points: 1, \d+"):
            await handle.reset(seq=scheduled)
        with pytest.raises(ValueError, match="seq must be"):
            await handle.reset(seq=0)
        assert len(await handle.history()) == len(events)
        assert (await client.get_handle("reset-3").describe()).run_id == handle.run_id


async def test_a_timer_set_before_the_point_is_set_again_for_when_it_was_due(
    client: durable.Client,
) -> None:
    async with _worker(client, "reset-q"):
        old = await client.start(timer_wf, id="reset-4", task_queue="reset-q")
        await wait_for(lambda: _has_event(old, "TIMER_STARTED"))
        await old.signal("go", "the signal")
        await wait_for(lambda: _has_signal(old, "the signal"))
        events = await old.history()
        signal = next(e for e in events if e.type == "SIGNAL_RECEIVED")
        assert any(e.type == "TIMER_STARTED" and e.seq < signal.seq for e in events)
        (timer,) = (await old.describe()).pending_timers
        assert timer.timer_id == "2" and timer.fires_at > events[0].timestamp
        new = await old.reset(seq=signal.seq)
        assert await new.result(timeout=20) == "woke after the signal"
    fired = [e for e in await new.history() if e.type == "TIMER_FIRED"]
    assert len(fired) == 1


async def test_reset_to_the_start_runs_everything_again_with_the_same_input(
    client: durable.Client,
) -> None:
    async with _worker(client, "reset-q"):
        old = await client.start(order_wf, "o-5", id="reset-5", task_queue="reset-q")
        await _failed(old)
        FIXED["charge"] = True
        new = await old.reset(seq=1)
        assert (await new.result(timeout=20))[:2] == ["reserved o-5", "charged o-5"]
    assert CALLS == {"reserve": 2, "charge": 2}


async def test_a_reset_made_again_with_its_request_id_starts_one_run(
    client: durable.Client,
) -> None:
    async with _worker(client, "reset-q"):
        old = await client.start(order_wf, "o-6", id="reset-6", task_queue="reset-q")
        await _failed(old)
        FIXED["charge"] = True
        first = await old.reset(request_id="fix-6")
        again = await client.get_handle("reset-6", run_id=old.run_id).reset(request_id="fix-6")
        assert again.run_id == first.run_id
        await first.result(timeout=20)
    runs = [d async for d in client.list(workflow_name="order_wf")]
    assert len(runs) == 2
    assert CALLS["charge"] == 2


async def test_fork_copies_a_run_to_a_new_id_and_leaves_the_original(
    client: durable.Client,
) -> None:
    async with _worker(client, "reset-q"):
        original = await client.start(order_wf, "o-7", id="reset-7", task_queue="reset-q")
        await _failed(original)
        FIXED["charge"] = True
        fork = await client.fork("reset-7", new_id="reset-7-retry", request_id="f-7")
        assert fork.workflow_id == "reset-7-retry"
        assert (await fork.result(timeout=20))[:2] == ["reserved o-7", "charged o-7"]
        again = await client.fork("reset-7", new_id="reset-7-retry", request_id="f-7")
        assert again.run_id == fork.run_id
        described = await original.describe()
        assert (described.status, described.next_run_id) == ("failed", None)
        assert (await fork.describe()).reset_from is not None
        waiting = await client.start(collecting_wf, id="reset-7-open", task_queue="reset-q")
        with pytest.raises(durable.WorkflowAlreadyStartedError, match="choose another new_id"):
            await client.fork("reset-7", new_id="reset-7-open")
        with pytest.raises(ValueError, match="new_id must differ"):
            await client.fork("reset-7", new_id="reset-7")
        await waiting.terminate()


async def _running_child(client: durable.Client, parent_id: str) -> str | None:
    running = [d async for d in client.list(status="running")]
    return next((d.workflow_id for d in running if d.parent_workflow_id == parent_id), None)


async def test_an_open_child_reset_reports_to_its_parent_which_never_sees_it_terminated(
    client: durable.Client,
) -> None:
    FIXED["charge"] = True
    async with _worker(client, "reset-q"):
        parent = await client.start(parent_wf, id="reset-8", task_queue="reset-q")
        child_id = await wait_for(lambda: _running_child(client, "reset-8"))
        (child,) = (await parent.describe()).open_children
        assert (child.workflow_id, child.workflow_name) == (child_id, "waiting_child_wf")
        new_child = await client.get_handle(child_id).reset(seq=1)
        await new_child.signal("go", "after the reset")
        assert await parent.result(timeout=20) == "first: after the reset / charged parent"


async def test_a_default_child_id_replays_through_a_reset_of_its_parent(
    client: durable.Client,
) -> None:
    async with _worker(client, "reset-q"):
        parent = await client.start(parent_wf, id="reset-9", task_queue="reset-q")
        child_id = await wait_for(lambda: _running_child(client, "reset-9"))
        await client.get_handle(child_id).signal("go", "once")
        await _failed(parent)
        FIXED["charge"] = True
        new = await parent.reset()  # just before the failed activity: the child is kept
        assert await new.result(timeout=20) == "first: once / charged parent"


async def test_batch_reset_of_failed_runs_applies_once_per_request(
    client: durable.Client,
) -> None:
    async with _worker(client, "reset-q"):
        handles = [
            await client.start(order_wf, f"o-b{i}", id=f"reset-b{i}", task_queue="reset-q")
            for i in range(5)
        ]
        for handle in handles:
            await _failed(handle)
        FIXED["charge"] = True
        assert await client.batch("reset", status="failed", request_id="b-1") == 5
        assert await client.batch("reset", status="failed", request_id="b-1") == 0
        for handle in handles:
            assert (await handle.result(timeout=20))[1] == f"charged o-b{handle.workflow_id[-1]}"
    assert CALLS["charge"] == 10


async def test_the_sync_client_resets_and_forks(client: durable.Client, dsn: str) -> None:
    async with _worker(client, "reset-q"):
        handle = await client.start(order_wf, "o-s", id="reset-s", task_queue="reset-q")
        await _failed(handle)
        FIXED["charge"] = True
        sync = await asyncio.to_thread(durable.SyncClient.connect, dsn)
        try:
            old = sync.get_handle("reset-s")
            new = await asyncio.to_thread(old.reset)
            fork = await asyncio.to_thread(sync.fork, "reset-s", None, "reset-s-copy")
            assert (await asyncio.to_thread(new.result, 20))[1] == "charged o-s"
            assert (await asyncio.to_thread(fork.result, 20))[1] == "charged o-s"
        finally:
            await asyncio.to_thread(sync.close)
