"""The worker: claims workflow tasks, activity tasks and queries for one task queue.

Workflows it runs stay cached in memory under sticky ownership, so a new event costs
one step instead of a replay. Whatever it holds when it dies is taken over by another
worker once its lease (the ``workers`` row) expires.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import gc
import logging
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from ._activity import ActivityContext, ActivityInfo, run_activity_function
from ._client import Client
from ._context import WorkflowInfo
from ._definitions import (
    DEFAULT_TASK_QUEUE,
    ActivityDefinition,
    WorkflowDefinition,
    check_duration,
    check_name,
)
from ._errors import NondeterminismError, PayloadError
from ._events import EventType
from ._failures import Failure, activity_failure, may_retry, to_failure
from ._replayer import LocalActivityCall, WorkflowInstance
from ._serialization import decode_args, encode
from ._store import (
    REQUESTS_KEPT,
    ActivityTask,
    InboxMessage,
    LostOwnership,
    MissedMessages,
    QueryCall,
    Store,
    TaskCommit,
    WorkflowTask,
    wait_notified,
)

E = EventType
_log = logging.getLogger("durable.worker")
_QUERY_RECHECK = timedelta(milliseconds=20)  # queries waiting for their run's step
_PURGE_EVERY = 60.0  # seconds between purges of old client requests, per worker
_PARK_FOR = 0.5  # seconds a workflow task waits at least for its local activities, in its slot


class _Wakeup:
    """When a poller looks for work next: when notified, when capacity frees up after it
    found none, or when something it did not know of comes due before its planned wake-up."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.starved = False
        self.planned: datetime | None = None

    def capacity_freed(self) -> None:
        if self.starved:
            self.event.set()

    def due(self, when: datetime | None) -> None:
        if when is not None and (self.planned is None or when < self.planned):
            self.event.set()


# While a worker serves, the cyclic garbage collector runs a young collection every 10,000
# net allocations of tracked objects instead of the interpreter's 700. Every cached run holds
# a few dozen tracked objects that each full collection walks: with 10,000 runs cached and
# the default, a burst of their timers spent ~18 % of the worker's CPU in collections, each
# full one a ~100 ms pause. A threshold the process set higher already is kept.
_YOUNG_COLLECTION_EVERY = 10_000


class _CollectorSetting:
    """The young-collection threshold of the process while any worker in it serves."""

    def __init__(self) -> None:
        self.serving = 0
        self.saved = self.applied = gc.get_threshold()

    @contextlib.contextmanager
    def while_serving(self) -> Iterator[None]:
        if self.serving == 0:
            self.saved = gc.get_threshold()
            self.applied = (max(self.saved[0], _YOUNG_COLLECTION_EVERY), *self.saved[1:])
            gc.set_threshold(*self.applied)
        self.serving += 1
        try:
            yield
        finally:
            self.serving -= 1
            if self.serving == 0 and gc.get_threshold() == self.applied:
                gc.set_threshold(*self.saved)  # unless the process changed it meanwhile


_collector = _CollectorSetting()


@dataclass
class _CachedRun:
    """A workflow run this worker holds in memory (sticky), with what it last saw."""

    fence: int
    instance: WorkflowInstance
    inbox_seq: int = 0


class _HandedOver(NamedTuple):
    """An outcome produced in this process for a run it holds, delivered with its next step:
    an activity attempt's result (committed fenced by that attempt) or a local activity's."""

    etype: EventType
    attrs: dict[str, Any]
    activity: ActivityTask | None = None
    local: LocalActivityCall | None = None

    @property
    def wanted(self) -> bool:
        """A local activity's outcome is not recorded once the workflow cancelled its await."""
        return self.local is None or not self.local.future.done()


class _BusyRuns:
    """The runs with a workflow task in flight here; a query waits until its run is idle,
    for its state is committed then."""

    def __init__(self) -> None:
        self._idle: dict[str, asyncio.Event | None] = {}

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._idle

    def __iter__(self) -> Iterator[str]:
        return iter(self._idle)

    def add(self, run_id: str) -> None:
        self._idle[run_id] = None

    def discard(self, run_id: str) -> None:
        event = self._idle.pop(run_id, None)
        if event is not None:
            event.set()

    async def wait_idle(self, run_id: str) -> None:
        while run_id in self._idle:
            event = self._idle[run_id]
            if event is None:
                event = self._idle[run_id] = asyncio.Event()
            await event.wait()


class Worker:
    """Runs workflows and activities of one task queue. Any number may serve the same queue.

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
        self.worker_id = str(uuid.uuid4())
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}"
        self._cache: collections.OrderedDict[str, _CachedRun] = collections.OrderedDict()
        self._handed: dict[str, list[_HandedOver]] = {}  # by run, for its next step
        self._waiting: dict[str, str] = {}  # idle runs with handed outcomes, no slot yet
        self._local_runs: dict[str, dict[int, _LocalActivityRun]] = {}  # by run, local id
        self._busy = _BusyRuns()
        self._parked: dict[str, asyncio.Future[WorkflowTask | None]] = {}  # see _park
        self._parked_since: collections.OrderedDict[float, list[str]] = collections.OrderedDict()
        self._due_again: set[str] = set()  # busy runs that became due while busy
        self._workflow_tasks: set[asyncio.Task[None]] = set()
        self._activity_tasks: dict[asyncio.Task[None], ActivityTask] = {}
        # activity slots held while a claim or a commit with eager activities is in flight,
        # so that activities started meanwhile cannot take them too
        self._activity_slots_held = 0
        # workflow task slots of claimed runs whose tasks start once their timers are recorded
        self._workflow_slots_held = 0
        self._wake_workflows = _Wakeup()
        self._wake_activities = _Wakeup()
        self._wake_queries = _Wakeup()
        self._stopping = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_concurrent_activities, thread_name_prefix="durable-activity"
        )
        self._running: asyncio.Task[None] | None = None
        self._eager = frozenset((self.task_queue, name) for name in self._activities)

    @property
    def _store(self) -> Store:
        return self.client.store

    def _free_workflow_slots(self) -> int:
        held = len(self._workflow_tasks) + self._workflow_slots_held
        return self.max_concurrent_workflow_tasks - held

    def _free_activity_slots(self) -> int:
        held = len(self._activity_tasks) + self._activity_slots_held
        return self.max_concurrent_activities - held

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Run until cancelled or SIGTERM/SIGINT, then hand back or finish what it holds."""
        removers = self._install_signal_handlers()
        try:
            await self._serve(registered=False)
        finally:
            for remove in removers:
                remove()

    async def __aenter__(self) -> Worker:
        await self._register()
        self._running = asyncio.create_task(
            self._serve(registered=True), name=f"durable-worker-{self.task_queue}"
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop taking work, finish what is in flight within ``shutdown_grace``, hand back
        the rest, and return once the worker stopped."""
        self._stopping.set()
        if self._running is not None:
            await self._running

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

    async def _register(self) -> None:
        """Announce this worker and what it serves, and listen for its task queue."""
        store, queue = self._store, self.task_queue
        await store.register_worker(
            self.worker_id, queue, self.identity, self.lease_ttl, list(self._workflows)
        )
        await store.listener.subscribe("w" + queue, self._wake_workflows.event)
        await store.listener.subscribe("a" + queue, self._wake_activities.event)
        await store.listener.subscribe("q" + queue, self._wake_queries.event)

    async def _serve(self, registered: bool = False) -> None:
        store, queue = self._store, self.task_queue
        if not registered:
            await self._register()
        loops = [
            asyncio.create_task(self._lease_loop(), name="durable-lease"),
        ]
        if self._workflows:
            loops.append(asyncio.create_task(self._workflow_loop(), name="durable-workflows"))
            loops.append(asyncio.create_task(self._query_loop(), name="durable-queries"))
        if self._activities:
            loops.append(asyncio.create_task(self._activity_loop(), name="durable-activities"))
        _log.info("worker %s serving task queue %r", self.identity, queue)
        with _collector.while_serving():
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
                await asyncio.gather(*loops, return_exceptions=True)
                await self._drain()
                for key, event in (
                    ("w", self._wake_workflows),
                    ("a", self._wake_activities),
                    ("q", self._wake_queries),
                ):
                    store.listener.unsubscribe(key + queue, event.event)
                with contextlib.suppress(Exception):
                    await store.unregister_worker(self.worker_id)
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._cache.clear()
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
                await asyncio.gather(*pending, return_exceptions=True)
                return
            await asyncio.wait(
                pending, timeout=deadline - loop.time(), return_when=asyncio.FIRST_COMPLETED
            )

    def _in_flight(self) -> list[asyncio.Task[Any]]:
        locals_ = [local.task for calls in self._local_runs.values() for local in calls.values()]
        return [*self._workflow_tasks, *self._activity_tasks, *locals_]

    async def _lease_loop(self) -> None:
        interval = self.lease_ttl / 3
        loop = asyncio.get_running_loop()
        next_purge = loop.time() + _PURGE_EVERY
        while True:
            await asyncio.sleep(min(interval, 1.0))
            self._unpark_the_slow()
            try:
                if not await self._store.renew_worker(self.worker_id, self.lease_ttl):
                    # our lease lapsed (we were stalled): whatever we cached may be someone else's
                    _log.warning("worker lease lapsed; dropping cached workflows")
                    self._cache.clear()
                    await self._store.register_worker(
                        self.worker_id,
                        self.task_queue,
                        self.identity,
                        self.lease_ttl,
                        list(self._workflows),
                    )
                if self._activities:
                    await self._store.reap_activities(self.task_queue)
                    await self._release_unstarted_activities()
                if loop.time() >= next_purge:
                    next_purge = loop.time() + _PURGE_EVERY
                    await self._store.purge_requests(REQUESTS_KEPT.total_seconds())
                await self._store.listener.reconnect_if_lost()
            except (TimeoutError, OSError) as exc:
                _log.warning("lease renewal failed: %s", exc)
            except Exception as exc:  # keep renewing through database hiccups
                _log.warning("lease renewal failed: %r", exc)

    async def _release_unstarted_activities(self) -> None:
        """Give back attempts claimed for this worker that it never started because the
        reply to the claim was lost: held by a live worker, nothing else would retry them."""
        released = await self._store.release_unstarted_activities(
            self.task_queue,
            self.worker_id,
            list(self._activity_tasks.values()),
            [*self._busy, *self._handed],
            older_than=self.lease_ttl,
        )
        for row in released:
            _log.warning(
                "activity %s (attempt %d) of %s was claimed for this worker but never started "
                "(the reply to the claim was lost); released for another attempt",
                row["activity_name"],
                row["attempt"],
                row["workflow_id"],
            )

    async def _poll(
        self,
        wake: _Wakeup,
        capacity: Callable[[], int],
        claim: Callable[[int], Awaitable[int]],
        next_due: Callable[[], Awaitable[datetime | None]],
    ) -> None:
        """Claim work whenever notified, due or at the fallback poll interval."""
        while not self._stopping.is_set():
            wake.event.clear()
            free = capacity()
            wake.starved = free <= 0
            if free > 0:
                try:
                    if await claim(free) >= free or wake.event.is_set():
                        continue  # a full claim (more may wait), or notified meanwhile
                    due = await next_due()
                except (TimeoutError, OSError, ConnectionError) as exc:
                    _log.warning("polling failed: %s", exc)
                    due = None
                except Exception as exc:
                    _log.warning("polling failed: %r", exc)
                    due = None
            else:
                due = None
            now = datetime.now(UTC)
            timeout = self.poll_interval
            if due is not None:
                timeout = min(timeout, max(0.0, (due - now).total_seconds()))
            wake.planned = now + timedelta(seconds=timeout)
            await wait_notified(wake.event, timeout)

    # ------------------------------------------------------------------ workflow tasks
    async def _workflow_loop(self) -> None:
        names = list(self._workflows)

        async def claim(limit: int) -> int:
            tasks = await self._store.claim_workflow_tasks(
                self.task_queue, self.worker_id, names, list(self._busy), limit
            )
            runnable: list[WorkflowTask] = []
            for task in tasks:
                if self._unpark(task.run_id, task):
                    continue  # its parked task goes on with it
                if task.run_id in self._busy:
                    # an outcome was handed to the run while we claimed it: the task running
                    # it now cannot see this inbox; claim the run again after it
                    self._due_again.add(task.run_id)
                    continue
                if self._free_workflow_slots() <= 0:
                    # outcomes handed to cached runs took the slots meanwhile; the run stays
                    # due (a claim consumes nothing) and the next claim takes it
                    continue
                self._busy.add(task.run_id)  # outcomes handed in from now on wait for it
                self._workflow_slots_held += 1
                runnable.append(task)
            try:
                runnable = await self._record_fired_timers(runnable)
            finally:
                self._workflow_slots_held -= len(runnable)
            for task in runnable:
                self._start_workflow_task(task)
            return len(tasks)

        await self._poll(
            self._wake_workflows,
            self._free_workflow_slots,
            claim,
            lambda: self._store.next_ready_at(
                self.task_queue, self.worker_id, names, list(self._busy)
            ),
        )

    async def _record_fired_timers(self, tasks: list[WorkflowTask]) -> list[WorkflowTask]:
        """Have the store record the claimed runs' due timers; as they were on failure."""
        try:
            return await self._store.record_fired_timers(self.worker_id, tasks, self.lease_ttl)
        except Exception as exc:  # the timers stay in the inbox and are delivered as messages
            _log.warning("recording fired timers failed: %r", exc)
            return tasks

    def _start_workflow_task(self, task: WorkflowTask, *, from_inbox: bool = True) -> None:
        runner = asyncio.create_task(self._run_workflow_task(task, from_inbox=from_inbox))
        self._workflow_tasks.add(runner)
        runner.add_done_callback(self._workflow_task_finished)

    def _workflow_task_finished(self, runner: asyncio.Task[None]) -> None:
        """Its slot is free now: a run waiting with handed outcomes takes it first, else the
        poller claims at once (it may have found every slot taken)."""
        self._workflow_tasks.discard(runner)
        self._start_waiting_runs()
        self._wake_workflows.capacity_freed()

    async def _run_workflow_task(self, task: WorkflowTask, *, from_inbox: bool = True) -> None:
        """Run steps of the run until nothing is left to deliver: each takes in what is new
        (its inbox, outcomes handed over by this process) and commits what it caused."""
        handed: list[_HandedOver] = []
        try:
            run = await self._cached_run(task)
            instance = run.instance
            claimed = from_inbox  # a claimed run is due: its commit must reset when it is due next
            while True:
                messages: list[InboxMessage] = []
                if from_inbox:
                    if task.inbox_seq is not None:  # the claim read the inbox already
                        run.inbox_seq, messages = task.inbox_seq, list(task.messages)
                    else:
                        run.inbox_seq, messages = await self._store.load_inbox(
                            task.workflow_id, task.run_id
                        )
                    from_inbox = False
                handed = [h for h in self._handed.pop(task.run_id, []) if h.wanted]
                incoming = [(m.type, m.attrs) for m in messages]
                incoming += [(h.etype, h.attrs) for h in handed]
                taken = instance.run_step(incoming)
                consumed = [m.id for m in messages[:taken]]
                finished = [h.activity for h in handed[: max(0, taken - len(messages))]]
                if consumed or finished or not self._may_defer(task, claimed, instance):
                    await self._commit(task, run, consumed, finished, required=claimed)
                claimed = False
                handed = []
                if instance.closed:
                    return
                self._start_local_activities(task.run_id, instance)
                if self._handed.get(task.run_id):
                    continue
                if not self._local_runs.get(task.run_id):
                    return
                woken = await self._park(task.run_id)
                if isinstance(woken, WorkflowTask):  # claimed meanwhile: its inbox is next
                    task, from_inbox, claimed = woken, True, True
                    run = await self._cached_run(task)
                    instance = run.instance
                elif not self._handed.get(task.run_id) or task.run_id not in self._cache:
                    return  # the outcomes take longer: they start a task of their own
        except NondeterminismError as exc:
            _log.error("%s", exc)
            await self._give_back(task, exc)
        except LostOwnership:
            _log.info("workflow %s was taken over by another worker", task.workflow_id)
            self._forget_run(task.run_id)
        except MissedMessages:
            # messages arrived while the step that closes the run ran: run it again, from
            # history, with them (nothing of it was written)
            self._forget_run(task.run_id)
            self._due_again.add(task.run_id)
        except asyncio.CancelledError:
            self._forget_run(task.run_id)
            raise
        except Exception as exc:
            _log.exception("workflow task of %s failed", task.workflow_id)
            await self._give_back(task, exc)
        finally:
            handed += self._handed.pop(task.run_id, [])
            self._busy.discard(task.run_id)
            if handed and task.run_id in self._cache:  # came too late for the last step
                self._handed[task.run_id] = handed
                self._waiting.setdefault(task.run_id, task.workflow_id)
            else:
                await self._report_through_store(handed)
            if task.run_id in self._due_again:
                self._due_again.discard(task.run_id)
                self._wake_workflows.event.set()

    async def _park(self, run_id: str) -> WorkflowTask | None:
        """Wait, still holding the run's slot, for the next outcome of the local activities
        it runs here (None), or for a claim of the run (its task): messages that reach the
        run meanwhile are claimed as usual, and delivered at once. After a while the slot
        goes back: a slow local activity's outcome then starts a task of its own."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WorkflowTask | None] = loop.create_future()
        self._parked[run_id] = future
        self._parked_since.setdefault(loop.time(), []).append(run_id)
        self._busy.discard(run_id)  # claimable, and its state (committed) readable by queries
        try:
            return await future
        finally:
            if self._parked.get(run_id) is future:
                del self._parked[run_id]
            if not future.done():  # cancelled (shutdown)
                self._busy.add(run_id)

    def _unpark_the_slow(self) -> None:
        """Give back the slots of tasks parked longer than _PARK_FOR (from the lease loop)."""
        now = asyncio.get_running_loop().time()
        while self._parked_since and next(iter(self._parked_since)) < now - _PARK_FOR:
            _, run_ids = self._parked_since.popitem(last=False)
            for run_id in run_ids:
                self._unpark(run_id, None)

    def _unpark(self, run_id: str, woken: WorkflowTask | None) -> bool:
        """Wake the task parked on the run (busy again from now); False if none is."""
        future = self._parked.pop(run_id, None)
        if future is None or future.done():
            return False
        self._busy.add(run_id)
        future.set_result(woken)
        return True

    def _hand_over(self, workflow_id: str, run_id: str, item: _HandedOver) -> bool:
        """Hand an outcome produced here to a run this worker holds: it reaches history with
        the run's next step, in one commit. False when the run is not held here."""
        run = self._cache.get(run_id)
        if run is None or (self._stopping.is_set() and item.activity is not None):
            return False  # (a result goes through the inbox while the worker stops)
        if run_id in self._parked:
            self._handed.setdefault(run_id, []).append(item)
            self._unpark(run_id, None)
            return True
        idle = run_id not in self._busy
        if idle and item.activity is not None and self._free_workflow_slots() <= 0:
            return False  # no workflow task slot free: the result goes through the inbox
        self._handed.setdefault(run_id, []).append(item)
        if idle:
            self._waiting.setdefault(run_id, workflow_id)
            self._start_waiting_runs()
        return True

    def _start_waiting_runs(self) -> None:
        """Start a step for each idle run holding handed-over outcomes, while slots are free."""
        while self._waiting and self._free_workflow_slots() > 0:
            run_id, workflow_id = next(iter(self._waiting.items()))
            del self._waiting[run_id]
            run = self._cache.get(run_id)
            if run is None or run_id in self._busy or not self._handed.get(run_id):
                continue
            self._busy.add(run_id)
            task = WorkflowTask(
                workflow_id,
                run_id,
                run.instance.info.workflow_name,
                run.fence,
                run.instance.next_seq,
                resumed=True,
            )
            self._start_workflow_task(task, from_inbox=False)

    async def _report_through_store(self, handed: list[_HandedOver]) -> None:
        """Activity results handed here but not committed (the task failed) go through the
        inbox; local activity outcomes are dropped: the run's next replay runs them again."""
        for item in handed:
            activity_task = item.activity
            if activity_task is None:
                continue
            await self._until_recorded(
                activity_task,
                functools.partial(
                    self._store.complete_activity,
                    activity_task,
                    self.worker_id,
                    item.attrs["result"],
                ),
            )

    async def _give_back(self, task: WorkflowTask, exc: BaseException) -> None:
        self._forget_run(task.run_id)
        with contextlib.suppress(Exception):
            await self._store.release_workflow(
                task, self.worker_id, f"{type(exc).__name__}: {exc}", retry_in=2.0
            )

    def _forget_run(self, run_id: str) -> None:
        """Drop a run from memory, with the local activities it runs here."""
        self._cache.pop(run_id, None)
        self._waiting.pop(run_id, None)
        self._unpark(run_id, None)
        for local in self._local_runs.pop(run_id, {}).values():
            local.stop()

    async def _cached_run(self, task: WorkflowTask) -> _CachedRun:
        """The run's instance, with what the store recorded for it (a fired timer) added:
        from the cache when it is where the claim found the run, else replayed."""
        run = self._cache.get(task.run_id)
        if run is not None and run.fence == task.fence and run.instance.next_seq == task.next_seq:
            self._cache.move_to_end(task.run_id)
            if task.fired is not None:
                run.instance.record(task.fired)
            return run
        self._forget_run(task.run_id)
        if task.started is not None and task.next_seq == 2 and task.fired is None:
            history = [task.started]
        else:
            history = await self._store.load_history(task.workflow_id, task.run_id)
        instance = WorkflowInstance(
            self._workflows[task.workflow_name], task.workflow_id, task.run_id, history
        )
        instance.replay()
        run = _CachedRun(task.fence, instance)
        self._cache[task.run_id] = run
        while len(self._cache) > self.max_cached_workflows:
            self._forget_run(next(iter(self._cache)))
        return run

    async def _commit(
        self,
        task: WorkflowTask,
        run: _CachedRun,
        consumed: list[int],
        finished: list[ActivityTask | None],
        *,
        required: bool = False,
    ) -> None:
        instance = run.instance
        events, rejected = instance.take_new_events()
        if not (events or consumed or rejected or required):
            return
        scheduled = sum(1 for e in events if e.type is E.ACTIVITY_SCHEDULED)
        eager_slots = max(0, min(scheduled, self._free_activity_slots()))
        commit = TaskCommit(
            events=events,
            next_seq=instance.next_seq,
            inbox_seq=run.inbox_seq,
            next_due=self._next_due(instance),
            consumed=consumed,
            finished_activities=[(t.seq, t.attempt) for t in finished if t is not None],
            rejected_updates=rejected,
            eager_slots=eager_slots,
            eager_activities=self._eager,
            started_children=instance.started_children,
            has_parent=instance.info.parent_workflow_id is not None,
        )
        self._activity_slots_held += eager_slots
        try:
            eager, ready_at = await self._store.commit_workflow_task(task, self.worker_id, commit)
        finally:
            self._activity_slots_held -= eager_slots
        if len(eager) < eager_slots:
            self._wake_activities.capacity_freed()  # the slots not used are free again
        if ready_at is not None and ready_at <= datetime.now(UTC):
            self._due_again.add(task.run_id)  # more arrived meanwhile: claim it when done
        else:
            self._wake_workflows.due(ready_at)
        for activity_task in eager:
            self._start_activity(activity_task)
        if instance.closed:
            self._forget_run(task.run_id)

    @staticmethod
    def _may_defer(task: WorkflowTask, claimed: bool, instance: WorkflowInstance) -> bool:
        """Whether a step's commit can wait for the next step's: it only started local
        activities (whose outcomes make the next step), it recorded nothing but its end, and
        the run is not left due (unclaimed, or its due timer was recorded at the claim, which
        made it due again a lease later). A timer followed by local work commits once; should
        this worker die meanwhile, the step is run again from its recorded timer."""
        return (
            instance.runs_local_activities
            and instance.only_step_end_pending()
            and (not claimed or task.fired is not None)
        )

    def _next_due(self, instance: WorkflowInstance) -> datetime | None:
        """When the run must be looked at next. While its local activities run here, that is
        one lease from now: if this worker dies meanwhile, another one takes the run over."""
        due = instance.next_due()
        if instance.runs_local_activities:
            lease_end = datetime.now(UTC) + timedelta(seconds=self.lease_ttl)
            due = min(due, lease_end) if due else lease_end
        return due

    # ------------------------------------------------------------------ local activities
    def _start_local_activities(self, run_id: str, instance: WorkflowInstance) -> None:
        """Stop the local activities whose await the step cancelled, start those it called.
        They run beside the run's steps: its timers, signals and cancellation reach it
        meanwhile, and each outcome is handed to the run as it comes."""
        for call in instance.cancelled_local_activities():
            local = self._local_runs.get(run_id, {}).pop(call.local_id, None)
            if local is not None:
                local.stop()
        for call in instance.unstarted_local_activities():
            local = _LocalActivityRun(instance.info, call, self.task_queue, self._executor)
            self._local_runs.setdefault(run_id, {})[call.local_id] = local
            local.task.add_done_callback(functools.partial(self._local_finished, local))

    def _local_finished(self, local: _LocalActivityRun, runner: asyncio.Task[Any]) -> None:
        info, call = local.info, local.call
        running = self._local_runs.get(info.run_id, {})
        if running.get(call.local_id) is local:
            del running[call.local_id]
            if not running:
                del self._local_runs[info.run_id]
        if runner.cancelled() or call.future.done():
            return  # stopped: the workflow does not wait for it any more
        outcome = runner.result()
        etype = E.LOCAL_ACTIVITY_FAILED if "failure" in outcome else E.LOCAL_ACTIVITY_COMPLETED
        attrs = {"local_id": call.local_id, "name": call.definition.name, **outcome}
        self._hand_over(info.workflow_id, info.run_id, _HandedOver(etype, attrs, local=call))

    # ------------------------------------------------------------------ activity tasks
    async def _activity_loop(self) -> None:
        names = list(self._activities)

        async def claim(limit: int) -> int:
            self._activity_slots_held += limit
            try:
                tasks = await self._store.claim_activity_tasks(
                    self.task_queue, self.worker_id, names, limit
                )
            finally:
                self._activity_slots_held -= limit
            for task in tasks:
                self._start_activity(task)
            return len(tasks)

        await self._poll(
            self._wake_activities,
            self._free_activity_slots,
            claim,
            lambda: self._store.next_activity_visible_at(self.task_queue, names),
        )

    def _start_activity(self, task: ActivityTask) -> None:
        runner = asyncio.create_task(self._execute_activity(task))
        self._activity_tasks[runner] = task
        runner.add_done_callback(lambda t: self._activity_finished(t))

    def _activity_finished(self, runner: asyncio.Task[None]) -> None:
        self._activity_tasks.pop(runner, None)
        self._wake_activities.capacity_freed()

    async def _execute_activity(self, task: ActivityTask) -> None:
        definition = self._activities[task.activity_name]
        info = ActivityInfo(
            workflow_id=task.workflow_id,
            run_id=task.run_id,
            activity_id=str(task.seq),
            activity_name=task.activity_name,
            attempt=task.attempt,
            idempotency_key=f"{task.workflow_id}/{task.run_id}/{task.seq}",
            deadline=task.deadline,
            task_queue=task.task_queue,
        )
        context = ActivityContext(info, task.heartbeat_details)
        watch = _ActivityWatch(self._store, self.worker_id, task, context, definition.is_async)
        try:
            outcome = await self._call_activity(definition, task, context)
        except asyncio.CancelledError:
            if watch.stopped_by is None:
                raise  # the worker is shutting down: the task is retried after its lease
        finally:
            watch.close()
        if watch.stopped_by is not None:  # what an attempt returns once stopped is discarded
            if watch.runner.cancelling():
                watch.runner.uncancel()
            outcome = {"failure": watch.stopped_by}
        if "result" in outcome:
            handed = _HandedOver(
                E.ACTIVITY_COMPLETED, {"scheduled": task.seq, "result": outcome["result"]}, task
            )
            if not self._hand_over(task.workflow_id, task.run_id, handed):
                await self._until_recorded(
                    task,
                    lambda: self._store.complete_activity(task, self.worker_id, outcome["result"]),
                )
        else:
            _, details = context._take_heartbeat()
            await self._until_recorded(
                task,
                lambda: self._store.fail_activity(
                    task, self.worker_id, outcome["failure"], details
                ),
            )

    async def _until_recorded(
        self, task: ActivityTask, record: Callable[[], Awaitable[Any]]
    ) -> None:
        """Write an activity's outcome, retrying while the database is away.

        Dropping it would leave the task held by this (live) worker with nothing to retry it.
        Retrying is safe: the writes are fenced by attempt and owner.
        """
        delay = 0.1
        while True:
            try:
                await record()
                return
            except Exception as exc:
                if self._stopping.is_set():  # our lease ends with us: the task is retried
                    _log.warning("outcome of activity %s not recorded: %r", task.activity_name, exc)
                    return
                _log.warning(
                    "recording the outcome of activity %s failed (%r); retrying in %.1f s",
                    task.activity_name,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _call_activity(
        self, definition: ActivityDefinition[Any, Any], task: ActivityTask, context: ActivityContext
    ) -> dict[str, Any]:
        try:
            args, kwargs = decode_args(task.args, definition.fn)
            result = await run_activity_function(definition, args, kwargs, context, self._executor)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return {"failure": to_failure(exc)}
        encoded = _encode_result(result)
        return {"result": encoded} if isinstance(encoded, bytes) else {"failure": encoded}

    # ------------------------------------------------------------------ queries
    async def _query_loop(self) -> None:
        names = list(self._workflows)
        waiting = False  # queries wait for their run's step: look again soon

        async def claim(limit: int) -> int:
            nonlocal waiting
            calls, waiting = await self._store.claim_queries(
                self.task_queue, self.worker_id, names, limit
            )
            for call in calls:
                await self._answer_query(call)
            return len(calls)

        async def soon_if_waiting() -> datetime | None:
            return datetime.now(UTC) + _QUERY_RECHECK if waiting else None

        await self._poll(self._wake_queries, lambda: 10, claim, soon_if_waiting)

    async def _answer_query(self, call: QueryCall) -> None:
        """Answer from the run's committed state: after the step in flight here, if any."""
        instance: WorkflowInstance | None = None
        try:
            await self._busy.wait_idle(call.run_id)
            cached = self._cache.get(call.run_id)
            if cached is not None:
                instance = cached.instance
            else:
                history = await self._store.load_history(call.workflow_id, call.run_id)
                instance = WorkflowInstance(
                    self._workflows[call.workflow_name], call.workflow_id, call.run_id, history
                )
                instance.replay()
                instance.prepare_for_query()
            result = instance.query(call.name, call.args)
        except Exception as exc:
            await self._store.answer_call(call.id, None, to_failure(exc))
        else:
            await self._store.answer_call(call.id, result, None)
        finally:
            if instance is not None and instance.tainted and call.run_id not in self._busy:
                self._forget_run(call.run_id)  # replayed from history at its next step


class _ActivityWatch:
    """Flushes an attempt's heartbeats, delivers its cancellation, and stops it at its
    deadline, from a task started only if the attempt is still running at the first check
    (most attempts end before: they cost a timer handle, not a task).

    ``stopped_by`` is the failure the attempt was stopped with, if it was."""

    def __init__(
        self,
        store: Store,
        worker_id: str,
        task: ActivityTask,
        context: ActivityContext,
        is_async: bool,
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.task = task
        self.context = context
        self.is_async = is_async  # a cancelled sync attempt runs on: it must check itself
        runner = asyncio.current_task()
        assert runner is not None
        self.runner = runner  # runs the attempt: cancelled to stop it
        self.stopped_by: Failure | None = None
        self.interval = min(task.heartbeat_timeout / 2, 2.0) if task.heartbeat_timeout else 2.0
        self._next_check = asyncio.get_running_loop().call_later(self._wait(), self._start)
        self._watching: asyncio.Task[None] | None = None

    def close(self) -> None:
        """The attempt ended: nothing may stop it any more."""
        self._next_check.cancel()
        if self._watching is not None:
            self._watching.cancel()

    def _wait(self) -> float:
        wait = self.interval
        if self.task.deadline is not None:
            wait = min(wait, (self.task.deadline - datetime.now(UTC)).total_seconds())
        return max(wait, 0.0)

    def _start(self) -> None:
        self._watching = asyncio.create_task(self._watch())

    def _stop(self, failure: Failure) -> None:
        self.stopped_by = failure
        self.context._mark_cancelled()
        self.runner.cancel()

    async def _watch(self) -> None:
        task, context = self.task, self.context
        while True:
            if task.deadline is not None and task.deadline <= datetime.now(UTC):
                self._stop(
                    {
                        "kind": "timeout",
                        "type": "TimeoutError",
                        "non_retryable": False,
                        "message": f"activity {task.activity_name!r} timed out "
                        "(start_to_close, schedule_to_close or heartbeat timeout)",
                    }
                )
                return
            dirty, details = context._take_heartbeat()
            if dirty and await self._flush(details):
                context._mark_cancelled()
                if self.is_async:
                    self._stop(
                        {
                            "kind": "cancelled",
                            "type": "CancelledError",
                            "non_retryable": True,
                            "message": f"activity {task.activity_name!r} was cancelled",
                        }
                    )
                return
            await asyncio.sleep(self._wait())

    async def _flush(self, details: bytes | None) -> bool:
        """Record a heartbeat; whether the attempt is to be cancelled (or no longer ours)."""
        try:
            cancel = await self.store.heartbeat_activity(self.task, self.worker_id, details)
        except Exception as exc:
            _log.warning("heartbeat of %s failed: %r", self.task.activity_name, exc)
            return False
        return cancel is None or cancel


class _LocalActivityRun:
    """One local activity call running in this worker, attempt after attempt, until it has
    an outcome or its workflow stops it."""

    __slots__ = ("call", "context", "executor", "info", "stopped", "task", "task_queue")

    def __init__(
        self,
        info: WorkflowInfo,
        call: LocalActivityCall,
        task_queue: str,
        executor: concurrent.futures.Executor,
    ) -> None:
        self.info = info
        self.call = call
        self.task_queue = task_queue
        self.executor = executor
        self.context: ActivityContext | None = None
        self.stopped = False
        self.task: asyncio.Task[dict[str, Any]] = asyncio.create_task(self._run())

    def stop(self) -> None:
        """The workflow cancelled its await, or lets go of the run: the attempt sees
        ``is_cancelled()`` and, if async, CancelledError."""
        self.stopped = True
        if self.context is not None:
            self.context._mark_cancelled()
        self.task.cancel()

    async def _run(self) -> dict[str, Any]:
        call, definition = self.call, self.call.definition
        attempt = 0
        while True:
            attempt += 1
            outcome = await self._attempt(attempt)
            if isinstance(outcome, bytes):
                return {"result": outcome}
            if not may_retry(call.retry, attempt, outcome):
                return {"failure": activity_failure(definition.name, attempt, outcome)}
            await asyncio.sleep(call.retry.delay_before(attempt + 1))

    async def _attempt(self, attempt: int) -> bytes | Failure:
        """Run one attempt: its encoded result, or its failure. An attempt past its
        start_to_close_timeout fails as timed out, even if it returns late."""
        call, info = self.call, self.info
        key = f"{info.workflow_id}/{info.run_id}/local-{call.local_id}"
        context = ActivityContext(
            ActivityInfo(
                workflow_id=info.workflow_id,
                run_id=info.run_id,
                activity_id=f"local-{call.local_id}",
                activity_name=call.definition.name,
                attempt=attempt,
                idempotency_key=key,
                deadline=None,
                task_queue=self.task_queue,
                is_local=True,
            ),
            None,
        )
        self.context = context
        if self.stopped:
            context._mark_cancelled()
        timeout = call.definition.options.start_to_close_timeout
        expired = False
        runner = asyncio.current_task()
        assert runner is not None

        def expire() -> None:
            nonlocal expired
            expired = True
            context._mark_cancelled()
            runner.cancel()

        watchdog = (
            asyncio.get_running_loop().call_later(timeout.total_seconds(), expire)
            if timeout
            else None
        )
        try:
            result = await run_activity_function(
                call.definition, list(call.args), dict(call.kwargs), context, self.executor
            )
            if not expired:
                return _encode_result(result)
        except asyncio.CancelledError:
            if not expired:
                raise
        except Exception as exc:
            if not expired:
                return to_failure(exc)
        finally:
            if watchdog is not None:
                watchdog.cancel()
        runner.uncancel()
        return {
            "kind": "timeout",
            "type": "TimeoutError",
            "non_retryable": False,
            "message": f"local activity {call.definition.name!r} timed out after "
            f"{timeout.total_seconds() if timeout else 0:g} s (start_to_close_timeout)",
        }


def _encode_result(result: Any) -> bytes | Failure:
    """An activity's result encoded, or the failure of a result that cannot be (not retried:
    the same result would fail again)."""
    try:
        return encode(result)
    except PayloadError as exc:
        return {**to_failure(exc), "non_retryable": True}


def _index(arg: str, items: Iterable[Any], kind: type[Any]) -> dict[str, Any]:
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise TypeError(f"{arg} must be a list, got {items!r}")
    index: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, kind):
            decorator = "@durable.workflow" if kind is WorkflowDefinition else "@durable.activity"
            raise TypeError(f"{arg} must hold functions decorated with {decorator}, got {item!r}")
        if item.name in index and index[item.name].fn is not item.fn:
            raise ValueError(f"two {arg} are registered under the same name {item.name!r}")
        index[item.name] = item
    return index
