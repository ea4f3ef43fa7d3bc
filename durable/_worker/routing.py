"""Where a call by name goes: an activity (or child workflow) called by its name with no task
queue is sent to a queue whose workers registered that name (the calling workflow's own
queue if they did, else the one registered last), found when its step commits and recorded
in history with the command. While no worker ever registered the name the step is not
committed: the run waits at that call, with the reason as its last error, and tries again
every few seconds, so it goes on by itself once a worker serving the name starts."""

from __future__ import annotations

import time
from collections.abc import Sequence

from .._events import Event, EventType
from .._store import Store

_ROUTED = {EventType.ACTIVITY_SCHEDULED: "activity", EventType.CHILD_SCHEDULED: "workflow"}
_KEEP_FOR = 10.0  # seconds a queue found stays known (a name seldom moves between queues)


class Unrouted(Exception):
    """No worker has ever registered the name a command calls."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name = kind, name
        super().__init__(
            f"no worker serves the {kind} {name!r} on any task queue: the workflow waits at "
            f"this call and goes on by itself once a worker that registers {name!r} starts "
            "(or give the call a task_queue)"
        )


class Routes:
    """The queues of names called without one, as found in the store, kept a few seconds."""

    def __init__(self, store: Store, own_queue: str) -> None:
        self._store = store
        self._own_queue = own_queue
        self._known: dict[tuple[str, str], tuple[str, float]] = {}

    async def resolve(self, events: Sequence[Event]) -> None:
        """Give each command of ``events`` that calls a name with no task queue the queue
        that serves it; Unrouted when none does."""
        for event in events:
            kind = _ROUTED.get(event.type)
            if kind is not None and event.attrs.get("task_queue") is None:
                event.attrs["task_queue"] = await self._queue_for(kind, event.attrs["name"])

    async def _queue_for(self, kind: str, name: str) -> str:
        now = time.monotonic()
        known = self._known.get((kind, name))
        if known is not None and known[1] > now:
            return known[0]
        queue = await self._store.route(kind, name, self._own_queue)
        if queue is None:
            raise Unrouted(kind, name)
        self._known[(kind, name)] = (queue, now + _KEEP_FOR)
        return queue
