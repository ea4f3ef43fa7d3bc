"""Flow control on real Postgres with real workers: priorities (and aging) order the
claims, inherited by activities and children; a queue's running limit and rate limit hold
across worker processes; bad settings are refused before anything is written."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import durable
from durable import WorkflowContext, activity, workflow
from durable._store.sql.activity_tasks import _CLAIM_ACTIVITIES_SQL
from durable._store.sql.workflow_tasks import _CLAIM_WORKFLOWS_SQL
from tests import flow_app
from tests.conftest import wait_for, worker_subprocess

order: list[str] = []


@activity(task_queue="prio")
async def note(label: str) -> str:
    order.append(label)
    return label


@workflow(task_queue="prio")
async def noted(ctx: WorkflowContext, label: str) -> str:
    return await ctx.activity(note, label)


@workflow(task_queue="prio")
async def parent(ctx: WorkflowContext) -> int:
    await ctx.child(noted.with_options(task_queue="prio-children"), "child")
    return ctx.info.priority


async def _start_all(
    client: durable.Client, labels: dict[str, int]
) -> list[durable.WorkflowHandle[str]]:
    return [
        await client.start(noted, label, id=label, priority=priority)
        for label, priority in labels.items()
    ]


async def _one_at_a_time(
    client: durable.Client, handles: list[durable.WorkflowHandle[str]]
) -> None:
    """Run the runs started with a worker of one slot of each kind: in claim order."""
    async with durable.Worker(
        client,
        "prio",
        workflows=[noted],
        activities=[note],
        max_concurrent_workflow_tasks=1,
        max_concurrent_activities=1,
    ):
        for handle in handles:
            await handle.result(timeout=30)


async def test_higher_priority_runs_and_their_activities_are_claimed_first(
    client: durable.Client,
) -> None:
    order.clear()
    low = {f"low-{i}": 5 for i in range(6)}
    high = {f"high-{i}": 1 for i in range(3)}
    handles = await _start_all(client, low) + await _start_all(client, high)
    await _one_at_a_time(client, handles)
    assert order[:3] == ["high-0", "high-1", "high-2"]  # then the older low ones, in order
    assert order[3:] == [f"low-{i}" for i in range(6)]


async def test_activities_and_children_inherit_the_run_priority(client: durable.Client) -> None:
    handle = await client.start(parent, priority=2)
    async with durable.Worker(client, "prio", workflows=[parent]):
        child_id = await wait_for(lambda: _child_of(client, handle.workflow_id))
    child = client.get_handle(child_id)
    async with durable.Worker(client, "prio-children", workflows=[noted]):
        # the child's activity waits on queue "prio", which no worker serves here
        row = await wait_for(
            lambda: client.store.pool.fetchrow(
                "SELECT priority FROM durable.activity_tasks WHERE workflow_id = $1", child_id
            )
        )
    assert row["priority"] == 2
    priorities = await client.store.pool.fetch(
        "SELECT workflow_id, priority FROM durable.workflows ORDER BY created_at"
    )
    assert [r["priority"] for r in priorities] == [2, 2]
    async with (
        durable.Worker(client, "prio", workflows=[parent], activities=[note]),
        durable.Worker(client, "prio-children", workflows=[noted]),
    ):
        assert await handle.result(timeout=30) == 2
        assert await child.result(timeout=30) == "child"
    explicit = await client.start(noted.with_options(priority=4), "own")
    assert (await _priority_of(client, explicit.workflow_id)) == 4
    assert (await explicit.describe()).priority == 4 and (await child.describe()).priority == 2


async def _child_of(client: durable.Client, parent_id: str) -> str | None:
    child: str | None = await client.store.pool.fetchval(
        "SELECT workflow_id FROM durable.workflows WHERE parent_workflow_id = $1", parent_id
    )
    return child


async def _priority_of(client: durable.Client, workflow_id: str) -> int:
    value: int = await client.store.pool.fetchval(
        "SELECT priority FROM durable.workflows WHERE workflow_id = $1", workflow_id
    )
    return value


async def test_with_aging_a_long_waiting_low_priority_task_goes_first(
    client: durable.Client,
) -> None:
    order.clear()
    await client.configure_task_queue("prio", priority_aging=timedelta(milliseconds=100))
    old = await _start_all(client, {"old-low": 5})
    await asyncio.sleep(1.0)  # ten agings: it is now above priority 1
    new = await _start_all(client, {"new-high": 1})
    await _one_at_a_time(client, old + new)
    assert order == ["old-low", "new-high"]


async def test_describe_task_queue_shows_limits_backlog_and_workers(
    client: durable.Client,
) -> None:
    queue = await client.describe_task_queue("prio")
    assert queue.config == durable.TaskQueueConfig() and queue.backlog == {}
    await _start_all(client, {"a": 1, "b": 4, "c": 4})
    limit = durable.RateLimit(100, per=timedelta(seconds=1))
    await client.configure_task_queue(
        "prio", max_running_activities=7, rate_limit=limit, priority_aging=timedelta(minutes=1)
    )
    queue = await client.describe_task_queue("prio")
    assert queue.config == durable.TaskQueueConfig(7, limit, timedelta(minutes=1))
    assert queue.backlog == {1: 1, 4: 2} and queue.running == 0 and queue.workers == []
    async with durable.Worker(client, "prio", workflows=[noted], identity="w-1"):
        # the runs are taken; their activities (no worker runs them here) wait in their place
        await wait_for(lambda: _activities_wait(client, 3))
        queue = await client.describe_task_queue("prio")
        assert [w.identity for w in queue.workers] == ["w-1"]
        assert queue.backlog == {1: 1, 4: 2}


async def _activities_wait(client: durable.Client, count: int) -> bool:
    waiting = await client.store.pool.fetchval("SELECT count(*) FROM durable.activity_tasks")
    return bool(waiting == count)


async def test_bad_settings_are_refused_before_anything_is_written(
    client: durable.Client,
) -> None:
    for priority in (0, 6, True, "1", 2.0):
        with pytest.raises(ValueError, match="priority must be an int from 1"):
            await client.start(noted, "x", priority=priority)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="priority"):
            note.with_options(priority=priority)  # type: ignore[arg-type]
    for kwargs, message in [
        ({"max_running_activities": 0}, "max_running_activities must be a positive int"),
        ({"max_running_activities": -3}, "max_running_activities"),
        ({"rate_limit": 5}, "rate_limit must be a durable.RateLimit"),
        ({"priority_aging": timedelta(0)}, "priority_aging must be a positive timedelta"),
    ]:
        with pytest.raises(ValueError, match=message):
            await client.configure_task_queue("prio", **kwargs)
    for count, per in [(0, timedelta(seconds=1)), (5, timedelta(0)), (-1, timedelta(seconds=1))]:
        with pytest.raises(ValueError, match="RateLimit"):
            durable.RateLimit(count, per=per)
    assert await client.store.pool.fetchval("SELECT count(*) FROM durable.workflows") == 0
    assert await client.store.pool.fetchval("SELECT count(*) FROM durable.task_queues") == 0


# ------------------------------------------------------------------ limits across processes
@pytest.fixture
async def flow_workers(dsn: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Two worker processes serving tests.flow_app."""
    await flow_app.create_table(dsn)
    env = {**os.environ, "DURABLE_DATABASE_URL": dsn, "FLOW_DSN": dsn}
    async with (
        worker_subprocess(tmp_path / "w1.log", "tests.flow_app", env=env),
        worker_subprocess(tmp_path / "w2.log", "tests.flow_app", env=env),
    ):
        yield tmp_path


async def _runs(dsn: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch("SELECT * FROM flow_runs ORDER BY started"))
    finally:
        await conn.close()


def _most_at_once(runs: list[asyncpg.Record]) -> int:
    edges = sorted([(r["started"], 1) for r in runs] + [(r["ended"], -1) for r in runs])
    return max(itertools.accumulate(step for _, step in edges))


async def test_max_running_activities_holds_across_worker_processes(
    client: durable.Client, dsn: str, flow_workers: Path
) -> None:
    await client.configure_task_queue(flow_app.QUEUE, max_running_activities=3)
    handles = [await client.start(flow_app.fan_out, f"f{n}", 15) for n in range(2)]
    for handle in handles:
        assert len(await handle.result(timeout=60)) == 15
    runs = await _runs(dsn)
    assert len(runs) == 30 and len({r["pid"] for r in runs}) == 2
    assert _most_at_once(runs) == 3
    assert (await client.describe_task_queue(flow_app.QUEUE)).running == 0


async def test_a_rate_limit_holds_across_worker_processes(
    client: durable.Client, dsn: str, flow_workers: Path
) -> None:
    limit = durable.RateLimit(5, per=timedelta(seconds=1))
    await client.configure_task_queue(flow_app.QUEUE, rate_limit=limit)
    handle = await client.start(flow_app.fan_out, "r", 20)
    assert len(await handle.result(timeout=60)) == 20
    starts = [r["started"] for r in await _runs(dsn)]
    # a token bucket of 5 refilled at 5 per second: at most 5 + 5 t starts in any t seconds
    for i, first in enumerate(starts):
        for j in range(i, len(starts)):
            seconds = (starts[j] - first).total_seconds()
            assert j - i + 1 <= 5 + 5 * seconds + 1, (i, j, seconds)


async def test_a_limited_queue_never_runs_an_activity_at_once_past_its_limit(
    client: durable.Client, dsn: str
) -> None:
    """The worker that commits a step normally runs the activities it schedules at once
    (eager); on a queue with a running limit they wait for a claim."""
    await flow_app.create_table(dsn)
    await client.configure_task_queue(flow_app.QUEUE, max_running_activities=1)
    os.environ["FLOW_DSN"] = dsn
    async with durable.Worker(
        client, flow_app.QUEUE, workflows=[flow_app.fan_out], activities=[flow_app.hold]
    ):
        handle = await client.start(flow_app.fan_out, "e", 6)
        assert len(await handle.result(timeout=60)) == 6
    assert _most_at_once(await _runs(dsn)) == 1


# ------------------------------------------------------------------ plans
def _rows_filtered_out(plan: dict[str, Any]) -> int:
    own = int(plan.get("Rows Removed by Filter", 0)) + int(
        plan.get("Rows Removed by Index Recheck", 0)
    )
    return own + sum(_rows_filtered_out(p) for p in plan.get("Plans", []))


def _rows_read(plan: dict[str, Any]) -> int:
    own = int(plan.get("Actual Rows", 0)) * int(plan.get("Actual Loops", 1))
    return own + sum(_rows_read(p) for p in plan.get("Plans", []))


async def _explained(client: durable.Client, sql: str, *args: Any) -> dict[str, Any]:
    async with client.store.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            explained = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
        finally:
            await transaction.rollback()
    plan: dict[str, Any] = json.loads(explained)[0]["Plan"]
    return plan


async def test_a_claim_reads_only_what_it_takes_from_a_deep_backlog(
    client: durable.Client,
) -> None:
    """100,000 due activity attempts over five priorities, and as many waiting for a retry
    (visible later): a claim of 10 reads each priority's oldest from its index range and
    nothing else, with or without aging; so does a claim of unowned runs."""
    pool = client.store.pool
    await pool.execute(
        "INSERT INTO durable.activity_tasks (workflow_id, run_id, seq, task_queue, activity_name,"
        " args, priority, visible_at) SELECT 'w' || i, gen_random_uuid(), 1, 'deep', 'act', '',"
        " 1 + i % 5, now() + CASE WHEN i % 2 = 0 THEN interval '1 hour' ELSE -interval '1 hour'"
        " END + i * interval '1 millisecond' FROM generate_series(1, 200000) AS i"
    )
    await pool.execute(
        "INSERT INTO durable.workflows (workflow_id, run_id, workflow_name, task_queue, status,"
        " ready_at, priority) SELECT 'r' || i, gen_random_uuid(), 'wf', 'deep', 'pending',"
        " now() + CASE WHEN i % 2 = 0 THEN interval '1 hour' ELSE -interval '1 hour' END,"
        " 1 + i % 5 FROM generate_series(1, 20000) AS i"
    )
    await pool.execute("ANALYZE durable.activity_tasks")
    await pool.execute("ANALYZE durable.workflows")
    worker = str(uuid.uuid4())
    for aging in (None, timedelta(seconds=1)):
        await client.configure_task_queue("deep", priority_aging=aging)
        plan = await _explained(client, _CLAIM_ACTIVITIES_SQL, "deep", worker, ["act"], 10)
        assert _rows_filtered_out(plan) == 0, json.dumps(plan, indent=1)
        assert _rows_read(plan) < 500, json.dumps(plan, indent=1)
        args = ["deep", worker, ["wf"], [], 10, [], None]
        plan = await _explained(client, _CLAIM_WORKFLOWS_SQL, *args)
        assert _rows_filtered_out(plan) == 0, json.dumps(plan, indent=1)
        assert _rows_read(plan) < 500, json.dumps(plan, indent=1)
