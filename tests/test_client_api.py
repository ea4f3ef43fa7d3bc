"""End-to-end tests of the Client and WorkflowHandle API (API.md, "Client")."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import durable
from durable import ApplicationError, WorkflowContext, activity, activity_context, workflow

from .conftest import wait_for

# ---------------------------------------------------------------------------- workflows


@workflow
async def add_wf(ctx: WorkflowContext, a: int, b: int) -> int:
    return a + b


@workflow
async def forever_wf(ctx: WorkflowContext) -> None:
    await ctx.wait_signal("never")


@workflow
async def ok_or_fail_wf(ctx: WorkflowContext, fail: bool) -> str:
    if fail:
        raise ApplicationError("asked to fail", type="Asked")
    return "ok"


@workflow
async def collect_wf(ctx: WorkflowContext, expected: int) -> list[str]:
    items: list[str] = []
    ctx.on_signal("add", items.append)
    await ctx.wait_until(lambda: len(items) >= expected)
    return items


WALL_CLOCK: list[float] = []


@activity
def wall_clock() -> float:
    WALL_CLOCK.append(time.time())
    return time.time()


@workflow
async def clock_wf(ctx: WorkflowContext) -> float:
    return await ctx.activity(wall_clock)


async def _runs(client: durable.Client, **filters: Any) -> list[durable.WorkflowDescription]:
    return [d async for d in client.list(**filters)]


async def _status(handle: durable.WorkflowHandle[Any]) -> str:
    return (await handle.describe()).status


# ---------------------------------------------------------------------------- start / execute


async def test_execute_starts_and_returns_result(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[add_wf]):
        assert await client.execute(add_wf, 2, 3) == 5
        assert await client.execute(add_wf, 4, 5, id="exec-2") == 9
    assert (await client.get_handle("exec-2").describe()).status == "completed"
    runs = await _runs(client)
    assert len(runs) == 2
    assert {r.workflow_name for r in runs} == {"add_wf"}


async def test_start_returns_handle_with_ids(client: durable.Client) -> None:
    handle = await client.start(add_wf, 1, 1)
    assert isinstance(handle.workflow_id, str) and handle.workflow_id  # defaults to a UUID
    assert isinstance(handle.run_id, str) and handle.run_id
    other = await client.start(add_wf, 1, 1)
    assert other.workflow_id != handle.workflow_id
    async with durable.Worker(client, workflows=[add_wf]):
        assert await handle.result(timeout=20) == 2


async def test_start_by_registered_name(client: durable.Client) -> None:
    async with durable.Worker(client, task_queue="named-q", workflows=[add_wf]):
        # once a worker has run, the name is registered with its task queue
        assert await client.execute(add_wf, 1, 1, task_queue="named-q") == 2
        handle = await client.start("add_wf", 20, 22, id="by-name")
        assert await handle.result(timeout=20) == 42
    desc = await handle.describe()
    assert desc.workflow_name == "add_wf"
    assert desc.task_queue == "named-q"


async def test_start_by_name_right_after_worker_starts(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[add_wf]):
        handle = await client.start("add_wf", 1, 2)
        assert await handle.result(timeout=20) == 3


async def test_start_unknown_name_is_a_clear_error_and_writes_nothing(
    client: durable.Client,
) -> None:
    with pytest.raises(durable.DurableError) as info:
        await client.start("no_such_workflow", 1, id="unknown")
    assert "no_such_workflow" in str(info.value)
    assert await _runs(client) == []
    with pytest.raises(durable.WorkflowNotFoundError):
        await client.get_handle("unknown").describe()


async def test_duplicate_id_and_use_existing(client: durable.Client) -> None:
    handle = await client.start(forever_wf, id="dup")
    with pytest.raises(durable.WorkflowAlreadyStartedError):
        await client.start(forever_wf, id="dup")
    existing = await client.start(forever_wf, id="dup", id_conflict_policy="use_existing")
    assert existing.workflow_id == "dup"
    assert existing.run_id == handle.run_id
    assert len(await _runs(client)) == 1
    async with durable.Worker(client, workflows=[forever_wf]):
        await wait_for(lambda: _status_is(handle, "running"))
        with pytest.raises(durable.WorkflowAlreadyStartedError):
            await client.start(forever_wf, id="dup")
        again = await client.start(forever_wf, id="dup", id_conflict_policy="use_existing")
        assert again.run_id == handle.run_id
        await handle.terminate()
    assert len(await _runs(client)) == 1


async def _status_is(handle: durable.WorkflowHandle[Any], status: str) -> bool:
    return await _status(handle) == status


async def test_concurrent_starts_of_one_id_open_one_run(client: durable.Client) -> None:
    outcomes = await asyncio.gather(
        *(client.start(forever_wf, id="race") for _ in range(20)), return_exceptions=True
    )
    started = [o for o in outcomes if isinstance(o, durable.WorkflowHandle)]
    refused = [o for o in outcomes if isinstance(o, durable.WorkflowAlreadyStartedError)]
    assert len(started) == 1 and len(refused) == 19, outcomes
    shared = await asyncio.gather(
        *(
            client.start(forever_wf, id="race-2", id_conflict_policy="use_existing")
            for _ in range(20)
        )
    )
    assert len({h.run_id for h in shared}) == 1
    await asyncio.gather(
        *(
            client.signal_with_start(forever_wf, id="race-3", signal="s", signal_args=(i,))
            for i in range(20)
        )
    )
    runs = [d for d in await _runs(client) if d.workflow_id.startswith("race")]
    assert sorted(d.workflow_id for d in runs) == ["race", "race-2", "race-3"]
    histories = [await client.get_handle(d.workflow_id).history() for d in runs]
    assert [len(h) for h in histories] == [1, 1, 1]  # just WORKFLOW_STARTED each
    signals = await client.store.pool.fetchval(
        "SELECT count(*) FROM durable.inbox WHERE workflow_id = 'race-3'"
    )
    assert signals == 20


async def test_id_reuse_policies(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[ok_or_fail_wf]):
        completed = await client.start(ok_or_fail_wf, False, id="completed-id")
        assert await completed.result(timeout=20) == "ok"
        failed = await client.start(ok_or_fail_wf, True, id="failed-id")
        with pytest.raises(durable.WorkflowFailedError):
            await failed.result(timeout=20)

        # allow_failed_only: only an id whose last run did not succeed may be reused
        with pytest.raises(durable.WorkflowAlreadyStartedError):
            await client.start(
                ok_or_fail_wf, False, id="completed-id", id_reuse_policy="allow_failed_only"
            )
        rerun = await client.start(
            ok_or_fail_wf, False, id="failed-id", id_reuse_policy="allow_failed_only"
        )
        assert rerun.run_id != failed.run_id
        assert await rerun.result(timeout=20) == "ok"

        # reject_duplicate: never reuse, whatever the last run did
        for workflow_id in ("completed-id", "failed-id"):
            with pytest.raises(durable.WorkflowAlreadyStartedError):
                await client.start(
                    ok_or_fail_wf, False, id=workflow_id, id_reuse_policy="reject_duplicate"
                )

        # allow_duplicate: any closed id may be reused
        again = await client.start(
            ok_or_fail_wf, False, id="completed-id", id_reuse_policy="allow_duplicate"
        )
        assert await again.result(timeout=20) == "ok"
    assert len(await _runs(client)) == 4


async def test_start_delay_delays_the_start(client: durable.Client) -> None:
    WALL_CLOCK.clear()
    delay = timedelta(milliseconds=800)
    async with durable.Worker(client, workflows=[clock_wf], activities=[wall_clock]):
        before = time.time()
        handle = await client.start(clock_wf, start_delay=delay)
        assert await _status(handle) == "pending"
        ran_at = await handle.result(timeout=20)
    assert ran_at >= before + delay.total_seconds() - 0.05
    assert len(WALL_CLOCK) == 1


async def test_execution_timeout_times_out_the_workflow(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[forever_wf]):
        handle = await client.start(forever_wf, execution_timeout=timedelta(milliseconds=300))
        with pytest.raises(durable.WorkflowFailedError):
            await handle.result(timeout=20)
    desc = await handle.describe()
    assert desc.status == "timed_out"
    assert desc.closed_at is not None
    assert (await handle.history())[-1].type == "WORKFLOW_TIMED_OUT"


# ---------------------------------------------------------------------------- handles


async def test_get_handle_by_id(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[add_wf, collect_wf]):
        started = await client.start(collect_wf, 1, id="by-id")
        handle = client.get_handle("by-id")
        assert handle.workflow_id == "by-id"
        await handle.signal("add", "x")
        assert await handle.result(timeout=20) == ["x"]
        assert (await handle.describe()).run_id == started.run_id
        # a new run of the same id: the handle follows the latest run
        newer = await client.start(collect_wf, 1, id="by-id")
        await handle.signal("add", "y")
        assert await newer.result(timeout=20) == ["y"]
        assert (await handle.describe()).run_id == newer.run_id


@dataclass
class Parcel:
    sku: str
    grams: int
    sent: date


@workflow
async def parcel_wf(ctx: WorkflowContext, sku: str, grams: int) -> Parcel:
    return Parcel(sku, grams, date(2024, 5, 17))


@workflow
async def parcels_wf(ctx: WorkflowContext, count: int) -> list[Parcel]:
    return [Parcel(f"p{n}", n, date(2024, 5, n + 1)) for n in range(count)]


async def test_get_handle_result_type_rebuilds_the_result(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[parcel_wf, parcels_wf]):
        assert await client.execute(parcel_wf, "a", 5, id="parcel") == Parcel(
            "a", 5, date(2024, 5, 17)
        )
        await client.execute(parcels_wf, 2, id="parcels")
    # by id alone, the result is plain values
    assert await client.get_handle("parcel").result() == {
        "sku": "a",
        "grams": 5,
        "sent": date(2024, 5, 17),
    }
    typed = client.get_handle("parcel", result_type=Parcel)
    assert await typed.result(timeout=5) == Parcel("a", 5, date(2024, 5, 17))
    run = (await typed.describe()).run_id
    by_run = client.get_handle("parcel", run_id=run, result_type=Parcel)
    assert isinstance(await by_run.result(), Parcel)
    listed = await client.get_handle("parcels", result_type=list[Parcel]).result()
    assert listed == [Parcel("p0", 0, date(2024, 5, 1)), Parcel("p1", 1, date(2024, 5, 2))]
    maybe = await client.get_handle("parcel", result_type=Parcel | None).result()
    assert isinstance(maybe, Parcel)


async def test_get_handle_result_type_builds_a_pydantic_model(client: durable.Client) -> None:
    pydantic = pytest.importorskip("pydantic")

    class Label(pydantic.BaseModel):
        sku: str
        grams: int
        sent: date

    async with durable.Worker(client, workflows=[parcel_wf]):
        await client.execute(parcel_wf, "b", 7, id="label")
    label = await client.get_handle("label", result_type=Label).result()
    assert isinstance(label, Label)
    assert (label.sku, label.grams, label.sent) == ("b", 7, date(2024, 5, 17))


def _typed_results_by_sync_client(dsn: str) -> tuple[object, object]:
    with durable.SyncClient.connect(dsn) as sync:
        return (
            sync.get_handle("sync-parcel", result_type=Parcel).result(timeout=5),
            sync.get_handle("sync-parcel").result(),
        )


async def test_sync_client_get_handle_result_type(client: durable.Client, dsn: str) -> None:
    async with durable.Worker(client, workflows=[parcel_wf]):
        await client.execute(parcel_wf, "c", 9, id="sync-parcel")
    typed, plain = await asyncio.to_thread(_typed_results_by_sync_client, dsn)
    assert typed == Parcel("c", 9, date(2024, 5, 17))
    assert plain == {"sku": "c", "grams": 9, "sent": date(2024, 5, 17)}


@dataclass
class Invoice:
    number: int
    total: Decimal


async def test_result_that_does_not_fit_result_type_is_a_clear_error(
    client: durable.Client,
) -> None:
    async with durable.Worker(client, workflows=[parcel_wf]):
        await client.execute(parcel_wf, "d", 3, id="misfit")
    with pytest.raises(durable.PayloadError) as info:
        await client.get_handle("misfit", result_type=Invoice).result()
    message = str(info.value)
    assert "result of workflow 'misfit'" in message
    assert "as Invoice" in message
    with pytest.raises(durable.PayloadError, match="as int: expected int, got dict"):
        await client.get_handle("misfit", result_type=int).result()
    # a result_type that is no type is refused at once
    with pytest.raises(TypeError, match="result_type must be a type"):
        client.get_handle("misfit", result_type=42)
    with pytest.raises(TypeError, match="result_type must be a type"):
        client.get_handle("misfit", result_type="Parcel")


async def test_result_timeout_raises_durable_timeout_error(client: durable.Client) -> None:
    handle = await client.start(forever_wf)
    with pytest.raises(durable.TimeoutError) as info:
        await handle.result(timeout=0.2)
    assert isinstance(info.value, asyncio.TimeoutError)
    with pytest.raises(asyncio.TimeoutError):
        await handle.result(timeout=timedelta(milliseconds=100))


async def test_operations_on_unknown_workflow_raise_not_found(client: durable.Client) -> None:
    handle = client.get_handle("does-not-exist")
    with pytest.raises(durable.WorkflowNotFoundError):
        await handle.signal("anything", 1)
    with pytest.raises(durable.WorkflowNotFoundError):
        await handle.query("anything")
    with pytest.raises(durable.WorkflowNotFoundError):
        await handle.update("anything", 1)
    with pytest.raises(durable.WorkflowNotFoundError):
        await handle.cancel()
    with pytest.raises(durable.WorkflowNotFoundError):
        await handle.terminate()
    with pytest.raises(durable.WorkflowNotFoundError):
        await handle.describe()
    with pytest.raises(durable.WorkflowNotFoundError):
        await handle.history()
    with pytest.raises(durable.WorkflowNotFoundError):
        await handle.result(timeout=5)
    assert await _runs(client) == []


async def test_signal_to_completed_workflow_raises_not_found(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[add_wf]):
        handle = await client.start(add_wf, 1, 2)
        assert await handle.result(timeout=20) == 3
    before = len(await handle.history())
    with pytest.raises(durable.WorkflowNotFoundError):
        await handle.signal("late", 1)
    with pytest.raises(durable.WorkflowNotFoundError):
        await client.get_handle(handle.workflow_id).signal("late", 1)
    with pytest.raises(durable.WorkflowNotFoundError):
        await handle.update("late", 1)
    assert len(await handle.history()) == before


# ---------------------------------------------------------------------------- terminate

TERMINATED_ACTIVITY: list[str] = []


@activity(heartbeat_timeout=timedelta(seconds=1))
async def long_running() -> str:
    ctx = activity_context()
    TERMINATED_ACTIVITY.append("started")
    try:
        for _ in range(400):
            ctx.heartbeat()
            await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        TERMINATED_ACTIVITY.append("cancelled")
        raise
    return "finished"


@workflow
async def terminate_child_wf(ctx: WorkflowContext) -> None:
    await ctx.wait_signal("never")


@workflow
async def terminate_parent_wf(ctx: WorkflowContext) -> None:
    ctx.start_child(terminate_child_wf.with_options(id="term-child"))
    ctx.start_activity(long_running)
    await ctx.wait_signal("never")


async def test_terminate_stops_workflow_activity_and_child(client: durable.Client) -> None:
    TERMINATED_ACTIVITY.clear()
    async with durable.Worker(
        client, workflows=[terminate_parent_wf, terminate_child_wf], activities=[long_running]
    ):
        handle = await client.start(terminate_parent_wf, id="term-parent")
        child = client.get_handle("term-child")

        async def child_running() -> bool:
            try:
                return await _status(child) == "running"
            except durable.WorkflowNotFoundError:
                return False

        await wait_for(child_running)
        await wait_for(lambda: TERMINATED_ACTIVITY)
        await handle.terminate(reason="operator said so")
        with pytest.raises(durable.WorkflowTerminatedError):
            await handle.result(timeout=20)
        desc = await handle.describe()
        assert desc.status == "terminated"
        assert desc.closed_at is not None
        assert (await handle.history())[-1].type == "WORKFLOW_TERMINATED"
        await wait_for(lambda: "cancelled" in TERMINATED_ACTIVITY)
        await wait_for(lambda: _status_is(child, "terminated"))
        with pytest.raises(durable.WorkflowTerminatedError):
            await child.result(timeout=20)
    assert TERMINATED_ACTIVITY == ["started", "cancelled"]


# ---------------------------------------------------------------------------- describe, history

RELEASE: list[bool] = []
SLOW_STARTED: list[int] = []


@activity
async def slow_step(n: int) -> int:
    SLOW_STARTED.append(n)
    while not RELEASE:
        await asyncio.sleep(0.02)
    return n * 2


@workflow
async def slow_wf(ctx: WorkflowContext, n: int) -> int:
    return await ctx.activity(slow_step, n)


async def test_describe_fields_and_pending_activities(client: durable.Client) -> None:
    RELEASE.clear()
    SLOW_STARTED.clear()
    async with durable.Worker(
        client, task_queue="describe-q", workflows=[slow_wf], activities=[slow_step]
    ):
        handle = await client.start(
            slow_wf,
            21,
            id="described",
            task_queue="describe-q",
            attributes={"customer": "c-1", "priority": 3},
        )
        await wait_for(lambda: SLOW_STARTED)
        desc = await handle.describe()
        assert desc.workflow_id == "described"
        assert desc.run_id == handle.run_id
        assert desc.status == "running"
        assert desc.workflow_name == "slow_wf"
        assert desc.task_queue == "describe-q"
        assert isinstance(desc.started_at, datetime) and desc.started_at.tzinfo is not None
        assert desc.closed_at is None
        assert desc.attributes == {"customer": "c-1", "priority": 3}
        assert len(desc.pending_activities) == 1
        pending = desc.pending_activities[0]
        assert pending.activity_name == "slow_step"
        assert pending.attempt == 1
        assert pending.state == "running"
        RELEASE.append(True)
        assert await handle.result(timeout=20) == 42
    done = await handle.describe()
    assert done.status == "completed"
    assert done.closed_at is not None and done.closed_at >= done.started_at
    assert done.pending_activities == []


@activity(retry=durable.RetryPolicy(initial_interval=timedelta(hours=1)))
async def declined(card: str) -> str:
    raise ApplicationError(f"card {card} declined", type="CardDeclined")


@workflow
async def pay_wf(ctx: WorkflowContext) -> str:
    return await ctx.activity(declined, "4242")


async def test_describe_gives_a_pending_activitys_last_failure_type_and_stack(
    client: durable.Client,
) -> None:
    async with durable.Worker(
        client, task_queue="declines", workflows=[pay_wf], activities=[declined]
    ):
        handle = await client.start(pay_wf, task_queue="declines")

        async def failed_once() -> durable.PendingActivity | None:
            pending = (await handle.describe()).pending_activities
            return pending[0] if pending and pending[0].last_failure else None

        pending = await wait_for(failed_once)
        await handle.terminate()
    assert pending.last_failure == "card 4242 declined"
    assert pending.last_failure_type == "CardDeclined"
    assert pending.last_failure_stack is not None
    assert "in declined" in pending.last_failure_stack and "CardDeclined" not in (
        pending.last_failure or ""
    )


async def test_describe_of_a_cancelled_run_gives_the_reason(client: durable.Client) -> None:
    not_begun = await client.start(forever_wf, task_queue="nobody-serves-this")
    await not_begun.cancel(reason="ordered twice")
    async with durable.Worker(client, task_queue="cancels", workflows=[forever_wf]):
        begun = await client.start(forever_wf, task_queue="cancels")

        async def running() -> bool:
            return await _status(begun) == "running"

        await wait_for(running, timeout=10)
        await begun.cancel(reason="customer changed their mind")
        with pytest.raises(durable.WorkflowCancelledError):
            await begun.result(timeout=20)
    assert (await begun.describe()).cancel_reason == "customer changed their mind"
    assert (await not_begun.describe()).cancel_reason == "ordered twice"
    quiet = await client.start(forever_wf, task_queue="nobody-serves-this")
    await quiet.cancel()
    assert (await quiet.describe()).cancel_reason is None


async def test_history_events_have_seq_type_timestamp_and_fields(client: durable.Client) -> None:
    RELEASE[:] = [True]
    async with durable.Worker(client, workflows=[slow_wf], activities=[slow_step]):
        handle = await client.start(slow_wf, 5)
        assert await handle.result(timeout=20) == 10
    events = await handle.history()
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.type for e in events] == [
        "WORKFLOW_STARTED",
        "ACTIVITY_SCHEDULED",
        "ACTIVITY_COMPLETED",
        "WORKFLOW_COMPLETED",
    ]
    timestamps = [e.timestamp for e in events]
    assert all(isinstance(t, datetime) and t.tzinfo is not None for t in timestamps)
    assert timestamps == sorted(timestamps)
    started, scheduled, completed, closed = events
    assert started.name == "slow_wf"
    assert scheduled.name == "slow_step"
    assert completed.result == 10
    assert closed.result == 10


# ---------------------------------------------------------------------------- list


async def test_list_with_each_filter(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[add_wf, forever_wf]):
        done = await client.start(add_wf, 1, 1, id="l-done", attributes={"team": "red"})
        assert await done.result(timeout=20) == 2
        blue = await client.start(forever_wf, id="l-blue", attributes={"team": "blue"})
        red = await client.start(forever_wf, id="l-red", attributes={"team": "red", "n": 1})
        for h in (blue, red):
            await wait_for(lambda h=h: _status_is(h, "running"))

        async def ids(**filters: Any) -> list[str]:
            return sorted(d.workflow_id for d in await _runs(client, **filters))

        assert await ids() == ["l-blue", "l-done", "l-red"]
        assert await ids(status="completed") == ["l-done"]
        assert await ids(status="running") == ["l-blue", "l-red"]
        assert await ids(status="failed") == []
        assert await ids(workflow_name="forever_wf") == ["l-blue", "l-red"]
        assert await ids(workflow_name="add_wf") == ["l-done"]
        assert await ids(attributes={"team": "red"}) == ["l-done", "l-red"]
        assert await ids(attributes={"team": "red", "n": 1}) == ["l-red"]
        started = (await done.describe()).started_at
        assert await ids(started_after=started) == ["l-blue", "l-red"]
        assert await ids(status="running", attributes={"team": "blue"}) == ["l-blue"]
        listed = {d.workflow_id: d for d in await _runs(client)}
        assert listed["l-done"].status == "completed"
        assert listed["l-red"].attributes == {"team": "red", "n": 1}
        await blue.terminate()
        await red.terminate()


# ---------------------------------------------------------------------------- signal_with_start


async def test_signal_with_start(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[collect_wf]):
        # not running: starts it and delivers the signal
        first = await client.signal_with_start(
            collect_wf, 2, id="sws", signal="add", signal_args=("a",)
        )
        # running: only signals it
        second = await client.signal_with_start(
            collect_wf, 2, id="sws", signal="add", signal_args=("b",)
        )
        assert second.run_id == first.run_id
        assert await first.result(timeout=20) == ["a", "b"]
        assert len(await _runs(client)) == 1
        # closed again: a new run starts with the signal
        third = await client.signal_with_start(
            collect_wf, 1, id="sws", signal="add", signal_args=("c",)
        )
        assert third.run_id != first.run_id
        assert await third.result(timeout=20) == ["c"]
    assert len(await _runs(client)) == 2


# ---------------------------------------------------------------------------- refused input


async def test_unserializable_argument_is_payload_error_and_writes_nothing(
    client: durable.Client,
) -> None:
    with pytest.raises(durable.PayloadError):
        await client.start(add_wf, threading.Lock(), 1, id="bad-arg")
    with pytest.raises(durable.PayloadError):
        await client.signal_with_start(
            collect_wf, 1, id="bad-sws", signal="add", signal_args=(threading.Lock(),)
        )
    with pytest.raises(durable.PayloadError):
        await client.signal_with_start(collect_wf, threading.Lock(), id="bad-sws2", signal="add")
    assert await _runs(client) == []
    handle = await client.start(collect_wf, 1, id="good")
    history = await handle.history()
    with pytest.raises(durable.PayloadError):
        await handle.signal("add", threading.Lock())
    with pytest.raises(durable.PayloadError):
        await handle.update("add", threading.Lock())
    assert [e.seq for e in await handle.history()] == [e.seq for e in history]
    assert [d.workflow_id for d in await _runs(client)] == ["good"]


async def test_connect_with_wrong_dsn_hides_password() -> None:
    dsn = "postgresql://alice:s3cret-pw@127.0.0.1:1/nowhere"
    with pytest.raises(durable.DurableError) as info:
        await durable.Client.connect(dsn)
    message = str(info.value)
    assert "127.0.0.1:1" in message
    assert "alice" in message
    assert "s3cret-pw" not in message


async def test_bad_argument_values_raise_value_error_naming_them(client: durable.Client) -> None:
    with pytest.raises(ValueError, match="id"):
        await client.start(add_wf, 1, 2, id="")
    with pytest.raises(ValueError, match="id_reuse_policy"):
        await client.start(add_wf, 1, 2, id_reuse_policy="nope")
    with pytest.raises(ValueError, match="id_conflict_policy"):
        await client.start(add_wf, 1, 2, id_conflict_policy="nope")
    with pytest.raises(ValueError, match="attribute"):
        await client.start(add_wf, 1, 2, attributes={"k": object()})
    with pytest.raises(ValueError, match="attribute"):
        await client.start(add_wf, 1, 2, attributes={"k": {1, 2}})
    with pytest.raises(ValueError, match="start_delay"):
        await client.start(add_wf, 1, 2, start_delay=timedelta(seconds=-1))
    with pytest.raises(ValueError, match="execution_timeout"):
        await client.start(add_wf, 1, 2, execution_timeout=timedelta(seconds=-1))
    with pytest.raises(ValueError, match="status"):
        await _runs(client, status="nope")
    assert await _runs(client) == []


# ---------------------------------------------------------------------------- durability


async def test_durable_never_turns_synchronous_commit_off(client: durable.Client) -> None:
    """Every acknowledged call waited for a commit that is on disk: durable leaves
    synchronous_commit at the server's setting (on by default) in every session and
    transaction."""
    package = Path(durable.__file__).parent
    sources = [*package.rglob("*.py"), *package.rglob("*.sql")]
    assert any(p.parent.name == "migrations" for p in sources)  # the store's, read too
    for source in sources:
        assert "synchronous_commit" not in source.read_text().lower(), source.name
    async with client.store.pool.acquire() as conn:
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
