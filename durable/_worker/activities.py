"""Activity tasks: claim attempts, run them, watch their heartbeats and deadlines, and
record their outcomes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace import Span

from .._activity import ActivityContext, ActivityInfo, encode_result, run_activity_function
from .._definitions import ActivityDefinition
from .._events import EventType
from .._failures import Failure, failure, to_failure
from .._serialization import decode_args
from .._store import ActivityTask, Store
from .._telemetry import failed
from .handed import HandedOver, HandOver
from .polling import Serving, Wakeup, poll

_log = logging.getLogger("durable.worker")
T = TypeVar("T")


class ActivityTasks:
    """The activity attempts one worker runs, within its ``max_concurrent_activities``."""

    def __init__(
        self,
        serving: Serving,
        definitions: dict[str, ActivityDefinition[Any, Any]],
        max_concurrent: int,
        executor: concurrent.futures.Executor,
        hand_over: HandOver,
    ) -> None:
        self.serving = serving
        self.definitions = definitions
        self.max_concurrent = max_concurrent
        self.executor = executor
        self.hand_over = hand_over
        self.running: dict[asyncio.Task[None], ActivityTask] = {}
        # slots held while a claim or a commit with eager activities is in flight, so that
        # activities started meanwhile cannot take them too
        self.slots_held = 0
        self.wake = Wakeup()
        # the activities a workflow task may start at once, in its commit (eager)
        self.eager = frozenset((serving.task_queue, name) for name in definitions)

    def free_slots(self) -> int:
        return self.max_concurrent - len(self.running) - self.slots_held

    async def serve(self) -> None:
        """Claim attempts while slots are free, until the worker stops."""
        names = list(self.definitions)
        store, serving = self.serving.store, self.serving

        held_back_until: datetime | None = None  # by the queue's limits

        async def claim(limit: int) -> int:
            nonlocal held_back_until
            self.slots_held += limit
            try:
                claimed = await store.claim_activity_tasks(
                    serving.task_queue, serving.worker_id, names, limit
                )
            finally:
                self.slots_held -= limit
            held_back_until = claimed.held_back_until
            for task in claimed.tasks:
                self.start(task)
            return len(claimed.tasks)

        async def next_due() -> datetime | None:
            if held_back_until is not None:
                return held_back_until
            return await store.next_activity_visible_at(serving.task_queue, names)

        await poll(serving, self.wake, self.free_slots, claim, next_due)

    def start(self, task: ActivityTask) -> None:
        runner = asyncio.create_task(self._execute(task))
        self.running[runner] = task
        runner.add_done_callback(self._finished)

    def _finished(self, runner: asyncio.Task[None]) -> None:
        self.running.pop(runner, None)
        self.wake.capacity_freed()

    async def release_unstarted(self, runs_held: list[str]) -> None:
        """Give back attempts claimed for this worker that it never started because the
        reply to the claim was lost: held by a live worker, nothing else would retry them.
        (An attempt of a run held here may be waiting to be handed over: it is kept.)"""
        serving = self.serving
        released = await serving.store.release_unstarted_activities(
            serving.task_queue,
            serving.worker_id,
            list(self.running.values()),
            runs_held,
            older_than=serving.lease_ttl,
        )
        for row in released:
            _log.warning(
                "activity %s (attempt %d) of %s was claimed for this worker but never started "
                "(the reply to the claim was lost); released for another attempt",
                row.activity_name,
                row.attempt,
                row.workflow_id,
            )

    async def complete(self, task: ActivityTask, result: bytes) -> None:
        """Record an attempt's result through the run's inbox."""
        store, worker_id = self.serving.store, self.serving.worker_id
        await self._until_recorded(task, lambda: store.complete_activity(task, worker_id, result))

    async def _execute(self, task: ActivityTask) -> None:
        context = ActivityContext(_info(task), task.heartbeat_details)
        definition = self.definitions[task.activity_name]
        watch = _ActivityWatch(self.serving, task, context, definition.is_async)
        telemetry = self.serving.telemetry
        with telemetry.attempt(
            context.info, task.workflow_name, task.trace, task.visible_at, task.args
        ) as span:
            try:
                outcome = await self._call(definition, task, context)
            except asyncio.CancelledError:
                if watch.stopped_by is None:
                    raise  # the worker is shutting down: the task is retried after its lease
            finally:
                watch.close()
            if watch.stopped_by is not None:  # what an attempt returns once stopped is discarded
                if watch.runner.cancelling():
                    watch.runner.uncancel()
                outcome = {"failure": watch.stopped_by}
            await self._record(task, context, outcome, span)

    async def _record(
        self,
        task: ActivityTask,
        context: ActivityContext,
        outcome: dict[str, Any],
        span: Span | None,
    ) -> None:
        """Hand the attempt's result to its run (or record it), or record its failure."""
        if "result" in outcome:
            if span is not None:
                span.set_attribute("durable.result_bytes", len(outcome["result"]))
            attrs = {"scheduled": task.seq, "result": outcome["result"]}
            handed = HandedOver(EventType.ACTIVITY_COMPLETED, attrs, task)
            if not self.hand_over(task.workflow_id, task.run_id, handed):
                await self.complete(task, outcome["result"])
        else:
            _, details = context._take_heartbeat()
            store, worker_id = self.serving.store, self.serving.worker_id
            retry_at = await self._until_recorded(
                task,
                lambda: store.fail_activity(task, worker_id, outcome["failure"], details),
            )
            message = outcome["failure"].get("message", "")
            self.serving.telemetry.attempt_failed(context.info, span, message, retry_at)
            self.wake.due(retry_at)  # the next attempt is claimed when due, not at a poll

    async def _until_recorded(
        self, task: ActivityTask, record: Callable[[], Awaitable[T]]
    ) -> T | None:
        """Write an activity's outcome, retrying while the database is away.

        Dropping it would leave the task held by this (live) worker with nothing to retry it.
        Retrying is safe: the writes are fenced by attempt and owner.
        """
        delay = 0.1
        while True:
            try:
                return await record()
            except Exception as exc:
                if self.serving.stopping.is_set():  # our lease ends with us: it is retried
                    _log.warning("outcome of activity %s not recorded: %r", task.activity_name, exc)
                    return None
                _log.warning(
                    "recording the outcome of activity %s failed (%r); retrying in %.1f s",
                    task.activity_name,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _call(
        self, definition: ActivityDefinition[Any, Any], task: ActivityTask, context: ActivityContext
    ) -> dict[str, Any]:
        try:
            args, kwargs = decode_args(task.args, definition.fn)
            result = await run_activity_function(definition, args, kwargs, context, self.executor)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failed(trace.get_current_span(), exc)  # the attempt's span, if it records
            return {"failure": to_failure(exc)}
        encoded = encode_result(definition, result)
        return {"result": encoded} if isinstance(encoded, bytes) else {"failure": encoded}


def _info(task: ActivityTask) -> ActivityInfo:
    return ActivityInfo(
        workflow_id=task.workflow_id,
        run_id=task.run_id,
        activity_id=str(task.seq),
        activity_name=task.activity_name,
        attempt=task.attempt,
        idempotency_key=f"{task.workflow_id}/{task.run_id}/{task.seq}",
        deadline=task.deadline,
        task_queue=task.task_queue,
    )


class _ActivityWatch:
    """Flushes an attempt's heartbeats, delivers its cancellation, and stops it at its
    deadline, from a task started only if the attempt is still running at the first check
    (most attempts end before: they cost a timer handle, not a task).

    ``stopped_by`` is the failure the attempt was stopped with, if it was."""

    def __init__(
        self, serving: Serving, task: ActivityTask, context: ActivityContext, is_async: bool
    ) -> None:
        self.store: Store = serving.store
        self.worker_id = serving.worker_id
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
            wait = min(wait, (self.task.deadline - self.store.clock.now()).total_seconds())
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
            if task.deadline is not None and task.deadline <= self.store.clock.now():
                self._stop(
                    failure(
                        "timeout",
                        f"activity {task.activity_name!r} timed out "
                        "(start_to_close, schedule_to_close or heartbeat timeout)",
                        type="TimeoutError",
                    )
                )
                return
            dirty, details = context._take_heartbeat()
            if dirty and await self._flush(details):
                context._mark_cancelled()
                if self.is_async:
                    self._stop(
                        failure(
                            "cancelled",
                            f"activity {task.activity_name!r} was cancelled",
                            type="CancelledError",
                            non_retryable=True,
                        )
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
