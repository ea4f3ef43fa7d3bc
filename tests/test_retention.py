"""Retention (API.md, "Operating running workflows"): purge deletes closed runs with what
they left, never an open run nor one closed after the cutoff; export reads them out first;
Worker(retention=...) purges by itself. Real Postgres, real workers, the real CLI."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import durable
from durable import WorkflowContext, activity, workflow
from durable._cli import main as cli_main

from .conftest import wait_for


@activity
async def shout(word: str) -> str:
    return word.upper()


@workflow
async def short_wf(ctx: WorkflowContext, word: str) -> str:
    return await ctx.activity(shout, word)


@workflow
async def parked_wf(ctx: WorkflowContext) -> None:
    await ctx.wait_signal("never")


async def _run_short(client: durable.Client, prefix: str, n: int) -> list[str]:
    async with durable.Worker(
        client, task_queue="retention-q", workflows=[short_wf], activities=[shout]
    ):
        handles = [
            await client.start(short_wf, f"w{i}", id=f"{prefix}-{i}", task_queue="retention-q")
            for i in range(n)
        ]
        for handle in handles:
            await handle.result(timeout=20)
    return [h.workflow_id for h in handles]


async def _counts(client: durable.Client, prefix: str) -> dict[str, int]:
    pool = client.store.pool
    counts = {}
    for table in ("workflows", "history", "inbox", "activity_tasks", "calls"):
        counts[table] = await pool.fetchval(
            f"SELECT count(*) FROM durable.{table} WHERE workflow_id LIKE $1", f"{prefix}-%"
        )
    return counts


async def test_purge_deletes_runs_closed_before_the_cutoff_and_nothing_else(
    client: durable.Client,
) -> None:
    await _run_short(client, "old", 5)
    parked = await client.start(parked_wf, id="old-parked", task_queue="nobody")  # open
    await asyncio.sleep(0.05)
    cutoff = await client.store.database_time()
    await asyncio.sleep(0.05)
    await _run_short(client, "new", 3)
    assert await client.purge(closed_before=cutoff) == 5
    assert await _counts(client, "old") == {
        "workflows": 1,  # the open one
        "history": 1,
        "inbox": 0,
        "activity_tasks": 0,
        "calls": 0,
    }
    assert (await parked.describe()).status == "pending"
    assert (await _counts(client, "new"))["workflows"] == 3
    assert await client.purge(closed_before=cutoff) == 0  # done again: nothing more
    with pytest.raises(durable.WorkflowNotFoundError):
        await client.get_handle("old-0").describe()


async def test_purge_in_chunks_with_a_status_filter_and_an_age(client: durable.Client) -> None:
    for i in range(450):
        await client.start(parked_wf, id=f"many-{i}", task_queue="nobody")
    assert await client.batch("terminate", workflow_name="parked_wf") == 450
    await _run_short(client, "kept", 2)
    assert await client.purge(closed_before=timedelta(seconds=0.001), status="completed") == 2
    assert (await _counts(client, "many"))["workflows"] == 450
    await asyncio.sleep(0.01)
    assert await client.purge(closed_before=timedelta(seconds=0.001)) == 450
    assert await _counts(client, "many") == dict.fromkeys(
        ("workflows", "history", "inbox", "activity_tasks", "calls"), 0
    )


async def test_purge_refuses_bad_input_and_changes_nothing(client: durable.Client) -> None:
    await _run_short(client, "bad", 1)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"closed_before": datetime(2030, 1, 1)}, "timezone-aware"),
        ({"closed_before": "30d"}, "closed_before must be"),
        ({"closed_before": timedelta(seconds=-1)}, "closed_before"),
        ({"closed_before": timedelta(days=1), "status": "running"}, "status must be one of"),
    ]
    for options, message in cases:
        with pytest.raises(ValueError, match=message):
            await client.purge(**options)
        with pytest.raises(ValueError, match=message):
            [_ async for _ in client.export(**options)]
    assert (await _counts(client, "bad"))["workflows"] == 1


async def test_export_then_purge_from_the_command_line(
    client: durable.Client, dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = await _run_short(client, "cli", 3)
    cutoff = (await client.store.database_time()).isoformat()
    out = tmp_path / "runs.jsonl"
    db = ("--dsn", dsn)
    args = ["export", "--closed-before", cutoff, "--status", "COMPLETED", "-o", str(out), *db]
    assert await asyncio.to_thread(cli_main, args) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["workflow_id"] for line in lines) == sorted(ids)
    first = lines[0]
    assert first["status"] == "completed" and first["closed_at"]
    assert first["history"][0]["type"] == "WORKFLOW_STARTED"
    assert first["history"][-1]["fields"]["result"] == first["workflow_id"].replace("cli-", "W")
    capsys.readouterr()
    args = ["purge", "--closed-before", cutoff, "--json", *db]
    assert await asyncio.to_thread(cli_main, args) == 0
    assert json.loads(capsys.readouterr().out) == {"purged": 3}
    assert await asyncio.to_thread(cli_main, ["purge", "--closed-before", "yesterday", *db]) == 2
    assert "neither an age" in capsys.readouterr().err


async def test_a_worker_with_retention_purges_runs_closed_longer_ago(
    client: durable.Client,
) -> None:
    await _run_short(client, "aged", 4)
    await client.start(parked_wf, id="aged-open", task_queue="retention-q")
    await asyncio.sleep(0.3)
    async with durable.Worker(
        client,
        task_queue="retention-q",
        workflows=[short_wf, parked_wf],
        activities=[shout],
        retention=timedelta(milliseconds=200),
    ):

        async def purged() -> bool:
            return (await _counts(client, "aged"))["workflows"] == 1

        await wait_for(purged)
        assert (await client.get_handle("aged-open").describe()).status == "running"
    with pytest.raises(ValueError, match="retention"):
        durable.Worker(client, workflows=[short_wf], retention=timedelta(0))


async def test_the_sync_client_exports_and_purges(client: durable.Client, dsn: str) -> None:
    await _run_short(client, "sync", 2)
    cutoff = await client.store.database_time()
    sync = await asyncio.to_thread(durable.SyncClient.connect, dsn)
    try:
        exported = await asyncio.to_thread(lambda: list(sync.export(cutoff)))
        assert sorted(d.workflow_id for d, _ in exported) == ["sync-0", "sync-1"]
        assert await asyncio.to_thread(sync.purge, cutoff) == 2
    finally:
        await asyncio.to_thread(sync.close)


async def test_closed_before_zero_means_every_run_closed_until_now(
    client: durable.Client, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--closed-before 0s` (and timedelta(0)): every closed run, never an open one."""
    await _run_short(client, "zero", 3)
    await client.start(parked_wf, id="zero-open", task_queue="nobody")
    db = ("--dsn", dsn)
    assert await asyncio.to_thread(cli_main, ["export", "--closed-before", "0s", *db]) == 0
    exported = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(run["workflow_id"] for run in exported) == ["zero-0", "zero-1", "zero-2"]
    args = ["purge", "--closed-before", "0s", "--json", *db]
    assert await asyncio.to_thread(cli_main, args) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out) == {"purged": 3}
    await _run_short(client, "again", 1)
    assert await client.purge(closed_before=timedelta(0)) == 1
    assert (await _counts(client, "zero"))["workflows"] == 1  # the open one
