"""SyncClient's schedule calls and SyncScheduleHandle, from a thread without an event loop,
against a real worker and Postgres."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import durable
from durable import WorkflowContext, workflow


@workflow
async def tick(ctx: WorkflowContext, label: str) -> str:
    return f"tick {label}"


def _latest_result(
    client: durable.SyncClient, handle: durable.SyncScheduleHandle
) -> tuple[str, Any]:
    """The workflow id of the schedule's latest slot and its run's result."""
    latest = handle.describe().recent[-1]
    return latest.workflow_id, client.get_handle(latest.workflow_id).result(timeout=30)


def _through_a_sync_client(dsn: str) -> dict[str, Any]:
    outcome: dict[str, Any] = {}
    with durable.SyncClient.connect(dsn) as client:
        # 03:00 in Berlin, every day; paused, so that only trigger and backfill start runs
        handle = client.create_schedule(
            "nightly",
            tick,
            "a",
            cron="0 3 * * *",
            timezone="Europe/Berlin",
            overlap="allow_all",
            paused=True,
            note="made paused",
        )
        outcome["handle"] = handle
        outcome["created"] = handle.describe()
        with pytest.raises(durable.ScheduleError, match="exists already"):
            client.create_schedule("nightly", tick, "a", cron="@daily")

        handle.trigger()
        outcome["triggered"] = _latest_result(client, handle)

        handle.unpause(note="on")
        outcome["unpaused"] = handle.describe()
        handle.pause(note="off")
        outcome["paused"] = handle.describe()

        handle.update(args=["b"], every=timedelta(hours=1), offset=timedelta(minutes=5))
        outcome["updated"] = handle.describe()
        client.get_schedule("nightly").trigger()
        outcome["triggered after update"] = _latest_result(client, handle)

        handle.update(cron="0 3 * * *")
        start = datetime(2026, 3, 28, tzinfo=UTC)
        handle.backfill(start, start + timedelta(days=2))  # 03:00 Berlin: before and after DST
        outcome["backfilled"] = {
            workflow_id: client.get_handle(workflow_id).result(timeout=30)
            for workflow_id in (
                "nightly@2026-03-28T02:00:00Z",  # CET
                "nightly@2026-03-29T01:00:00Z",  # CEST, after the clocks went forward
            )
        }

        outcome["listed"] = [d.schedule_id for d in client.list_schedules()]
        handle.delete()
        outcome["listed after delete"] = list(client.list_schedules())
        with pytest.raises(durable.ScheduleError, match="no schedule with id 'nightly'"):
            client.get_schedule("nightly").describe()
    return outcome


async def test_a_sync_client_creates_triggers_pauses_updates_backfills_and_deletes(
    dsn: str,
) -> None:
    async with (
        await durable.Client.connect(dsn) as worker_client,
        durable.Worker(worker_client, workflows=[tick]),
    ):
        outcome = await asyncio.to_thread(_through_a_sync_client, dsn)

    assert isinstance(outcome["handle"], durable.SyncScheduleHandle)
    created = outcome["created"]
    assert (created.schedule_id, created.workflow_name, created.cron) == (
        "nightly",
        "tick",
        "0 3 * * *",
    )
    assert (created.paused, created.note, created.overlap) == (True, "made paused", "allow_all")
    assert [t.hour for t in created.next_fire_times] == [3] * 5  # in Berlin's time

    workflow_id, result = outcome["triggered"]
    assert workflow_id.startswith("nightly@") and result == "tick a"

    assert (outcome["unpaused"].paused, outcome["unpaused"].note) == (False, "on")
    assert (outcome["paused"].paused, outcome["paused"].note) == (True, "off")

    updated = outcome["updated"]
    assert (updated.cron, updated.every, updated.offset) == (
        None,
        timedelta(hours=1),
        timedelta(minutes=5),
    )
    assert all(t.minute == 5 for t in updated.next_fire_times)
    assert outcome["triggered after update"][1] == "tick b"

    assert list(outcome["backfilled"].values()) == ["tick b", "tick b"]
    assert outcome["listed"] == ["nightly"]
    assert outcome["listed after delete"] == []
