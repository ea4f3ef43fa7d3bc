"""A workflow handle: its result, signals, queries, updates, cancel, terminate, describe."""

from __future__ import annotations

import asyncio
import builtins
import functools
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .._errors import (
    PayloadError,
    QueryError,
    TimeoutError,
    UpdateError,
    WorkflowCancelledError,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowTerminatedError,
)
from .._failures import from_failure
from .._serialization import decode, encode_args
from .._store import (
    KIND_QUERY,
    KIND_UPDATE,
    CallOutcome,
    NotificationKeys,
    RunRow,
    Store,
    wait_notified,
)
from .._validate import (
    check_name,
    check_reason,
    check_timeout,
)
from .descriptions import (
    HistoryEvent,
    WorkflowDescription,
    description,
    history_event,
)
from .requests import request_id_of

if TYPE_CHECKING:
    from .client import Client


R = TypeVar("R")
T = TypeVar("T")


class WorkflowHandle(Generic[R]):
    """A workflow by id, or one of its runs.

    A handle with a ``run_id`` (from ``start``, or ``get_handle(id, run_id=...)``) acts on
    that run, or on the run it continued as (transitively): signals, updates, queries,
    cancel and terminate never reach a run started later under the same id, and raise
    ``WorkflowNotFoundError`` once its run is closed (a query still reads a closed run).
    ``describe`` and ``history`` read exactly that run. Without a ``run_id`` a handle acts
    on the workflow's open run, else its latest."""

    def __init__(self, client: Client, workflow_id: str, run_id: str | None, hint: Any) -> None:
        self.client = client
        self.workflow_id = workflow_id
        self.run_id = run_id
        self._hint = hint

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.workflow_id} run={self.run_id}>"

    @property
    def _store(self) -> Store:
        return self.client.store

    async def result(self, timeout: float | timedelta | None = None) -> R:
        """Wait for the workflow to close (following continue-as-new) and return its result."""
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        check_timeout(seconds)
        try:
            async with asyncio.timeout(seconds), self._store.clock.waiting_for_time():
                return await self._wait_result()
        except builtins.TimeoutError as exc:
            if isinstance(exc, TimeoutError):
                raise  # the database did not answer (call_timeout)
            raise TimeoutError(
                f"workflow {self.workflow_id!r} did not finish within {seconds} s"
            ) from None

    async def _wait_result(self) -> R:
        closed = asyncio.Event()
        key = NotificationKeys.closed(self.workflow_id)
        await self._call("result", lambda: self._store.listener.subscribe(key, closed))
        try:
            run_id = self.run_id
            while True:
                closed.clear()
                row = await self._call("result", functools.partial(self._run, run_id))
                if row.continued_run_id is not None:  # continued as new, or reset
                    run_id = row.continued_run_id
                    continue
                if row.closed_at is not None:
                    return self._outcome(row)
                await wait_notified(closed, 1.0)
        finally:
            self._store.listener.unsubscribe(key, closed)

    async def _run(self, run_id: str | None) -> RunRow:
        if run_id is None:
            return await self._store.latest_run(self.workflow_id)
        row = await self._store.run_row(self.workflow_id, run_id)
        if row is None:
            raise WorkflowNotFoundError(f"no run {run_id} of workflow {self.workflow_id!r}")
        return row

    def _outcome(self, row: RunRow) -> R:
        status = row.status
        if status == "completed":
            return self._decode_result(row)
        failure = self._store.open_failure(row.failure) or {}
        message = failure.get("message") or status
        if status == "cancelled":
            raise WorkflowCancelledError(f"workflow {self.workflow_id!r} was cancelled")
        if status == "terminated":
            raise WorkflowTerminatedError(
                f"workflow {self.workflow_id!r} was terminated: {message}"
            )
        raise WorkflowFailedError(
            f"workflow {self.workflow_id!r} {status}: {message}", from_failure(failure)
        )

    def _decode_result(self, row: RunRow) -> R:
        """The run's result, rebuilt as the handle's result type (the workflow's return
        annotation, or ``get_handle(result_type=...)``)."""
        payload = self._store.open_payload(row.result)
        try:
            value: R = decode(payload, self._hint)
        except PayloadError as exc:
            raise PayloadError(
                f"cannot rebuild the result of workflow {self.workflow_id!r} "
                f"(run {row.run_id}): {exc}"
            ) from exc
        return value

    def _call(
        self, operation: str, attempt: Callable[[], Awaitable[T]], *, writes: bool = False
    ) -> Awaitable[T]:
        return self.client._call(operation, self.workflow_id, attempt, writes=writes)

    def _span(self, kind: str, name: str, args: bytes) -> AbstractContextManager[Any]:
        attributes: dict[str, str | int] = {
            "durable.workflow_id": self.workflow_id,
            "durable.args_bytes": len(args),
        }
        if self.run_id is not None:
            attributes["durable.run_id"] = self.run_id
        return self.client.telemetry.tracing.current(kind, name, attributes)

    async def signal(self, name: str, *args: Any, request_id: str | None = None) -> None:
        """Send signal ``name``; raises WorkflowNotFoundError unless the run is open. Sent
        again with the same ``request_id`` (default: a new one), it is delivered once."""
        signal = functools.partial(
            self._store.signal,
            self.workflow_id,
            self.run_id,
            check_name("name", name),
            payload := encode_args(args, {}),
            request_id_of(request_id),
        )
        with self._span("SignalWorkflow", name, payload):
            await self._call("signal", signal, writes=True)

    async def query(self, name: str, *args: Any, timeout: float = 30.0) -> Any:
        """Ask a worker to run the workflow's query handler ``name``."""
        check_timeout(timeout)
        create = functools.partial(
            self._store.create_call,
            KIND_QUERY,
            self.workflow_id,
            self.run_id,
            check_name("name", name),
            payload := encode_args(args, {}),
        )
        with self._span("QueryWorkflow", name, payload):
            call_id = await self._call("query", create)
            row = await self._await_call(call_id, timeout, "query")
        failure = self._store.open_failure(row.failure)
        if failure is not None:
            raise QueryError(failure.get("message", "query failed"))
        return decode(self._store.open_payload(row.result))

    async def update(
        self,
        name: str,
        *args: Any,
        timeout: float | None = None,
        request_id: str | None = None,
    ) -> Any:
        """Run the workflow's update handler ``name`` and return its result. Sent again with
        the same ``request_id`` (default: a new one), it runs once and waits for that run."""
        check_timeout(timeout)
        create = functools.partial(
            self._store.create_call,
            KIND_UPDATE,
            self.workflow_id,
            self.run_id,
            check_name("name", name),
            payload := encode_args(args, {}),
            request_id_of(request_id),
        )
        with self._span("UpdateWorkflow", name, payload):
            call_id = await self._call("update", create, writes=True)
            row = await self._await_call(call_id, timeout, "update")
        failure = self._store.open_failure(row.failure)
        if failure is not None:
            raise UpdateError(
                f"update {name!r} failed: {failure.get('message')}", from_failure(failure)
            )
        return decode(self._store.open_payload(row.result))

    async def _await_call(self, call_id: str, timeout: float | None, what: str) -> CallOutcome:
        answered = asyncio.Event()
        key = NotificationKeys.answered(call_id)
        await self._call(what, lambda: self._store.listener.subscribe(key, answered))
        try:
            async with asyncio.timeout(timeout):
                while True:
                    answered.clear()
                    row = await self._call(what, lambda: self._store.call_outcome(call_id))
                    if row is not None:
                        return row
                    await wait_notified(answered, 1.0)
        except builtins.TimeoutError as exc:
            if isinstance(exc, TimeoutError):
                raise  # the database did not answer (call_timeout)
            if what == "query":
                await self._call(what, lambda: self._store.forget_call(call_id))
            note = (
                "; the update stays queued for the workflow and runs when a worker picks it "
                "up: send it again with the same request_id to wait for it"
                if what == "update"
                else ""
            )
            raise TimeoutError(
                f"no worker answered the {what} to workflow {self.workflow_id!r} within "
                f"{timeout} s; is a worker for its task queue running?{note}"
            ) from None
        finally:
            self._store.listener.unsubscribe(key, answered)

    async def cancel(self, reason: str | None = None, *, request_id: str | None = None) -> None:
        """Ask the workflow to cancel: it sees CancelledError and may clean up. Asked again
        with the same ``request_id`` (default: a new one), it is asked once."""
        cancel = functools.partial(
            self._store.request_cancel,
            self.workflow_id,
            self.run_id,
            check_reason(reason),
            request_id_of(request_id),
        )
        await self._call("cancel", cancel, writes=True)

    async def terminate(self, reason: str | None = None, *, request_id: str | None = None) -> None:
        """Stop the workflow at once; no workflow code runs any more. Applied once per
        ``request_id`` (default: a new one)."""
        terminate = functools.partial(
            self._store.terminate,
            self.workflow_id,
            self.run_id,
            check_reason(reason),
            request_id_of(request_id),
        )
        terminated = await self._call("terminate", terminate, writes=True)
        if terminated is not None:
            workflow_name, task_queue = terminated
            self.client.telemetry.metrics.count(
                "durable.workflows.terminated", task_queue, "workflow_name", workflow_name
            )

    async def pause(self, reason: str | None = None, *, request_id: str | None = None) -> None:
        """Pause the run: no workflow task of it runs until :meth:`resume`. Signals, updates,
        timers and activity outcomes that arrive meanwhile wait, and are delivered in order
        on resume; queries are answered from what it has taken in; cancel (which resumes
        it: its code must see the request) and terminate still work. Pausing a closed run
        raises ``WorkflowError``; pausing a paused one does nothing."""
        pause = functools.partial(
            self._store.pause,
            self.workflow_id,
            self.run_id,
            check_reason(reason),
            request_id_of(request_id),
        )
        await self._call("pause", pause, writes=True)

    async def resume(self, *, request_id: str | None = None) -> None:
        """Let a paused run go on from where it stopped, with what arrived meanwhile.
        Resuming a closed run raises ``WorkflowError``; resuming one not paused does nothing."""
        resume = functools.partial(
            self._store.resume, self.workflow_id, self.run_id, request_id_of(request_id)
        )
        await self._call("resume", resume, writes=True)

    async def reset(
        self,
        seq: int | None = None,
        reason: str | None = None,
        *,
        request_id: str | None = None,
    ) -> WorkflowHandle[R]:
        """Start the workflow again from a point of this run's history, and return a handle to
        the new run. The run is closed (``terminated``, with ``reason``) if it is open; the
        new run's history is its events before ``seq``: its code replays them from their
        recorded results and runs live from there (activities and children they started and
        did not see finish run again, timers are set for when they were due, signals and
        updates taken in from ``seq`` on are delivered again; an update this run had not
        answered is answered by the new one). ``seq`` must be the first event of a workflow
        task (a ``ValueError`` lists the valid ones); None means just before the step that
        took in the failure of the activity or child that failed the run, else just before
        its last workflow task. Works on open and closed runs (a later open run of the
        workflow is terminated); ``describe().reset_from`` of the new run is (this run's id,
        seq). A handle on this run, and its ``result()``, follow to the new run. Applied
        once per ``request_id`` (default: a new one)."""
        return await self.client._reset(
            self.workflow_id, self.run_id, seq, reason, request_id, None, self._hint
        )

    async def describe(self) -> WorkflowDescription:
        """The run's status, times, attributes, last error, pending activities and the
        failure it closed with."""
        return await self._call("describe", self._describe)

    async def _describe(self) -> WorkflowDescription:
        row = await self._run(self.run_id)
        if row.closed_at is not None:
            return description(self._store, row)
        pending, waits = await self._store.open_work(self.workflow_id, row.run_id)
        unserved = await self._store.unserved_work(self.workflow_id, row.run_id)
        return description(self._store, row, pending, waits, unserved)

    async def history(self) -> list[HistoryEvent]:
        """The run's recorded history, oldest event first."""
        return await self._call("history", self._history)

    async def _history(self) -> list[HistoryEvent]:
        row = await self._run(self.run_id)
        events = await self._store.load_history(self.workflow_id, row.run_id)
        return [history_event(e) for e in events]
