"""The `durable` command line, run for real: in-process for short commands (in a thread, as
main() runs its own event loop) and `durable worker` as a subprocess."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import shlex
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pydantic
import pytest

import durable
from durable._cli import main, to_jsonable
from tests import cli_workflows
from tests.conftest import _with_database, wait_for, worker_subprocess

REPO = Path(__file__).resolve().parent.parent


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = await cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # MODULE arguments are imported relative to the current folder


@pytest.fixture
def worker_target() -> str:
    return "tests.cli_workflows"


@pytest.fixture
async def worker_process(
    dsn: str, client: durable.Client, tmp_path: Path, worker_target: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`durable worker tests.cli_workflows` in a subprocess, once it has registered."""
    async with worker_subprocess(tmp_path / "worker.log", worker_target, "--dsn", dsn) as proc:
        await wait_for(lambda: client.store.registered_workflow("greeter"), timeout=10)
        yield proc


async def wait_until_waiting(client: durable.Client, workflow_id: str) -> None:
    async def waiting() -> bool:
        try:
            return await client.get_handle(workflow_id).query("status", timeout=5) == "waiting"
        except durable.WorkflowNotFoundError:
            return False

    await wait_for(waiting, timeout=10)


async def test_worker_start_query_signal_describe_history_list_terminate(
    dsn: str,
    client: durable.Client,
    worker_process: asyncio.subprocess.Process,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = await cli(capsys, "start", "greeter", "ann", "--id", "wf-1", "--dsn", dsn)
    assert code == 0, err
    assert "wf-1" in out
    await wait_until_waiting(client, "wf-1")

    code, out, err = await cli(capsys, "query", "wf-1", "status", "--dsn", dsn)
    assert (code, out.strip()) == (0, '"waiting"'), err
    code, out, err = await cli(capsys, "signal", "wf-1", "finish", '"!"', "--dsn", dsn)
    assert code == 0, err
    code, out, err = await cli(capsys, "result", "wf-1", "--timeout", "10", "--dsn", dsn)
    assert (code, out.strip()) == (0, '"hello ann!"'), err

    code, out, err = await cli(capsys, "describe", "wf-1", "--dsn", dsn)
    assert code == 0, err
    assert "completed" in out and "greeter" in out and '"customer": "ann"' in out
    described = await cli_json(capsys, "describe", "wf-1", "--dsn", dsn)
    assert described["status"] == "completed"
    assert described["attributes"] == {"customer": "ann"}

    code, out, err = await cli(capsys, "history", "wf-1", "--dsn", dsn)
    assert code == 0, err
    lines = out.splitlines()
    assert "WORKFLOW_STARTED" in lines[0] and "WORKFLOW_COMPLETED" in lines[-1]
    assert any("ACTIVITY_SCHEDULED" in line and '"greet"' in line for line in lines)
    events = await cli_json(capsys, "history", "wf-1", "--dsn", dsn)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    completed = next(e for e in events if e["type"] == "ACTIVITY_COMPLETED")
    assert completed["fields"]["result"] == "hello ann"

    started = await cli_json(capsys, "start", "greeter", '"bob"', "--id", "wf-2", "--dsn", dsn)
    assert started["workflow_id"] == "wf-2" and started["run_id"]
    await wait_until_waiting(client, "wf-2")  # its attributes are set by then
    code, out, err = await cli(capsys, "terminate", "wf-2", "--reason", "test", "--dsn", dsn)
    assert code == 0, err
    described = await cli_json(capsys, "describe", "wf-2", "--dsn", dsn)
    assert described["status"] == "terminated"

    code, out, err = await cli(capsys, "list", "--dsn", dsn)
    assert code == 0, err
    assert out.splitlines()[0].split()[:3] == ["WORKFLOW", "ID", "RUN"]
    assert "wf-1" in out and "wf-2" in out and "terminated" in out
    listed = await cli_json(capsys, "list", "--status", "completed", "--dsn", dsn)
    assert [d["workflow_id"] for d in listed] == ["wf-1"]
    listed = await cli_json(capsys, "list", "--attribute", 'customer="bob"', "--dsn", dsn)
    assert [d["workflow_id"] for d in listed] == ["wf-2"]

    worker_process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(worker_process.wait(), 10) == 0


@pytest.mark.parametrize(
    "worker_target",
    [
        "tests.cli_workflows",
        "tests.cli_workflows:everything",
        "tests.cli_workflows:make_worker",
    ],
)
async def test_start_wait_prints_result(
    dsn: str,
    client: durable.Client,
    worker_process: asyncio.subprocess.Process,
    capsys: pytest.CaptureFixture[str],
) -> None:
    command = asyncio.create_task(
        cli(
            capsys,
            "start",
            "greeter",
            "cy",
            "--id",
            "wf-3",
            "--wait",
            "--timeout",
            "10",
            "--json",
            "--dsn",
            dsn,
        )
    )
    await wait_until_waiting(client, "wf-3")
    await client.get_handle("wf-3").signal("finish", "?")
    code, out, err = await command
    assert code == 0, err
    assert json.loads(out)["result"] == "hello cy?"


async def test_replay_ok_and_nondeterminism(
    dsn: str, client: durable.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    worker = durable.Worker(
        client, workflows=[cli_workflows.greeter], activities=[cli_workflows.greet]
    )
    async with worker:
        done = await client.start(cli_workflows.greeter, "dee", id="done")
        await done.signal("finish", ".")
        await done.result(timeout=10)
        await client.start(cli_workflows.greeter, "eve", id="open")
        await wait_until_waiting(client, "open")

    code, out, err = await cli(
        capsys, "replay", "tests.cli_workflows", "--id", "done", "--dsn", dsn
    )
    assert code == 0, err
    assert "done (greeter" in out and ": ok" in out
    outcomes = await cli_json(capsys, "replay", "tests.cli_workflows", "--dsn", dsn)
    assert {(o["workflow_id"], o["status"]) for o in outcomes} == {("done", "ok"), ("open", "ok")}

    code, out, err = await cli(capsys, "replay", "tests.cli_workflows_changed", "--dsn", dsn)
    assert code == 1, err
    assert out.count("NONDETERMINISM") == 2
    assert "wave" in out and "greet" in out  # the message names both activities
    assert "2 replayed, 2 failed" in out


async def test_user_errors_exit_2_with_a_message(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = await cli(capsys, "describe", "no-such-id", "--dsn", dsn)
    assert code == 2
    assert err.startswith("error: ") and "no-such-id" in err and "Traceback" not in err

    code, _, err = await cli(capsys, "describe", "x", "--dsn", "postgresql://nobody@127.0.0.1:1/x")
    assert code == 2
    assert "error: cannot connect to Postgres at postgresql://nobody@127.0.0.1:1/x" in err

    code, _, err = await cli(capsys, "migrate", "--dsn", "postgresql://nobody@127.0.0.1:1/x")
    assert code == 2 and "error: cannot connect" in err

    code, _, err = await cli(capsys, "start", "unregistered", "--dsn", dsn)
    assert code == 2 and "unregistered" in err

    code, _, err = await cli(capsys, "list", "--attribute", "novalue", "--dsn", dsn)
    assert code == 2 and "KEY=JSON" in err

    code, _, err = await cli(capsys, "replay", "tests.no_such_module", "--dsn", dsn)
    assert code == 2 and "cannot import module 'tests.no_such_module'" in err

    code, _, err = await cli(capsys, "worker", "tests.cli_workflows:nothing", "--dsn", dsn)
    assert code == 2 and "has no attribute 'nothing'" in err

    code, _, err = await cli(capsys, "frobnicate")
    assert code == 2 and "invalid choice" in err


async def test_a_malformed_run_id_exits_2_naming_it(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not asyncpg's DataError with a traceback (exit 1): run_id, the value, a UUID."""
    for command in ("describe", "signal", "result", "fork"):
        argv = [command, "wf", *(["finish"] if command == "signal" else []), "--run-id", "x"]
        code, out, err = await cli(capsys, *argv, "--dsn", dsn)
        assert (code, out) == (2, ""), err
        assert err.startswith("error: run_id") and "'x'" in err and "UUID" in err, err
        assert "Traceback" not in err
    code, out, err = await cli(capsys, "history", "wf", "--run-id", "x", "--json", "--dsn", dsn)
    assert (code, out) == (2, "")
    error = json.loads(err)["error"]
    assert error["type"] == "ValueError" and "run_id" in error["message"]


async def test_help_describes_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await cli(capsys, "--help")
    assert code == 0
    for command in (
        "dev",
        "migrate",
        "worker",
        "start",
        "signal",
        "query",
        "cancel",
        "terminate",
        "result",
        "describe",
        "history",
        "list",
        "batch",
        "replay",
    ):
        assert command in out
        code, text, _ = await cli(capsys, command, "--help")
        assert code == 0 and f"usage: durable {command}" in text
        assert len(text.split("\n\n")[1]) > 20  # a description paragraph


async def test_migrate_applies_then_reports_up_to_date(
    server_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"durable_cli_migrate_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        dsn = _with_database(server_dsn, name)
        code, out, err = await cli(capsys, "migrate", "--dsn", dsn)
        assert code == 0, err
        assert out.startswith("applied migrations: 0001")
        code, out, err = await cli(capsys, "migrate", "--dsn", dsn)
        assert (code, out.strip()) == (0, "schema up to date")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_dev_prints_the_dsn(
    dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(
        "durable._cli.database.embedded_dsn", lambda: dsn
    )  # no second server in tests
    monkeypatch.setenv("DURABLE_HOME", str(tmp_path))
    code, out, err = await cli(capsys, "dev")
    assert code == 0, err
    assert f"export DURABLE_DATABASE_URL={shlex.quote(dsn)}" in out.splitlines()
    assert (await cli_json(capsys, "dev"))["dsn"] == dsn


def test_to_jsonable_handles_payload_types() -> None:
    @dataclasses.dataclass
    class Point:
        x: int
        at: datetime

    class Order(pydantic.BaseModel):
        id: int
        at: datetime

    ident = uuid.uuid4()
    value = {
        "when": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "raw": b"ab\xff",
        "price": Decimal("1.50"),
        "id": ident,
        "tags": {"b", "a"},
        "point": Point(1, datetime(2024, 1, 1, tzinfo=UTC)),
        "order": Order(id=7, at=datetime(2024, 1, 1, tzinfo=UTC)),
    }
    assert json.loads(json.dumps(value, default=to_jsonable)) == {
        "when": "2024-01-02T03:04:05+00:00",
        "raw": "ab\\xff",
        "price": "1.50",
        "id": str(ident),
        "tags": ["a", "b"],
        "point": {"x": 1, "at": "2024-01-01T00:00:00+00:00"},
        "order": {"id": 7, "at": "2024-01-01T00:00:00Z"},  # as pydantic writes it
    }


def test_python_dash_m_durable_runs_the_cli() -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "durable", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ},
        timeout=30,
        check=False,
    )
    assert done.returncode == 0 and "replay" in done.stdout


async def test_version_case_insensitive_status_and_strict_json(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await cli(capsys, "--version")
    assert code == 0 and out.strip() == f"durable {durable.__version__}"
    client = await durable.Client.connect(dsn)
    try:
        handle = await client.start(cli_workflows.greeter, "ada", id="cased")
        status = (await handle.describe()).status
    finally:
        await client.close()
    listed = await cli_json(capsys, "list", "--status", status.upper(), "--dsn", dsn)
    assert [d["workflow_id"] for d in listed] == ["cased"]
    code, _, err = await cli(capsys, "start", "greeter", '{"name": "ada",}', "--dsn", dsn)
    assert code == 2 and "is not valid JSON" in err and "column 16" in err
    code, _, err = await cli(capsys, "signal", "cased", "hello", "[1, 2", "--dsn", dsn)
    assert code == 2 and "'[1, 2' is not valid JSON" in err


async def test_list_into_a_closed_pipe_exits_quietly(dsn: str) -> None:
    """`durable list | head -1`: the reader closes the pipe after one line; the command
    ends with exit 0 and nothing on stderr (no BrokenPipeError traceback)."""
    client = await durable.Client.connect(dsn)
    try:
        await asyncio.gather(
            *(client.start(cli_workflows.greeter, "x", id=f"piped-{i:04d}") for i in range(1500))
        )
    finally:
        await client.close()
    command = f"{shlex.quote(sys.executable)} -m durable list --limit 1500 --dsn {shlex.quote(dsn)}"
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        f"set -o pipefail; {command} | head -1",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert out.startswith(b"WORKFLOW ID") and out.count(b"\n") == 1
    assert proc.returncode == 0, err.decode()
    assert err == b"", err.decode()


async def test_run_id_pins_every_per_run_command_to_one_run(
    dsn: str,
    worker_process: asyncio.subprocess.Process,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two runs under one workflow id: --run-id reads the first (closed) one while the second
    runs, and a write addressed to the first is refused instead of reaching the second."""
    db = ("--dsn", dsn)
    first = await cli_json(capsys, "start", "greeter", '"ada"', "--id", "twice", *db)
    code, _, err = await cli(capsys, "signal", "twice", "finish", '"!"', *db)
    assert code == 0, err
    assert await cli_json(capsys, "result", "twice", "--timeout", "30", *db) == "hello ada!"
    second = await cli_json(capsys, "start", "greeter", '"bob"', "--id", "twice", *db)
    assert first["run_id"] != second["run_id"]
    pinned = await cli_json(capsys, "describe", "twice", "--run-id", first["run_id"], *db)
    latest = await cli_json(capsys, "describe", "twice", *db)
    assert (pinned["run_id"], pinned["status"]) == (first["run_id"], "completed")
    assert latest["run_id"] == second["run_id"]
    result = await cli_json(capsys, "result", "twice", "--run-id", first["run_id"], *db)
    assert result == "hello ada!"
    events = await cli_json(capsys, "history", "twice", "--run-id", first["run_id"], *db)
    assert events[0]["fields"]["args"] == [["ada"], {}]
    code, _, err = await cli(capsys, "signal", "twice", "finish", "--run-id", first["run_id"], *db)
    assert code == 2 and first["run_id"] in err and "closed" in err


async def test_workflow_group_pauses_and_resumes(
    dsn: str,
    worker_process: asyncio.subprocess.Process,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`durable workflow pause` holds a running workflow (a signal waits), describe says so,
    and `durable workflow resume` lets the signal in."""
    db = ("--dsn", dsn)
    await cli_json(capsys, "workflow", "start", "greeter", '"eve"', "--id", "held", *db)
    code, out, err = await cli(capsys, "workflow", "pause", "held", "--reason", "audit", *db)
    assert (code, out.strip()) == (0, "paused held"), err
    code, _, err = await cli(capsys, "signal", "held", "finish", '"?"', *db)
    assert code == 0, err
    code, out, _ = await cli(capsys, "workflow", "describe", "held", *db)
    assert "paused since" in out and "audit" in out
    listed = await cli_json(capsys, "list", "--status", "PAUSED", *db)
    assert [d["workflow_id"] for d in listed] == ["held"]
    code, out, err = await cli(capsys, "workflow", "resume", "held", *db)
    assert (code, out.strip()) == (0, "resumed held"), err
    assert await cli_json(capsys, "result", "held", "--timeout", "30", *db) == "hello eve?"
    code, _, err = await cli(capsys, "workflow", "pause", "held", *db)
    assert code == 2 and "closed" in err


async def test_workflow_reset_and_fork_start_again_with_the_signals_delivered_again(
    dsn: str,
    client: durable.Client,
    worker_process: asyncio.subprocess.Process,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`durable workflow reset --seq 1` starts a finished workflow again from its start: the
    signal it had received is delivered again; `durable workflow fork` does the same under
    a new id; a seq that begins no workflow task is refused with the valid ones."""
    db = ("--dsn", dsn)
    await cli_json(capsys, "start", "greeter", '"ann"', "--id", "r-1", *db)
    await wait_until_waiting(client, "r-1")
    code, _, err = await cli(capsys, "signal", "r-1", "finish", '"!"', *db)
    assert code == 0, err
    assert await cli_json(capsys, "result", "r-1", "--timeout", "30", *db) == "hello ann!"
    code, _, err = await cli(capsys, "workflow", "reset", "r-1", "--seq", "99", *db)
    assert code == 2 and "valid reset points: 1" in err
    reset = await cli_json(capsys, "workflow", "reset", "r-1", "--seq", "1", *db)
    assert reset["workflow_id"] == "r-1" and reset["reset_from"]["seq"] == 1
    assert await cli_json(capsys, "result", "r-1", "--timeout", "30", *db) == "hello ann!"
    code, out, err = await cli(capsys, "workflow", "fork", "r-1", "--new-id", "r-1-copy", *db)
    assert code == 0 and "workflow id: r-1-copy" in out, err
    assert await cli_json(capsys, "result", "r-1-copy", "--timeout", "30", *db) == "hello ann!"
    code, out, _ = await cli(capsys, "describe", "r-1", *db)
    assert f"run {reset['reset_from']['run_id']} at seq 1" in out


async def test_update_signal_with_start_count_and_json_everywhere(
    dsn: str,
    client: durable.Client,
    worker_process: asyncio.subprocess.Process,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The writes the CLI lacked (update, signal-with-start), count, --json on every
    command, errors included, and describe saying what a run waits on and why it failed."""
    db = ("--dsn", dsn)
    started = await cli_json(
        capsys, "signal-with-start", "greeter", '"zed"', "--id", "sws", "--signal", "finish",
        "--signal-arg", '"?"', *db,
    )  # fmt: skip
    assert started["workflow_id"] == "sws"
    assert await cli_json(capsys, "result", "sws", "--timeout", "30", *db) == "hello zed?"
    await cli_json(capsys, "start", "greeter", '"amy"', "--id", "upd", *db)
    await wait_until_waiting(client, "upd")
    assert await cli_json(capsys, "update", "upd", "shout", '"hey"', *db) == "HEY!"
    code, out, _ = await cli(capsys, "describe", "upd", *db)
    assert "pending timers: -" in out and "open children: -" in out, out
    assert "awaited signals: finish" in out, out
    assert await cli_json(capsys, "count", "--status", "RUNNING", *db) == {"count": 1}
    code, out, _ = await cli(capsys, "count", "--name", "greeter", *db)
    assert out.strip() == "2"
    done = await cli_json(capsys, "workflow", "terminate", "upd", "--reason", "r", *db)
    assert (done["workflow_id"], done["action"]) == ("upd", "terminate")
    code, out, err = await cli(capsys, "signal", "upd", "finish", "--json", *db)
    assert (code, out) == (2, "")
    assert json.loads(err)["error"]["type"] == "WorkflowNotFoundError"
    code, out, _ = await cli(capsys, "describe", "upd", *db)
    assert "failure:     r\n" in out, out
    code, out, _ = await cli(capsys, "history", "upd", *db)
    assert "WORKFLOW_TERMINATED" in out and "+" in out


@durable.activity(retry=durable.RetryPolicy(initial_interval=timedelta(hours=1)))
async def decline(card: str) -> str:
    raise durable.ApplicationError(f"card {card} declined", type="CardDeclined")


@durable.workflow
async def charge_card(ctx: durable.WorkflowContext) -> str:
    return await ctx.activity(decline, "4242")


async def test_describe_shows_a_pending_activitys_failure_and_the_cancel_reason(
    dsn: str, client: durable.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ("--dsn", dsn)
    queue = "cli-declines"
    async with durable.Worker(
        client, task_queue=queue, workflows=[charge_card], activities=[decline]
    ):
        handle = await client.start(charge_card, id="charge", task_queue=queue)

        async def failed_once() -> bool:
            pending = (await handle.describe()).pending_activities
            return bool(pending and pending[0].last_failure)

        await wait_for(failed_once)
        code, out, err = await cli(capsys, "describe", "charge", *db)
        assert code == 0, err
        assert "    last failure: card 4242 declined (CardDeclined)\n" in out, out
        assert "in decline\n" in out and "Traceback" in out, out
        pending = (await cli_json(capsys, "describe", "charge", *db))["pending_activities"][0]
        assert pending["last_failure_type"] == "CardDeclined"
        assert "in decline" in pending["last_failure_stack"]
        await handle.cancel(reason="out of stock")
        with pytest.raises(durable.WorkflowCancelledError):
            await handle.result(timeout=20)
    code, out, err = await cli(capsys, "describe", "charge", *db)
    assert "status:      cancelled: out of stock\n" in out, out
    described = await cli_json(capsys, "describe", "charge", *db)
    assert described["cancel_reason"] == "out of stock"


async def test_json_arguments_become_the_workflows_annotated_types(
    dsn: str, worker_process: asyncio.subprocess.Process, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dataclass from a JSON object, a Decimal from a JSON string or number, a date from
    its ISO text; malformed JSON is refused with its position."""
    db = ("--dsn", dsn)
    order = '{"order_id": 7, "amount": "19.99", "due": "2026-12-24"}'
    out = await cli_json(capsys, "start", "priced", order, "0.01", "--wait", "--timeout", "30", *db)
    assert out["result"] == "order 7: 20.00 due 2026-12-24"
    code, _, err = await cli(capsys, "start", "priced", '{"order_id": 7,', *db)
    assert code == 2 and "is not valid JSON" in err and "column" in err


async def test_json_arguments_from_a_file_or_standard_input(
    dsn: str,
    worker_process: asyncio.subprocess.Process,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`@PATH` is the JSON in a file, `@-` the JSON on standard input: an argument longer
    than a shell passes (a word of 200 kB; Linux refuses one over 128 kB)."""
    db = ("--dsn", dsn)
    name = "n" * 200_000
    (tmp_path / "name.json").write_text(json.dumps(name))
    args = await cli_json(
        capsys, "start", "greeter", f"@{tmp_path / 'name.json'}", "--id", "big", *db
    )
    assert args["workflow_id"] == "big"
    monkeypatch.setattr(sys, "stdin", io.StringIO('"!"\n'))
    code, _, err = await cli(capsys, "signal", "big", "finish", "@-", *db)
    assert code == 0, err
    assert await cli_json(capsys, "result", "big", "--timeout", "30", *db) == f"hello {name}!"

    code, _, err = await cli(capsys, "start", "greeter", f"@{tmp_path / 'missing.json'}", *db)
    assert code == 2 and "missing.json" in err and "No such file" in err, err
    (tmp_path / "bad.json").write_text('{"name": "ada",}')
    code, _, err = await cli(capsys, "start", "greeter", f"@{tmp_path / 'bad.json'}", *db)
    assert code == 2 and "bad.json" in err and "not valid JSON" in err and "column 16" in err, err
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, _, err = await cli(capsys, "signal", "big", "finish", "@-", *db)
    assert code == 2 and "standard input" in err, err


async def test_start_by_name_refuses_arguments_its_workers_cannot_take(
    dsn: str,
    client: durable.Client,
    worker_process: asyncio.subprocess.Process,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An extra or a missing argument is refused before anything is written (the CLI has
    no workflow function: the count the workers registered decides)."""
    db = ("--dsn", dsn)
    code, out, err = await cli(capsys, "start", "greeter", "ann", "extra", *db)
    assert (code, out) == (2, "") and "Traceback" not in err
    assert "'greeter' takes 1 argument, got 2" in err, err
    code, out, err = await cli(capsys, "start", "priced", "--json", *db)
    assert (code, out) == (2, "")
    assert json.loads(err)["error"]["type"] == "TypeError"
    assert "'priced' takes 2 arguments, got 0" in json.loads(err)["error"]["message"]
    argv = ("signal-with-start", "greeter", "--id", "s", "--signal", "finish")
    code, _, err = await cli(capsys, *argv, *db)
    assert code == 2 and "'greeter' takes 1 argument, got 0" in err, err
    assert [d.workflow_id async for d in client.list()] == []


async def test_batch_signals_each_matching_workflow_once_per_request_id(
    dsn: str,
    client: durable.Client,
    worker_process: asyncio.subprocess.Process,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`durable batch signal` with an attribute filter, repeated with its request id, then
    `durable batch terminate`: the others are not touched, no workflow is signalled twice."""
    db = ("--dsn", dsn)
    for name in ("ann", "bob", "cy"):
        await cli_json(capsys, "start", "greeter", f'"{name}"', "--id", f"b-{name}", *db)
    for name in ("ann", "bob", "cy"):
        await wait_until_waiting(client, f"b-{name}")
    code, out, err = await cli(
        capsys,
        "batch",
        "signal",
        "--attr",
        'customer="bob"',
        "--signal",
        "finish",
        "--signal-arg",
        '"!"',
        *db,
    )
    assert (code, out.strip()) == (0, "signal: 1 workflow run acted on"), err
    request_id = err.removeprefix("request id: ").strip()
    again = await cli_json(
        capsys,
        "batch",
        "signal",
        "--signal",
        "finish",
        "--signal-arg",
        '"?"',
        "--request-id",
        request_id,
        *db,
    )
    assert again == {"action": "signal", "count": 2, "request_id": request_id}
    assert await cli_json(capsys, "result", "b-bob", "--timeout", "30", *db) == "hello bob!"
    assert await cli_json(capsys, "result", "b-ann", "--timeout", "30", *db) == "hello ann?"
    await cli_json(capsys, "start", "greeter", '"dee"', "--id", "b-dee", *db)
    done = await cli_json(
        capsys, "batch", "terminate", "--status", "RUNNING", "--name", "greeter", *db
    )
    assert done["count"] == 1
    code, out, _ = await cli(capsys, "describe", "b-dee", *db)
    assert "terminated" in out
    code, _, err = await cli(capsys, "batch", "signal", *db)
    assert code == 2 and "needs signal=NAME" in err
    code, _, err = await cli(capsys, "batch", "rewind", *db)
    assert code == 2 and "invalid choice" in err
    code, _, err = await cli(capsys, "batch", "pause", "--started-after", "yesterday", *db)
    assert code == 2 and "ISO 8601" in err


async def test_start_debounced(
    dsn: str, client: durable.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    async with durable.Worker(client, workflows=[cli_workflows.greeter]):
        pass  # registers "greeter", to start by name
    debounced = ("--id", "deb", "--debounce", "1h", "--dsn", dsn)
    first = await cli_json(capsys, "workflow", "start", "greeter", '"ann"', *debounced)
    second = await cli_json(capsys, "start", "greeter", '"bob"', *debounced, "--debounce-max", "2h")
    assert second["run_id"] == first["run_id"]
    events = await cli_json(capsys, "history", "deb", "--dsn", dsn)
    assert events[0]["fields"]["args"][0] == ["bob"]

    code, _, err = await cli(
        capsys, "start", "greeter", "--id", "x", "--debounce-max", "1m", "--dsn", dsn
    )
    assert code == 2 and "debounce_max" in err and "needs debounce" in err
    code, _, err = await cli(
        capsys, "start", "greeter", "--id", "x", "--debounce", "0s", "--dsn", dsn
    )
    assert code == 2 and "debounce must be a positive" in err
    code, _, err = await cli(capsys, "start", "greeter", "--debounce", "5s", "--dsn", dsn)
    assert code == 2 and "needs id=" in err
    assert [d.workflow_id async for d in client.list()] == ["deb"]
