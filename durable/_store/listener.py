"""LISTEN/NOTIFY: one connection fanning notifications out to waiting asyncio.Events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from .stalled import UNWIND, end_within

_log = logging.getLogger("durable.store")

CHANNEL = "durable"


class NotificationKeys:
    """What a notification on CHANNEL is about: its payload is a letter, then whose. The
    statements that notify spell the same letters (sql, commit, closing, runs, client_ops)."""

    @staticmethod
    def workflow_tasks(task_queue: str) -> str:
        """Runs of the task queue came due."""
        return "w" + task_queue

    @staticmethod
    def activity_tasks(task_queue: str) -> str:
        """Activity attempts of the task queue came due."""
        return "a" + task_queue

    @staticmethod
    def queries(task_queue: str) -> str:
        """A query waits for a worker of the task queue."""
        return "q" + task_queue

    @staticmethod
    def schedules(task_queue: str) -> str:
        """A schedule of the task queue was made, changed or unpaused: it may be due sooner."""
        return "s" + task_queue

    @staticmethod
    def closed(workflow_id: str) -> str:
        """A run of the workflow closed."""
        return "c" + workflow_id

    @staticmethod
    def answered(call_id: str) -> str:
        """An update or query has its answer."""
        return "r" + call_id

    @staticmethod
    def probe(token: str) -> str:
        """A process checks that what it notifies through its pool reaches its listener."""
        return "p" + token


PROBE_TIMEOUT = 2.0  # seconds a notification through the pool may take to reach the listener


async def wait_notified(event: asyncio.Event, timeout: float) -> None:
    """Wait until ``event`` is set or ``timeout`` seconds passed.

    (asyncio.wait_for can swallow a cancellation that arrives as the event is set, on 3.11;
    asyncio.timeout cannot.)
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


class Listener:
    """One LISTEN connection fanning notifications out to waiting asyncio.Events.

    The first time it connects it checks, in the background, that a notification sent
    through the pool (``notify``) reaches it: behind a connection pooler in transaction mode
    LISTEN lands on a pooled server connection whose notifications the pooler drops, and
    everything would wake by polling, silently. It says so once, with the fix."""

    def __init__(
        self, dsn: str, notify: Callable[[str], Awaitable[None]], command_timeout: float
    ) -> None:
        self._dsn = dsn
        self._command_timeout = command_timeout
        self._notify = notify
        self._conn: asyncpg.Connection | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._lock = asyncio.Lock()
        self._probe: asyncio.Task[bool] | None = None

    async def subscribe(self, key: str, event: asyncio.Event) -> None:
        self._waiters.setdefault(key, set()).add(event)
        await self._ensure_connected()

    def unsubscribe(self, key: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(key)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[key]

    async def _ensure_connected(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return
            try:
                conn = await asyncpg.connect(
                    self._dsn, statement_cache_size=0, command_timeout=self._command_timeout
                )
                await conn.add_listener(CHANNEL, self._on_notification)
                conn.add_termination_listener(self._on_lost)
                self._conn = conn
            except (OSError, asyncpg.PostgresError) as exc:
                _log.warning("LISTEN connection failed (%s); falling back to polling", exc)
            self._wake_all()  # whatever was missed while disconnected gets polled
            if self._conn is not None and self._probe is None:
                self._probe = asyncio.create_task(self._check_delivery())

    async def notifications_arrive(self) -> bool:
        """Whether a notification sent through the pool reached this listener (checked once,
        as it first connected)."""
        await self._ensure_connected()
        return self._probe is None or await asyncio.shield(self._probe)

    async def _check_delivery(self) -> bool:
        key, arrived = NotificationKeys.probe(uuid.uuid4().hex), asyncio.Event()
        self._waiters.setdefault(key, set()).add(arrived)
        try:
            await self._notify(key)
            await wait_notified(arrived, PROBE_TIMEOUT)
        except Exception:  # (the database away: the reconnect says so)
            return True
        finally:
            self.unsubscribe(key, arrived)
        if not arrived.is_set():
            _log.warning(
                "notifications sent through the connection pool do not reach the LISTEN "
                "connection within %g s: behind a connection pooler in transaction mode, "
                "LISTEN needs a session of its own. Give a direct connection (or one through "
                "a session-mode pool) as listen_dsn= (CLI --listen-dsn, "
                "$DURABLE_LISTEN_DATABASE_URL); meanwhile workers and clients wake by polling",
                PROBE_TIMEOUT,
            )
        return arrived.is_set()

    def _on_notification(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        for event in self._waiters.get(payload, ()):
            event.set()

    def _on_lost(self, conn: Any) -> None:
        self._conn = None
        self._wake_all()

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def reconnect_if_lost(self) -> None:
        if self._waiters:
            await self._ensure_connected()

    async def close(self) -> None:
        if self._probe is not None and not self._probe.done():
            self._probe.cancel()
            await end_within([self._probe], UNWIND)  # (it may be using a pool connection)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=2)
            self._conn = None
