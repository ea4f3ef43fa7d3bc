"""The benchmark suite runs every workload at a tiny scale and reports every figure.

Only correctness is asserted (the workloads check their workflows' results), never a time.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
from pathlib import Path

from benchmarks.report import TARGETS
from benchmarks.workloads import WORKLOADS

ROOT = Path(__file__).resolve().parent.parent


async def run_benchmarks(dsn: str, report: Path, *options: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "benchmarks", "--dsn", dsn, "--scale", "0.01", "--runs", "1"),
        *("--json", str(report), *options),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 100)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_every_workload_produces_its_figures(dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    code, out, err = await run_benchmarks(dsn, path)
    assert code == 0, f"stdout:\n{out}\nstderr:\n{err[-5000:]}"

    report = json.loads(path.read_text())
    assert set(report) == {"meta", "baselines", "workloads", "rows", "notes"}
    assert report["baselines"]["L"] > 0 and report["baselines"]["T"] > 0
    assert set(report["workloads"]) == set(WORKLOADS)
    for name, entry in report["workloads"].items():
        assert entry["status"] == "ok", f"{name}: {entry.get('error')}"
        assert [info["checked_results"] >= 1 for info in entry["info"]] == [True], name
        for figure in entry["figures"].values():
            assert len(figure["runs"]) == 1 and math.isfinite(figure["median"])

    rows = {(row["workload"], row["figure"]): row for row in report["rows"]}
    assert set(rows) == {(t.workload, t.figure) for t in TARGETS if t.workload in WORKLOADS}
    assert {row["result"] for row in rows.values()} <= {"PASS", "MISS"}
    for workload, _ in rows:
        assert f"\n{workload} " in out  # a line of the printed table


async def test_schedules_fire_every_slot_once(dsn: str, tmp_path: Path) -> None:
    """S1 in a tiny configuration: 20 schedules every second, over 3 slots (and W2 beside
    the slot after)."""
    path = tmp_path / "report.json"
    options = ("--only", "S1", "--schedules", "20", "--schedule-every", "1")
    code, out, err = await run_benchmarks(dsn, path, *options, "--schedule-slots", "3")
    assert code == 0, f"stdout:\n{out}\nstderr:\n{err[-5000:]}"

    entry = json.loads(path.read_text())["workloads"]["S1"]
    assert entry["status"] == "ok", entry.get("error")
    figures = {name: figure["median"] for name, figure in entry["figures"].items()}
    assert figures["duplicates"] == figures["missing"] == figures["early"] == 0
    assert figures["fires_per_min"] == 20 * 60
    assert all(math.isfinite(value) for value in figures.values())
    assert entry["info"][0]["checked_results"] == 60
    assert "\nS1 " in out
