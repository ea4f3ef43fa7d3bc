"""Local activities: run in the worker beside their workflow's steps, each outcome handed
to the run as it comes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from typing import Any

from .._activity import ActivityContext, ActivityInfo, encode_result, run_activity_function
from .._events import EventType
from .._failures import Failure, activity_failure, failure, may_retry, to_failure
from .._replayer import LocalActivityCall, WorkflowInstance
from .._telemetry import failed
from .handed import HandedOver, HandOver
from .telemetry import WorkerTelemetry


class LocalActivities:
    """The local activity calls this worker runs, by run and local id."""

    def __init__(
        self,
        task_queue: str,
        executor: concurrent.futures.Executor,
        hand_over: HandOver,
        telemetry: WorkerTelemetry,
    ) -> None:
        self.task_queue = task_queue
        self.executor = executor
        self.hand_over = hand_over
        self.telemetry = telemetry
        self._runs: dict[str, dict[int, _LocalActivityRun]] = {}

    def runs_for(self, run_id: str) -> bool:
        """Whether any local activity of the run is running here."""
        return bool(self._runs.get(run_id))

    def in_flight(self) -> list[asyncio.Task[Any]]:
        return [local.task for calls in self._runs.values() for local in calls.values()]

    def follow(self, run_id: str, instance: WorkflowInstance) -> None:
        """Stop the local activities whose await the step cancelled, start those it called.
        They run beside the run's steps: its timers, signals and cancellation reach it
        meanwhile, and each outcome is handed to the run as it comes."""
        started, stopped = instance.local_activity_changes()
        for call in stopped:
            local = self._runs.get(run_id, {}).pop(call.local_id, None)
            if local is not None:
                local.stop()
        for call in started:
            local = _LocalActivityRun(
                instance, call, self.task_queue, self.executor, self.telemetry
            )
            self._runs.setdefault(run_id, {})[call.local_id] = local
            local.task.add_done_callback(functools.partial(self._finished, local))

    def stop_all(self, run_id: str) -> None:
        """The worker lets go of the run: stop what it runs for it."""
        for local in self._runs.pop(run_id, {}).values():
            local.stop()

    def _finished(self, local: _LocalActivityRun, runner: asyncio.Task[Any]) -> None:
        info, call = local.info, local.call
        running = self._runs.get(info.run_id, {})
        if running.get(call.local_id) is local:
            del running[call.local_id]
            if not running:
                del self._runs[info.run_id]
        if runner.cancelled() or call.future.done():
            return  # stopped: the workflow does not wait for it any more
        outcome = runner.result()
        etype = (
            EventType.LOCAL_ACTIVITY_FAILED
            if "failure" in outcome
            else EventType.LOCAL_ACTIVITY_COMPLETED
        )
        attrs = {"local_id": call.local_id, "name": call.definition.name, **outcome}
        self.hand_over(info.workflow_id, info.run_id, HandedOver(etype, attrs, local=call))


class _LocalActivityRun:
    """One local activity call running in this worker, attempt after attempt, until it has
    an outcome or its workflow stops it."""

    __slots__ = (
        "call",
        "context",
        "executor",
        "info",
        "stopped",
        "task",
        "task_queue",
        "telemetry",
        "trace",
    )

    def __init__(
        self,
        instance: WorkflowInstance,
        call: LocalActivityCall,
        task_queue: str,
        executor: concurrent.futures.Executor,
        telemetry: WorkerTelemetry,
    ) -> None:
        self.info = instance.info
        self.trace = instance.trace_carrier
        self.telemetry = telemetry
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

    def _context(self, attempt: int) -> ActivityContext:
        call, info = self.call, self.info
        context = ActivityContext(
            ActivityInfo(
                workflow_id=info.workflow_id,
                run_id=info.run_id,
                activity_id=f"local-{call.local_id}",
                activity_name=call.definition.name,
                attempt=attempt,
                idempotency_key=f"{info.workflow_id}/{info.run_id}/local-{call.local_id}",
                deadline=None,
                task_queue=self.task_queue,
                is_local=True,
            ),
            None,
        )
        if self.stopped:
            context._mark_cancelled()
        return context

    async def _attempt(self, attempt: int) -> bytes | Failure:
        """Run one attempt: its encoded result, or its failure. An attempt past its
        start_to_close_timeout fails as timed out, even if it returns late."""
        call = self.call
        context = self.context = self._context(attempt)
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
            with self.telemetry.attempt(context.info, self.info.workflow_name, self.trace) as span:
                try:
                    result = await run_activity_function(
                        call.definition, list(call.args), dict(call.kwargs), context, self.executor
                    )
                except Exception as exc:
                    if span is not None:
                        failed(span, exc)
                    raise
            if not expired:
                return encode_result(call.definition, result)
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
        return failure(
            "timeout",
            f"local activity {call.definition.name!r} timed out after "
            f"{timeout.total_seconds() if timeout else 0:g} s (start_to_close_timeout)",
            type="TimeoutError",
        )
