"""Pooled connections: their payload codecs, jsonb parameters, and the sealing of bodies."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import msgpack

from .._clock import SYSTEM_CLOCK, Clock
from .._codecs import PLAIN, Codecs
from .._events import Event, EventType, pack_attrs, unpack_attrs
from .._failures import Failure
from .sql.connections import (
    _ROLE_SETTINGS_SQL,
    _SESSION_SETTINGS_SQL,
    _SET_ROLE_SETTINGS_SQL,
    ROLE_SETTINGS,
)

_log = logging.getLogger("durable.store")

# Seconds a statement may wait for its answer (asyncpg's command_timeout, on the pool's and
# the listener's connections): far above what any statement durable runs takes (claims and
# commits take milliseconds, a page of a listing or a purge batch at most seconds), it ends
# only the wait on a server or pooler that stopped answering (one blocked, a connection that
# died without a reset); the statement fails as on a lost connection, and so does the cancel
# request asyncpg sends after it (which the connection's release waits for) if that gets no
# answer either. Migrations run on a connection of their own, without it.
COMMAND_TIMEOUT = 60.0
# Seconds closing the store waits for the connections in use and for the server to see the
# others off, before it aborts them.
CLOSE_TIMEOUT = 5.0


def _now(conn: asyncpg.Connection) -> datetime:
    """Now on the store's clock (see durable/_clock.py)."""
    clock: Clock = conn.clock
    return clock.now()


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(data: bytes | None) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False) if data is not None else None


class _Connection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection that carries its store's payload codecs to every statement helper."""

    codecs: Codecs = PLAIN
    clock: Clock = SYSTEM_CLOCK


class _ConnectionSetup:
    """What every new pooled connection gets: the store's codecs, the jsonb codec, the
    session settings (unless a pooler sits in between: ``pooled``, see _make_role_settings)
    and, once the store serves a worker, ``plan_steps`` run on it."""

    def __init__(self, codecs: Codecs, clock: Clock, *, pooled: bool = False) -> None:
        self.codecs = codecs
        self.clock = clock
        self.pooled = pooled
        self.plan_steps: Callable[[asyncpg.Connection], Awaitable[None]] | None = None

    async def __call__(self, conn: asyncpg.Connection) -> None:
        conn.codecs = self.codecs
        conn.clock = self.clock
        await conn.set_type_codec(
            "jsonb", encoder=_json_dumps, decoder=json.loads, schema="pg_catalog"
        )
        if not self.pooled:
            await conn.execute(_SESSION_SETTINGS_SQL)  # no seq scans, no JIT: see the statement
        if self.plan_steps is not None:
            await self.plan_steps(conn)


async def _make_role_settings(conn: asyncpg.Connection) -> bool:
    """Behind a pooler, make durable's settings the connecting role's defaults in this
    database, unless they are already; False (with a warning saying what an administrator
    runs) when the role may not."""
    if set(ROLE_SETTINGS) <= set(await conn.fetchval(_ROLE_SETTINGS_SQL)):
        return True
    try:
        await conn.execute(_SET_ROLE_SETTINGS_SQL)
    except asyncpg.PostgresError as exc:
        _log.warning(
            "behind a connection pooler, durable needs %s as the defaults of its role in its "
            "database (a session SET would reach one pooled server connection only), and "
            "this role may not set them (%s): have an administrator run, for this role and "
            "database, ALTER ROLE <role> IN DATABASE <database> SET <setting> for each",
            ", ".join(ROLE_SETTINGS),
            exc,
        )
        return False
    _log.info("made %s the defaults of this role in this database", ", ".join(ROLE_SETTINGS))
    return True


def _codecs(conn: asyncpg.Connection) -> Codecs:
    codecs: Codecs = conn.codecs
    return codecs


def _seal_attrs(codecs: Codecs, attrs: dict[str, Any]) -> bytes:
    return codecs.seal(pack_attrs(attrs))


def _open_attrs(codecs: Codecs, body: bytes) -> dict[str, Any]:
    return unpack_attrs(codecs.open(body))


def _history_event(codecs: Codecs, row: asyncpg.Record) -> Event:
    """A history row (seq, kind, ts, body, ends_step) as the event it records."""
    attrs = _open_attrs(codecs, row["body"])
    return Event(row["seq"], EventType(row["kind"]), row["ts"], attrs, row["ends_step"])


def _seal_failure(codecs: Codecs, failure: Failure | None) -> bytes | None:
    return codecs.seal(_pack(failure)) if failure is not None else None


def _json_float(value: float) -> str:
    text = float.__repr__(value)  # the shortest text that reads back as this float
    if "e+" in text:
        # jsonb keeps numbers as numeric, which prints 1e+16 back as 10000000000000000: an int
        # to json.loads. Written out with a fraction it keeps its scale, and stays a float.
        text = f"{Decimal(text):f}.0"
    return text


def _json_dumps(value: Any) -> str:
    """``json.dumps`` for jsonb parameters, except that a float always comes back a float.

    Containment (``@>``) and the GIN index compare numbers by value, so 10000000000000000.0
    still matches 1e16 (and 1 matches 1.0, as in Python).
    """
    if isinstance(value, float) and math.isfinite(value):
        return _json_float(value)
    if isinstance(value, dict) and all(type(key) is str for key in value):
        items = (f"{json.dumps(key)}:{_json_dumps(item)}" for key, item in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(_json_dumps, value)) + "]"
    return json.dumps(value)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool connections carry no session state (no LISTEN, SET or held locks), so they need
    no reset query on release: that saves a round trip per use."""
