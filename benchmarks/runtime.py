"""Process plumbing shared by the benchmark and its worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import psutil  # type: ignore[import-untyped]

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when it is installed."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


_started = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _started:7.1f}s] {message}", file=sys.stderr, flush=True)


async def wait_until(
    check: Callable[[], Coroutine[Any, Any, bool]],
    timeout: float,
    what: str,
    interval: float = 0.02,
) -> None:
    """Poll ``check`` until it returns True; TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        await asyncio.sleep(interval)


async def _wait_registered(dsn: str, queue: str, count: int, procs: list[Any]) -> None:
    conn = await asyncpg.connect(dsn)
    try:

        async def registered() -> bool:
            for proc in procs:
                if proc.returncode is not None:
                    raise RuntimeError(f"worker process exited with code {proc.returncode}")
            n = await conn.fetchval(
                "SELECT count(*) FROM durable.workers WHERE task_queue = $1", queue
            )
            return bool(n >= count)

        await wait_until(registered, 30, f"registration of {count} worker process(es)")
    finally:
        await conn.close()


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def worker_processes(
    dsn: str, queue: str, count: int = 1, **options: int | str
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """``count`` worker processes serving ``queue``, registered before this yields."""
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    procs: list[asyncio.subprocess.Process] = []
    try:
        for _ in range(count):
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "benchmarks.worker_proc",
                    dsn,
                    queue,
                    *flags,
                    cwd=ROOT,
                    env=env,
                    stdout=asyncio.subprocess.DEVNULL,
                )
            )
        await _wait_registered(dsn, queue, count, procs)
        yield procs
    finally:
        await asyncio.gather(*(_stop(p) for p in procs))


async def server_processes(dsn: str) -> list[psutil.Process]:
    """The processes of the Postgres server behind ``dsn`` (postmaster and children), when
    it runs on this machine; none otherwise."""
    conn = await asyncpg.connect(dsn)
    try:  # while the backend is alive
        postmaster = psutil.Process(await conn.fetchval("SELECT pg_backend_pid()")).parent()
        return [postmaster, *postmaster.children()] if postmaster else []
    except psutil.Error:
        return []
    finally:
        await conn.close()


def _cpu_seconds(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
        return float(times.user + times.system + times.children_user + times.children_system)
    except psutil.Error:
        return 0.0


@contextlib.asynccontextmanager
async def cpu_split(dsn: str, workers: Sequence[int] = ()) -> AsyncIterator[dict[str, float]]:
    """CPU seconds used while the block runs by this process (``client``), the worker
    processes ``workers`` and the Postgres server (``postgres``, 0 when it is remote);
    the dict yielded is filled in when the block ends."""
    groups = {
        "client": [psutil.Process()],
        "workers": [psutil.Process(pid) for pid in workers],
        "postgres": await server_processes(dsn),
    }
    before = {p.pid: _cpu_seconds(p) for members in groups.values() for p in members}
    used: dict[str, float] = {}
    yield used
    groups["postgres"] = await server_processes(dsn)  # backends started meanwhile count too
    for name, members in groups.items():
        used[name] = sum(_cpu_seconds(p) - before.get(p.pid, 0.0) for p in members)


# A connection pooler the workloads' durable clients and workers go through (runner.py's
# --through, --no-prepared-statements): set in the environment, so that worker processes
# see them too. The baselines and the harness's own statements stay on the direct DSN.
THROUGH_ENV, PREPARED_ENV = "DURABLE_BENCH_THROUGH", "DURABLE_BENCH_PREPARED_STATEMENTS"


def client_options(dsn: str) -> tuple[str, dict[str, Any]]:
    """The DSN a durable client of the workloads connects to, and its pooler options: through
    the pooler at ``$DURABLE_BENCH_THROUGH`` (host:port) when set, listening on ``dsn``."""
    through = os.environ.get(THROUGH_ENV)
    if not through:
        return dsn, {}
    parts = urllib.parse.urlsplit(dsn)
    user = f"{parts.username}@" if parts.username else ""
    pooled = urllib.parse.urlunsplit(parts._replace(netloc=f"{user}{through}"))
    prepared = os.environ.get(PREPARED_ENV, "1") == "1"
    return pooled, {"listen_dsn": dsn, "prepared_statements": prepared}
