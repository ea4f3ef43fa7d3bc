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
