"""Round 3 of the correctness issue (issue 27): defects of the replayer and the worker that a
port of a peer's tests and a new user's first hour found, one test each, on a real worker
and a real Postgres database. Each test failed before its fix; its docstring names the defect."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

import pytest

import durable
import durable.testing
from durable import RetryPolicy, WorkflowContext, activity, workflow

from .conftest import wait_for

FAST = RetryPolicy(initial_interval=timedelta(milliseconds=50))


@workflow
async def cart_wf(ctx: WorkflowContext) -> list[str]:
    items: list[str] = []

    def add(item: str) -> None:
        items.append(item)

    def must_hold(item: str) -> None:
        if item not in items:
            raise ValueError(f"{item!r} is not in the cart")

    def remove(item: str) -> int:
        items.remove(item)
        return len(items)

    ctx.on_signal("add", add)
    ctx.on_update("remove", remove, validator=must_hold)
    ctx.on_query("items", lambda: list(items))
    await ctx.wait_signal("checkout")
    return items


async def _update_after_signal_while_paused(handle: durable.WorkflowHandle[Any]) -> int:
    """A signal, then an update that needs it, both waiting in the inbox of a paused run:
    one step takes both in."""
    await handle.pause()
    await handle.signal("add", "spoon")
    update = asyncio.create_task(handle.update("remove", "spoon"))
    await wait_for(lambda: _inbox_has_update(handle))
    await handle.resume()
    return await update


async def _inbox_has_update(handle: durable.WorkflowHandle[Any]) -> bool:
    store = handle.client.store
    count: int = await store.pool.fetchval(
        "SELECT count(*) FROM durable.inbox WHERE workflow_id = $1 AND kind = 32",
        handle.workflow_id,
    )
    return count == 1


async def test_an_update_is_validated_after_the_signals_sent_before_it(
    client: durable.Client,
) -> None:
    """#1: the validator ran as the update was taken in, while the handler of the signal sent
    before it was only queued: `'spoon' is not in the cart`, 3 of 3 with a pause."""
    async with durable.Worker(client, workflows=[cart_wf]):
        for n in range(3):
            handle = await client.start(cart_wf, id=f"cart-{n}")
            assert await handle.query("items", timeout=10) == []
            assert await _update_after_signal_while_paused(handle) == 0
            await handle.signal("add", "fork")
            await handle.signal("checkout")
            assert await handle.result(timeout=20) == ["fork"]
            await durable.testing.Replayer(workflows=[cart_wf]).replay([await handle.history()])


async def test_a_reset_delivers_the_signal_before_the_update_again(client: durable.Client) -> None:
    """#1: reset to seq 1 or to the step that took the messages in dropped the update without
    trace (its validator ran before the redelivered signal's handler)."""
    async with durable.Worker(client, workflows=[cart_wf]):
        for point in (0, 1):  # seq 1, then the first event of the step of the messages
            handle = await client.start(cart_wf, id=f"cart-reset-{point}")
            assert await handle.query("items", timeout=10) == []
            assert await _update_after_signal_while_paused(handle) == 0
            history = await handle.history()
            seqs = [e.seq for e in history if e.seq == 1 or history[e.seq - 2].ends_step]
            reset = await handle.reset(seq=seqs[point])
            await wait_for(lambda r=reset: _has_event(r, "UPDATE_COMPLETED"))
            kinds = [e.type for e in await reset.history()]
            assert kinds.count("UPDATE_ACCEPTED") == 1 and kinds.count("UPDATE_COMPLETED") == 1
            assert await reset.query("items", timeout=10) == []
            await reset.signal("checkout")
            assert await reset.result(timeout=20) == []


async def _has_event(handle: durable.WorkflowHandle[Any], kind: str) -> bool:
    return any(e.type == kind for e in await handle.history())


async def _step_count(handle: durable.WorkflowHandle[Any], at_least: int) -> bool:
    return sum(e.ends_step for e in await handle.history()) >= at_least


# ------------------------ 3. the first step's clock


@workflow
async def first_step_clock_wf(ctx: WorkflowContext) -> float:
    started = ctx.now()
    await ctx.sleep(0.2)
    return started.timestamp()


async def test_the_first_step_runs_at_the_start_events_time(client: durable.Client) -> None:
    """#3: ctx.now() in the first step was 13-19 ms after history()[0].timestamp, so a timer
    set there counted from the wrong instant."""
    async with durable.Worker(client, workflows=[first_step_clock_wf]):
        handle = await client.start(first_step_clock_wf)
        first_step_now = await handle.result(timeout=20)
    history = await handle.history()
    assert first_step_now == history[0].timestamp.timestamp()
    timer = next(e for e in history if e.type == "TIMER_STARTED")
    assert timer.fields["fire_at"] == pytest.approx(history[0].timestamp.timestamp() + 0.2)


# ------------------------ 4. as_completed replays in the recorded order


@activity(retry=FAST)
async def echo(value: int) -> int:
    await asyncio.sleep(0.01 * value)
    return value


@activity(retry=FAST)
async def negate(value: int) -> int:
    return -value


@workflow
async def as_completed_wf(ctx: WorkflowContext, n: int) -> list[int]:
    ctx.on_query("ok", lambda: True)
    seen = []
    calls = [ctx.activity(echo, i) if i % 2 else ctx.activity(negate, i) for i in range(n)]
    for next_done in asyncio.as_completed(calls):
        seen.append(await next_done)
    await ctx.wait_signal("go")
    return seen


async def test_a_query_replays_a_run_that_used_as_completed(client: durable.Client) -> None:
    """#4: as_completed over ctx.activity(...) calls scheduled them in the order of the
    coroutine objects' addresses: a query's replay in a fresh instance raised
    NondeterminismError (when the allocator placed them otherwise than in the live run)."""
    async with durable.Worker(client, workflows=[as_completed_wf], activities=[echo, negate]):
        handle = await client.start(as_completed_wf, 12)
        await wait_for(lambda: _step_count(handle, at_least=3), timeout=20)
    history = await handle.history()
    replayer = durable.testing.Replayer(workflows=[as_completed_wf])
    kept: list[list[object]] = []
    for size in range(8):  # objects of other sizes between replays move the next addresses
        kept.append([object() for _ in range(size * 7 + 3)])
        await replayer.replay([history])
    async with durable.Worker(client, workflows=[as_completed_wf], activities=[echo, negate]):
        assert await handle.query("ok", timeout=20) is True  # no worker owns it: replayed


# ------------------------ 12. work cancelled as it was asked for is not recorded

RAN: list[str] = []


@activity
async def must_not_run(tag: str) -> str:
    RAN.append(tag)
    return tag


@workflow
async def never_sent_child(ctx: WorkflowContext) -> None:
    RAN.append("child")


@workflow
async def takes_back_wf(ctx: WorkflowContext) -> str:
    ctx.start_activity(must_not_run, "cancelled").cancel()
    child = ctx.start_child(never_sent_child.with_options(id="never-sent-child"))
    child.cancel()
    with contextlib.suppress(durable.ChildWorkflowError):
        await child
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ctx.wait_signal("never"), timeout=0.01)
    sleeping = asyncio.ensure_future(ctx.sleep(30))
    await asyncio.sleep(0)  # the timer is set as the task runs ...
    sleeping.cancel()  # ... and cancelled before anything else is recorded
    with contextlib.suppress(asyncio.CancelledError):
        await sleeping
    return await ctx.activity(must_not_run, "sent")


async def test_work_cancelled_as_it_is_asked_for_is_neither_sent_nor_recorded(
    client: durable.Client,
) -> None:
    """#12: an activity started and cancelled in the same step was never sent, yet history
    recorded ACTIVITY_SCHEDULED and ACTIVITY_CANCEL_REQUESTED (timers and children alike)."""
    RAN.clear()
    async with durable.Worker(
        client, workflows=[takes_back_wf, never_sent_child], activities=[must_not_run]
    ):
        handle = await client.start(takes_back_wf)
        assert await handle.result(timeout=20) == "sent"
    history = await handle.history()
    assert RAN == ["sent"]
    assert [e.type for e in history] == [
        "WORKFLOW_STARTED",
        "TIMER_STARTED",  # the wait_for's timeout, which fired
        "TIMER_FIRED",
        "ACTIVITY_SCHEDULED",
        "ACTIVITY_COMPLETED",
        "WORKFLOW_COMPLETED",
    ]
    assert [e.seq for e in history] == list(range(1, 7))
    await durable.testing.Replayer(workflows=[takes_back_wf]).replay([history])


# ------------------------ 15. a worker that lost a run says so, not "corrupt history"

RELEASE_SLOW = asyncio.Event()


@activity
async def slow_step() -> str:
    await RELEASE_SLOW.wait()
    return "done"


@workflow
async def stale_wf(ctx: WorkflowContext) -> str:
    await ctx.activity(slow_step)
    # what a worker's stale instance meets when another worker moved the run on meanwhile
    raise durable.NondeterminismError("corrupt history: TIMER_FIRED answers seq 13")


async def test_a_worker_that_lost_a_run_says_so_at_info_not_corruption(
    client: durable.Client, caplog: pytest.LogCaptureFixture
) -> None:
    """#15: a worker resumed after a stall stepped its cached run, which another worker had
    taken over, and logged ERROR "corrupt history" (an operator reading it stops a deploy)."""
    caplog.set_level(logging.INFO, logger="durable")
    RELEASE_SLOW.clear()
    async with durable.Worker(client, workflows=[stale_wf], activities=[slow_step]):
        handle = await client.start(stale_wf)
        await wait_for(lambda: _has_event(handle, "ACTIVITY_SCHEDULED"))
        await client.store.pool.execute(  # another worker takes the run over, as after a stall
            "UPDATE durable.workflows SET owner = gen_random_uuid(), fence = fence + 1 "
            "WHERE workflow_id = $1",
            handle.workflow_id,
        )
        RELEASE_SLOW.set()  # the result reaches this worker's cached run, which steps it
        await wait_for(lambda: "no longer holds the run" in caplog.text)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert (await handle.describe()).last_error is None  # nothing written over the run
