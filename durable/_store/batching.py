"""Group commit: items that arrive while earlier batches are in flight go out together."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

_Item = TypeVar("_Item")
_Out = TypeVar("_Out")


class InFlightBudget:
    """How many batches a store's batchers may have in flight together (the store gives them
    half its pool's connections: claims, reads and client calls keep the other half). A
    batcher with no batch in flight may always send one (at most one per batcher over the
    budget), so that none waits for another's to finish."""

    def __init__(self, size: int) -> None:
        self.free = max(1, size)


class _Batcher(Generic[_Item, _Out]):
    """Group commit: items (workflow steps, starts, posts) that arrive while earlier batches
    are in flight are written together by one statement (one round trip, one transaction).
    No item is acknowledged before the transaction holding it committed. The store's batchers
    share one in-flight budget. When a batch fails (say one run's fence moved), it rolled
    back whole, and each of its items is retried alone so that only the failing one fails.
    ``write`` returns each item's outcome by ``key(item)``, unique within a batch."""

    MAX_BATCH = 64

    def __init__(
        self,
        budget: InFlightBudget,
        write: Callable[[Sequence[_Item]], Awaitable[dict[str, _Out]]],
        key: Callable[[_Item], str],
    ) -> None:
        self._budget = budget
        self._write = write
        self._key = key
        self._waiting: list[tuple[_Item, asyncio.Future[_Out]]] = []
        self._flushers: set[asyncio.Task[None]] = set()

    async def submit(self, item: _Item) -> _Out:
        future: asyncio.Future[_Out] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if not self._flushers or self._budget.free > 0:
            self._budget.free -= 1
            flusher = asyncio.create_task(self._flush())
            self._flushers.add(flusher)
            flusher.add_done_callback(self._retire)  # should it be cancelled before it runs
        return await future

    def _retire(self, flusher: asyncio.Task[Any]) -> None:
        if flusher in self._flushers:
            self._flushers.discard(flusher)
            self._budget.free += 1

    async def _flush(self) -> None:
        try:
            await self._flush_waiting()
        finally:
            # at once, not in a done callback: a task is done before its callbacks run, and
            # an item submitted meanwhile would see a flusher that will never take it
            flusher = asyncio.current_task()
            assert flusher is not None
            self._retire(flusher)

    async def _flush_waiting(self) -> None:
        while self._waiting:
            batch = self._waiting[: self.MAX_BATCH]
            del self._waiting[: len(batch)]
            live = [(item, future) for item, future in batch if not future.done()]
            if len(live) == 1:
                await self._write_alone(*live[0])
                continue
            try:
                outcomes = await self._write([item for item, _ in live])
            except Exception:  # nothing of the batch was written: find out which item failed
                for item, future in live:
                    await self._write_alone(item, future)
                continue
            for item, future in live:
                _settle(future, outcomes[self._key(item)])

    async def _write_alone(self, item: _Item, future: asyncio.Future[_Out]) -> None:
        try:
            outcomes = await self._write([item])
        except Exception as exc:
            _settle(future, exc)
        else:
            _settle(future, outcomes[self._key(item)])


def _settle(future: asyncio.Future[_Out], outcome: _Out | Exception) -> None:
    if future.done():  # its caller was cancelled
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
