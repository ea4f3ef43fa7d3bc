"""Targets, the printed table and the JSON report."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OPERATORS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, ">=": operator.ge}
SYMBOLS = {"<=": "≤", ">=": "≥"}


@dataclass(frozen=True)
class Target:
    workload: str
    figure: str  # key in the workload's figures
    label: str  # what the table calls it, with its unit
    op: str  # "<=" or ">="
    limit: float  # a multiple of the baseline, or an absolute value when baseline is None
    baseline: str | None = None  # "L", "T" or another workload's name (its same figure)

    def describe(self) -> str:
        if self.baseline is None:
            return f"{SYMBOLS[self.op]} {self.limit:g}"
        return f"{SYMBOLS[self.op]} {self.limit:g} x {self.baseline}"


TARGETS = [
    Target("W1", "p50_ms_per_step", "p50 ms/step", "<=", 2.5, "L"),
    Target("W1b", "p50_ms_per_step", "p50 ms/step", "<=", 1.5, "L"),
    Target("W1c", "p50_ms_first_steps", "fresh worker p50 ms/step", "<=", 2.5, "L"),
    Target("W1c", "cold_to_warm", "fresh / warm p50", "<=", 1.2),
    Target("W1d", "p50_ms_first_steps", "fresh worker p50 ms/step", "<=", 1.5, "L"),
    Target("W1d", "cold_to_warm", "fresh / warm p50", "<=", 1.2),
    Target("W2", "steps_per_s", "steps/s", ">=", 0.4, "T"),
    Target("W2b", "steps_per_s", "steps/s", ">=", 1, "W2"),
    Target("W2m", "worker_cpu_ms_per_step", "worker CPU ms/step, metrics", "<=", 1.1, "W2"),
    Target("W2t", "worker_cpu_ms_per_step", "worker CPU ms/step, metrics+traces", "<=", 1.1, "W2"),
    Target("W3", "p50_ms", "start→activity p50 ms", "<=", 5),
    Target("W3", "p99_ms", "start→activity p99 ms", "<=", 25),
    Target("W4", "events_per_s", "replay events/s", ">=", 100_000),
    Target("W5", "rss_kb_per_workflow", "RSS KB/parked wf", "<=", 20),
    Target("W5", "completions_per_s", "completions/s", ">=", 0.2, "T"),
    Target("W6", "p99_lateness_s", "p99 lateness s", "<=", 1),
    Target("W7", "step_cost_ratio", "step cost 10k/10", "<=", 1.5),
    *(
        Target("W8", f"ms_per_workflow_{n}_slots", f"backlog, {n} slots: ms/wf", "<=", 10, "L")
        for n in (1, 2, 100)
    ),
    Target("S1", "p99_lateness_s", "p99 fire lateness s", "<=", 1),
    Target("S1", "duplicates", "slots fired twice", "<=", 0),
    Target("S1", "missing", "slots not fired", "<=", 0),
    Target("S1", "early", "runs before their slot", "<=", 0),
]


def evaluate(workloads: dict[str, Any], baselines: dict[str, float]) -> list[dict[str, Any]]:
    """One row per target: value, ratio to its baseline, PASS/MISS (or the workload's ERROR)."""
    rows = []
    for target in TARGETS:
        entry = workloads.get(target.workload)
        if entry is None:
            continue
        row: dict[str, Any] = {
            "workload": target.workload,
            "figure": target.figure,
            "label": target.label,
            "target": target.describe(),
            "baseline": target.baseline,
        }
        if entry["status"] != "ok":
            rows.append({**row, "result": "ERROR", "error": entry["error"]})
            continue
        value = entry["figures"][target.figure]["median"]
        base = _baseline(target, workloads, baselines)
        ratio = None if target.baseline is None or not base else value / base
        measured = value if target.baseline is None else ratio
        passed = measured is not None and OPERATORS[target.op](measured, target.limit)
        rows.append({**row, "value": value, "ratio": ratio, "result": "PASS" if passed else "MISS"})
    return rows


def _baseline(target: Target, workloads: dict[str, Any], baselines: dict[str, float]) -> float:
    if target.baseline is None:
        return 0.0
    if target.baseline in baselines:
        return baselines[target.baseline]
    other = workloads.get(target.baseline)
    if other is None or other["status"] != "ok":
        return 0.0  # not measured in this run: no ratio, reported as a MISS
    return float(other["figures"][target.figure]["median"])


def _number(value: float | str | dict[str, float] | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "/".join(f"{key} {_number(part)}" for key, part in value.items())
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def table(report: dict[str, Any]) -> str:
    """The human-readable table printed to stdout."""
    base = report["baselines"]
    lines = [
        f"durable benchmarks (scale {report['meta']['scale']:g}, median of "
        f"{report['meta']['runs']} runs, Postgres {report['meta']['postgres']})",
        f"baseline L = {base['L']:.3f} ms (p50 single-row INSERT commit, 1 connection)",
        f"baseline T = {base['T']:,.0f} commits/s (single-row INSERTs, 32 connections)",
        "",
    ]
    header = ("workload", "figure", "value", "ratio", "target", "result")
    cells = [header]
    errors = []
    for row in report["rows"]:
        if row["result"] == "ERROR":
            cells.append((row["workload"], row["label"], "-", "-", row["target"], "ERROR"))
            errors.append(f"{row['workload']}: {row['error']}")
            continue
        ratio = row["ratio"]
        ratio_text = f"{ratio:.2f} x {row['baseline']}" if ratio is not None else "-"
        cells.append(
            (
                row["workload"],
                row["label"],
                _number(row["value"]),
                ratio_text,
                row["target"],
                row["result"],
            )
        )
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    for i, cell in enumerate(cells):
        lines.append("  ".join(text.ljust(w) for text, w in zip(cell, widths, strict=True)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += [f"ERROR {message}" for message in dict.fromkeys(errors)]
    lines += [f"note: {note}" for note in report["notes"]]
    lines += ["", "details (last run):", *_details(report["workloads"])]
    return "\n".join(lines)


def _details(workloads: dict[str, Any]) -> list[str]:
    lines = []
    for name, entry in workloads.items():
        if entry["status"] == "ok":
            info = ", ".join(f"{k}={_number(v)}" for k, v in entry["info"][-1].items())
            lines.append(f"  {name} ({entry['seconds']:.0f} s): {info}")
    return lines


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
