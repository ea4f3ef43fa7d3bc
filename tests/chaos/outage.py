"""The long-outage reproduction: Postgres down for longer than every worker's lease, just
as a burst of timers comes due.

    python -m tests.chaos.outage --rounds 10

Each round, on a server of its own: 60 workflows sleep 6 s and then run 3 activities; the
server is crash-stopped (``pg_ctl -m immediate``) 0.5 s before their timers are due and
kept down 14 s (the 10 s worker lease lapses), then started again. Once every workflow has
completed, every history is checked (tests/chaos/checks.py: contiguous, one outcome per
command, each closed run replays). Prints one line per round and, last, the number of
rounds with a violation; exits 1 if any.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from datetime import timedelta

import asyncpg

import durable
from durable import RetryPolicy, WorkflowContext, activity, workflow
from durable._store import apply_migrations

from . import checks
from .server import running_server

WORKFLOWS = 60
SLEEP = 6.0
DOWN = 14.0
RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=1)
)


@activity(retry=RETRY)
async def add(a: int, b: int) -> int:
    return a + b


@workflow
async def sleeps_then_adds(ctx: WorkflowContext, n: int) -> int:
    await ctx.sleep(SLEEP)
    total = n
    for i in range(3):
        total = await ctx.activity(add, total, i)
    return total


async def _connect(dsn: str) -> durable.Client:
    for _ in range(240):
        with contextlib.suppress(durable.DurableError):
            return await durable.Client.connect(dsn, max_connections=20)
        await asyncio.sleep(0.25)
    raise RuntimeError(f"cannot connect to {dsn}")


async def _results(handles: list[durable.WorkflowHandle[int]], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return list(await asyncio.gather(*(h.result(timeout=timeout) for h in handles)))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def one_round(number: int) -> list[str]:
    with running_server() as server:
        conn = await asyncpg.connect(server.dsn())
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()
        client = await _connect(server.dsn())
        try:
            async with durable.Worker(
                client, workflows=[sleeps_then_adds], activities=[add], max_concurrent_activities=20
            ):
                began = time.monotonic()
                handles = [
                    await client.start(sleeps_then_adds, i, id=f"outage-{number}-{i}")
                    for i in range(WORKFLOWS)
                ]
                await asyncio.sleep(max(0.0, SLEEP - 0.5 - (time.monotonic() - began)))
                await asyncio.to_thread(server.stop_immediate)
                await asyncio.sleep(DOWN)
                await asyncio.to_thread(server.start_again)
                results = await _results(handles, timeout=120)
            expected = [i + 0 + 1 + 2 for i in range(WORKFLOWS)]
            problems = [] if results == expected else [f"results {results} != {expected}"]
        finally:
            await client.close()
        conn = await asyncpg.connect(server.dsn())
        try:
            runs, orphans = await checks.load_runs(conn)
        finally:
            await conn.close()
    problems += [f"history rows of no run: {orphans[:5]}"] if orphans else []
    for run in runs:
        problems += checks.check_history(run, [sleeps_then_adds])
    return problems


async def main(rounds: int) -> int:
    failed = 0
    for number in range(1, rounds + 1):
        started = time.monotonic()
        problems = await one_round(number)
        failed += bool(problems)
        print(
            f"round {number}: {len(problems)} violations in {time.monotonic() - started:.1f} s"
            + "".join(f"\n  {p}" for p in problems[:20]),
            flush=True,
        )
    print(f"rounds with violations: {failed} of {rounds}")
    return 1 if failed else 0


if __name__ == "__main__":
    logging.disable(logging.CRITICAL)  # the outage makes every poll and renewal fail loudly
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.outage", description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    sys.exit(asyncio.run(main(parser.parse_args().rounds)))
