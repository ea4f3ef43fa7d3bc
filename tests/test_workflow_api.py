"""End-to-end tests of every WorkflowContext call (API.md, "WorkflowContext"), on a real worker
and a real Postgres database."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

import durable
from durable import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    RetryPolicy,
    WorkflowContext,
    activity,
    activity_context,
    workflow,
)

from .conftest import wait_for

FAST_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=50))


async def event_types(handle: durable.WorkflowHandle[Any]) -> list[str]:
    return [e.type for e in await handle.history()]


async def has_event(handle: durable.WorkflowHandle[Any], etype: str) -> bool:
    return etype in await event_types(handle)


async def status_of(client: durable.Client, workflow_id: str) -> str:
    return (await client.get_handle(workflow_id).describe()).status


# ---------------------------------------------------------------------------- shared activities

CALLS: list[Any] = []


@dataclass
class Point:
    x: int
    y: int


@activity
async def make_point(x: int, y: int) -> Point:
    return Point(x, y)


@activity
async def double(n: int) -> int:
    return n * 2


@activity
def shout(text: str) -> str:
    return text.upper()


@activity
async def record(what: str) -> str:
    CALLS.append(what)
    return what


# ---------------------------------------------------------------------------- ctx.activity


@workflow
async def point_wf(ctx: WorkflowContext, x: int) -> dict[str, Any]:
    point = await ctx.activity(make_point, x, x + 1)
    by_name = await ctx.activity("make_point", 5, 6)  # by registered name: no hint, plain dict
    return {
        "is_point": isinstance(point, Point),
        "point": point,
        "by_name": by_name,
        "sync": await ctx.activity(shout, "hi"),
    }


@workflow
async def returns_point_wf(ctx: WorkflowContext) -> Point:
    return await ctx.activity(make_point, 1, 2)


async def test_activity_result_is_rebuilt_as_annotated_dataclass(client: durable.Client) -> None:
    async with durable.Worker(
        client, workflows=[point_wf, returns_point_wf], activities=[make_point, shout]
    ):
        result = await client.execute(point_wf, 3)
        point = await client.execute(returns_point_wf)
    assert result["is_point"] is True
    assert result["by_name"] == {"x": 5, "y": 6}
    assert result["sync"] == "HI"
    assert point == Point(1, 2)
    assert isinstance(point, Point)


@workflow
async def unserializable_arg_wf(ctx: WorkflowContext) -> str:
    try:
        await ctx.activity(double, threading.Lock())  # type: ignore[arg-type]
    except durable.PayloadError:
        return "refused"
    return "scheduled"


async def test_unserializable_activity_argument_is_refused_at_call_site(
    client: durable.Client,
) -> None:
    async with durable.Worker(client, workflows=[unserializable_arg_wf], activities=[double]):
        handle = await client.start(unserializable_arg_wf)
        assert await handle.result(timeout=20) == "refused"
    assert "ACTIVITY_SCHEDULED" not in await event_types(handle)


# ---------------------------------------------------------------------------- start_activity + cancel

ACT_STARTED: list[int] = []
ACT_CANCELLED: list[bool] = []


@activity(heartbeat_timeout=timedelta(seconds=1))
async def cancellable_act() -> str:
    ctx = activity_context()
    ACT_STARTED.append(ctx.info.attempt)
    try:
        while True:
            ctx.heartbeat()
            await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        ACT_CANCELLED.append(ctx.is_cancelled())
        raise


@workflow
async def cancel_activity_wf(ctx: WorkflowContext) -> str:
    task = ctx.start_activity(cancellable_act)
    await ctx.wait_signal("cancel")
    task.cancel()
    try:
        await task
        outcome = "completed"
    except asyncio.CancelledError:
        outcome = "cancelled"
    await ctx.wait_signal("finish")
    return outcome


async def test_start_activity_handle_cancel_reaches_activity(client: durable.Client) -> None:
    ACT_STARTED.clear()
    ACT_CANCELLED.clear()
    async with durable.Worker(client, workflows=[cancel_activity_wf], activities=[cancellable_act]):
        handle = await client.start(cancel_activity_wf)
        await wait_for(lambda: ACT_STARTED)
        await handle.signal("cancel")
        await wait_for(lambda: ACT_CANCELLED)  # the activity saw the cancellation
        await handle.signal("finish")
        assert await handle.result(timeout=20) == "cancelled"
    assert ACT_CANCELLED == [True]  # is_cancelled() is True when it sees CancelledError
    assert "ACTIVITY_CANCEL_REQUESTED" in await event_types(handle)


async def test_cancelled_activity_is_not_retried(client: durable.Client) -> None:
    ACT_STARTED.clear()
    ACT_CANCELLED.clear()
    async with durable.Worker(client, workflows=[cancel_activity_wf], activities=[cancellable_act]):
        handle = await client.start(cancel_activity_wf)
        await wait_for(lambda: ACT_STARTED)
        await handle.signal("cancel")
        await wait_for(lambda: ACT_CANCELLED)

        async def no_pending() -> bool:
            return not (await handle.describe()).pending_activities

        try:
            await wait_for(no_pending, timeout=5)
            assert ACT_STARTED == [1]  # never started again after the cancellation
        finally:
            await handle.signal("finish")
            await handle.result(timeout=20)


# ---------------------------------------------------------------------------- local_activity

LOCAL_CALLS: list[int] = []


@activity
async def local_add(a: int, b: int) -> int:
    LOCAL_CALLS.append(activity_context().info.attempt)
    return a + b


@activity(retry=RetryPolicy(initial_interval=timedelta(milliseconds=50)))
def flaky_local(n: int) -> int:
    attempt = activity_context().info.attempt
    LOCAL_CALLS.append(attempt)
    if attempt < 3:
        raise ValueError(f"attempt {attempt} fails")
    return n * 10


@workflow
async def local_wf(ctx: WorkflowContext) -> int:
    value = await ctx.local_activity(local_add, 2, 3)
    await ctx.wait_signal("go")
    return value


@workflow
async def flaky_local_wf(ctx: WorkflowContext) -> int:
    return await ctx.local_activity(flaky_local, 4)


async def test_local_activity_runs_in_worker_and_is_recorded_once(client: durable.Client) -> None:
    LOCAL_CALLS.clear()
    async with durable.Worker(client, workflows=[local_wf]):  # no activity registration needed
        handle = await client.start(local_wf)
        await wait_for(lambda: has_event(handle, "LOCAL_ACTIVITY_COMPLETED"))
    # a fresh worker replays the history: the local activity is not run again
    async with durable.Worker(client, workflows=[local_wf]):
        await handle.signal("go")
        assert await handle.result(timeout=20) == 5
    types = await event_types(handle)
    assert types.count("LOCAL_ACTIVITY_COMPLETED") == 1
    assert "ACTIVITY_SCHEDULED" not in types
    assert LOCAL_CALLS == [1]


async def test_local_activity_is_retried_in_place(client: durable.Client) -> None:
    LOCAL_CALLS.clear()
    async with durable.Worker(client, workflows=[flaky_local_wf]):
        assert await client.execute(flaky_local_wf) == 40
        handle = client.get_handle((await _only_run(client)).workflow_id)
    assert LOCAL_CALLS == [1, 2, 3]
    types = await event_types(handle)
    assert types.count("LOCAL_ACTIVITY_COMPLETED") == 1
    assert "LOCAL_ACTIVITY_FAILED" not in types
    assert "ACTIVITY_SCHEDULED" not in types


LOCAL_EVENTS: list[str] = []


@activity
async def slow_local() -> None:
    LOCAL_EVENTS.append("started")
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        LOCAL_EVENTS.append("cancelled")
        raise


@workflow
async def slow_local_wf(ctx: WorkflowContext) -> None:
    await ctx.local_activity(slow_local)


async def test_a_local_activity_stops_when_its_worker_shuts_down(client: durable.Client) -> None:
    """Past the shutdown grace the workflow task is cancelled, and the local activity it runs
    with it: nothing of a stopped worker keeps running (another worker runs it again)."""
    LOCAL_EVENTS.clear()
    worker = durable.Worker(client, workflows=[slow_local_wf], shutdown_grace=timedelta(0))
    async with worker:
        await client.start(slow_local_wf)
        await wait_for(lambda: LOCAL_EVENTS == ["started"])
    await asyncio.sleep(0.1)
    assert LOCAL_EVENTS == ["started", "cancelled"]


async def _only_run(client: durable.Client) -> durable.WorkflowDescription:
    runs = [d async for d in client.list()]
    assert len(runs) == 1
    return runs[0]


# ---------------------------------------------------------------------------- timers


@workflow
async def timers_wf(ctx: WorkflowContext) -> list[float]:
    t0 = ctx.now()
    await ctx.sleep(0.2)
    t1 = ctx.now()
    await ctx.sleep_until(t1 + timedelta(seconds=0.2))
    t2 = ctx.now()
    await asyncio.sleep(0.2)
    t3 = ctx.now()
    await ctx.sleep(timedelta(milliseconds=100))
    t4 = ctx.now()
    return [(t - t0).total_seconds() for t in (t1, t2, t3, t4)]


async def test_sleep_sleep_until_and_asyncio_sleep_are_durable_timers(
    client: durable.Client,
) -> None:
    async with durable.Worker(client, workflows=[timers_wf]):
        handle = await client.start(timers_wf)
        elapsed = await handle.result(timeout=20)
    # workflow time moves forward by at least each timer's duration
    assert elapsed[0] >= 0.2
    assert elapsed[1] >= 0.4
    assert elapsed[2] >= 0.6
    assert elapsed[3] >= 0.7
    types = await event_types(handle)
    assert types.count("TIMER_STARTED") == 4
    assert types.count("TIMER_FIRED") == 4


HISTORY_SEEN: list[list[str]] = []
PROBE: list[durable.Client] = []


@activity
async def read_own_history(workflow_id: str) -> None:
    """What the history holds while this local activity runs (read from the database)."""
    handle = PROBE[0].get_handle(workflow_id)
    HISTORY_SEEN.append(await event_types(handle))


@workflow
async def sleep_then_local_wf(ctx: WorkflowContext) -> str:
    await ctx.sleep(0.2)
    await ctx.local_activity(read_own_history, ctx.info.workflow_id)
    return "done"


async def test_a_fired_timer_is_recorded_by_the_store_and_what_follows_commits_once(
    client: durable.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim of a run whose timer came due records TIMER_FIRED itself: the workflow
    proceeds past its sleep on a durable event (the local activity sees it in history),
    and the step that follows is the run's only commit after the start's."""
    HISTORY_SEEN.clear()
    PROBE[:] = [client]
    commits: list[list[str]] = []
    commit = client.store.commit_workflow_task

    async def counted(task: Any, worker_id: str, step: Any) -> Any:
        commits.append([e.type.name for e in step.events])
        return await commit(task, worker_id, step)

    monkeypatch.setattr(client.store, "commit_workflow_task", counted)
    async with durable.Worker(client, workflows=[sleep_then_local_wf]):
        handle = await client.start(sleep_then_local_wf)
        assert await handle.result(timeout=20) == "done"
    assert HISTORY_SEEN == [["WORKFLOW_STARTED", "TIMER_STARTED", "TIMER_FIRED"]]
    assert commits == [  # the step that only started the local activity commits with the next
        ["TIMER_STARTED"],
        ["STEP_COMPLETED", "LOCAL_ACTIVITY_COMPLETED", "WORKFLOW_COMPLETED"],
    ]
    assert (await event_types(handle))[2:] == [
        "TIMER_FIRED",
        "STEP_COMPLETED",
        "LOCAL_ACTIVITY_COMPLETED",
        "WORKFLOW_COMPLETED",
    ]


# ---------------------------------------------------------------------------- wait_signal


@workflow
async def buffered_signals_wf(ctx: WorkflowContext) -> dict[str, Any]:
    await ctx.wait_signal("go")
    xs = [await ctx.wait_signal("x") for _ in range(3)]
    ys = [await ctx.wait_signal("y") for _ in range(2)]
    pair = await ctx.wait_signal("pair")
    empty = await ctx.wait_signal("empty")
    return {"xs": xs, "ys": ys, "pair": pair, "empty": empty}


async def test_wait_signal_buffers_fifo_per_name(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[buffered_signals_wf]):
        handle = await client.start(buffered_signals_wf)
        for name, value in [("x", 1), ("y", "a"), ("x", 2), ("y", "b"), ("x", 3)]:
            await handle.signal(name, value)
        await handle.signal("pair", 1, 2)
        await handle.signal("empty")
        await handle.signal("go")
        result = await handle.result(timeout=20)
    assert result == {"xs": [1, 2, 3], "ys": ["a", "b"], "pair": (1, 2), "empty": None}


@workflow
async def signal_timeout_wf(ctx: WorkflowContext) -> dict[str, Any]:
    try:
        await ctx.wait_signal("never", timeout=0.2)
    except TimeoutError:
        timed_out = True
    else:
        timed_out = False
    got = await ctx.wait_signal("later", timeout=timedelta(seconds=60))
    return {"timed_out": timed_out, "got": got}


async def test_wait_signal_timeout_raises_asyncio_timeout_error(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[signal_timeout_wf]):
        handle = await client.start(signal_timeout_wf)
        await wait_for(lambda: has_event(handle, "TIMER_FIRED"))
        await handle.signal("later", "value")
        result = await handle.result(timeout=20)
    assert result == {"timed_out": True, "got": "value"}


@workflow
async def durable_timeout_error_wf(ctx: WorkflowContext) -> dict[str, bool]:
    out = {}
    try:
        await ctx.wait_signal("never", timeout=0.1)
    except Exception as exc:
        out["wait_signal"] = isinstance(exc, durable.TimeoutError)
    try:
        await ctx.wait_until(lambda: False, timeout=0.1)
    except Exception as exc:
        out["wait_until"] = isinstance(exc, durable.TimeoutError)
    return out


async def test_wait_timeouts_raise_durable_timeout_error(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[durable_timeout_error_wf]):
        result = await client.execute(durable_timeout_error_wf)
    assert result == {"wait_signal": True, "wait_until": True}


# ---------------------------------------------------------------------------- on_signal


@workflow
async def handlers_wf(ctx: WorkflowContext) -> list[Any]:
    log: list[Any] = []

    def on_a(value: int) -> None:
        log.append(("a", value))

    async def on_b(value: int) -> None:
        log.append(("b", value))
        await asyncio.sleep(0)

    def on_pair(x: int, y: str) -> None:
        log.append(("pair", x, y))

    ctx.on_signal("a", on_a)
    ctx.on_signal("b", on_b)
    ctx.on_signal("pair", on_pair)
    await ctx.wait_signal("done")
    return log


async def test_on_signal_sync_and_async_handlers_in_arrival_order(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[handlers_wf]):
        handle = await client.start(handlers_wf)
        await handle.signal("a", 1)
        await handle.signal("b", 1)
        await handle.signal("a", 2)
        await handle.signal("pair", 7, "seven")
        await handle.signal("b", 2)
        await handle.signal("done")
        result = await handle.result(timeout=20)
    assert result == [("a", 1), ("b", 1), ("a", 2), ("pair", 7, "seven"), ("b", 2)]


@workflow
async def late_handler_wf(ctx: WorkflowContext) -> list[int]:
    await ctx.wait_signal("register")
    seen: list[int] = []
    ctx.on_signal("n", seen.append)
    await ctx.wait_until(lambda: len(seen) >= 3)
    return seen


async def test_signals_sent_before_handler_registration_reach_it(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[late_handler_wf]):
        handle = await client.start(late_handler_wf)
        await handle.signal("n", 1)
        await handle.signal("n", 2)
        await handle.signal("register")
        await handle.signal("n", 3)
        assert await handle.result(timeout=20) == [1, 2, 3]


@workflow
async def collect_signals_wf(ctx: WorkflowContext, count: int) -> list[int]:
    seen: list[int] = []
    ctx.on_signal("n", seen.append)
    await ctx.wait_until(lambda: len(seen) >= count)
    return seen


async def test_signals_are_delivered_once_across_a_change_of_worker(
    client: durable.Client,
) -> None:
    async def recorded(count: int) -> bool:
        return (await event_types(handle)).count("SIGNAL_RECEIVED") == count

    async with durable.Worker(client, workflows=[collect_signals_wf]):
        handle = await client.start(collect_signals_wf, 5)
        for n in (1, 2, 3):
            await handle.signal("n", n)
        await wait_for(lambda: recorded(3))
    await handle.signal("n", 4)  # while no worker runs: buffered in the inbox
    # a fresh worker replays signals 1-3 from history, then delivers 4 and 5, each once
    async with durable.Worker(client, workflows=[collect_signals_wf]):
        await handle.signal("n", 5)
        assert await handle.result(timeout=20) == [1, 2, 3, 4, 5]
    assert await recorded(5)


# ---------------------------------------------------------------------------- queries


@workflow
async def counter_wf(ctx: WorkflowContext) -> int:
    state = {"count": 0}

    def inc(by: int) -> None:
        state["count"] += by

    ctx.on_signal("inc", inc)
    ctx.on_query("count", lambda: state["count"])
    ctx.on_query("count_plus", lambda n: state["count"] + n)
    await ctx.wait_signal("stop")
    return state["count"]


async def test_on_query_answers_from_state(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[counter_wf]):
        handle = await client.start(counter_wf)
        assert await handle.query("count") == 0
        await handle.signal("inc", 2)
        await handle.signal("inc", 3)

        async def count_is_5() -> bool:
            return await handle.query("count") == 5

        await wait_for(count_is_5)
        assert await handle.query("count_plus", 10) == 15

        async def both_signals_recorded() -> bool:
            return (await event_types(handle)).count("SIGNAL_RECEIVED") == 2

        await wait_for(both_signals_recorded)
        history_before = await event_types(handle)
        assert await handle.query("count") == 5
        assert await event_types(handle) == history_before  # a query writes no history
        await handle.signal("stop")
        assert await handle.result(timeout=20) == 5
        # a closed workflow is queried by replaying its history
        assert await handle.query("count") == 5


async def test_query_without_handler_raises_query_error(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[counter_wf]):
        handle = await client.start(counter_wf)
        with pytest.raises(durable.QueryError):
            await handle.query("no_such_query")
        await handle.signal("stop")
        await handle.result(timeout=20)


# ---------------------------------------------------------------------------- updates


@workflow
async def cart_wf(ctx: WorkflowContext) -> list[str]:
    items: list[str] = []

    def add(item: str) -> int:
        items.append(item)
        return len(items)

    def validate(item: str) -> None:
        if not item:
            raise ValueError("item must not be empty")

    async def add_later(item: str) -> int:
        await ctx.sleep(0.05)
        items.append(item)
        return len(items)

    ctx.on_update("add", add, validator=validate)
    ctx.on_update("add_later", add_later)
    ctx.on_query("items", lambda: list(items))
    await ctx.wait_signal("checkout")
    return items


async def test_on_update_returns_handler_result(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[cart_wf]):
        handle = await client.start(cart_wf)
        assert await handle.update("add", "apple") == 1
        assert await handle.update("add_later", "pear") == 2  # async handler
        assert await handle.query("items") == ["apple", "pear"]
        await handle.signal("checkout")
        assert await handle.result(timeout=20) == ["apple", "pear"]
    types = await event_types(handle)
    assert types.count("UPDATE_ACCEPTED") == 2
    assert types.count("UPDATE_COMPLETED") == 2


async def test_update_rejected_by_validator_leaves_no_history(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[cart_wf]):
        handle = await client.start(cart_wf)
        assert await handle.update("add", "apple") == 1
        before = [(e.seq, e.type) for e in await handle.history()]
        with pytest.raises(durable.UpdateError) as info:
            await handle.update("add", "")
        assert "must not be empty" in str(info.value)
        with pytest.raises(durable.UpdateError):
            await handle.update("no_such_update", "x")
        assert [(e.seq, e.type) for e in await handle.history()] == before
        assert await handle.query("items") == ["apple"]
        await handle.signal("checkout")
        assert await handle.result(timeout=20) == ["apple"]


@workflow
async def cut_update_wf(ctx: WorkflowContext) -> str:
    handlers: list[asyncio.Task[Any]] = []

    async def slow(item: str) -> str:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        await ctx.wait_signal("never")
        return item

    ctx.on_update("slow", slow)
    await ctx.wait_until(lambda: bool(handlers))
    handlers[0].cancel()  # the workflow cuts the handler off
    return await ctx.wait_signal("finish")


async def test_cancelled_update_handler_fails_its_caller_with_a_cancellation_cause(
    client: durable.Client,
) -> None:
    """As an activity cancelled under a workflow fails with a cancellation as its cause."""
    async with durable.Worker(client, workflows=[cut_update_wf]):
        handle = await client.start(cut_update_wf)
        with pytest.raises(durable.UpdateError) as info:
            await handle.update("slow", "pear", timeout=20)
        await handle.signal("finish", "done")
        assert await handle.result(timeout=20) == "done"
    assert "was cancelled" in str(info.value)
    assert isinstance(info.value.cause, durable.WorkflowCancelledError), repr(info.value.cause)


# ---------------------------------------------------------------------------- wait_until


@workflow
async def wait_until_wf(ctx: WorkflowContext) -> dict[str, Any]:
    state = {"n": 0, "phase": 0, "done": False}

    def inc() -> None:
        state["n"] += 1

    def finish() -> None:
        state["done"] = True

    ctx.on_signal("inc", inc)
    ctx.on_signal("finish", finish)
    ctx.on_query("phase", lambda: state["phase"])
    await ctx.wait_until(lambda: state["n"] >= 3)
    state["phase"] = 1
    try:
        await ctx.wait_until(lambda: state["n"] >= 100, timeout=0.2)
        timed_out = False
    except TimeoutError:
        timed_out = True
    state["phase"] = 2
    await ctx.wait_until(lambda: state["done"], timeout=timedelta(seconds=60))
    return {"n": state["n"], "timed_out": timed_out}


async def test_wait_until_with_and_without_timeout(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[wait_until_wf]):
        handle = await client.start(wait_until_wf)
        for _ in range(3):
            await handle.signal("inc")

        async def phase_2() -> bool:
            return await handle.query("phase") == 2

        await wait_for(phase_2)
        await handle.signal("finish")
        result = await handle.result(timeout=20)
    assert result == {"n": 3, "timed_out": True}


# ---------------------------------------------------------------------------- child workflows


@workflow
async def child_times_ten(ctx: WorkflowContext, x: int) -> int:
    return x * 10


@workflow
async def child_waits_ping(ctx: WorkflowContext) -> int:
    value: int = await ctx.wait_signal("ping")
    return value + 1


@workflow
async def child_forever(ctx: WorkflowContext) -> None:
    await ctx.wait_signal("never")


@workflow
async def child_with_cleanup(ctx: WorkflowContext) -> None:
    try:
        await ctx.wait_signal("never")
    except asyncio.CancelledError:
        await ctx.activity(record, "child cleanup")
        raise


@workflow
async def child_fails(ctx: WorkflowContext) -> None:
    raise ApplicationError("child broke", "detail", type="ChildBroke")


@workflow
async def parent_child_wf(ctx: WorkflowContext) -> int:
    return await ctx.child(child_times_ten, 4) + await ctx.child(child_times_ten, x=1)


@workflow
async def parent_start_child_wf(ctx: WorkflowContext) -> dict[str, Any]:
    handle = ctx.start_child(child_waits_ping)
    await handle.signal("ping", 41)
    return {"result": await handle, "child_id": handle.workflow_id}


@workflow
async def parent_cancels_child_wf(ctx: WorkflowContext) -> dict[str, Any]:
    handle = ctx.start_child(child_forever)
    await ctx.sleep(0.1)
    handle.cancel()
    try:
        await handle
    except ChildWorkflowError as exc:
        return {"cause": type(exc.cause).__name__, "child_id": handle.workflow_id}
    return {"cause": None, "child_id": handle.workflow_id}


@workflow
async def parent_failing_child_wf(ctx: WorkflowContext) -> dict[str, Any]:
    try:
        await ctx.child(child_fails)
    except ChildWorkflowError as exc:
        cause = exc.cause
        assert isinstance(cause, ApplicationError)
        return {"type": cause.type, "message": cause.message, "details": list(cause.details)}
    return {}


@workflow
async def parent_awaits_child_wf(ctx: WorkflowContext) -> None:
    await ctx.child(child_with_cleanup.with_options(id="the-child"))


CHILDREN = [child_times_ten, child_waits_ping, child_forever, child_with_cleanup, child_fails]


async def test_child_returns_result(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[parent_child_wf, *CHILDREN]):
        handle = await client.start(parent_child_wf)
        assert await handle.result(timeout=20) == 50  # (the second child given x by keyword)
    types = await event_types(handle)
    assert "CHILD_SCHEDULED" in types
    assert "CHILD_COMPLETED" in types


async def test_start_child_handle_await_and_signal(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[parent_start_child_wf, *CHILDREN]):
        handle = await client.start(parent_start_child_wf)
        result = await handle.result(timeout=20)
    assert result["result"] == 42
    child = await client.get_handle(result["child_id"]).describe()
    assert child.status == "completed"
    assert child.parent_workflow_id == handle.workflow_id


async def test_start_child_handle_cancel_raises_child_workflow_error(
    client: durable.Client,
) -> None:
    async with durable.Worker(client, workflows=[parent_cancels_child_wf, *CHILDREN]):
        handle = await client.start(parent_cancels_child_wf)
        result = await handle.result(timeout=20)
        assert result["cause"] in ("WorkflowCancelledError", "CancelledError")
        await wait_for(lambda: _closed(client, result["child_id"]))
        assert await status_of(client, result["child_id"]) == "cancelled"


async def _closed(client: durable.Client, workflow_id: str) -> bool:
    return (await client.get_handle(workflow_id).describe()).closed_at is not None


async def test_failing_child_raises_child_workflow_error(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[parent_failing_child_wf, *CHILDREN]):
        result = await client.execute(parent_failing_child_wf)
    assert result == {"type": "ChildBroke", "message": "child broke", "details": ["detail"]}


async def test_cancelling_parent_cancels_awaited_child(client: durable.Client) -> None:
    CALLS.clear()
    async with durable.Worker(
        client, workflows=[parent_awaits_child_wf, *CHILDREN], activities=[record]
    ):
        handle = await client.start(parent_awaits_child_wf)
        child = client.get_handle("the-child")

        async def child_waiting() -> bool:
            try:
                return (
                    await has_event(child, "WORKFLOW_STARTED")
                    and (await child.describe()).status == "running"
                )
            except durable.WorkflowNotFoundError:
                return False

        await wait_for(child_waiting)
        await handle.cancel()
        with pytest.raises(durable.WorkflowCancelledError):
            await handle.result(timeout=20)
        await wait_for(lambda: _closed(client, "the-child"))
        assert await status_of(client, "the-child") == "cancelled"
        assert CALLS == ["child cleanup"]


# ---------------------------------------------------------------------------- determinism


@workflow
async def deterministic_values_wf(ctx: WorkflowContext) -> dict[str, Any]:
    values: dict[str, Any] = {}
    ctx.on_query("values", lambda: values)
    values["now"] = ctx.now()
    values["random"] = ctx.random().random()
    values["randint"] = ctx.random().randint(0, 10**9)
    values["uuid"] = str(ctx.uuid4())
    await ctx.sleep(0.05)
    values["now_after_sleep"] = ctx.now()
    values["uuid2"] = str(ctx.uuid4())
    return values


async def test_now_random_uuid4_identical_across_replay(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[deterministic_values_wf]):
        handle = await client.start(deterministic_values_wf)
        first = await handle.result(timeout=20)
        other = await client.execute(deterministic_values_wf)
    # a fresh worker answers the query by replaying the closed workflow's history
    async with durable.Worker(client, workflows=[deterministic_values_wf]):
        replayed = await handle.query("values")
    assert replayed == first
    assert isinstance(first["now"], datetime)
    assert first["now"].tzinfo is not None
    assert first["now_after_sleep"] - first["now"] >= timedelta(seconds=0.05)
    assert uuid.UUID(first["uuid"]).version == 4
    assert first["uuid"] != first["uuid2"]
    assert other["uuid"] != first["uuid"]  # another workflow gets other random values


SIDE_EFFECT_CALLS: list[int] = []


def _roll() -> int:
    SIDE_EFFECT_CALLS.append(1)
    return 1000 + len(SIDE_EFFECT_CALLS) * 7


@workflow
async def side_effect_wf(ctx: WorkflowContext) -> int:
    value = await ctx.side_effect(_roll)
    await ctx.wait_signal("go")
    return value


async def test_side_effect_runs_once_and_value_is_stable(client: durable.Client) -> None:
    SIDE_EFFECT_CALLS.clear()
    async with durable.Worker(client, workflows=[side_effect_wf]):
        handle = await client.start(side_effect_wf)
        await wait_for(lambda: has_event(handle, "SIDE_EFFECT"))
    recorded = [e for e in await handle.history() if e.type == "SIDE_EFFECT"]
    assert len(recorded) == 1
    # a fresh worker replays the history: fn is not called again, the recorded value is used
    async with durable.Worker(client, workflows=[side_effect_wf]):
        await handle.signal("go")
        result = await handle.result(timeout=20)
    assert SIDE_EFFECT_CALLS == [1]
    assert result == 1007
    assert recorded[0].value == 1007


# ---------------------------------------------------------------------------- patched


@activity
async def old_step() -> str:
    return "old"


@activity
async def new_step() -> str:
    return "new"


@workflow(name="versioned")
async def versioned_v1(ctx: WorkflowContext) -> str:
    result = await ctx.activity(old_step)
    await ctx.wait_signal("go")
    return result


@workflow(name="versioned")
async def versioned_v2(ctx: WorkflowContext) -> str:
    if ctx.patched("use-new-step"):
        result = await ctx.activity(new_step)
    else:
        result = await ctx.activity(old_step)
    await ctx.wait_signal("go")
    return result


@workflow(name="versioned")
async def versioned_v3(ctx: WorkflowContext) -> str:
    ctx.deprecate_patch("use-new-step")
    result = await ctx.activity(new_step)
    await ctx.wait_signal("go")
    return result


STEPS = [old_step, new_step]


async def test_patched_old_run_takes_old_branch_new_run_takes_new(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[versioned_v1], activities=STEPS):
        old = await client.start(versioned_v1, id="old-run")
        await wait_for(lambda: has_event(old, "ACTIVITY_COMPLETED"))
    async with durable.Worker(client, workflows=[versioned_v2], activities=STEPS):
        new = await client.start(versioned_v2, id="new-run")
        await wait_for(lambda: has_event(new, "ACTIVITY_COMPLETED"))
        await old.signal("go")
        await new.signal("go")
        assert await old.result(timeout=20) == "old"
        assert await new.result(timeout=20) == "new"
    assert "PATCH" in await event_types(new)
    assert "PATCH" not in await event_types(old)
    assert (await old.describe()).last_error is None


async def test_deprecate_patch_keeps_patched_runs_replaying(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[versioned_v2], activities=STEPS):
        patched_run = await client.start(versioned_v2, id="patched-run")
        await wait_for(lambda: has_event(patched_run, "ACTIVITY_COMPLETED"))
    async with durable.Worker(client, workflows=[versioned_v3], activities=STEPS):
        fresh = await client.start(versioned_v3, id="fresh-run")
        await wait_for(lambda: has_event(fresh, "ACTIVITY_COMPLETED"))
        await patched_run.signal("go")
        await fresh.signal("go")
        assert await patched_run.result(timeout=20) == "new"
        assert await fresh.result(timeout=20) == "new"
    assert "PATCH" not in await event_types(fresh)
    assert (await patched_run.describe()).last_error is None


# ---------------------------------------------------------------------------- continue_as_new


@workflow
async def continuing_wf(ctx: WorkflowContext, n: int, limit: int) -> dict[str, Any]:
    await ctx.sleep(0.01)
    if n < limit:
        ctx.continue_as_new(n + 1, limit)
    return {"n": n, "run_id": ctx.info.run_id}


async def test_continue_as_new_result_follows_to_final_run(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[continuing_wf]):
        handle = await client.start(continuing_wf, 0, 3, id="can")
        result = await handle.result(timeout=20)
    assert result["n"] == 3
    assert result["run_id"] != handle.run_id
    first = await handle.describe()
    assert first.status == "continued_as_new"
    assert (await handle.history())[-1].type == "WORKFLOW_CONTINUED_AS_NEW"
    latest = client.get_handle("can")
    final = await latest.describe()
    assert final.run_id == result["run_id"]
    assert final.status == "completed"
    history = await latest.history()
    assert [e.type for e in history] == [
        "WORKFLOW_STARTED",
        "TIMER_STARTED",
        "TIMER_FIRED",
        "WORKFLOW_COMPLETED",
    ]
    assert [e.seq for e in history] == [1, 2, 3, 4]
    runs = [d async for d in client.list(workflow_name="continuing_wf")]
    assert len(runs) == 4
    assert sorted(d.status for d in runs) == ["completed"] + ["continued_as_new"] * 3


# ---------------------------------------------------------------------------- info, logger, replaying


@workflow
async def info_wf(ctx: WorkflowContext) -> dict[str, Any]:
    info = ctx.info
    return {
        "workflow_id": info.workflow_id,
        "run_id": info.run_id,
        "workflow_name": info.workflow_name,
        "task_queue": info.task_queue,
        "attempt": info.attempt,
        "started_at": info.started_at,
        "parent_workflow_id": info.parent_workflow_id,
    }


@workflow(name="info-parent", task_queue="info-q")
async def info_parent_wf(ctx: WorkflowContext) -> dict[str, Any]:
    return await ctx.child(info_wf.with_options(id="info-child"))


async def test_ctx_info_fields(client: durable.Client) -> None:
    async with durable.Worker(client, task_queue="info-q", workflows=[info_wf, info_parent_wf]):
        handle = await client.start(info_wf, id="info-1", task_queue="info-q")
        info = await handle.result(timeout=20)
        child_info = await client.execute(info_parent_wf, id="info-p")
    started = (await handle.history())[0]
    assert info == {
        "workflow_id": "info-1",
        "run_id": handle.run_id,
        "workflow_name": "info_wf",
        "task_queue": "info-q",
        "attempt": 1,
        "started_at": started.timestamp,
        "parent_workflow_id": None,
    }
    assert child_info["workflow_id"] == "info-child"
    assert child_info["parent_workflow_id"] == "info-p"
    assert child_info["task_queue"] == "info-q"


REPLAY_FLAGS: list[tuple[str, bool]] = []


@workflow
async def logging_wf(ctx: WorkflowContext) -> str:
    REPLAY_FLAGS.append(("before", ctx.is_replaying))
    ctx.logger.info("marker-before-signal")
    await ctx.wait_signal("go")
    REPLAY_FLAGS.append(("after", ctx.is_replaying))
    ctx.logger.info("marker-after-signal")
    return "done"


@workflow
async def logging_activity_wf(ctx: WorkflowContext) -> str:
    ctx.on_query("ok", lambda: True)
    REPLAY_FLAGS.append(("before", ctx.is_replaying))
    ctx.logger.info("marker-before-activity")
    await ctx.activity(double, 1)
    REPLAY_FLAGS.append(("after", ctx.is_replaying))
    ctx.logger.info("marker-after-activity")
    return "done"


def _logged(caplog: pytest.LogCaptureFixture, marker: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if marker in r.getMessage()]


async def test_logger_silent_and_is_replaying_true_while_replaying_history(
    client: durable.Client, caplog: pytest.LogCaptureFixture
) -> None:
    REPLAY_FLAGS.clear()
    caplog.set_level(logging.INFO)
    async with durable.Worker(client, workflows=[logging_activity_wf], activities=[double]):
        handle = await client.start(logging_activity_wf, id="logging-1")
        assert await handle.result(timeout=20) == "done"
        assert REPLAY_FLAGS == [("before", False), ("after", False)]
        assert len(_logged(caplog, "marker-before-activity")) == 1
        assert len(_logged(caplog, "marker-after-activity")) == 1
        record_ = _logged(caplog, "marker-before-activity")[0]
        assert "logging-1" in record_.getMessage() or getattr(record_, "workflow_id", None) == (
            "logging-1"
        )
        # a query on the closed workflow replays its whole history: silent, is_replaying True
        assert await handle.query("ok") is True
    assert REPLAY_FLAGS[2:] == [("before", True), ("after", True)]
    assert len(_logged(caplog, "marker-before-activity")) == 1
    assert len(_logged(caplog, "marker-after-activity")) == 1


async def test_logger_silent_when_worker_resumes_workflow_from_history(
    client: durable.Client, caplog: pytest.LogCaptureFixture
) -> None:
    REPLAY_FLAGS.clear()
    caplog.set_level(logging.INFO)
    async with durable.Worker(client, workflows=[logging_wf]):
        handle = await client.start(logging_wf, id="logging-2")
        await wait_for(lambda: REPLAY_FLAGS)
        await wait_for(lambda: _logged(caplog, "marker-before-signal"))
    # the second worker replays the history up to the signal, then runs live
    async with durable.Worker(client, workflows=[logging_wf]):
        await handle.signal("go")
        assert await handle.result(timeout=20) == "done"
    assert len(_logged(caplog, "marker-before-signal")) == 1
    assert len(_logged(caplog, "marker-after-signal")) == 1
    assert REPLAY_FLAGS == [("before", False), ("before", True), ("after", False)]


@workflow
async def attributes_wf(ctx: WorkflowContext, team: str) -> None:
    ctx.set_attributes(team=team, priority=2)
    await ctx.wait_signal("stop")


async def test_set_attributes_searchable_with_list(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[attributes_wf]):
        red = await client.start(attributes_wf, "red", id="attr-red")
        blue = await client.start(attributes_wf, "blue", id="attr-blue")

        async def both_set() -> bool:
            return all(["team" in (await h.describe()).attributes for h in (red, blue)])

        await wait_for(both_set)
        assert (await red.describe()).attributes == {"team": "red", "priority": 2}
        reds = [d.workflow_id async for d in client.list(attributes={"team": "red"})]
        both = [d.workflow_id async for d in client.list(attributes={"priority": 2})]
        none = [d.workflow_id async for d in client.list(attributes={"team": "green"})]
        assert reds == ["attr-red"]
        assert sorted(both) == ["attr-blue", "attr-red"]
        assert none == []
        for h in (red, blue):
            await h.signal("stop")
            await h.result(timeout=20)


# ---------------------------------------------------------------------------- asyncio inside workflows


@workflow
async def gather_wf(ctx: WorkflowContext) -> list[Any]:
    ctx.on_query("ok", lambda: True)
    return list(
        await asyncio.gather(
            ctx.activity(double, 1),
            ctx.activity(double, 2),
            ctx.sleep(0.05),
            ctx.activity(shout, "x"),
        )
    )


async def test_asyncio_gather(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[gather_wf], activities=[double, shout]):
        handle = await client.start(gather_wf)
        assert await handle.result(timeout=20) == [2, 4, None, "X"]
        assert await handle.query("ok") is True  # replaying the history is deterministic


@workflow
async def wait_wf(ctx: WorkflowContext) -> dict[str, Any]:
    ctx.on_query("ok", lambda: True)
    fast = asyncio.ensure_future(ctx.activity(double, 5))
    slow = asyncio.ensure_future(ctx.wait_signal("never"))
    done, pending = await asyncio.wait({fast, slow}, return_when=asyncio.FIRST_COMPLETED)
    result = {"fast_done": fast in done, "slow_pending": slow in pending, "value": fast.result()}
    slow.cancel()
    done_all, pending_all = await asyncio.wait(
        [asyncio.ensure_future(ctx.activity(double, 1)), asyncio.ensure_future(ctx.sleep(0.05))]
    )
    result["all_done"] = len(done_all) == 2 and not pending_all
    return result


async def test_asyncio_wait(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[wait_wf], activities=[double]):
        handle = await client.start(wait_wf)
        result = await handle.result(timeout=20)
        assert await handle.query("ok") is True
    assert result == {"fast_done": True, "slow_pending": True, "value": 10, "all_done": True}


@workflow
async def wait_for_wf(ctx: WorkflowContext) -> dict[str, Any]:
    ctx.on_query("ok", lambda: True)
    try:
        await asyncio.wait_for(ctx.wait_signal("never"), 0.2)
        timed_out = False
    except TimeoutError:
        timed_out = True
    value = await asyncio.wait_for(ctx.activity(double, 3), 60)
    return {"timed_out": timed_out, "value": value}


async def test_asyncio_wait_for(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[wait_for_wf], activities=[double]):
        handle = await client.start(wait_for_wf)
        assert await handle.result(timeout=20) == {"timed_out": True, "value": 6}
        assert await handle.query("ok") is True
    assert "TIMER_FIRED" in await event_types(handle)


@workflow
async def timeout_cm_wf(ctx: WorkflowContext) -> dict[str, Any]:
    ctx.on_query("ok", lambda: True)
    try:
        async with asyncio.timeout(0.2):
            await ctx.sleep(3600)
        timed_out = False
    except TimeoutError:
        timed_out = True
    async with asyncio.timeout(60):
        value = await ctx.activity(double, 7)
    return {"timed_out": timed_out, "value": value}


async def test_asyncio_timeout(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[timeout_cm_wf], activities=[double]):
        handle = await client.start(timeout_cm_wf)
        assert await handle.result(timeout=20) == {"timed_out": True, "value": 14}
        assert await handle.query("ok") is True
    assert "TIMER_CANCELLED" in await event_types(handle)  # the 3600 s sleep was cancelled


@workflow
async def task_cancel_wf(ctx: WorkflowContext) -> dict[str, Any]:
    ctx.on_query("ok", lambda: True)
    log: list[str] = []

    async def sleeper() -> None:
        try:
            await ctx.sleep(3600)
        except asyncio.CancelledError:
            log.append("sleeper cancelled")
            raise

    task = asyncio.create_task(sleeper())
    await ctx.sleep(0.05)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        log.append("awaiter saw CancelledError")
    return {"log": log, "cancelled": task.cancelled()}


async def test_task_cancellation_inside_workflow(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[task_cancel_wf]):
        handle = await client.start(task_cancel_wf)
        result = await handle.result(timeout=20)
        assert await handle.query("ok") is True
    assert result == {
        "log": ["sleeper cancelled", "awaiter saw CancelledError"],
        "cancelled": True,
    }
    assert "TIMER_CANCELLED" in await event_types(handle)


# ---------------------------------------------------------------------------- workflow cancellation


@workflow
async def compensating_wf(ctx: WorkflowContext) -> str:
    await ctx.activity(record, "booked")
    try:
        await ctx.wait_signal("never")
    except asyncio.CancelledError:
        await ctx.activity(record, "compensated")
        raise
    return "not cancelled"


async def test_cancelled_workflow_runs_compensation(client: durable.Client) -> None:
    CALLS.clear()
    async with durable.Worker(client, workflows=[compensating_wf], activities=[record]):
        handle = await client.start(compensating_wf)
        await wait_for(lambda: CALLS == ["booked"])
        await handle.cancel(reason="customer changed their mind")
        with pytest.raises(durable.WorkflowCancelledError):
            await handle.result(timeout=20)
    assert CALLS == ["booked", "compensated"]
    assert (await handle.describe()).status == "cancelled"
    types = await event_types(handle)
    assert "CANCEL_REQUESTED" in types
    assert types[-1] == "WORKFLOW_CANCELLED"


# ---------------------------------------------------------------------------- failures


@workflow
async def raising_wf(ctx: WorkflowContext) -> None:
    raise ApplicationError("order invalid", "order-7", 3, type="InvalidOrder")


async def test_workflow_application_error_becomes_workflow_failed_error(
    client: durable.Client,
) -> None:
    async with durable.Worker(client, workflows=[raising_wf]):
        handle = await client.start(raising_wf)
        with pytest.raises(durable.WorkflowFailedError) as info:
            await handle.result(timeout=20)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "InvalidOrder"
    assert cause.message == "order invalid"
    assert cause.details == ("order-7", 3)
    assert (await handle.describe()).status == "failed"


@workflow
async def direct_call_wf(ctx: WorkflowContext) -> Any:
    return shout("direct")


@workflow
async def direct_call_caught_wf(ctx: WorkflowContext) -> dict[str, Any]:
    try:
        shout("direct")
    except durable.WorkflowError as exc:
        return {"caught": True, "message": str(exc)}
    return {"caught": False}


async def test_calling_activity_directly_inside_workflow_is_workflow_error(
    client: durable.Client,
) -> None:
    assert shout("plain") == "PLAIN"  # outside a workflow: the plain function
    assert await double(4) == 8
    async with durable.Worker(
        client, workflows=[direct_call_wf, direct_call_caught_wf], activities=[shout]
    ):
        caught = await client.execute(direct_call_caught_wf)
        handle = await client.start(direct_call_wf)
        with pytest.raises(durable.WorkflowFailedError) as info:
            await handle.result(timeout=20)
    assert caught["caught"] is True
    assert "ctx.activity" in caught["message"]
    cause = info.value.cause
    assert isinstance(cause, durable.WorkflowError) or getattr(cause, "type", None) == (
        "WorkflowError"
    )
    assert "ctx.activity" in str(cause)


@workflow
async def io_wf(ctx: WorkflowContext) -> str:
    try:
        await asyncio.open_connection("127.0.0.1", 9)
    except durable.WorkflowError:
        return "refused"
    except OSError as exc:
        return f"tried real I/O: {exc!r}"
    return "connected"


async def test_asyncio_io_inside_workflow_is_refused(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[io_wf]):
        assert await client.execute(io_wf) == "refused"


async def test_activity_error_inside_workflow_has_cause(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[activity_error_wf], activities=[always_fails]):
        result = await client.execute(activity_error_wf)
    assert result == {"type": "Nope", "message": "no way", "activity": "always_fails"}


@activity(retry=RetryPolicy(maximum_attempts=1))
async def always_fails() -> None:
    raise ApplicationError("no way", type="Nope")


@workflow
async def activity_error_wf(ctx: WorkflowContext) -> dict[str, Any]:
    try:
        await ctx.activity(always_fails)
    except ActivityError as exc:
        cause = exc.cause
        assert isinstance(cause, ApplicationError)
        return {"type": cause.type, "message": cause.message, "activity": exc.activity_name}
    return {}


CLEANED: list[str] = []


@activity
async def clean_up(label: str) -> None:
    CLEANED.append(label)


@workflow
async def cleans_up_wf(ctx: WorkflowContext, label: str) -> None:
    try:
        await ctx.wait_signal("never")
    finally:
        ctx.logger.info("cleaning up %s", label)
        await ctx.activity(clean_up, label)  # a finally block that awaits


def _cleanup_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = [r.getMessage() for r in caplog.records]
    return [line.split("] ", 1)[-1] for line in lines if "cleaning up" in line]


async def _stepped(handle: durable.WorkflowHandle[Any]) -> bool:
    return len(await handle.history()) >= 2


async def test_a_run_let_go_from_memory_closes_its_code_quietly_and_resumes_from_history(
    client: durable.Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A run dropped from the worker's cache (or left there as the worker stops) has its
    suspended code closed at once: a finally block that awaits neither prints "coroutine
    ignored GeneratorExit" when the garbage collector gets to it nor starts or logs
    anything, and the run, replayed from history at its next step, runs that block for
    real."""
    caplog.set_level(logging.INFO, logger="durable")
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    CLEANED.clear()
    async with durable.Worker(
        client,
        task_queue="let-go",
        workflows=[cleans_up_wf],
        activities=[clean_up],
        max_cached_workflows=1,
    ):
        first = await client.start(cleans_up_wf, "first", task_queue="let-go")
        await wait_for(lambda: _stepped(first))
        second = await client.start(cleans_up_wf, "second", task_queue="let-go")
        await wait_for(lambda: _stepped(second))  # the first is let go of to make room
        gc.collect()
        assert (unraisable, CLEANED, _cleanup_lines(caplog)) == ([], [], [])
        await first.cancel()
        with pytest.raises(durable.WorkflowCancelledError):
            await first.result(timeout=20)
        assert CLEANED == ["first"] and _cleanup_lines(caplog) == ["cleaning up first"]
        assert [e.type for e in await first.history()].count("ACTIVITY_SCHEDULED") == 1
    gc.collect()
    assert unraisable == []
    await second.terminate()


# ------------------------------------------------------- results that do not fit their annotation


@workflow(name="point_result_wf")
async def unfit_result_wf(ctx: WorkflowContext) -> Point:
    return {"x": 1, "y": "two"}  # type: ignore[return-value]  # the bug: not a Point


@workflow(name="point_result_wf")
async def fixed_result_wf(ctx: WorkflowContext) -> Point:
    return Point(1, 2)


async def test_workflow_result_that_does_not_fit_its_annotation_fails_the_workflow_task(
    client: durable.Client,
) -> None:
    """Nothing unreadable is recorded: the run stays open, saying which field does not fit,
    and the fixed code, once deployed, completes it."""
    async with durable.Worker(client, workflows=[unfit_result_wf]):
        handle = await client.start(unfit_result_wf)

        async def last_error() -> str | None:
            return (await handle.describe()).last_error

        error = await wait_for(last_error)
    assert error.startswith("PayloadError: ") and "'point_result_wf'" in error, error
    assert "result.y: expected int, got str 'two'" in error, error
    assert (await handle.describe()).status == "running"
    assert "WORKFLOW_COMPLETED" not in await event_types(handle)
    async with durable.Worker(client, workflows=[fixed_result_wf]):
        assert await handle.result(timeout=20) == Point(1, 2)


@activity(retry=RetryPolicy(initial_interval=timedelta(milliseconds=20), maximum_attempts=2))
async def unfit_point() -> Point:
    return {"x": 1, "y": "two"}  # type: ignore[return-value]  # the bug: not a Point


@workflow
async def unfit_activity_result_wf(ctx: WorkflowContext) -> str:
    try:
        await ctx.activity(unfit_point)
    except ActivityError as exc:
        return f"attempt {exc.attempt}: {exc.cause}"
    return "completed"


async def test_activity_result_that_does_not_fit_its_annotation_fails_the_attempt(
    client: durable.Client,
) -> None:
    """Each attempt fails naming the field, and is retried as any failed attempt is (a fixed
    deploy returns what fits); the workflow never receives the unfit value."""
    async with durable.Worker(
        client, workflows=[unfit_activity_result_wf], activities=[unfit_point]
    ):
        result = await client.execute(unfit_activity_result_wf)
    assert result.startswith("attempt 2: "), result
    assert "'unfit_point'" in result and "result.y: expected int, got str 'two'" in result
