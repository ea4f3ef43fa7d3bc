"""The chaos harness, shared by the CI test (test_chaos.py) and the soak run (soak.py).

One run: start a Postgres of our own, a few worker processes (tests/chaos/app.py) and a
client; start workflows, signal and cancel them while injecting faults on a random plan
(kill -9 a worker, restart Postgres with -m immediate, pg_terminate_backend, SIGSTOP a
worker past its lease), and pause and resume some of them, one by one and all at once by a
batch; wait until every workflow finished; stop the workers gracefully;
check the invariants of tests/chaos/checks.py on the database; report the figures.

The workflows are in app.py, the faults and worker processes in faults.py, the Postgres
server in server.py.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import asyncpg

import durable
from durable._events import Event, EventType, unpack_attrs
from durable._reset_plan import reset_points
from durable._serialization import decode

from ..pgbouncer import running_pgbouncer
from ..spans import read_spans
from . import PREPARED_ENV, app, checks, debounced, limits
from . import schedules as scheduled
from .faults import (
    OUTCOME_RETRIED,
    RESTART,
    Fault,
    FaultInjector,
    WorkerPool,
    count_lines,
    failed_tasks,
    plan_faults,
    scan_logs,
)
from .server import PostgresServer, running_server

T = TypeVar("T")
DATABASE = "chaos"

SAMPLE_EVERY = 0.5  # seconds between two progress samples
PAUSED = 0.25  # the share of workflows the driver pauses once, and resumes, while they run
RESETS = 12  # resettable workflows (app.chaos_resettable) the driver resets once each
DECOYS = 30  # workflows that only time out (app.chaos_decoy): a purge amid faults deletes some
RECOVERED_BELOW = 1.5  # seconds of lag under which the system counts as recovered


@dataclass(frozen=True)
class Profile:
    """How big and how long a chaos run is."""

    workflows: int = 150
    workers: int = 3
    duration: float = 60.0  # seconds of fault injection
    seed: int = 1
    first_fault: float = 3.0  # seconds into the run
    fault_gap: tuple[float, float] = (2.5, 4.5)  # seconds between two faults
    min_restarts: int = 2  # Postgres restarts at least (every other kind at least once)
    stall_seconds: float = 3 * app.LEASE_TTL.total_seconds()
    start_fraction: float = 0.85  # workflows start during this first part of the run
    mode_weights: tuple[float, float, float] = (0.8, 0.1, 0.1)  # app.MODES
    settle_timeout: float = 60.0  # seconds to let the last workflows finish after the faults
    op_timeout: float = 60.0  # seconds a client call may keep retrying
    max_wait: float = 30.0  # seconds due work may wait, at most (liveness bound)
    kinds_in_turn: bool = False  # faults of each kind in turn, not drawn (see plan_faults)
    pooler: bool = False  # workers go through PgBouncer in transaction mode (tests/pgbouncer.py)


# ============================================================================ retries
class Retrier:
    """Calls the client until it succeeds, across restarts and killed connections.

    A call that failed may still have committed (the connection died during COMMIT): before
    retrying a call that must not happen twice (a signal, a cancel), ``landed`` checks
    whether it did.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.retries: collections.Counter[str] = collections.Counter()
        self.landed: collections.Counter[str] = collections.Counter()

    async def __call__(
        self,
        op: str,
        call: Callable[[], Awaitable[T]],
        landed: Callable[[], Awaitable[bool]] | None = None,
    ) -> T | None:
        deadline = time.monotonic() + self.timeout
        for attempt in itertools.count():
            try:
                return await call()
            except Exception as exc:
                if not app.is_transient(exc) or time.monotonic() > deadline:
                    raise
                self.retries[op] += 1
            await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
            if landed is not None and await self(f"{op} (check)", landed):
                self.landed[op] += 1
                return None
        raise AssertionError("unreachable")


# ============================================================================ progress
class Monitor:
    """Samples, twice a second, how long the oldest due piece of work has waited: a due
    workflow task, a visible unclaimed activity task, an activity held by a worker that
    stopped renewing its lease (aged from its last renewal), an activity attempt past its
    deadline that nobody reaped yet, or an attempt running for longer than LONG_ATTEMPT
    (every activity of the app takes well under a second: such an attempt was lost)."""

    LONG_ATTEMPT = 5.0

    QUERY = """
    SELECT greatest(
        (SELECT extract(epoch FROM now() - min(ready_at)) FROM durable.workflows
         WHERE ready_at <= now() AND paused_at IS NULL),
        (SELECT extract(epoch FROM now() - min(visible_at)) FROM durable.activity_tasks
         WHERE owner IS NULL AND visible_at <= now()),
        (SELECT extract(epoch FROM now() - min(coalesce(k.expires_at - make_interval(secs => $1),
                                                         t.started_at)))
         FROM durable.activity_tasks t LEFT JOIN durable.workers k ON k.worker_id = t.owner
         WHERE t.owner IS NOT NULL
           AND coalesce(k.expires_at - make_interval(secs => $1), t.started_at)
               < now() - interval '1 second'),
        (SELECT extract(epoch FROM now() - min(deadline)) FROM durable.activity_tasks
         WHERE owner IS NOT NULL AND deadline < now()),
        (SELECT extract(epoch FROM now() - min(started_at)) FROM durable.activity_tasks
         WHERE owner IS NOT NULL AND started_at < now() - make_interval(secs => $2)),
        (SELECT extract(epoch FROM now() - min(due_at)) FROM durable.schedules
         WHERE due_at <= now()),
        0)::float8 AS lag
    """

    def __init__(
        self,
        client: durable.Client,
        max_wait: float,
        explain: Callable[[asyncpg.Connection, float], Awaitable[list[str]]],
    ) -> None:
        self.client = client
        self.max_wait = max_wait
        self.explain = explain
        self.samples: list[tuple[float, float | None]] = []  # (t, lag or None: unreachable)
        self.stuck: dict[str, str] = {}  # what waited longer than max_wait, by what it is

    async def run(self, clock: Callable[[], float], stop: asyncio.Event) -> None:
        ttl = app.LEASE_TTL.total_seconds()
        explained_at = -float("inf")
        while not stop.is_set():
            try:
                async with asyncio.timeout(5):
                    lag = await self.client.store.pool.fetchval(self.QUERY, ttl, self.LONG_ATTEMPT)
                    if lag > self.max_wait and clock() - explained_at > 5.0:
                        explained_at = clock()
                        await self._explain()
            except Exception as exc:
                if not app.is_transient(exc):
                    raise
                lag = None
            self.samples.append((clock(), lag))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)

    async def _explain(self) -> None:
        """Record what has been waiting longer than max_wait (the latest word on each)."""
        async with self.client.store.pool.acquire() as conn:
            for problem in await self.explain(conn, self.max_wait):
                self.stuck[problem.split(": ", 1)[0]] = problem

    def liveness_violations(self, reported: Sequence[str] = ()) -> list[str]:
        """Due work must never wait longer than max_wait, even if it was freed later. What
        waited is listed unless ``reported`` (the hang diagnosis) covers it already."""
        worst = max((lag for _, lag in self.samples if lag is not None), default=0.0)
        if worst <= self.max_wait:
            return []
        known = {problem.split(": ", 1)[0] for problem in reported}
        return [
            f"liveness: due work waited up to {worst:.1f} s (bound {self.max_wait:g} s)",
            *(f"liveness: {p}" for key, p in self.stuck.items() if key not in known),
        ]

    def attribute(self, faults: list[Fault]) -> None:
        """For each fault, its recovery time: how long after the fault due work was still
        waiting, i.e. the largest min(lag, time since the fault) over the samples until the
        next fault (at least 10 s); and whether the lag was back under RECOVERED_BELOW at the
        end of that window."""
        waits = self._waits()
        for fault, following in itertools.zip_longest(faults, faults[1:]):
            end = max(following.at if following else float("inf"), fault.at + 10.0)
            window = [(t, wait) for t, wait in waits if fault.at <= t < end]
            fault.recovery = max((min(wait, t - fault.at) for t, wait in window), default=0.0)
            fault.recovered = bool(window) and window[-1][1] < RECOVERED_BELOW

    def _waits(self) -> list[tuple[float, float]]:
        """The samples with an unreachable database counted as waiting since the last sample
        that reached it (one failed query, e.g. on a terminated connection, costs a sample
        period, not the whole time since the fault)."""
        waits = []
        reached = self.samples[0][0] if self.samples else 0.0
        for t, lag in self.samples:
            if lag is None:
                waits.append((t, t - reached))
            else:
                reached = t
                waits.append((t, lag))
        return waits

    def unreachable_seconds(self) -> float:
        return SAMPLE_EVERY * sum(1 for _, lag in self.samples if lag is None)


# ============================================================================ workload
class Driver:
    """Starts the workflows, sends their numbered signals and their cancellations."""

    def __init__(self, client: durable.Client, retry: Retrier) -> None:
        self.client = client
        self.retry = retry
        self.sent: dict[str, checks.Sent] = collections.defaultdict(checks.Sent)
        self.paused: collections.Counter[str] = collections.Counter()  # pause, resume: sent
        self.batched: collections.Counter[str] = collections.Counter()  # runs acted on
        self.resets: dict[str, int | None] = {}  # workflow id -> the seq it was reset to
        self.decoys: dict[str, float] = {}  # workflow id -> its execution deadline (epoch s)
        self.purge = checks.Purge()

    async def drive(
        self, spec: app.Spec, start_at: float, cancel_at: float | None, clock: Callable[[], float]
    ) -> None:
        await asyncio.sleep(max(0.0, start_at - clock()))
        wid = spec.workflow_id
        await self.retry("start", lambda: self._start(spec), lambda: self._exists(wid))
        handle = self.client.get_handle(wid)
        rng = random.Random(spec.seed)
        pausing = random.Random(spec.seed * 31 + 7)  # (rng's draws stay those of every run)
        pause_after = pausing.randrange(spec.signals + 1) if pausing.random() < PAUSED else -1
        for number in range(spec.signals + 1):
            if number == pause_after:
                await self._pause_a_while(handle, pausing.uniform(0.3, 2.0))
            if number == spec.signals:
                break
            await asyncio.sleep(rng.uniform(0.1, 1.2))
            await self.retry(
                "signal",
                lambda n=number: handle.signal(app.SIGNAL_NAME, n),  # type: ignore[misc]
                lambda n=number: self._recorded(wid, EventType.SIGNAL_RECEIVED, n),  # type: ignore[misc]
            )
            self.sent[wid].signals.append(number)
        if cancel_at is not None:
            await asyncio.sleep(max(0.0, cancel_at - clock()))
            await self.retry(
                "cancel", handle.cancel, lambda: self._recorded(wid, EventType.CANCEL_REQUESTED)
            )
            self.sent[wid].cancelled = True

    async def _pause_a_while(self, handle: durable.WorkflowHandle[object], seconds: float) -> None:
        """Pause the run, then resume it (each applied once: a retry sends its request id
        again); a run that closed meanwhile cannot be paused or resumed, which is no fault."""
        wid = handle.workflow_id
        for action, options in (("pause", {"reason": "chaos"}), ("resume", {})):
            request = f"{wid}-{action}"
            act = getattr(handle, action)
            try:
                await self.retry(action, lambda a=act, o=options, r=request: a(**o, request_id=r))  # type: ignore[misc]
            except durable.WorkflowError:
                return  # it closed
            self.paused[action] += 1
            await asyncio.sleep(seconds)

    async def pause_all_a_while(
        self, at: float, seconds: float, clock: Callable[[], float]
    ) -> None:
        """At ``at``, pause every running run by one batch; ``seconds`` later resume every
        paused one (a batch retried after a fault acts on what is left)."""
        await asyncio.sleep(max(0.0, at - clock()))
        for action, options in (
            ("pause", {"status": "running", "reason": "chaos"}),
            ("resume", {}),
        ):
            acted = await self.retry(
                f"batch {action}",
                lambda a=action, o=options: self.client.batch(a, **o),  # type: ignore[misc]
            )
            self.batched[action] += acted or 0
            await asyncio.sleep(seconds)

    async def drive_reset(self, seed: int, start_at: float, clock: Callable[[], float]) -> None:
        """Start a resettable workflow, send it its numbered signals (each once per request
        id), and between two of them reset it once (its request id makes a retry after a
        fault find the run the first attempt started) to a random point of its history."""
        await asyncio.sleep(max(0.0, start_at - clock()))
        wid = reset_workflow_id(seed)
        rng = random.Random(seed)
        await self.retry("start", lambda: self._start_resettable(seed), lambda: self._exists(wid))
        handle = self.client.get_handle(wid)
        reset_before = rng.randrange(app.RESET_SIGNALS)
        for number in range(app.RESET_SIGNALS):
            await asyncio.sleep(rng.uniform(0.1, 0.8))
            if number == reset_before:
                await self._reset_once(handle, rng)
            await self.retry(
                "signal",
                lambda n=number: handle.signal(app.SIGNAL_NAME, n, request_id=f"{wid}-{n}"),  # type: ignore[misc]
            )
            self.sent[wid].signals.append(number)

    async def _reset_once(self, handle: durable.WorkflowHandle[object], rng: random.Random) -> None:
        history = await self.retry("history", handle.history)
        events = [
            Event(e.seq, EventType[e.type], e.timestamp, e.fields, e.ends_step)
            for e in history or ()
        ]
        seq = rng.choice([None, *reset_points(events)])
        request = f"{handle.workflow_id}-reset"
        await self.retry("reset", lambda: handle.reset(seq, "chaos", request_id=request))
        self.resets[handle.workflow_id] = seq

    async def _start_resettable(self, seed: int) -> None:
        await self.client.start(
            app.chaos_resettable,
            seed,
            id=reset_workflow_id(seed),
            task_queue=app.TASK_QUEUE,
            id_reuse_policy="reject_duplicate",
        )

    async def drive_decoy(
        self, number: int, start_at: float, timeout: float, clock: Callable[[], float]
    ) -> None:
        """Start a decoy that times out ``timeout`` seconds later, and note its deadline."""
        await asyncio.sleep(max(0.0, start_at - clock()))
        wid = f"chaos-decoy-{number}"
        await self.retry(
            "start",
            lambda: self.client.start(
                app.chaos_decoy,
                id=wid,
                task_queue=app.TASK_QUEUE,
                execution_timeout=timedelta(seconds=timeout),
                id_reuse_policy="reject_duplicate",
            ),
            lambda: self._exists(wid),
        )
        history = await self.retry("history", self.client.get_handle(wid).history) or []
        self.decoys[wid] = history[0].execution_deadline

    async def purge_at(self, at: float, clock: Callable[[], float]) -> None:
        """At ``at``, purge the timed-out runs closed before now (the database's clock), and
        again two seconds later (a retry after a fault goes on where the last one stopped)."""
        await asyncio.sleep(max(0.0, at - clock()))
        self.purge.cutoff = await self.retry("time", self.client.store.database_time)
        for _ in range(2):
            purged = await self.retry(
                "purge", lambda: self.client.purge(self.purge.cutoff, "timed_out")
            )
            self.purge.purged += purged or 0
            await asyncio.sleep(2.0)

    async def _start(self, spec: app.Spec) -> None:
        await self.client.start(
            app.chaos_workflow,
            spec,
            id=spec.workflow_id,
            task_queue=app.TASK_QUEUE,
            id_reuse_policy="reject_duplicate",
        )

    async def _exists(self, workflow_id: str) -> bool:
        pool = self.client.store.pool
        return bool(
            await pool.fetchval(
                "SELECT count(*) FROM durable.workflows WHERE workflow_id = $1", workflow_id
            )
        )

    async def _recorded(self, workflow_id: str, kind: EventType, number: int | None = None) -> bool:
        """Whether a message reached the workflow (its inbox or, once delivered, its
        history), read in one snapshot."""
        rows = await self.client.store.pool.fetch(
            "SELECT body FROM durable.inbox WHERE workflow_id = $1 AND kind = $2 "
            "UNION ALL SELECT body FROM durable.history WHERE workflow_id = $1 AND kind = $2",
            workflow_id,
            int(kind),
        )
        if number is None:
            return bool(rows)
        return any(decode(unpack_attrs(r["body"])["args"])[0] == [number] for r in rows)

    async def open_runs(self) -> int:
        value = await self.client.store.pool.fetchval(
            "SELECT count(*) FROM durable.workflows WHERE closed_at IS NULL"
        )
        return int(value)


def reset_workload(rng: random.Random, profile: Profile) -> list[tuple[int, float]]:
    """(seed, start time) of every resettable workflow."""
    return [
        (profile.seed * 100 + i, rng.uniform(0.5, profile.duration * profile.start_fraction))
        for i in range(RESETS)
    ]


def decoy_workload(profile: Profile) -> list[tuple[float, float]]:
    """(start time, execution timeout) of every decoy: some close before the purge, some
    after it, some while it runs."""
    rng = random.Random(profile.seed + 2)
    return [
        (rng.uniform(0.5, profile.duration * 0.2), rng.uniform(0.5, profile.duration * 0.6))
        for _ in range(DECOYS)
    ]


def reset_workflow_id(seed: int) -> str:
    return f"chaos-reset-{seed}"


def make_workload(
    rng: random.Random, profile: Profile
) -> list[tuple[app.Spec, float, float | None]]:
    """(spec, start time, cancel time or None) for every workflow."""
    workload = []
    for index in range(profile.workflows):
        mode = rng.choices(app.MODES, profile.mode_weights)[0]
        spec = app.make_spec(rng, profile.seed, index, mode)
        start_at = rng.uniform(0.5, profile.duration * profile.start_fraction)
        cancel_at = None
        if mode == "hold":
            cancel_at = start_at + rng.uniform(2.0, 12.0)
        elif mode == "late_cancel":
            cancel_at = start_at + rng.uniform(0.5, 15.0)
        workload.append((spec, start_at, cancel_at))
    return workload


# ============================================================================ report
@dataclass
class Report:
    profile: Profile
    workload: list[tuple[app.Spec, float, float | None]] = field(default_factory=list)
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    runs: int = 0
    child_runs: int = 0
    history_events: int = 0
    takeovers: int = 0
    faults: list[Fault] = field(default_factory=list)
    worker_spawns: int = 0
    unreachable: float = 0.0
    max_lag: float = 0.0
    retries: collections.Counter[str] = field(default_factory=collections.Counter)
    landed: collections.Counter[str] = field(default_factory=collections.Counter)
    paused: collections.Counter[str] = field(default_factory=collections.Counter)
    batched: collections.Counter[str] = field(default_factory=collections.Counter)
    resets: dict[str, int | None] = field(default_factory=dict)  # workflow id -> its point
    purge: checks.Purge = field(default_factory=checks.Purge)
    activities: checks.ActivityFigures = field(default_factory=checks.ActivityFigures)
    builds: checks.BuildFigures = field(default_factory=checks.BuildFigures)
    schedules: scheduled.Figures | None = None
    limit: str = "running limit: not sampled"
    debounce_sent: dict[str, debounced.Sent] = field(default_factory=dict)
    debounce_figures: debounced.Figures | None = None
    settled_after: float | None = None
    duration: float = 0.0
    violations: list[str] = field(default_factory=list)
    logs: Path | None = None  # where the logs were kept (after violations)
    worker_log: collections.Counter[str] = field(default_factory=collections.Counter)

    def lines(self) -> list[str]:
        p = self.profile
        kinds = collections.Counter(
            f.kind for f in self.faults if not f.detail.startswith("skipped")
        )
        recovered = [f for f in self.faults if f.recovered]
        worst = max(self.faults, key=lambda f: f.recovery or 0.0, default=None)
        a = self.activities
        modes = collections.Counter(spec.mode for spec, _, _ in self.workload)
        restarts = [f.took for f in self.faults if f.kind == RESTART]
        lines = [
            f"chaos run: seed {p.seed}, {p.workers} workers, {p.duration:g} s of faults, "
            f"lease {app.LEASE_TTL.total_seconds():g} s",
            f"workflows: {len(self.workload)} ({_counts(modes)}); final status: "
            f"{_counts(self.statuses)}",
            f"runs: {self.runs} ({self.child_runs} child runs), history events: "
            f"{self.history_events}, ownership takeovers: {self.takeovers}",
            f"activities: {a.completions} completions recorded, {a.executions} executions "
            f"({a.planned_failures} planned failures, "
            f"{a.executions - a.completions - a.planned_failures} re-executions), "
            f"{a.effects} side effects",
            f"faults injected: {sum(kinds.values())} ({_counts(kinds)})",
            f"worker processes started: {self.worker_spawns}",
            f"postgres restarts took: {', '.join(f'{t:.2f} s' for t in restarts) or '-'}; "
            f"database unreachable for ~{self.unreachable:.1f} s of samples",
            f"recoveries: {len(recovered)}/{len(self.faults)} faults after which the lag was "
            f"back under {RECOVERED_BELOW:g} s by the next fault (or 10 s)",
            "max recovery time (how long after a fault due work was still waiting): "
            + (
                f"{worst.recovery:.2f} s after {worst.kind} at {worst.at:.1f} s ({worst.detail})"
                if worst
                else "-"
            ),
            self.recovery_by_kind(),
            f"max lag over the run: {self.max_lag:.2f} s",
            f"operator controls: one by one {_counts(self.paused) or '-'}; by batch "
            f"{_counts(self.batched) or '-'} runs; resets {len(self.resets)} (to "
            f"{_counts(collections.Counter(_point(s) for s in self.resets.values())) or '-'}); "
            f"purge amid faults: {self.purge.purged} of {DECOYS} decoys",
            self.builds.line(),
            self.schedules.line() if self.schedules else "schedules: not checked",
            self.limit,
            self.debounce_figures.line() if self.debounce_figures else "debounced: not checked",
            f"client retries: {_counts(self.retries) or 0}; calls found to have landed "
            f"before the retry: {_counts(self.landed) or 0}",
            "all workflows finished "
            + (
                f"{self.settled_after:.1f} s after the last fault"
                if self.settled_after is not None
                else "-: NOT ALL WORKFLOWS FINISHED"
            ),
            f"total duration: {self.duration:.1f} s",
        ]
        for violation in self.violations:
            lines.append(f"VIOLATION: {violation}")
        lines.append(f"invariant violations: {len(self.violations)}")
        return lines

    def recovery_by_kind(self) -> str:
        """The recovery times of each kind of fault (max, median), beside the bound one
        lease plus one poll interval."""
        times: dict[str, list[float]] = collections.defaultdict(list)
        for fault in self.faults:
            if not fault.detail.startswith("skipped"):
                times[fault.kind].append(fault.recovery or 0.0)
        bound = (app.LEASE_TTL + app.POLL_INTERVAL).total_seconds()
        by_kind = ", ".join(
            f"{kind} {max(t):.2f} / {statistics.median(t):.2f} s ({len(t)})"
            for kind, t in sorted(times.items())
        )
        return (
            f"recovery by kind (max / median, faults): {by_kind or '-'}; "
            f"one lease + one poll = {bound:g} s"
        )

    def log_lines(self) -> list[str]:
        return [f"  {count:5d} x {message}" for message, count in self.worker_log.most_common()]

    def fault_lines(self) -> list[str]:
        return [
            f"  {f.at:7.2f} s  {f.kind:<19} {f.detail:<48} recovery {f.recovery or 0:.2f} s"
            f"{'' if f.recovered else '  (lag not back under the threshold by the next fault)'}"
            for f in self.faults
        ]


def _counts(counter: collections.Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items()))


# ============================================================================ the run
def run_chaos(profile: Profile, log: Callable[[str], None] = print) -> Report:
    """One chaos run, start to finish. Whatever happens, workers and server are stopped."""
    logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)  # reconnect noise during faults
    report = Report(profile)
    began = time.monotonic()
    with running_server() as server, contextlib.ExitStack() as stack:
        pool = WorkerPool(server.dsn(DATABASE), server.folder)
        if profile.pooler:  # the workers' pools through it, their LISTEN and the harness direct
            kept = server.folder / "pgbouncer.log"  # with the others (_keep_logs)
            bouncer = stack.enter_context(running_pgbouncer(server.port, "transaction", 60, kept))
            listen = {"DURABLE_LISTEN_DATABASE_URL": server.dsn(DATABASE), PREPARED_ENV: "0"}
            pool = WorkerPool(bouncer.dsn(DATABASE), server.folder, listen)
        completed = False
        try:
            asyncio.run(_run(profile, server, pool, report, log))
            completed = True
        finally:
            pool.kill_all()
            report.worker_spawns = len(pool.workers)
            report.worker_log = scan_logs([w.log for w in pool.workers])
            report.violations += checks.check_worker_logs(report.worker_log)
            report.duration = time.monotonic() - began
            if report.violations or not completed or os.environ.get("CHAOS_KEEP_LOGS"):
                report.logs = _keep_logs(server.folder)
                log(f"chaos: worker and postgres logs kept in {report.logs}")
    return report


def _keep_logs(folder: Path) -> Path:
    """Copy the run's logs out of the server folder before it is deleted."""
    kept = Path(tempfile.mkdtemp(prefix="durable-chaos-logs-"))
    for path in [*folder.glob("*.log"), *folder.glob("*.spans")]:
        shutil.copy(path, kept / path.name)
    return kept


async def _prepare_database(server: PostgresServer) -> None:
    admin = await asyncpg.connect(server.dsn(), timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(server.dsn(DATABASE), timeout=10)
    try:
        await conn.execute(app.TABLES_SQL)
    finally:
        await conn.close()


async def _wait_registered(client: durable.Client, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = await client.store.pool.fetchval(
            "SELECT count(*) FROM durable.workers WHERE expires_at > now()"
        )
        if live >= count:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"fewer than {count} workers registered within {timeout} s")


async def _supervise(pool: WorkerPool, stop: asyncio.Event) -> None:
    while not stop.is_set():
        pool.replace_crashed()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def _settle(driver: Driver, retry: Retrier, timeout: float) -> bool:
    """Wait (bounded) until no run is open any more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await retry("poll", driver.open_runs) == 0:
            return True
        await asyncio.sleep(0.5)
    return False


async def _run(
    profile: Profile,
    server: PostgresServer,
    pool: WorkerPool,
    report: Report,
    log: Callable[[str], None],
) -> None:
    rng = random.Random(profile.seed)
    report.workload = make_workload(rng, profile)
    plan = plan_faults(
        rng,
        profile.duration,
        profile.first_fault,
        profile.fault_gap,
        profile.min_restarts,
        profile.kinds_in_turn,
    )
    await _prepare_database(server)
    client = await durable.Client.connect(server.dsn(DATABASE), max_connections=20)
    retry = Retrier(profile.op_timeout)
    stop = asyncio.Event()
    try:
        for number in range(profile.workers):  # one worker of the old build, the rest new
            pool.spawn(app.OLD_BUILD if number == 0 else app.NEW_BUILD)
        await _wait_registered(client, profile.workers)
        await scheduled.create_all(client, retry)
        await limits.configure(client, retry)
        t0 = time.monotonic()

        def clock() -> float:
            return time.monotonic() - t0

        driver = Driver(client, retry)
        monitor = Monitor(client, profile.max_wait, _explainer(pool, idle=False))
        sampler = limits.RunningSampler(client)
        injector = FaultInjector(rng, server, DATABASE, pool, profile.stall_seconds)
        background = [
            asyncio.create_task(monitor.run(clock, stop)),
            asyncio.create_task(_supervise(pool, stop)),
            asyncio.create_task(sampler.run(stop)),
        ]
        log(
            f"chaos: {profile.workflows} workflows, {len(plan)} faults planned over "
            f"{profile.duration:g} s"
        )
        await asyncio.gather(
            injector.run(plan, clock),
            *(driver.drive(spec, at, cancel, clock) for spec, at, cancel in report.workload),
            driver.pause_all_a_while(profile.duration / 2, 1.5, clock),
            *(
                driver.drive_reset(seed, at, clock)
                for seed, at in reset_workload(random.Random(profile.seed + 1), profile)
            ),
            *(
                driver.drive_decoy(number, at, timeout, clock)
                for number, (at, timeout) in enumerate(decoy_workload(profile))
            ),
            driver.purge_at(profile.duration * 0.4, clock),
            scheduled.pause_all_at(client, retry, profile.duration, clock),
            debounced.drive_all(client, retry, report.debounce_sent, profile.duration, clock),
        )
        faults_done = clock()
        settled = await _settle(driver, retry, profile.settle_timeout)
        report.settled_after = clock() - faults_done if settled else None
        hang = [] if settled else await _diagnose(server, pool)
        stop.set()
        await asyncio.gather(*background)
        report.faults = injector.faults
        monitor.attribute(report.faults)
        report.max_lag = max((lag for _, lag in monitor.samples if lag is not None), default=0.0)
        report.unreachable = monitor.unreachable_seconds()
        report.violations += monitor.liveness_violations(hang)
        report.violations += sampler.violations()
        report.limit = sampler.line()
        report.violations += [f"hang: {problem}" for problem in hang]
        report.retries, report.landed = retry.retries, retry.landed
        report.paused, report.batched = driver.paused, driver.batched
        report.resets = dict(driver.resets)
        report.purge = driver.purge
        report.violations += pool.crashes
        report.violations += await asyncio.to_thread(
            pool.stop_gracefully, app.SHUTDOWN_GRACE.total_seconds() + 15
        )
        await _check(server, pool, driver, report)
    finally:
        stop.set()
        await client.close()


def _explainer(
    pool: WorkerPool, idle: bool
) -> Callable[[asyncpg.Connection, float], Awaitable[list[str]]]:
    """checks.diagnose_hang with what the workers' logs say."""

    async def explain(conn: asyncpg.Connection, stuck_after: float) -> list[str]:
        numbers = {w.proc.pid: w.number for w in pool.workers}
        retried = {w.proc.pid: count_lines(w.log, OUTCOME_RETRIED) for w in pool.workers}
        return await checks.diagnose_hang(
            conn, numbers, retried, failed_tasks(pool.workers), stuck_after=stuck_after, idle=idle
        )

    return explain


async def _diagnose(server: PostgresServer, pool: WorkerPool) -> list[str]:
    conn = await asyncpg.connect(server.dsn(DATABASE), timeout=10)
    try:
        return await _explainer(pool, idle=True)(conn, checks.STUCK_AFTER)
    finally:
        await conn.close()


async def _check(server: PostgresServer, pool: WorkerPool, driver: Driver, report: Report) -> None:
    conn = await asyncpg.connect(server.dsn(DATABASE), timeout=10)
    try:
        snapshot = await checks.load_snapshot(conn)
        takeovers = await conn.fetchval(
            "SELECT coalesce(sum(greatest(fence - 1, 0)), 0) FROM durable.workflows"
        )
    finally:
        await conn.close()
    violations = report.violations
    for run in snapshot.runs:
        violations += checks.check_history(run)
    violations += checks.check_leases(snapshot, pool.graceful_pids)
    violations += checks.check_not_paused(snapshot)
    for spec, _, _ in report.workload:
        violations += checks.check_workflow(spec, driver.sent[spec.workflow_id], snapshot)
    for wid in driver.resets:
        violations += checks.check_reset_workflow(wid, driver.sent[wid], snapshot)
    violations += checks.check_purge(driver.purge, driver.decoys, snapshot)
    if len(driver.resets) != RESETS:
        violations.append(f"the driver reset {len(driver.resets)} workflows, planned {RESETS}")
    activity_problems, report.activities = checks.check_activities(snapshot)
    violations += activity_problems
    spans = read_spans(sorted(server.folder.glob("worker-*.spans")))
    violations += checks.check_traces(spans, [spec.workflow_id for spec, _, _ in report.workload])
    build_problems, report.builds = checks.check_builds(spans, snapshot)
    violations += build_problems
    conn = await asyncpg.connect(server.dsn(DATABASE), timeout=10)
    try:
        schedule_problems, report.schedules = await scheduled.check(conn)
        schedule_problems += await limits.check_nothing_running(conn)
    finally:
        await conn.close()
    violations += schedule_problems
    debounce_problems, report.debounce_figures = debounced.check(report.debounce_sent, snapshot)
    violations += debounce_problems
    top = {spec.workflow_id for spec, _, _ in report.workload}
    report.statuses = collections.Counter(
        snapshot.runs_of(wid)[-1].status if snapshot.runs_of(wid) else "missing" for wid in top
    )
    report.runs = len(snapshot.runs)
    report.child_runs = sum(1 for r in snapshot.runs if r.row["parent_workflow_id"])
    report.history_events = sum(len(r.events) for r in snapshot.runs)
    report.takeovers = int(takeovers)


def _point(seq: int | None) -> str:
    return "the default point" if seq is None else ("the start" if seq == 1 else "a later step")


def describe(report: Report) -> str:
    """The figures, the faults one by one, what the workers logged, and last the line
    ``invariant violations: N``."""
    lines = report.lines()
    return "\n".join(
        [
            *lines[:-1],
            "faults:",
            *report.fault_lines(),
            "worker warnings and errors:",
            *(report.log_lines() or ["  none"]),
            lines[-1],
        ]
    )
