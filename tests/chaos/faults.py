"""The faults of the chaos run and the worker processes they hit.

- ``kill_worker``: SIGKILL a random worker process and start a replacement at once.
- ``restart_postgres``: ``pg_ctl restart -m immediate``: every backend dies without a
  checkpoint, the server runs crash recovery and comes back.
- ``terminate_backends``: ``pg_terminate_backend`` on 1 to 8 random connections to the
  database (workers' pools and LISTEN connections, activities' pools, the harness's client).
- ``stall_worker``: SIGSTOP a random worker for three lease periods, then SIGCONT: its
  lease lapses, other workers take its work over, and when it wakes up it must not write
  over them (fencing).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from . import BUILD_ENV, SPANS_ENV
from .server import PostgresServer

ROOT = Path(__file__).resolve().parents[2]

KILL, RESTART, TERMINATE, STALL = (
    "kill_worker",
    "restart_postgres",
    "terminate_backends",
    "stall_worker",
)
FAULT_KINDS = (KILL, RESTART, TERMINATE, STALL)
FAULT_WEIGHTS = (4, 1, 4, 3)
OUTCOME_RETRIED = "recording the outcome of activity"  # a worker retrying an outcome write


# ---------------------------------------------------------------------------- workers
@dataclass
class WorkerProcess:
    number: int
    proc: subprocess.Popen[bytes]
    log: Path
    build: str
    expected_exit: bool = False  # we killed it
    stalled: bool = False


class WorkerPool:
    """The worker subprocesses: spawn, kill -9, stall, stop gracefully; notice crashes."""

    def __init__(self, dsn: str, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.dsn = dsn
        self.log_dir = log_dir
        self.env = env or {}  # for the worker processes (a pooler's options)
        self.workers: list[WorkerProcess] = []
        self.crashes: list[str] = []  # workers that exited on their own
        self.graceful_pids: list[int] = []

    def spawn(self, build: str) -> WorkerProcess:
        number = len(self.workers) + 1
        log = self.log_dir / f"worker-{number}.log"
        spans = self.log_dir / f"worker-{number}.spans"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.chaos.app", self.dsn],
                cwd=ROOT,
                env={
                    **os.environ,
                    **self.env,
                    "PYTHONPATH": str(ROOT),
                    SPANS_ENV: str(spans),
                    BUILD_ENV: build,
                },
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(number, proc, log, build)
        self.workers.append(worker)
        return worker

    def live(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.proc.poll() is None]

    def kill(self, worker: WorkerProcess) -> None:
        worker.expected_exit = True
        with contextlib.suppress(ProcessLookupError):
            worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait(timeout=10)

    def pause(self, worker: WorkerProcess, paused: bool) -> None:
        worker.stalled = paused
        with contextlib.suppress(ProcessLookupError):
            worker.proc.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)

    def replace_crashed(self) -> int:
        """Record and replace workers that exited although nobody stopped them."""
        crashed = [w for w in self.workers if w.proc.poll() is not None and not w.expected_exit]
        for worker in crashed:
            worker.expected_exit = True
            self.crashes.append(
                f"worker {worker.number} (pid {worker.proc.pid}) exited on its own with code "
                f"{worker.proc.returncode}; last lines of {worker.log}:\n{_tail(worker.log)}"
            )
            self.spawn(worker.build)
        return len(crashed)

    def stop_gracefully(self, timeout: float) -> list[str]:
        """SIGTERM every live worker and wait; returns the ones that did not stop cleanly."""
        problems = []
        live = self.live()
        for worker in live:
            self.pause(worker, False)
            worker.expected_exit = True
            worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for worker in live:
            try:
                code = worker.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.proc.send_signal(signal.SIGUSR1)  # its asyncio tasks to its log
                time.sleep(1.0)
                worker.proc.kill()
                worker.proc.wait(timeout=10)
                problems.append(
                    f"worker {worker.number} (pid {worker.proc.pid}) did not stop "
                    f"within {timeout} s of SIGTERM; log:\n{_tail(worker.log)}"
                )
                continue
            if code != 0:
                problems.append(
                    f"worker {worker.number} (pid {worker.proc.pid}) stopped with "
                    f"code {code}; log:\n{_tail(worker.log)}"
                )
            else:
                self.graceful_pids.append(worker.proc.pid)
        return problems

    def kill_all(self) -> None:
        """Last resort on the way out: no worker outlives the harness."""
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.expected_exit = True
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(signal.SIGCONT)
                    worker.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.proc.wait(timeout=10)


_LOG_LINE = re.compile(r" (WARNING|ERROR|CRITICAL) (\S+): (.*)$")
_LOG_DETAILS = re.compile(r"'[^']*'|\"[^\"]*\"|\([^)]*\)|[0-9a-f-]{36}|\d+")


def scan_logs(paths: Sequence[Path]) -> collections.Counter[str]:
    """Warnings and errors of the workers, with their details (ids, numbers, quoted text)
    blanked out so that the same message counts once."""
    counts: collections.Counter[str] = collections.Counter()
    for path in paths:
        with contextlib.suppress(OSError):
            for line in path.read_text(errors="replace").splitlines():
                match = _LOG_LINE.search(line)
                if match:
                    level, logger, message = match.groups()
                    counts[f"{level} {logger}: {_LOG_DETAILS.sub('_', message)[:90]}"] += 1
    return counts


_FAILED_TASK = re.compile(r"ERROR durable\.worker: workflow task of (\S+) failed")


def failed_tasks(workers: Sequence[WorkerProcess]) -> dict[str, list[int]]:
    """Which workers logged "workflow task of X failed", by workflow id X."""
    failed: dict[str, list[int]] = collections.defaultdict(list)
    for worker in workers:
        with contextlib.suppress(OSError):
            for match in _FAILED_TASK.finditer(worker.log.read_text(errors="replace")):
                failed[match.group(1)].append(worker.number)
    return dict(failed)


def count_lines(path: Path, text: str) -> int:
    with contextlib.suppress(OSError):
        return sum(1 for line in path.read_text(errors="replace").splitlines() if text in line)
    return 0


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


# ---------------------------------------------------------------------------- faults
@dataclass
class Fault:
    kind: str
    at: float  # seconds into the run
    detail: str = ""
    took: float = 0.0  # seconds the injection itself took (the restart, the stall)
    recovery: float | None = None  # seconds; filled in after the run (Monitor.attribute)
    recovered: bool | None = None


def plan_faults(
    rng: random.Random,
    duration: float,
    first: float,
    gap: tuple[float, float],
    min_restarts: int,
    in_turn: bool = False,
) -> list[tuple[float, str]]:
    """When to inject which fault: from ``first`` until ``duration`` seconds, ``gap`` apart;
    every kind at least once, Postgres restarts at least ``min_restarts`` times, the rest
    drawn by weight; or, ``in_turn``, each kind in turn (to measure each on its own)."""
    times = []
    at = first
    while at < duration:
        times.append(round(at, 2))
        at += rng.uniform(*gap)
    if in_turn:
        return [(t, FAULT_KINDS[i % len(FAULT_KINDS)]) for i, t in enumerate(times)]
    mandatory = [RESTART] * min_restarts + [KILL, TERMINATE, STALL]
    if len(times) < len(mandatory):
        raise ValueError(
            f"a {duration} s window holds {len(times)} faults, fewer than the "
            f"{len(mandatory)} required ({mandatory})"
        )
    kinds = mandatory + rng.choices(FAULT_KINDS, FAULT_WEIGHTS, k=len(times) - len(mandatory))
    rng.shuffle(kinds)
    return list(zip(times, kinds, strict=True))


class FaultInjector:
    """Injects the planned faults, one after the other (a stall goes on in the background)."""

    def __init__(
        self,
        rng: random.Random,
        server: PostgresServer,
        database: str,
        pool: WorkerPool,
        stall_seconds: float,
    ) -> None:
        self.rng = rng
        self.database = database
        self.stall_seconds = stall_seconds
        self.server = server
        self.pool = pool
        self.faults: list[Fault] = []
        self._stalls: set[asyncio.Task[None]] = set()

    async def run(self, plan: Sequence[tuple[float, str]], clock: Callable[[], float]) -> None:
        for at, kind in plan:
            await asyncio.sleep(max(0.0, at - clock()))
            fault = Fault(kind, round(clock(), 2))
            began = time.monotonic()
            await self._inject(fault)
            fault.took = fault.took or time.monotonic() - began
            self.faults.append(fault)
        await asyncio.gather(*self._stalls)

    async def _inject(self, fault: Fault) -> None:
        if fault.kind == KILL:
            if not self.pool.live():
                fault.detail = "skipped: no live worker"
                return
            victim = self.rng.choice(self.pool.live())
            self.pool.kill(victim)
            spawned = self.pool.spawn(victim.build)
            fault.detail = (
                f"worker {victim.number} (pid {victim.proc.pid}) -> worker {spawned.number}"
            )
        elif fault.kind == RESTART:
            fault.took = await asyncio.to_thread(self.server.restart_immediate)
            fault.detail = f"back after {fault.took:.2f} s"
        elif fault.kind == TERMINATE:
            fault.detail = await self._terminate_backends()
        elif fault.kind == STALL:
            candidates = [w for w in self.pool.live() if not w.stalled]
            if len(candidates) < 2:  # keep at least one worker running
                fault.detail = "skipped: no worker to spare"
                return
            victim = self.rng.choice(candidates)
            fault.took = self.stall_seconds
            fault.detail = f"worker {victim.number} (pid {victim.proc.pid}) for {fault.took:g} s"
            task = asyncio.create_task(self._stall(victim, fault.took))
            self._stalls.add(task)
            task.add_done_callback(self._stalls.discard)

    async def _stall(self, worker: WorkerProcess, seconds: float) -> None:
        self.pool.pause(worker, True)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.pool.pause(worker, False)

    async def _terminate_backends(self) -> str:
        try:
            conn = await asyncpg.connect(self.server.dsn(), timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            return f"skipped: {exc!r}"
        try:
            pids = [
                r["pid"]
                for r in await conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1"
                    " AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
                    self.database,
                )
            ]
            victims = self.rng.sample(pids, k=min(len(pids), self.rng.randint(1, 8)))
            await conn.execute(
                "SELECT pg_terminate_backend(p) FROM unnest($1::int[]) AS p", victims
            )
        finally:
            await conn.close()
        return f"{len(victims)} of {len(pids)} connections"
