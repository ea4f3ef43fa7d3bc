"""A deterministic asyncio event loop for workflow code.

Its clock comes from history, ``call_at``/``call_later`` become durable timers, and it
runs only when the engine drives it: ready callbacks run in FIFO order until none is
left. No I/O, no threads, no wall clock. Its tasks and futures hash by a seed of the run plus the order of
their creation, not by address, so sets of them (``asyncio.wait``'s results,
``as_completed``'s bookkeeping) iterate in the same order on every replay.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import logging
import weakref
from collections.abc import Callable, Coroutine, Generator, Iterator
from typing import Any, Protocol, TypeVar

from ._errors import WorkflowError

_T = TypeVar("_T")
logger = logging.getLogger("durable.workflow")


class TimerSink(Protocol):
    """What the loop reports durable timers to (the workflow instance)."""

    def timer_started(self, handle: DurableTimerHandle) -> None: ...
    def timer_cancelled(self, handle: DurableTimerHandle) -> None: ...


class DurableTimerHandle(asyncio.TimerHandle):
    """A timer whose firing is recorded in history; ``seq`` is its TIMER_STARTED event,
    ``started`` the workflow time it was set at."""

    __slots__ = ("seq", "started")

    def __init__(
        self,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: WorkflowEventLoop,
        context: contextvars.Context | None,
    ) -> None:
        super().__init__(when, callback, args, loop, context)
        self.seq = 0
        self.started = loop.time()


_LET_GO_ROUNDS = 10


def _suspended(coro: object) -> bool:
    """Whether a task's coroutine (or generator) has not finished nor been closed."""
    frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
    return frame is not None


class _NumberedTask(asyncio.Task[_T]):
    """A task that hashes by its number, given by its loop as it is created: the same
    numbers on every replay. Its cancel hook, if any, hears of its cancellation as it is
    requested."""

    __slots__ = ("_cancel_hook", "_durable_number")
    _cancel_hook: Callable[[], object] | None
    _durable_number: int

    def __hash__(self) -> int:
        return self._durable_number

    def cancel(self, msg: Any | None = None) -> bool:
        hook = self._cancel_hook
        if hook is not None and not self.done():
            hook()
        return super().cancel(msg)


class _NumberedFuture(asyncio.Future[_T]):
    """A future that hashes by its number, given by its loop as it is first hashed."""

    __slots__ = ("_durable_number",)
    _durable_number: int

    def __hash__(self) -> int:
        try:
            return self._durable_number
        except AttributeError:  # rare: most futures are never hashed
            loop = self.get_loop()
            assert isinstance(loop, WorkflowEventLoop)
            number = self._durable_number = loop.next_number()
            return number


class NumberedCoroutine(Coroutine[Any, Any, _T]):
    """A coroutine of the workflow API (``ctx.activity(...)`` and the like) that hashes by a
    number its loop gives it as it is first hashed, not by its address: ``as_completed`` puts
    what it is given in a set and starts them in that set's order, which must be the same on
    every replay. The numbers are counted apart from those of tasks and futures, so that
    hashing these does not move theirs."""

    __slots__ = ("_coro", "_durable_number")
    _durable_number: int

    def __init__(self, coro: Coroutine[Any, Any, _T]) -> None:
        self._coro = coro

    def send(self, value: Any) -> Any:
        return self._coro.send(value)

    def throw(self, *exc: Any) -> Any:
        return self._coro.throw(*exc)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, _T]:
        return self._coro.__await__()

    @property
    def cr_frame(self) -> Any:
        return getattr(self._coro, "cr_frame", None)

    def __repr__(self) -> str:
        return repr(self._coro)

    def __hash__(self) -> int:
        try:
            return self._durable_number
        except AttributeError:
            loop = asyncio._get_running_loop()
            if not isinstance(loop, WorkflowEventLoop):
                return id(self) >> 4  # not in workflow code: as any object
            number = self._durable_number = loop.next_coroutine_number()
            return number


class _Active:
    """The context of ``WorkflowEventLoop.active()``: one per loop, entered at every step;
    a nested entry (a validator or query within a step) changes nothing."""

    __slots__ = ("depth", "loop", "previous")

    def __init__(self, loop: WorkflowEventLoop) -> None:
        self.loop = loop
        self.previous: asyncio.AbstractEventLoop | None = None
        self.depth = 0

    def __enter__(self) -> None:
        if self.depth == 0:
            self.previous = asyncio._get_running_loop()
            asyncio._set_running_loop(self.loop)
        self.depth += 1

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1
        if self.depth == 0:
            asyncio._set_running_loop(self.previous)
            self.previous = None


def in_workflow() -> bool:
    """True when called from workflow code (running on a WorkflowEventLoop)."""
    return isinstance(asyncio._get_running_loop(), WorkflowEventLoop)


class WorkflowEventLoop(asyncio.AbstractEventLoop):
    def __init__(self, sink: TimerSink, now: float, seed: int) -> None:
        self._sink = sink
        self._now = now
        self._ready: collections.deque[asyncio.Handle] = collections.deque()
        self._running = False
        self._closed = False
        self._exception_handler: Any = None
        # tasks and futures hash by seed + creation number: within a run the same on every
        # replay, across the runs a worker holds far apart (asyncio keeps every task of the
        # process in one set, where equal hashes would collide)
        self._created = seed
        self._coroutines = seed  # the numbers of NumberedCoroutines
        self._frozen: str | None = None  # why nothing may be scheduled now (a query runs)
        self._active = _Active(self)
        self.unhandled: list[BaseException] = []
        # its tasks, for let_go (asyncio.all_tasks would scan every task of the process)
        self._tasks: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()

    # -- driving -------------------------------------------------------------------
    def advance_to(self, now: float) -> None:
        """Move the clock forward (never backward) to a recorded event's time."""
        self._now = max(self._now, now)

    def active(self) -> _Active:
        """Make this the running loop: whatever workflow code does meanwhile (a handler that
        creates a task, an ``asyncio.get_running_loop()``) happens on it, not on the worker's."""
        return self._active

    @contextlib.contextmanager
    def frozen(self, reason: str) -> Iterator[None]:
        """Refuse to schedule anything while workflow code runs that must not change the run."""
        self._frozen = reason
        try:
            with self.active():
                yield
        finally:
            self._frozen = None

    def let_go(self, reason: str) -> None:
        """Close the coroutines of the tasks still pending here, frozen (``reason`` is what
        scheduling raises): a ``finally`` block of theirs runs now and cannot start
        anything, instead of when the garbage collector closes them, which prints
        "coroutine ignored GeneratorExit" when one awaits. One that awaits again in its
        ``finally`` is closed again there, a few rounds at most."""
        with self.frozen(reason):
            for _ in range(_LET_GO_ROUNDS):
                pending = [c for t in list(self._tasks) if _suspended(c := t.get_coro())]
                if not pending:
                    break
                for coro in pending:
                    # it awaited, or raised (a cancellation too), as it closed
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        coro.close()
        self._ready.clear()

    def run_until_idle(self) -> None:
        """Run ready callbacks (and what they schedule) until nothing is ready; within
        ``active()``."""
        self._running = True
        try:
            ready = self._ready
            while ready:
                handle = ready.popleft()
                if not handle._cancelled:
                    handle._run()
        finally:
            self._running = False

    def _refuse_frozen(self) -> None:
        raise WorkflowError(self._frozen)

    def fire(self, handle: DurableTimerHandle) -> None:
        if not handle._cancelled:
            self.advance_to(handle.when())
            self._ready.append(handle)

    # -- the asyncio API workflow code uses ---------------------------------------
    def time(self) -> float:
        return self._now

    def call_soon(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        if self._frozen is not None:
            self._refuse_frozen()
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def call_later(  # type: ignore[override]
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_at(self._now + delay, callback, *args, context=context)

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        if self._frozen is not None:
            self._refuse_frozen()
        handle = DurableTimerHandle(when, callback, args, self, context)
        if when <= self._now:
            self._ready.append(handle)
        else:
            self._sink.timer_started(handle)
        return handle

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        if isinstance(handle, DurableTimerHandle) and handle.seq:
            self._sink.timer_cancelled(handle)

    def next_number(self) -> int:
        """The number a task or future of this loop hashes by."""
        if self._frozen is not None:  # a query's would shift the numbers of later ones
            self._refuse_frozen()
        self._created += 1
        return self._created

    def next_coroutine_number(self) -> int:
        """The number a NumberedCoroutine of this loop hashes by."""
        if self._frozen is not None:
            self._refuse_frozen()
        self._coroutines += 1
        return self._coroutines

    def create_future(self) -> asyncio.Future[Any]:
        if self._frozen is not None:
            self._refuse_frozen()
        return _NumberedFuture(loop=self)

    def create_task(
        self,
        coro: Coroutine[Any, Any, _T] | Generator[Any, None, _T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[_T]:
        return self.create_task_hooked(coro, name, None, context)

    def create_task_hooked(
        self,
        coro: Coroutine[Any, Any, _T] | Generator[Any, None, _T],
        name: str | None,
        on_cancel: Callable[[], object] | None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[_T]:
        """A task that calls ``on_cancel()`` as its cancellation is requested (whether or not
        it began running; a done task's is not)."""
        # numbered before the base initializer registers (and so hashes) it
        task: _NumberedTask[_T] = _NumberedTask.__new__(_NumberedTask)
        task._durable_number = self.next_number()
        task._cancel_hook = on_cancel
        try:
            task.__init__(coro, loop=self, name=name, context=context)  # type: ignore[misc]
        except WorkflowError:  # frozen: the coroutine never runs
            coro.close()
            raise
        self._tasks.add(task)
        return task

    def get_debug(self) -> bool:
        return False

    def set_debug(self, enabled: bool) -> None:
        pass

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._ready.clear()

    async def shutdown_asyncgens(self) -> None:
        pass

    def get_exception_handler(self) -> Any:
        return self._exception_handler

    def set_exception_handler(self, handler: Any) -> None:
        self._exception_handler = handler

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        exception = context.get("exception")
        if isinstance(exception, BaseException):
            self.unhandled.append(exception)
        logger.debug("workflow loop: %s", context.get("message"), exc_info=exception)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        if self._exception_handler is not None:
            self._exception_handler(self, context)
        else:
            self.default_exception_handler(context)

    # -- everything else is I/O or threads: not allowed in workflow code ----------
    def _not_in_workflow(self, *args: Any, **kwargs: Any) -> Any:
        raise WorkflowError(
            "I/O, threads and subprocesses cannot be used in workflow code (it must be "
            "deterministic); move this into an activity and call it with ctx.activity(...)"
        )

    run_forever = run_until_complete = stop = _not_in_workflow
    call_soon_threadsafe = run_in_executor = _not_in_workflow  # type: ignore[assignment]
    set_default_executor = _not_in_workflow
    getaddrinfo = getnameinfo = create_connection = create_server = _not_in_workflow
    create_unix_connection = create_unix_server = create_datagram_endpoint = _not_in_workflow
    sock_recv = sock_sendall = sock_connect = sock_accept = _not_in_workflow
    sock_recv_into = sock_recvfrom = sock_recvfrom_into = sock_sendto = _not_in_workflow
    sock_sendfile = connect_accepted_socket = _not_in_workflow
    add_reader = add_writer = _not_in_workflow  # type: ignore[assignment]
    remove_reader = remove_writer = _not_in_workflow
    subprocess_exec = subprocess_shell = _not_in_workflow
    add_signal_handler = _not_in_workflow  # type: ignore[assignment]
    remove_signal_handler = _not_in_workflow
    connect_read_pipe = connect_write_pipe = sendfile = start_tls = _not_in_workflow
    shutdown_default_executor = set_task_factory = get_task_factory = _not_in_workflow
