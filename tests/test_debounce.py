"""Debounced starts (API.md, "Priorities, fairness and limits": debounce): later starts of an
id whose debounced run has not begun replace its arguments and move its start, up to
``debounce_max`` after the first; once it has begun, starts follow the id policies."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest

import durable
from durable import WorkflowContext, workflow
from durable.testing import WorkflowEnvironment

from .conftest import wait_for

SECOND = timedelta(seconds=1)


@workflow
async def reindex(ctx: WorkflowContext, value: str) -> list[str]:
    """Its argument, and the time of its first step (when the run began)."""
    return [value, ctx.now().isoformat()]


@workflow
async def reindex_slowly(ctx: WorkflowContext, value: str) -> str:
    """Its argument, once signalled: stays running until then."""
    await ctx.wait_signal("go")
    return value


def _began(result: list[str]) -> datetime:
    return datetime.fromisoformat(result[1])


async def _run_ids(client: durable.Client) -> list[str]:
    return [d.run_id async for d in client.list()]


async def _first_args(handle: durable.WorkflowHandle[Any]) -> Any:
    """The arguments the run's WORKFLOW_STARTED event holds."""
    started = (await handle.history())[0]
    assert started.type == "WORKFLOW_STARTED"
    positional, _ = started.args
    return positional


# ---------------------------------------------------------------------------- semantics


async def test_rapid_starts_run_once_with_the_last_arguments(server_dsn: str) -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[reindex], dsn=server_dsn) as env:
        client, queue = env.client, env.task_queue
        first = await client.start(reindex, "a", id="doc", task_queue=queue, debounce=5 * SECOND)
        await env.sleep(1)
        second = await client.start(reindex, "b", id="doc", task_queue=queue, debounce=5 * SECOND)
        await env.sleep(1)
        last_start = env.now()
        third = await client.start(reindex, "c", id="doc", task_queue=queue, debounce=5 * SECOND)
        assert (await third.describe()).status == "pending"
        assert first.run_id == second.run_id == third.run_id
        value, began = await first.result(timeout=30)
        assert value == "c"
        assert _began([value, began]) >= last_start + 5 * SECOND  # moved by the last start
        assert await _run_ids(client) == [first.run_id]
        assert await _first_args(first) == ["c"]


async def test_debounce_max_caps_how_far_starts_push_the_run(server_dsn: str) -> None:
    """A start every 0.3 s with debounce 1 s would push the run forever; debounce_max 2 s
    begins it 2 s after the first start, while starts still come."""
    async with WorkflowEnvironment.start_time_skipping(workflows=[reindex], dsn=server_dsn) as env:
        client, queue = env.client, env.task_queue
        starts: list[tuple[datetime, str, str]] = []  # (time, value, run id)
        for n in range(12):
            at = env.now()
            try:
                handle = await client.start(
                    reindex,
                    f"v{n}",
                    id="doc",
                    task_queue=queue,
                    debounce=SECOND,
                    debounce_max=2 * SECOND,
                )
            except durable.WorkflowAlreadyStartedError:
                pass  # (the first run is running: a start then follows the id policies)
            else:
                assert handle.run_id is not None
                starts.append((at, f"v{n}", handle.run_id))
            await env.sleep(0.3)
        run = starts[0][2]
        handle = client.get_handle("doc", run_id=run)
        value, began = await handle.result(timeout=30)
        opened = (await handle.describe()).started_at
        assert abs(_began([value, began]) - (opened + 2 * SECOND)) < timedelta(milliseconds=1)
        applied = [(at, v) for at, v, r in starts if r == run]
        assert value == applied[-1][1]  # the last start applied to it
        last_applied = applied[-1][0]
        assert _began([value, began]) < last_applied + SECOND  # the cap, not the debounce
        assert any(r != run for _, _, r in starts)  # starts went on: the cap began the run


async def test_a_start_after_the_run_began_follows_the_id_policies(
    client: durable.Client,
) -> None:
    debounce = timedelta(milliseconds=50)
    async with durable.Worker(client, workflows=[reindex_slowly]):
        handle = await client.start(reindex_slowly, "first", id="doc", debounce=debounce)
        await wait_for(lambda: _status_is(handle, "running"))
        with pytest.raises(durable.WorkflowAlreadyStartedError):
            await client.start(reindex_slowly, "second", id="doc", debounce=debounce)
        same = await client.start(
            reindex_slowly, "third", id="doc", debounce=debounce, id_conflict_policy="use_existing"
        )
        assert same.run_id == handle.run_id
        assert await _first_args(handle) == ["first"]  # unchanged: it has begun
        fresh = await client.start(
            reindex_slowly,
            "fourth",
            id="doc",
            debounce=debounce,
            id_conflict_policy="terminate_existing",
        )
        assert fresh.run_id != handle.run_id
        assert (await handle.describe()).status == "terminated"
        await wait_for(lambda: _status_is(fresh, "running"))
        await fresh.signal("go")
        assert await fresh.result(timeout=30) == "fourth"


async def test_an_open_run_that_is_not_debounced_follows_the_id_policies(
    client: durable.Client,
) -> None:
    delayed = await client.start(reindex, "delayed", id="doc", start_delay=timedelta(hours=1))
    with pytest.raises(durable.WorkflowAlreadyStartedError):
        await client.start(reindex, "debounced", id="doc", debounce=SECOND)
    await client.start(reindex_slowly, "other workflow", id="doc2", debounce=timedelta(hours=1))
    with pytest.raises(durable.WorkflowAlreadyStartedError):
        await client.start(reindex, "same id", id="doc2", debounce=SECOND)
    assert await _first_args(delayed) == ["delayed"]
    assert len(await _run_ids(client)) == 2


async def test_later_starts_replace_attributes_and_execution_timeout(server_dsn: str) -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[reindex], dsn=server_dsn) as env:
        client, queue = env.client, env.task_queue
        handle = await client.start(
            reindex,
            "a",
            id="doc",
            task_queue=queue,
            debounce=5 * SECOND,
            attributes={"version": 1},
            execution_timeout=SECOND,  # would time the run out before it begins
        )
        await client.start(
            reindex,
            "b",
            id="doc",
            task_queue=queue,
            debounce=5 * SECOND,
            attributes={"version": 2},
        )
        assert (await handle.describe()).attributes == {"version": 2}
        assert [v async for v in _values(client, {"version": 1})] == []
        value, _ = await handle.result(timeout=30)  # not timed out: the timeout went
        assert value == "b"


async def _values(client: durable.Client, attributes: dict[str, Any]) -> AsyncIterator[str]:
    async for d in client.list(attributes=attributes):
        yield d.run_id


async def test_concurrent_debounced_starts_make_one_run(client: durable.Client) -> None:
    values = [f"v{n}" for n in range(12)]
    handles = await asyncio.gather(
        *(client.start(reindex, v, id="doc", debounce=timedelta(hours=1)) for v in values)
    )
    assert len({h.run_id for h in handles}) == 1
    assert await _run_ids(client) == [handles[0].run_id]
    (value,) = await _first_args(handles[0])
    assert value in values


async def test_an_attempt_made_again_applies_the_start_once(client: durable.Client) -> None:
    """A debounced start whose connection broke after it was applied is attempted again with
    the same id (Client._start): it returns the run it was applied to, even once that run
    has begun and closed, and opens no run of its own."""
    first = await client.start(reindex, "a", id="doc", debounce=timedelta(milliseconds=300))
    request, _ = await client._start_request(
        reindex,
        ("b",),
        "doc",
        None,
        "allow_duplicate",
        "fail",
        None,
        None,
        None,
        debounce=timedelta(milliseconds=300),
    )
    start_id = "6a0e4b0c-3c7e-4f53-9d5e-2f1f7f0e6a11"
    applied, opened = await client.store.start_workflow(request, start_id)
    assert (applied, opened) == (first.run_id, False)
    async with durable.Worker(client, workflows=[reindex]):
        assert (await first.result(timeout=30))[0] == "b"
    again = await client.store.start_workflow(request, start_id, again=True)
    assert again == (first.run_id, False)
    assert await _run_ids(client) == [first.run_id]


def _debounced_from_a_thread(dsn: str) -> list[str]:
    with durable.SyncClient.connect(dsn) as client:
        handles = [
            client.start(reindex, value, id="doc", debounce=timedelta(hours=1))
            for value in ("a", "b")
        ]
        return [h.run_id for h in handles if h.run_id is not None]


async def test_the_sync_client_debounces_too(dsn: str, client: durable.Client) -> None:
    first, second = await asyncio.to_thread(_debounced_from_a_thread, dsn)
    assert first == second
    assert await _first_args(client.get_handle("doc")) == ["b"]


async def _status_is(handle: durable.WorkflowHandle[Any], status: str) -> bool:
    return (await handle.describe()).status == status


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("options", "error", "names"),
    [
        ({"debounce": SECOND}, ValueError, "needs id="),
        ({"id": "d", "debounce": timedelta(0)}, ValueError, "debounce must be a positive"),
        ({"id": "d", "debounce": -SECOND}, ValueError, "debounce must be a positive"),
        ({"id": "d", "debounce": 5}, TypeError, "debounce must be a datetime.timedelta"),
        (
            {"id": "d", "debounce": 5 * SECOND, "debounce_max": SECOND},
            ValueError,
            "debounce_max must be at least debounce",
        ),
        ({"id": "d", "debounce_max": SECOND}, ValueError, "debounce_max=.* needs debounce"),
        (
            {"id": "d", "debounce": SECOND, "start_delay": SECOND},
            ValueError,
            "start_delay=.* cannot be combined with debounce",
        ),
    ],
)
async def test_bad_debounce_options_are_refused_before_anything_is_written(
    client: durable.Client, options: dict[str, Any], error: type[Exception], names: str
) -> None:
    await client.start(reindex, "pending", id="d", debounce=timedelta(hours=1))
    with pytest.raises(error, match=names):
        await client.start(reindex, "new", **options)
    with pytest.raises(error, match=names):
        await client.start("reindex", "new", **options)  # by name: refused before the read
    assert len(await _run_ids(client)) == 1
    assert await _first_args(client.get_handle("d")) == ["pending"]


# ---------------------------------------------------------------------------- races


async def test_a_claim_that_read_the_first_event_before_a_debounce_runs_the_new_one(
    client: durable.Client,
) -> None:
    """A claim whose snapshot holds the run's old first event, and that locks the run only
    after a debounced start rewrote it, must not run the old arguments. Made certain here
    by a trigger that rewrites the event and moves the fence (as _DEBOUNCE_RUN_SQL does)
    inside the claim, after its snapshot was taken."""
    handle = await client.start(reindex, "old", id="doc", debounce=timedelta(milliseconds=1))
    await client.start(reindex, "new", id="doc2", debounce=timedelta(hours=1))
    async with client.store.pool.acquire() as conn:
        new_body = await conn.fetchval(
            "SELECT body FROM durable.history WHERE workflow_id = 'doc2' AND seq = 1"
        )
        await conn.execute(_REWRITE_WHEN_CLAIMED)
        await conn.execute("INSERT INTO durable.test_body VALUES ($1)", new_body)
    async with durable.Worker(client, workflows=[reindex]):
        value, _ = await handle.result(timeout=30)
    assert value == "new"  # (the body of doc2's run names its own run as seed: unused here)


_REWRITE_WHEN_CLAIMED = """
CREATE TABLE durable.test_body (body bytea);
CREATE FUNCTION durable.test_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.workflow_id = 'doc' AND OLD.owner IS NULL AND NEW.owner IS NOT NULL THEN
        UPDATE durable.history SET body = (SELECT body FROM durable.test_body)
        WHERE workflow_id = 'doc' AND seq = 1;
        NEW.fence := NEW.fence + 1;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_rewrite BEFORE UPDATE ON durable.workflows
    FOR EACH ROW EXECUTE FUNCTION durable.test_rewrite();
"""


async def test_many_starts_while_a_worker_claims_lose_and_duplicate_nothing(
    client: durable.Client,
) -> None:
    """Starts of a few ids, debounced by a few milliseconds, while a worker claims their
    runs: every run ran once, with the arguments its history records, which some start
    applied to it; no value ran twice; no run was left behind."""
    ids = [f"doc-{n}" for n in range(4)]
    returned: dict[str, set[str]] = defaultdict(set)  # run id -> values of its starts
    refused = 0

    async def start(workflow_id: str, n: int) -> None:
        nonlocal refused
        await asyncio.sleep(random.uniform(0, 0.3))
        value = f"{workflow_id}:{n}"
        try:
            handle = await client.start(
                reindex, value, id=workflow_id, debounce=timedelta(milliseconds=5)
            )
        except durable.WorkflowAlreadyStartedError:
            refused += 1  # its run was running
        else:
            assert handle.run_id is not None
            returned[handle.run_id].add(value)

    async with durable.Worker(client, workflows=[reindex]):
        await asyncio.gather(*(start(i, n) for i in ids for n in range(40)))
        runs = {d.run_id: d.workflow_id async for d in client.list()}
        assert sorted(runs) == sorted(returned)
        ran: list[str] = []
        for run, workflow_id in runs.items():
            handle = client.get_handle(workflow_id, run_id=run)
            value, _ = await handle.result(timeout=30)
            assert [value] == await _first_args(handle)
            assert value in returned[run]
            ran.append(value)
    assert len(ran) == len(set(ran))
    assert sum(len(values) for values in returned.values()) + refused == len(ids) * 40
