"""durable behind a real PgBouncer (API.md part 3, "connection poolers"): in transaction mode
with ``prepared_statements=False`` and a direct ``listen_dsn``, and in session mode, the same
scenarios as on a direct connection; notifications wake workflows (the workers poll only every
30 s); migrations leave no lock behind; durable's settings hold on every pooled connection."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import sys
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import durable
from durable import WorkflowContext, activity, workflow
from durable._store import Store

from .chaos.server import PostgresServer, running_server
from .chaos.server import unavailable as no_server
from .conftest import wait_for
from .pgbouncer import PgBouncer, running_pgbouncer
from .pgbouncer import unavailable as no_pgbouncer

pytestmark = pytest.mark.skipif(
    bool(no_server() or no_pgbouncer()), reason=str(no_server() or no_pgbouncer())
)
SLOW_POLL = timedelta(seconds=30)  # a wake-up by the poll would time the test out
HUNG_AFTER = 60.0  # seconds after which a call that should have ended is taken for hung
_databases = itertools.count()


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with running_server() as started:
        yield started


@pytest.fixture(scope="module")
def transaction_pooler(server: PostgresServer) -> Iterator[PgBouncer]:
    with running_pgbouncer(server.port, "transaction") as bouncer:
        yield bouncer


@pytest.fixture(scope="module")
def session_pooler(server: PostgresServer) -> Iterator[PgBouncer]:
    with running_pgbouncer(server.port, "session") as bouncer:
        yield bouncer


@pytest.fixture
async def database(server: PostgresServer) -> AsyncIterator[str]:
    """A new, empty database on the server (durable migrates it as it connects)."""
    name = f"pooled_{next(_databases)}"
    admin = await asyncpg.connect(server.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield name


@activity
async def double(x: int) -> int:
    return 2 * x


@workflow
async def plus_one(ctx: WorkflowContext, x: int) -> int:
    return x + 1


@workflow
async def pooled_wf(ctx: WorkflowContext, n: int) -> int:
    total = [n]

    def add(k: int) -> int:
        total[0] += k
        return total[0]

    ctx.on_query("total", lambda: total[0])
    ctx.on_update("add", add)
    total[0] = await ctx.activity(double, total[0])
    await ctx.sleep(0.2)
    total[0] = await ctx.child(plus_one, total[0])
    await ctx.wait_signal("go")
    return total[0]


async def _every_scenario(dsn: str, **options: Any) -> None:
    """Connected to ``dsn`` with ``options``: notifications reach the listener, and an
    activity, a timer, a child, a query, an update, a signal, a cancel each wake their
    workflow by one (the worker polls every 30 s)."""
    client = await durable.Client.connect(dsn, **options)
    try:
        assert await client.store.listener.notifications_arrive()
        await _scenarios(client)
    finally:
        await client.close()


async def _scenarios(client: durable.Client) -> None:
    worker = durable.Worker(
        client, workflows=[pooled_wf, plus_one], activities=[double], poll_interval=SLOW_POLL
    )
    async with worker:
        handle = await client.start(pooled_wf, 5)
        await wait_for(lambda: _total_is(handle, 11), timeout=15)
        assert await handle.update("add", 1, timeout=15) == 12
        await handle.signal("go")
        assert await handle.result(timeout=15) == 12
        cancelled = await client.start(pooled_wf, 1)
        await wait_for(lambda: _total_is(cancelled, 3), timeout=15)
        await cancelled.cancel()
        with pytest.raises(durable.WorkflowCancelledError):
            await cancelled.result(timeout=15)


async def _total_is(handle: durable.WorkflowHandle[int], value: int) -> bool:
    return bool(await handle.query("total", timeout=5) == value)


async def test_every_scenario_through_a_transaction_pooler_with_a_direct_listener(
    server: PostgresServer, transaction_pooler: PgBouncer, database: str
) -> None:
    await _every_scenario(
        transaction_pooler.dsn(database),
        listen_dsn=server.dsn(database),
        prepared_statements=False,
    )


async def test_every_scenario_through_a_session_pooler(
    session_pooler: PgBouncer, database: str
) -> None:
    await _every_scenario(session_pooler.dsn(database))


async def test_without_a_listen_dsn_one_warning_names_the_fix(
    transaction_pooler: PgBouncer, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    """LISTEN through a transaction pooler hears nothing (PgBouncer drops what reaches a
    server connection no client holds): said once, with the fix, not polled silently."""
    caplog.set_level(logging.WARNING, logger="durable.store")
    client = await durable.Client.connect(
        transaction_pooler.dsn(database), prepared_statements=False
    )
    try:
        assert not await client.store.listener.notifications_arrive()
        assert not await client.store.listener.notifications_arrive()  # checked once
    finally:
        await client.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "listen_dsn" in warnings[0], warnings


async def test_durable_settings_hold_on_every_pooled_server_connection(
    server: PostgresServer, transaction_pooler: PgBouncer, database: str
) -> None:
    """A session SET would reach the one server connection that ran it: behind a pooler the
    settings are the role's defaults in the database, which every server connection reads."""
    client = await durable.Client.connect(
        transaction_pooler.dsn(database), prepared_statements=False
    )
    await client.close()
    clients = [
        await asyncpg.connect(transaction_pooler.dsn(database), statement_cache_size=0)
        for _ in range(8)
    ]
    try:
        async with asyncio.TaskGroup() as group:  # each holds a server connection at once
            shown = [
                group.create_task(
                    conn.fetchrow(
                        "SELECT current_setting('enable_seqscan') AS seqscan, "
                        "current_setting('jit') AS jit, pg_sleep(0.2)"
                    )
                )
                for conn in clients
            ]
    finally:
        for conn in clients:
            await conn.close()
    assert {(row.result()["seqscan"], row.result()["jit"]) for row in shown} == {("off", "off")}


async def test_two_processes_migrate_an_empty_database_through_the_pooler_at_once(
    server: PostgresServer, transaction_pooler: PgBouncer, database: str
) -> None:
    """A session lock held across the migrations' transactions was unlocked on another server
    connection ("you don't own a lock") and stayed held: the next migration waited for ever."""
    argv = (sys.executable, "-m", "durable", "migrate", "--no-prepared-statements")
    dsn = ("--dsn", transaction_pooler.dsn(database))
    root = Path(__file__).resolve().parent.parent
    procs = [
        await asyncio.create_subprocess_exec(
            *argv, *dsn, cwd=root, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [await asyncio.wait_for(p.communicate(), 60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    direct = await asyncpg.connect(server.dsn(database))
    try:
        versions = await direct.fetch(
            "SELECT version, count(*) FROM durable.schema_migrations GROUP BY version"
        )
        assert versions and all(row["count"] == 1 for row in versions)
        held = await direct.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        assert held == 0
    finally:
        await direct.close()
    again = await asyncio.create_subprocess_exec(
        *argv, *dsn, cwd=root, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(again.communicate(), 60)
    assert again.returncode == 0 and b"up to date" in out, err


async def _doctor(*argv: str) -> tuple[int, dict[str, dict[str, str]]]:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "durable", "doctor", "--json", *argv),
        cwd=Path(__file__).resolve().parent.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, {f["check"]: f for f in json.loads(out)}


async def test_doctor_finds_the_pooler_and_says_what_to_fix(
    server: PostgresServer, transaction_pooler: PgBouncer, database: str
) -> None:
    through = transaction_pooler.dsn(database)
    code, found = await _doctor("--dsn", through)
    assert code == 1
    assert "transaction mode" in found["pooler"]["detail"]
    assert found["prepared statements"]["status"] == "problem"
    assert "--no-prepared-statements" in found["prepared statements"]["fix"]
    assert found["notifications"]["status"] == "problem"
    assert "--listen-dsn" in found["notifications"]["fix"]
    assert found["schema"]["status"] == "warning"  # nothing connected yet
    client = await durable.Client.connect(
        through, listen_dsn=server.dsn(database), prepared_statements=False
    )
    await client.close()
    await transaction_pooler.reconnect()  # its server connections opened before keep the old
    code, found = await _doctor(
        "--dsn", through, "--no-prepared-statements", "--listen-dsn", server.dsn(database)
    )
    assert code == 0, found
    assert {f["status"] for f in found.values()} == {"ok"}, found
    code, found = await _doctor("--dsn", server.dsn(database))
    assert code == 0 and found["pooler"]["detail"] == "none: a direct connection", found


async def test_the_suites_pgbouncer_answers_however_much_it_logged(server: PostgresServer) -> None:
    """It writes each log line to stderr too: a pipe nobody read filled up after 64 KiB and
    PgBouncer, blocked on the write, answered nobody (the chaos runs through it hung)."""
    with running_pgbouncer(server.port, "transaction") as bouncer:

        async def show_version() -> None:
            conn = await asyncpg.connect(bouncer.dsn("pgbouncer"), statement_cache_size=0)
            try:
                await conn.execute("SHOW VERSION")
            finally:
                await conn.close()

        while (logged := bouncer.log.stat().st_size) < 128 * 1024:  # a login logs 2 lines
            try:
                await asyncio.wait_for(show_version(), 10)
            except TimeoutError:
                pytest.fail(f"PgBouncer stopped answering once it had logged {logged} bytes")


async def _raised(call: Coroutine[Any, Any, Any]) -> BaseException | None:
    """What ``call`` raised (None: it returned); the test fails if it has not ended within
    HUNG_AFTER seconds."""
    task = asyncio.ensure_future(call)
    done, _ = await asyncio.wait([task], timeout=HUNG_AFTER)
    if not done:
        task.cancel()
        pytest.fail(f"{call.__qualname__} had not ended after {HUNG_AFTER:g} s")
    return task.exception()


async def test_a_statement_through_a_pooler_that_stopped_answering_fails_as_on_a_lost_connection(
    server: PostgresServer, database: str
) -> None:
    """With no deadline a statement waited for ever for the answer of a blocked pooler (the
    chaos workers' lease renewals and polls did): it fails with a TimeoutError, an OSError
    as a lost connection's, which the worker's paths retry; and once the pooler answers
    again, so does the store."""
    with running_pgbouncer(server.port, "transaction") as bouncer:
        store = await Store.connect(
            bouncer.dsn(database),
            listen_dsn=server.dsn(database),
            prepared_statements=False,
            command_timeout=0.5,
        )
        try:
            with bouncer.frozen():
                failure = await _raised(store.renew_worker(str(uuid.uuid4()), 10.0))
            assert isinstance(failure, TimeoutError), repr(failure)
            assert await store.renew_worker(str(uuid.uuid4()), 10.0) is False
        finally:
            await store.close()


async def test_a_worker_stops_on_request_and_its_client_closes_while_the_pooler_answers_nothing(
    server: PostgresServer, database: str
) -> None:
    """The statements of its pollers, cancelled as the worker stopped, waited in their
    connections' release for asyncpg's cancel request, itself waiting for the pooler: the
    worker never stopped (the chaos workers did not within 18 s of SIGTERM), nor did the
    client close."""
    with running_pgbouncer(server.port, "transaction") as bouncer:
        client = await durable.Client.connect(
            bouncer.dsn(database), listen_dsn=server.dsn(database), prepared_statements=False
        )
        pool = client.store.pool
        try:
            worker = durable.Worker(
                client,
                workflows=[plus_one],
                poll_interval=timedelta(milliseconds=50),
                shutdown_grace=timedelta(0),
            )
            await worker.__aenter__()
            assert await client.store.listener.notifications_arrive()  # (its probe ended)
            async with contextlib.AsyncExitStack() as held:  # a connection for each loop
                for _ in range(4):
                    await held.enter_async_context(pool.acquire())
            with bouncer.frozen():
                # the statements of the two pollers and of the lease wait for an answer
                await wait_for(lambda: pool.get_size() - pool.get_idle_size() >= 3)
                assert await _raised(worker.shutdown()) is None
                assert await _raised(client.close()) is None
        finally:
            await client.close()
