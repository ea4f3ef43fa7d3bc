"""A test environment on a clock that skips ahead: real Postgres, real workers, real history.

Each environment gets a database of its own on the server (a copy of a migrated template
whose two clock functions read a table of skipped time, see _sql.py), a client and workers
in this process, and a VirtualClock that the store, the replayer and the workers read in
Python. Time moves only forward and only when nothing runs: by ``env.sleep()``, or by
itself, to the next due time, while a caller waits for a result (``handle.result()``), as in
Temporal's time-skipping server. A workflow that sleeps 30 days then returns at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from .._client import Client
from .._clock import Clock
from .._embedded import embedded_dsn, resolve_dsn
from .._store import Store, drop_test_database, new_test_database
from .._worker import Worker

# How often the environment looks whether everything is idle, and how long it must stay so
# before time skips (a step that committed and the claim of what it made due are apart by a
# few milliseconds, which must not look idle).
_LOOK_EVERY = 0.005
_QUIET_FOR = 0.02


class VirtualClock(Clock):
    """The system's clock plus the time skipped so far; knows who waits for time to pass."""

    def __init__(self) -> None:
        self.skipped = timedelta(0)
        self.waiters = 0
        self.waiter_came = asyncio.Event()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.skipped

    @contextlib.asynccontextmanager
    async def waiting_for_time(self) -> AsyncIterator[None]:
        self.waiters += 1
        self.waiter_came.set()
        try:
            yield
        finally:
            self.waiters -= 1


class WorkflowEnvironment:
    """Workflows and activities run by real workers on a real database, on a clock that
    skips ahead whenever every piece of work waits for a time to come."""

    def __init__(self, client: Client, clock: VirtualClock, task_queue: str) -> None:
        self.client = client
        self.task_queue = task_queue
        self._clock = clock
        self._workers: list[Worker] = []
        self._skipping = asyncio.Lock()  # the skipper and env.sleep move the clock in turn
        self._skipper: asyncio.Task[None] | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def start_time_skipping(
        cls,
        *,
        workflows: Sequence[Any] = (),
        activities: Sequence[Any] = (),
        task_queue: str | None = None,
        dsn: str | None = None,
        **worker_options: Any,
    ) -> AsyncIterator[WorkflowEnvironment]:
        """An environment in a new database on the server of ``dsn`` (None:
        ``$DURABLE_DATABASE_URL``, else the embedded database), dropped on the way out, with
        a worker serving ``workflows`` and ``activities`` (if any) on ``task_queue``
        (default: a fresh name, ``env.task_queue``). ``worker_options`` go to that
        ``durable.Worker`` (e.g. ``max_concurrent_activities``); ``env.worker(...)`` starts
        more workers."""
        admin_dsn = resolve_dsn(dsn)
        if admin_dsn is None:
            admin_dsn = await asyncio.to_thread(embedded_dsn)
        database = await new_test_database(admin_dsn)
        clock = VirtualClock()
        try:
            client = Client(await Store.connect(database, clock=clock))
            env = cls(client, clock, task_queue or f"test-{uuid.uuid4().hex[:8]}")
            try:
                await env._start()
                if workflows or activities:
                    async with env.worker(workflows, activities, **worker_options):
                        yield env
                else:
                    yield env
            finally:
                await env._stop()
                await client.close()
        finally:
            await drop_test_database(admin_dsn, database)

    @contextlib.asynccontextmanager
    async def worker(
        self,
        workflows: Sequence[Any] = (),
        activities: Sequence[Any] = (),
        *,
        task_queue: str | None = None,
        **options: Any,
    ) -> AsyncIterator[Worker]:
        """A worker of the environment's client (on ``task_queue``, default
        ``env.task_queue``), running while the block runs; time skips only while it, too,
        is idle."""
        worker = Worker(
            self.client,
            task_queue=task_queue or self.task_queue,
            workflows=list(workflows),
            activities=list(activities),
            **options,
        )
        async with worker:
            self._workers.append(worker)
            try:
                yield worker
            finally:
                self._workers.remove(worker)

    def now(self) -> datetime:
        """The environment's time: the wall clock plus the time skipped so far."""
        return self._clock.now()

    async def sleep(self, duration: timedelta | float) -> None:
        """Let ``duration`` (a timedelta, or seconds) of the environment's time pass at once:
        each timer, timeout and retry due meanwhile comes due in order, each after the work
        before it is done; returns once the work due by the end is done too."""
        seconds = duration.total_seconds() if isinstance(duration, timedelta) else duration
        if not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValueError(
                f"duration must be a timedelta or seconds, not negative; got {duration!r}"
            )
        until = self.now() + timedelta(seconds=seconds)
        while True:
            await self._until_quiet()
            due = await self._next_due()
            if due is None or due > until:
                break
            await self._skip_to(due)
        await self._skip_to(until)
        await self._until_quiet()

    # ------------------------------------------------------------------ skipping
    async def _start(self) -> None:
        self._skipper = asyncio.create_task(self._skip_while_awaited(), name="durable-env-clock")

    async def _stop(self) -> None:
        if self._skipper is not None:
            self._skipper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._skipper

    async def _skip_while_awaited(self) -> None:
        """While someone waits for a result, time skips to the next due time whenever
        everything is idle."""
        clock = self._clock
        while True:
            if clock.waiters == 0:
                clock.waiter_came.clear()
                await clock.waiter_came.wait()
            await self._until_quiet()
            due = await self._next_due() if clock.waiters else None
            if due is not None:
                await self._skip_to(due)
            else:
                await asyncio.sleep(_LOOK_EVERY)

    async def _until_quiet(self) -> None:
        """Return once nothing has run or been due for _QUIET_FOR seconds."""
        loop = asyncio.get_running_loop()
        quiet_since: float | None = None
        while True:
            if await self._quiet():
                quiet_since = loop.time() if quiet_since is None else quiet_since
                if loop.time() - quiet_since >= _QUIET_FOR:
                    return
            else:
                quiet_since = None
            await asyncio.sleep(_LOOK_EVERY)

    async def _quiet(self) -> bool:
        if not all(worker._idle() for worker in self._workers):
            return False
        busy, _ = await self.client.store.time_state()
        return not busy

    async def _next_due(self) -> datetime | None:
        _, due = await self.client.store.time_state()
        return due

    async def _skip_to(self, when: datetime) -> None:
        """Move the clock forward to ``when`` (never back), in the database and here, and
        wake the workers."""
        async with self._skipping:
            ahead = when - self.now()
            if ahead <= timedelta(0):
                return
            skipped = self._clock.skipped + ahead
            queues = sorted({self.task_queue, *(w.task_queue for w in self._workers)})
            await self.client.store.skip_time(skipped, queues)
            self._clock.skipped = skipped
