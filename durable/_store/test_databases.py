"""Databases for durable.testing.WorkflowEnvironment: each a copy of a migrated template
whose clock functions read a table of skipped time, and the statements that read and move
that time."""

from __future__ import annotations

import hashlib
import itertools
import os
import uuid
from datetime import datetime, timedelta
from importlib import resources

import asyncpg

from .base import StoreBase
from .migrations import apply_migrations
from .sql.test_databases import (
    _DATABASE_EXISTS_SQL,
    _NAME_LOCK_SQL,
    _NAME_UNLOCK_SQL,
    _SKIP_TIME_SQL,
    _TIME_STATE_SQL,
    _VIRTUAL_CLOCK_SQL,
)

_databases = itertools.count()


class TimeSkipping(StoreBase):
    """The statements a time-skipping environment runs on its database."""

    async def time_state(self) -> tuple[bool, datetime | None]:
        """Whether work is due or running now, and when the next piece comes due."""
        row = await self.pool.fetchrow(_TIME_STATE_SQL)
        assert row is not None
        return bool(row["busy"]), row["next_due"]

    async def skip_time(self, skipped: timedelta, task_queues: list[str]) -> None:
        """Make the database's clock ``skipped`` ahead of the server's (never less than it
        is), and wake the workers of ``task_queues``."""
        await self.pool.execute(_SKIP_TIME_SQL, skipped, task_queues)


async def new_test_database(admin_dsn: str) -> str:
    """A new database on the server of ``admin_dsn``, copied from a template migrated for the
    current schema, with the skipped clock (the template is made once per server and schema
    version, under an advisory lock); returns its DSN."""
    template = f"durable_env_template_{_schema_version()}"
    name = f"durable_env_{os.getpid()}_{next(_databases)}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(_NAME_LOCK_SQL, template)
        try:
            if not await admin.fetchval(_DATABASE_EXISTS_SQL, template):
                await _make_template(admin, admin_dsn, template)
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        finally:
            await admin.execute(_NAME_UNLOCK_SQL, template)
    finally:
        await admin.close()
    return with_database(admin_dsn, name)


async def drop_test_database(admin_dsn: str, dsn: str) -> None:
    """Drop the database of ``dsn`` (one new_test_database made), closing its sessions."""
    name = dsn.partition("?")[0].rpartition("/")[2]
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _make_template(admin: asyncpg.Connection, admin_dsn: str, template: str) -> None:
    building = f"{template}_building"
    await admin.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{building}"')
    conn = await asyncpg.connect(with_database(admin_dsn, building))
    try:
        await apply_migrations(conn)
        await conn.execute(_VIRTUAL_CLOCK_SQL)
    finally:
        await conn.close()
    await admin.execute(f'ALTER DATABASE "{building}" RENAME TO "{template}"')


def _schema_version() -> str:
    """A digest of the migrations and of the clock's statements: a template made for other
    ones is not used."""
    digest = hashlib.sha256(_VIRTUAL_CLOCK_SQL.encode())
    folder = resources.files(__package__).joinpath("migrations")
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if path.name.endswith(".sql"):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def with_database(dsn: str, database: str) -> str:
    """``dsn`` (a postgresql:// URL) naming another database on the same server."""
    base, _, query = dsn.partition("?")
    scheme, sep, rest = base.partition("://")
    if not sep:
        raise ValueError(f"dsn must be a postgresql:// URL for a test environment, got {dsn!r}")
    authority, _, _ = rest.partition("/")
    return f"{scheme}://{authority}/{database}" + (f"?{query}" if query else "")
