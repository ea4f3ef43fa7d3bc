"""Run the baselines and the workloads, print the table, write the JSON report."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from durable import ScheduleError
from durable._schedules import ScheduleSpec

from . import baselines
from .database import benchmark_database, migrate, reset, server_version
from .report import evaluate, table, write_json
from .runtime import PREPARED_ENV, THROUGH_ENV, progress, run
from .schedules import SCHEDULE_WORKLOADS
from .stats import median
from .workloads import WORKLOADS as TIMED_WORKLOADS
from .workloads import Env, Run, ScheduleLoad

WORKLOADS = {**TIMED_WORKLOADS, **SCHEDULE_WORKLOADS}
# what runs without --only: not the schedule workloads, which wait for the clock (minutes)
DEFAULT_WORKLOADS = list(TIMED_WORKLOADS)

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
RUN_TIMEOUT = 900  # seconds; a run taking longer is reported as an ERROR


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark durable against baselines measured on the same database.",
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every workload's size (e.g. 0.01)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per workload (median)")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all but "
        f"{','.join(SCHEDULE_WORKLOADS)})",
    )
    parser.add_argument(
        "--schedules", type=int, help="S1: schedules defined (default 10,000 times --scale)"
    )
    parser.add_argument(
        "--schedule-every", type=float, default=60.0, help="S1: their interval, seconds"
    )
    parser.add_argument("--schedule-cron", help="S1: a cron expression instead (e.g. '* * * * *')")
    parser.add_argument("--schedule-slots", type=int, default=3, help="S1: slots measured per run")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"report path (default {DEFAULT_JSON})"
    )
    parser.add_argument(
        "--dsn", help="use this existing database; its durable tables are EMPTIED before each run"
    )
    parser.add_argument(
        "--server",
        default=os.environ.get("DURABLE_DATABASE_URL"),
        help="create a fresh database on this server (default $DURABLE_DATABASE_URL; "
        "without it an embedded Postgres is started in a temporary folder)",
    )
    parser.add_argument(
        "--through",
        metavar="HOST:PORT",
        help="the workloads' durable clients and workers connect through the connection "
        "pooler at HOST:PORT (to the same database and user; they listen on the direct DSN)",
    )
    parser.add_argument(
        "--no-prepared-statements",
        dest="prepared_statements",
        action="store_false",
        help="with --through: a pooler that cannot keep prepared statements",
    )
    args = parser.parse_args(argv)
    if args.through:
        os.environ[THROUGH_ENV] = args.through
        os.environ[PREPARED_ENV] = "1" if args.prepared_statements else "0"
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    args.only = args.only or DEFAULT_WORKLOADS
    unknown = [name for name in args.only if name not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads {unknown}; choose from {', '.join(WORKLOADS)}")
    if args.runs < 1 or args.scale <= 0:
        parser.error("--runs must be >= 1 and --scale > 0")
    if (args.schedules is not None and args.schedules < 1) or args.schedule_slots < 1:
        parser.error("--schedules and --schedule-slots must be >= 1")
    if args.schedule_every < 1 or args.schedule_every % 1:
        parser.error("--schedule-every must be a whole number of seconds, at least 1")
    if args.schedule_cron is not None:
        try:
            ScheduleSpec.build(cron=args.schedule_cron)
        except ScheduleError as exc:
            parser.error(f"--schedule-cron: {exc}")
    return args


async def measure_baselines(dsn: str, scale: float) -> dict[str, float]:
    samples = max(300, round(3000 * scale))
    progress(f"baseline L: {samples} single-row INSERT commits")
    latency = await baselines.insert_latency_ms(dsn, samples, warmup=samples // 10)
    seconds = max(0.5, 3 * min(scale, 1.0))
    progress(f"baseline T: INSERTs from 32 connections for {seconds:g} s")
    throughput = await baselines.insert_throughput(dsn, 32, seconds)
    return {"L": latency, "T": throughput}


async def run_workload(env: Env, name: str, runs: int) -> dict[str, Any]:
    """Run workload ``name`` ``runs`` times on an emptied database; medians of its figures."""
    began = time.perf_counter()
    done: list[Run] = []
    try:
        for i in range(runs):
            await reset(env.dsn)
            progress(f"{name} run {i + 1}/{runs}")
            async with asyncio.timeout(RUN_TIMEOUT):
                done.append(await WORKLOADS[name](env))
            progress(f"{name} run {i + 1}/{runs}: {_brief(done[-1].figures)}")
    except Exception as exc:
        progress(f"{name} ERROR\n{traceback.format_exc()}")
        return {
            "status": "error",
            "error": f"{type(exc).__name__}: {exc or f'no result within {RUN_TIMEOUT} s'}",
            "seconds": time.perf_counter() - began,
        }
    figures = {
        key: {
            "median": median([r.figures[key] for r in done]),
            "runs": [r.figures[key] for r in done],
        }
        for key in done[0].figures
    }
    return {
        "status": "ok",
        "figures": figures,
        "info": [r.info for r in done],
        "seconds": time.perf_counter() - began,
    }


def _brief(figures: dict[str, float]) -> str:
    return ", ".join(f"{key}={value:.4g}" for key, value in figures.items())


def notes(workloads: dict[str, Any]) -> list[str]:
    """Observations the figures alone do not show."""
    found = []
    for info in _infos(workloads, "W5"):
        if info["still_due_when_parked"]:
            found.append(
                f"W5: {info['still_due_when_parked']} of {info['workflows']} parked workflows "
                "were still due for a workflow task 5 s after all were claimed (the engine keeps "
                "re-running workflows that wait with nothing to do)"
            )
            break
    for info in _infos(workloads, "W6"):
        if info["armed_s_before_due"] < 0:
            found.append(
                f"W6: the timers were armed {-info['armed_s_before_due']:.1f} s after their due "
                "time (starting them took longer than the lead time), so lateness includes that"
            )
            break
    return found


def _infos(workloads: dict[str, Any], name: str) -> list[dict[str, Any]]:
    entry = workloads.get(name, {})
    return list(entry.get("info", [])) if entry.get("status") == "ok" else []


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    started = datetime.now(UTC)
    began = time.perf_counter()
    async with benchmark_database(args.dsn, args.server) as dsn:
        await migrate(dsn)
        meta = {
            "started_at": started.isoformat(),
            "scale": args.scale,
            "runs": args.runs,
            "postgres": await server_version(dsn),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "database": "given" if args.dsn else ("server" if args.server else "embedded"),
        }
        measured = await measure_baselines(dsn, args.scale)
        load = ScheduleLoad(
            args.schedules, args.schedule_every, args.schedule_cron, args.schedule_slots
        )
        env = Env(dsn, args.scale, schedules=load)
        workloads = {name: await run_workload(env, name, args.runs) for name in args.only}
    meta["seconds"] = time.perf_counter() - began
    return {
        "meta": meta,
        "baselines": measured,
        "workloads": workloads,
        "rows": evaluate(workloads, measured),
        "notes": notes(workloads),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    report = run(benchmark(args))
    print(table(report))
    write_json(report, args.json)
    progress(f"wrote {args.json}")
    failed = [name for name, entry in report["workloads"].items() if entry["status"] != "ok"]
    sys.stdout.flush()
    return 1 if failed else 0
