"""The commands workflow code issues through its context: activities, timers, children,
side effects, patches, attributes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import inspect
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, NoReturn

from .._context import ChildWorkflowHandle
from .._definitions import ActivityDefinition, ActivityOptions, RetryPolicy
from .._errors import (
    ChildWorkflowError,
    WorkflowCancelledError,
    WorkflowError,
)
from .._events import EventType
from .._flow import DEFAULT_PRIORITY
from .._loop import DurableTimerHandle
from .._serialization import decode, encode, return_hint
from .._validate import MAX_SECONDS, check_attributes
from .state import (
    Awaited,
    Condition,
    ContinueAsNew,
    LocalActivityCall,
    RunState,
    await_,
)

E = EventType


class Commands(RunState):
    """What the context calls to schedule work; each call is a command of the step."""

    __slots__ = ()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.loop.time(), tz=UTC)

    def random(self) -> random.Random:
        self._refuse_in_query("ctx.random() or ctx.uuid4() (they advance the recorded seed)")
        if self._random is None:
            seed = int.from_bytes(self._seed_run.encode(), "big")
            self._random = random.Random(seed)
        return self._random

    def start_activity(
        self, name: str, args: bytes, options: ActivityOptions, hint: Any, *, by_name: bool = False
    ) -> asyncio.Task[Any]:
        # called by name (or reference): the worker finds the queue that serves it, if none
        # is given, and the options its workers registered, for those not given (durable/
        # _worker/routing.py), as it commits the step; history records what it found. On
        # replay the recorded command matches by name, whatever options the code gives.
        own_queue = None if by_name else self.info.task_queue
        attrs = {
            "name": name,
            "task_queue": options.task_queue or own_queue,
            "args": args,
            **options._recorded(),
        }
        if by_name:
            attrs["by_name"] = True
        priority = options.priority or self.info.priority
        if priority != DEFAULT_PRIORITY:
            attrs["priority"] = priority
        seq = self._command(E.ACTIVITY_SCHEDULED, attrs, retractable=True).seq
        future = self.loop.create_future()
        self._awaited[seq] = Awaited(future, hint, name)
        return self.loop.create_task_hooked(
            await_(future),
            f"activity:{name}",
            functools.partial(self._activity_cancel_requested, seq),
        )

    def _activity_cancel_requested(self, seq: int) -> None:
        """Cancelling an activity's task asks for the activity's cancellation, whether or not
        the task began running. One scheduled in this same step is never sent: cancelled
        before anything came after it, it is not recorded at all."""
        awaited = self._awaited.get(seq)
        if awaited is not None and not awaited.cancel_requested and not self.closed:
            awaited.cancel_requested = True
            if self._retract(seq):
                del self._awaited[seq]
                return
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
        if not handle.when() - self.loop.time() <= MAX_SECONDS:  # also refuses nan
            raise ValueError(
                f"a timer {handle.when() - self.loop.time()} s from now cannot be stored; "
                "durable timers are at most 100 years long"
            )
        started = self._command(E.TIMER_STARTED, {"fire_at": handle.when()}, retractable=True)
        handle.seq = started.seq
        self._timers[handle.seq] = handle

    def timer_cancelled(self, handle: DurableTimerHandle) -> None:
        if handle.seq in self._timers and not self.closed:
            self._refuse_in_query("a timer's cancellation")
            del self._timers[handle.seq]
            if not self._retract(handle.seq):
                self._command(E.TIMER_CANCELLED, {"started": handle.seq})
                self._timers_cancelled.add(handle.seq)

    def start_child(
        self,
        name: str,
        workflow_id: str | None,
        task_queue: str | None,
        args: bytes,
        hint: Any,
        *,
        by_name: bool = False,
        priority: int | None = None,
    ) -> ChildWorkflowHandle[Any]:
        self._refuse_in_query("ctx.start_child()")
        self._child_count += 1
        attrs: dict[str, Any] = {
            "name": name,
            "workflow_id": workflow_id or f"{self._child_id_prefix()}/{self._child_count}",
            "task_queue": task_queue or (None if by_name else self.info.task_queue),
            "args": args,
        }
        if (priority or self.info.priority) != DEFAULT_PRIORITY:
            attrs["priority"] = priority or self.info.priority
        # a default id is made of this run's ids, which a reset or fork changed: on replay the
        # recorded one stands
        free = () if workflow_id else ("workflow_id",)
        scheduled = self._command(E.CHILD_SCHEDULED, attrs, free=free, retractable=True)
        seq, child_id = scheduled.seq, scheduled.attrs["workflow_id"]
        future = self.loop.create_future()
        self._awaited[seq] = Awaited(future, hint, name, child_id=child_id)
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
        here, cancelled (and is not recorded at all if nothing came after it)."""
        awaited = self._awaited.get(seq)
        if awaited is None or awaited.cancel_requested:
            return
        self._refuse_in_query("a child's cancellation")
        awaited.cancel_requested = True
        never_recorded = self._retract(seq)
        if not never_recorded:
            self._command(E.CHILD_CANCEL_REQUESTED, {"scheduled": seq})
        if never_recorded or seq >= self._step_first_seq:
            del self._awaited[seq]
            awaited.future.set_exception(
                ChildWorkflowError(
                    f"child workflow {awaited.child_id!r} ({awaited.name}) was cancelled"
                    " before it started",
                    WorkflowCancelledError("cancelled before it started"),
                    workflow_id=awaited.child_id,
                )
            )

    def wait_until(self, predicate: Callable[[], bool]) -> asyncio.Future[None]:
        self._refuse_in_query("ctx.wait_until()")
        future: asyncio.Future[None] = self.loop.create_future()
        self._conditions.append(Condition(predicate, future))
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
                self._moved_on()
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
        raise ContinueAsNew(args)
