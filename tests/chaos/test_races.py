"""Deterministic reproductions of failures the chaos run hits only by luck.

Each test opens one window on purpose (a local activity keeps a workflow task open while the
client acts; an activity makes the database refuse connections just as it returns; a claim
commits and its reply is lost), so the outcome does not depend on timing. Each failed before
the fix of its finding in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

import durable
from durable import WorkflowContext, activity, workflow
from durable._store import Store, runs

from ..conftest import _with_database, wait_for

QUEUE = "races"


@activity
async def linger(seconds: float) -> None:
    await asyncio.sleep(seconds)


@workflow
async def rounds_until_cancelled(ctx: WorkflowContext, round_: int) -> int:
    if round_ == 1:
        await ctx.wait_signal("next")
        ctx.continue_as_new(round_ + 1)
    await ctx.wait_signal("never")  # ends only by cancellation
    return round_


async def test_cancel_during_continue_as_new_reaches_the_next_run(client: durable.Client) -> None:
    """A cancel request accepted while the step that continues the run as new is in flight
    (its commit waits for a lock on history) must reach the next run."""
    async with durable.Worker(
        client,
        task_queue=QUEUE,
        workflows=[rounds_until_cancelled],
        poll_interval=timedelta(milliseconds=100),
    ):
        handle = await client.start(rounds_until_cancelled, 1, id="cancel-can", task_queue=QUEUE)
        await wait_for(lambda: _status_is(client, "cancel-can", "running"))
        async with client.store.pool.acquire() as blocker, blocker.transaction():
            await blocker.execute("LOCK TABLE durable.history IN SHARE MODE")
            await handle.signal("next")
            await asyncio.sleep(0.5)  # the step continuing as new waits to append its history
            cancel = asyncio.create_task(handle.cancel())
            await asyncio.sleep(0.5)
        await cancel
        await wait_for(lambda: _runs_closed(client, "cancel-can"), timeout=10)
        try:
            await handle.result(timeout=10)
        except durable.WorkflowCancelledError:
            return
        except durable.TimeoutError:
            pass
        described = await client.get_handle("cancel-can").describe()
        history = [e.type for e in await client.get_handle("cancel-can").history()]
        raise AssertionError(
            f"handle.cancel() returned while run 1 was running, but the request was dropped "
            f"when run 1 continued as new: the latest run is {described.status}, its history "
            f"{history} has no CANCEL_REQUESTED"
        )


async def _status_is(client: durable.Client, workflow_id: str, status: str) -> bool:
    return (await client.get_handle(workflow_id).describe()).status == status


async def _runs_closed(client: durable.Client, workflow_id: str) -> bool:
    rows = await client.store.pool.fetch(
        "SELECT status FROM durable.workflows WHERE workflow_id = $1", workflow_id
    )
    return any(r["status"] == "continued_as_new" for r in rows)


# ------------------------------------------------------------------ a database blip
_BLIP = "CHAOS_BLIP_DSN"  # the server's admin DSN and the database to cut, for cut_database()
BLIP_SECONDS = 1.0


@activity
async def cut_database() -> str:
    """The first time: make the workflow database refuse connections for BLIP_SECONDS and
    drop the open ones, then return: the worker has to record this outcome during the blip."""
    if _background:
        return "cut"
    admin_dsn, database = os.environ[_BLIP].split(" ")
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = $1 AND pid <> pg_backend_pid()",
        database,
    )

    async def reopen() -> None:
        await asyncio.sleep(BLIP_SECONDS)
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()

    _background.add(asyncio.ensure_future(reopen()))
    return "cut"


_background: set[asyncio.Future[None]] = set()


@workflow
async def one_activity(ctx: WorkflowContext) -> str:
    return await ctx.activity(cut_database)


async def test_activity_outcome_survives_a_database_blip(
    server_dsn: str, dsn: str, client: durable.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An activity that finished while the database was briefly unavailable is recorded
    (or retried) once the database is back: its workflow must not hang."""
    database = dsn.partition("://")[2].partition("/")[2].partition("?")[0]
    monkeypatch.setenv(_BLIP, f"{_with_database(server_dsn, 'postgres')} {database}")
    async with durable.Worker(
        client,
        task_queue=QUEUE,
        workflows=[one_activity],
        activities=[cut_database],
        lease_ttl=timedelta(seconds=2),
        poll_interval=timedelta(milliseconds=100),
    ) as worker:
        handle = await client.start(one_activity, id="blip", task_queue=QUEUE)
        await asyncio.sleep(BLIP_SECONDS + 1.0)  # the blip is over
        await asyncio.gather(*_background)
        assert _background, "cut_database ran"
        try:
            assert await handle.result(timeout=15) == "cut"
        except durable.TimeoutError:
            task = await client.store.pool.fetchrow(
                "SELECT owner, attempt, deadline FROM durable.activity_tasks"
                " WHERE workflow_id = 'blip'"
            )
            held = task is not None and str(task["owner"]) == worker.worker_id
            raise AssertionError(
                "the workflow hangs: the worker could not record cut_database's outcome during "
                "the blip and dropped it, and the task "
                + (
                    f"is still held by the live worker (attempt {task['attempt']}, deadline "
                    f"{task['deadline']}), so no reaper will retry it"
                    if held and task
                    else f"is {dict(task) if task else 'gone'}"
                )
            ) from None


# ------------------------------------------------------------------ a worker lost during a local activity
@workflow
async def slow_local_step(ctx: WorkflowContext) -> str:
    await ctx.local_activity(linger, 3.0)
    return "done"


async def test_local_activity_survives_losing_its_worker(client: durable.Client) -> None:
    """A worker that stops while it runs a workflow's local activity must leave the run to
    another worker (here it stops gracefully, after a short grace; a kill -9 or a failed
    commit after the local activity leave the run in the same state)."""

    def worker() -> durable.Worker:
        return durable.Worker(
            client,
            task_queue=QUEUE,
            workflows=[slow_local_step],
            activities=[linger],
            lease_ttl=timedelta(seconds=1),
            poll_interval=timedelta(milliseconds=100),
            shutdown_grace=timedelta(milliseconds=200),
        )

    async with worker():
        handle = await client.start(slow_local_step, id="local-lost", task_queue=QUEUE)
        await asyncio.sleep(1.0)  # the local activity is running
    async with worker():
        try:
            assert await handle.result(timeout=10) == "done"
        except durable.TimeoutError:
            row = await client.store.pool.fetchrow(
                "SELECT status, ready_at, owner, next_seq FROM durable.workflows"
                " WHERE workflow_id = 'local-lost'"
            )
            raise AssertionError(
                "the workflow hangs after its worker stopped during a local activity: the run "
                f"is {dict(row)}: the commit before the local activity set ready_at to the next "
                "timer (none), so the run is never due and no worker claims it again"
            ) from None


# ------------------------------------------------------------------ a claim whose reply is lost
@activity
async def quick() -> str:
    return "ran"


@workflow
async def one_quick_activity(ctx: WorkflowContext) -> str:
    return await ctx.activity(quick)


def _lose_first_reply(
    monkeypatch: pytest.MonkeyPatch, store: Store, method: str, claimed: Any
) -> None:
    """The first call of ``store.method`` that claims an activity commits, then fails as if
    the connection died before the reply came back (what a Postgres crash does mid-commit)."""
    real = getattr(store, method)
    lost: list[bool] = []

    async def commit_then_lose_reply(*args: Any, **kwargs: Any) -> Any:
        result = await real(*args, **kwargs)
        if not lost and claimed(result):
            lost.append(True)
            raise asyncpg.exceptions.ConnectionDoesNotExistError(
                "connection was closed in the middle of operation"
            )
        return result

    monkeypatch.setattr(store, method, commit_then_lose_reply)


@pytest.mark.parametrize(
    ("method", "claimed"),
    [
        ("commit_workflow_task", lambda result: bool(result[0])),  # eager activities
        ("claim_activity_tasks", lambda result: bool(result.tasks)),
    ],
    ids=["eager", "polled"],
)
async def test_activity_claim_with_a_lost_reply_is_retried(
    client: durable.Client, monkeypatch: pytest.MonkeyPatch, method: str, claimed: Any
) -> None:
    """An activity claimed for a worker whose claim reply never arrived (the commit went
    through, the connection died before the answer) is held by a live worker that does not
    run it; it must be given back and run, not wait for that worker to exit."""
    _lose_first_reply(monkeypatch, client.store, method, claimed)
    # "polled": the workflow worker does not serve the activity, so nothing is claimed eagerly
    workers = (
        [dict(workflows=[one_quick_activity], activities=[quick])]
        if method == "commit_workflow_task"
        else [dict(workflows=[one_quick_activity]), dict(activities=[quick])]
    )
    async with contextlib.AsyncExitStack() as stack:
        for options in workers:
            await stack.enter_async_context(
                durable.Worker(
                    client,
                    task_queue=QUEUE,
                    lease_ttl=timedelta(seconds=1),
                    poll_interval=timedelta(milliseconds=100),
                    **options,  # type: ignore[arg-type]
                )
            )
        handle = await client.start(one_quick_activity, id=f"lost-{method}", task_queue=QUEUE)
        try:
            assert await handle.result(timeout=10) == "ran"
        except durable.TimeoutError:
            task = await client.store.pool.fetchrow(
                "SELECT owner, attempt, deadline FROM durable.activity_tasks"
                " WHERE workflow_id = $1",
                f"lost-{method}",
            )
            raise AssertionError(
                f"the workflow hangs: the reply to {method} was lost and the activity task is "
                f"{dict(task) if task else 'gone'}: held by a live worker that never started "
                "it, without a deadline, so no reaper retries it"
            ) from None


# ------------------------------------------------------------------ a message racing a continue-as-new
@workflow
async def continues_on_go(ctx: WorkflowContext, round_: int) -> str:
    if round_ == 1:
        await ctx.wait_signal("go")
        ctx.continue_as_new(2)
    ctx.on_update("poke", lambda: "poked")
    return str(await ctx.wait_signal("after"))


async def _send(handle: durable.WorkflowHandle[Any], message: str) -> Any:
    if message == "cancel":
        await handle.cancel()
        with pytest.raises(durable.WorkflowCancelledError):
            await handle.result(timeout=10)
        return "cancelled"
    if message == "signal":
        await handle.signal("after", "signalled")
        return await handle.result(timeout=10)
    return await handle.update("poke", timeout=10)


@pytest.mark.parametrize("message", ["cancel", "signal", "update"])
async def test_message_to_a_run_closing_as_it_is_sent_reaches_the_next_run(
    client: durable.Client, monkeypatch: pytest.MonkeyPatch, message: str
) -> None:
    """A client reads the workflow's open run, the run continues as new, then the client
    posts to it: the message must go to the new run, not be dropped with the closed one (seen
    in the chaos run: a cancel accepted while the run continued as new never arrived)."""
    async with durable.Worker(
        client,
        task_queue=QUEUE,
        workflows=[continues_on_go],
        poll_interval=timedelta(milliseconds=100),
    ):
        handle = await client.start(continues_on_go, 1, id=f"race-{message}", task_queue=QUEUE)
        async with client.store.pool.acquire() as conn:
            stale = await runs._latest_run(conn, handle.workflow_id)
        await handle.signal("go")
        await wait_for(lambda: _runs_closed(client, handle.workflow_id), timeout=10)
        real = runs._latest_run
        reads: list[str] = []

        async def stale_first(conn: asyncpg.Connection, workflow_id: str, **kw: Any) -> Any:
            reads.append(workflow_id)
            return stale if len(reads) == 1 else await real(conn, workflow_id, **kw)

        monkeypatch.setattr(runs, "_latest_run", stale_first)
        try:  # a handle without a run id: it reads the latest run (the stale one, first)
            outcome = await _send(client.get_handle(handle.workflow_id), message)
        except durable.TimeoutError:
            raise AssertionError(
                f"the {message} was posted to run 1 after it continued as new and was "
                "dropped: run 2 never received it"
            ) from None
        assert outcome == {"cancel": "cancelled", "signal": "signalled", "update": "poked"}[message]
