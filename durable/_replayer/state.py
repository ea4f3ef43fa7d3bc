"""What a run in memory is made of, and how it issues a command: on replay matched against
the step's recorded commands, live recorded as a new event."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import random
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .._context import WorkflowContext, WorkflowInfo
from .._definitions import (
    ActivityDefinition,
    RetryPolicy,
    WorkflowDefinition,
)
from .._errors import (
    NondeterminismError,
    PayloadError,
    WorkflowError,
)
from .._events import IDENTITY_KEYS, TERMINAL, Event, EventType
from .._failures import Failure, to_failure
from .._loop import DurableTimerHandle, WorkflowEventLoop
from .._serialization import decode
from .._telemetry import ids_of_current

E = EventType
_log = logging.getLogger("durable.workflow")


class ContinueAsNew(BaseException):
    """Unwinds the workflow function for ctx.continue_as_new (not catchable as Exception)."""

    def __init__(self, args: bytes) -> None:
        super().__init__("continue as new")
        self.payload = args


@dataclass
class Awaited:
    """An activity or child workflow whose outcome the code is waiting for."""

    future: asyncio.Future[Any]
    hint: Any
    name: str
    cancel_requested: bool = False
    child_id: str = ""  # a child's workflow id


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
class Condition:
    predicate: Callable[[], bool]
    future: asyncio.Future[None]


@dataclass
class UpdateHandler:
    handler: Callable[..., Any]
    validator: Callable[..., Any] | None


class ReplayAwareLogger(logging.LoggerAdapter[logging.Logger]):
    def __init__(self, instance: RunState) -> None:
        super().__init__(_log, {})
        self._instance = instance

    def isEnabledFor(self, level: int) -> bool:
        return not self._instance.is_replaying and super().isEnabledFor(level)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        info = self._instance.info
        extra = kwargs.setdefault("extra", {})
        extra.update(
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            attempt=info.attempt,
            **ids_of_current(),
        )
        return f"[{info.workflow_name} {info.workflow_id}] {msg}", kwargs


def signal_value(args: list[Any]) -> Any:
    """What wait_signal returns for a signal sent with ``args``: None, the value, or a tuple."""
    positional = args[0]
    if not positional:
        return None
    return positional[0] if len(positional) == 1 else tuple(positional)


class RunState:
    """The state of one run in memory, shared by the parts of WorkflowInstance: the commands
    its code issues, the messages it receives, the outcomes it awaits."""

    __slots__ = (  # thousands stay cached in a worker: no per-instance dict
        "_awaited",
        "_child_count",
        "_closing",
        "_conditions",
        "_each_message",
        "_execution_deadline",
        "_local_count",
        "_locals",
        "_main",
        "_patches",
        "_position",
        "_provisional",
        "_query",
        "_query_handlers",
        "_random",
        "_recorded",
        "_replaying",
        "_retractable",
        "_seed_run",
        "_signal_buffers",
        "_signal_handlers",
        "_signal_waiters",
        "_step_end",
        "_step_first_seq",
        "_step_time",
        "_tail",
        "_task_error",
        "_timers",
        "_timers_cancelled",
        "_unmatched",
        "_update_handlers",
        "clock",
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
        "trace_carrier",
        "trace_parent",
    )

    definition: WorkflowDefinition[Any, Any]
    trace_carrier: dict[str, str] | None  # the trace context its start recorded
    trace_parent: object  # what the worker made of it (see _worker.telemetry)
    info: WorkflowInfo
    logger: ReplayAwareLogger
    loop: WorkflowEventLoop
    ctx: WorkflowContext
    _recorded: list[Event]  # the steps being replayed
    _position: int  # the next recorded event of the step being replayed
    _step_end: int  # where that step's recorded commands end
    _replaying: bool
    _tail: list[Event]  # recorded events of the step that has not completed
    _step_time: datetime
    _step_first_seq: int
    completed_steps: int
    next_seq: int
    new_events: list[Event]
    rejected_updates: list[tuple[str, Failure]]
    closed: bool
    _closing: tuple[EventType, dict[str, Any]] | None  # issued as the step ends
    _main: asyncio.Task[Any] | None
    # why the step cannot be committed and the workflow task fails (retried until the code
    # is fixed): the code no longer matches its history, or its result does not fit its
    # return annotation (a PayloadError)
    _task_error: NondeterminismError | PayloadError | None
    _query: str | None  # the query whose handler runs now
    tainted: bool  # a query tried to change the run: its memory is not to be trusted
    _awaited: dict[int, Awaited]
    _timers: dict[int, DurableTimerHandle]
    _locals: dict[int, LocalActivityCall]
    _local_count: int
    _child_count: int
    _signal_buffers: dict[str, collections.deque[bytes]]
    _signal_waiters: dict[str, collections.deque[asyncio.Future[Any]]]
    _signal_handlers: dict[str, Callable[..., Any]]
    _query_handlers: dict[str, Callable[..., Any]]
    _update_handlers: dict[str, UpdateHandler]
    _conditions: list[Condition]
    _patches: dict[str, bool]
    _random: random.Random | None
    _seed_run: str  # the run whose id seeds randomness: this one, or the one it was reset from
    _execution_deadline: float | None
    _each_message: bool  # replay rule 2: the code runs after each incoming event of a step
    _retractable: tuple[int, int] | None  # the last command issued, if _retract may take it
    # back: its seq, and on replay the position before it
    _timers_cancelled: set[int]  # in this step: their fired messages are not delivered
    _unmatched: NondeterminismError | None  # on replay: a command history lacks, unless taken back
    _provisional: int  # the seqs (negative) of such commands

    @property
    def is_replaying(self) -> bool:
        """True while re-running a step that history recorded as completed."""
        return self._replaying

    def _command(
        self,
        etype: EventType,
        attrs: dict[str, Any],
        free: tuple[str, ...] = (),
        *,
        retractable: bool = False,
    ) -> Event:
        """Issue a command: on replay match it against the step's recorded commands (by its
        identity keys, but for those ``free``), live record it. A ``retractable`` one (work
        sent to the world: an activity, a timer, a child) may be taken back by ``_retract``
        while nothing came after it."""
        if self.closed and etype not in TERMINAL:
            raise WorkflowError(f"{etype.name} issued after the workflow finished")
        if self._query is not None:
            self._refuse_in_query(f"a {etype.name} command")
        self._expire_unmatched()
        retractable = retractable and self._each_message
        if not self._replaying:
            event = Event(self.next_seq, etype, self._step_time, attrs)
            self.next_seq += 1
            self.new_events.append(event)
            self._retractable = (event.seq, -1) if retractable else None
            return event
        before = self._position
        self._retractable = None
        try:
            recorded = self._match(etype, attrs, free)
        except NondeterminismError as exc:
            if not retractable:
                self._task_error = exc
                raise
            # unless the code takes it back at once, as a step that recorded nothing of it did
            self._unmatched, self._provisional = exc, self._provisional - 1
            recorded = Event(self._provisional, etype, self._step_time, attrs)
        if retractable:
            self._retractable = (recorded.seq, before)
        return recorded

    def _match(self, etype: EventType, attrs: dict[str, Any], free: tuple[str, ...]) -> Event:
        """The step's next recorded command, which must be the one issued."""
        keys = IDENTITY_KEYS.get(etype, ())
        if free:
            keys = tuple(k for k in keys if k not in free)
        while self._position < self._step_end:
            recorded = self._recorded[self._position]
            if recorded.type is E.PATCH and etype is not E.PATCH:
                self._position += 1
                continue
            if recorded.type is not etype or any(
                recorded.attrs.get(k) != attrs.get(k) for k in keys
            ):
                issued = Event(recorded.seq, etype, recorded.timestamp, attrs)
                raise self._divergence(
                    f"issued {issued.describe()} but history has {recorded.describe()}"
                )
            self._position += 1
            return recorded
        seq = self._recorded[self._step_end - 1].seq + 1 if self._step_end else self.next_seq
        issued = Event(seq, etype, self._step_time, attrs)
        raise self._divergence(
            f"issued {issued.describe()} in a step that history recorded without it"
        )

    def _retract(self, seq: int) -> bool:
        """Take back the command ``seq`` (under rule 2) if nothing was issued or delivered
        since it was: work cancelled as it was asked for is never sent, nor recorded. On
        replay the step's history then goes on from where it was before the command."""
        if self._retractable is None or self._retractable[0] != seq:
            return False
        if not self._replaying and not (self.new_events and self.new_events[-1].seq == seq):
            return False  # handed over to be committed meanwhile
        self._refuse_in_query("a cancellation")
        if self._replaying:
            self._position = self._retractable[1]
            self._unmatched = None
        else:
            self.new_events.pop()
            self.next_seq -= 1
        self._retractable = None
        return True

    def _moved_on(self) -> None:
        """An event was delivered (or a patch taken): what came before cannot be taken back."""
        self._expire_unmatched()
        self._retractable = None

    def _expire_unmatched(self) -> None:
        """A command issued on replay that history does not have, and that the code did not
        take back at once: the code changed."""
        if self._unmatched is not None:
            self._task_error, self._unmatched = self._unmatched, None
            raise self._task_error

    def _divergence(self, what: str) -> NondeterminismError:
        return NondeterminismError(
            f"workflow {self.info.workflow_name!r} ({self.info.workflow_id}): the code {what}; "
            "the workflow code changed incompatibly (use ctx.patched() to change running "
            "workflows)"
        )

    def _refuse_in_query(self, what: str) -> None:
        if self._query is not None:
            self.tainted = True
            raise WorkflowError(
                f"query handler {self._query!r} must not change the workflow, but it used "
                f"{what}; queries only read state"
            )

    def _close_with(self, exc: BaseException) -> None:
        """End the run as an exception that escaped workflow code asks."""
        if isinstance(exc, ContinueAsNew):
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
        if self._task_error is not None:
            return
        if isinstance(exc, NondeterminismError):
            self._task_error = exc
        else:
            self._close_with(exc)


def seed(run_id: str) -> int:
    """A number of the run, the same in every process: 56 bits of a hash of its id."""
    return int.from_bytes(hashlib.blake2b(run_id.encode(), digest_size=7).digest(), "big")


async def await_(awaitable: Any) -> Any:
    return await awaitable


def set_decoded(
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
