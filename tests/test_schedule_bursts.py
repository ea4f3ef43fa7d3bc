"""A burst of schedules due together, more than one fire transaction takes: one worker fires
them with several transactions at once, each slot once and none before its time."""

from __future__ import annotations

import asyncio
import collections
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import durable
from durable._store import Store
from durable._worker import schedules as firing
from tests.conftest import wait_for

SECOND = timedelta(seconds=1)
SCHEDULES = 600  # more than two fire transactions take


@durable.workflow
async def beat(ctx: durable.WorkflowContext) -> None:
    pass


def count_in_flight(store: Store, monkeypatch: Any) -> list[int]:
    """Watch how many fire transactions of ``store`` run at once: [now, most]."""
    seen = [0, 0]
    fire = store.fire_schedules

    async def watched(task_queue: str, limit: int) -> Any:
        seen[0] += 1
        seen[1] = max(seen)
        try:
            return await fire(task_queue, limit)
        finally:
            seen[0] -= 1

    monkeypatch.setattr(store, "fire_schedules", watched)
    return seen


async def test_one_worker_fires_a_burst_with_transactions_at_once_each_slot_once(
    client: durable.Client, monkeypatch: Any
) -> None:
    assert SCHEDULES > firing._TRANSACTIONS_IN_BURST * firing._SCHEDULES_AT_ONCE
    first = datetime.fromtimestamp(math.ceil(datetime.now(UTC).timestamp()) + 8, UTC)
    slots = [first + i * SECOND for i in range(3)]
    await asyncio.gather(
        *(
            client.create_schedule(
                f"burst-{i:03d}",
                beat,
                every=SECOND,
                overlap="allow_all",
                start_at=slots[0],
                end_at=slots[-1],
            )
            for i in range(SCHEDULES)
        )
    )
    assert datetime.now(UTC) < slots[0]  # (else the first slot was not every schedule's)
    in_flight = count_in_flight(client.store, monkeypatch)

    async def all_fired() -> bool:
        return len(await runs(client)) >= SCHEDULES * len(slots)

    async with durable.Worker(client, workflows=[beat]):
        await wait_for(all_fired, timeout=60)
    found = await runs(client)
    per_slot = collections.Counter((schedule_id, slot) for schedule_id, slot, _ in found)
    assert set(per_slot) == {(f"burst-{i:03d}", s) for i in range(SCHEDULES) for s in slots}
    assert set(per_slot.values()) == {1}
    assert all(started >= slot for _, slot, started in found)
    assert in_flight[1] >= 2


async def runs(client: durable.Client) -> list[tuple[str, datetime, datetime]]:
    """The runs the burst schedules started: schedule id, slot, when it started."""
    return [
        (
            run.attributes["schedule_id"],
            datetime.fromisoformat(run.attributes["scheduled_at"]),
            run.started_at,
        )
        async for run in client.list(workflow_name="beat")
    ]
