"""Workflows and activities of the chaos suite, and the worker process that runs them.

Run a worker: ``python -m tests.chaos.app DSN``. It serves ``TASK_QUEUE`` with a short lease
so that the harness's faults (kill, stall) lead to takeovers within seconds.

Every workflow's result is computable from its :class:`Spec` (see :func:`expected_value`),
and every activity leaves a trace in two tables of the same database, so the harness can
count executions and check side effects afterwards:

- ``chaos_executions``: one row per activity attempt that started (at-least-once evidence);
- ``chaos_effects``: the side effect, keyed by the activity's idempotency key and written
  ``ON CONFLICT DO NOTHING``, so at most one row per activity call however often it ran.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sys
import zlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg

import durable
from durable import ApplicationError, RetryPolicy, WorkflowContext, activity, workflow

from ..spans import trace_to_file
from . import BUILD_ENV, LEASE_ENV, POLL_ENV, PREPARED_ENV, SPANS_ENV

TASK_QUEUE = "chaos"
# short, so that faults play out quickly (see LEASE_ENV)
LEASE_TTL = timedelta(seconds=float(os.environ.get(LEASE_ENV, "2")))
POLL_INTERVAL = timedelta(seconds=float(os.environ.get(POLL_ENV, "0.2")))
SHUTDOWN_GRACE = timedelta(seconds=3)
PREPARED_STATEMENTS = os.environ.get(PREPARED_ENV) != "0"  # "0": behind a pooler
SIGNAL_NAME = "n"  # the harness sends signals SIGNAL_NAME with payloads 0, 1, 2, ...
SIGNAL_TIMEOUT = 3.0  # each wait for a signal is also a timer, cancelled when the signal comes
FLAKY_FAILURES = 2  # flaky() fails its first attempts, so its completion is attempt >= 3
DSN_ENV = "CHAOS_DSN"
# Two builds serve the queue, as in a rolling deploy: the new one also takes the old one's
# runs, the old one takes only its own (and runs no build pinned yet).
OLD_BUILD, NEW_BUILD = "chaos-old", "chaos-new"
BUILDS = {OLD_BUILD: (), NEW_BUILD: (OLD_BUILD,)}  # build -> the other builds it accepts

MODES = ("normal", "hold", "late_cancel")
# normal:      runs to completion; never cancelled.
# hold:        after its work it waits for a signal that never comes: it ends by cancellation.
# late_cancel: like normal, and the harness cancels it at a random moment, possibly after it
#              completed: it ends cancelled, or completed with the expected result.

RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=2),
)
ACTIVITY_OPTIONS = {"retry": RETRY, "start_to_close_timeout": timedelta(seconds=10)}

EFFECTFUL_ACTIVITIES = ("step", "compensate")  # write chaos_effects, keyed by idempotency key
RECORDING_ACTIVITIES = ("step", "flaky", "compensate")  # write chaos_executions


@dataclass
class TimerObservation:
    """What the workflow saw of one durable sleep: its clock before and after."""

    seconds: float
    before: datetime
    after: datetime


@dataclass
class Outcome:
    value: int
    signals: list[int] = field(default_factory=list)
    timers: list[TimerObservation] = field(default_factory=list)
    signal_timeouts: int = 0  # wait_signal timeouts (depends on timing: reported, not checked)
    runs: int = 1


@dataclass
class Spec:
    index: int
    seed: int
    steps: int  # sequential activities per round
    fanout: int  # activities run at once (asyncio.gather) per round
    sleeps: list[float]  # durable timers per round, in seconds
    signals: int  # numbered signals the workflow waits for in its first round
    children: int  # child workflows per round (each signalled by the parent)
    rounds: int  # runs: rounds - 1 continue_as_new
    mode: str = "normal"
    round: int = 1
    carried: Outcome | None = None  # what earlier rounds produced

    @property
    def workflow_id(self) -> str:
        return f"chaos-{self.seed}-{self.index}"


# ---------------------------------------------------------------- expected values (pure)
def step_value(seed: int, round_: int, i: int) -> int:
    return (seed * 7919 + round_ * 1_000_003 + i * 104_729) % 10_007


def flaky_value(seed: int, round_: int) -> int:
    return (seed * 31 + round_ * 17) % 997


def mix_value(seed: int, round_: int) -> int:
    return (seed ^ (round_ * 2_654_435_761)) % 1_000


def square_input(seed: int, round_: int) -> int:
    return seed % 1_000 + round_


def child_value(seed: int, tag: int, go: int) -> int:
    return step_value(seed, 0, 1_000 + tag) + go


def child_tag(round_: int, k: int) -> int:
    return round_ * 10 + k


def round_value(spec: Spec, round_: int) -> int:
    value = sum(step_value(spec.seed, round_, i) for i in range(spec.steps))
    if spec.steps:
        value += flaky_value(spec.seed, round_)
    value += sum(step_value(spec.seed, round_, 100 + j) for j in range(spec.fanout))
    value += square_input(spec.seed, round_) ** 2
    value += mix_value(spec.seed, round_)
    value += sum(child_value(spec.seed, child_tag(round_, k), k) for k in range(spec.children))
    return value


def expected_value(spec: Spec) -> int:
    return sum(round_value(spec, r) for r in range(1, spec.rounds + 1))


def make_spec(rng: random.Random, seed: int, index: int, mode: str) -> Spec:
    """A random mix of activities, timers, signals and children for one workflow."""
    signals = rng.choice((0, 0, 1, 2, 3, 4)) if mode == "normal" else 0
    return Spec(
        index=index,
        seed=seed % 100_000 * 10_000 + index,
        steps=rng.randint(1, 4),
        fanout=rng.choice((0, 2, 3, 4)),
        sleeps=[round(rng.uniform(0.3, 3.0), 3) for _ in range(rng.randint(0, 2))],
        signals=signals,
        children=rng.choice((0, 0, 1, 2)),
        rounds=rng.choice((1, 1, 1, 2)),
        mode=mode,
    )


# ---------------------------------------------------------------- activities
_pool: asyncpg.Pool | None = None
_pool_lock = asyncio.Lock()


async def _database() -> asyncpg.Pool:
    """The worker's pool for the chaos tables (made on first use, again after a failure)."""
    global _pool
    async with _pool_lock:
        if _pool is None:
            cache = 100 if PREPARED_STATEMENTS else 0  # (behind a pooler)
            _pool = await asyncpg.create_pool(
                os.environ[DSN_ENV], min_size=0, max_size=4, statement_cache_size=cache
            )
        return _pool


async def _record_execution() -> None:
    info = durable.activity_context().info
    pool = await _database()
    await pool.execute(
        "INSERT INTO chaos_executions (idempotency_key, activity_name, attempt, pid)"
        " VALUES ($1, $2, $3, $4)",
        info.idempotency_key,
        info.activity_name,
        info.attempt,
        os.getpid(),
    )


async def _record_effect(value: int) -> None:
    info = durable.activity_context().info
    pool = await _database()
    await pool.execute(
        "INSERT INTO chaos_effects (idempotency_key, activity_name, value, attempt, pid)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idempotency_key) DO NOTHING",
        info.idempotency_key,
        info.activity_name,
        value,
        info.attempt,
        os.getpid(),
    )


# step() has no timeout, as most activities are written: a lost attempt of it is retried only
# because its worker died or gave it back, never because a deadline passed
@activity(retry=RETRY)
async def step(seed: int, round_: int, i: int) -> int:
    """Some work with one side effect, exactly once per call thanks to the idempotency key."""
    await _record_execution()
    await asyncio.sleep(random.uniform(0.02, 0.3))
    value = step_value(seed, round_, i)
    await _record_effect(value)
    return value


@activity(**ACTIVITY_OPTIONS)
async def flaky(seed: int, round_: int) -> int:
    """Fails its first FLAKY_FAILURES attempts: exercises retries."""
    await _record_execution()
    attempt = durable.activity_context().info.attempt
    if attempt <= FLAKY_FAILURES:
        raise ApplicationError(f"planned failure of attempt {attempt}", type="Planned")
    return flaky_value(seed, round_)


@activity(**ACTIVITY_OPTIONS)
async def compensate(seed: int) -> int:
    """Cleanup run by a cancelled workflow."""
    await _record_execution()
    await _record_effect(-(seed % 1_000_000))
    return -(seed % 1_000_000)


@activity(**ACTIVITY_OPTIONS)
def square(x: int) -> int:
    """A sync activity (thread pool), no side effect."""
    return x * x


@activity(**ACTIVITY_OPTIONS)
async def mix(seed: int, round_: int) -> int:
    """Run as a local activity."""
    return mix_value(seed, round_)


# ---------------------------------------------------------------- workflows
@workflow
async def chaos_child(ctx: WorkflowContext, seed: int, tag: int) -> int:
    go = await ctx.wait_signal("go")  # sent by the parent (CHILD_SIGNALED)
    base = await ctx.activity(step, seed, 0, 1_000 + tag)
    await ctx.sleep(0.2 + (tag % 10) * 0.2)
    return int(base + go)


@workflow
async def chaos_workflow(ctx: WorkflowContext, spec: Spec) -> Outcome:
    try:
        outcome = await _round(ctx, spec)
    except asyncio.CancelledError:
        await ctx.activity(compensate, spec.seed)
        raise
    if spec.round < spec.rounds:
        ctx.continue_as_new(replace(spec, round=spec.round + 1, carried=outcome))
    return outcome


async def _round(ctx: WorkflowContext, spec: Spec) -> Outcome:
    r = spec.round
    carried = spec.carried or Outcome(0, runs=0)
    value = 0
    for i in range(spec.steps):
        value += await ctx.activity(step, spec.seed, r, i)
        if i == 0:
            value += await ctx.activity(flaky, spec.seed, r)
    parts = await asyncio.gather(
        *(ctx.activity(step, spec.seed, r, 100 + j) for j in range(spec.fanout))
    )
    value += sum(parts)
    value += await ctx.local_activity(mix, spec.seed, r)
    # by name, with no task queue: routed (durable/_worker/routing.py) to this worker's queue
    value += int(await ctx.activity("square", square_input(spec.seed, r)))
    timers = []
    for seconds in spec.sleeps:
        before = ctx.now()
        await ctx.sleep(seconds)
        timers.append(TimerObservation(seconds, before, ctx.now()))
    signals: list[int] = []
    timeouts = 0
    while r == 1 and len(signals) < spec.signals:
        try:
            signals.append(await ctx.wait_signal(SIGNAL_NAME, timeout=SIGNAL_TIMEOUT))
        except TimeoutError:
            timeouts += 1
    children = [
        ctx.start_child(chaos_child, spec.seed, child_tag(r, k)) for k in range(spec.children)
    ]
    for k, child in enumerate(children):
        await child.signal("go", k)
    # return_exceptions: when cancelled, gather waits until every child closed (without it,
    # gather raises as soon as the first child ends cancelled, the workflow closes, and the
    # children still closing are terminated with it)
    for result in await asyncio.gather(*children, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result
        value += result
    if spec.mode == "hold" and r == spec.rounds:
        await ctx.wait_signal("release")  # never sent: the harness cancels this workflow
    return Outcome(
        value=carried.value + value,
        signals=carried.signals + signals,
        timers=carried.timers + timers,
        signal_timeouts=carried.signal_timeouts + timeouts,
        runs=carried.runs + 1,
    )


RESET_SIGNALS = 4  # the numbered signals a resettable workflow waits for


@workflow
async def chaos_resettable(ctx: WorkflowContext, seed: int) -> list[int]:
    """Reset once by the harness while it runs (to a random point of its history): returns
    the numbered signals it received, which must be each one sent, once, in order."""
    received: list[int] = []
    ctx.on_signal(SIGNAL_NAME, received.append)
    for i in range(2):
        await ctx.activity(step, seed, 0, 200 + i)
        await ctx.sleep(0.3)
    await ctx.wait_until(lambda: len(received) >= RESET_SIGNALS)
    await ctx.activity(step, seed, 0, 300)
    return received


@workflow
async def chaos_decoy(ctx: WorkflowContext) -> None:
    """Waits for a signal that never comes, until its execution timeout closes it (timed_out):
    the only runs the harness's purge may delete."""
    await ctx.wait_signal("never")


@workflow
async def chaos_scheduled(ctx: WorkflowContext) -> int:
    """Started by the run's schedules (tests/chaos/schedules.py): an effect, then 0.3-1.4 s
    of durable sleep, so that slots one or two seconds apart overlap now and then."""
    seed = zlib.crc32(ctx.info.workflow_id.encode())
    value = await ctx.activity(step, seed, 0, 900)
    await ctx.sleep(0.3 + (seed % 12) * 0.1)
    return value


def debounced_value(value: int) -> int:
    return value * value + 1


@workflow
async def chaos_debounced(ctx: WorkflowContext, value: int) -> int:
    """Started by bursts of debounced starts (tests/chaos/debounced.py): its result is made
    of its argument, so that a run that ran with other arguments than its history records
    shows."""
    return await ctx.activity(square, value) + 1


WORKFLOWS = [
    chaos_workflow,
    chaos_child,
    chaos_resettable,
    chaos_decoy,
    chaos_scheduled,
    chaos_debounced,
]
ACTIVITIES = [step, flaky, compensate, square, mix]

TABLES_SQL = """
CREATE TABLE IF NOT EXISTS chaos_executions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key text NOT NULL,
    activity_name text NOT NULL,
    attempt int NOT NULL,
    pid int NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS chaos_effects (
    idempotency_key text PRIMARY KEY,
    activity_name text NOT NULL,
    value bigint NOT NULL,
    attempt int NOT NULL,
    pid int NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp());
"""


# ---------------------------------------------------------------- the worker process
def is_transient(exc: BaseException) -> bool:
    """A failure worth retrying: the database went away or is starting up."""
    if isinstance(exc, OSError | TimeoutError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return (getattr(exc, "sqlstate", None) or "")[:2] in ("08", "57", "53")
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.exceptions.InternalClientError):
        return "closed" in str(exc) or "connection" in str(exc) or "in progress" in str(exc)
    if isinstance(exc, durable.DurableError) and exc.__cause__ is not None:
        return is_transient(exc.__cause__)
    return False


async def _connect(dsn: str, attempts: int = 120) -> durable.Client:
    """Connect, waiting for the database if it is restarting (bounded)."""
    for attempt in range(attempts):
        try:
            return await durable.Client.connect(dsn, prepared_statements=PREPARED_STATEMENTS)
        except durable.DurableError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.25)
    raise AssertionError("unreachable")


async def _run_worker(client: durable.Client, attempts: int = 120) -> None:
    """Run a worker. Its start (registration) fails if the database restarts meanwhile; then
    start it again, as a process supervisor would, rather than exit (which counts as a crash)."""
    for attempt in range(attempts):
        worker = durable.Worker(
            client,
            task_queue=TASK_QUEUE,
            workflows=WORKFLOWS,
            activities=ACTIVITIES,
            max_concurrent_activities=50,
            lease_ttl=LEASE_TTL,
            poll_interval=POLL_INTERVAL,
            shutdown_grace=SHUTDOWN_GRACE,
            build_id=os.environ.get(BUILD_ENV),
            compatible_builds=BUILDS.get(os.environ.get(BUILD_ENV, ""), ()),
        )
        try:
            await worker.run()
            return
        except Exception as exc:
            if not is_transient(exc) or attempt == attempts - 1:
                raise
            logging.getLogger(__name__).warning("worker start failed (%r); starting again", exc)
            await asyncio.sleep(0.25)


def _dump_tasks() -> None:
    """SIGUSR1: where each asyncio task of the worker waits, to its log (what the harness
    asks of a worker that does not stop)."""
    lines = [f"pid={os.getpid()} asyncio tasks:"]
    for task in asyncio.all_tasks():
        lines.append(f"  {task.get_name()}:")
        awaited: object = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is None:
                lines.append(f"    awaits {awaited!r}")
                break
            lines.append(f"    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    print("\n".join(lines), file=sys.stderr, flush=True)


async def serve(dsn: str) -> None:
    os.environ[DSN_ENV] = dsn
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _dump_tasks)
    client = await _connect(dsn)
    try:
        await _run_worker(client)
    finally:
        await client.close()


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.WARNING,
        format=f"%(asctime)s pid={os.getpid()} %(levelname)s %(name)s: %(message)s",
    )
    if os.environ.get(SPANS_ENV):  # traced as an application would (see checks.check_traces)
        trace_to_file(Path(os.environ[SPANS_ENV]))
    try:
        asyncio.run(serve(argv[1]))
    except Exception:
        logging.exception("chaos worker failed")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
