"""The client: connects, starts workflows, lists them, hands out handles."""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import functools
import hashlib
import typing
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, Unpack, overload

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from .._codecs import Codecs, PayloadCodec
from .._embedded import embedded_dsn, resolve_dsn, resolve_listen_dsn
from .._errors import DatabaseUnavailableError, DurableError
from .._serialization import encode_args
from .._store import (
    CONNECT_FAILED,
    UNAVAILABLE,
    Cursor,
    StartRequest,
    Store,
)
from .._telemetry import Telemetry, carrier
from .._validate import (
    check_name,
    check_reason,
    check_run_id,
    check_seq,
    check_timeout,
)
from .descriptions import (
    WorkflowDescription,
    description,
)
from .handle import WorkflowHandle
from .operations import Operations, list_filter
from .queues import QueueMethods
from .requests import request_id_of
from .schedules import ScheduleMethods
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


class Client(Operations, ScheduleMethods, QueueMethods):
    """A connection to the durable database. Create it with ``await Client.connect()``.

    Every call it makes (and every call of its handles) finishes within ``call_timeout``
    seconds whatever the database does: a database that cannot be reached raises
    ``DatabaseUnavailableError``, one that does not answer ``durable.TimeoutError``. While the
    database is away, calls are attempted again within that time; writes are applied once
    (each carries a request id)."""

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
        priority: int | None = None,
        debounce: timedelta | None = None,
        debounce_max: timedelta | None = None,
    ) -> WorkflowHandle[Any]:
        """Start a workflow (by function or registered name) and return its handle.
        ``priority``: 1 (highest) .. 5 (lowest), default 3 (or the definition's): its
        workflow tasks, activities and children are claimed in that order.

        Type checkers check the arguments against the workflow function's parameters (up to
        four arguments; see ``signatures.py``), and type the handle's result by its return.

        ``debounce`` (needs ``id``): while the run of ``id`` that a debounced start opened
        has not begun, a later debounced start of it replaces that run's arguments,
        attributes and execution timeout, and moves its start to ``debounce`` from now, but
        never later than ``debounce_max`` (None: no cap) after the first; the handle is that
        run's. Once it has begun, a start follows the id policies."""
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
            priority,
            debounce,
            debounce_max,
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
        priority: int | None = None,
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
            priority,
        )
        request_id = request_id_of(request_id)
        run_id = await self._start(request, (signal, payload, request_id), "signal_with_start")
        return WorkflowHandle(self, request.workflow_id, run_id, hint)

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
