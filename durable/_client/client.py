"""The client: connects, starts workflows, lists them, hands out handles."""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import functools
import hashlib
import time
import typing
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, Unpack, overload

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from .._calls import Outage, call
from .._codecs import Codecs, PayloadCodec
from .._definitions import DEFAULT_TASK_QUEUE, WorkflowDefinition, workflow_name
from .._embedded import embedded_dsn, resolve_dsn, resolve_listen_dsn
from .._errors import DatabaseUnavailableError, DurableError
from .._serialization import encode_args, return_hint
from .._store import (
    BATCH_ACTIONS,
    CONNECT_FAILED,
    UNAVAILABLE,
    Cursor,
    ListFilter,
    StartRequest,
    Store,
)
from .._telemetry import Telemetry, carrier
from .._types import CLOSED_STATUSES, ID_CONFLICT_POLICIES, ID_REUSE_POLICIES, STATUSES
from .._validate import (
    check_attributes,
    check_choice,
    check_duration,
    check_name,
    check_reason,
    check_run_id,
    check_seq,
    check_text,
    check_timeout,
)
from .arguments import check_start_arguments, served_queue
from .descriptions import (
    HistoryEvent,
    WorkflowDescription,
    description,
    history_event,
)
from .handle import WorkflowHandle
from .requests import request_id_of
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

R = TypeVar("R")
T = TypeVar("T")


# what Store.connect raises when it cannot connect, or the dsn is malformed
_CANNOT_CONNECT: tuple[type[BaseException], ...] = (*CONNECT_FAILED, ValueError)


class Client:
    """A connection to the durable database. Create it with ``await Client.connect()``.

    Every call it makes (and every call of its handles) finishes within ``call_timeout``
    seconds whatever the database does: a database that cannot be reached raises
    ``DatabaseUnavailableError``, one that does not answer ``durable.TimeoutError``. While the
    database is away, calls are attempted again within that time; writes are applied once
    (each carries a request id)."""

    def __init__(
        self,
        store: Store,
        call_timeout: float | None = 30.0,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.store = store
        self.call_timeout = call_timeout
        self.telemetry = telemetry or Telemetry()
        store.commit_observer = self.telemetry.metrics.commit_batch_size.record

    async def _call(
        self,
        operation: str,
        workflow_id: str | None,
        attempt: Callable[[], Awaitable[T]],
        *,
        writes: bool = False,
        outage: Outage | None = None,
    ) -> T:
        return await call(
            operation,
            workflow_id,
            self.call_timeout,
            attempt,
            writes=writes,
            retry=True,
            outage=outage,
        )

    @classmethod
    async def connect(
        cls,
        dsn: str | None = None,
        *,
        max_connections: int = 10,
        connect_timeout: float = 10.0,
        codecs: Sequence[PayloadCodec] = (),
        call_timeout: float | None = 30.0,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        listen_dsn: str | None = None,
        prepared_statements: bool = True,
    ) -> Client:
        """Connect (and migrate the schema if needed).

        ``dsn=None`` uses ``$DURABLE_DATABASE_URL``, else the embedded database. A server that
        does not answer within ``connect_timeout`` seconds is an error. Behind a connection
        pooler in transaction mode (PgBouncer, RDS Proxy, Supavisor), give ``listen_dsn``
        (default ``$DURABLE_LISTEN_DATABASE_URL``, else ``dsn``): a session for LISTEN, direct
        or through a session-mode pool; and ``prepared_statements=False`` unless the pooler
        keeps prepared statements (PgBouncer >= 1.21 with ``max_prepared_statements``). ``call_timeout`` is
        the deadline of every later call (None: none).
        ``codecs`` (e.g. ``[ZlibCodec(), AesGcmCodec(keys, encrypt_with="k2")]``) transform
        every stored payload, first to last; workers and clients sharing workflows need the
        same codecs (with every key still in use). ``tracer_provider`` and ``meter_provider``
        receive the spans and metrics of this client and of the workers built on it (None:
        OpenTelemetry's global providers, whenever the application sets them).
        """
        check_timeout(connect_timeout)
        check_timeout(call_timeout, "call_timeout")
        chain = Codecs(codecs)  # refuse bad codecs before connecting
        resolved = resolve_dsn(dsn)
        if resolved is None:
            resolved = await asyncio.to_thread(embedded_dsn)
        try:
            store = await Store.connect(
                resolved,
                max_connections=max_connections,
                connect_timeout=connect_timeout,
                codecs=chain,
                listen_dsn=resolve_listen_dsn(listen_dsn),
                prepared_statements=prepared_statements,
            )
        except _CANNOT_CONNECT as exc:
            raise _cannot_connect(exc, resolved, connect_timeout) from exc
        return cls(store, call_timeout, Telemetry(tracer_provider, meter_provider))

    async def close(self) -> None:
        """Close the connections (the embedded database keeps running)."""
        await self.store.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ starting
    # One overload per number of workflow arguments lets type checkers check them against
    # the workflow's parameters (see signatures.py); at run time arguments.py checks them.
    @overload
    async def start(
        self, workflow: Takes0[R], **options: Unpack[StartOptions]
    ) -> WorkflowHandle[R]: ...
    @overload
    async def start(
        self, workflow: Takes1[A1, R], arg1: A1, /, **options: Unpack[StartOptions]
    ) -> WorkflowHandle[R]: ...
    @overload
    async def start(
        self,
        workflow: Takes2[A1, A2, R],
        arg1: A1,
        arg2: A2,
        /,
        **options: Unpack[StartOptions],
    ) -> WorkflowHandle[R]: ...
    @overload
    async def start(
        self,
        workflow: Takes3[A1, A2, A3, R],
        arg1: A1,
        arg2: A2,
        arg3: A3,
        /,
        **options: Unpack[StartOptions],
    ) -> WorkflowHandle[R]: ...
    @overload
    async def start(
        self,
        workflow: Takes4[A1, A2, A3, A4, R],
        arg1: A1,
        arg2: A2,
        arg3: A3,
        arg4: A4,
        /,
        **options: Unpack[StartOptions],
    ) -> WorkflowHandle[R]: ...
    @overload
    async def start(
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
    ) -> WorkflowHandle[R]: ...
    @overload
    async def start(
        self, workflow: str, *args: Any, **options: Unpack[StartOptions]
    ) -> WorkflowHandle[Any]: ...
    async def start(
        self,
        workflow: object,
        *args: Any,
        id: str | None = None,
        task_queue: str | None = None,
        id_reuse_policy: str = "allow_duplicate",
        id_conflict_policy: str = "fail",
        start_delay: timedelta | None = None,
        execution_timeout: timedelta | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> WorkflowHandle[Any]:
        """Start a workflow (by function or registered name) and return its handle.

        Type checkers check the arguments against the workflow function's parameters (up to
        four arguments; see ``signatures.py``), and type the handle's result by its return."""
        request, hint = await self._start_request(
            workflow,
            args,
            id,
            task_queue,
            id_reuse_policy,
            id_conflict_policy,
            start_delay,
            execution_timeout,
            attributes,
        )
        run_id = await self._start(request)
        return WorkflowHandle(self, request.workflow_id, run_id, hint)

    async def _start(
        self,
        request: StartRequest,
        signal: tuple[str, bytes, str] | None = None,
        operation: str = "start",
    ) -> str:
        """Start ``request`` in a StartWorkflow span, whose context the run records;
        attempted again while the database is away, without a second run (each attempt
        opens the same run id, and one that committed is the start)."""
        run_id = str(uuid.uuid4())
        attempts = 0
        attributes = {
            "durable.workflow_id": request.workflow_id,
            "durable.workflow_name": request.workflow_name,
            "durable.task_queue": request.task_queue,
            "durable.args_bytes": len(request.args),
        }
        with self.telemetry.tracing.current("StartWorkflow", request.workflow_name, attributes):
            traced = dataclasses.replace(request, trace=carrier())

            async def attempt() -> str:
                nonlocal attempts
                attempts += 1
                opened, _ = await self.store.start_workflow(
                    traced, run_id, signal, again=attempts > 1
                )
                return opened

            return await self._call(operation, request.workflow_id, attempt, writes=True)

    @overload
    async def execute(self, workflow: Takes0[R], **options: Unpack[StartOptions]) -> R: ...
    @overload
    async def execute(
        self, workflow: Takes1[A1, R], arg1: A1, /, **options: Unpack[StartOptions]
    ) -> R: ...
    @overload
    async def execute(
        self,
        workflow: Takes2[A1, A2, R],
        arg1: A1,
        arg2: A2,
        /,
        **options: Unpack[StartOptions],
    ) -> R: ...
    @overload
    async def execute(
        self,
        workflow: Takes3[A1, A2, A3, R],
        arg1: A1,
        arg2: A2,
        arg3: A3,
        /,
        **options: Unpack[StartOptions],
    ) -> R: ...
    @overload
    async def execute(
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
    async def execute(
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
    async def execute(self, workflow: str, *args: Any, **options: Unpack[StartOptions]) -> Any: ...
    async def execute(self, workflow: Any, *args: Any, **options: Any) -> Any:
        """Start a workflow and wait for its result."""
        handle = await self.start(workflow, *args, **options)
        return await handle.result()

    @overload
    async def signal_with_start(
        self, workflow: Takes0[R], **options: Unpack[SignalWithStartOptions]
    ) -> WorkflowHandle[R]: ...
    @overload
    async def signal_with_start(
        self, workflow: Takes1[A1, R], arg1: A1, /, **options: Unpack[SignalWithStartOptions]
    ) -> WorkflowHandle[R]: ...
    @overload
    async def signal_with_start(
        self,
        workflow: Takes2[A1, A2, R],
        arg1: A1,
        arg2: A2,
        /,
        **options: Unpack[SignalWithStartOptions],
    ) -> WorkflowHandle[R]: ...
    @overload
    async def signal_with_start(
        self,
        workflow: Takes3[A1, A2, A3, R],
        arg1: A1,
        arg2: A2,
        arg3: A3,
        /,
        **options: Unpack[SignalWithStartOptions],
    ) -> WorkflowHandle[R]: ...
    @overload
    async def signal_with_start(
        self,
        workflow: Takes4[A1, A2, A3, A4, R],
        arg1: A1,
        arg2: A2,
        arg3: A3,
        arg4: A4,
        /,
        **options: Unpack[SignalWithStartOptions],
    ) -> WorkflowHandle[R]: ...
    @overload
    async def signal_with_start(
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
    ) -> WorkflowHandle[R]: ...
    @overload
    async def signal_with_start(
        self, workflow: str, *args: Any, **options: Unpack[SignalWithStartOptions]
    ) -> WorkflowHandle[Any]: ...
    async def signal_with_start(
        self,
        workflow: object,
        *args: Any,
        id: str,
        signal: str,
        signal_args: tuple[Any, ...] = (),
        task_queue: str | None = None,
        start_delay: timedelta | None = None,
        execution_timeout: timedelta | None = None,
        attributes: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> WorkflowHandle[Any]:
        """Signal the running workflow ``id``, or start it and signal it, atomically. The
        signal is applied once per ``request_id`` (default: a new one)."""
        check_name("signal", signal)
        if not isinstance(signal_args, tuple | list):
            raise TypeError(f"signal_args must be a tuple of arguments, got {signal_args!r:.200}")
        payload = encode_args(tuple(signal_args), {})
        request, hint = await self._start_request(
            workflow,
            args,
            check_name("id", id),
            task_queue,
            "allow_duplicate",
            "use_existing",
            start_delay,
            execution_timeout,
            attributes,
        )
        request_id = request_id_of(request_id)
        run_id = await self._start(request, (signal, payload, request_id), "signal_with_start")
        return WorkflowHandle(self, request.workflow_id, run_id, hint)

    async def _start_request(
        self,
        workflow: object,
        args: tuple[Any, ...],
        id: str | None,
        task_queue: str | None,
        id_reuse_policy: str,
        id_conflict_policy: str,
        start_delay: timedelta | None,
        execution_timeout: timedelta | None,
        attributes: Mapping[str, Any] | None,
    ) -> tuple[StartRequest, Any]:
        name = workflow_name(workflow)
        definition = workflow if isinstance(workflow, WorkflowDefinition) else None
        workflow_id = check_name(
            "id",
            id
            if id is not None
            else (definition.id if definition and definition.id else str(uuid.uuid4())),
        )
        if task_queue is not None:
            check_name("task_queue", task_queue)
        request = StartRequest(
            workflow_id=workflow_id,
            workflow_name=name,
            task_queue="",
            args=encode_args(args, {}),
            id_reuse_policy=check_choice("id_reuse_policy", id_reuse_policy, ID_REUSE_POLICIES),
            id_conflict_policy=check_choice(
                "id_conflict_policy", id_conflict_policy, ID_CONFLICT_POLICIES
            ),
            start_delay=check_duration("start_delay", start_delay, allow_zero=True),
            execution_timeout=check_duration("execution_timeout", execution_timeout),
            attributes=check_attributes(attributes),
        )
        queue = task_queue or (definition.task_queue if definition else None)
        if definition is not None:
            check_start_arguments(definition, args, request.args)
        else:
            registered = await self._call(
                "start", workflow_id, lambda: self.store.registered_workflow(name, queue)
            )
            queue = served_queue(name, queue, registered, len(args))
        request = dataclasses.replace(request, task_queue=queue or DEFAULT_TASK_QUEUE)
        return request, return_hint(definition.fn) if definition else Any

    # ------------------------------------------------------------------ handles and listing
    @overload
    def get_handle(
        self, workflow_id: str, *, run_id: str | None = None, result_type: None = None
    ) -> WorkflowHandle[Any]: ...
    @overload
    def get_handle(
        self, workflow_id: str, *, run_id: str | None = None, result_type: type[T]
    ) -> WorkflowHandle[T]: ...
    @overload
    def get_handle(
        self, workflow_id: str, *, run_id: str | None = None, result_type: object
    ) -> WorkflowHandle[Any]: ...
    def get_handle(
        self, workflow_id: str, *, run_id: str | None = None, result_type: object = None
    ) -> WorkflowHandle[Any]:
        """A handle to workflow ``workflow_id`` (its latest run unless ``run_id`` is given).

        ``result_type`` (a dataclass, a pydantic model, ``list[Order]``, ``Order | None``, any
        type a workflow's return annotation may be) makes ``result()`` rebuild the result as
        that type, as a handle from ``start(workflow, ...)`` does from the workflow's return
        annotation; a result that does not fit it raises ``PayloadError``. None: plain values
        (dicts for dataclasses)."""
        workflow_id = check_name("workflow_id", workflow_id)
        hint = result_hint(result_type)
        return WorkflowHandle(self, workflow_id, check_run_id("run_id", run_id), hint)

    async def fork(
        self,
        workflow_id: str,
        seq: int | None = None,
        new_id: str | None = None,
        *,
        run_id: str | None = None,
        request_id: str | None = None,
    ) -> WorkflowHandle[Any]:
        """Start a copy of a run (the workflow's latest, or ``run_id``) under the workflow id
        ``new_id`` (default: derived from the request id), from the point ``seq`` of its
        history, as :meth:`WorkflowHandle.reset` does; the original is left as it is. Its
        children are not moved: one it started and did not see finish is started again
        under its recorded id (a failure to the copy while the original's child still runs
        under that id). Applied once per ``request_id`` (default: a new one)."""
        workflow_id = check_name("workflow_id", workflow_id)
        run_id = check_run_id("run_id", run_id)
        request = request_id_of(request_id)
        if new_id is None:
            new_id = f"{workflow_id}-fork-{hashlib.sha256(request.encode()).hexdigest()[:12]}"
        check_name("new_id", new_id)
        if new_id == workflow_id:
            raise ValueError(
                f"new_id must differ from the workflow id {workflow_id!r}: to start it again "
                "under its own id, use get_handle(...).reset()"
            )
        return await self._reset(workflow_id, run_id, seq, None, request, new_id, Any)

    async def _reset(
        self,
        workflow_id: str,
        run_id: str | None,
        seq: int | None,
        reason: str | None,
        request_id: str | None,
        fork_to: str | None,
        hint: Any,
    ) -> WorkflowHandle[Any]:
        reset = functools.partial(
            self.store.reset,
            workflow_id,
            run_id,
            check_seq(seq),
            check_reason(reason),
            request_id_of(request_id),
            fork_to=fork_to,
        )
        done = await self._call("fork" if fork_to else "reset", workflow_id, reset, writes=True)
        return WorkflowHandle(self, done.workflow_id, done.run_id, hint)

    async def list(
        self,
        status: str | None = None,
        workflow_name: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        started_after: datetime | None = None,
    ) -> AsyncIterator[WorkflowDescription]:
        """Workflow runs matching every filter given, oldest first."""
        filters = list_filter(status, workflow_name, attributes, started_after)
        after: Cursor | None = None
        while True:
            page = functools.partial(self.store.list_workflows, filters, after, 200)
            rows = await self._call("list", None, page)
            for row in rows:
                yield description(self.store, row)
            if len(rows) < 200:
                return
            last = rows[-1]
            after = (last.started_at, last.workflow_id, last.run_id)

    async def count(
        self,
        status: str | None = None,
        workflow_name: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        started_after: datetime | None = None,
    ) -> int:
        """How many runs :meth:`list` with the same filters would yield (one statement)."""
        filters = list_filter(status, workflow_name, attributes, started_after)
        return await self._call(
            "count", None, functools.partial(self.store.count_workflows, filters)
        )

    async def batch(
        self,
        action: str,
        *,
        status: str | None = None,
        workflow_name: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        started_after: datetime | None = None,
        reason: str | None = None,
        signal: str | None = None,
        signal_args: Sequence[Any] = (),
        request_id: str | None = None,
    ) -> int:
        """Apply ``action`` ("cancel", "terminate", "signal", "pause" or "resume") to every
        open run matching the filters (as :meth:`list` takes them) that had started when the
        call began, or ("reset") reset to its default point every matching run, closed ones
        too, that is its workflow's latest; returns the number of runs acted on. The
        database does it in chunks of 200 runs, one transaction each, resting after each as
        long as it took. Done again (say, after a crash part-way), it acts on what is left:
        runs terminated, cancelled, paused, resumed or reset already are not counted again,
        and a cancel request, signal (``signal``: its name, with ``signal_args``) or reset
        applies to each workflow once per ``request_id`` (default: a new one per call; give
        one to repeat a batch safely)."""
        check_choice("action", action, BATCH_ACTIONS)
        filters = list_filter(status, workflow_name, attributes, started_after)
        message = _batch_signal(action, signal, signal_args)
        reason = check_reason(reason)
        request = request_id_of(request_id)
        started_by = await self._call("batch", None, self.store.database_time)
        # a reset also starts closed runs again (the failed ones, say)
        open_only = action != "reset"
        filters = dataclasses.replace(filters, started_by=started_by, open_only=open_only)
        acted = 0
        after: Cursor | None = None
        while True:
            chunk = functools.partial(
                self.store.batch_page,
                action,
                filters,
                after,
                _BATCH_CHUNK,
                reason=reason,
                signal=message,
                request_id=request,
            )
            began = time.monotonic()
            page = await self._call("batch", None, chunk, writes=True)
            took = time.monotonic() - began
            acted += len(page.acted)
            if action == "terminate":
                for workflow_name_, task_queue in page.acted:
                    self.telemetry.metrics.count(
                        "durable.workflows.terminated", task_queue, "workflow_name", workflow_name_
                    )
            if page.after is None:
                return acted
            after = page.after
            await asyncio.sleep(took * _BATCH_REST)

    async def purge(self, closed_before: datetime | timedelta, status: str | None = None) -> int:
        """Delete the runs closed before ``closed_before`` (a time, or how long ago by the
        database's clock: ``timedelta(0)`` is every run closed by now), only those with
        ``status`` if given, with their history, inbox, tasks and calls; returns how many.
        Open runs are never touched. The database does it 200 runs per transaction, oldest
        first, resting after each as long as it took; runs another purge is deleting are
        skipped, not waited for. To archive first, see :meth:`export`."""
        if status is not None:
            check_choice("status", status, CLOSED_STATUSES)
        cutoff = await self._cutoff(closed_before)
        purged = 0
        while True:
            chunk = functools.partial(self.store.purge_closed, cutoff, status, _BATCH_CHUNK)
            began = time.monotonic()
            deleted = await self._call("purge", None, chunk, writes=True)
            purged += deleted
            if deleted < _BATCH_CHUNK:
                return purged
            await asyncio.sleep((time.monotonic() - began) * _BATCH_REST)

    async def export(
        self, closed_before: datetime | timedelta, status: str | None = None
    ) -> AsyncIterator[tuple[WorkflowDescription, builtins.list[HistoryEvent]]]:
        """The runs :meth:`purge` would delete with the same arguments, oldest closed first,
        each with its history (as ``handle.history()`` gives it): what ``durable export``
        writes as JSON lines before a purge."""
        if status is not None:
            check_choice("status", status, CLOSED_STATUSES)
        cutoff = await self._cutoff(closed_before)
        after: Cursor | None = None
        while True:
            page = functools.partial(self.store.closed_page, cutoff, status, after, 100)
            runs = await self._call("export", None, page)
            for row, events in runs:
                described = description(self.store, row)
                yield described, [history_event(e) for e in events]
            if len(runs) < 100:
                return
            last = runs[-1][0]
            assert last.closed_at is not None  # (closed runs only)
            after = (last.closed_at, last.workflow_id, last.run_id)

    async def _cutoff(self, closed_before: datetime | timedelta) -> datetime:
        if isinstance(closed_before, timedelta):
            check_duration("closed_before", closed_before, allow_zero=True)
            now = await self._call("database time", None, self.store.database_time)
            return now - closed_before
        if not isinstance(closed_before, datetime) or closed_before.tzinfo is None:
            raise ValueError(
                "closed_before must be a timezone-aware datetime or a timedelta (how long "
                f"ago), got {closed_before!r}"
            )
        return closed_before


_BATCH_CHUNK = 200  # runs per transaction of a batch action
# after each chunk, the batch rests this many times as long as the chunk took: it takes at
# most half of the database's time from the workflows running meanwhile
_BATCH_REST = 1.0


def list_filter(
    status: str | None,
    workflow_name: str | None,
    attributes: Mapping[str, Any] | None,
    started_after: datetime | None,
) -> ListFilter:
    """The filters of a list or a batch, validated."""
    if workflow_name is not None:
        check_text("workflow_name", workflow_name)
    if status is not None:
        check_choice("status", status, STATUSES)
    if started_after is not None and (
        not isinstance(started_after, datetime) or started_after.tzinfo is None
    ):
        raise ValueError(f"started_after must be a timezone-aware datetime, got {started_after!r}")
    return ListFilter(status, workflow_name, check_attributes(attributes), started_after)


def _batch_signal(
    action: str, signal: str | None, signal_args: Sequence[Any]
) -> tuple[str, bytes] | None:
    """The signal a batch sends (name, encoded arguments): for action "signal" only."""
    if action != "signal":
        if signal is not None or signal_args:
            raise ValueError(
                f"signal and signal_args are for action 'signal', not {action!r}; drop them"
            )
        return None
    if signal is None:
        raise ValueError("action 'signal' needs signal=NAME (and signal_args=[...] if any)")
    if isinstance(signal_args, (str, bytes)) or not isinstance(signal_args, Sequence):
        raise ValueError(f"signal_args must be a list or tuple, got {signal_args!r:.200}")
    return check_name("signal", signal), encode_args(signal_args, {})


def result_hint(result_type: object) -> object:
    """The type ``get_handle(result_type=...)`` decodes results as (None: Any), checked."""
    if result_type is None:
        return Any
    if isinstance(result_type, type | typing.NewType) or typing.get_origin(result_type) is not None:
        return result_type
    raise TypeError(
        "result_type must be a type: a class (a dataclass, a pydantic model, int, ...) or a "
        f"typing form such as list[Order] or Order | None; got {result_type!r:.200}"
    )


def _cannot_connect(exc: BaseException, dsn: str, connect_timeout: float) -> DurableError:
    """The error Client.connect raises when it cannot connect to ``dsn``."""
    reason = str(exc)
    if isinstance(exc, builtins.TimeoutError):
        reason = f"no answer within {connect_timeout} s (connect_timeout)"
    message = (
        f"cannot connect to Postgres at {redact_dsn(dsn)}: {reason}; check the dsn argument "
        "or $DURABLE_DATABASE_URL (e.g. postgresql://user:pass@host:5432/db)"
    )
    if isinstance(exc, UNAVAILABLE):
        return DatabaseUnavailableError(message, operation="connect", may_have_taken_effect=False)
    return DurableError(message)


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, for error messages."""
    if "@" in dsn and "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in credentials else dsn
    return dsn
