"""Pinned deployments (API.md, "Operating running workflows"): a run is pinned to the build
of the worker that started it, and only workers of that build (or listing it as compatible)
claim it; a rolling deploy with two incompatible versions of one workflow, on real
Postgres with real workers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import durable
from durable import WorkflowContext, activity, workflow

from .conftest import wait_for

QUEUE = "deploy-q"


@activity
async def old_step() -> str:
    return "old"


@activity
async def new_step() -> str:
    return "new"


@workflow(name="deploy")
async def deploy_v1(ctx: WorkflowContext) -> str:
    ctx.on_query("version", lambda: "v1")
    await ctx.wait_signal("go")
    return await ctx.activity(old_step)


@workflow(name="deploy")
async def deploy_v2(ctx: WorkflowContext) -> str:  # replays no history of v1's
    ctx.on_query("version", lambda: "v2")
    first = await ctx.activity(new_step)
    await ctx.wait_signal("go")
    return first


def _worker(client: durable.Client, version: int, **options: Any) -> durable.Worker:
    return durable.Worker(
        client,
        task_queue=QUEUE,
        workflows=[deploy_v1 if version == 1 else deploy_v2],
        activities=[old_step, new_step],
        poll_interval=timedelta(milliseconds=100),
        **options,
    )


async def _waiting(handle: durable.WorkflowHandle[Any]) -> bool:
    described = await handle.describe()
    return described.status == "running" and not described.pending_activities


async def test_a_rolling_deploy_never_hands_an_old_run_to_new_code(
    client: durable.Client,
) -> None:
    async with _worker(client, 1, build_id="v1"):
        old = [await client.start("deploy", id=f"old-{i}", task_queue=QUEUE) for i in range(3)]
        for handle in old:
            await wait_for(lambda h=handle: _waiting(h))  # type: ignore[misc]
    assert {(await h.describe()).build_id for h in old} == {"v1"}
    async with _worker(client, 2, build_id="v2"):
        new = await client.start("deploy", id="new-0", task_queue=QUEUE)
        await wait_for(lambda: _waiting(new))
        for handle in [*old, new]:
            await handle.signal("go")
        assert await new.result(timeout=20) == "new"
        assert (await new.describe()).build_id == "v2"
        with pytest.raises(durable.TimeoutError):  # no v1 worker: nobody answers for v1
            await old[0].query("version", timeout=1.0)
        described = await old[0].describe()
        assert (described.status, described.last_error) == ("running", None)
        async with _worker(client, 1, build_id="v1"):  # the old fleet drains its runs
            for handle in old[:2]:
                assert await handle.result(timeout=20) == "old"
    async with _worker(client, 1, build_id="v1.1", compatible_builds=["v1"]):
        assert await old[2].result(timeout=20) == "old"


async def test_a_worker_without_a_build_leaves_pinned_runs_alone(client: durable.Client) -> None:
    async with _worker(client, 1, build_id="v1"):
        pinned = await client.start("deploy", id="pinned", task_queue=QUEUE)
        await wait_for(lambda: _waiting(pinned))
    async with _worker(client, 1):  # unversioned
        free = await client.start("deploy", id="free", task_queue=QUEUE)
        await wait_for(lambda: _waiting(free))
        assert (await free.describe()).build_id is None
        await pinned.signal("go")
        await free.signal("go")
        assert await free.result(timeout=20) == "old"
        with pytest.raises(durable.TimeoutError):
            await pinned.result(timeout=1.0)
    async with _worker(client, 1, build_id="v1"):
        assert await pinned.result(timeout=20) == "old"


def test_bad_build_options_are_refused(client: durable.Client) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"compatible_builds": ["v1"]}, "needs build_id"),
        ({"build_id": "v2", "compatible_builds": "v1"}, "must be a list"),
        ({"build_id": ""}, "build_id"),
        ({"build_id": "v2", "compatible_builds": [3]}, "compatible_builds"),
    ]
    for options, message in cases:
        with pytest.raises(ValueError, match=message):
            _worker(client, 1, **options)


async def test_a_run_reset_from_the_start_is_taken_by_the_new_build(
    client: durable.Client,
) -> None:
    async with _worker(client, 1, build_id="v1"):
        old = await client.start("deploy", id="moved", task_queue=QUEUE)
        await wait_for(lambda: _waiting(old))
    async with _worker(client, 2, build_id="v2"):
        moved = await old.reset(seq=1, reason="onto v2")
        await wait_for(lambda: _waiting(moved))
        await moved.signal("go")
        assert await moved.result(timeout=20) == "new"
        assert (await moved.describe()).build_id == "v2"
