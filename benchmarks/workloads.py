"""The workloads W1..W8. Each function does one run and returns its figures."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
import psutil  # type: ignore[import-untyped]

import durable
from durable._events import EventType
from durable._replayer import WorkflowInstance
from durable._serialization import decode

from . import workflows as wf
from .runtime import client_options, cpu_split, progress, wait_until, worker_processes
from .stats import gaps, percentile

START_BATCH = 200  # workflows started (or signalled) concurrently by the client
CLIENT_CONNECTIONS = 20
# worker process settings for the many-workflow workloads
WORKER_OPTIONS = {
    "max_activities": 200,
    "max_workflow_tasks": 200,
    "connections": 20,
    "max_cached": 20_000,
}


@dataclass(frozen=True)
class ScheduleLoad:
    """What S1 defines (runner.py's --schedules, --schedule-every, --schedule-cron,
    --schedule-slots): ``count`` schedules (None: 10,000 times the scale) firing every
    ``every`` seconds, or by ``cron``, measured over ``slots`` slots."""

    count: int | None = None
    every: float = 60.0
    cron: str | None = None
    slots: int = 3


@dataclass
class Env:
    """What every workload gets: the database, the scale, and a cache across runs."""

    dsn: str
    scale: float
    cache: dict[Any, Any] = field(default_factory=dict)
    schedules: ScheduleLoad = field(default_factory=ScheduleLoad)

    def size(self, full: int, minimum: int = 1) -> int:
        return max(minimum, round(full * self.scale))


@dataclass
class Run:
    figures: dict[str, float]
    info: dict[str, Any] = field(default_factory=dict)


def check(condition: bool, message: str) -> None:
    """Fail the workload (reported as ERROR) when a workflow produced a wrong result."""
    if not condition:
        raise AssertionError(message)


def per_unit(cpu_seconds: dict[str, float], units: int) -> dict[str, float]:
    """CPU milliseconds per unit of work, by process group."""
    return {group: round(seconds * 1000 / units, 3) for group, seconds in cpu_seconds.items()}


def new_queue(workload: str) -> str:
    return f"bench-{workload}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------- helpers


@contextlib.asynccontextmanager
async def connect(dsn: str) -> AsyncIterator[durable.Client]:
    target, options = client_options(dsn)
    client = await durable.Client.connect(target, max_connections=CLIENT_CONNECTIONS, **options)
    try:
        yield client
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def in_process_worker(dsn: str, queue: str) -> AsyncIterator[durable.Client]:
    """A client with a worker for ``queue`` running in this process."""
    async with connect(dsn) as client:
        worker = durable.Worker(
            client, task_queue=queue, workflows=wf.WORKFLOWS, activities=wf.ACTIVITIES
        )
        async with worker:
            yield client


async def in_batches(calls: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Await every call, ``START_BATCH`` at a time."""
    results: list[Any] = []
    for first in range(0, len(calls), START_BATCH):
        batch = calls[first : first + START_BATCH]
        results += await asyncio.gather(*(call() for call in batch))
    return results


async def start_all(
    client: durable.Client,
    workflow: Any,
    args: Sequence[Any],
    queue: str,
    count: int,
    tag: str = "",
) -> list[str]:
    """Start ``count`` workflows with the same arguments; returns their ids."""
    ids = [f"{queue}-{tag}{i}" for i in range(count)]

    def starter(workflow_id: str) -> Callable[[], Awaitable[Any]]:
        return lambda: client.start(workflow, *args, id=workflow_id, task_queue=queue)

    await in_batches([starter(i) for i in ids])
    return ids


async def count_where(client: durable.Client, queue: str, condition: str) -> int:
    value = await client.store.pool.fetchval(
        f"SELECT count(*) FROM durable.workflows WHERE task_queue = $1 AND {condition}", queue
    )
    return int(value)


class StallWatch:
    """Raises TimeoutError once a number on its way to ``count`` stops growing for
    ``stall`` seconds."""

    def __init__(self, what: str, count: int, stall: float) -> None:
        self.what, self.count, self.stall = what, count, stall
        self.best, self.changed = -1, time.monotonic()

    def check(self, found: int) -> None:
        if found > self.best:
            self.best, self.changed = found, time.monotonic()
        elif time.monotonic() - self.changed > self.stall:
            raise TimeoutError(
                f"{self.what}: stuck at {found} of {self.count} for {self.stall:.0f} s"
            )


async def wait_count(
    client: durable.Client, queue: str, condition: str, count: int, what: str, stall: float = 30
) -> None:
    """Wait until ``count`` workflows of ``queue`` match ``condition``; TimeoutError when the
    number matching stops growing for ``stall`` seconds."""
    watch = StallWatch(what, count, stall)
    while (found := await count_where(client, queue, condition)) < count:
        watch.check(found)
        await asyncio.sleep(0.02)


async def wait_closed(
    client: durable.Client,
    queue: str,
    count: int,
    stall: float = 30,
    counted: Callable[[str], bool] = lambda workflow_id: True,
) -> None:
    """Wait until ``count`` workflows (distinct ids, those ``counted`` accepts) of ``queue``
    closed: those closed when it is called, then those the engine's closing notifications
    name (their ids begin with the queue's name). Counting rows every few ms instead would
    load the server while it is measured (~2 ms of server CPU per count of 10,000)."""
    closed: set[str] = set()
    enough = asyncio.Event()

    def on_closing(conn: Any, pid: int, channel: str, payload: str) -> None:
        if payload.startswith("c" + queue) and counted(payload[1:]):
            closed.add(payload[1:])
            if len(closed) >= count:
                enough.set()

    conn = await asyncpg.connect(client.store.listen_dsn or client.store.dsn)
    try:
        await conn.add_listener("durable", on_closing)
        rows = await conn.fetch(
            "SELECT workflow_id FROM durable.workflows"
            " WHERE task_queue = $1 AND closed_at IS NOT NULL",
            queue,
        )
        closed.update(r["workflow_id"] for r in rows if counted(r["workflow_id"]))
        watch = StallWatch("closing", count, stall)
        while len(closed) < count:
            watch.check(len(closed))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(enough.wait(), 1.0)
    finally:
        await conn.close()


async def results(client: durable.Client, queue: str) -> dict[str, Any]:
    """The decoded results of the workflows of ``queue``; fails if any did not complete."""
    rows = await client.store.pool.fetch(
        "SELECT workflow_id, status, result, last_error FROM durable.workflows"
        " WHERE task_queue = $1",
        queue,
    )
    failed = [r for r in rows if r["status"] != "completed"]
    check(
        not failed,
        f"{len(failed)} workflows did not complete, e.g. {dict(failed[0]) if failed else ''}",
    )
    return {r["workflow_id"]: decode(r["result"]) for r in rows}


def check_results(found: dict[str, Any], ids: Sequence[str], expected: Callable[[str], Any]) -> int:
    wrong = [i for i in ids if i not in found or found[i] != expected(i)]
    check(not wrong, f"{len(wrong)} missing or wrong results, e.g. {wrong[0] if wrong else ''}")
    return len(ids)


async def analyze(client: durable.Client) -> None:
    """Give the planner statistics of the engine's tables as they are now, before measuring.

    A database that has run for a minute has them (autovacuum analyzes a table once 10 %
    of it changed), the benchmark's are seconds old. Taken when the queue tables (inbox,
    activity tasks) are empty or nearly, which is when autovacuum mostly finds them, they
    are the worst case for the engine's plans: the burst that follows meets plans made for
    empty tables."""
    await client.store.pool.execute(
        "ANALYZE durable.workflows, durable.history, durable.inbox, durable.activity_tasks,"
        " durable.calls, durable.workers"
    )


def step_ms(stamps: Sequence[float]) -> list[float]:
    return [gap * 1000 for gap in gaps(stamps)]


# ---------------------------------------------------------------------- W1, W1b

COLD_STEPS, WARM_AFTER = 10, 50  # the first steps after the worker started; steps from then


async def sequential_steps(env: Env, local: bool) -> Run:
    steps = env.size(200, minimum=10)
    workflow = wf.local_activity_steps if local else wf.activity_steps
    queue = new_queue("W1b" if local else "W1")
    async with in_process_worker(env.dsn, queue) as client:
        await analyze(client)
        wf.STAMPS.clear()
        result = await client.execute(workflow, steps, task_queue=queue)
    check(result == steps * (steps - 1) // 2, f"wrong result {result}")
    check(len(wf.STAMPS) >= steps, f"{len(wf.STAMPS)} activity runs for {steps} steps")
    per_step = step_ms(wf.STAMPS)
    cold, warm = per_step[:COLD_STEPS], per_step[WARM_AFTER:] or per_step
    return Run(
        {"p50_ms_per_step": percentile(per_step, 50)},
        {
            "steps": steps,
            "p99_ms_per_step": percentile(per_step, 99),
            # the worker (and its client) started just before the workflow: a fresh process's
            # first steps, beside the steps after them
            "p50_ms_first_10_steps": percentile(cold, 50),
            "p50_ms_after_50_steps": percentile(warm, 50),
            "checked_results": 1,
        },
    )


async def w1(env: Env) -> Run:
    return await sequential_steps(env, local=False)


async def w1b(env: Env) -> Run:
    return await sequential_steps(env, local=True)


# ---------------------------------------------------------------------- W1c, W1d

WARM_UP_STEPS = 200  # steps a worker process runs between its cold and its warm figure


async def fresh_worker_steps(env: Env, local: bool) -> Run:
    """A worker process that just started runs ``steps`` steps (cold); after a warm-up
    workflow, it runs them again (warm)."""
    steps = env.size(50, minimum=10)
    queue = new_queue("W1d" if local else "W1c")
    async with worker_processes(env.dsn, queue, 1), connect(env.dsn) as client:
        await analyze(client)
        stamps = {}
        for phase, count in (
            ("cold", steps),
            ("warm_up", env.size(WARM_UP_STEPS)),
            ("warm", steps),
        ):
            stamps[phase] = await client.execute(wf.stamped_steps, count, local, task_queue=queue)
            check(len(stamps[phase]) == count, f"{len(stamps[phase])} stamps for {count} steps")
    cold, warm = step_ms(stamps["cold"]), step_ms(stamps["warm"])
    return Run(
        {
            "p50_ms_first_steps": percentile(cold, 50),
            "cold_to_warm": percentile(cold, 50) / percentile(warm, 50),
        },
        {
            "steps": steps,
            "p50_ms_warm": percentile(warm, 50),
            "first_5_steps_ms": " ".join(f"{ms:.2f}" for ms in cold[:5]),
            "p99_ms_first_steps": percentile(cold, 99),
            "checked_results": 3,
        },
    )


async def w1c(env: Env) -> Run:
    return await fresh_worker_steps(env, local=False)


async def w1d(env: Env) -> Run:
    return await fresh_worker_steps(env, local=True)


# ---------------------------------------------------------------------- W2, W2b


async def fan_in_throughput(
    env: Env,
    processes: int,
    telemetry: int = 0,
    beside: Callable[[durable.Client, str], Awaitable[dict[str, Any]]] | None = None,
    build_id: str | None = None,
    begin_at: float | None = None,
) -> Run:
    """``telemetry``: 0 none, 1 metrics, 2 metrics and traces (see worker_proc). ``beside``
    runs while the workflows run (given the client and their queue); its figures join the
    run's. ``build_id``: the workers' build (every run is pinned to it). ``begin_at``: the
    Unix time the measured phase begins at, its worker ready before (none: when ready)."""
    count, steps = env.size(1000, minimum=4), 10
    queue = new_queue(f"W2x{processes}t{telemetry}")
    options: dict[str, int | str] = {**WORKER_OPTIONS, "telemetry": telemetry}
    if build_id is not None:
        options["build_id"] = build_id
    async with (
        worker_processes(env.dsn, queue, processes, **options) as procs,
        connect(env.dsn) as client,
    ):
        await analyze(client)
        if begin_at is not None:
            await asyncio.sleep(max(0.0, begin_at - time.time()))
        async with cpu_split(env.dsn, [p.pid for p in procs]) as cpu:
            began = time.perf_counter()
            ids = await start_all(client, wf.echo_steps, [steps], queue, count)
            started = time.perf_counter() - began
            side = asyncio.create_task(beside(client, queue)) if beside else None
            await wait_closed(client, queue, count)
            elapsed = time.perf_counter() - began
            figures = await side if side else {}
        checked = check_results(await results(client, queue), ids, lambda _: sum(range(steps)))
    return Run(
        {
            "steps_per_s": count * steps / elapsed,
            "worker_cpu_ms_per_step": cpu["workers"] * 1000 / (count * steps),
            **figures,
        },
        {
            "workflows": count,
            "activities_per_workflow": steps,
            "worker_processes": processes,
            "telemetry": telemetry,
            "build_id": build_id,
            "wall_s": elapsed,
            "start_s": started,
            "cpu_ms_per_step": per_unit(cpu, count * steps),
            "checked_results": checked,
        },
    )


async def w2(env: Env) -> Run:
    return await fan_in_throughput(env, processes=1)


async def w2b(env: Env) -> Run:
    return await fan_in_throughput(env, processes=2)


async def w2m(env: Env) -> Run:
    """W2 with an OpenTelemetry SDK meter provider in the worker (its exporter drops the
    metrics it collects every second)."""
    return await fan_in_throughput(env, processes=1, telemetry=1)


async def w2t(env: Env) -> Run:
    """W2 with SDK meter and tracer providers in the worker (spans batched, then dropped)."""
    return await fan_in_throughput(env, processes=1, telemetry=2)


async def w2v(env: Env) -> Run:
    """W2 on a versioned worker (build_id set): each run pinned by its first claim, and every
    claim filtered on the builds the worker accepts."""
    return await fan_in_throughput(env, processes=1, build_id="bench-v1")


async def w2x(env: Env) -> Run:
    """W2 while a batch terminates 10,000 other workflows: W2's steps per second in the
    batch's time window beside its rate over the whole run."""
    doomed = env.size(10_000, minimum=4)
    queue = new_queue("W2x-doomed")
    async with connect(env.dsn) as client:  # (no worker: they wait pending)
        await start_all(client, wf.parked, [], queue, doomed)

    async def terminate_them(client: durable.Client) -> int:
        return await client.batch("terminate", workflow_name="parked", reason="benchmark")

    return await fan_in_throughput(
        env, processes=1, beside=beside_w2("batch_terminate", terminate_them, doomed)
    )


async def w2p(env: Env) -> Run:
    """W2 while a purge deletes 100,000 runs closed 40 days ago (8 history events each,
    written by SQL beforehand): W2's steps per second while both run."""
    closed = env.size(100_000, minimum=40)
    async with connect(env.dsn) as client:
        await client.store.pool.execute(ARCHIVED_RUNS_SQL, closed, int(EventType.STEP_COMPLETED))

    async def purge_them(client: durable.Client) -> int:
        return await client.purge(closed_before=timedelta(days=30))

    return await fan_in_throughput(env, processes=1, beside=beside_w2("purge", purge_them, closed))


async def w2o(env: Env) -> Run:
    """W2 without the index of closed runs by closing time (migration 0008; restored after):
    what that index costs W2's closing steps, beside W2 in the same sitting."""
    async with connect(env.dsn) as client:
        pool = client.store.pool
        await pool.execute("DROP INDEX durable.workflows_closed")
        try:
            return await fan_in_throughput(env, processes=1)
        finally:
            await pool.execute(
                "CREATE INDEX workflows_closed ON durable.workflows (closed_at)"
                " WHERE closed_at IS NOT NULL"
            )


# runs closed 40 days ago, as many as $1, with 8 history events each (bodies: an empty map)
ARCHIVED_RUNS_SQL = """
WITH runs AS (
    INSERT INTO durable.workflows (workflow_id, run_id, workflow_name, task_queue, status,
        created_at, started_at, closed_at, next_seq)
    SELECT 'archived-' || i, gen_random_uuid(), 'archived', 'bench-archive', 'completed',
        now() - interval '41 days', now() - interval '41 days',
        now() - interval '40 days' + i * interval '1 ms', 9
    FROM generate_series(1, $1) AS i
    RETURNING workflow_id, run_id, closed_at)
INSERT INTO durable.history (workflow_id, run_id, seq, kind, ts, body, ends_step)
SELECT workflow_id, run_id, seq, $2, closed_at, '\\x80'::bytea, true
FROM runs CROSS JOIN generate_series(1, 8) AS seq
"""


def beside_w2(
    name: str, act: Callable[[durable.Client], Awaitable[int]], expected: int
) -> Callable[[durable.Client, str], Awaitable[dict[str, Any]]]:
    """What runs beside W2 (0.3 s into it): ``act``, which must act on ``expected`` runs;
    its time, and W2's completed activities per second while both ran (database clock)."""

    async def beside(client: durable.Client, w2_queue: str) -> dict[str, Any]:
        await asyncio.sleep(0.3)  # W2 under way
        began, t0 = await client.store.database_time(), time.perf_counter()
        n = await act(client)
        took, ended = time.perf_counter() - t0, await client.store.database_time()
        check(n == expected, f"{name} acted on {n} of {expected} runs")
        steps, last = await client.store.pool.fetchrow(
            "SELECT count(*), max(h.ts) FROM durable.history h JOIN durable.workflows w USING "
            "(workflow_id, run_id) WHERE w.task_queue = $1 AND h.kind = $4 "
            "AND h.ts BETWEEN $2 AND $3",
            w2_queue,
            began,
            ended,
            int(EventType.ACTIVITY_COMPLETED),
        )
        overlap = ((last or began) - began).total_seconds()  # W2 may end first
        return {f"{name}_s": took, f"w2_steps_per_s_during_{name}": steps / max(overlap, 1e-3)}

    return beside


# ---------------------------------------------------------------------- W3


async def w3(env: Env) -> Run:
    repeats, warmup = env.size(200, minimum=5), 5
    queue = new_queue("W3")
    latencies = []
    async with worker_processes(env.dsn, queue, 1), connect(env.dsn) as client:
        await analyze(client)
        for i in range(warmup + repeats):
            before = time.time()
            handle = await client.start(wf.first_activity_time, task_queue=queue)
            ran = await handle.result(timeout=60)
            check(isinstance(ran, float) and ran >= before, f"bad activity time {ran!r}")
            if i >= warmup:
                latencies.append((ran - before) * 1000)
    return Run(
        {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99)},
        {"repeats": repeats, "max_ms": max(latencies), "checked_results": warmup + repeats},
    )


# ---------------------------------------------------------------------- W4


async def build_history(env: Env, events: int) -> tuple[str, str, list[Any]]:
    """Run a workflow whose history has about ``events`` events; return it (cached)."""
    activities = max(1, (events - 2) // 2)
    if activities not in env.cache:
        queue = new_queue("W4")
        progress(f"  W4: building a history of {2 * activities + 2} events")
        async with in_process_worker(env.dsn, queue) as client:
            handle = await client.start(wf.many_events, activities, 100, task_queue=queue)
            total = await handle.result(timeout=600)
            check(total == sum(range(activities)), f"wrong result {total}")
            assert handle.run_id is not None
            history = await client.store.load_history(handle.workflow_id, handle.run_id)
        env.cache[activities] = (handle.workflow_id, handle.run_id, history)
    cached: tuple[str, str, list[Any]] = env.cache[activities]
    return cached


async def w4(env: Env) -> Run:
    workflow_id, run_id, history = await build_history(env, env.size(10_000, minimum=20))
    began = time.perf_counter()
    instance = WorkflowInstance(wf.many_events, workflow_id, run_id, history)
    instance.replay()
    elapsed = time.perf_counter() - began
    new_events = instance.take_output().events
    check(instance.closed and not new_events, "the replay did not end where the history ends")
    check(history[-1].type is EventType.WORKFLOW_COMPLETED, "the history is not complete")
    return Run(
        {"events_per_s": len(history) / elapsed},
        {"events": len(history), "replay_s": elapsed, "checked_results": 1},
    )


# ---------------------------------------------------------------------- W5


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


async def start_parked(
    client: durable.Client, queue: str, count: int, tag: str = ""
) -> tuple[list[str], int]:
    """Start ``count`` workflows on ``wait_signal`` and wait until every one is parked.

    Returns the ids and how many are still due for a workflow task 5 s after all were
    claimed (0 unless the engine keeps re-running workflows that have nothing to do).
    """
    ids = await start_all(client, wf.parked, [], queue, count, tag)
    due = "status = 'running' AND ready_at IS NOT NULL"
    try:
        await wait_count(client, queue, "status = 'running'", count, "parking")
    except TimeoutError as exc:
        still_due = await count_where(client, queue, due)
        raise TimeoutError(
            f"{exc}; {still_due} claimed workflows are still due for a workflow task (does the "
            "engine keep re-running workflows that wait with nothing to do?)"
        ) from None

    async def idle() -> bool:
        return await count_where(client, queue, due) == 0

    with contextlib.suppress(TimeoutError):
        await wait_until(idle, 5, "idle parked workflows")
    return ids, await count_where(client, queue, due)


async def signal_all(client: durable.Client, ids: Sequence[str]) -> None:
    def sender(workflow_id: str) -> Callable[[], Awaitable[None]]:
        return lambda: client.get_handle(workflow_id).signal("go", workflow_id)

    await in_batches([sender(i) for i in ids])


async def w5(env: Env) -> Run:
    count, warmup = env.size(10_000, minimum=4), 20
    queue = new_queue("W5")
    async with (
        worker_processes(env.dsn, queue, 1, **WORKER_OPTIONS) as procs,
        connect(env.dsn) as client,
    ):
        warm_ids, _ = await start_parked(client, queue, warmup, "warm-")
        await signal_all(client, warm_ids)
        await wait_closed(client, queue, warmup)
        before = rss(procs[0].pid)
        ids, still_due = await start_parked(client, queue, count)
        after = rss(procs[0].pid)
        await analyze(client)
        async with cpu_split(env.dsn, [procs[0].pid]) as cpu:
            began = time.perf_counter()
            await signal_all(client, ids)
            await wait_closed(client, queue, warmup + count)
            elapsed = time.perf_counter() - began
        checked = check_results(await results(client, queue), ids, lambda i: i)
    return Run(
        {
            "rss_kb_per_workflow": (after - before) / count / 1024,
            "completions_per_s": count / elapsed,
        },
        {
            "workflows": count,
            "rss_before_mb": before / 2**20,
            "rss_parked_mb": after / 2**20,
            "still_due_when_parked": still_due,
            "cpu_ms_per_completion": per_unit(cpu, count),
            "checked_results": checked,
        },
    )


# ---------------------------------------------------------------------- W6


async def w6(env: Env) -> Run:
    count = env.size(10_000, minimum=4)
    lead = 3 + count / 600  # seconds from the first start to the timers' due time
    queue = new_queue("W6")
    async with (
        worker_processes(env.dsn, queue, 1, **WORKER_OPTIONS) as procs,
        connect(env.dsn) as client,
    ):
        due = time.time() + lead
        ids = await start_all(client, wf.timer_at, [due], queue, count)
        await wait_count(client, queue, "next_seq > 2", count, "arming the timers")
        await analyze(client)
        armed_early_s = due - time.time()
        async with cpu_split(env.dsn, [procs[0].pid]) as cpu:
            await wait_closed(client, queue, count, stall=max(30, armed_early_s + 30))
        found = await results(client, queue)
    check(set(found) == set(ids), f"expected {count} results, found {len(found)}")
    late = list(found.values())
    check(all(isinstance(x, float) and x >= 0 for x in late), "a timer fired before it was due")
    return Run(
        {"p99_lateness_s": percentile(late, 99)},
        {
            "timers": count,
            "p50_lateness_s": percentile(late, 50),
            "max_lateness_s": max(late),
            "armed_s_before_due": armed_early_s,
            "cpu_ms_per_timer_from_arming": per_unit(cpu, count),
            "checked_results": len(ids),
        },
    )


# ---------------------------------------------------------------------- W7


async def w7(env: Env) -> Run:
    steps, filler = env.size(50, minimum=10), env.size(10_000, minimum=20)
    queue = new_queue("W7")
    async with in_process_worker(env.dsn, queue) as client:
        await analyze(client)
        wf.STAMPS.clear()
        result = await client.execute(wf.long_history, steps, filler, task_queue=queue)
    check(result == 2 * sum(range(steps)), f"wrong result {result}")
    check(len(wf.STAMPS) == 2 * steps, f"{len(wf.STAMPS)} activity runs for {2 * steps} steps")
    short = percentile(step_ms(wf.STAMPS[:steps]), 50)
    long = percentile(step_ms(wf.STAMPS[steps:]), 50)
    return Run(
        {"step_cost_ratio": long / short},
        {
            "p50_ms_short_history": short,
            "p50_ms_long_history": long,
            "long_history_events": 2 * steps + filler + 1,
            "checked_results": 1,
        },
    )


# ---------------------------------------------------------------------- W8

BACKLOG_SLOTS = (1, 2, 100)


async def drain_backlog(client: durable.Client, count: int, slots: int) -> float:
    """Seconds a worker with ``slots`` slots of each kind takes to run ``count`` one-activity
    workflows queued before it started, from when it started."""
    queue = new_queue(f"W8x{slots}")
    ids = await start_all(client, wf.one_activity, [7], queue, count)
    await analyze(client)
    worker = durable.Worker(
        client,
        task_queue=queue,
        workflows=wf.WORKFLOWS,
        activities=wf.ACTIVITIES,
        max_concurrent_activities=slots,
        max_concurrent_workflow_tasks=slots,
    )
    async with worker:  # it opens its connections before it takes work: not measured
        began = time.perf_counter()
        await wait_closed(client, queue, count)
        elapsed = time.perf_counter() - began
    check_results(await results(client, queue), ids, lambda _: 7)
    return elapsed


async def w8(env: Env) -> Run:
    count = env.size(100, minimum=5)
    async with connect(env.dsn) as client:
        drained = {slots: await drain_backlog(client, count, slots) for slots in BACKLOG_SLOTS}
    return Run(
        {f"ms_per_workflow_{slots}_slots": s * 1000 / count for slots, s in drained.items()},
        {
            "workflows": count,
            **{f"wall_s_{slots}_slots": s for slots, s in drained.items()},
            "checked_results": count * len(BACKLOG_SLOTS),
        },
    )


WORKLOADS: dict[str, Callable[[Env], Awaitable[Run]]] = {
    "W1": w1,
    "W1b": w1b,
    "W1c": w1c,
    "W1d": w1d,
    "W2": w2,
    "W2b": w2b,
    "W2m": w2m,
    "W2t": w2t,
    "W2v": w2v,
    "W2x": w2x,
    "W2p": w2p,
    "W2o": w2o,
    "W3": w3,
    "W4": w4,
    "W5": w5,
    "W6": w6,
    "W7": w7,
    "W8": w8,
}
