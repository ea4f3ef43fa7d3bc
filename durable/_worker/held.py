"""What a worker holds of the runs it steps: cached instances, runs with a task in
flight (busy), and tasks parked in their slot for their local activities."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator
from dataclasses import dataclass

from .._replayer import WorkflowInstance
from .._store import WorkflowTask

PARK_FOR = 0.5  # seconds a workflow task waits at least for its local activities, in its slot


@dataclass
class CachedRun:
    """A workflow run this worker holds in memory (sticky), with what it last saw."""

    fence: int
    instance: WorkflowInstance
    inbox_seq: int = 0
    kept: bool = False  # taken from memory for the task stepping it, not replayed for it


class BusyRuns:
    """The runs with a workflow task in flight here; a query waits until its run is idle,
    for its state is committed then."""

    def __init__(self) -> None:
        self._idle: dict[str, asyncio.Event | None] = {}

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._idle

    def __iter__(self) -> Iterator[str]:
        return iter(self._idle)

    def add(self, run_id: str) -> None:
        self._idle[run_id] = None

    def discard(self, run_id: str) -> None:
        event = self._idle.pop(run_id, None)
        if event is not None:
            event.set()

    async def wait_idle(self, run_id: str) -> None:
        while run_id in self._idle:
            event = self._idle[run_id]
            if event is None:
                event = self._idle[run_id] = asyncio.Event()
            await event.wait()


class Parking:
    """Workflow tasks waiting in their slot for their run's local activities."""

    def __init__(self, busy: BusyRuns) -> None:
        self._busy = busy
        self._parked: dict[str, asyncio.Future[WorkflowTask | None]] = {}
        self._since: collections.OrderedDict[float, list[str]] = collections.OrderedDict()

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._parked

    async def park(self, run_id: str) -> WorkflowTask | None:
        """Wait, still holding the run's slot, for the next outcome of the local activities
        it runs here (None), or for a claim of the run (its task): messages that reach the
        run meanwhile are claimed as usual, and delivered at once. After a while the slot
        goes back: a slow local activity's outcome then starts a task of its own."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WorkflowTask | None] = loop.create_future()
        self._parked[run_id] = future
        self._since.setdefault(loop.time(), []).append(run_id)
        self._busy.discard(run_id)  # claimable, and its state (committed) readable by queries
        try:
            return await future
        finally:
            if self._parked.get(run_id) is future:
                del self._parked[run_id]
            if not future.done():  # cancelled (shutdown)
                self._busy.add(run_id)

    def unpark(self, run_id: str, woken: WorkflowTask | None) -> bool:
        """Wake the task parked on the run (busy again from now); False if none is."""
        future = self._parked.pop(run_id, None)
        if future is None or future.done():
            return False
        self._busy.add(run_id)
        future.set_result(woken)
        return True

    def unpark_the_slow(self) -> None:
        """Give back the slots of tasks parked longer than PARK_FOR."""
        now = asyncio.get_running_loop().time()
        while self._since and next(iter(self._since)) < now - PARK_FOR:
            _, run_ids = self._since.popitem(last=False)
            for run_id in run_ids:
                self.unpark(run_id, None)
