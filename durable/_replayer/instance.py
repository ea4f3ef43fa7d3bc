"""The replayer's driver: a run of workflow code on its deterministic loop, stepped
through its recorded history and then live."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from .._clock import SYSTEM_CLOCK, Clock
from .._context import WorkflowContext, WorkflowInfo
from .._definitions import WorkflowDefinition
from .._errors import NondeterminismError
from .._events import COMMANDS, Event, EventType, closes_without_code
from .._failures import Failure
from .._flow import DEFAULT_PRIORITY
from .._loop import WorkflowEventLoop
from .commands import Commands
from .messages import Messages
from .outcomes import Outcomes
from .state import (
    LocalActivityCall,
    ReplayAwareLogger,
    seed,
)

E = EventType


class StepOutput(NamedTuple):
    """What a run's steps recorded, and what their commit needs to know of the run."""

    events: list[Event]
    rejected_updates: list[tuple[str, Failure]]  # (update id, why), recorded nowhere
    next_seq: int
    next_due: datetime | None  # its earliest pending timer, or its execution deadline
    started_children: bool  # it ever started a child (which may still be open)
    has_parent: bool


class WorkflowInstance(Commands, Messages, Outcomes):
    """One run of a workflow in memory; implements the WorkflowRuntime protocol.

    ``replay()`` re-runs the completed steps of the recorded history; each later
    ``run_step()`` is a live step, whose events ``take_output()`` hands over to commit."""

    __slots__ = ()

    def __init__(
        self,
        definition: WorkflowDefinition[Any, Any],
        workflow_id: str,
        run_id: str,
        history: list[Event],
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not history or history[0].type is not E.WORKFLOW_STARTED:
            raise NondeterminismError(
                f"history of {workflow_id}/{run_id} does not begin with WORKFLOW_STARTED"
            )
        started = history[0]
        self.definition = definition
        self.clock = clock  # live steps are stamped with its time
        self.trace_carrier = started.attrs.get("trace")
        self.trace_parent = None  # the worker's own: the context its spans descend from
        self.info = WorkflowInfo(
            workflow_id=workflow_id,
            run_id=run_id,
            workflow_name=started.attrs["name"],
            task_queue=started.attrs["task_queue"],
            attempt=started.attrs.get("attempt", 1),
            started_at=started.timestamp,
            parent_workflow_id=started.attrs.get("parent_workflow_id"),
            priority=started.attrs.get("priority", DEFAULT_PRIORITY),
        )
        self.logger = ReplayAwareLogger(self)
        # a run reset from another replays that one's steps: it draws the same "random" values
        self._seed_run = started.attrs.get("seed_run", run_id)
        self.loop = WorkflowEventLoop(self, started.timestamp.timestamp(), seed(self._seed_run))
        self.ctx = WorkflowContext(self)
        self._recorded = history
        self._position = 0  # the next recorded event of the step being replayed
        self._step_end = 0  # where that step's recorded commands end
        self._replaying = False
        self._tail = []  # recorded events of the step that has not completed
        self._step_time = started.timestamp
        self._step_first_seq = 1
        self.completed_steps = 0
        self.next_seq = history[-1].seq + 1
        self.new_events = []
        self.rejected_updates = []
        self.closed = False
        self._closing = None  # issued as the step ends
        self._main = None
        self._task_error = None
        self._query = None  # the query whose handler runs now
        self.tainted = False  # a query tried to change the run: its memory is not to be trusted
        self._awaited = {}
        self._timers = {}
        self._locals = {}
        self._local_count = 0
        self._child_count = 0
        self._signal_buffers = {}
        self._signal_waiters = {}
        self._signal_handlers = {}
        self._query_handlers = {}
        self._update_handlers = {}
        self._conditions = []
        self._patches = {}
        self._random = None
        self._execution_deadline = started.attrs.get("execution_deadline")
        self._each_message = started.attrs.get("rules", 1) >= 2  # see _events.REPLAY_RULES
        self._retractable = None
        self._timers_cancelled = set()
        self._unmatched = None
        self._provisional = 0

    @classmethod
    def replayed(
        cls,
        definition: WorkflowDefinition[Any, Any],
        workflow_id: str,
        run_id: str,
        history: list[Event],
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> WorkflowInstance:
        """The run rebuilt from its history: built, then its completed steps replayed."""
        instance = cls(definition, workflow_id, run_id, history, clock=clock)
        try:
            instance.replay()
        except BaseException:
            instance.discard()
            raise
        return instance

    def discard(self) -> None:
        """Let go of the run's code, which will not step again in this instance: what of it
        is still suspended is closed now (see WorkflowEventLoop.let_go), as if replaying
        (ctx.logger is silent)."""
        self._replaying = True
        self.loop.let_go(
            f"workflow {self.info.workflow_id!r} is being let go from memory: its code cannot "
            "start anything now (it resumes from history where it runs next)"
        )

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
        if closes_without_code(last):
            for event in events[start:end]:
                self._apply(event)
            return
        self._position = start
        self._step_end = end - 1 if last.type is E.STEP_COMPLETED else end
        self._replaying = True
        self._begin_step(last.timestamp, events[start].seq)
        with self.loop.active():
            while self._position < self._step_end and not self._closed_externally():
                event = events[self._position]
                if event.type in COMMANDS:
                    if not (self._each_message and event.type is E.PATCH):
                        break
                    # the code ran since the patch was recorded and did not ask for it here
                    self._position += 1
                    continue
                self._position += 1
                self._apply_in_step(event)
            self._end_step()
            self._expire_unmatched()
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
        now = self._begins_at(tail[0]) if tail and tail[0].seq == 1 else self.clock.now()
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
                if etype is E.TIMER_FIRED and attrs["started"] in self._timers_cancelled:
                    continue  # a message before it made the code cancel the timer meanwhile
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

    @staticmethod
    def _begins_at(started: Event) -> datetime:
        """The time of a run's first step: when the run was due to begin (its start, plus
        its start delay), however late a worker took it up; its timers count from there."""
        return started.timestamp + timedelta(seconds=started.attrs.get("start_delay") or 0)

    def _begin_step(self, at: datetime, first_seq: int) -> None:
        self._retractable = None
        self._timers_cancelled.clear()
        self._step_time = at
        self._step_first_seq = first_seq
        self.loop.advance_to(at.timestamp())

    def _apply_in_step(self, event: Event) -> None:
        """Deliver one event of a step and run the code until it waits, so that the next
        event meets the state this one left (under rule 1, only the start ran the body at
        once, for it to register its handlers before the step's messages reached them)."""
        self._apply(event)
        if event.type is E.WORKFLOW_STARTED or (
            self._each_message and not self._closed_externally()
        ):
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

    def query(self, name: str, args: bytes) -> bytes:
        """Run query handler ``name`` (see Messages.query). A run whose first step has not
        completed has no handlers yet: that step runs first, for the query only; what it
        would record is dropped, and the instance is not to be stepped on (tainted)."""
        if self.completed_steps == 0 and self._tail:
            self.run_step(())
            self.take_output()
            self.tainted = True
        return super().query(name, args)

    def only_step_end_pending(self) -> bool:
        """Whether all there is to commit is the end of steps that recorded nothing else."""
        return not self.rejected_updates and all(
            e.type is E.STEP_COMPLETED for e in self.new_events
        )

    def take_output(self) -> StepOutput:
        """What the steps since the last call recorded, with what their commit needs."""
        output = StepOutput(
            self.new_events,
            self.rejected_updates,
            self.next_seq,
            self._next_due(),
            self._child_count > 0,
            self.info.parent_workflow_id is not None,
        )
        self.new_events, self.rejected_updates = [], []
        self._retractable = None
        return output

    def _next_due(self) -> datetime | None:
        times = [handle.when() for handle in self._timers.values()]
        if self._execution_deadline is not None:
            times.append(self._execution_deadline)
        return datetime.fromtimestamp(min(times), tz=UTC) if times else None

    def awaits(self, seq: int) -> bool:
        """Whether the code awaits the outcome of the activity or child scheduled at ``seq``."""
        return seq in self._awaited

    @property
    def runs_local_activities(self) -> bool:
        return any(not call.future.done() for call in self._locals.values())

    def timer_window(self, seq: int) -> tuple[float, float] | None:
        """When the pending timer ``seq`` was set and when it is due (workflow time)."""
        handle = self._timers.get(seq)
        return None if handle is None else (handle.started, handle.when())

    def local_activity_changes(self) -> tuple[list[LocalActivityCall], list[LocalActivityCall]]:
        """The local activities called since the last call, for the worker to start, and
        those started whose await the code cancelled since, for it to stop (no outcome of
        theirs is recorded)."""
        stopped = [c for c in self._locals.values() if c.started and c.future.cancelled()]
        for call in stopped:
            del self._locals[call.local_id]
        started = [c for c in self._locals.values() if not c.started and not c.future.done()]
        for call in started:
            call.started = True
        return started, stopped

    def _run(self) -> None:
        while True:
            self.loop.run_until_idle()
            if self._task_error is not None:
                raise self._task_error
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
    # ---------------------------------------------------------------- incoming events
    def _apply(self, event: Event) -> None:
        self._moved_on()
        self.loop.advance_to(event.timestamp.timestamp())
        apply = self._APPLY.get(event.type)
        if apply is None:
            raise NondeterminismError(f"unexpected incoming event {event.describe()}")
        apply(self, event.attrs)

    _APPLY: dict[EventType, Callable[[WorkflowInstance, dict[str, Any]], None]] = {
        E.WORKFLOW_STARTED: Outcomes._on_started,
        E.ACTIVITY_COMPLETED: Outcomes._on_activity_completed,
        E.ACTIVITY_FAILED: Outcomes._on_activity_failed,
        E.LOCAL_ACTIVITY_COMPLETED: Outcomes._on_local_activity_done,
        E.LOCAL_ACTIVITY_FAILED: Outcomes._on_local_activity_done,
        E.CHILD_COMPLETED: Outcomes._on_child_completed,
        E.CHILD_FAILED: Outcomes._on_child_failed,
        E.TIMER_FIRED: Outcomes._on_timer_fired,
        E.SIGNAL_RECEIVED: Messages._on_signal,
        E.UPDATE_ACCEPTED: Messages._on_update_accepted,
        E.CANCEL_REQUESTED: Outcomes._on_cancel_requested,
        E.WORKFLOW_TERMINATED: Outcomes._on_closed_externally,
        E.WORKFLOW_TIMED_OUT: Outcomes._on_closed_externally,
        E.WORKFLOW_CANCELLED: Outcomes._on_closed_externally,  # only as closes_without_code says
        E.STEP_COMPLETED: Outcomes._on_step_completed,
    }
