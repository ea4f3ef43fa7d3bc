"""The replayer: runs workflow code on a deterministic loop against its history.

A WorkflowInstance is built from recorded events. ``replay()`` walks them: each command
the code issues must match the recorded command at the same position (else
NondeterminismError); each recorded incoming event is delivered where it was delivered
originally. After replay the instance is live: ``deliver()`` feeds new incoming events
and commands become new events, collected for the worker to commit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import inspect
import logging
import random
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from ._context import ChildWorkflowHandle, WorkflowContext, WorkflowInfo
from ._definitions import (
    ActivityDefinition,
    ActivityOptions,
    RetryPolicy,
    WorkflowDefinition,
    check_attributes,
)
from ._errors import (
    ActivityError,
    ChildWorkflowError,
    NondeterminismError,
    PayloadError,
    QueryError,
    UpdateError,
    WorkflowError,
)
from ._events import IDENTITY_KEYS, Event, EventType
from ._failures import Failure, from_failure, to_failure
from ._loop import DurableTimerHandle, WorkflowEventLoop
from ._serialization import decode, decode_args, encode, return_hint

E = EventType
_MAX_TIMER_SECONDS = 100 * 365 * 24 * 3600.0
_log = logging.getLogger("durable.workflow")


class _ContinueAsNew(BaseException):
    """Unwinds the workflow function for ctx.continue_as_new (not catchable as Exception)."""

    def __init__(self, args: bytes) -> None:
        super().__init__("continue as new")
        self.payload = args


@dataclass
class _Awaited:
    """An activity or child workflow whose outcome the code is waiting for."""

    future: asyncio.Future[Any]
    hint: Any
    name: str
    cancel_requested: bool = False


@dataclass
class LocalActivityCall:
    local_id: int
    definition: ActivityDefinition[Any, Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    retry: RetryPolicy
    future: asyncio.Future[Any]
    hint: Any
    started: bool = False


@dataclass
class _Condition:
    predicate: Callable[[], bool]
    future: asyncio.Future[None]


@dataclass
class _UpdateHandler:
    handler: Callable[..., Any]
    validator: Callable[..., Any] | None


class _ReplayAwareLogger(logging.LoggerAdapter[logging.Logger]):
    def __init__(self, instance: WorkflowInstance) -> None:
        super().__init__(_log, {})
        self._instance = instance

    def isEnabledFor(self, level: int) -> bool:
        return not self._instance.is_replaying and super().isEnabledFor(level)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        info = self._instance.info
        extra = kwargs.setdefault("extra", {})
        extra.update(workflow_id=info.workflow_id, run_id=info.run_id)
        return f"[{info.workflow_name} {info.workflow_id}] {msg}", kwargs


def _now_utc() -> datetime:
    return datetime.now(UTC)


def _signal_value(args: list[Any]) -> Any:
    """What wait_signal returns for a signal sent with ``args``: None, the value, or a tuple."""
    positional = args[0]
    if not positional:
        return None
    return positional[0] if len(positional) == 1 else tuple(positional)


class WorkflowInstance:
    """One run of a workflow in memory; implements the WorkflowRuntime protocol."""

    def __init__(
        self,
        definition: WorkflowDefinition[Any, Any],
        workflow_id: str,
        run_id: str,
        history: list[Event],
        *,
        resumed: bool = True,
    ) -> None:
        if not history or history[0].type is not E.WORKFLOW_STARTED:
            raise NondeterminismError(
                f"history of {workflow_id}/{run_id} does not begin with WORKFLOW_STARTED"
            )
        started = history[0]
        self.definition = definition
        self.info = WorkflowInfo(
            workflow_id=workflow_id,
            run_id=run_id,
            workflow_name=started.attrs["name"],
            task_queue=started.attrs["task_queue"],
            attempt=started.attrs.get("attempt", 1),
            started_at=started.timestamp,
            parent_workflow_id=started.attrs.get("parent_workflow_id"),
        )
        self.logger = _ReplayAwareLogger(self)
        self.loop = WorkflowEventLoop(self, started.timestamp.timestamp())
        self.ctx = WorkflowContext(self)
        self._recorded = history
        self._position = 0
        self.next_seq = history[-1].seq + 1
        self.new_events: list[Event] = []
        self.rejected_updates: list[tuple[str, Failure]] = []
        self.closed = False
        self._main: asyncio.Task[Any] | None = None
        self._nondeterminism: NondeterminismError | None = None
        self._awaited: dict[int, _Awaited] = {}
        self._timers: dict[int, DurableTimerHandle] = {}
        self._locals: dict[int, LocalActivityCall] = {}
        self._local_count = 0
        self._child_count = 0
        self._signal_buffers: dict[str, collections.deque[bytes]] = {}
        self._signal_waiters: dict[str, collections.deque[asyncio.Future[Any]]] = {}
        self._signal_handlers: dict[str, Callable[..., Any]] = {}
        self._query_handlers: dict[str, Callable[..., Any]] = {}
        self._update_handlers: dict[str, _UpdateHandler] = {}
        self._conditions: list[_Condition] = []
        self._patches: dict[str, bool] = {}
        self._random: random.Random | None = None
        self._execution_deadline: float | None = started.attrs.get("execution_deadline")
        # Replaying means re-running code that ran before: known when the history holds more
        # than its start event, or when a worker already ran the run (``resumed``).
        self._replaying = resumed or len(history) > 1

    # ---------------------------------------------------------------- driving
    def replay(self) -> None:
        """Deliver every recorded event, checking the commands the code issues against them."""
        while self._position < len(self._recorded):
            event = self._recorded[self._position]
            if event.type.is_command:
                if event.type is E.PATCH:  # marker of a patch the code no longer checks
                    self._position += 1
                    continue
                raise NondeterminismError(
                    f"workflow {self.info.workflow_name!r} ({self.info.workflow_id}): history has "
                    f"{event.describe()} but the code did not issue it; the workflow code changed "
                    "incompatibly (use ctx.patched() to change running workflows)"
                )
            self._position += 1
            self._apply(event)
            self._run()
        self._recorded = []
        self._replaying = False

    def deliver(self, etype: EventType, attrs: dict[str, Any]) -> None:
        """Record a new incoming event and let the workflow react to it."""
        if self.closed:
            return
        if etype is E.UPDATE_ACCEPTED:
            rejection = self._validate_update(attrs)
            if rejection is not None:
                self.rejected_updates.append((attrs["update_id"], rejection))
                return
        event = Event(self.next_seq, etype, _now_utc(), attrs)
        self.next_seq += 1
        self.new_events.append(event)
        self._apply(event)
        self._run()

    def apply_recorded(self, event: Event) -> None:
        """Let the workflow react to an incoming event the store recorded already (a fired
        timer): like ``deliver``, but the event is history, not new."""
        if event.seq != self.next_seq:
            raise NondeterminismError(
                f"workflow {self.info.workflow_id}: {event.describe()} was recorded at seq "
                f"{event.seq}, the instance is at {self.next_seq}"
            )
        self.next_seq += 1
        self._apply(event)
        self._run()

    def take_new_events(self) -> tuple[list[Event], list[tuple[str, Failure]]]:
        events, rejected = self.new_events, self.rejected_updates
        self.new_events, self.rejected_updates = [], []
        return events, rejected

    def next_due(self) -> datetime | None:
        """When the earliest pending timer (or the execution deadline) comes due."""
        times = [handle.when() for handle in self._timers.values()]
        if self._execution_deadline is not None:
            times.append(self._execution_deadline)
        return datetime.fromtimestamp(min(times), tz=UTC) if times else None

    @property
    def started_children(self) -> bool:
        """Whether this run ever started a child workflow (which may still be open)."""
        return self._child_count > 0

    @property
    def runs_local_activities(self) -> bool:
        return any(not call.future.done() for call in self._locals.values())

    def unstarted_local_activities(self) -> list[LocalActivityCall]:
        calls = [c for c in self._locals.values() if not c.started and not c.future.done()]
        for call in calls:
            call.started = True
        return calls

    def _run(self) -> None:
        while True:
            self.loop.run_until_idle()
            if self._nondeterminism is not None:
                raise self._nondeterminism
            if not self._resolve_conditions():
                return

    def _resolve_conditions(self) -> bool:
        resolved = False
        for condition in list(self._conditions):
            if condition.future.done():
                self._conditions.remove(condition)
                continue
            try:
                ready = condition.predicate()
            except Exception as exc:
                condition.future.set_exception(exc)
                ready = True
            else:
                if ready:
                    condition.future.set_result(None)
            if ready:
                self._conditions.remove(condition)
                resolved = True
        return resolved

    # ---------------------------------------------------------------- commands
    @property
    def is_replaying(self) -> bool:
        """True while re-running recorded history (including the code after its last event)."""
        return self._replaying

    @property
    def _matching(self) -> bool:
        """Whether commands are matched against recorded ones (else they are recorded)."""
        return self._position < len(self._recorded)

    def _command(self, etype: EventType, attrs: dict[str, Any]) -> Event:
        """Issue a command: on replay match it against history, live record it."""
        if self.closed and not etype.is_terminal:
            raise WorkflowError(f"{etype.name} issued after the workflow finished")
        while self._matching:
            recorded = self._recorded[self._position]
            if recorded.type is E.PATCH and etype is not E.PATCH:
                self._position += 1
                continue
            keys = IDENTITY_KEYS.get(etype, ())
            if recorded.type is not etype or any(
                recorded.attrs.get(k) != attrs.get(k) for k in keys
            ):
                issued = Event(recorded.seq, etype, recorded.timestamp, attrs)
                self._nondeterminism = NondeterminismError(
                    f"workflow {self.info.workflow_name!r} ({self.info.workflow_id}): the code "
                    f"issued {issued.describe()} but history has {recorded.describe()}; the "
                    "workflow code changed incompatibly (use ctx.patched() to change running "
                    "workflows)"
                )
                raise self._nondeterminism
            self._position += 1
            return recorded
        event = Event(self.next_seq, etype, _now_utc(), attrs)
        self.next_seq += 1
        self.new_events.append(event)
        return event

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.loop.time(), tz=UTC)

    def random(self) -> random.Random:
        if self._random is None:
            seed = int.from_bytes(self.info.run_id.encode(), "big")
            self._random = random.Random(seed)
        return self._random

    def start_activity(
        self, name: str, args: bytes, options: ActivityOptions, hint: Any
    ) -> asyncio.Task[Any]:
        attrs = {
            "name": name,
            "task_queue": options.task_queue or self.info.task_queue,
            "args": args,
            "retry": options.retry.to_dict() if options.retry else None,
            "start_to_close": _seconds_or_none(options.start_to_close_timeout),
            "schedule_to_close": _seconds_or_none(options.schedule_to_close_timeout),
            "heartbeat": _seconds_or_none(options.heartbeat_timeout),
        }
        seq = self._command(E.ACTIVITY_SCHEDULED, attrs).seq
        future = self.loop.create_future()
        self._awaited[seq] = _Awaited(future, hint, name)
        return self.loop.create_task(
            self._await_outcome(seq, future, E.ACTIVITY_CANCEL_REQUESTED), name=f"activity:{name}"
        )

    async def _await_outcome(
        self, seq: int, future: asyncio.Future[Any], cancel_command: EventType
    ) -> Any:
        try:
            return await future
        except asyncio.CancelledError:
            awaited = self._awaited.get(seq)
            if awaited is not None and not awaited.cancel_requested and not self.closed:
                awaited.cancel_requested = True
                self._command(cancel_command, {"scheduled": seq})
            raise

    async def _await_child(self, seq: int, future: asyncio.Future[Any]) -> Any:
        """Await a child; when cancelled, ask the child to cancel and wait until it closed."""
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if not future.done() and not self.closed:
                self.cancel_child(seq)
                with contextlib.suppress(Exception):
                    await future
            raise

    def local_activity(
        self,
        definition: ActivityDefinition[Any, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retry: RetryPolicy,
    ) -> asyncio.Future[Any]:
        self._local_count += 1
        future = self.loop.create_future()
        self._locals[self._local_count] = LocalActivityCall(
            self._local_count,
            definition,
            args,
            kwargs,
            retry,
            future,
            return_hint(definition.fn),
        )
        return future

    def timer_started(self, handle: DurableTimerHandle) -> None:
        if not handle.when() - self.loop.time() <= _MAX_TIMER_SECONDS:  # also refuses nan
            raise ValueError(
                f"a timer {handle.when() - self.loop.time()} s from now cannot be stored; "
                "durable timers are at most 100 years long"
            )
        handle.seq = self._command(E.TIMER_STARTED, {"fire_at": handle.when()}).seq
        self._timers[handle.seq] = handle

    def timer_cancelled(self, handle: DurableTimerHandle) -> None:
        if self._timers.pop(handle.seq, None) is not None and not self.closed:
            self._command(E.TIMER_CANCELLED, {"started": handle.seq})

    def start_child(
        self, name: str, workflow_id: str | None, task_queue: str | None, args: bytes, hint: Any
    ) -> ChildWorkflowHandle[Any]:
        self._child_count += 1
        child_id = workflow_id or f"{self._child_id_prefix()}/{self._child_count}"
        attrs = {
            "name": name,
            "workflow_id": child_id,
            "task_queue": task_queue or self.info.task_queue,
            "args": args,
        }
        seq = self._command(E.CHILD_SCHEDULED, attrs).seq
        future = self.loop.create_future()
        self._awaited[seq] = _Awaited(future, hint, name)
        task = self.loop.create_task(self._await_child(seq, future), name=f"child:{child_id}")
        return ChildWorkflowHandle(self, seq, child_id, task)

    def _child_id_prefix(self) -> str:
        parent = self.info.workflow_id
        if len(parent.encode()) > 900:  # keep default child ids within the id size limit
            parent = hashlib.sha256(parent.encode()).hexdigest()
        return f"{parent}/{self.info.run_id[:8]}"

    def signal_child(self, seq: int, name: str, args: bytes) -> None:
        self._command(E.CHILD_SIGNALED, {"scheduled": seq, "name": name, "args": args})

    def cancel_child(self, seq: int) -> None:
        awaited = self._awaited.get(seq)
        if awaited is not None and not awaited.cancel_requested:
            awaited.cancel_requested = True
            self._command(E.CHILD_CANCEL_REQUESTED, {"scheduled": seq})

    def wait_signal(self, name: str) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self.loop.create_future()
        buffered = self._signal_buffers.get(name)
        if buffered:
            _set_decoded(future, buffered.popleft(), Any, transform=_signal_value)
        else:
            self._signal_waiters.setdefault(name, collections.deque()).append(future)
        return future

    def on_signal(self, name: str, handler: Callable[..., Any]) -> None:
        self._signal_handlers[name] = handler
        buffered = self._signal_buffers.pop(name, None)
        while buffered:
            self._call_signal_handler(handler, buffered.popleft())

    def on_query(self, name: str, handler: Callable[..., Any]) -> None:
        self._query_handlers[name] = handler

    def on_update(
        self, name: str, handler: Callable[..., Any], validator: Callable[..., Any] | None
    ) -> None:
        self._update_handlers[name] = _UpdateHandler(handler, validator)

    def wait_until(self, predicate: Callable[[], bool]) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self.loop.create_future()
        self._conditions.append(_Condition(predicate, future))
        return future

    def side_effect(self, fn: Callable[[], Any]) -> Any:
        hint = return_hint(fn)
        if self._matching:
            return decode(self._command(E.SIDE_EFFECT, {}).attrs["value"], hint)
        value = fn()
        if inspect.isawaitable(value):
            raise WorkflowError("ctx.side_effect needs a plain function; it returned an awaitable")
        payload = encode(value)
        self._command(E.SIDE_EFFECT, {"value": payload})
        return decode(payload, hint)

    def patched(self, change_id: str, *, deprecated: bool) -> bool:
        if change_id in self._patches:
            return self._patches[change_id]
        if self._matching:
            recorded = self._recorded[self._position]
            taken = recorded.type is E.PATCH and recorded.attrs.get("change_id") == change_id
            if taken:
                self._position += 1
        else:
            taken = True
            if not deprecated:
                self._command(E.PATCH, {"change_id": change_id})
        self._patches[change_id] = taken
        return taken

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self._command(E.ATTRIBUTES_SET, {"attributes": check_attributes(attributes)})

    def continue_as_new(self, args: bytes) -> NoReturn:
        raise _ContinueAsNew(args)

    # ---------------------------------------------------------------- queries, updates
    def query(self, name: str, args: bytes) -> bytes:
        handler = self._query_handlers.get(name)
        if handler is None:
            known = ", ".join(sorted(self._query_handlers)) or "none"
            raise QueryError(
                f"workflow {self.info.workflow_id!r} has no query handler {name!r} "
                f"(registered: {known}); register one with ctx.on_query({name!r}, fn)"
            )
        positional, keywords = decode_args(args, handler)
        try:
            result = handler(*positional, **keywords)
        except Exception as exc:
            raise QueryError(f"query {name!r} raised {type(exc).__name__}: {exc}") from exc
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise QueryError(f"query handler {name!r} must not be async (queries cannot await)")
        return encode(result)

    def _validate_update(self, attrs: dict[str, Any]) -> Failure | None:
        registered = self._update_handlers.get(attrs["name"])
        if registered is None:
            known = ", ".join(sorted(self._update_handlers)) or "none"
            return to_failure(
                UpdateError(
                    f"workflow {self.info.workflow_id!r} has no update handler {attrs['name']!r} "
                    f"(registered: {known})"
                )
            )
        if registered.validator is None:
            return None
        try:
            positional, keywords = decode_args(attrs["args"], registered.validator)
            registered.validator(*positional, **keywords)
        except Exception as exc:
            return to_failure(exc)
        return None

    # ---------------------------------------------------------------- incoming events
    def _apply(self, event: Event) -> None:
        self.loop.advance_to(event.timestamp.timestamp())
        apply = self._APPLY.get(event.type)
        if apply is None:
            raise NondeterminismError(f"unexpected incoming event {event.describe()}")
        apply(self, event.attrs)

    def _on_started(self, attrs: dict[str, Any]) -> None:
        try:
            positional, keywords = decode_args(attrs["args"], self.definition.fn, skip_first=True)
            body = self.definition.fn(self.ctx, *positional, **keywords)
        except (PayloadError, TypeError) as exc:  # arguments that do not fit the function
            self._close(E.WORKFLOW_FAILED, {"failure": to_failure(exc)})
            return
        self._main = self.loop.create_task(body, name="workflow")
        self._main.add_done_callback(self._on_main_done)

    def _on_main_done(self, task: asyncio.Task[Any]) -> None:
        if self.closed or self._nondeterminism is not None:
            return
        if task.cancelled():
            self._close(E.WORKFLOW_CANCELLED, {})
            return
        exc = task.exception()
        if isinstance(exc, NondeterminismError):
            self._nondeterminism = exc
        elif isinstance(exc, _ContinueAsNew):
            self._close(E.WORKFLOW_CONTINUED_AS_NEW, {"args": exc.payload})
        elif isinstance(exc, asyncio.CancelledError):
            self._close(E.WORKFLOW_CANCELLED, {})
        elif exc is not None:
            self._close(E.WORKFLOW_FAILED, {"failure": to_failure(exc)})
        else:
            try:
                payload = encode(task.result())
            except PayloadError as error:
                self._close(E.WORKFLOW_FAILED, {"failure": to_failure(error)})
            else:
                self._close(E.WORKFLOW_COMPLETED, {"result": payload})

    def _close(self, etype: EventType, attrs: dict[str, Any]) -> None:
        self._command(etype, attrs)
        self.closed = True

    def _fail_from_handler(self, exc: BaseException) -> None:
        if not self.closed and self._nondeterminism is None:
            if isinstance(exc, NondeterminismError):
                self._nondeterminism = exc
            else:
                self._close(E.WORKFLOW_FAILED, {"failure": to_failure(exc)})

    def _resolve(self, seq: int, outcome: Callable[[_Awaited], None]) -> None:
        awaited = self._awaited.pop(seq, None)
        if awaited is not None and not awaited.future.done():
            outcome(awaited)

    def _on_activity_completed(self, attrs: dict[str, Any]) -> None:
        self._resolve(attrs["scheduled"], lambda a: _set_decoded(a.future, attrs["result"], a.hint))

    def _on_activity_failed(self, attrs: dict[str, Any]) -> None:
        def fail(awaited: _Awaited) -> None:
            error = from_failure(attrs["failure"])
            if not isinstance(error, ActivityError):
                error = ActivityError(
                    f"activity {awaited.name!r} failed", error, activity_name=awaited.name
                )
            awaited.future.set_exception(error)

        self._resolve(attrs["scheduled"], fail)

    def _on_child_completed(self, attrs: dict[str, Any]) -> None:
        self._resolve(attrs["scheduled"], lambda a: _set_decoded(a.future, attrs["result"], a.hint))

    def _on_child_failed(self, attrs: dict[str, Any]) -> None:
        def fail(awaited: _Awaited) -> None:
            cause = from_failure(attrs["failure"])
            message = f"child workflow {attrs.get('workflow_id', '')!r} ({awaited.name}) " + str(
                attrs.get("reason") or "failed"
            )
            awaited.future.set_exception(
                ChildWorkflowError(message, cause, workflow_id=attrs.get("workflow_id", ""))
            )

        self._resolve(attrs["scheduled"], fail)

    def _on_local_activity_done(self, attrs: dict[str, Any]) -> None:
        local_id = attrs["local_id"]
        call = self._locals.pop(local_id, None)
        if local_id > self._local_count or (
            call is not None and call.definition.name != attrs["name"]
        ):
            self._nondeterminism = NondeterminismError(
                f"history has a result of local activity #{local_id} {attrs['name']!r} that the "
                "workflow code did not run at this point"
            )
            return
        if call is None or call.future.done():
            return
        if "failure" in attrs:
            call.future.set_exception(from_failure(attrs["failure"]))
        else:
            _set_decoded(call.future, attrs["result"], call.hint)

    def _on_timer_fired(self, attrs: dict[str, Any]) -> None:
        handle = self._timers.pop(attrs["started"], None)
        if handle is not None:
            self.loop.fire(handle)

    def _on_signal(self, attrs: dict[str, Any]) -> None:
        name, args = attrs["name"], attrs["args"]
        handler = self._signal_handlers.get(name)
        if handler is not None:
            self._call_signal_handler(handler, args)
            return
        waiters = self._signal_waiters.get(name)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                _set_decoded(waiter, args, Any, transform=_signal_value)
                return
        self._signal_buffers.setdefault(name, collections.deque()).append(args)

    def _call_signal_handler(self, handler: Callable[..., Any], args: bytes) -> None:
        try:
            positional, keywords = decode_args(args, handler)
            result = handler(*positional, **keywords)
        except Exception as exc:
            self._fail_from_handler(exc)
            return
        if inspect.isawaitable(result):
            self._watch_handler_task(self.loop.create_task(_await(result), name="signal handler"))

    def _watch_handler_task(self, task: asyncio.Task[Any]) -> None:
        def done(t: asyncio.Task[Any]) -> None:
            if not t.cancelled() and t.exception() is not None:
                self._fail_from_handler(t.exception())  # type: ignore[arg-type]

        task.add_done_callback(done)

    def _on_update_accepted(self, attrs: dict[str, Any]) -> None:
        registered = self._update_handlers.get(attrs["name"])
        if registered is None:
            self._nondeterminism = NondeterminismError(
                f"history has an accepted update {attrs['name']!r} but the workflow code "
                "registered no handler for it"
            )
            return
        self.loop.create_task(
            self._run_update(attrs["update_id"], registered.handler, attrs["args"]),
            name=f"update:{attrs['name']}",
        )

    async def _run_update(self, update_id: str, handler: Callable[..., Any], args: bytes) -> None:
        try:
            positional, keywords = decode_args(args, handler)
            result = handler(*positional, **keywords)
            if inspect.isawaitable(result):
                result = await result
            outcome: dict[str, Any] = {"update_id": update_id, "result": encode(result)}
        except NondeterminismError:
            raise
        except Exception as exc:
            outcome = {"update_id": update_id, "failure": to_failure(exc)}
        if not self.closed:
            self._command(E.UPDATE_COMPLETED, outcome)

    def _on_cancel_requested(self, attrs: dict[str, Any]) -> None:
        if self._main is not None and not self._main.done():
            self._main.cancel(attrs.get("reason"))

    def _on_closed_externally(self, attrs: dict[str, Any]) -> None:
        self.closed = True

    _APPLY: dict[EventType, Callable[[WorkflowInstance, dict[str, Any]], None]] = {
        E.WORKFLOW_STARTED: _on_started,
        E.ACTIVITY_COMPLETED: _on_activity_completed,
        E.ACTIVITY_FAILED: _on_activity_failed,
        E.LOCAL_ACTIVITY_COMPLETED: _on_local_activity_done,
        E.LOCAL_ACTIVITY_FAILED: _on_local_activity_done,
        E.CHILD_COMPLETED: _on_child_completed,
        E.CHILD_FAILED: _on_child_failed,
        E.TIMER_FIRED: _on_timer_fired,
        E.SIGNAL_RECEIVED: _on_signal,
        E.UPDATE_ACCEPTED: _on_update_accepted,
        E.CANCEL_REQUESTED: _on_cancel_requested,
        E.WORKFLOW_TERMINATED: _on_closed_externally,
        E.WORKFLOW_TIMED_OUT: _on_closed_externally,
    }


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _set_decoded(
    future: asyncio.Future[Any],
    payload: bytes,
    hint: Any,
    transform: Callable[[Any], Any] | None = None,
) -> None:
    try:
        value = decode(payload, hint)
    except PayloadError as exc:
        future.set_exception(exc)
        return
    future.set_result(transform(value) if transform else value)


def _seconds_or_none(value: Any) -> float | None:
    return value.total_seconds() if value is not None else None
