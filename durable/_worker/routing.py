"""Where a call by name goes, and with which options.

An activity (or child workflow) called by its name with no task queue is sent to a queue
whose workers registered that name (the calling workflow's own queue if they did, else the
one registered last). An activity called by name or by ``durable.activity_ref`` also takes
the options the workers of its queue registered (their ``@activity``'s retry policy and
timeouts) for those the call does not give. Both are found when the step commits and
recorded in history with the command; a replay reads them from there and never looks them
up again (the command matches by name whatever options the code gives). While no worker
ever registered the name (on the queue the call gives) the step is not committed: the run
waits at that call, with the reason as its last error, and tries again every few seconds,
so it goes on by itself once a worker serving the name starts."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar, cast

from .._events import Event, EventType
from .._store import ACTIVITY_OPTIONS, ActivityRoute, Store

E = EventType
T = TypeVar("T")
_KEEP_FOR = 10.0  # seconds what was found stays known (a name seldom moves between queues)


class Unrouted(Exception):
    """No worker has ever registered the name a command calls (on the queue it gives)."""

    def __init__(self, kind: str, name: str, task_queue: str | None = None) -> None:
        self.kind, self.name = kind, name
        where = "any task queue" if task_queue is None else f"task queue {task_queue!r}"
        alternative = "" if task_queue is not None else " (or give the call a task_queue)"
        super().__init__(
            f"no worker serves the {kind} {name!r} on {where}: the workflow waits at this "
            f"call and goes on by itself once a worker that registers {name!r} starts"
            f"{alternative}"
        )


class Routes:
    """What the store says of names called without a queue or options, kept a few seconds."""

    def __init__(self, store: Store, own_queue: str) -> None:
        self._store = store
        self._own_queue = own_queue
        self._known: dict[tuple[str, str, str | None], tuple[object, float]] = {}

    async def resolve(self, events: Sequence[Event]) -> None:
        """Give each command of ``events`` that calls a name the queue that serves it if it
        has none, and an activity the options registered there that it does not give;
        Unrouted when no worker serves the name."""
        for event in events:
            attrs = event.attrs
            if event.type is E.CHILD_SCHEDULED and attrs.get("task_queue") is None:
                attrs["task_queue"] = await self._workflow_queue(attrs["name"])
            elif event.type is E.ACTIVITY_SCHEDULED and attrs.get("by_name"):
                route = await self._activity_route(attrs["name"], attrs.get("task_queue"))
                attrs["task_queue"] = route.task_queue
                for option in ACTIVITY_OPTIONS:
                    if attrs.get(option) is None:
                        attrs[option] = route.options[option]

    async def _workflow_queue(self, name: str) -> str:
        return await self._found(
            ("workflow", name, None), lambda: self._store.route_workflow(name, self._own_queue)
        )

    async def _activity_route(self, name: str, task_queue: str | None) -> ActivityRoute:
        return await self._found(
            ("activity", name, task_queue),
            lambda: self._store.route_activity(name, self._own_queue, task_queue),
        )

    async def _found(
        self, key: tuple[str, str, str | None], look_up: Callable[[], Awaitable[T | None]]
    ) -> T:
        """What ``look_up()`` finds for ``key`` (kind, name, queue given), known a few
        seconds; Unrouted when it finds nothing."""
        now = time.monotonic()
        known = self._known.get(key)
        if known is not None and known[1] > now:
            return cast(T, known[0])
        found = await look_up()
        if found is None:
            raise Unrouted(*key)
        self._known[key] = (found, now + _KEEP_FOR)
        return found
