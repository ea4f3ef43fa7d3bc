"""The defects a peer's test suite found in the core vocabulary (issue "correctness"), one
test each, on a real worker and a real Postgres database. Each test failed on the engine of
2026-11-22 (session 5) and names the defect it covers."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

import durable
from durable import (
    ActivityError,
    ApplicationError,
    RetryPolicy,
    WorkflowContext,
    activity,
    activity_context,
    workflow,
)
from durable._events import Event, EventType
from durable._replayer import WorkflowInstance
from durable._serialization import encode_args

from .conftest import wait_for

E = EventType
FAST = RetryPolicy(initial_interval=timedelta(milliseconds=50))


async def event_types(handle: durable.WorkflowHandle[Any]) -> list[str]:
    return [e.type for e in await handle.history()]


async def inbox_rows(client: durable.Client, workflow_id: str) -> int:
    count: int = await client.store.pool.fetchval(
        "SELECT count(*) FROM durable.inbox WHERE workflow_id = $1", workflow_id
    )
    return count


# ------------------------ 1. late results of timed-out attempts

LATE: list[tuple[int, bool]] = []


@activity(
    start_to_close_timeout=timedelta(milliseconds=300),
    retry=RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_attempts=2),
)
async def swallows_its_timeout() -> str:
    context = activity_context()
    if context.info.attempt == 1:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            LATE.append((context.info.attempt, context.is_cancelled()))
            return "late"
    return f"attempt {context.info.attempt}"


@workflow
async def late_result_wf(ctx: WorkflowContext) -> str:
    return await ctx.activity(swallows_its_timeout)


async def test_a_timed_out_attempt_that_returns_anyway_is_retried_not_recorded(
    client: durable.Client,
) -> None:
    """Defect 1: the late "late" of attempt 1 was recorded as the activity's result."""
    LATE.clear()
    async with durable.Worker(
        client, workflows=[late_result_wf], activities=[swallows_its_timeout]
    ):
        assert await client.execute(late_result_wf) == "attempt 2"
    assert LATE == [(1, True)]  # the attempt saw its cancellation through is_cancelled() too


# ------------------------ 2. handles pinned to a run


@workflow
async def mailbox_wf(ctx: WorkflowContext) -> list[str]:
    got: list[str] = []
    ctx.on_signal("add", got.append)
    ctx.on_query("got", lambda: list(got))
    ctx.on_update("add_now", lambda item: got.append(item) or len(got))
    await ctx.wait_until(lambda: "stop" in got)
    return got


async def test_a_handle_pinned_to_a_closed_run_never_reaches_a_newer_run(
    client: durable.Client,
) -> None:
    """Defect 2: signal/update/query/cancel of a handle with a run id reached the latest run."""
    async with durable.Worker(client, workflows=[mailbox_wf]):
        first = await client.start(mailbox_wf, id="pinned")
        await first.signal("add", "stop")
        assert await first.result(timeout=20) == ["stop"]
        second = await client.start(mailbox_wf, id="pinned")
        for handle in (first, client.get_handle("pinned", run_id=first.run_id)):
            with pytest.raises(durable.WorkflowNotFoundError, match="closed"):
                await handle.signal("add", "lost")
            with pytest.raises(durable.WorkflowNotFoundError, match="closed"):
                await handle.update("add_now", "lost", timeout=10)
            with pytest.raises(durable.WorkflowNotFoundError, match="closed"):
                await handle.cancel()
            with pytest.raises(durable.WorkflowNotFoundError, match="closed"):
                await handle.terminate()
            assert await handle.query("got") == ["stop"]  # answered by the run it is pinned to
        assert await second.query("got") == []
        assert (await second.describe()).status == "running"
        await second.signal("add", "stop")
        assert await second.result(timeout=20) == ["stop"]


@workflow
async def renewing_mailbox_wf(ctx: WorkflowContext, generation: int) -> list[str]:
    got: list[str] = []
    ctx.on_signal("add", got.append)
    ctx.on_query("generation", lambda: generation)
    await ctx.wait_until(lambda: bool(got))
    if got != ["stop"]:
        ctx.continue_as_new(generation + 1)
    return [f"generation {generation}"]


async def test_a_pinned_handle_follows_its_run_across_continue_as_new(
    client: durable.Client,
) -> None:
    async with durable.Worker(client, workflows=[renewing_mailbox_wf]):
        handle = await client.start(renewing_mailbox_wf, 0, id="renewing")
        await handle.signal("add", "again")
        await wait_for(lambda: client.get_handle("renewing").query("generation"))
        assert await handle.query("generation") == 1
        await handle.signal("add", "stop")  # reaches generation 1, which its run became
        assert await handle.result(timeout=20) == ["generation 1"]


# ------------------------ 3. messages accepted before a run closes


def releasing_on_a(ctx: WorkflowContext, got: list[str]) -> None:
    """ "a" releases the code; "b" is recorded where it reaches its handler (in the attribute
    "b"), since the code that returned on "a" cannot show it in its result."""
    ctx.on_signal("a", lambda: got.append("a"))
    ctx.on_signal("b", lambda: ctx.set_attributes(b=True))


@workflow
async def releases_on_a_wf(ctx: WorkflowContext) -> list[str]:
    got: list[str] = []
    releasing_on_a(ctx, got)
    await ctx.wait_until(lambda: "a" in got)
    return got


async def test_signals_queued_together_are_all_delivered_before_the_run_closes(
    client: durable.Client,
) -> None:
    """Defect 3: "b", accepted before the step that closed the run, was dropped."""
    handle = await client.start(releases_on_a_wf)
    await handle.signal("a")
    await handle.signal("b")
    async with durable.Worker(client, workflows=[releases_on_a_wf]):
        assert await handle.result(timeout=20) == ["a"]  # it returned as "a" came
    assert (await handle.describe()).attributes == {"b": True}


async def test_a_cancel_queued_with_the_releasing_signal_acts_in_arrival_order(
    client: durable.Client,
) -> None:
    """Both reach the run in one step (no worker ran while they came), each in its turn: a
    cancel before "a" cancels the code; one after it finds the code returned (as it would
    had it come a moment later), and is recorded all the same."""
    for cancel_first in (True, False):
        async with durable.Worker(client, workflows=[releases_on_a_wf]):
            handle = await client.start(releases_on_a_wf)
            await wait_for(lambda h=handle: h.query("__durable_waits"))  # its first step ran
        if cancel_first:
            await handle.cancel()
        await handle.signal("a")
        if not cancel_first:
            await handle.cancel()
        async with durable.Worker(client, workflows=[releases_on_a_wf]):
            if cancel_first:
                with pytest.raises(durable.WorkflowCancelledError):
                    await handle.result(timeout=20)
            else:
                assert await handle.result(timeout=20) == ["a"]
        if not cancel_first:
            kinds = await event_types(handle)
            assert kinds[-3:] == ["SIGNAL_RECEIVED", "CANCEL_REQUESTED", "WORKFLOW_COMPLETED"]


@workflow
async def registers_update_and_returns_wf(ctx: WorkflowContext) -> str:
    state = {"n": 0}

    def bump(by: int) -> int:
        state["n"] += by
        return state["n"]

    ctx.on_update("bump", bump)
    return "done"


async def test_an_update_sent_before_the_first_step_completes(client: durable.Client) -> None:
    handle = await client.start(registers_update_and_returns_wf)
    update = asyncio.create_task(handle.update("bump", 2, timeout=20))
    await wait_for(lambda: inbox_rows(client, handle.workflow_id))
    async with durable.Worker(client, workflows=[registers_update_and_returns_wf]):
        assert await update == 2
        assert await handle.result(timeout=20) == "done"


CLOSING = threading.Event()
LATE_SIGNAL_SENT = threading.Event()


def send_b_from_another_thread(dsn: str, workflow_id: str) -> None:
    async def send() -> None:
        async with await durable.Client.connect(dsn) as other:
            await other.get_handle(workflow_id).signal("b")

    CLOSING.wait(20)
    asyncio.run(send())
    LATE_SIGNAL_SENT.set()


@workflow
async def closes_while_b_arrives_wf(ctx: WorkflowContext) -> list[str]:
    got: list[str] = []
    releasing_on_a(ctx, got)
    await ctx.wait_until(lambda: "a" in got)
    if not ctx.is_replaying:
        CLOSING.set()  # the step that closes the run is running: "b" is sent now
        LATE_SIGNAL_SENT.wait(20)  # blocks the worker's loop: "b" lands before the commit
    return got


async def test_a_signal_accepted_while_the_closing_step_runs_is_delivered(
    client: durable.Client, dsn: str
) -> None:
    CLOSING.clear()
    LATE_SIGNAL_SENT.clear()
    handle = await client.start(closes_while_b_arrives_wf)
    sender = threading.Thread(target=send_b_from_another_thread, args=(dsn, handle.workflow_id))
    sender.start()
    try:
        async with durable.Worker(client, workflows=[closes_while_b_arrives_wf]):
            await handle.signal("a")
            assert await handle.result(timeout=30) == ["a"]
        assert (await handle.describe()).attributes == {"b": True}
    finally:
        CLOSING.set()
        sender.join(30)


# ------------------------ 4. a query handler that continues as new


@workflow
async def query_continues_wf(ctx: WorkflowContext) -> str:
    def naughty() -> str:
        ctx.continue_as_new()

    ctx.on_query("naughty", naughty)
    ctx.on_query("fine", lambda: "fine")
    await ctx.wait_signal("finish")
    return "finished"


async def test_continue_as_new_in_a_query_handler_fails_only_that_query(
    client: durable.Client,
) -> None:
    """Defect 4: the query timed out and the worker died of the internal _ContinueAsNew."""
    async with durable.Worker(client, workflows=[query_continues_wf]):
        handle = await client.start(query_continues_wf)
        with pytest.raises(durable.QueryError, match="continue_as_new"):
            await handle.query("naughty", timeout=10)
        assert await handle.query("fine", timeout=10) == "fine"
        await handle.signal("finish")
        assert await handle.result(timeout=20) == "finished"
    assert "WORKFLOW_CONTINUED_AS_NEW" not in await event_types(handle)


@workflow
async def query_commands_wf(ctx: WorkflowContext) -> str:
    def schedules() -> str:
        ctx.set_attributes(sneaky=True)
        return "scheduled"

    ctx.on_query("schedules", schedules)
    await ctx.wait_signal("finish")
    return "finished"


async def test_a_query_handler_cannot_change_the_workflow(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[query_commands_wf]):
        handle = await client.start(query_commands_wf)
        with pytest.raises(durable.QueryError, match="must not"):
            await handle.query("schedules", timeout=10)
        await handle.signal("finish")
        assert await handle.result(timeout=20) == "finished"
    assert "ATTRIBUTES_SET" not in await event_types(handle)


# ------------------------ 5. tasks made by synchronous handlers


@activity
async def echo(value: str) -> str:
    return value


@workflow
async def handler_task_wf(ctx: WorkflowContext) -> str:
    done: list[str] = []

    async def job() -> None:
        await asyncio.sleep(0.2)  # a durable timer, on the workflow's own loop
        done.append(await ctx.activity(echo, "from the handler's task"))

    def on_go() -> None:
        asyncio.create_task(job())  # noqa: RUF006 (the scenario: a task nobody keeps)

    ctx.on_signal("go", on_go)
    await ctx.wait_until(lambda: bool(done))
    return done[0]


async def test_tasks_created_by_a_sync_signal_handler_run_on_the_workflow_loop(
    client: durable.Client,
) -> None:
    """Defect 5: the task ran on the worker's loop (a real sleep; a future of another loop)."""
    async with durable.Worker(client, workflows=[handler_task_wf], activities=[echo]):
        handle = await client.start(handler_task_wf)
        await handle.signal("go")
        assert await handle.result(timeout=20) == "from the handler's task"
    types = await event_types(handle)
    assert "TIMER_STARTED" in types and "ACTIVITY_SCHEDULED" in types


# ------------------------ 6. asyncio.wait / as_completed

TAGS = [activity(name=f"tag{i}")(echo.fn) for i in range(6)]


@workflow
async def wait_order_wf(ctx: WorkflowContext) -> list[str]:
    tasks = [asyncio.ensure_future(asyncio.sleep(0.05)) for _ in TAGS]
    done, _ = await asyncio.wait(tasks)
    order = [tasks.index(task) for task in done]  # the set's own iteration order
    for index in order:
        await ctx.activity(TAGS[index], str(index))
    finished = []
    for future in asyncio.as_completed([ctx.activity(echo, str(i)) for i in range(4)]):
        finished.append(await future)
    for value in finished:
        await ctx.activity(TAGS[int(value)], value)
    return [str(i) for i in order] + finished


def replay(definition: Any, history: list[Event], run_id: str = "run") -> None:
    # the run id seeds the loop's task hashes: a replay must use the run's own
    instance = WorkflowInstance(definition, "id", run_id, history)
    instance.replay()


async def test_asyncio_wait_and_as_completed_replay_in_the_recorded_order(
    client: durable.Client,
) -> None:
    """Defect 6: iterating asyncio.wait's done set replayed in another order (by address)."""
    async with durable.Worker(client, workflows=[wait_order_wf], activities=[echo, *TAGS]):
        handle = await client.start(wait_order_wf)
        await handle.result(timeout=30)
    history = await client.store.load_history(handle.workflow_id, str(handle.run_id))
    ballast = []
    for size in range(40):  # replays with other objects at other addresses
        ballast.append([object() for _ in range(size * 7)])
        replay(wait_order_wf, history, str(handle.run_id))
        gc.collect()


# ------------------------ 7. two outcomes for one command


async def test_a_worker_whose_lease_lapsed_claims_its_runs_once(client: durable.Client) -> None:
    """Defect 7: after an outage longer than its lease, a worker matched its own runs twice
    in the claim (its own and a lapsed worker's) and delivered their messages twice."""
    store = client.store
    worker_id = "00000000-0000-0000-0000-000000000007"
    await store.register_worker(worker_id, "default", "test", 10.0, ["mailbox_wf"])
    handle = await client.start(mailbox_wf)
    (task,) = await store.claim_workflow_tasks("default", worker_id, ["mailbox_wf"], [], 10)
    await store.pool.execute(
        "UPDATE durable.workers SET expires_at = now() - interval '1 second' WHERE worker_id = $1",
        worker_id,
    )
    await store.pool.execute(
        "UPDATE durable.workflows SET ready_at = now() WHERE workflow_id = $1",
        handle.workflow_id,
    )
    await handle.signal("add", "once")
    tasks = await store.claim_workflow_tasks("default", worker_id, ["mailbox_wf"], [], 10)
    assert [t.run_id for t in tasks] == [task.run_id]
    assert [m.type for m in tasks[0].messages] == [E.SIGNAL_RECEIVED]


@workflow
async def sleeper_wf(ctx: WorkflowContext) -> str:
    await ctx.sleep(1)
    return "woke"


def test_replay_refuses_a_history_with_two_outcomes_for_one_command() -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    started = {"name": "sleeper_wf", "task_queue": "default", "args": encode_args((), {})}
    history = [
        Event(1, E.WORKFLOW_STARTED, now, started),
        Event(2, E.TIMER_STARTED, now, {"fire_at": now.timestamp() + 1}, ends_step=True),
        Event(3, E.TIMER_FIRED, now, {"started": 2}),
        Event(4, E.TIMER_FIRED, now, {"started": 2}),
        Event(5, E.WORKFLOW_COMPLETED, now, {"result": b"\xa4woke"}, ends_step=True),
    ]
    with pytest.raises(durable.NondeterminismError, match="corrupt"):
        replay(sleeper_wf, history)


# ------------------------ 8. patched() on an old run resumed by new code


@workflow(name="patch_point")
async def patch_point_v1(ctx: WorkflowContext) -> str:
    got: list[str] = []
    ctx.on_signal("go", got.append)
    await ctx.wait_until(lambda: bool(got))
    return "old"


@workflow(name="patch_point")
async def patch_point_v2(ctx: WorkflowContext) -> str:
    branch = "new" if ctx.patched("p") else "old"
    got: list[str] = []
    ctx.on_signal("go", got.append)
    await ctx.wait_until(lambda: bool(got))
    return branch


async def test_patched_is_false_for_a_run_that_passed_the_patch_point_with_old_code(
    client: durable.Client,
) -> None:
    """Defect 8: the end of recorded history was taken for live code."""
    async with durable.Worker(client, workflows=[patch_point_v1]):
        old = await client.start(patch_point_v1)
        await wait_for(lambda: _running(old))
        await asyncio.sleep(0.5)  # its first step commits: it waits for "go" with the old code
    async with durable.Worker(client, workflows=[patch_point_v2]):
        new = await client.start(patch_point_v2)
        await old.signal("go", "x")
        await new.signal("go", "x")
        assert await old.result(timeout=20) == "old"
        assert await new.result(timeout=20) == "new"


@workflow(name="added_command")
async def added_command_v1(ctx: WorkflowContext) -> str:
    await ctx.wait_signal("go")
    return "v1"


@workflow(name="added_command")
async def added_command_v2(ctx: WorkflowContext) -> str:
    await ctx.activity(echo, "new")  # added before the point where running runs wait
    await ctx.wait_signal("go")
    return "v2"


async def test_a_command_added_before_an_old_runs_wait_point_is_nondeterminism(
    client: durable.Client,
) -> None:
    async with durable.Worker(client, workflows=[added_command_v1]):
        old = await client.start(added_command_v1)
        await wait_for(lambda: _running(old))
        await asyncio.sleep(0.5)
    async with durable.Worker(client, workflows=[added_command_v2], activities=[echo]):
        await old.signal("go")
        await wait_for(lambda: _last_error(old))
        assert "NondeterminismError" in str(await _last_error(old))
    assert "ACTIVITY_SCHEDULED" not in await event_types(old)


async def _running(handle: durable.WorkflowHandle[Any]) -> bool:
    return (await handle.describe()).status == "running"


async def _last_error(handle: durable.WorkflowHandle[Any]) -> str | None:
    return (await handle.describe()).last_error


# ------------------------ 9. cancelling a parent of an unstarted child


@workflow(task_queue="nobody-serves-this")
async def never_started_child(ctx: WorkflowContext) -> str:
    return "unreachable"


@workflow
async def parent_of_unstarted_wf(ctx: WorkflowContext) -> str:
    try:
        await ctx.child(never_started_child.with_options(id="unstarted-child"))
    except durable.ChildWorkflowError as exc:
        return f"child: {exc}"
    return "child completed"


async def test_cancelling_a_parent_whose_child_never_started_does_not_hang(
    client: durable.Client,
) -> None:
    """Defect 9: the parent waited for its child until its execution timeout."""
    async with durable.Worker(client, workflows=[parent_of_unstarted_wf]):
        parent = await client.start(parent_of_unstarted_wf)
        await wait_for(lambda: _exists(client, "unstarted-child"))
        await parent.cancel()
        with pytest.raises(durable.WorkflowCancelledError):
            await parent.result(timeout=20)
    assert (await client.get_handle("unstarted-child").describe()).status == "cancelled"


async def _exists(client: durable.Client, workflow_id: str) -> bool:
    try:
        await client.get_handle(workflow_id).describe()
    except durable.WorkflowNotFoundError:
        return False
    return True


# ------------------------ 10. an update handler cancelled


@workflow
async def cancelled_update_wf(ctx: WorkflowContext) -> str:
    async def gives_up() -> str:
        raise asyncio.CancelledError()

    ctx.on_update("gives_up", gives_up)
    await ctx.wait_signal("finish")
    return "finished"


async def test_an_update_handler_ending_in_cancelled_error_fails_the_update(
    client: durable.Client,
) -> None:
    """Defect 10: the update never completed and the caller timed out."""
    async with durable.Worker(client, workflows=[cancelled_update_wf]):
        handle = await client.start(cancelled_update_wf)
        with pytest.raises(durable.UpdateError, match="cancelled"):
            await handle.update("gives_up", timeout=10)
        await handle.signal("finish")
        assert await handle.result(timeout=20) == "finished"


# ------------------------ 11. cancelling a local activity

LOCAL_SEEN: list[str] = []


@activity
async def slow_local() -> str:
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        LOCAL_SEEN.append(f"cancelled, is_cancelled={activity_context().is_cancelled()}")
        raise
    return "finished"


@activity
def slow_sync_local() -> str:
    context = activity_context()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if context.is_cancelled():
            LOCAL_SEEN.append("sync saw is_cancelled")
            return "stopped"
        time.sleep(0.01)
    return "finished"


@workflow
async def cancels_local_wf(ctx: WorkflowContext, which: str) -> str:
    fn = slow_local if which == "async" else slow_sync_local
    task = asyncio.ensure_future(ctx.local_activity(fn))
    await ctx.sleep(0.3)
    task.cancel()
    try:
        return await task
    except asyncio.CancelledError:
        return "cancelled"


@pytest.mark.parametrize("which", ["async", "sync"])
async def test_a_local_activity_can_be_cancelled(client: durable.Client, which: str) -> None:
    """Defect 11: task.cancel() was ignored until the function finished."""
    LOCAL_SEEN.clear()
    async with durable.Worker(client, workflows=[cancels_local_wf]):
        started = time.monotonic()
        assert await client.execute(cancels_local_wf, which) == "cancelled"
        print(f"cancelled after {time.monotonic() - started:.2f} s")
        await wait_for(lambda: LOCAL_SEEN)
    expected = "cancelled, is_cancelled=True" if which == "async" else "sync saw is_cancelled"
    assert [expected] == LOCAL_SEEN


# ------------------------ 12. created and cancelled in one step

RAN: list[str] = []


@activity
async def must_not_run() -> None:
    RAN.append("activity")


@workflow
async def must_not_start_child(ctx: WorkflowContext) -> None:
    RAN.append("child")


@workflow
async def cancels_at_once_wf(ctx: WorkflowContext) -> list[str]:
    seen = []
    task = ctx.start_activity(must_not_run)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        seen.append("activity cancelled")
    child = ctx.start_child(must_not_start_child.with_options(id="never-sent"))
    child.cancel()
    try:
        await child
    except durable.ChildWorkflowError as exc:
        seen.append(f"child {exc.workflow_id} cancelled")
    await ctx.sleep(0.5)  # time for anything sent to run
    return seen


async def test_an_activity_or_child_cancelled_in_the_step_that_created_it_is_not_sent(
    client: durable.Client,
) -> None:
    """Defect 12: the activity ran and the child started."""
    RAN.clear()
    async with durable.Worker(
        client, workflows=[cancels_at_once_wf, must_not_start_child], activities=[must_not_run]
    ):
        handle = await client.start(cancels_at_once_wf)
        assert await handle.result(timeout=20) == [
            "activity cancelled",
            "child never-sent cancelled",
        ]
    assert RAN == []
    assert not await _exists(client, "never-sent")
    assert not (await handle.describe()).pending_activities


# ------------------------ 13, 14. start_delay


@activity
async def wall_clock() -> float:
    return time.time()


@workflow
async def delayed_wf(ctx: WorkflowContext) -> dict[str, float]:
    first_step = ctx.now().timestamp()
    before = await ctx.activity(wall_clock)
    await ctx.sleep(1.0)
    after = await ctx.activity(wall_clock)
    return {"first_step": first_step, "slept": after - before}


async def test_a_signal_does_not_start_a_delayed_workflow_early(client: durable.Client) -> None:
    """Defect 13: any signal made a delayed run due at once."""
    async with durable.Worker(client, workflows=[mailbox_wf]):
        handle = await client.start(mailbox_wf, start_delay=timedelta(seconds=1.5))
        await handle.signal("add", "stop")
        await asyncio.sleep(0.7)
        assert (await handle.describe()).status == "pending"
        with_start = await client.signal_with_start(
            mailbox_wf,
            id="delayed-sws",
            signal="add",
            signal_args=("stop",),
            start_delay=timedelta(seconds=1.5),
        )
        await asyncio.sleep(0.7)
        assert (await with_start.describe()).status == "pending"
        assert await handle.result(timeout=20) == ["stop"]
        assert await with_start.result(timeout=20) == ["stop"]


async def test_the_first_step_of_a_delayed_run_keeps_the_time_it_runs_at(
    client: durable.Client,
) -> None:
    """Defect 14: the first step's clock was the start() call's; a 1 s sleep fired at once."""
    async with durable.Worker(client, workflows=[delayed_wf], activities=[wall_clock]):
        called = time.time()
        result = await client.execute(delayed_wf, start_delay=timedelta(seconds=1.5))
    assert result["first_step"] >= called + 1.4
    assert result["slept"] >= 0.95


# ------------------------ 15. queries see what was sent before them


async def test_a_query_after_a_signal_sees_the_signal(client: durable.Client) -> None:
    """Defect 15: a query right after a signal saw the state before it (3-4 in 10)."""
    async with durable.Worker(client, workflows=[mailbox_wf]):
        for n in range(10):
            handle = await client.start(mailbox_wf)
            await handle.signal("add", f"item {n}")
            assert await handle.query("got", timeout=10) == [f"item {n}"]
            await handle.signal("add", "stop")


async def test_a_query_never_sees_a_step_that_has_not_committed(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[mailbox_wf]):
        handle = await client.start(mailbox_wf)
        assert await handle.query("got", timeout=10) == []
        blocker = await client.store.pool.acquire()
        transaction = blocker.transaction()
        await transaction.start()
        try:  # the step delivering the next signal cannot append to history meanwhile
            await blocker.execute("LOCK TABLE durable.history IN SHARE MODE")
            await handle.signal("add", "uncommitted")
            await asyncio.sleep(0.5)
            query = asyncio.create_task(handle.query("got", timeout=20))
            await asyncio.sleep(0.5)
            if query.done():
                assert query.result() == []
        finally:
            await transaction.rollback()
            await client.store.pool.release(blocker)
        assert await query == ["uncommitted"]
        await handle.signal("add", "stop")
        await handle.result(timeout=20)


# ------------------------ 16. cause chains


@activity(retry=RetryPolicy(maximum_attempts=1))
async def refuses() -> None:
    raise ApplicationError("card declined", type="Declined")


@workflow
async def wraps_failure_wf(ctx: WorkflowContext) -> None:
    try:
        await ctx.activity(refuses)
    except ActivityError as exc:
        raise ApplicationError("checkout failed", type="Checkout") from exc


async def test_a_failure_raised_from_another_keeps_its_cause(client: durable.Client) -> None:
    """Defect 16: ``raise ... from activity_error`` lost the activity error."""
    async with durable.Worker(client, workflows=[wraps_failure_wf], activities=[refuses]):
        with pytest.raises(durable.WorkflowFailedError) as caught:
            await client.execute(wraps_failure_wf)
    outer = caught.value.cause
    assert isinstance(outer, ApplicationError) and outer.type == "Checkout"
    assert isinstance(outer.__cause__, ActivityError)
    assert isinstance(outer.__cause__.cause, ApplicationError)
    assert outer.__cause__.cause.type == "Declined"


# ------------------------ 17. a malformed signal


@workflow
async def counts_wf(ctx: WorkflowContext) -> int:
    total: list[int] = []

    def add(n: int) -> None:
        total.append(n)

    ctx.on_signal("add", add)
    await ctx.wait_until(lambda: sum(total) >= 3)
    return sum(total)


async def test_a_malformed_signal_is_dropped_not_fatal(
    client: durable.Client, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect 17: one signal that did not decode as the handler's type failed the workflow."""
    caplog.set_level(logging.WARNING)
    async with durable.Worker(client, workflows=[counts_wf]):
        handle = await client.start(counts_wf)
        await handle.signal("add", "three")
        await handle.signal("add", 1, 2)
        await handle.signal("add", 3)
        assert await handle.result(timeout=20) == 3
    assert [e.type for e in await handle.history()].count("SIGNAL_DROPPED") == 2
    assert "dropped" in caplog.text


# ------------------------ 18. one start time


@workflow
async def started_at_wf(ctx: WorkflowContext) -> float:
    return ctx.info.started_at.timestamp()


async def test_describe_history_and_ctx_info_agree_on_the_start_time(
    client: durable.Client,
) -> None:
    """Defect 18: describe().started_at was 15-30 ms later than the start event."""
    async with durable.Worker(client, workflows=[started_at_wf]):
        handle = await client.start(started_at_wf)
        info_started = await handle.result(timeout=20)
    described = (await handle.describe()).started_at
    first_event = (await handle.history())[0].timestamp
    assert described == first_event
    assert described.timestamp() == info_started
