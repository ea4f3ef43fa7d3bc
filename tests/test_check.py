"""`durable check MODULE`: every marked line of tests/check_targets.py is reported with its
alternative, nothing else is; exit 1 with findings, 0 without."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from durable._check import check
from tests import check_helpers, check_targets

REPO = Path(__file__).resolve().parent.parent


def _marked(module: object) -> set[tuple[str, int]]:
    path = Path(module.__file__)  # type: ignore[attr-defined]
    return {
        (str(path), number)
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if line.rstrip().endswith("# finding") or "# finding:" in line
    }


def test_every_marked_line_and_nothing_else() -> None:
    findings = check([check_targets.careless, check_targets.careful, check_targets.fetch])
    assert {(f.path, f.line) for f in findings} == _marked(check_targets) | _marked(check_helpers)
    by_call = {f.call: f for f in findings}
    assert by_call["time.time"].instead == "ctx.now()"
    assert by_call["time.sleep"].instead == "await ctx.sleep(seconds)"
    assert by_call["uuid.uuid4"].instead.startswith("ctx.random()")
    assert by_call["datetime.datetime.now"].function == "stamp"
    assert by_call["os.environ"].problem.startswith("reads the environment")
    assert "for ... in a set" in by_call
    assert all(f.function in ("careless", "stamp") for f in findings), "careful is clean"


def _durable(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "durable", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_command_prints_file_line_and_exits_1() -> None:
    done = _durable("check", "tests.check_targets")
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert any(
        line.startswith("tests/check_targets.py:") and "time.time in careless" in line
        for line in lines
    ), lines
    assert lines[-1] == "2 workflow(s) of tests.check_targets read: 10 finding(s)"
    found = json.loads(_durable("check", "tests.check_targets", "--json").stdout)
    assert len(found) == 10 and {"path", "line", "call", "instead"} <= set(found[0])
    clean = _durable("check", "tests.check_targets:careful")
    assert clean.returncode == 0 and "nothing breaks determinism" in clean.stdout
