"""WorkflowContext: everything workflow code may use. It delegates to a WorkflowRuntime,
the one seam between workflow code and the engine (the replayer implements it)."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn, Protocol, TypeVar, overload

from typing_extensions import ParamSpec

from ._definitions import (
    DEFAULT_RETRY_POLICY,
    ActivityDefinition,
    ActivityOptions,
    ActivityRef,
    RetryPolicy,
    WorkflowDefinition,
    activity_name,
    workflow_name,
)
from ._errors import TimeoutError as DurableTimeoutError
from ._flow import DEFAULT_PRIORITY
from ._loop import NumberedCoroutine
from ._serialization import check_args, encode_args, return_hint
from ._validate import check_name, to_seconds

P = ParamSpec("P")
R = TypeVar("R")


def _hashed_in_order(
    method: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """The coroutines a workflow API method returns hash by the order they were made in, not
    by address (see NumberedCoroutine): ``as_completed([ctx.activity(...), ...])`` then
    schedules them in the same order on every replay."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        return NumberedCoroutine(method(*args, **kwargs))

    return call


@dataclass(frozen=True)
class WorkflowInfo:
    workflow_id: str
    run_id: str
    workflow_name: str
    task_queue: str
    attempt: int
    started_at: datetime
    parent_workflow_id: str | None
    priority: int = DEFAULT_PRIORITY  # 1 highest .. 5 lowest: its activities' and children's


class ChildControl(Protocol):
    """What a child's handle needs from the engine."""

    def signal_child(self, seq: int, name: str, args: bytes) -> None: ...
    def cancel_child(self, seq: int) -> None: ...


class ChildWorkflowHandle(Awaitable[R]):
    """A started child workflow: await it for its result, signal or cancel it."""

    def __init__(self, runtime: ChildControl, seq: int, workflow_id: str, task: asyncio.Task[R]):
        self._runtime = runtime
        self._seq = seq
        self.workflow_id = workflow_id
        self._task = task

    def __await__(self) -> Generator[Any, None, R]:
        return self._task.__await__()

    def done(self) -> bool:
        """Whether the child closed (its outcome is known)."""
        return self._task.done()

    async def signal(self, name: str, *args: Any) -> None:
        """Send signal ``name`` to the child (recorded as CHILD_SIGNALED)."""
        self._runtime.signal_child(self._seq, name, encode_args(args, {}))

    def cancel(self) -> None:
        """Ask the child to cancel; awaiting the handle then raises ChildWorkflowError."""
        self._runtime.cancel_child(self._seq)


class WorkflowRuntime(Protocol):
    """What a WorkflowContext needs from the engine."""

    @property
    def info(self) -> WorkflowInfo: ...
    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]: ...

    @property
    def is_replaying(self) -> bool: ...
    def now(self) -> datetime: ...
    def random(self) -> random.Random: ...
    def start_activity(
        self, name: str, args: bytes, options: ActivityOptions, hint: Any, *, by_name: bool
    ) -> asyncio.Task[Any]: ...
    def local_activity(
        self,
        definition: ActivityDefinition[Any, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retry: RetryPolicy,
    ) -> asyncio.Future[Any]: ...
    def start_child(
        self,
        name: str,
        workflow_id: str | None,
        task_queue: str | None,
        args: bytes,
        hint: Any,
        *,
        by_name: bool,
        priority: int | None = None,
    ) -> ChildWorkflowHandle[Any]: ...
    def signal_child(self, seq: int, name: str, args: bytes) -> None: ...
    def cancel_child(self, seq: int) -> None: ...
    def wait_signal(self, name: str) -> asyncio.Future[Any]: ...
    def on_signal(self, name: str, handler: Callable[..., Any]) -> None: ...
    def on_query(self, name: str, handler: Callable[..., Any]) -> None: ...
    def on_update(
        self, name: str, handler: Callable[..., Any], validator: Callable[..., Any] | None
    ) -> None: ...
    def wait_until(self, predicate: Callable[[], bool]) -> asyncio.Future[None]: ...
    def side_effect(self, fn: Callable[[], Any]) -> Any: ...
    def patched(self, change_id: str, *, deprecated: bool) -> bool: ...
    def set_attributes(self, attributes: Mapping[str, Any]) -> None: ...
    def continue_as_new(self, args: bytes) -> NoReturn: ...


class WorkflowContext:
    """The first argument of every workflow function."""

    def __init__(self, runtime: WorkflowRuntime) -> None:
        self._runtime = runtime

    # -- information ------------------------------------------------------------------
    @property
    def info(self) -> WorkflowInfo:
        """Ids, name, task queue, attempt, start time and parent of this run."""
        return self._runtime.info

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger that adds the workflow and run ids, silent while replaying."""
        return self._runtime.logger

    @property
    def is_replaying(self) -> bool:
        """True while the code re-runs a step that history recorded (not a new one)."""
        return self._runtime.is_replaying

    def now(self) -> datetime:
        """The workflow's deterministic current time (UTC)."""
        return self._runtime.now()

    def random(self) -> random.Random:
        """A random generator seeded from history: the same numbers on every replay."""
        return self._runtime.random()

    def uuid4(self) -> uuid.UUID:
        """A random UUID drawn from ``random()``: the same on every replay."""
        return uuid.UUID(int=self._runtime.random().getrandbits(128), version=4)

    # -- activities -----------------------------------------------------------------------
    @overload
    def start_activity(
        self, fn: ActivityDefinition[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> asyncio.Task[R]: ...
    @overload
    def start_activity(
        self, fn: ActivityRef[R], /, *args: Any, **kwargs: Any
    ) -> asyncio.Task[R]: ...
    @overload
    def start_activity(self, fn: str, /, *args: Any, **kwargs: Any) -> asyncio.Task[Any]: ...
    def start_activity(self, fn: Any, /, *args: Any, **kwargs: Any) -> asyncio.Task[Any]:
        """Schedule an activity and return a task for its result (cancel it to cancel the
        activity). ``fn`` is an @activity function, a ``durable.activity_ref`` or a
        registered name; called by reference or name, the options it does not give are
        those the workers serving it registered."""
        if isinstance(fn, ActivityDefinition):
            name, options, hint, by_name = fn.name, fn.options, return_hint(fn.fn), False
        elif isinstance(fn, ActivityRef):
            name, options, hint, by_name = fn.name, fn.options, fn.returns, True
        else:
            name, options, hint, by_name = activity_name(fn), ActivityOptions(), Any, True
        return self._runtime.start_activity(
            name, encode_args(args, kwargs), options, hint, by_name=by_name
        )

    @overload
    async def activity(
        self, fn: ActivityDefinition[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R: ...
    @overload
    async def activity(self, fn: ActivityRef[R], /, *args: Any, **kwargs: Any) -> R: ...
    @overload
    async def activity(self, fn: str, /, *args: Any, **kwargs: Any) -> Any: ...
    @_hashed_in_order
    async def activity(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Run an activity and wait for its result; raises ActivityError when it fails for good."""
        return await self.start_activity(fn, *args, **kwargs)

    @_hashed_in_order
    async def local_activity(
        self, fn: ActivityDefinition[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Run ``fn`` in this worker process, recording only its result (at least once)."""
        if isinstance(fn, ActivityRef):
            raise TypeError(
                f"ctx.local_activity runs the function in this worker, and {fn!r} refers to "
                "an activity another service serves: call it with ctx.activity"
            )
        if not isinstance(fn, ActivityDefinition):
            raise TypeError(
                f"ctx.local_activity needs an @activity function, got {fn!r}; "
                "decorate it with @durable.activity"
            )
        encode_args(args, kwargs)  # refuse unserializable arguments at the call site
        retry = fn.options.retry or DEFAULT_RETRY_POLICY
        result: R = await self._runtime.local_activity(fn, args, dict(kwargs), retry)
        return result

    # -- timers -------------------------------------------------------------------------
    @_hashed_in_order
    async def sleep(self, duration: float | timedelta) -> None:
        """A durable timer: survives worker restarts."""
        seconds = to_seconds(duration, "duration")
        if seconds < 0:
            raise ValueError(f"duration must not be negative, got {duration!r}")
        await asyncio.sleep(seconds)

    @_hashed_in_order
    async def sleep_until(self, when: datetime) -> None:
        """A durable timer until ``when`` (timezone-aware)."""
        if not isinstance(when, datetime) or when.tzinfo is None:
            raise TypeError(f"when must be a timezone-aware datetime, got {when!r}")
        await asyncio.sleep(max(0.0, (when - self.now()).total_seconds()))

    # -- signals, queries, updates, conditions ------------------------------------------------
    @_hashed_in_order
    async def wait_signal(self, name: str, timeout: float | timedelta | None = None) -> Any:
        """The next payload of signal ``name``; raises asyncio.TimeoutError on timeout."""
        future = self._runtime.wait_signal(check_name("name", name))
        if timeout is None:
            return await future
        return await _wait_for(future, timeout, f"signal {name!r}")

    def on_signal(self, name: str, handler: Callable[..., Any]) -> None:
        """Call ``handler(*args)`` (sync or async) for every signal ``name``, in arrival
        order; signals sent before it was registered reach it too. A signal whose arguments
        do not fit the handler is dropped (SIGNAL_DROPPED)."""
        self._runtime.on_signal(check_name("name", name), _callable(handler, "handler"))

    def on_query(self, name: str, fn: Callable[..., Any]) -> None:
        """Answer ``handle.query(name, *args)`` with ``fn(*args)``, which must only read."""
        self._runtime.on_query(check_name("name", name), _callable(fn, "fn"))

    def on_update(
        self,
        name: str,
        handler: Callable[..., Any],
        validator: Callable[..., Any] | None = None,
    ) -> None:
        """Run ``handler(*args)`` (sync or async) for ``handle.update(name, *args)`` and return
        its result to the caller; ``validator(*args)`` may reject it (by raising) before it
        is recorded."""
        if validator is not None:
            _callable(validator, "validator")
        self._runtime.on_update(check_name("name", name), _callable(handler, "handler"), validator)

    @_hashed_in_order
    async def wait_until(
        self, predicate: Callable[[], bool], timeout: float | timedelta | None = None
    ) -> None:
        """Resume once ``predicate()`` is true (checked after every event)."""
        future = self._runtime.wait_until(_callable(predicate, "predicate"))
        if timeout is None:
            await future
        else:
            await _wait_for(future, timeout, "the wait_until condition")

    # -- child workflows -------------------------------------------------------------------
    @overload
    def start_child(
        self, workflow: WorkflowDefinition[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> ChildWorkflowHandle[R]: ...
    @overload
    def start_child(
        self, workflow: str, /, *args: Any, **kwargs: Any
    ) -> ChildWorkflowHandle[Any]: ...
    def start_child(
        self, workflow: WorkflowDefinition[Any, Any] | str, /, *args: Any, **kwargs: Any
    ) -> ChildWorkflowHandle[Any]:
        """Start a child workflow; returns a handle at once. Its arguments (positional or
        by keyword) are checked against the workflow's parameters by type checkers.

        Options (id, task_queue, priority) come from ``workflow.with_options(...)``.
        """
        name = workflow_name(workflow)
        definition = workflow if isinstance(workflow, WorkflowDefinition) else None
        payload = encode_args(args, kwargs)
        if definition is not None:  # refused here rather than failing the child as it starts
            what = f"child workflow {definition.name!r}"
            check_args(definition.fn, args, kwargs, payload, what=what, skip_first=True)
        hint = return_hint(definition.fn) if definition else Any
        return self._runtime.start_child(
            name,
            definition.id if definition else None,
            definition.task_queue if definition else None,
            payload,
            hint,
            by_name=definition is None,
            priority=definition.priority if definition else None,
        )

    @overload
    async def child(
        self, workflow: WorkflowDefinition[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R: ...
    @overload
    async def child(self, workflow: str, /, *args: Any, **kwargs: Any) -> Any: ...
    @_hashed_in_order
    async def child(
        self, workflow: WorkflowDefinition[Any, Any] | str, /, *args: Any, **kwargs: Any
    ) -> Any:
        """Run a child workflow and wait for its result; raises ChildWorkflowError."""
        return await self.start_child(workflow, *args, **kwargs)

    # -- recorded values, versioning ------------------------------------------------------
    @_hashed_in_order
    async def side_effect(self, fn: Callable[[], R]) -> R:
        """Run ``fn()`` once, record its value, and return the recorded value on replay."""
        result: R = self._runtime.side_effect(_callable(fn, "fn"))
        return result

    def patched(self, change_id: str) -> bool:
        """True on new runs (recorded), and on replays of runs that passed this point with
        the new code; False where an old run passed it with the old code."""
        return self._runtime.patched(check_name("change_id", change_id), deprecated=False)

    def deprecate_patch(self, change_id: str) -> None:
        """Take the new branch for good, while runs that recorded the patch still replay."""
        self._runtime.patched(check_name("change_id", change_id), deprecated=True)

    def set_attributes(self, **attributes: Any) -> None:
        """Searchable key/values, for ``client.list(attributes=...)``."""
        self._runtime.set_attributes(attributes)

    def continue_as_new(self, *args: Any) -> NoReturn:
        """End this run and start a fresh run of the same workflow id with a new history."""
        self._runtime.continue_as_new(encode_args(args, {}))


async def _wait_for(future: asyncio.Future[Any], timeout: float | timedelta, what: str) -> Any:
    seconds = to_seconds(timeout, "timeout")
    try:
        return await asyncio.wait_for(future, seconds)
    except TimeoutError:
        raise DurableTimeoutError(f"timed out after {seconds:g} s waiting for {what}") from None


def _callable(fn: Any, arg: str) -> Any:
    if not callable(fn):
        raise TypeError(f"{arg} must be callable, got {fn!r}")
    return fn
