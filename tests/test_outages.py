"""Client calls while the database is away (issue "reliability"): on a server of the suite's
own, stopped (connections refused) and frozen (SIGSTOP: connections hang), every client
operation raises a DurableError subclass within its deadline; writes carry request ids and
apply once, whether sent again by the caller or retried by the client."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest

import durable
from durable import WorkflowContext, workflow
from durable._store import Store, apply_migrations
from durable._store.migrations import _MIGRATION_LOCK

from .chaos.server import PostgresServer, unavailable
from .conftest import wait_for

CALL_TIMEOUT = 1.5
SLACK = 2.0  # seconds past the deadline a call may take to come back (a loaded machine)

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))


@workflow
async def inbox_wf(ctx: WorkflowContext) -> list[str]:
    got: list[str] = []
    ctx.on_signal("add", got.append)
    ctx.on_query("got", lambda: list(got))

    def add_now(item: str) -> int:
        got.append(item)
        return len(got)

    ctx.on_update("add_now", add_now)
    await ctx.wait_until(lambda: "stop" in got)
    return got


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def prepared(server: PostgresServer) -> str:
    conn = await asyncpg.connect(server.dsn())
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    return server.dsn()


@pytest.fixture
async def client(prepared: str) -> AsyncIterator[durable.Client]:
    client = await durable.Client.connect(prepared, call_timeout=CALL_TIMEOUT)
    yield client
    await client.close()


def _postgres_pids(server: PostgresServer) -> list[int]:
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(
        ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False
    ).stdout.split()
    return [postmaster, *map(int, children)]


class Outage:
    """Takes the server away (stopped or frozen) and brings it back."""

    def __init__(self, server: PostgresServer, kind: str) -> None:
        self.server = server
        self.kind = kind
        self.frozen: list[int] = []

    def begin(self) -> None:
        if self.kind == "stopped":
            self.server.stop_immediate()
        else:
            self.frozen = _postgres_pids(self.server)
            for pid in self.frozen:
                os.kill(pid, signal.SIGSTOP)

    def end(self) -> None:
        if self.kind == "stopped":
            self.server.start_again()
        else:
            for pid in self.frozen:
                os.kill(pid, signal.SIGCONT)


OPERATIONS: dict[str, Callable[[durable.Client, durable.WorkflowHandle[Any]], Awaitable[Any]]] = {
    "start": lambda c, h: c.start(inbox_wf),
    "signal_with_start": lambda c, h: c.signal_with_start(
        inbox_wf, id=h.workflow_id, signal="add", signal_args=("x",)
    ),
    "signal": lambda c, h: h.signal("add", "x"),
    "query": lambda c, h: h.query("got", timeout=30),
    "update": lambda c, h: h.update("add_now", "x", timeout=30),
    "cancel": lambda c, h: h.cancel(),
    "terminate": lambda c, h: h.terminate(),
    "describe": lambda c, h: h.describe(),
    "history": lambda c, h: h.history(),
    "result": lambda c, h: h.result(),
    "list": lambda c, h: _first_listed(c),
}


async def _first_listed(client: durable.Client) -> Any:
    async for description in client.list():
        return description
    return None


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize("kind", ["stopped", "frozen"])
async def test_every_client_call_fails_as_a_durable_error_within_its_deadline(
    server: PostgresServer, client: durable.Client, kind: str, operation: str
) -> None:
    """Stopped: DatabaseUnavailableError (refused connections, retried until the deadline);
    frozen: durable.TimeoutError (or DatabaseUnavailableError); never a raw asyncpg or OS
    error, never a hang."""
    handle = await client.start(inbox_wf)
    await client.get_handle(handle.workflow_id).describe()  # the pool has a connection
    outage = Outage(server, kind)
    outage.begin()
    await asyncio.sleep(0.2)  # the client sees its connections closed (stopped) or not (frozen)
    try:
        began = time.monotonic()
        with pytest.raises(durable.DurableError) as caught:
            await asyncio.wait_for(OPERATIONS[operation](client, handle), CALL_TIMEOUT + 30)
        took = time.monotonic() - began
    finally:
        outage.end()
    error = caught.value
    print(f"{kind}: {operation} raised {type(error).__name__} after {took:.2f} s: {error}")
    assert isinstance(error, durable.DatabaseUnavailableError | durable.TimeoutError)
    assert took <= CALL_TIMEOUT + SLACK
    assert operation in str(error)
    if kind == "stopped":
        assert isinstance(error, durable.DatabaseUnavailableError)
        assert error.operation == operation
        assert error.may_have_taken_effect is False  # nothing reached the server


@pytest.mark.parametrize("when", ["before", "while"])
async def test_result_with_a_timeout_says_the_database_is_unavailable(
    server: PostgresServer, prepared: str, when: str
) -> None:
    """result(timeout=2) with the server stopped, before the call or while it waits, with a
    call_timeout longer than that: DatabaseUnavailableError, not "did not finish within
    2 s" (nobody can know whether it did)."""
    async with await durable.Client.connect(prepared, call_timeout=30) as client:
        handle = await client.start(inbox_wf)
        await handle.describe()  # the pool has a connection
        waiting = asyncio.create_task(handle.result(timeout=2)) if when == "while" else None
        await asyncio.to_thread(server.stop_immediate)
        try:
            with pytest.raises(durable.DatabaseUnavailableError) as caught:
                await (waiting or handle.result(timeout=2))
        finally:
            await asyncio.to_thread(server.start_again)
    assert caught.value.operation == "result" and handle.workflow_id in str(caught.value)


async def test_a_write_is_retried_while_the_database_restarts(
    server: PostgresServer, prepared: str
) -> None:
    async with await durable.Client.connect(prepared, call_timeout=20) as client:
        handle = await client.start(inbox_wf)
        await asyncio.to_thread(server.stop_immediate)
        signalled = asyncio.create_task(handle.signal("add", "while away"))
        await asyncio.sleep(1.0)
        assert not signalled.done()
        await asyncio.to_thread(server.start_again)
        await signalled
        events = [e for e in await handle.history() if e.type == "SIGNAL_RECEIVED"]
        inbox = await client.store.pool.fetchval(
            "SELECT count(*) FROM durable.inbox WHERE workflow_id = $1", handle.workflow_id
        )
        assert len(events) + inbox == 1


async def test_a_write_whose_reply_was_lost_is_applied_once(
    client: durable.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signal's statement commits and its connection breaks before the reply (so the
    client cannot know): the client sends it again with the same request id, and the run
    gets it once."""
    handle = await client.start(inbox_wf)
    real = client.store._post_many
    lost: list[int] = []

    async def reply_lost(posts: Any) -> Any:
        outcome = await real(posts)
        if not lost:
            lost.append(1)
            raise ConnectionResetError("connection reset after the commit")
        return outcome

    monkeypatch.setattr(client.store, "_post_many", reply_lost)
    monkeypatch.setattr(client.store._group_post, "_write", reply_lost)
    await handle.signal("add", "once")
    assert lost == [1]
    assert await _inbox_signals(client, handle.workflow_id) == 1


async def test_the_same_request_id_applies_once(prepared: str) -> None:
    async with await durable.Client.connect(prepared) as client:
        handle = await client.start(inbox_wf)
        for _ in range(3):
            await handle.signal("add", "a", request_id="signal-1")
        await handle.signal("add", "b")
        assert await _inbox_signals(client, handle.workflow_id) == 2
        async with durable.Worker(client, workflows=[inbox_wf]):
            first, again = await asyncio.gather(
                handle.update("add_now", "u", request_id="update-1", timeout=20),
                handle.update("add_now", "u", request_id="update-1", timeout=20),
            )
            later = await handle.update("add_now", "u", request_id="update-1", timeout=20)
            assert first == again == later == 3  # a, b, u: the update ran once
            for _ in range(2):
                await handle.cancel(request_id="cancel-1")
            with pytest.raises(durable.WorkflowCancelledError):
                await handle.result(timeout=20)
        types = [e.type for e in await handle.history()]
        assert types.count("UPDATE_ACCEPTED") == 1
        assert types.count("CANCEL_REQUESTED") == 1
        with pytest.raises(ValueError, match="request_id"):
            await handle.signal("add", "x", request_id="")


async def _inbox_signals(client: durable.Client, workflow_id: str) -> int:
    async def count() -> int:
        value: int = await client.store.pool.fetchval(
            "SELECT count(*) FROM durable.inbox WHERE workflow_id = $1", workflow_id
        )
        return value

    await wait_for(count)
    return await count()


async def test_a_migration_waits_for_another_process_past_the_statement_deadline(
    server: PostgresServer,
) -> None:
    """No statement of the store's pool waits longer than its command_timeout for an answer;
    a migration, which waits for the one another process is applying (and may itself take
    long on a big table), runs on a connection of its own, without that deadline."""
    admin = await asyncpg.connect(server.dsn())
    try:
        await admin.execute('CREATE DATABASE "migrating_behind_another"')
    finally:
        await admin.close()
    dsn = server.dsn("migrating_behind_another")
    other = await asyncpg.connect(dsn)  # another process, in the middle of a migration
    try:
        async with other.transaction():
            await other.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            connecting = asyncio.create_task(Store.connect(dsn, command_timeout=0.2))
            await wait_for(lambda: _waiting_for_the_migration_lock(other))
            await asyncio.sleep(1.0)  # five deadlines
            assert not connecting.done(), connecting
        store = await asyncio.wait_for(connecting, 30)
        await store.close()
        assert await other.fetchval("SELECT count(*) FROM durable.schema_migrations") > 0
    finally:
        await other.close()


async def _waiting_for_the_migration_lock(conn: asyncpg.Connection) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        )
    )
