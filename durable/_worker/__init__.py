"""The worker: claims workflow tasks, activity tasks and queries for one task queue.

Workflows it runs stay cached in memory under sticky ownership, so a new event costs
one step instead of a replay. Whatever it holds when it dies is taken over by another
worker once its lease (the ``workers`` row) expires.

The parts: ``workflows`` (claim, cache, step, commit; ``held`` what it holds of runs,
``local_activities`` beside their steps, ``handed`` outcomes passed between them),
``activities`` (claim, run, watch, record), ``queries``, ``schedules`` (firing the queue's
schedules), and ``polling`` (how each part waits for work). This module wires them and
owns the lifecycle and the lease.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any

from .._client import Client
from .._definitions import (
    DEFAULT_TASK_QUEUE,
    ActivityDefinition,
    ActivityRef,
    WorkflowDefinition,
)
from .._serialization import positional_range
from .._store import REQUESTS_KEPT, UNWIND, Builds, NotificationKeys, Store, end_within
from .._validate import check_duration, check_name
from .activities import ActivityTasks
from .collector import collector
from .handed import HandedOver
from .polling import Serving, Wakeup
from .queries import Queries
from .schedules import ScheduleFiring
from .telemetry import WorkerTelemetry
from .workflows import WorkflowTasks

__all__ = ["Worker"]

_log = logging.getLogger("durable.worker")
_PURGE_EVERY = 60.0  # seconds between purges of old client requests, per worker


def _builds(build_id: str | None, compatible: Sequence[str]) -> Builds:
    """The worker's build and the builds whose runs it claims, checked."""
    if isinstance(compatible, str) or not isinstance(compatible, Sequence):
        raise ValueError(f"compatible_builds must be a list of build ids, got {compatible!r}")
    if build_id is None:
        if compatible:
            raise ValueError(
                f"compatible_builds={list(compatible)!r} needs build_id: a worker without a "
                "build claims only runs that no build pinned"
            )
        return Builds()
    check_name("build_id", build_id)
    for other in compatible:
        check_name("compatible_builds", other)
    return Builds(build_id, tuple(dict.fromkeys([build_id, *compatible])))


class Worker:
    """Runs workflows and activities of one task queue. Any number may serve the same queue.

    ``build_id`` pins each run this worker takes that is not pinned yet (those it starts,
    a run reset since, one an unversioned worker began) to that build:
    from then on only workers of that build, or listing it in ``compatible_builds``, claim
    it (and answer its queries), so a rolling deploy never hands a run to code that cannot
    replay it. A worker without ``build_id`` claims only runs no build pinned. ``retention``
    makes the worker purge, every minute, the runs closed longer ago than that.

    While it serves, the process's garbage collector runs a young collection every 10,000
    net allocations (``gc.set_threshold``) unless the process set a higher threshold; the
    process's own setting comes back when its last worker stops."""

    def __init__(
        self,
        client: Client,
        task_queue: str = DEFAULT_TASK_QUEUE,
        workflows: Sequence[WorkflowDefinition[Any, Any]] = (),
        activities: Sequence[ActivityDefinition[Any, Any]] = (),
        max_concurrent_activities: int = 100,
        max_concurrent_workflow_tasks: int = 100,
        *,
        max_cached_workflows: int = 10_000,
        lease_ttl: timedelta = timedelta(seconds=10),
        poll_interval: timedelta = timedelta(seconds=1),
        shutdown_grace: timedelta = timedelta(seconds=10),
        identity: str | None = None,
        retention: timedelta | None = None,
        build_id: str | None = None,
        compatible_builds: Sequence[str] = (),
    ) -> None:
        self.client = client
        self.task_queue = check_name("task_queue", task_queue)
        self._workflows = _index("workflows", workflows, WorkflowDefinition)
        self._activities = _index("activities", activities, ActivityDefinition)
        if not self._workflows and not self._activities:
            raise ValueError("a Worker needs at least one workflow or activity to run")
        for name, value in (
            ("max_concurrent_activities", max_concurrent_activities),
            ("max_concurrent_workflow_tasks", max_concurrent_workflow_tasks),
            ("max_cached_workflows", max_cached_workflows),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.max_concurrent_activities = max_concurrent_activities
        self.max_concurrent_workflow_tasks = max_concurrent_workflow_tasks
        self.max_cached_workflows = max_cached_workflows
        self.lease_ttl = check_duration("lease_ttl", lease_ttl).total_seconds()
        self.poll_interval = check_duration("poll_interval", poll_interval).total_seconds()
        self.shutdown_grace = check_duration(
            "shutdown_grace", shutdown_grace, allow_zero=True
        ).total_seconds()
        self.retention = None if retention is None else check_duration("retention", retention)
        self.worker_id = str(uuid.uuid4())
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}"
        self._stopping = asyncio.Event()
        self._running: asyncio.Task[None] | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_concurrent_activities, thread_name_prefix="durable-activity"
        )
        serving = Serving(
            client.store,
            self.worker_id,
            self.task_queue,
            self.lease_ttl,
            self.poll_interval,
            self._stopping,
            WorkerTelemetry(client.telemetry, self.task_queue, build_id, client.store.clock),
            _builds(build_id, compatible_builds),
        )
        self._activity_tasks = ActivityTasks(
            serving, self._activities, max_concurrent_activities, self._executor, self._hand_over
        )
        self._workflow_tasks = WorkflowTasks(
            serving,
            self._workflows,
            max_concurrent_workflow_tasks,
            max_cached_workflows,
            self._activity_tasks,
        )
        self._queries = Queries(self._workflow_tasks)
        self._schedules = ScheduleFiring(serving)
        self._lease_until = 0.0  # time.monotonic() at which the lease last renewed runs out
        self._backlog = (0, 0)  # due workflow tasks, activity tasks: read with the lease

    @property
    def healthy(self) -> bool:
        """Whether the worker serves and holds its lease (what /healthz answers)."""
        return not self._stopping.is_set() and time.monotonic() < self._lease_until

    def gauge_readings(self) -> list[tuple[str, int, dict[str, str]]]:
        """What this worker reports to the gauges of durable._telemetry.metrics."""
        queue = self.task_queue
        workflows, activities = self._backlog
        held = self.max_concurrent_workflow_tasks - self._workflow_tasks.free_slots()
        running = self.max_concurrent_activities - self._activity_tasks.free_slots()
        return [
            ("durable.task_queue.backlog", workflows, {"task_queue": queue, "kind": "workflow"}),
            ("durable.task_queue.backlog", activities, {"task_queue": queue, "kind": "activity"}),
            (
                "durable.worker.cached_workflows",
                len(self._workflow_tasks.cache),
                {"task_queue": queue},
            ),
            ("durable.worker.slots_used", held, {"task_queue": queue, "kind": "workflow"}),
            ("durable.worker.slots_used", running, {"task_queue": queue, "kind": "activity"}),
        ]

    @property
    def _store(self) -> Store:
        return self.client.store

    def _hand_over(self, workflow_id: str, run_id: str, item: HandedOver) -> bool:
        return self._workflow_tasks.hand_over(workflow_id, run_id, item)

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Run until cancelled or SIGTERM/SIGINT, then hand back or finish what it holds."""
        self._refuse_second_run()
        removers = self._install_signal_handlers()
        try:
            await self._serve(registered=False)
        finally:
            for remove in removers:
                remove()

    async def __aenter__(self) -> Worker:
        self._refuse_second_run()
        await self._register()
        self._running = asyncio.create_task(
            self._serve(registered=True), name=f"durable-worker-{self.task_queue}"
        )
        return self

    def _refuse_second_run(self) -> None:
        if self._stopping.is_set() or self._running is not None:
            raise RuntimeError(
                f"this Worker (task queue {self.task_queue!r}) has run already: a Worker runs "
                "once; create a new durable.Worker to serve again"
            )

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop taking work, finish what is in flight within ``shutdown_grace``, hand back
        the rest, and return once the worker stopped."""
        self._stopping.set()
        if self._running is not None:
            await self._running

    def _idle(self) -> bool:
        """Nothing runs here: no workflow step, local activity or activity, and no outcome
        waits to be handed to a run (a time-skipping test environment waits for this)."""
        workflows = self._workflow_tasks
        return not (workflows.in_flight() or workflows.held_runs() or self._activity_tasks.running)

    def _install_signal_handlers(self) -> list[Callable[[], object]]:
        loop = asyncio.get_running_loop()
        removers: list[Callable[[], object]] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._stopping.set)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            removers.append(functools.partial(loop.remove_signal_handler, sig))
        return removers

    def _wakeups(self) -> list[tuple[str, Wakeup]]:
        """The notification each part waits for, by key."""
        keys = NotificationKeys
        return [
            (keys.workflow_tasks(self.task_queue), self._workflow_tasks.wake),
            (keys.activity_tasks(self.task_queue), self._activity_tasks.wake),
            (keys.queries(self.task_queue), self._queries.wake),
            (keys.schedules(self.task_queue), self._schedules.wake),
        ]

    async def _register(self) -> None:
        """Announce this worker and what it serves, and listen for its task queue."""
        if self._workflows:
            await self._store.prepare_for_steps()
        await self._announce()
        self._lease_until = time.monotonic() + self.lease_ttl
        self.client.telemetry.metrics.report_from(self)
        for key, wake in self._wakeups():
            await self._store.listener.subscribe(key, wake.event)

    async def _serve(self, registered: bool = False) -> None:
        if not registered:
            await self._register()
        loops = [asyncio.create_task(self._lease_loop(), name="durable-lease")]
        if self.retention is not None:
            loops.append(asyncio.create_task(self._retention_loop(), name="durable-retention"))
        if self._workflows:
            loops.append(
                asyncio.create_task(self._workflow_tasks.serve(), name="durable-workflows")
            )
            loops.append(asyncio.create_task(self._queries.serve(), name="durable-queries"))
            loops.append(asyncio.create_task(self._schedules.serve(), name="durable-schedules"))
        if self._activities:
            loops.append(
                asyncio.create_task(self._activity_tasks.serve(), name="durable-activities")
            )
        _log.info("worker %s serving task queue %r", self.identity, self.task_queue)
        with collector.while_serving():
            try:
                stop = asyncio.create_task(self._stopping.wait())
                done, _ = await asyncio.wait([stop, *loops], return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not stop and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
            finally:
                self._stopping.set()
                for task in loops:
                    task.cancel()
                await end_within(loops, UNWIND)
                await self._drain()
                await self._stopped()

    async def _stopped(self) -> None:
        for key, wake in self._wakeups():
            self._store.listener.unsubscribe(key, wake.event)
        self.client.telemetry.metrics.stop_reporting(self)
        # (its lease lapses if it cannot: a database that does not answer does not hold it)
        await end_within(
            [asyncio.create_task(self._store.unregister_worker(self.worker_id))], UNWIND
        )
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._workflow_tasks.let_go_of_cache()
        _log.info("worker %s stopped", self.identity)

    async def _drain(self) -> None:
        """Let in-flight work (and the steps it hands outcomes to) finish within the grace
        period; hand back the rest."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_grace
        while pending := self._in_flight():
            if loop.time() >= deadline:
                for task in pending:
                    task.cancel()
                await end_within(pending, UNWIND)
                return
            await asyncio.wait(
                pending, timeout=deadline - loop.time(), return_when=asyncio.FIRST_COMPLETED
            )

    def _in_flight(self) -> list[asyncio.Task[Any]]:
        return [*self._workflow_tasks.in_flight(), *self._activity_tasks.running]

    # ------------------------------------------------------------------ the lease
    async def _lease_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_purge = loop.time() + _PURGE_EVERY
        while True:
            await asyncio.sleep(min(self.lease_ttl / 3, 1.0))
            self._workflow_tasks.parking.unpark_the_slow()
            try:
                await self._keep_lease()
                if self.client.telemetry.metrics.enabled:
                    self._backlog = await self._store.backlog(self.task_queue)
                if self._activities:
                    await self._store.reap_activities(self.task_queue)
                    await self._activity_tasks.release_unstarted(self._workflow_tasks.held_runs())
                if loop.time() >= next_purge:
                    next_purge = loop.time() + _PURGE_EVERY
                    await self._store.purge_requests(REQUESTS_KEPT.total_seconds())
                await self._store.listener.reconnect_if_lost()
            except (TimeoutError, OSError) as exc:
                _log.warning("lease renewal failed: %s", exc)
            except Exception as exc:  # keep renewing through database hiccups
                _log.warning("lease renewal failed: %r", exc)

    async def _retention_loop(self) -> None:
        """Purge the runs closed longer ago than ``retention``, now and every minute (each
        worker does; they skip the runs another one is deleting)."""
        assert self.retention is not None
        while True:
            try:
                purged = await self.client.purge(self.retention)
                if purged:
                    _log.info(
                        "purged %d runs closed before the retention of %s", purged, self.retention
                    )
            except Exception as exc:  # the database away: next time
                _log.warning("purging closed runs failed: %r", exc)
            await asyncio.sleep(_PURGE_EVERY)

    async def _keep_lease(self) -> None:
        renewed_at = time.monotonic()
        if not await self._store.renew_worker(self.worker_id, self.lease_ttl):
            # our lease lapsed (we were stalled): whatever we cached may be someone else's
            _log.warning("worker lease lapsed; dropping cached workflows")
            self._workflow_tasks.forget_all()
            await self._announce()
        self._lease_until = renewed_at + self.lease_ttl

    async def _announce(self) -> None:
        """Take a lease and record what this worker serves on its queue (where calls by
        name find it), with the arguments each workflow takes (what starts by name fit)."""
        await self._store.register_worker(
            self.worker_id,
            self.task_queue,
            self.identity,
            self.lease_ttl,
            list(self._workflows),
            {name: d.options._recorded() for name, d in self._activities.items()},
            arities={
                n: positional_range(d.fn, skip_first=True) for n, d in self._workflows.items()
            },
        )


def _index(arg: str, items: Iterable[Any], kind: type[Any]) -> dict[str, Any]:
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise TypeError(f"{arg} must be a list, got {items!r}")
    index: dict[str, Any] = {}
    for item in items:
        if isinstance(item, ActivityRef):
            raise TypeError(
                f"{arg} holds {item!r}, a reference to an activity another service's workers "
                "serve: a worker runs only the @durable.activity functions it is given; take "
                "the reference out (workflows call it with ctx.activity)"
            )
        if not isinstance(item, kind):
            decorator = "@durable.workflow" if kind is WorkflowDefinition else "@durable.activity"
            raise TypeError(f"{arg} must hold functions decorated with {decorator}, got {item!r}")
        if item.name in index and index[item.name].fn is not item.fn:
            raise ValueError(f"two {arg} are registered under the same name {item.name!r}")
        index[item.name] = item
    return index
