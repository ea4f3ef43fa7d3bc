"""`durable queue describe|configure` and `durable start --priority`, run for real against a
real database and worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

import durable
from durable import WorkflowContext, workflow
from tests.test_cli import cli, cli_json


@workflow(name="tally", task_queue="tallies")
async def tally(ctx: WorkflowContext, n: int) -> int:
    return n + 1


@pytest.fixture
async def worker(client: durable.Client) -> AsyncIterator[durable.Worker]:
    """A worker serving tally on "tallies" (which registers it, so that the CLI can start
    it by name)."""
    async with durable.Worker(
        client, "tallies", workflows=[tally], identity="tally-worker"
    ) as worker:
        yield worker


async def test_configure_then_describe_change_only_the_limits_given(
    dsn: str, client: durable.Client, worker: durable.Worker, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await cli(capsys, "queue", "describe", "tallies", "--dsn", dsn)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:6] == [
        "task queue:     tallies",
        "max running:    -",
        "rate limit:     -",
        "priority aging: -",
        "running:        0 activities",
        "backlog:        -",
    ]
    assert lines[6] == "workers:"
    assert lines[7].split() == ["IDENTITY", "STARTED", "LEASE", "UNTIL"]
    assert lines[8].split()[0] == "tally-worker"

    code, out, err = await cli(
        capsys,
        *("queue", "configure", "tallies", "--max-running-activities", "5"),
        *("--rate-limit", "100/s", "--priority-aging", "1m", "--dsn", dsn),
    )
    assert (code, err) == (0, "")
    assert out == (
        "configured task queue tallies: max running 5 activities, rate limit 100/1s activity "
        "starts, priority aging 1m\n"
    )
    config = (await client.describe_task_queue("tallies")).config
    assert config == durable.TaskQueueConfig(
        5, durable.RateLimit(100, timedelta(seconds=1)), timedelta(minutes=1)
    )
    code, out, err = await cli(capsys, "queue", "describe", "tallies", "--dsn", dsn)
    assert code == 0, err
    assert out.splitlines()[1:4] == [
        "max running:    5 activities",
        "rate limit:     100/1s activity starts",
        "priority aging: 1m",
    ]
    described = await cli_json(capsys, "queue", "describe", "tallies", "--dsn", dsn)
    assert described["task_queue"] == "tallies"
    assert described["config"] == {
        "max_running_activities": 5,
        "rate_limit": {"count": 100, "per": 1.0},
        "priority_aging": 60.0,  # durations in seconds
    }
    assert (described["backlog"], described["running"]) == ({}, 0)
    [seen] = described["workers"]
    assert seen["identity"] == "tally-worker" and seen["lease_until"] > seen["started_at"]

    # only the limits given change; none drops one
    changed = await cli_json(
        capsys,
        *("queue", "configure", "tallies", "--rate-limit", "5/1m"),
        *("--max-running-activities", "none", "--dsn", dsn),
    )
    assert changed["config"] == {
        "max_running_activities": None,
        "rate_limit": {"count": 5, "per": 60.0},
        "priority_aging": 60.0,
    }
    # --clear with limits: those and no other
    code, out, err = await cli(
        capsys,
        *("queue", "configure", "tallies", "--clear", "--max-running-activities", "2"),
        *("--dsn", dsn),
    )
    assert (code, out) == (0, "configured task queue tallies: max running 2 activities\n"), err
    code, out, err = await cli(capsys, "queue", "configure", "tallies", "--clear", "--dsn", dsn)
    assert (code, out) == (0, "configured task queue tallies: no limits\n"), err
    assert (await client.describe_task_queue("tallies")).config == durable.TaskQueueConfig()


async def test_start_priority_shows_in_the_queue_backlog(
    dsn: str, client: durable.Client, worker: durable.Worker, capsys: pytest.CaptureFixture[str]
) -> None:
    # on a queue no worker serves, the runs wait: the backlog counts them by priority
    for run_id, priority in (("p1", "1"), ("p5-a", "5"), ("p5-b", "5")):
        started = await cli_json(
            capsys,
            *("start", "tally", "1", "--id", run_id, "--priority", priority),
            *("--task-queue", "idle", "--dsn", dsn),
        )
        assert started["workflow_id"] == run_id
    code, out, err = await cli(
        capsys, "workflow", "start", "tally", "2", "--id", "p3", "--dsn", dsn
    )
    assert code == 0, err
    await client.get_handle("p3").result(timeout=30)  # (served: on "tallies")
    described = await cli_json(capsys, "queue", "describe", "idle", "--dsn", dsn)
    assert (described["backlog"], described["workers"]) == ({"1": 1, "5": 2}, [])
    code, out, err = await cli(capsys, "queue", "describe", "idle", "--dsn", dsn)
    assert code == 0, err
    assert "backlog:        3 due tasks: 1 at priority 1, 2 at priority 5" in out.splitlines()
    assert out.splitlines()[-1] == "workers: - (no live worker)"

    code, out, err = await cli(
        capsys,
        *("signal-with-start", "tally", "3", "--id", "sws", "--signal", "poke"),
        *("--priority", "2", "--task-queue", "idle", "--dsn", dsn),
    )
    assert code == 0, err
    backlog = (await client.describe_task_queue("idle")).backlog
    assert backlog == {1: 1, 2: 1, 5: 2}

    for priority in ("0", "6"):
        code, out, err = await cli(
            capsys, "start", "tally", "1", "--id", "bad", "--priority", priority, "--dsn", dsn
        )
        assert (code, out) == (2, ""), err
        assert f"priority must be an int from 1 (highest) to 5 (lowest), got {priority}" in err
        assert len(err.strip().splitlines()) == 1
    assert await client.count(workflow_name="tally") == 5  # no "bad" run


async def test_bad_limits_exit_2_with_one_line_and_change_nothing(
    dsn: str, client: durable.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    await client.configure_task_queue("q", max_running_activities=3)
    configure = ("queue", "configure", "q")
    for argv, expected in (
        (("--rate-limit", "0/1s"), "--rate-limit must be COUNT/PERIOD"),
        (("--rate-limit", "100"), "got '100'"),
        (("--rate-limit", "10/0s"), "got '10/0s'"),
        (("--rate-limit", "10/soon"), "got '10/soon'"),
        (("--rate-limit=-1/s",), "got '-1/s'"),
        (("--max-running-activities", "-1"), "--max-running-activities must be a whole"),
        (("--max-running-activities", "0"), "got '0'"),
        (("--max-running-activities", "many"), "got 'many'"),
        (("--priority-aging", "0s"), "--priority-aging must be a positive duration"),
        (("--priority-aging", "soon"), "got 'soon'"),
        # a good limit beside a bad one is not written either
        (("--max-running-activities", "9", "--priority-aging=-1m"), "got '-1m'"),
        ((), "queue configure changes nothing"),
    ):
        code, out, err = await cli(capsys, *configure, *argv, "--dsn", dsn)
        assert (code, out) == (2, ""), (argv, out, err)
        assert err.startswith("error: ") and expected in err, (argv, err)
        assert len(err.strip().splitlines()) == 1, (argv, err)
    assert (await client.describe_task_queue("q")).config == durable.TaskQueueConfig(3)

    code, out, err = await cli(capsys, *configure, "--rate-limit", "0/s", "--json", "--dsn", dsn)
    assert (code, out) == (2, "")
    assert '"type": "ValueError"' in err and "0/s" in err


async def test_help_describes_the_queue_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await cli(capsys, "queue", "--help")
    assert code == 0 and "describe" in out and "configure" in out
    for command in ("describe", "configure"):
        code, text, _ = await cli(capsys, "queue", command, "--help")
        assert code == 0 and f"usage: durable queue {command}" in text
    assert "--clear" in text and "none" in text and "100/1s" in text
