"""`durable schedule ...`, run for real against a real database and worker."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

import durable
from durable import WorkflowContext, workflow
from durable._cli.output import span
from tests.conftest import wait_for
from tests.test_cli import cli, cli_json


@workflow(name="chime")
async def chime(ctx: WorkflowContext, text: str) -> str:
    return f"chime {text}"


@pytest.fixture
async def worker(client: durable.Client) -> AsyncIterator[durable.Worker]:
    """A worker serving chime (which registers it, so that the CLI can start it by name)."""
    async with durable.Worker(client, workflows=[chime]) as worker:
        yield worker


async def _latest_run(client: durable.Client, schedule_id: str) -> str:
    """The workflow id of the last slot the schedule handled (once its run completed)."""
    latest = (await client.get_schedule(schedule_id).describe()).recent[-1].workflow_id
    await client.get_handle(latest).result(timeout=30)
    return latest


async def test_create_describe_trigger_pause_update_backfill_list_delete(
    dsn: str,
    client: durable.Client,
    worker: durable.Worker,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = await cli(
        capsys,
        *("schedule", "create", "nightly", "chime", '"hi"', "--cron", "0 3 * * *"),
        *("--timezone", "Europe/Berlin", "--note", "made paused", "--paused"),
        *("--attr", 'team="ops"', "--execution-timeout", "1h", "--dsn", dsn),
    )
    assert (code, out) == (0, "created schedule nightly: it is paused\n"), err

    code, out, err = await cli(capsys, "schedule", "describe", "nightly", "--dsn", dsn)
    assert code == 0, err
    lines = out.splitlines()
    assert "schedule id:     nightly" in lines and "workflow:        chime" in lines
    assert "timetable:       cron 0 3 * * *" in lines and "time zone:       Europe/Berlin" in lines
    assert "state:           paused" in lines and "note:            made paused" in lines
    assert 'run options:     execution timeout 1h, attributes {"team": "ops"}' in lines
    fires = lines[lines.index("next fire times:") + 1 :][:5]
    assert len(fires) == 5 and all(" 03:00:00+0" in line for line in fires)  # Berlin's 03:00
    assert "catch-up window: 10m" in lines and "recent slots: -" in lines
    described = await cli_json(capsys, "schedule", "describe", "nightly", "--dsn", dsn)
    assert (described["cron"], described["every"], described["timezone"]) == (
        "0 3 * * *",
        None,
        "Europe/Berlin",
    )
    assert described["catchup_window"] == 600.0  # durations in seconds
    assert described["workflow_options"] == {
        "execution_timeout": 3600.0,
        "attributes": {"team": "ops"},
    }
    assert len(described["next_fire_times"]) == 5 and described["paused"] is True

    code, out, err = await cli(capsys, "schedule", "trigger", "nightly", "--dsn", dsn)
    assert (code, out) == (0, "triggered schedule nightly\n"), err
    triggered = await _latest_run(client, "nightly")
    assert triggered.startswith("nightly@")

    # the run shows which schedule started it, and the slot
    code, out, err = await cli(capsys, "workflow", "describe", triggered, "--dsn", dsn)
    assert code == 0, err
    assert '"schedule_id": "nightly"' in out and '"scheduled_at": "' in out
    run = await cli_json(capsys, "describe", triggered, "--dsn", dsn)
    assert run["attributes"]["schedule_id"] == "nightly" and run["result"] == "chime hi"
    assert run["attributes"]["team"] == "ops"
    assert triggered == f"nightly@{run['attributes']['scheduled_at']}"

    code, out, err = await cli(capsys, "schedule", "describe", "nightly", "--dsn", dsn)
    assert code == 0, err
    assert "counters:        1 fired, 0 skipped (overlap), 0 missed" in out
    recent = out.splitlines()[out.splitlines().index("recent slots:") + 1 :]
    assert recent[0].split() == ["SLOT", "WORKFLOW", "ID", "STATUS"]
    assert recent[1].split()[-2:] == [triggered, "completed"]
    assert recent[1].split()[1].endswith(("+01:00", "+02:00"))  # in Berlin's time

    for command, paused in (("unpause", False), ("pause", True)):
        code, out, err = await cli(
            capsys, "schedule", command, "nightly", "--note", command, "--dsn", dsn
        )
        assert (code, out) == (0, f"{command}d schedule nightly\n"), err
        described = await cli_json(capsys, "schedule", "describe", "nightly", "--dsn", dsn)
        assert (described["paused"], described["note"]) == (paused, command)

    code, out, err = await cli(
        capsys,
        *("schedule", "update", "nightly", "--every", "15m", "--offset", "5m"),
        *("--overlap", "allow_all", "--attr", 'region="eu"', "--arg", '"ho"', "--dsn", dsn),
    )
    assert (code, out) == (0, "updated schedule nightly: it is paused\n"), err
    described = await cli_json(capsys, "schedule", "describe", "nightly", "--dsn", dsn)
    assert (described["cron"], described["every"], described["offset"]) == (None, 900.0, 300.0)
    assert described["overlap"] == "allow_all" and described["note"] == "pause"  # kept
    assert described["workflow_options"] == {  # the attribute added, the timeout kept
        "execution_timeout": 3600.0,
        "attributes": {"team": "ops", "region": "eu"},
    }
    assert all(
        fire.split(":")[1] in ("05", "20", "35", "50") for fire in described["next_fire_times"]
    )
    updated = await cli_json(capsys, "schedule", "update", "nightly", "--note", "", "--dsn", dsn)
    assert updated["note"] is None and updated["every"] == 900.0

    code, out, err = await cli(
        capsys,
        *("schedule", "backfill", "nightly", "--start", "2026-01-01T00:00Z"),
        *("--end", "2026-01-01T00:30+00:00", "--dsn", dsn),
    )
    assert code == 0, err
    assert out == (
        "backfilled schedule nightly from 2026-01-01 00:00:00+00:00 to 2026-01-01 00:30:00+00:00\n"
    )
    for slot in ("00:05", "00:20"):  # the slots of every 15 minutes at :05 in [00:00, 00:30)
        handle = client.get_handle(f"nightly@2026-01-01T{slot}:00Z")
        assert await handle.result(timeout=30) == "chime ho"

    code, out, err = await cli(capsys, "schedule", "list", "--dsn", dsn)
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split() == [
        "SCHEDULE",
        "ID",
        "WORKFLOW",
        "TIMETABLE",
        "ZONE",
        "STATE",
        "NEXT",
        "FIRE",
        "FIRED",
    ]
    assert row.startswith("nightly") and "every 15m, offset 5m" in row and "paused" in row
    assert row.split()[-1] == "3"
    listed = await cli_json(capsys, "schedule", "list", "--dsn", dsn)
    assert [d["schedule_id"] for d in listed] == ["nightly"] and listed[0]["fired"] == 3

    deleted = await cli_json(capsys, "schedule", "delete", "nightly", "--dsn", dsn)
    assert deleted == {"schedule_id": "nightly", "action": "delete"}
    code, out, err = await cli(capsys, "schedule", "list", "--dsn", dsn)
    assert (code, out) == (0, "no schedules\n"), err
    assert (await client.get_handle(triggered).describe()).status == "completed"  # left alone


async def test_a_schedule_created_from_the_cli_fires_on_its_own(
    dsn: str,
    client: durable.Client,
    worker: durable.Worker,
    capsys: pytest.CaptureFixture[str],
) -> None:
    created = await cli_json(
        capsys, "schedule", "create", "often", "chime", "tick", "--every", "1s", "--dsn", dsn
    )
    assert created["every"] == 1.0 and created["paused"] is False

    async def fired_twice() -> bool:
        return (await client.get_schedule("often").describe()).fired >= 2

    await wait_for(fired_twice, timeout=20)
    code, out, err = await cli(capsys, "schedule", "delete", "often", "--dsn", dsn)
    assert (code, out) == (0, "deleted schedule often\n"), err
    runs = [d async for d in client.list(attributes={"schedule_id": "often"})]
    assert len(runs) >= 2 and all(r.workflow_id.startswith("often@") for r in runs)


async def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    dsn: str,
    client: durable.Client,
    worker: durable.Worker,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create = ("schedule", "create", "s", "chime", "x")
    for argv, expected in (
        ((*create, "--cron", "61 * * * *"), "error: cron='61 * * * *' cannot be read"),
        ((*create, "--cron", "@sometimes"), "is not an alias durable knows"),
        ((*create, "--cron", "@daily", "--timezone", "Mars/Base"), "timezone='Mars/Base'"),
        ((*create, "--cron", "@daily", "--offset", "5m"), "offset="),
        ((*create, "--every", "1h", "--offset", "2h"), "offset="),
        ((*create, "--every", "1.5s"), "whole number of seconds"),
        (
            (
                *create,
                "--every",
                "1h",
                "--start-at",
                "2027-01-01T00:00Z",
                "--end-at",
                "2026-01-01T00:00Z",
            ),
            "is not after start_at",
        ),
        ((*create, "--every", "1h", "--attr", 'schedule_id="x"'), "'schedule_id'"),
        (("schedule", "create", "s", "unknown", "--every", "1h"), "'unknown'"),
        (("schedule", "create", "s", "chime", "--every", "1h"), "the arguments do not fit"),
        (("schedule", "describe", "nope"), "error: no schedule with id 'nope'"),
        (("schedule", "pause", "nope"), "error: no schedule with id 'nope'"),
        (("schedule", "trigger", "nope"), "error: no schedule with id 'nope'"),
        (("schedule", "delete", "nope"), "error: no schedule with id 'nope'"),
        (("schedule", "update", "nope", "--every", "1h"), "error: no schedule with id 'nope'"),
        (
            (
                "schedule",
                "backfill",
                "nope",
                "--start",
                "2026-01-02T00:00Z",
                "--end",
                "2026-01-01T00:00Z",
            ),
            "backfill needs start before end",
        ),
    ):
        code, out, err = await cli(capsys, *argv, "--dsn", dsn)
        assert (code, out) == (2, ""), (argv, out, err)
        assert expected in err and len(err.strip().splitlines()) == 1, (argv, err)
        assert "Traceback" not in err
    assert [d async for d in client.list_schedules()] == []

    code, out, err = await cli(capsys, "schedule", "describe", "nope", "--json", "--dsn", dsn)
    assert (code, out) == (2, "")
    error = json.loads(err)["error"]
    assert error["type"] == "ScheduleError" and "'nope'" in error["message"]

    # argparse's own checks: exit 2 with the usage
    for argv, expected in (
        (create, "one of the arguments --cron --every is required"),
        ((*create, "--cron", "@daily", "--every", "1h"), "not allowed with argument"),
        ((*create, "--every", "0s"), "'0s' is not a positive duration"),
        ((*create, "--every", "soon"), "'soon' is not a duration"),
        ((*create, "--every", "1h", "--overlap", "never"), "invalid choice: 'never'"),
        ((*create, "--every", "1h", "--start-at", "2026-01-01"), "with an offset"),
        (("schedule", "backfill", "s", "--start", "2026-01-01T00:00Z"), "--end"),
    ):
        code, out, err = await cli(capsys, *argv, "--dsn", dsn)
        assert (code, out) == (2, ""), (argv, err)
        assert expected in err, (argv, err)

    await cli_json(capsys, *create, "--every", "1h", "--dsn", dsn)
    code, out, err = await cli(capsys, *create, "--every", "1h", "--dsn", dsn)
    assert code == 2 and "error: a schedule with id 's' exists already" in err
    code, out, err = await cli(capsys, "schedule", "update", "s", "--dsn", dsn)
    assert code == 2 and "changes nothing" in err


async def test_help_describes_every_schedule_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await cli(capsys, "schedule", "--help")
    assert code == 0
    commands = ("create", "list", "describe", "pause", "unpause", "trigger", "backfill")
    for command in (*commands, "update", "delete"):
        assert command in out
        code, text, _ = await cli(capsys, "schedule", command, "--help")
        assert code == 0 and f"usage: durable schedule {command}" in text
        assert len(text.split("\n\n")[1]) > 20  # a description paragraph


def test_durations_print_as_the_cli_takes_them() -> None:
    assert span(timedelta(0)) == "0s"
    assert span(timedelta(seconds=1.5)) == "1.5s"
    assert span(timedelta(minutes=15)) == "15m"
    assert span(timedelta(hours=1, minutes=30)) == "1h30m"
    assert span(timedelta(days=2, seconds=5)) == "2d5s"
