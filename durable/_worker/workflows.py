"""Workflow tasks: claim due runs, step them (from the sticky cache, or replayed), hand
them the outcomes produced in this process, and commit what each step caused."""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .._definitions import WorkflowDefinition
from .._events import Event, EventType
from .._replayer import WorkflowInstance
from .._store import (
    ActivityTask,
    InboxMessage,
    TaskCommit,
    WorkflowTask,
)
from .activities import ActivityTasks
from .failures import TaskFailures
from .handed import HandedOver
from .held import BusyRuns, CachedRun, Parking
from .local_activities import LocalActivities
from .polling import Serving, Wakeup, poll
from .routing import Routes
from .telemetry import StepSpans
from .watchdog import SlowStepWatch

E = EventType
_log = logging.getLogger("durable.worker")


@dataclass
class _InFlight:
    """A workflow task as it goes on: the claim it runs under (a claim of its run while it
    is parked joins it) and the handed outcomes its step took but has not committed yet."""

    task: WorkflowTask
    handed: list[HandedOver] = field(default_factory=list)
    run: CachedRun | None = None  # the instance it steps (let go as it ends, if dropped)


class WorkflowTasks:
    """The workflow tasks one worker runs, within its ``max_concurrent_workflow_tasks``."""

    def __init__(
        self,
        serving: Serving,
        definitions: dict[str, WorkflowDefinition[Any, Any]],
        max_concurrent: int,
        max_cached: int,
        activities: ActivityTasks,
    ) -> None:
        self.serving = serving
        self.telemetry = serving.telemetry
        self.definitions = definitions
        self.max_concurrent = max_concurrent
        self.max_cached = max_cached
        self.activities = activities
        self.locals = LocalActivities(
            serving.task_queue, activities.executor, self.hand_over, serving.telemetry
        )
        self.cache: collections.OrderedDict[str, CachedRun] = collections.OrderedDict()
        self.watch = SlowStepWatch()
        self.busy = BusyRuns()
        self.routes = Routes(serving.store, serving.task_queue)
        self.parking = Parking(self.busy)
        self.wake = Wakeup()
        self._handed: dict[str, list[HandedOver]] = {}  # by run, for its next step
        self._waiting: dict[str, str] = {}  # idle runs with handed outcomes, no slot yet
        self._due_again: set[str] = set()  # busy runs that became due while busy
        self.failures = TaskFailures(serving, self.forget_run, self._due_again)
        self._running: set[asyncio.Task[None]] = set()
        self._reporting: set[asyncio.Task[None]] = set()  # outcomes of forgotten runs
        # slots of claimed runs whose tasks start once their timers are recorded
        self._slots_held = 0

    def free_slots(self) -> int:
        return self.max_concurrent - len(self._running) - self._slots_held

    def held_runs(self) -> list[str]:
        """Runs stepped here or with outcomes waiting to be handed to them."""
        return [*self.busy, *self._handed]

    def in_flight(self) -> list[asyncio.Task[Any]]:
        return [*self._running, *self._reporting, *self.locals.in_flight()]

    # ------------------------------------------------------------------ claiming
    async def serve(self) -> None:
        """Claim due runs while slots are free, until the worker stops."""
        serving, names = self.serving, list(self.definitions)
        self.watch.start()
        try:
            await poll(
                serving,
                self.wake,
                self.free_slots,
                self._claim,
                lambda: serving.store.next_ready_at(
                    serving.task_queue, serving.worker_id, names, list(self.busy), serving.builds
                ),
            )
        finally:
            self.watch.stop()

    async def _claim(self, limit: int) -> int:
        serving = self.serving
        tasks = await serving.store.claim_workflow_tasks(
            serving.task_queue,
            serving.worker_id,
            list(self.definitions),
            list(self.busy),
            limit,
            serving.builds,
        )
        runnable: list[WorkflowTask] = []
        for task in tasks:
            if self.parking.unpark(task.run_id, task):
                continue  # its parked task goes on with it
            if task.run_id in self.busy:
                # an outcome was handed to the run while we claimed it: the task running it
                # now cannot see this inbox; claim the run again after it
                self._due_again.add(task.run_id)
                continue
            if self.free_slots() <= 0:
                # outcomes handed to cached runs took the slots meanwhile; the run stays due
                # (a claim consumes nothing) and the next claim takes it
                continue
            self.busy.add(task.run_id)  # outcomes handed in from now on wait for it
            self._slots_held += 1
            runnable.append(task)
        try:
            runnable = await self._record_fired_timers(runnable)
        finally:
            self._slots_held -= len(runnable)
        for task in runnable:
            self._start(task)
        return len(tasks)

    async def _record_fired_timers(self, tasks: list[WorkflowTask]) -> list[WorkflowTask]:
        """Have the store record the claimed runs' due timers; as they were on failure."""
        serving = self.serving
        try:
            return await serving.store.record_fired_timers(
                serving.worker_id, tasks, serving.lease_ttl
            )
        except Exception as exc:  # the timers stay in the inbox and are delivered as messages
            _log.warning("recording fired timers failed: %r", exc)
            return tasks

    def _start(self, task: WorkflowTask, *, from_inbox: bool = True) -> None:
        runner = asyncio.create_task(self.run_task(task, from_inbox=from_inbox))
        self._running.add(runner)
        runner.add_done_callback(self._task_finished)

    def _task_finished(self, runner: asyncio.Task[None]) -> None:
        """Its slot is free now: a run waiting with handed outcomes takes it first, else the
        poller claims at once (it may have found every slot taken)."""
        self._running.discard(runner)
        self._start_waiting_runs()
        self.wake.capacity_freed()

    # ------------------------------------------------------------------ running a task
    async def run_task(self, task: WorkflowTask, *, from_inbox: bool = True) -> None:
        """Run steps of the run until nothing is left to deliver: each takes in what is new
        (its inbox, outcomes handed over by this process) and commits what it caused."""
        flight = _InFlight(task)
        try:
            await self._run_steps(flight, from_inbox)
        except asyncio.CancelledError:
            self.forget_run(task.run_id)
            raise
        except Exception as exc:
            kept = flight.run is not None and flight.run.kept
            await self.failures.failed(flight.task, exc, cached=kept)
        finally:
            await self._task_ended(flight)

    async def _run_steps(self, flight: _InFlight, from_inbox: bool) -> None:
        task = flight.task
        run = flight.run = await self._cached_run(task)
        claimed = from_inbox  # a claimed run is due: its commit must reset when it is due next
        while True:
            messages = await self._read_inbox(task, run) if from_inbox else []
            from_inbox = False
            flight.handed = await self._take_handed(task.run_id, run.instance)
            await self._step(task, run, messages, flight.handed, claimed)
            claimed, flight.handed = False, []
            if run.instance.closed:
                return
            self.locals.follow(task.run_id, run.instance)
            if self._handed.get(task.run_id):
                continue
            if not self.locals.runs_for(task.run_id):
                return
            woken = await self.parking.park(task.run_id)
            if isinstance(woken, WorkflowTask):  # claimed meanwhile: its inbox is next
                task = flight.task = woken
                from_inbox = claimed = True
                run = await self._cached_run(task)
                if run is not flight.run:
                    flight.run.instance.discard()  # replayed anew: the old one is done with
                    flight.run = run
            elif not self._handed.get(task.run_id) or task.run_id not in self.cache:
                return  # the outcomes take longer: they start a task of their own

    async def _read_inbox(self, task: WorkflowTask, run: CachedRun) -> list[InboxMessage]:
        """The claimed run's messages, past what its cached instance has seen."""
        if task.inbox_seq is not None:  # the claim read the inbox already
            run.inbox_seq = task.inbox_seq
            return list(task.messages)
        run.inbox_seq, messages = await self.serving.store.load_inbox(task.workflow_id, task.run_id)
        return messages

    async def _step(
        self,
        task: WorkflowTask,
        run: CachedRun,
        messages: list[InboxMessage],
        handed: list[HandedOver],
        claimed: bool,
    ) -> None:
        """Deliver what is new to the run and commit what the step caused, unless that
        may wait for the next step's commit."""
        incoming = [(m.type, m.attrs) for m in messages]
        incoming += [(h.etype, h.attrs) for h in handed]
        with self.telemetry.step(run.instance) as spans:
            recorded = task.fired if claimed else None  # a fired timer the claim recorded
            self.telemetry.timers_fired(run.instance, spans, incoming, recorded)
            self.watch.began(run.instance.info)
            try:
                taken = run.instance.run_step(incoming)
            finally:
                self.watch.ended()
            consumed = [m.id for m in messages[:taken]]
            finished = [h.activity for h in handed[: max(0, taken - len(messages))]]
            if consumed or finished or not self._may_defer(task, claimed, run.instance):
                await self._commit(task, run, consumed, finished, spans, required=claimed)

    async def _task_ended(self, flight: _InFlight) -> None:
        """Outcomes handed to the run too late for its last step wait for the next one (or
        go through the store if the run is no longer held); a run due again is claimed."""
        run_id = flight.task.run_id
        handed = flight.handed + self._handed.pop(run_id, [])
        self.busy.discard(run_id)
        if flight.run is not None and self.cache.get(run_id) is not flight.run:
            flight.run.instance.discard()  # dropped while it ran
        if handed and run_id in self.cache:
            self._handed[run_id] = handed
            self._waiting.setdefault(run_id, flight.task.workflow_id)
        else:
            await self._report_through_store(handed)
        if run_id in self._due_again:
            self._due_again.discard(run_id)
            self.wake.event.set()

    # ------------------------------------------------------------------ handing over
    def hand_over(self, workflow_id: str, run_id: str, item: HandedOver) -> bool:
        """Hand an outcome produced here to a run this worker holds: it reaches history with
        the run's next step, in one commit. False when the run is not held here."""
        run = self.cache.get(run_id)
        if run is None or (self.serving.stopping.is_set() and item.activity is not None):
            return False  # (a result goes through the inbox while the worker stops)
        if run_id in self.parking:
            self._handed.setdefault(run_id, []).append(item)
            self.parking.unpark(run_id, None)
            return True
        idle = run_id not in self.busy
        # an idle run waits for a free slot: its own worker is the only one that may claim it,
        # so going through the inbox would wait for the same slot, four round trips later
        self._handed.setdefault(run_id, []).append(item)
        if idle:
            self._waiting.setdefault(run_id, workflow_id)
            self._start_waiting_runs()
        return True

    def _start_waiting_runs(self) -> None:
        """Start a step for each idle run holding handed-over outcomes, while slots are free."""
        while self._waiting and self.free_slots() > 0:
            run_id, workflow_id = next(iter(self._waiting.items()))
            del self._waiting[run_id]
            run = self.cache.get(run_id)
            if run is None or run_id in self.busy or not self._handed.get(run_id):
                continue
            self.busy.add(run_id)
            task = WorkflowTask(
                workflow_id,
                run_id,
                run.instance.info.workflow_name,
                run.fence,
                run.instance.next_seq,
                resumed=True,
            )
            self._start(task, from_inbox=False)

    async def _take_handed(self, run_id: str, instance: WorkflowInstance) -> list[HandedOver]:
        """The outcomes handed to the run that its next step delivers. An activity result
        the instance does not await (a worker that stalled past its lease finished an
        attempt of a run it has since replayed, which another worker moved on) goes through
        the store, which applies it only if its attempt still holds the task."""
        taken: list[HandedOver] = []
        stray: list[HandedOver] = []
        for item in self._handed.pop(run_id, []):
            if item.activity is not None and not instance.awaits(item.activity.seq):
                stray.append(item)
            elif item.wanted:
                taken.append(item)
        await self._report_through_store(stray)
        return taken

    async def _report_through_store(self, handed: list[HandedOver]) -> None:
        """Activity results handed here but not committed (the task failed) go through the
        inbox; local activity outcomes are dropped: the run's next replay runs them again."""
        for item in handed:
            if item.activity is not None:
                await self.activities.complete(item.activity, item.attrs["result"])

    # ------------------------------------------------------------------ the cache
    def forget_run(self, run_id: str) -> None:
        """Drop a run from memory, with the local activities it runs here; the activity
        results handed to it while idle go through the store (a busy run's task does that
        as it ends)."""
        run = self.cache.pop(run_id, None)
        if run is not None and run_id not in self.busy:  # a busy one is let go as it ends
            run.instance.discard()
        self._waiting.pop(run_id, None)
        self.parking.unpark(run_id, None)
        self.locals.stop_all(run_id)
        if run_id not in self.busy and (handed := self._handed.pop(run_id, None)):
            reporting = asyncio.create_task(self._report_through_store(handed))
            self._reporting.add(reporting)
            reporting.add_done_callback(self._reporting.discard)

    def let_go_of_cache(self) -> None:
        """Drop every cached run's instance (the worker has stopped)."""
        while self.cache:
            self.cache.popitem(last=False)[1].instance.discard()

    def forget_all(self) -> None:
        for run_id in list(self.cache):
            self.forget_run(run_id)

    async def _cached_run(self, task: WorkflowTask) -> CachedRun:
        """The run's instance, with what the store recorded for it (a fired timer) added:
        from the cache when it is where the claim found the run, else replayed."""
        run = self.cache.get(task.run_id)
        if run is not None and run.fence == task.fence and run.instance.next_seq == task.next_seq:
            run.kept = True
            self.cache.move_to_end(task.run_id)
            if task.fired is not None:
                run.instance.record(task.fired)
            return run
        self.forget_run(task.run_id)
        history = None
        if task.started is not None and task.next_seq == 2 and task.fired is None:
            history = [task.started]  # its first step: the claim read its only event
        instance = await self.replayed(task.workflow_name, task.workflow_id, task.run_id, history)
        run = CachedRun(task.fence, instance)
        self.cache[task.run_id] = run
        while len(self.cache) > self.max_cached:
            self.forget_run(next(iter(self.cache)))
        return run

    async def replayed(
        self, workflow_name: str, workflow_id: str, run_id: str, history: list[Event] | None
    ) -> WorkflowInstance:
        """The run rebuilt from its history (loaded from the store unless given)."""
        if history is None:
            history = await self.serving.store.load_history(workflow_id, run_id)
        definition = self.definitions[workflow_name]
        return WorkflowInstance.replayed(
            definition, workflow_id, run_id, history, clock=self.serving.store.clock
        )

    # ------------------------------------------------------------------ committing
    async def _commit(
        self,
        task: WorkflowTask,
        run: CachedRun,
        consumed: list[int],
        finished: list[ActivityTask | None],
        spans: StepSpans,
        *,
        required: bool = False,
    ) -> None:
        instance, activities = run.instance, self.activities
        output = instance.take_output()
        if not (output.events or consumed or output.rejected_updates or required):
            return
        await self.routes.resolve(output.events)
        continues = bool(output.events) and output.events[-1].type is E.WORKFLOW_CONTINUED_AS_NEW
        scheduled = sum(1 for e in output.events if e.type is E.ACTIVITY_SCHEDULED)
        eager_slots = max(0, min(scheduled, activities.free_slots()))
        commit = TaskCommit(
            events=output.events,
            next_seq=output.next_seq,
            inbox_seq=run.inbox_seq,
            next_due=self._next_due(output.next_due, instance.runs_local_activities),
            consumed=consumed,
            finished_activities=[(t.seq, t.attempt) for t in finished if t is not None],
            rejected_updates=output.rejected_updates,
            eager_slots=eager_slots,
            eager_activities=activities.eager,
            started_children=output.started_children,
            has_parent=output.has_parent,
            traces=self.telemetry.traces_for(instance, output.events, spans),
            run_trace=self.telemetry.run_carrier(instance) if continues else None,
        )
        activities.slots_held += eager_slots
        try:
            eager, ready_at = await self.serving.store.commit_workflow_task(
                task, self.serving.worker_id, commit
            )
        finally:
            activities.slots_held -= eager_slots
        self.telemetry.committed(instance, output.events)
        self.failures.committed(task.run_id)
        if len(eager) < eager_slots:
            activities.wake.capacity_freed()  # the slots not used are free again
        if ready_at is not None and ready_at <= self.serving.store.clock.now():
            self._due_again.add(task.run_id)  # more arrived meanwhile: claim it when done
        else:
            self.wake.due(ready_at)
        for activity_task in eager:
            activities.start(activity_task)
        if instance.closed:
            self.forget_run(task.run_id)

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

    def _next_due(self, due: datetime | None, runs_local_activities: bool) -> datetime | None:
        """When the run must be looked at next. While its local activities run here, that is
        one lease from now: if this worker dies meanwhile, another one takes the run over."""
        if runs_local_activities:
            lease_end = self.serving.store.clock.now() + timedelta(seconds=self.serving.lease_ttl)
            due = min(due, lease_end) if due else lease_end
        return due
