"""Numbered schema migrations (migrations/NNNN_*.sql), applied once, by one process."""

from __future__ import annotations

from importlib import resources

import asyncpg

from .._errors import DurableError
from .errors import CONNECT_FAILED
from .sql.migrations import (
    _APPLIED_MIGRATIONS_SQL,
    _CREATE_MIGRATIONS_TABLE_SQL,
    _MIGRATION_LOCK_SQL,
    _MIGRATIONS_TABLE_SQL,
    _RECORD_MIGRATION_SQL,
)

_MIGRATION_LOCK = 0x6475726162  # "durab"


# ====================================================================== statements in a transaction


async def _applied_migrations(conn: asyncpg.Connection) -> set[int]:
    if await conn.fetchval(_MIGRATIONS_TABLE_SQL) is None:
        return set()
    return {r["version"] for r in await conn.fetch(_APPLIED_MIGRATIONS_SQL)}


async def migrations_pending(conn: asyncpg.Connection) -> bool:
    """Whether some migration is not applied yet (read without DDL or locks)."""
    return not {version for version, _ in _migration_files()} <= await _applied_migrations(conn)


async def apply_migrations(conn: asyncpg.Connection) -> list[int]:
    """Apply the numbered migrations not yet applied; safe to run from many processes at once.

    An up-to-date schema is detected without DDL or locks, so roles that may not alter the
    schema can connect. Each migration is applied in a transaction of its own that takes the
    migration lock first and looks again at what is applied (another process may have applied
    it meanwhile): nothing is held between transactions, so it works as well through a
    connection pooler in transaction mode.
    """
    if not await migrations_pending(conn):
        return []
    done = []
    for version, sql in _migration_files():
        async with conn.transaction():
            await conn.execute(_MIGRATION_LOCK_SQL, _MIGRATION_LOCK)
            await conn.execute(_CREATE_MIGRATIONS_TABLE_SQL)
            if version in await _applied_migrations(conn):
                continue
            await conn.execute(sql)
            await conn.execute(_RECORD_MIGRATION_SQL, version)
        done.append(version)
    return done


async def apply_migrations_at(dsn: str, connect_timeout: float) -> list[int]:
    """Apply the migrations not applied yet to the database at ``dsn``, on a connection of
    their own (see _connect_alone); the versions applied."""
    return await _apply_then_close(await _connect_alone(dsn, connect_timeout))


async def migrate(dsn: str, shown_as: str) -> list[int]:
    """Apply the migrations not applied yet to the database at ``dsn`` (``shown_as`` is
    how errors name it: without its password); the versions applied."""
    try:
        conn = await _connect_alone(dsn, 60.0)
    except CONNECT_FAILED as exc:
        raise DurableError(f"cannot connect to Postgres at {shown_as}: {exc}") from exc
    return await _apply_then_close(conn)


async def _connect_alone(dsn: str, connect_timeout: float) -> asyncpg.Connection:
    """A connection for migrations: no deadline on its statements (a migration takes as long
    as it takes on a big table, and waits for another process's migration to end), and no
    prepared statement that outlives its transaction (a pooler may sit in between)."""
    return await asyncpg.connect(dsn, statement_cache_size=0, timeout=connect_timeout)


async def _apply_then_close(conn: asyncpg.Connection) -> list[int]:
    try:
        return await apply_migrations(conn)
    finally:
        await conn.close()


def _migration_files() -> list[tuple[int, str]]:
    folder = resources.files("durable._store") / "migrations"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(int(f.name.split("_", 1)[0]), f.read_text()) for f in files]
