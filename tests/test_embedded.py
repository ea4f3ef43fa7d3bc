"""The embedded Postgres, for real (the wheel): which folder a process finds, the INFO line
saying so, and `durable dev`, `dev status`, `dev stop` run as subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import pytest

from durable._embedded import ENV_DSN, ENV_HOME, stop_server


@pytest.fixture
def folder() -> Iterator[Path]:
    """A fresh temporary folder; every embedded Postgres started under it is stopped at the
    end, even when the test fails."""
    path = Path(tempfile.mkdtemp(prefix="durable-embedded-"))
    try:
        yield path
    finally:
        for pgdata in path.glob("**/pgdata"):
            stop_server(pgdata.parent)
        shutil.rmtree(path)


def run(argv: list[str], cwd: Path, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in (ENV_DSN, ENV_HOME)}
    if home is not None:
        env[ENV_HOME] = str(home)
    return subprocess.run(
        [sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def durable(*argv: str, cwd: Path, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run(["-m", "durable", *argv], cwd, home)


def durable_json(*argv: str, cwd: Path, expect: int = 0) -> Any:
    done = durable(*argv, "--json", cwd=cwd)
    assert done.returncode == expect, done.stderr
    return json.loads(done.stdout)


def alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def test_a_subfolder_uses_the_durable_folder_of_a_parent(folder: Path) -> None:
    top = durable_json("dev", cwd=folder)
    deep = folder / "a" / "b"
    deep.mkdir(parents=True)
    below = durable_json("dev", cwd=deep)
    assert below["home"] == top["home"] == str(folder / ".durable")
    assert below["dsn"] == top["dsn"]
    assert below["migrations_applied"] == []
    assert not (deep / ".durable").exists() and not (folder / "a" / ".durable").exists()


def test_durable_home_wins_over_the_nearest_durable_folder(folder: Path) -> None:
    (folder / ".durable").mkdir()
    home = folder / "elsewhere"
    status = durable("dev", "status", "--json", cwd=folder, home=home)
    assert status.returncode == 3, status.stderr
    assert json.loads(status.stdout)["home"] == str(home)


async def test_dev_then_status_then_stop(folder: Path) -> None:
    assert not [p for p in folder.parents if (p / ".durable").exists()], "a .durable/ above /tmp"
    home = folder / ".durable"
    started = durable("dev", cwd=folder)
    assert started.returncode == 0, started.stderr
    assert f"embedded Postgres running in {home}" in started.stdout

    status = durable("dev", "status", cwd=folder)
    running = durable_json("dev", "status", cwd=folder)
    assert status.returncode == 0, status.stderr
    assert running["home"] == str(home) and running["running"]
    assert str(home) in status.stdout and f"dsn: {running['dsn']}" in status.stdout
    await (await asyncpg.connect(running["dsn"])).close()

    stopped = durable("dev", "stop", cwd=folder)
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped the embedded Postgres in {home}" in stopped.stdout
    assert not alive(running["pid"])
    with pytest.raises(OSError):
        await asyncpg.connect(running["dsn"])

    after = durable("dev", "status", cwd=folder)
    assert after.returncode == 3 and "not running" in after.stdout
    assert durable_json("dev", "status", cwd=folder, expect=3)["running"] is False
    again = durable("dev", "stop", cwd=folder)
    assert again.returncode == 0 and "was not running" in again.stdout

    restarted = durable_json("dev", cwd=folder)
    assert restarted["migrations_applied"] == []  # the data was kept


def test_each_process_logs_the_embedded_postgres_it_uses(folder: Path) -> None:
    home = folder / "home"
    script = (
        "import logging; logging.basicConfig(level=logging.INFO); "
        "from durable._embedded import embedded_dsn; embedded_dsn()"
    )
    first = run(["-c", script], folder, home)
    second = run(["-c", script], folder, home)
    assert f"INFO:durable.embedded:embedded Postgres in {home} (started)" in first.stderr
    assert f"INFO:durable.embedded:embedded Postgres in {home} (reused)" in second.stderr
    assert not (folder / ".durable").exists()


READING_COMMANDS = [
    ["list"],
    ["count"],
    ["describe", "wf"],
    ["history", "wf"],
    ["query", "wf", "status"],
    ["result", "wf"],
    ["signal", "wf", "go"],
    ["export", "--open"],
    ["purge", "--closed-before", "30d"],
]


def test_a_command_on_workflows_creates_no_database_where_there_is_none(folder: Path) -> None:
    """Run from a folder with no .durable/ above it and no database configured, a command
    that reads (or acts on existing workflows) says where it looked and how to point it at
    a database (exit 2), and neither creates a database nor starts a server."""
    assert not [p for p in folder.parents if (p / ".durable").exists()], "a .durable/ above /tmp"
    for argv in READING_COMMANDS:
        done = durable(*argv, cwd=folder)
        assert (done.returncode, done.stdout) == (2, ""), (argv, done.stdout, done.stderr)
        assert done.stderr.startswith("error: no database") and str(folder) in done.stderr
        assert "DURABLE_DATABASE_URL" in done.stderr and "durable dev" in done.stderr
    done = durable("list", "--json", cwd=folder)
    assert done.returncode == 2 and "no database" in json.loads(done.stderr)["error"]["message"]
    home = folder / "elsewhere"
    done = durable("list", cwd=folder, home=home)
    assert done.returncode == 2 and f"$DURABLE_HOME ({home})" in done.stderr, done.stderr
    assert not (folder / ".durable").exists() and not home.exists()


def test_every_command_says_which_embedded_database_it_used(folder: Path) -> None:
    """`durable start` may create the database (a write); a later command from a subfolder
    finds it, and each says on stderr which one it used (stdout stays clean for --json)."""
    home = folder / ".durable"
    started = durable("start", "unregistered", cwd=folder)
    assert started.returncode == 2 and "unregistered" in started.stderr
    assert f"using the embedded Postgres in {home} (started)" in started.stderr
    deep = folder / "a" / "b"
    deep.mkdir(parents=True)
    listed = durable("list", cwd=deep)
    assert (listed.returncode, listed.stdout) == (0, "no workflows\n"), listed.stderr
    assert f"using the embedded Postgres in {home} (reused)" in listed.stderr
    counted = durable("count", "--json", cwd=deep)
    assert counted.returncode == 0 and json.loads(counted.stdout) == {"count": 0}
    assert json.loads(counted.stderr) == {"database": {"embedded": str(home), "started": False}}
    stop_server(home)
    again = durable("list", cwd=deep)  # a database that exists is started again
    assert again.returncode == 0 and f"in {home} (started)" in again.stderr, again.stderr
    assert not (deep / ".durable").exists()
