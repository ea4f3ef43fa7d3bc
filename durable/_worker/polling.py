"""How a worker's pollers wait for work: notified, due, or at the fallback interval."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from .._store import NO_BUILD, Builds, Store, wait_notified
from .telemetry import WorkerTelemetry

_log = logging.getLogger("durable.worker")


@dataclass(frozen=True)
class Serving:
    """What every part of a worker shares: where it serves, as whom, and whether it stops."""

    store: Store
    worker_id: str
    task_queue: str
    lease_ttl: float  # seconds
    poll_interval: float  # seconds
    stopping: asyncio.Event
    telemetry: WorkerTelemetry
    builds: Builds = NO_BUILD  # the build it pins runs to, and those whose runs it claims


class Wakeup:
    """When a poller looks for work next: when notified, when capacity frees up after it
    found none, or when something it did not know of comes due before its planned wake-up."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.starved = False
        self.planned: datetime | None = None

    def capacity_freed(self) -> None:
        if self.starved:
            self.event.set()

    def due(self, when: datetime | None) -> None:
        if when is not None and (self.planned is None or when < self.planned):
            self.event.set()


async def poll(
    serving: Serving,
    wake: Wakeup,
    capacity: Callable[[], int],
    claim: Callable[[int], Awaitable[int]],
    next_due: Callable[[], Awaitable[datetime | None]],
) -> None:
    """Claim work whenever notified, due or at the fallback poll interval, until the
    worker stops. ``claim(n)`` claims up to n and says how many it found."""
    while not serving.stopping.is_set():
        wake.event.clear()
        free = capacity()
        wake.starved = free <= 0
        due = None
        if free > 0:
            try:
                if await claim(free) >= free or wake.event.is_set():
                    continue  # a full claim (more may wait), or notified meanwhile
                due = await next_due()
            except (TimeoutError, OSError, ConnectionError) as exc:
                _log.warning("polling failed: %s", exc)
            except Exception as exc:
                _log.warning("polling failed: %r", exc)
        now = serving.store.clock.now()
        timeout = serving.poll_interval
        if due is not None:
            timeout = min(timeout, max(0.0, (due - now).total_seconds()))
        wake.planned = now + timedelta(seconds=timeout)
        await wait_notified(wake.event, timeout)
