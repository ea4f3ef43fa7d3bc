"""Firing schedules: the workers of a task queue start the runs of its schedules' slots.

Each worker looks when the earliest schedule of its queue comes due (or is notified that one
was made or changed, or at the poll interval); the store locks the schedules due, skipping
those another worker is firing, so any number of workers fire each slot once between them.
In a burst (a transaction found as many due as it takes) a worker fires with several
transactions at once: they skip each other's schedules the same way, and while one waits
for Postgres the others go on, where one alone would wait behind the worker's other work
at each of its statements.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from datetime import datetime
from typing import Any

from .polling import Serving, Wakeup, poll

_log = logging.getLogger("durable.worker")
_SCHEDULES_AT_ONCE = 250  # schedules one transaction handles
_TRANSACTIONS_IN_BURST = 2  # fire transactions at once while they come back full


class ScheduleFiring:
    """The schedules of one worker's task queue, fired when due."""

    def __init__(self, serving: Serving) -> None:
        self.serving = serving
        self.wake = Wakeup()

    async def serve(self) -> None:
        """Fire what is due whenever it comes due, until the worker stops."""
        serving = self.serving
        await poll(serving, self.wake, lambda: _SCHEDULES_AT_ONCE, self._fire, self._next_due)

    async def _fire(self, limit: int) -> int:
        """One fire transaction; while they come back full, several at once."""
        handled = [await self._fire_batch(limit)]
        while min(handled) >= limit and not self.serving.stopping.is_set():
            handled = await _all(self._fire_batch(limit) for _ in range(_TRANSACTIONS_IN_BURST))
        return sum(handled)

    async def _fire_batch(self, limit: int) -> int:
        serving = self.serving
        handled, fired = await serving.store.fire_schedules(serving.task_queue, limit)
        lateness = serving.telemetry.metrics.schedule_lateness
        attributes = {"task_queue": serving.task_queue}
        for slot in fired:
            lateness.record(max(0.0, (slot.fired_at - slot.due).total_seconds()), attributes)
        if fired:
            _log.debug("fired %d schedule slots", len(fired))
        return handled

    async def _next_due(self) -> datetime | None:
        return await self.serving.store.next_schedule_due(self.serving.task_queue)


async def _all(calls: Iterable[Coroutine[Any, Any, int]]) -> list[int]:
    """Their results, once every one has ended; the first failure is raised then."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [result for result in results if not isinstance(result, BaseException)]
