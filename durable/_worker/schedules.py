"""Firing schedules: the workers of a task queue start the runs of its schedules' slots.

Each worker looks when the earliest schedule of its queue comes due (or is notified that one
was made or changed, or at the poll interval); the store locks the schedules due, skipping
those another worker is firing, so any number of workers fire each slot once between them.
"""

from __future__ import annotations

import logging
from datetime import datetime

from .polling import Serving, Wakeup, poll

_log = logging.getLogger("durable.worker")
_SCHEDULES_AT_ONCE = 100  # schedules one transaction handles


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
