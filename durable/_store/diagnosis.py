"""What `durable doctor` finds of a database and the path to it: whether a connection pooler
sits in between (and in which mode), whether prepared statements survive it, whether
notifications reach the listening connection, whether durable's settings hold on the
server connections, whether the schema is up to date, and the round trip and commit
latency. Each finding says what to fix."""

from __future__ import annotations

import asyncio
import statistics
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Literal

import asyncpg

from .migrations import _applied_migrations, _migration_files
from .sql.client_ops import _NOTIFY_SQL
from .sql.connections import ROLE_SETTINGS

Status = Literal["ok", "warning", "problem"]
_CHANNEL = "durable_doctor"  # not the engine's: a probe wakes no worker
_PROBE_WAIT = 2.0
_SAMPLES = 20

# The server connection a statement ran on, and the port the server listens on.
_WHERE_SQL = "SELECT pg_backend_pid() AS pid, current_setting('port')::int AS port"
# The settings durable needs, as this server connection has them.
_SETTINGS_SQL = """
SELECT current_setting('enable_seqscan') AS enable_seqscan, current_setting('jit') AS jit,
    current_setting('plan_cache_mode') AS plan_cache_mode, pg_sleep(0.1)
"""
_ROUND_TRIP_SQL = "SELECT 1"
_COMMIT_SQL = "SELECT pg_current_xact_id()"  # a transaction with an id: a commit record flushed


@dataclass(frozen=True)
class Finding:
    """One check: what it looked at, how it stands, what was found, and what to do."""

    check: str
    status: Status
    detail: str
    fix: str | None = None


async def diagnose(dsn: str, listen_dsn: str | None, prepared_statements: bool) -> list[Finding]:
    """Every finding, in the order a reader needs them; a connection that fails is the only
    one then."""
    cache = 100 if prepared_statements else 0
    try:
        conn = await asyncpg.connect(dsn, statement_cache_size=cache, timeout=10)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        fix = "check the DSN (host, port, database, user, password) and that the server runs"
        return [Finding("connection", "problem", f"cannot connect: {exc}", fix)]
    try:
        version = await conn.fetchval("SELECT version()")
        findings = [Finding("connection", "ok", str(version).split(",")[0])]
        pooled, pooler = await _pooler(conn, dsn)
        findings.append(pooler)
        findings.append(await _prepared_statements(conn, dsn, pooled, prepared_statements))
        findings.append(await _notifications(conn, listen_dsn or dsn, listen_dsn is not None))
        findings.append(await _settings(dsn, pooled or listen_dsn is not None))
        findings.append(await _schema(conn))
        findings.append(await _latency(conn))
        return findings
    finally:
        await conn.close()


async def _pooler(conn: asyncpg.Connection, dsn: str) -> tuple[bool, Finding]:
    """(whether statements move between server connections, the finding). A second client
    connection that runs a statement on the server connection the first one just used can
    only be behind a pooler in transaction mode."""
    first = await conn.fetchrow(_WHERE_SQL)
    other = await asyncpg.connect(dsn, statement_cache_size=0, timeout=10)
    try:
        shared = await other.fetchval(_WHERE_SQL.split(" AS pid")[0]) == first["pid"]
    finally:
        await other.close()
    if shared:
        detail = "a pooler in transaction mode: two client connections ran on one server connection"
        return True, Finding("pooler", "ok", detail)
    asked = _port_of(dsn)
    if asked is not None and asked != first["port"]:
        detail = (
            f"port {asked} answered by a server listening on {first['port']}: a pooler in "
            "session mode, or a proxy (each client connection keeps its server connection)"
        )
        return False, Finding("pooler", "ok", detail)
    return False, Finding("pooler", "ok", "none: a direct connection")


def _port_of(dsn: str) -> int | None:
    parts = urllib.parse.urlsplit(dsn)
    if parts.hostname is None or parts.hostname.startswith("/"):
        return None  # a Unix socket
    try:
        return parts.port or 5432
    except ValueError:
        return None


async def _prepared_statements(
    conn: asyncpg.Connection, dsn: str, pooled: bool, wanted: bool
) -> Finding:
    if not wanted:
        if pooled:
            return Finding("prepared statements", "ok", "off, as a transaction pooler needs")
        return Finding(
            "prepared statements",
            "warning",
            "off on a connection that would keep them: every statement is planned anew",
            "drop --no-prepared-statements (prepared_statements=False) here",
        )
    try:
        statement = await conn.prepare("SELECT $1::int")
        if pooled:  # another client holds the server connection it was prepared on
            other = await asyncpg.connect(dsn, statement_cache_size=0, timeout=10)
            try:
                async with other.transaction():
                    await other.execute("SELECT 1")
                    await statement.fetchval(1)
            finally:
                await other.close()
        await statement.fetchval(2)
    except asyncpg.PostgresError as exc:
        return Finding(
            "prepared statements",
            "problem",
            f"do not survive the pooler: {str(exc).splitlines()[0]}",
            "pass --no-prepared-statements (prepared_statements=False), or use PgBouncer "
            ">= 1.21 with max_prepared_statements set",
        )
    return Finding("prepared statements", "ok", "kept across statements")


async def _notifications(conn: asyncpg.Connection, listen_dsn: str, given: bool) -> Finding:
    token, arrived = uuid.uuid4().hex, asyncio.Event()
    try:
        listener = await asyncpg.connect(listen_dsn, statement_cache_size=0, timeout=10)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return Finding(
            "notifications", "problem", f"cannot connect to listen on: {exc}", "check --listen-dsn"
        )
    try:
        await listener.add_listener(
            _CHANNEL, lambda *args: arrived.set() if args[-1] == token else None
        )
        began = time.perf_counter()
        await conn.execute(_NOTIFY_SQL, _CHANNEL, token)
        try:
            await asyncio.wait_for(arrived.wait(), _PROBE_WAIT)
        except TimeoutError:
            return Finding(
                "notifications",
                "problem",
                f"a notification sent through the pool did not reach the LISTEN connection "
                f"within {_PROBE_WAIT:g} s: workers and clients would wake by polling",
                "give --listen-dsn (listen_dsn=, $DURABLE_LISTEN_DATABASE_URL) a direct "
                "connection or one through a session-mode pool",
            )
        took = (time.perf_counter() - began) * 1000
        where = "the --listen-dsn connection" if given else "a connection of the same DSN"
        return Finding("notifications", "ok", f"arrive on {where} in {took:.1f} ms")
    finally:
        await listener.close()


async def _settings(dsn: str, pooled: bool) -> Finding:
    """What several server connections at once have of durable's settings."""
    if not pooled:
        return Finding("settings", "ok", "durable sets them on each of its sessions")
    conns = [await asyncpg.connect(dsn, statement_cache_size=0, timeout=10) for _ in range(4)]
    try:
        rows = await asyncio.gather(*(c.fetchrow(_SETTINGS_SQL) for c in conns))
    finally:
        for c in conns:
            await c.close()
    wanted = dict(setting.split("=") for setting in ROLE_SETTINGS)
    missing = sorted({k for row in rows for k, v in wanted.items() if row[k] != v})
    if not missing:
        return Finding("settings", "ok", f"{', '.join(ROLE_SETTINGS)} on 4 server connections")
    return Finding(
        "settings",
        "problem",
        f"{', '.join(missing)} not as durable needs on some of 4 server connections: behind a "
        "pooler they must be the role's defaults in the database",
        "connect once with --no-prepared-statements or --listen-dsn (durable then makes them "
        "the role's defaults, if the role may), or have an administrator run ALTER ROLE <role> "
        f"IN DATABASE <database> SET ... for {', '.join(ROLE_SETTINGS)}; then let the pooler "
        "reopen its server connections (PgBouncer: RECONNECT, or server_lifetime)",
    )


async def _schema(conn: asyncpg.Connection) -> Finding:
    known = {version for version, _ in _migration_files()}
    applied = await _applied_migrations(conn)
    if not applied:
        return Finding("schema", "warning", "not created yet", "durable migrate (or connect once)")
    if known <= applied:
        newer = sorted(applied - known)
        if newer:
            return Finding(
                "schema",
                "warning",
                f"migrations {newer} are newer than this package's",
                "upgrade durable-workflows where this runs",
            )
        return Finding("schema", "ok", f"up to date (migration {max(known):04d})")
    pending = ", ".join(f"{v:04d}" for v in sorted(known - applied))
    return Finding("schema", "problem", f"migrations {pending} not applied", "durable migrate")


async def _latency(conn: asyncpg.Connection) -> Finding:
    async def p50(statement: str) -> float:
        times = []
        for _ in range(_SAMPLES):
            began = time.perf_counter()
            await conn.fetchval(statement)
            times.append((time.perf_counter() - began) * 1000)
        return statistics.median(times)

    round_trip, commit = await p50(_ROUND_TRIP_SQL), await p50(_COMMIT_SQL)
    return Finding(
        "latency",
        "ok",
        f"round trip {round_trip:.2f} ms, commit {commit:.2f} ms (p50 of {_SAMPLES}; a "
        "workflow step costs about one commit)",
    )
