"""SyncClient: every Client call as a blocking one, for code that has no event loop
(Django and Flask views, scripts, threads).

One background thread runs an event loop with the one async Client all calls share (its
pool, its listener); a call from any thread is submitted to that loop and waited for. A
call from the loop's own thread would wait for itself, so it is refused.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar, Unpack, overload

from .._errors import DurableError
from .client import Client
from .descriptions import HistoryEvent, WorkflowDescription
from .handle import WorkflowHandle
from .signatures import (
    A1,
    A2,
    A3,
    A4,
    SignalWithStartOptions,
    StartOptions,
    Takes0,
    Takes1,
    Takes2,
    Takes3,
    Takes4,
    TakesMore,
)
from .sync_schedules import SyncQueueMethods, SyncScheduleMethods

R = TypeVar("R")
T = TypeVar("T")


class _LoopThread:
    """A daemon thread running an event loop until closed."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(
            target=self._run, args=(ready,), name="durable-sync-client", daemon=True
        )
        self.thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self.thread:
            coro.close()
            raise DurableError(
                "a SyncClient call was made from its own event loop's thread (from async code "
                "it runs): use the async durable.Client there"
            )
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class SyncClient(SyncScheduleMethods, SyncQueueMethods):
    """A Client whose every method blocks until done. Create it with
    ``SyncClient.connect()`` (the arguments of ``Client.connect``); safe to share between
    threads; ``close()`` it (or use it as a context manager) when done."""

    def __init__(self, client: Client, runner: _LoopThread) -> None:
        self.client = client
        self._runner = runner

    @classmethod
    def connect(cls, dsn: str | None = None, **options: Any) -> SyncClient:
        """Connect as ``Client.connect(dsn, **options)`` does, from any thread."""
        runner = _LoopThread()
        try:
            client = runner.call(Client.connect(dsn, **options))
        except BaseException:
            runner.stop()
            raise
        return cls(client, runner)

    def close(self) -> None:
        """Close the connections and stop the background thread."""
        try:
            self._runner.call(self.client.close())
        finally:
            self._runner.stop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.call(coro)

    @overload
    def start(
        self, workflow: Takes0[R], **options: Unpack[StartOptions]
    ) -> SyncWorkflowHandle[R]: ...
    @overload
    def start(
        self, workflow: Takes1[A1, R], arg1: A1, /, **options: Unpack[StartOptions]
    ) -> SyncWorkflowHandle[R]: ...
    @overload
    def start(
        self,
        workflow: Takes2[A1, A2, R],
        arg1: A1,
        arg2: A2,
        /,
        **options: Unpack[StartOptions],
    ) -> SyncWorkflowHandle[R]: ...
    @overload
    def start(
        self,
        workflow: Takes3[A1, A2, A3, R],
        arg1: A1,
        arg2: A2,
        arg3: A3,
        /,
        **options: Unpack[StartOptions],
    ) -> SyncWorkflowHandle[R]: ...
    @overload
    def start(
        self,
        workflow: Takes4[A1, A2, A3, A4, R],
        arg1: A1,
        arg2: A2,
        arg3: A3,
        arg4: A4,
        /,
        **options: Unpack[StartOptions],
    ) -> SyncWorkflowHandle[R]: ...
    @overload
    def start(
        self,
        workflow: TakesMore[R],
        arg1: Any,
        arg2: Any,
        arg3: Any,
        arg4: Any,
        arg5: Any,
        /,
        *args: Any,
        **options: Unpack[StartOptions],
    ) -> SyncWorkflowHandle[R]: ...
    @overload
    def start(
        self, workflow: str, *args: Any, **options: Unpack[StartOptions]
    ) -> SyncWorkflowHandle[Any]: ...
    def start(self, workflow: Any, *args: Any, **options: Any) -> SyncWorkflowHandle[Any]:
        """``Client.start``: start a workflow and return its handle (its arguments checked
        against the workflow's parameters, as there)."""
        handle = self._call(self.client.start(workflow, *args, **options))
        return SyncWorkflowHandle(self, handle)

    @overload
    def execute(self, workflow: Takes0[R], **options: Unpack[StartOptions]) -> R: ...
    @overload
    def execute(
        self, workflow: Takes1[A1, R], arg1: A1, /, **options: Unpack[StartOptions]
    ) -> R: ...
    @overload
    def execute(
        self,
        workflow: Takes2[A1, A2, R],
        arg1: A1,
        arg2: A2,
        /,
        **options: Unpack[StartOptions],
    ) -> R: ...
    @overload
    def execute(
        self,
        workflow: Takes3[A1, A2, A3, R],
        arg1: A1,
        arg2: A2,
        arg3: A3,
        /,
        **options: Unpack[StartOptions],
    ) -> R: ...
    @overload
    def execute(
        self,
        workflow: Takes4[A1, A2, A3, A4, R],
        arg1: A1,
        arg2: A2,
        arg3: A3,
        arg4: A4,
        /,
        **options: Unpack[StartOptions],
    ) -> R: ...
    @overload
    def execute(
        self,
        workflow: TakesMore[R],
        arg1: Any,
        arg2: Any,
        arg3: Any,
        arg4: Any,
        arg5: Any,
        /,
        *args: Any,
        **options: Unpack[StartOptions],
    ) -> R: ...
    @overload
    def execute(self, workflow: str, *args: Any, **options: Unpack[StartOptions]) -> Any: ...
    def execute(self, workflow: Any, *args: Any, **options: Any) -> Any:
        """``Client.execute``: start a workflow and wait for its result."""
        return self._call(self.client.execute(workflow, *args, **options))

    @overload
    def signal_with_start(
        self, workflow: Takes0[R], **options: Unpack[SignalWithStartOptions]
    ) -> SyncWorkflowHandle[R]: ...
    @overload
    def signal_with_start(
        self, workflow: Takes1[A1, R], arg1: A1, /, **options: Unpack[SignalWithStartOptions]
    ) -> SyncWorkflowHandle[R]: ...
    @overload
    def signal_with_start(
        self,
        workflow: Takes2[A1, A2, R],
        arg1: A1,
        arg2: A2,
        /,
        **options: Unpack[SignalWithStartOptions],
    ) -> SyncWorkflowHandle[R]: ...
    @overload
    def signal_with_start(
        self,
        workflow: Takes3[A1, A2, A3, R],
        arg1: A1,
        arg2: A2,
        arg3: A3,
        /,
        **options: Unpack[SignalWithStartOptions],
    ) -> SyncWorkflowHandle[R]: ...
    @overload
    def signal_with_start(
        self,
        workflow: Takes4[A1, A2, A3, A4, R],
        arg1: A1,
        arg2: A2,
        arg3: A3,
        arg4: A4,
        /,
        **options: Unpack[SignalWithStartOptions],
    ) -> SyncWorkflowHandle[R]: ...
    @overload
    def signal_with_start(
        self,
        workflow: TakesMore[R],
        arg1: Any,
        arg2: Any,
        arg3: Any,
        arg4: Any,
        arg5: Any,
        /,
        *args: Any,
        **options: Unpack[SignalWithStartOptions],
    ) -> SyncWorkflowHandle[R]: ...
    @overload
    def signal_with_start(
        self, workflow: str, *args: Any, **options: Unpack[SignalWithStartOptions]
    ) -> SyncWorkflowHandle[Any]: ...
    def signal_with_start(
        self, workflow: Any, *args: Any, **options: Any
    ) -> SyncWorkflowHandle[Any]:
        """``Client.signal_with_start``: signal the running workflow, or start and signal it."""
        handle = self._call(self.client.signal_with_start(workflow, *args, **options))
        return SyncWorkflowHandle(self, handle)

    @overload
    def get_handle(
        self, workflow_id: str, *, run_id: str | None = None, result_type: None = None
    ) -> SyncWorkflowHandle[Any]: ...
    @overload
    def get_handle(
        self, workflow_id: str, *, run_id: str | None = None, result_type: type[T]
    ) -> SyncWorkflowHandle[T]: ...
    @overload
    def get_handle(
        self, workflow_id: str, *, run_id: str | None = None, result_type: object
    ) -> SyncWorkflowHandle[Any]: ...
    def get_handle(
        self, workflow_id: str, *, run_id: str | None = None, result_type: object = None
    ) -> SyncWorkflowHandle[Any]:
        """``Client.get_handle``: a handle to an existing workflow (no call is made), whose
        ``result()`` rebuilds the result as ``result_type`` if given."""
        handle = self.client.get_handle(workflow_id, run_id=run_id, result_type=result_type)
        return SyncWorkflowHandle(self, handle)

    def list(
        self,
        status: str | None = None,
        workflow_name: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        started_after: datetime | None = None,
    ) -> Iterator[WorkflowDescription]:
        """``Client.list``: the matching runs, oldest first, read a page at a time as the
        iterator is consumed."""
        return self._iterate(self.client.list(status, workflow_name, attributes, started_after))

    def count(
        self,
        status: str | None = None,
        workflow_name: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        started_after: datetime | None = None,
    ) -> int:
        """``Client.count``: how many runs match the filters."""
        return self._call(self.client.count(status, workflow_name, attributes, started_after))

    def _iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._call(_next(items))
                except StopAsyncIteration:
                    return
        finally:
            self._call(_close(items))

    def batch(self, action: str, **options: Any) -> int:
        """``Client.batch``: act on every run matching the filters; the count."""
        return self._call(self.client.batch(action, **options))

    def purge(self, closed_before: datetime | timedelta, status: str | None = None) -> int:
        """``Client.purge``: delete the runs closed before ``closed_before``; how many."""
        return self._call(self.client.purge(closed_before, status))

    def export(
        self, closed_before: datetime | timedelta, status: str | None = None
    ) -> Iterator[tuple[WorkflowDescription, builtins.list[HistoryEvent]]]:
        """``Client.export``: the runs a purge would delete, each with its history."""
        return self._iterate(self.client.export(closed_before, status))

    def fork(
        self,
        workflow_id: str,
        seq: int | None = None,
        new_id: str | None = None,
        *,
        run_id: str | None = None,
        request_id: str | None = None,
    ) -> SyncWorkflowHandle[Any]:
        """``Client.fork``: a copy of a run under a new workflow id, from ``seq``."""
        handle = self._call(
            self.client.fork(workflow_id, seq, new_id, run_id=run_id, request_id=request_id)
        )
        return SyncWorkflowHandle(self, handle)


async def _next(items: AsyncIterator[T]) -> T:
    return await anext(items)


async def _close(items: AsyncIterator[Any]) -> None:
    close = getattr(items, "aclose", None)  # an async generator's
    if close is not None:
        await close()


class SyncWorkflowHandle(Generic[R]):
    """A WorkflowHandle whose every method blocks until done."""

    def __init__(self, client: SyncClient, handle: WorkflowHandle[R]) -> None:
        self.client = client
        self.handle = handle
        self.workflow_id = handle.workflow_id
        self.run_id = handle.run_id

    def __repr__(self) -> str:
        return f"<SyncWorkflowHandle {self.workflow_id} run={self.run_id}>"

    def result(self, timeout: float | timedelta | None = None) -> R:
        """Wait for the workflow to close and return its result."""
        return self.client._call(self.handle.result(timeout))

    def signal(self, name: str, *args: Any, request_id: str | None = None) -> None:
        """Send signal ``name`` (delivered once per ``request_id``)."""
        self.client._call(self.handle.signal(name, *args, request_id=request_id))

    def query(self, name: str, *args: Any, timeout: float = 30.0) -> Any:
        """Run the workflow's query handler ``name`` and return its answer."""
        return self.client._call(self.handle.query(name, *args, timeout=timeout))

    def update(
        self,
        name: str,
        *args: Any,
        timeout: float | None = None,
        request_id: str | None = None,
    ) -> Any:
        """Run the workflow's update handler ``name`` and return its result."""
        return self.client._call(
            self.handle.update(name, *args, timeout=timeout, request_id=request_id)
        )

    def cancel(self, reason: str | None = None, *, request_id: str | None = None) -> None:
        """Ask the workflow to cancel (it may clean up first)."""
        self.client._call(self.handle.cancel(reason, request_id=request_id))

    def terminate(self, reason: str | None = None, *, request_id: str | None = None) -> None:
        """Stop the workflow at once."""
        self.client._call(self.handle.terminate(reason, request_id=request_id))

    def pause(self, reason: str | None = None, *, request_id: str | None = None) -> None:
        """Pause the run: no workflow task of it runs until resumed."""
        self.client._call(self.handle.pause(reason, request_id=request_id))

    def resume(self, *, request_id: str | None = None) -> None:
        """Let a paused run go on, with what arrived meanwhile."""
        self.client._call(self.handle.resume(request_id=request_id))

    def reset(
        self,
        seq: int | None = None,
        reason: str | None = None,
        *,
        request_id: str | None = None,
    ) -> SyncWorkflowHandle[R]:
        """Start the workflow again from ``seq`` of this run's history (see
        ``WorkflowHandle.reset``); a handle to the new run."""
        handle = self.client._call(self.handle.reset(seq, reason, request_id=request_id))
        return SyncWorkflowHandle(self.client, handle)

    def describe(self) -> WorkflowDescription:
        """The run's status, times, attributes, errors and pending activities."""
        return self.client._call(self.handle.describe())

    def history(self) -> list[HistoryEvent]:
        """The run's recorded events."""
        return self.client._call(self.handle.history())
