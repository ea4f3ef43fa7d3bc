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


async def test_the_budget_comes_back_whole_after_failures_and_cancelled_callers() -> None:
    """Every flusher returns what it took of the shared budget, whatever its items did: a
    write that fails (each item is then written alone, and fails alone), a caller cancelled
    while its item waits."""
    budget = InFlightBudget(2)
    gate = asyncio.Event()

    async def write(items: Sequence[str]) -> dict[str, str]:
        await gate.wait()
        if "bad" in items:
            raise ValueError("bad item")
        return {item: item for item in items}

    batcher: _Batcher[str, str] = _Batcher(budget, write, lambda item: item)
    calls = [asyncio.create_task(batcher.submit(item)) for item in ("a", "bad", "b", "c")]
    await asyncio.sleep(0)
    calls[3].cancel()
    gate.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert outcomes[0] == "a" and outcomes[2] == "b"
    assert isinstance(outcomes[1], ValueError)
    assert isinstance(outcomes[3], asyncio.CancelledError)
    await asyncio.sleep(0)
    assert budget.free == 2
