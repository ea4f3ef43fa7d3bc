"""The samples run as they are, on the embedded database (the README's first command)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def durable_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project folder whose embedded Postgres is stopped after the tests."""
    home = tmp_path_factory.mktemp("home") / ".durable"
    yield home
    pid_file = home / "pgdata" / "postmaster.pid"
    if pid_file.exists():
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)


def _run_sample(name: str, home: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "DURABLE_DATABASE_URL"}
    env["DURABLE_HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, str(ROOT / "samples" / name)],
        env=env,
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_quickstart(durable_home: Path) -> None:
    out = _run_sample("quickstart.py", durable_home)
    assert "stage: awaiting approval" in out
    assert "approved_by='alice'" in out and "box<teapot> handed to the courier" in out
    for event in ("TIMER_STARTED", "SIGNAL_RECEIVED", "CHILD_COMPLETED", "WORKFLOW_COMPLETED"):
        assert event in out
    assert (durable_home / "pgdata" / "PG_VERSION").exists(), "the embedded database was used"


def test_order_saga(durable_home: Path) -> None:
    out = _run_sample("order_saga.py", durable_home)
    assert "-> completed, shipment ship-1" in out
    assert out.index("compensate: refund") < out.index("compensate: release")
    assert "-> failed after compensating" in out


@pytest.mark.parametrize("sample", ["flask_app.py", "fastapi_app.py"])
def test_web_samples(durable_home: Path, sample: str) -> None:
    """Flask with SyncClient, FastAPI with the async Client: an order started, described
    and confirmed through the views, its workflow run by a real worker."""
    lines = _run_sample(sample, durable_home).splitlines()
    assert lines[0].startswith("POST /orders/") and "-> 201" in lines[0]
    assert lines[1].startswith("GET /orders/") and "-> 200" in lines[1]
    assert "-> 200 {'result': 'reservation of 2 x teapot: confirmed'}" in lines[2]
