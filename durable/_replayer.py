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
import functools
import hashlib
import inspect
import logging
import random
from collections.abc import Callable, Mapping, MutableMapping, Sequence
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
    WorkflowCancelledError,
    WorkflowError,
)
from ._events import COMMANDS, IDENTITY_KEYS, TERMINAL, Event, EventType
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
    stopping: bool = False  # its await was cancelled: the worker stops the function


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
    """One run of a workflow in memory; implements the WorkflowRuntime protocol.

    ``replay()`` re-runs the completed steps of the recorded history; each later
    ``run_step()`` is a live step, whose events ``take_new_events()`` hands over to commit."""

    __slots__ = (  # thousands stay cached in a worker: no per-instance dict
        "_awaited",
        "_child_count",
        "_closing",
        "_conditions",
        "_execution_deadline",
        "_local_count",
        "_locals",
        "_main",
        "_nondeterminism",
        "_patches",
        "_position",
        "_query",
        "_query_handlers",
        "_random",
        "_recorded",
        "_replaying",
        "_signal_buffers",
        "_signal_handlers",
        "_signal_waiters",
        "_step_end",
        "_step_first_seq",
        "_step_time",
        "_tail",
        "_timers",
        "_update_handlers",
        "closed",
        "completed_steps",
        "ctx",
        "definition",
        "info",
        "logger",
        "loop",
        "new_events",
        "next_seq",
        "rejected_updates",
        "tainted",
    )

    def __init__(
        self,
        definition: WorkflowDefinition[Any, Any],
        workflow_id: str,
        run_id: str,
        history: list[Event],
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
        self.loop = WorkflowEventLoop(self, started.timestamp.timestamp(), _seed(run_id))
        self.ctx = WorkflowContext(self)
        self._recorded = history
        self._position = 0  # the next recorded event of the step being replayed
        self._step_end = 0  # where that step's recorded commands end
        self._replaying = False
        self._tail: list[Event] = []  # recorded events of the step that has not completed
        self._step_time = started.timestamp
        self._step_first_seq = 1
        self.completed_steps = 0
        self.next_seq = history[-1].seq + 1
        self.new_events: list[Event] = []
        self.rejected_updates: list[tuple[str, Failure]] = []
        self.closed = False
        self._closing: tuple[EventType, dict[str, Any]] | None = None  # issued as the step ends
        self._main: asyncio.Task[Any] | None = None
        self._nondeterminism: NondeterminismError | None = None
        self._query: str | None = None  # the query whose handler runs now
        self.tainted = False  # a query tried to change the run: its memory is not to be trusted
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

    # ---------------------------------------------------------------- driving
    def replay(self) -> None:
        """Re-run the completed steps of the recorded history, checking that the code issues
        the commands each step recorded, no fewer and no more. The events of a step that did
        not complete are delivered with the next live step."""
        start = 0
        for index, event in enumerate(self._recorded):
            if event.ends_step:
                self._replay_step(start, index + 1)
                start = index + 1
        self._tail = self._recorded[start:]
        self._recorded = []

    def _replay_step(self, start: int, end: int) -> None:
        events = self._recorded
        last = events[end - 1]
        if _closes_without_code(last):
            for event in events[start:end]:
                self._apply(event)
            return
        self._position = start
        self._step_end = end - 1 if last.type is E.STEP_COMPLETED else end
        self._replaying = True
        self._begin_step(last.timestamp, events[start].seq)
        with self.loop.active():
            while self._position < self._step_end:
                event = events[self._position]
                if event.type in COMMANDS or (self.closed and self._closing is None):
                    break
                self._position += 1
                self._apply(event)
                if event.type is E.WORKFLOW_STARTED:  # see _apply_in_step
                    self._run()
            self._end_step()
        leftover = [e for e in events[self._position : self._step_end] if e.type is not E.PATCH]
        if leftover and not self._closed_externally():
            raise NondeterminismError(
                f"workflow {self.info.workflow_name!r} ({self.info.workflow_id}): history has "
                f"{leftover[0].describe()} but the code did not issue it; the workflow code "
                "changed incompatibly (use ctx.patched() to change running workflows)"
            )
        self._replaying = False
        self.completed_steps += 1

    def record(self, event: Event) -> None:
        """An incoming event the store recorded in history since (a fired timer): delivered
        with the next live step."""
        if event.seq != self.next_seq:
            raise NondeterminismError(
                f"workflow {self.info.workflow_id}: {event.describe()} was recorded at seq "
                f"{event.seq}, the instance is at {self.next_seq}"
            )
        self.next_seq += 1
        self._tail.append(event)

    def run_step(self, incoming: Sequence[tuple[EventType, dict[str, Any]]]) -> int:
        """Run one live step: deliver the recorded events of the step that has not completed
        and then ``incoming``, all before the code runs on, then run the code until it waits.
        The step's events are stamped with its time, the last one ending the step. Returns
        how many of ``incoming`` were taken: the rest stay queued for the run that a
        continue-as-new of this step starts."""
        tail, self._tail = self._tail, []
        now = _now_utc()
        self._begin_step(now, tail[0].seq if tail else self.next_seq)
        events_before = len(self.new_events)
        taken = 0
        with self.loop.active():
            for event in tail:
                self._apply_in_step(event)
            for etype, attrs in incoming:
                if self.closed or self._continues_as_new():
                    break
                taken += 1
                if etype is E.UPDATE_ACCEPTED:
                    rejection = self._validate_update(attrs)
                    if rejection is not None:
                        self.rejected_updates.append((attrs["update_id"], rejection))
                        continue
                event = Event(self.next_seq, etype, now, attrs)
                self.next_seq += 1
                self.new_events.append(event)
                self._apply_in_step(event)
            if tail or len(self.new_events) > events_before:
                self._end_step()
                self._mark_step_end(now, events_before)
                self.completed_steps += 1
        return taken

    def _begin_step(self, at: datetime, first_seq: int) -> None:
        self._step_time = at
        self._step_first_seq = first_seq
        self.loop.advance_to(at.timestamp())

    def _apply_in_step(self, event: Event) -> None:
        """Deliver one event of a step. The start runs the body at once, so that it registers
        its handlers before the step's other messages reach them."""
        self._apply(event)
        if event.type is E.WORKFLOW_STARTED:
            self._run()

    def _end_step(self) -> None:
        """Run the code until it waits; a run whose code finished closes now, after every
        message of the step was delivered."""
        if self._closed_externally():
            return
        self._run()
        if self._closing is not None:
            etype, attrs = self._closing
            self._command(etype, attrs)
            self.closed = True

    def _mark_step_end(self, at: datetime, events_before: int) -> None:
        if len(self.new_events) == events_before:
            self.new_events.append(Event(self.next_seq, E.STEP_COMPLETED, at, {}))
            self.next_seq += 1
        self.new_events[-1].ends_step = True

    def _closed_externally(self) -> bool:
        return self.closed and self._closing is None

    def _continues_as_new(self) -> bool:
        return self._closing is not None and self._closing[0] is E.WORKFLOW_CONTINUED_AS_NEW

    def prepare_for_query(self) -> None:
        """A run whose first step has not completed has no handlers yet: run it, for the
        query only (what it would record is dropped)."""
        if self.completed_steps == 0 and self._tail:
            self.run_step(())
            self.take_new_events()

    def only_step_end_pending(self) -> bool:
        """Whether all there is to commit is the end of steps that recorded nothing else."""
        return not self.rejected_updates and all(
            e.type is E.STEP_COMPLETED for e in self.new_events
        )

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

    def cancelled_local_activities(self) -> list[LocalActivityCall]:
        """Local activities started whose workflow code cancelled their await since: the
        worker stops them and records no outcome of theirs."""
        calls = [c for c in self._locals.values() if c.started and c.future.cancelled()]
        for call in calls:
            del self._locals[call.local_id]
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
        """True while re-running a step that history recorded as completed."""
        return self._replaying

    def _command(self, etype: EventType, attrs: dict[str, Any]) -> Event:
        """Issue a command: on replay match it against the step's recorded commands, live
        record it."""
        if self.closed and etype not in TERMINAL:
            raise WorkflowError(f"{etype.name} issued after the workflow finished")
        if self._query is not None:
            self._refuse_in_query(f"a {etype.name} command")
        if not self._replaying:
            event = Event(self.next_seq, etype, self._step_time, attrs)
            self.next_seq += 1
            self.new_events.append(event)
            return event
        while self._position < self._step_end:
            recorded = self._recorded[self._position]
            if recorded.type is E.PATCH and etype is not E.PATCH:
                self._position += 1
                continue
            keys = IDENTITY_KEYS.get(etype, ())
            if recorded.type is not etype or any(
                recorded.attrs.get(k) != attrs.get(k) for k in keys
            ):
                issued = Event(recorded.seq, etype, recorded.timestamp, attrs)
                raise self._diverged(
                    f"issued {issued.describe()} but history has {recorded.describe()}"
                )
            self._position += 1
            return recorded
        seq = self._recorded[self._step_end - 1].seq + 1 if self._step_end else self.next_seq
        issued = Event(seq, etype, self._step_time, attrs)
        raise self._diverged(
            f"issued {issued.describe()} in a step that history recorded without it"
        )

    def _diverged(self, what: str) -> NondeterminismError:
        self._nondeterminism = NondeterminismError(
            f"workflow {self.info.workflow_name!r} ({self.info.workflow_id}): the code {what}; "
            "the workflow code changed incompatibly (use ctx.patched() to change running "
            "workflows)"
        )
        return self._nondeterminism

    def _refuse_in_query(self, what: str) -> None:
        if self._query is not None:
            self.tainted = True
            raise WorkflowError(
                f"query handler {self._query!r} must not change the workflow, but it used "
                f"{what}; queries only read state"
            )

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.loop.time(), tz=UTC)

    def random(self) -> random.Random:
        self._refuse_in_query("ctx.random() or ctx.uuid4() (they advance the recorded seed)")
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
            "retry": options.retry._to_dict() if options.retry else None,
            "start_to_close": _seconds_or_none(options.start_to_close_timeout),
            "schedule_to_close": _seconds_or_none(options.schedule_to_close_timeout),
            "heartbeat": _seconds_or_none(options.heartbeat_timeout),
        }
        seq = self._command(E.ACTIVITY_SCHEDULED, attrs).seq
        future = self.loop.create_future()
        self._awaited[seq] = _Awaited(future, hint, name)
        return self.loop.create_task_hooked(
            _await(future),
            f"activity:{name}",
            functools.partial(self._activity_cancel_requested, seq),
        )

    def _activity_cancel_requested(self, seq: int) -> None:
        """Cancelling an activity's task asks for the activity's cancellation (one scheduled
        in this same step is then never sent), whether or not the task began running."""
        awaited = self._awaited.get(seq)
        if awaited is not None and not awaited.cancel_requested and not self.closed:
            awaited.cancel_requested = True
            self._command(E.ACTIVITY_CANCEL_REQUESTED, {"scheduled": seq})

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
        self._refuse_in_query("ctx.local_activity()")
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
        if handle.seq in self._timers and not self.closed:
            self._refuse_in_query("a timer's cancellation")
            del self._timers[handle.seq]
            self._command(E.TIMER_CANCELLED, {"started": handle.seq})

    def start_child(
        self, name: str, workflow_id: str | None, task_queue: str | None, args: bytes, hint: Any
    ) -> ChildWorkflowHandle[Any]:
        self._refuse_in_query("ctx.start_child()")
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
        """Ask the child to cancel. One started in this same step is never sent: it ends
        here, cancelled."""
        awaited = self._awaited.get(seq)
        if awaited is None or awaited.cancel_requested:
            return
        self._refuse_in_query("a child's cancellation")
        awaited.cancel_requested = True
        self._command(E.CHILD_CANCEL_REQUESTED, {"scheduled": seq})
        if seq >= self._step_first_seq:
            del self._awaited[seq]
            awaited.future.set_exception(
                ChildWorkflowError(
                    f"child workflow ({awaited.name}) was cancelled before it started",
                    WorkflowCancelledError("cancelled before it started"),
                )
            )

    def wait_signal(self, name: str) -> asyncio.Future[Any]:
        self._refuse_in_query("ctx.wait_signal()")
        future: asyncio.Future[Any] = self.loop.create_future()
        buffered = self._signal_buffers.get(name)
        if buffered:
            _set_decoded(future, buffered.popleft(), Any, transform=_signal_value)
        else:
            self._signal_waiters.setdefault(name, collections.deque()).append(future)
        return future

    def on_signal(self, name: str, handler: Callable[..., Any]) -> None:
        self._refuse_in_query("ctx.on_signal()")
        self._signal_handlers[name] = handler
        buffered = self._signal_buffers.pop(name, None)
        while buffered:
            self._call_signal_handler(name, handler, buffered.popleft())

    def on_query(self, name: str, handler: Callable[..., Any]) -> None:
        self._refuse_in_query("ctx.on_query()")
        self._query_handlers[name] = handler

    def on_update(
        self, name: str, handler: Callable[..., Any], validator: Callable[..., Any] | None
    ) -> None:
        self._refuse_in_query("ctx.on_update()")
        self._update_handlers[name] = _UpdateHandler(handler, validator)

    def wait_until(self, predicate: Callable[[], bool]) -> asyncio.Future[None]:
        self._refuse_in_query("ctx.wait_until()")
        future: asyncio.Future[None] = self.loop.create_future()
        self._conditions.append(_Condition(predicate, future))
        return future

    def side_effect(self, fn: Callable[[], Any]) -> Any:
        self._refuse_in_query("ctx.side_effect()")
        hint = return_hint(fn)
        if self._replaying:
            return decode(self._command(E.SIDE_EFFECT, {}).attrs["value"], hint)
        value = fn()
        if inspect.isawaitable(value):
            raise WorkflowError("ctx.side_effect needs a plain function; it returned an awaitable")
        payload = encode(value)
        self._command(E.SIDE_EFFECT, {"value": payload})
        return decode(payload, hint)

    def patched(self, change_id: str, *, deprecated: bool) -> bool:
        """Live, a patch is taken (and recorded, unless deprecated). Replaying a completed
        step, it is taken only where that step recorded it."""
        if change_id in self._patches:
            return self._patches[change_id]
        self._refuse_in_query("ctx.patched()")
        if self._replaying:
            recorded = self._recorded[self._position] if self._position < self._step_end else None
            taken = (
                recorded is not None
                and recorded.type is E.PATCH
                and recorded.attrs.get("change_id") == change_id
            )
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
        self._refuse_in_query("ctx.continue_as_new()")
        raise _ContinueAsNew(args)

    # ---------------------------------------------------------------- queries, updates
    def query(self, name: str, args: bytes) -> bytes:
        """Run query handler ``name``. Whatever it does, only the query fails: it cannot
        issue commands, schedule anything or end the run."""
        handler = self._query_handlers.get(name)
        if handler is None:
            known = ", ".join(sorted(self._query_handlers)) or "none"
            raise QueryError(
                f"workflow {self.info.workflow_id!r} has no query handler {name!r} "
                f"(registered: {known}); register one with ctx.on_query({name!r}, fn)"
            )
        positional, keywords = decode_args(args, handler)
        self._query = name
        try:
            with self.loop.frozen(
                f"query handler {name!r} must not change the workflow, but it scheduled a "
                "task, a timer or a future; queries only read state"
            ):
                result = handler(*positional, **keywords)
        except WorkflowError as exc:
            self.tainted = True  # what it did before it was stopped may have changed state
            raise QueryError(str(exc)) from None
        except (Exception, asyncio.CancelledError) as exc:
            raise QueryError(f"query {name!r} raised {type(exc).__name__}: {exc}") from exc
        finally:
            self._query = None
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
            with self.loop.frozen(
                f"the validator of update {attrs['name']!r} must not change the workflow"
            ):
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
            self._set_closing(E.WORKFLOW_FAILED, {"failure": to_failure(exc)})
            return
        self._main = self.loop.create_task(body, name="workflow")
        self._main.add_done_callback(self._on_main_done)

    def _on_main_done(self, task: asyncio.Task[Any]) -> None:
        if self._nondeterminism is not None:
            return
        if task.cancelled():
            self._set_closing(E.WORKFLOW_CANCELLED, {})
            return
        exc = task.exception()
        if isinstance(exc, NondeterminismError):
            self._nondeterminism = exc
        elif exc is not None:
            self._close_with(exc)
        else:
            try:
                payload = encode(task.result())
            except PayloadError as error:
                self._set_closing(E.WORKFLOW_FAILED, {"failure": to_failure(error)})
            else:
                self._set_closing(E.WORKFLOW_COMPLETED, {"result": payload})

    def _close_with(self, exc: BaseException) -> None:
        """End the run as an exception that escaped workflow code asks."""
        if isinstance(exc, _ContinueAsNew):
            self._set_closing(E.WORKFLOW_CONTINUED_AS_NEW, {"args": exc.payload})
        elif isinstance(exc, asyncio.CancelledError):
            self._set_closing(E.WORKFLOW_CANCELLED, {})
        else:
            self._set_closing(E.WORKFLOW_FAILED, {"failure": to_failure(exc)})

    def _set_closing(self, etype: EventType, attrs: dict[str, Any]) -> None:
        """The run ends, the first reason given winning, once the step's messages are in."""
        if self._closing is None and not self.closed:
            self._closing = (etype, attrs)

    def _fail_from_handler(self, exc: BaseException) -> None:
        if self._nondeterminism is not None:
            return
        if isinstance(exc, NondeterminismError):
            self._nondeterminism = exc
        else:
            self._close_with(exc)

    def _resolve(self, seq: int, event: str, outcome: Callable[[_Awaited], None]) -> None:
        awaited = self._awaited.pop(seq, None)
        if awaited is None:
            self._corrupt(f"{event} answers seq {seq}, which awaits no outcome")
            return
        if not awaited.future.done():
            outcome(awaited)

    def _corrupt(self, what: str) -> None:
        if self._nondeterminism is None:
            self._nondeterminism = NondeterminismError(
                f"workflow {self.info.workflow_id!r} run {self.info.run_id}: corrupt history: "
                f"{what} (a second outcome of one command, or one of no command)"
            )

    def _on_activity_completed(self, attrs: dict[str, Any]) -> None:
        self._resolve(
            attrs["scheduled"],
            "ACTIVITY_COMPLETED",
            lambda a: _set_decoded(a.future, attrs["result"], a.hint),
        )

    def _on_activity_failed(self, attrs: dict[str, Any]) -> None:
        def fail(awaited: _Awaited) -> None:
            error = from_failure(attrs["failure"])
            if not isinstance(error, ActivityError):
                error = ActivityError(
                    f"activity {awaited.name!r} failed", error, activity_name=awaited.name
                )
            awaited.future.set_exception(error)

        self._resolve(attrs["scheduled"], "ACTIVITY_FAILED", fail)

    def _on_child_completed(self, attrs: dict[str, Any]) -> None:
        self._resolve(
            attrs["scheduled"],
            "CHILD_COMPLETED",
            lambda a: _set_decoded(a.future, attrs["result"], a.hint),
        )

    def _on_child_failed(self, attrs: dict[str, Any]) -> None:
        def fail(awaited: _Awaited) -> None:
            cause = from_failure(attrs["failure"])
            message = f"child workflow {attrs.get('workflow_id', '')!r} ({awaited.name}) " + str(
                attrs.get("reason") or "failed"
            )
            awaited.future.set_exception(
                ChildWorkflowError(message, cause, workflow_id=attrs.get("workflow_id", ""))
            )

        self._resolve(attrs["scheduled"], "CHILD_FAILED", fail)

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
        if call is None:
            self._corrupt(f"a second outcome of local activity #{local_id} {attrs['name']!r}")
            return
        if call.future.done():
            return
        if "failure" in attrs:
            call.future.set_exception(from_failure(attrs["failure"]))
        else:
            _set_decoded(call.future, attrs["result"], call.hint)

    def _on_timer_fired(self, attrs: dict[str, Any]) -> None:
        handle = self._timers.pop(attrs["started"], None)
        if handle is None:
            self._corrupt(f"TIMER_FIRED answers seq {attrs['started']}, which is no pending timer")
            return
        self.loop.fire(handle)

    def _on_signal(self, attrs: dict[str, Any]) -> None:
        name, args = attrs["name"], attrs["args"]
        handler = self._signal_handlers.get(name)
        if handler is not None:
            self._call_signal_handler(name, handler, args)
            return
        waiters = self._signal_waiters.get(name)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                _set_decoded(waiter, args, Any, transform=_signal_value)
                return
        self._signal_buffers.setdefault(name, collections.deque()).append(args)

    def _call_signal_handler(self, name: str, handler: Callable[..., Any], args: bytes) -> None:
        """Call a signal handler in a task of its own: the handlers (sync or async) of the
        signals a step delivers begin in the order the signals arrived."""
        task = self.loop.create_task(self._run_signal_handler(name, handler, args), name=name)
        self._watch_handler_task(task)

    async def _run_signal_handler(
        self, name: str, handler: Callable[..., Any], args: bytes
    ) -> None:
        """A signal whose arguments do not fit its handler is dropped (with a warning and a
        SIGNAL_DROPPED record): one bad client cannot fail the workflow."""
        if self.closed:
            return
        try:
            positional, keywords = decode_args(args, handler)
        except PayloadError as exc:
            self._drop_signal(name, str(exc))
            return
        try:
            result = handler(*positional, **keywords)
        except TypeError as exc:
            if exc.__traceback__ is None or exc.__traceback__.tb_next is not None:
                raise  # raised inside the handler: a failure of its own
            self._drop_signal(name, str(exc))  # the call itself failed: arguments unfit
            return
        if inspect.isawaitable(result):
            await result

    def _drop_signal(self, name: str, reason: str) -> None:
        self.logger.warning(
            "signal %r dropped: its arguments do not fit its handler: %s", name, reason
        )
        self._command(E.SIGNAL_DROPPED, {"name": name, "reason": reason[:2000]})

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
            self._run_update(attrs["update_id"], attrs["name"], registered.handler, attrs["args"]),
            name=f"update:{attrs['name']}",
        )

    async def _run_update(
        self, update_id: str, name: str, handler: Callable[..., Any], args: bytes
    ) -> None:
        continued: _ContinueAsNew | None = None
        try:
            positional, keywords = decode_args(args, handler)
            result = handler(*positional, **keywords)
            if inspect.isawaitable(result):
                result = await result
            outcome: dict[str, Any] = {"update_id": update_id, "result": encode(result)}
        except NondeterminismError:
            raise
        except asyncio.CancelledError:
            failure = UpdateError(f"the handler of update {name!r} was cancelled")
            outcome = {"update_id": update_id, "failure": to_failure(failure)}
        except _ContinueAsNew as exc:
            continued = exc
            failure = UpdateError(
                f"the handler of update {name!r} continued the workflow as new before it "
                "returned a result"
            )
            outcome = {"update_id": update_id, "failure": to_failure(failure)}
        except Exception as exc:
            outcome = {"update_id": update_id, "failure": to_failure(exc)}
        if not self.closed:
            self._command(E.UPDATE_COMPLETED, outcome)
        if continued is not None:
            self._close_with(continued)

    def _on_cancel_requested(self, attrs: dict[str, Any]) -> None:
        if self._main is not None and not self._main.done():
            self._main.cancel(attrs.get("reason"))

    def _on_closed_externally(self, attrs: dict[str, Any]) -> None:
        self.closed = True
        self._closing = None

    def _on_step_completed(self, attrs: dict[str, Any]) -> None:
        pass

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
        E.WORKFLOW_CANCELLED: _on_closed_externally,  # only as _closes_without_code says
        E.STEP_COMPLETED: _on_step_completed,
    }


def _seed(run_id: str) -> int:
    """A number of the run, the same in every process: 56 bits of a hash of its id."""
    return int.from_bytes(hashlib.blake2b(run_id.encode(), digest_size=7).digest(), "big")


def _closes_without_code(event: Event) -> bool:
    """Whether the store closed the run with this event, from outside its code (terminated,
    cancelled before it began): replaying that step runs no code."""
    return event.type is E.WORKFLOW_TERMINATED or (
        event.type is E.WORKFLOW_CANCELLED and bool(event.attrs.get("before_start"))
    )


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
