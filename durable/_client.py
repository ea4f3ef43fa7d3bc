"""The client: start workflows and talk to them (signal, query, update, cancel, ...)."""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import functools
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar, overload

import asyncpg

from ._calls import UNAVAILABLE, call
from ._codecs import Codecs, PayloadCodec
from ._definitions import (
    DEFAULT_TASK_QUEUE,
    WorkflowDefinition,
    check_attributes,
    check_duration,
    check_name,
    check_text,
    workflow_name,
)
from ._embedded import embedded_dsn, resolve_dsn
from ._errors import (
    DatabaseUnavailableError,
    DurableError,
    PayloadError,
    QueryError,
    TimeoutError,
    UpdateError,
    WorkflowCancelledError,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowTerminatedError,
)
from ._events import PAYLOAD_KEYS, Event
from ._failures import from_failure
from ._serialization import decode, encode_args, return_hint
from ._store import (
    KIND_QUERY,
    KIND_UPDATE,
    CallOutcome,
    NotificationKeys,
    PendingActivityRow,
    RunRow,
    StartRequest,
    Store,
    wait_notified,
)
from ._types import ID_CONFLICT_POLICIES, ID_REUSE_POLICIES, STATUSES

R = TypeVar("R")
T = TypeVar("T")
C = TypeVar("C", bound=str)


@dataclass(frozen=True)
class PendingActivity:
    activity_id: str
    activity_name: str
    attempt: int
    state: str
    scheduled_at: datetime
    next_attempt_at: datetime | None
    last_failure: str | None


@dataclass(frozen=True)
class WorkflowDescription:
    workflow_id: str
    run_id: str
    workflow_name: str
    task_queue: str
    status: str
    started_at: datetime
    closed_at: datetime | None
    attributes: dict[str, Any]
    parent_workflow_id: str | None
    history_length: int
    last_error: str | None
    pending_activities: list[PendingActivity] = field(default_factory=list)


@dataclass(frozen=True)
class HistoryEvent:
    """One recorded event: ``.seq``, ``.type``, ``.timestamp`` and its fields as attributes;
    ``.ends_step`` marks the last event of a completed step (the step's time is then its
    timestamp)."""

    seq: int
    type: str
    timestamp: datetime
    fields: dict[str, Any]
    ends_step: bool = False

    def __getattr__(self, name: str) -> Any:
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(f"{self.type} event has no field {name!r}") from None


def _history_event(event: Event) -> HistoryEvent:
    fields = {
        key: decode(value) if key in PAYLOAD_KEYS and isinstance(value, bytes) else value
        for key, value in event.attrs.items()
    }
    return HistoryEvent(event.seq, event.type.name, event.timestamp, fields, event.ends_step)


def _check_timeout(value: Any, arg: str = "timeout") -> None:
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value < float("inf")
    ):
        raise ValueError(f"{arg} must be a positive number of seconds or None, got {value!r}")


class _RequestIds:
    """New request ids: a random prefix of the process (a new one in a forked child) and a
    number, unique across processes and cheap (uuid4 costs a system call each)."""

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        self.prefix = uuid.uuid4().hex
        self.numbers = itertools.count(1)

    def new(self) -> str:
        return f"{self.prefix}-{next(self.numbers)}"


_request_ids = _RequestIds()


def _request_id(value: Any) -> str:
    """A client write's request id: the caller's (checked), else a new one."""
    return _request_ids.new() if value is None else check_name("request_id", value)


def _check_reason(value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or "\x00" in value):
        raise ValueError(f"reason must be a string without NUL characters or None, got {value!r}")
    return value


def _check_choice(arg: str, value: Any, choices: tuple[C, ...]) -> C:
    for choice in choices:
        if value == choice and isinstance(value, str):
            return choice
    raise ValueError(f"{arg} must be one of {', '.join(map(repr, choices))}, got {value!r}")


class Client:
    """A connection to the durable database. Create it with ``await Client.connect()``.

    Every call it makes (and every call of its handles) finishes within ``call_timeout``
    seconds whatever the database does: a database that cannot be reached raises
    ``DatabaseUnavailableError``, one that does not answer ``durable.TimeoutError``. While the
    database is away, calls are attempted again within that time; writes are applied once
    (each carries a request id)."""

    def __init__(self, store: Store, call_timeout: float | None = 30.0) -> None:
        self.store = store
        self.call_timeout = call_timeout

    async def _call(
        self,
        operation: str,
        workflow_id: str | None,
        attempt: Callable[[], Awaitable[T]],
        *,
        writes: bool = False,
    ) -> T:
        return await call(
            operation, workflow_id, self.call_timeout, attempt, writes=writes, retry=True
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
    ) -> Client:
        """Connect (and migrate the schema if needed).

        ``dsn=None`` uses ``$DURABLE_DATABASE_URL``, else the embedded database. A server that
        does not answer within ``connect_timeout`` seconds is an error. ``call_timeout`` is
        the deadline of every later call (None: none).
        ``codecs`` (e.g. ``[ZlibCodec(), AesGcmCodec(keys, encrypt_with="k2")]``) transform
        every stored payload, first to last; workers and clients sharing workflows need the
        same codecs (with every key still in use).
        """
        _check_timeout(connect_timeout)
        _check_timeout(call_timeout, "call_timeout")
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
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            reason = str(exc)
            if isinstance(exc, builtins.TimeoutError):
                reason = f"no answer within {connect_timeout} s (connect_timeout)"
            message = (
                f"cannot connect to Postgres at {_redact(resolved)}: {reason}; check the dsn "
                "argument or $DURABLE_DATABASE_URL (e.g. postgresql://user:pass@host:5432/db)"
            )
            if isinstance(exc, UNAVAILABLE):
                raise DatabaseUnavailableError(
                    message, operation="connect", may_have_taken_effect=False
                ) from exc
            raise DurableError(message) from exc
        return cls(store, call_timeout)

    async def close(self) -> None:
        """Close the connections (the embedded database keeps running)."""
        await self.store.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ starting
    @overload
    async def start(
        self,
        workflow: WorkflowDefinition[Any, R],
        *args: Any,
        id: str | None = None,
        task_queue: str | None = None,
        id_reuse_policy: str = "allow_duplicate",
        id_conflict_policy: str = "fail",
        start_delay: timedelta | None = None,
        execution_timeout: timedelta | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> WorkflowHandle[R]: ...
    @overload
    async def start(
        self,
        workflow: str,
        *args: Any,
        id: str | None = None,
        task_queue: str | None = None,
        id_reuse_policy: str = "allow_duplicate",
        id_conflict_policy: str = "fail",
        start_delay: timedelta | None = None,
        execution_timeout: timedelta | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> WorkflowHandle[Any]: ...
    async def start(
        self,
        workflow: WorkflowDefinition[Any, Any] | str,
        *args: Any,
        id: str | None = None,
        task_queue: str | None = None,
        id_reuse_policy: str = "allow_duplicate",
        id_conflict_policy: str = "fail",
        start_delay: timedelta | None = None,
        execution_timeout: timedelta | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> WorkflowHandle[Any]:
        """Start a workflow (by function or registered name) and return its handle."""
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
        """Start ``request``; attempted again while the database is away, without a second
        run (each attempt opens the same run id, and one that committed is the start)."""
        run_id = str(uuid.uuid4())
        attempts = 0

        async def attempt() -> str:
            nonlocal attempts
            attempts += 1
            opened, _ = await self.store.start_workflow(request, run_id, signal, again=attempts > 1)
            return opened

        return await self._call(operation, request.workflow_id, attempt, writes=True)

    @overload
    async def execute(
        self, workflow: WorkflowDefinition[Any, R], *args: Any, **options: Any
    ) -> R: ...
    @overload
    async def execute(self, workflow: str, *args: Any, **options: Any) -> Any: ...
    async def execute(self, workflow: Any, *args: Any, **options: Any) -> Any:
        """Start a workflow and wait for its result."""
        handle = await self.start(workflow, *args, **options)
        return await handle.result()

    async def signal_with_start(
        self,
        workflow: WorkflowDefinition[Any, R] | str,
        *args: Any,
        id: str,
        signal: str,
        signal_args: tuple[Any, ...] = (),
        task_queue: str | None = None,
        start_delay: timedelta | None = None,
        execution_timeout: timedelta | None = None,
        attributes: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> WorkflowHandle[R]:
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
        request_id = _request_id(request_id)
        run_id = await self._start(request, (signal, payload, request_id), "signal_with_start")
        return WorkflowHandle(self, request.workflow_id, run_id, hint)

    async def _start_request(
        self,
        workflow: Any,
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
            id_reuse_policy=_check_choice("id_reuse_policy", id_reuse_policy, ID_REUSE_POLICIES),
            id_conflict_policy=_check_choice(
                "id_conflict_policy", id_conflict_policy, ID_CONFLICT_POLICIES
            ),
            start_delay=check_duration("start_delay", start_delay, allow_zero=True),
            execution_timeout=check_duration("execution_timeout", execution_timeout),
            attributes=check_attributes(attributes),
        )
        queue = task_queue or (definition.task_queue if definition else None)
        if definition is None:
            registered = await self._call(
                "start", workflow_id, lambda: self.store.registered_task_queue(name)
            )
            if registered is None:
                raise WorkflowNotFoundError(
                    f"no worker has registered a workflow named {name!r}; check the name, or "
                    "start a worker that serves it first (or pass the workflow function)"
                )
            queue = queue or registered
        request = dataclasses.replace(request, task_queue=queue or DEFAULT_TASK_QUEUE)
        return request, return_hint(definition.fn) if definition else Any

    # ------------------------------------------------------------------ handles and listing
    def get_handle(self, workflow_id: str, *, run_id: str | None = None) -> WorkflowHandle[Any]:
        """A handle to workflow ``workflow_id`` (its latest run unless ``run_id`` is given)."""
        return WorkflowHandle(self, check_name("workflow_id", workflow_id), run_id, Any)

    async def list(
        self,
        status: str | None = None,
        workflow_name: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        started_after: datetime | None = None,
    ) -> AsyncIterator[WorkflowDescription]:
        """Workflow runs matching every filter given, oldest first."""
        if workflow_name is not None:
            check_text("workflow_name", workflow_name)
        if status is not None:
            _check_choice("status", status, STATUSES)
        if started_after is not None and (
            not isinstance(started_after, datetime) or started_after.tzinfo is None
        ):
            raise ValueError(
                f"started_after must be a timezone-aware datetime, got {started_after!r}"
            )
        filters = check_attributes(attributes)
        after: tuple[datetime, str, str] | None = None
        while True:
            page = functools.partial(
                self.store.list_workflows,
                status=status,
                workflow_name=workflow_name,
                attributes=filters,
                started_after=started_after,
                after=after,
                limit=200,
            )
            rows = await self._call("list", None, page)
            for row in rows:
                yield _description(row, [])
            if len(rows) < 200:
                return
            last = rows[-1]
            after = (last.started_at, last.workflow_id, last.run_id)


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
        _check_timeout(seconds)
        try:
            async with asyncio.timeout(seconds):
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
                if row.status == "continued_as_new":
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
            value: R = decode(self._store.open_payload(row.result), self._hint)
            return value
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

    def _call(
        self, operation: str, attempt: Callable[[], Awaitable[T]], *, writes: bool = False
    ) -> Awaitable[T]:
        return self.client._call(operation, self.workflow_id, attempt, writes=writes)

    async def signal(self, name: str, *args: Any, request_id: str | None = None) -> None:
        """Send signal ``name``; raises WorkflowNotFoundError unless the run is open. Sent
        again with the same ``request_id`` (default: a new one), it is delivered once."""
        signal = functools.partial(
            self._store.signal,
            self.workflow_id,
            self.run_id,
            check_name("name", name),
            encode_args(args, {}),
            _request_id(request_id),
        )
        await self._call("signal", signal, writes=True)

    async def query(self, name: str, *args: Any, timeout: float = 30.0) -> Any:
        """Ask a worker to run the workflow's query handler ``name``."""
        _check_timeout(timeout)
        create = functools.partial(
            self._store.create_call,
            KIND_QUERY,
            self.workflow_id,
            self.run_id,
            check_name("name", name),
            encode_args(args, {}),
        )
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
        _check_timeout(timeout)
        create = functools.partial(
            self._store.create_call,
            KIND_UPDATE,
            self.workflow_id,
            self.run_id,
            check_name("name", name),
            encode_args(args, {}),
            _request_id(request_id),
        )
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
            _check_reason(reason),
            _request_id(request_id),
        )
        await self._call("cancel", cancel, writes=True)

    async def terminate(self, reason: str | None = None, *, request_id: str | None = None) -> None:
        """Stop the workflow at once; no workflow code runs any more. Applied once per
        ``request_id`` (default: a new one)."""
        terminate = functools.partial(
            self._store.terminate,
            self.workflow_id,
            self.run_id,
            _check_reason(reason),
            _request_id(request_id),
        )
        await self._call("terminate", terminate, writes=True)

    async def describe(self) -> WorkflowDescription:
        """The run's status, times, attributes, last error and pending activities."""
        return await self._call("describe", self._describe)

    async def _describe(self) -> WorkflowDescription:
        row = await self._run(self.run_id)
        pending = await self._store.pending_activities(self.workflow_id, row.run_id)
        failures = [_failure_message(self._store, p.last_failure) for p in pending]
        return _description(row, list(zip(pending, failures, strict=True)))

    async def history(self) -> list[HistoryEvent]:
        """The run's recorded history, oldest event first."""
        return await self._call("history", self._history)

    async def _history(self) -> list[HistoryEvent]:
        row = await self._run(self.run_id)
        events = await self._store.load_history(self.workflow_id, row.run_id)
        return [_history_event(e) for e in events]


def _description(
    row: RunRow, pending: list[tuple[PendingActivityRow, str | None]]
) -> WorkflowDescription:
    return WorkflowDescription(
        workflow_id=row.workflow_id,
        run_id=row.run_id,
        workflow_name=row.workflow_name,
        task_queue=row.task_queue,
        status=row.status,
        started_at=row.started_at,
        closed_at=row.closed_at,
        attributes=row.attributes,
        parent_workflow_id=row.parent_workflow_id,
        history_length=row.history_length,
        last_error=row.last_error,
        pending_activities=[_pending(p, last_failure) for p, last_failure in pending],
    )


def _pending(row: PendingActivityRow, last_failure: str | None) -> PendingActivity:
    return PendingActivity(
        activity_id=str(row.seq),
        activity_name=row.activity_name,
        attempt=row.attempt,
        state="running" if row.running else ("backoff" if row.attempt else "scheduled"),
        scheduled_at=row.scheduled_at,
        next_attempt_at=None if row.running else row.visible_at,
        last_failure=last_failure,
    )


def _failure_message(store: Store, sealed: bytes | None) -> str | None:
    """A stored failure's message, or a note saying which codec this client would need."""
    try:
        failure = store.open_failure(sealed)
    except PayloadError as exc:
        return f"(unreadable: {exc})"
    return None if failure is None else failure.get("message")


def _redact(dsn: str) -> str:
    """The DSN without its password, for error messages."""
    if "@" in dsn and "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in credentials else dsn
    return dsn
