"""The batcher on its own (no database): what it writes, and that no item is left behind."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from durable._store.batching import InFlightBudget, _Batcher


def _echo(written: list[list[str]]) -> _Batcher[str, str]:
    async def write(items: Sequence[str]) -> dict[str, str]:
        written.append(list(items))
        return {item: item.upper() for item in items}

    return _Batcher(_budget_spent(), write, lambda item: item)


def _budget_spent() -> InFlightBudget:
    budget = InFlightBudget(1)
    budget.free = 0  # other batchers of the store hold the whole budget
    return budget


async def test_items_that_arrive_together_are_written_together() -> None:
    written: list[list[str]] = []
    batcher = _echo(written)
    outcomes = await asyncio.gather(*(batcher.submit(f"item-{i}") for i in range(5)))
    assert outcomes == [f"ITEM-{i}" for i in range(5)]
    assert sum(len(batch) for batch in written) == 5
    assert len(written) < 5  # (the first alone, the rest as they queued behind it)


async def test_an_item_submitted_as_the_last_batch_ends_is_written() -> None:
    """Submitted from the continuation of an item just written, before its flusher's done
    callbacks have run: the flusher must not look alive then, or the item waits for ever
    (the whole budget being held by the store's other batchers)."""
    written: list[list[str]] = []
    batcher = _echo(written)

    async def one_after_the_other() -> list[str]:
        return [await batcher.submit("first"), await batcher.submit("second")]

    assert await asyncio.wait_for(one_after_the_other(), 5) == ["FIRST", "SECOND"]
    assert written == [["first"], ["second"]]
