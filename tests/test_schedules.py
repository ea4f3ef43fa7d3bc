"""Schedules on real Postgres with real workers: each slot fires once, never early, with the
overlap policies, catch-up, pause, trigger, backfill, update and delete of API.md."""

from __future__ import annotations

import asyncio
import collections
import itertools
from datetime import UTC, datetime, timedelta

import pytest

import durable
from durable._schedules import SLOTS_PER_PASS
from durable.testing import WorkflowEnvironment
from tests.conftest import wait_for

SECOND = timedelta(seconds=1)


@durable.workflow
async def tick(ctx: durable.WorkflowContext, label: str) -> str:
    return f"{label} at {ctx.now().isoformat()}"


@durable.workflow
async def holds(ctx: durable.WorkflowContext) -> str:
    """Runs until signalled "release" (or cancelled)."""
    await ctx.wait_signal("release")
    return "released"


async def runs_of(client: durable.Client, schedule_id: str) -> list[durable.WorkflowDescription]:
    return [d async for d in client.list(attributes={"schedule_id": schedule_id})]


def slot_of(run: durable.WorkflowDescription) -> datetime:
    return datetime.fromisoformat(run.attributes["scheduled_at"].replace("Z", "+00:00"))


async def test_every_second_fires_each_slot_once_in_order_and_never_early(
    client: durable.Client,
) -> None:
    handle = await client.create_schedule("beat", tick, "hello", every=SECOND)
    assert isinstance(handle, durable.ScheduleHandle)
    async with durable.Worker(client, workflows=[tick]):
        await wait_for(lambda: _completed(client, "beat", 3), timeout=15)
    runs = await runs_of(client, "beat")
    ids = [r.workflow_id for r in runs]
    assert len(ids) == len(set(ids))
    slots = sorted(slot_of(r) for r in runs)
    assert all(b - a == SECOND for a, b in itertools.pairwise(slots))
    for run in runs:
        assert run.workflow_id == f"beat@{run.attributes['scheduled_at']}"
        assert run.started_at >= slot_of(run)  # never early
        if run.status == "completed":
            assert (await client.get_handle(run.workflow_id).result()).startswith("hello at ")
    described = await handle.describe()
    assert described.fired == len(runs) and described.skipped == 0 and described.missed == 0
    assert [r.workflow_id for r in described.recent] == sorted(ids)[-10:]
    assert {r.status for r in described.recent} <= {"completed", "running", "pending"}
    assert len(described.next_fire_times) == 5
    assert described.next_fire_times[0] > slots[-1]


async def _completed(client: durable.Client, schedule_id: str, count: int) -> bool:
    runs = await runs_of(client, schedule_id)
    return sum(r.status == "completed" for r in runs) >= count


async def test_two_workers_fire_each_slot_once(client: durable.Client) -> None:
    await client.create_schedule("shared", tick, "x", every=SECOND)
    async with (
        durable.Worker(client, workflows=[tick], identity="a"),
        durable.Worker(client, workflows=[tick], identity="b"),
    ):
        await wait_for(lambda: _completed(client, "shared", 4), timeout=15)
    runs = await runs_of(client, "shared")
    per_slot = collections.Counter(slot_of(r) for r in runs)
    assert set(per_slot.values()) == {1}
    slots = sorted(per_slot)
    assert all(b - a == SECOND for a, b in itertools.pairwise(slots))


async def test_skip_never_runs_two_at_once_and_counts_what_it_dropped(
    client: durable.Client,
) -> None:
    handle = await client.create_schedule("sk", holds, every=SECOND, overlap="skip")
    async with durable.Worker(client, workflows=[holds]):
        await wait_for(lambda: _described(handle, lambda d: d.skipped >= 2), timeout=15)
        runs = await runs_of(client, "sk")
        assert len(runs) == 1 and runs[0].status == "running"
        described = await handle.describe()
        assert any(r.status == "skipped" for r in described.recent)
        await client.get_handle(runs[0].workflow_id).signal("release")
        await wait_for(lambda: _count(client, "sk", 2), timeout=15)
        await handle.delete()
    runs = await runs_of(client, "sk")
    spans = sorted((r.started_at, r.closed_at or datetime.max.replace(tzinfo=UTC)) for r in runs)
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))


async def _described(handle: durable.ScheduleHandle, check) -> bool:  # type: ignore[no-untyped-def]
    return bool(check(await handle.describe()))


async def _count(client: durable.Client, schedule_id: str, count: int) -> bool:
    return len(await runs_of(client, schedule_id)) >= count


async def test_buffer_one_starts_one_waiting_slot_when_the_run_closes(
    client: durable.Client,
) -> None:
    handle = await client.create_schedule("b1", holds, every=SECOND, overlap="buffer_one")
    async with durable.Worker(client, workflows=[holds]):
        await wait_for(lambda: _described(handle, lambda d: d.skipped >= 1), timeout=15)
        described = await handle.describe()
        assert described.waiting == 1
        (first,) = await runs_of(client, "b1")
        await client.get_handle(first.workflow_id).signal("release")
        await wait_for(lambda: _count(client, "b1", 2), timeout=15)
        await handle.delete()
    runs = sorted(await runs_of(client, "b1"), key=slot_of)
    assert len(runs) == 2
    # the slot that waited is the one right after the first run's; later ones were dropped
    assert slot_of(runs[1]) - slot_of(runs[0]) == SECOND
    assert runs[1].started_at >= runs[0].closed_at  # type: ignore[operator]


async def test_buffer_all_starts_every_waiting_slot_one_after_another(
    client: durable.Client,
) -> None:
    handle = await client.create_schedule("ball", holds, every=SECOND, overlap="buffer_all")
    async with durable.Worker(client, workflows=[holds]):
        await wait_for(lambda: _described(handle, lambda d: d.waiting >= 2), timeout=15)
        await handle.update(every=timedelta(hours=1))  # no new slots; those waiting stay
        waiting = (await handle.describe()).waiting
        for _ in range(waiting + 1):
            await wait_for(lambda: _one_running(client, "ball"), timeout=15)
            (running,) = [r for r in await runs_of(client, "ball") if r.status == "running"]
            await client.get_handle(running.workflow_id).signal("release")
            await wait_for(lambda wid=running.workflow_id: _closed(client, wid), timeout=15)
    runs = await runs_of(client, "ball")
    assert len(runs) == waiting + 1 and {r.status for r in runs} == {"completed"}
    assert (await handle.describe()).skipped == 0


async def _one_running(client: durable.Client, schedule_id: str) -> bool:
    return sum(r.status == "running" for r in await runs_of(client, schedule_id)) == 1


async def _closed(client: durable.Client, workflow_id: str) -> bool:
    return (await client.get_handle(workflow_id).describe()).status == "completed"


@pytest.mark.parametrize(
    ("policy", "ended"), [("cancel_other", "cancelled"), ("terminate_other", "terminated")]
)
async def test_a_newer_slot_cancels_or_terminates_the_open_run(
    client: durable.Client, policy: str, ended: str
) -> None:
    handle = await client.create_schedule("co", holds, every=SECOND, overlap=policy)
    async with durable.Worker(client, workflows=[holds]):
        await wait_for(lambda: _statuses(client, "co", ended), timeout=15)
        await handle.pause()
    runs = sorted(await runs_of(client, "co"), key=slot_of)
    assert runs[0].status == ended
    assert runs[1].started_at >= runs[0].closed_at  # type: ignore[operator]


async def _statuses(client: durable.Client, schedule_id: str, status: str) -> bool:
    runs = await runs_of(client, schedule_id)
    return any(r.status == status for r in runs) and len(runs) >= 2


async def test_allow_all_lets_runs_overlap(client: durable.Client) -> None:
    await client.create_schedule("aa", holds, every=SECOND, overlap="allow_all")
    async with durable.Worker(client, workflows=[holds]):
        await wait_for(lambda: _running(client, "aa", 3), timeout=15)


async def _running(client: durable.Client, schedule_id: str, count: int) -> bool:
    return sum(r.status == "running" for r in await runs_of(client, schedule_id)) >= count


async def test_slots_missed_while_no_worker_ran_are_made_up_within_the_catchup_window(
    client: durable.Client,
) -> None:
    handle = await client.create_schedule(
        "cu", tick, "late", every=SECOND, catchup_window=timedelta(seconds=2), overlap="allow_all"
    )
    created = await client.store.database_time()
    await asyncio.sleep(6)  # no worker: every slot of these seconds waits
    async with durable.Worker(client, workflows=[tick]):
        await wait_for(lambda: _described(handle, lambda d: d.fired >= 4), timeout=15)
    described = await handle.describe()
    assert described.missed >= 2
    runs = await runs_of(client, "cu")
    slots = sorted(slot_of(r) for r in runs)
    first_fired = slots[0]
    # the oldest slots were missed, the ones inside the window fired, each once
    assert first_fired - created >= timedelta(seconds=2)
    assert len(slots) == len(set(slots))
    assert all(b - a == SECOND for a, b in itertools.pairwise(slots))


async def test_paused_schedules_do_not_fire_and_unpause_goes_on(client: durable.Client) -> None:
    handle = await client.create_schedule(
        "pz", tick, "p", every=SECOND, paused=True, note="not yet"
    )
    described = await handle.describe()
    assert described.paused and described.note == "not yet"
    async with durable.Worker(client, workflows=[tick]):
        await asyncio.sleep(2.5)
        assert await runs_of(client, "pz") == []
        await handle.unpause(note="go")
        assert (await handle.describe()).note == "go"
        await wait_for(lambda: _count(client, "pz", 2), timeout=15)
        await handle.pause(note="stop")
        stopped = len(await runs_of(client, "pz"))
        await asyncio.sleep(2.5)
        assert len(await runs_of(client, "pz")) == stopped
        assert (await handle.describe()).paused


async def test_trigger_fires_now_and_obeys_the_overlap_policy(client: durable.Client) -> None:
    handle = await client.create_schedule("tr", holds, cron="0 0 1 1 *", overlap="skip")
    async with durable.Worker(client, workflows=[holds]):
        await handle.trigger()
        await wait_for(lambda: _running(client, "tr", 1), timeout=15)
        await handle.trigger()  # the first still runs: skipped
        described = await handle.describe()
        assert described.skipped == 1 and described.fired == 1
        assert [r.status for r in described.recent] == ["running", "skipped"]
    (run,) = await runs_of(client, "tr")
    assert run.workflow_id.startswith("tr@") and run.workflow_id.endswith("Z")


async def test_backfill_fires_each_slot_of_a_range_once(client: durable.Client) -> None:
    handle = await client.create_schedule("bf", tick, "old", cron="0 * * * *", overlap="allow_all")
    start = datetime(2026, 1, 1, 10, tzinfo=UTC)
    await handle.backfill(start, start + timedelta(hours=3))
    await handle.backfill(start, start + timedelta(hours=4))  # the first three again: not fired
    async with durable.Worker(client, workflows=[tick]):
        await wait_for(lambda: _completed(client, "bf", 4), timeout=15)
    runs = await runs_of(client, "bf")
    assert sorted(r.attributes["scheduled_at"] for r in runs) == [
        "2026-01-01T10:00:00Z",
        "2026-01-01T11:00:00Z",
        "2026-01-01T12:00:00Z",
        "2026-01-01T13:00:00Z",
    ]
    with pytest.raises(durable.ScheduleError, match="start before end"):
        await handle.backfill(start, start)


async def test_update_changes_the_timetable_and_bad_updates_change_nothing(
    client: durable.Client,
) -> None:
    handle = await client.create_schedule(
        "up", tick, "a", cron="0 3 * * *", timezone="Europe/Berlin"
    )
    before = await handle.describe()
    assert [t.hour for t in before.next_fire_times] == [3] * 5
    assert str(before.next_fire_times[0].tzinfo) == "Europe/Berlin"
    for bad, message in [
        ({"cron": "nope"}, "cron="),
        ({"timezone": "Nowhere/Land"}, "Nowhere/Land"),
        ({"overlap": "sometimes"}, "overlap="),
        ({"every": timedelta(0)}, "every"),
        ({"colour": "red"}, "'colour'"),
        ({"workflow_options": {"id": "x"}}, "'id'"),
    ]:
        with pytest.raises(durable.ScheduleError, match=message):
            await handle.update(**bad)
    assert await handle.describe() == before
    await handle.update(every=timedelta(minutes=30), overlap="buffer_all", note="changed")
    after = await handle.describe()
    assert after.cron is None and after.every == timedelta(minutes=30)
    assert after.overlap == "buffer_all" and after.note == "changed"
    gaps = {b - a for a, b in zip(after.next_fire_times, after.next_fire_times[1:], strict=False)}
    assert gaps == {timedelta(minutes=30)}
    await handle.update(args=["b"], workflow_options={"attributes": {"team": "ops"}})
    async with durable.Worker(client, workflows=[tick]):
        await handle.trigger()
        await wait_for(lambda: _completed(client, "up", 1), timeout=15)
    (run,) = await runs_of(client, "up")
    assert run.attributes["team"] == "ops"
    assert (await client.get_handle(run.workflow_id).result()).startswith("b at ")


async def test_delete_stops_firing_and_leaves_runs_alone(client: durable.Client) -> None:
    handle = await client.create_schedule("del", holds, every=SECOND, overlap="allow_all")
    async with durable.Worker(client, workflows=[holds]):
        await wait_for(lambda: _count(client, "del", 1), timeout=15)
        await handle.delete()
        left = len(await runs_of(client, "del"))
        await asyncio.sleep(2.2)
        runs = await runs_of(client, "del")
        assert len(runs) == left and all(r.status == "running" for r in runs)
    with pytest.raises(durable.ScheduleError, match="no schedule with id 'del'"):
        await handle.describe()
    with pytest.raises(durable.ScheduleError, match="no schedule"):
        await handle.delete()


async def test_bad_input_is_refused_before_anything_is_written(client: durable.Client) -> None:
    cases = [
        ({"cron": "* * *"}, "five fields"),
        ({"cron": "* * * * *", "every": SECOND}, "exactly one"),
        ({}, "cron="),
        ({"cron": "* * * * *", "timezone": "Europe/Nowhere"}, "Europe/Nowhere"),
        ({"every": timedelta(seconds=0)}, "every"),
        ({"every": SECOND, "overlap": "never"}, "overlap='never'"),
        ({"every": SECOND, "catchup_window": timedelta(0)}, "catchup_window"),
        (
            {
                "every": SECOND,
                "start_at": datetime(2027, 1, 1, tzinfo=UTC),
                "end_at": datetime(2026, 1, 1, tzinfo=UTC),
            },
            "end_at=",
        ),
        ({"every": SECOND, "workflow_options": {"task_queue": "q"}}, "'task_queue'"),
        (
            {"every": SECOND, "workflow_options": {"attributes": {"schedule_id": "x"}}},
            "'schedule_id'",
        ),
    ]
    for kwargs, message in cases:
        with pytest.raises(durable.ScheduleError, match=message):
            await client.create_schedule("bad", tick, "x", **kwargs)
    with pytest.raises(durable.ScheduleError, match="schedule_id"):
        await client.create_schedule("", tick, "x", every=SECOND)
    with pytest.raises(TypeError):
        await client.create_schedule("bad", tick, every=SECOND)  # tick takes one argument
    assert [d async for d in client.list_schedules()] == []
    await client.create_schedule("dup", tick, "x", every=timedelta(hours=1))
    with pytest.raises(durable.ScheduleError, match="exists already"):
        await client.create_schedule("dup", tick, "y", every=SECOND)
    (only,) = [d async for d in client.list_schedules()]
    assert only.every == timedelta(hours=1)


async def test_list_schedules_in_id_order(client: durable.Client) -> None:
    for name in ["c", "a", "b"]:
        await client.create_schedule(name, tick, name, every=SECOND, task_queue="q")
    listed = [d async for d in client.list_schedules()]
    assert [d.schedule_id for d in listed] == ["a", "b", "c"]
    assert {(d.workflow_name, d.task_queue) for d in listed} == {("tick", "q")}
    with pytest.raises(durable.WorkflowNotFoundError, match="no worker has registered"):
        await client.create_schedule("by-name", "unknown-workflow", every=SECOND)


async def test_a_schedule_runs_on_the_time_skipping_clock(server_dsn: str) -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[tick], dsn=server_dsn) as env:
        client = env.client
        handle = await client.create_schedule(
            "hourly", tick, "t", cron="0 * * * *", task_queue=env.task_queue
        )
        await env.sleep(timedelta(hours=5))
        described = await handle.describe()
        assert described.fired == 5 and described.missed == 0
        runs = await runs_of(client, "hourly")
        assert {r.status for r in runs} == {"completed"}
        assert all(slot_of(r).minute == 0 and r.started_at >= slot_of(r) for r in runs)


async def test_a_trigger_or_delete_sent_again_applies_once(client: durable.Client) -> None:
    """A call the client sends again (its reply was lost) does not fire twice, nor fail
    because its first attempt deleted the schedule."""
    handle = await client.create_schedule("again", tick, "x", cron="0 0 1 1 *", overlap="allow_all")
    await handle.trigger(request_id="t-1")
    await handle.trigger(request_id="t-1")  # the same request: applied once
    await handle.trigger()
    assert (await handle.describe()).fired == 2
    await client.store.delete_schedule("again")
    await client.store.delete_schedule("again", again=True)  # its reply was lost: no error
    with pytest.raises(durable.ScheduleError, match="no schedule"):
        await client.store.delete_schedule("again")


async def test_one_fire_transaction_handles_a_bounded_share_of_an_outage(
    client: durable.Client,
) -> None:
    """Two every-second schedules an hour behind: one fire transaction handles at most
    SLOTS_PER_PASS slots over both (each its share), not a thousand each."""
    for name in ("o1", "o2"):
        await client.create_schedule(
            name,
            tick,
            name,
            every=SECOND,
            overlap="allow_all",
            catchup_window=timedelta(hours=2),
        )
    await client.store.pool.execute(
        "UPDATE durable.schedules SET next_slot = next_slot - interval '1 hour',"
        " due_at = due_at - interval '1 hour'"
    )
    handled, fired = await client.store.fire_schedules("default", 10)
    assert handled == 2 and len(fired) == SLOTS_PER_PASS
    assert collections.Counter(f.schedule_id for f in fired) == {
        "o1": SLOTS_PER_PASS // 2,
        "o2": SLOTS_PER_PASS // 2,
    }


async def test_the_time_skipping_clock_ignores_schedules_of_a_queue_nobody_serves(
    server_dsn: str,
) -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[tick], dsn=server_dsn) as env:
        await env.client.create_schedule(
            "unserved", tick, "u", every=SECOND, task_queue="nobody-serves-this"
        )
        served = await env.client.create_schedule(
            "served", tick, "s", cron="0 * * * *", task_queue=env.task_queue
        )
        # a due schedule no worker fires kept the environment busy for ever
        await asyncio.wait_for(env.sleep(timedelta(hours=2)), timeout=60)
        assert (await served.describe()).fired == 2
