"""Messages a run receives: signals (awaited or handled), queries and updates."""

from __future__ import annotations

import asyncio
import collections
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from .._errors import (
    NondeterminismError,
    PayloadError,
    QueryError,
    UpdateError,
    WorkflowError,
)
from .._events import EventType
from .._failures import Failure, to_failure
from .._serialization import decode_args, encode
from .state import ContinueAsNew, RunState, UpdateHandler, set_decoded, signal_value

E = EventType


# The built-in query of what a run's code awaits that history cannot tell (describe shows it)
WAITS_QUERY = "__durable_waits"


class Messages(RunState):
    """Signal, query and update handlers, and the delivery of those messages."""

    __slots__ = ()

    def wait_signal(self, name: str) -> asyncio.Future[Any]:
        self._refuse_in_query("ctx.wait_signal()")
        future: asyncio.Future[Any] = self.loop.create_future()
        buffered = self._signal_buffers.get(name)
        if buffered:
            set_decoded(future, buffered.popleft(), Any, transform=signal_value)
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
        self,
        name: str,
        handler: Callable[..., Any],
        validator: Callable[..., Any] | None,
    ) -> None:
        self._refuse_in_query("ctx.on_update()")
        self._update_handlers[name] = UpdateHandler(handler, validator)

    # ---------------------------------------------------------------- queries, updates
    def query(self, name: str, args: bytes) -> bytes:
        """Run query handler ``name``. Whatever it does, only the query fails: it cannot
        issue commands, schedule anything or end the run."""
        if name == WAITS_QUERY:
            return encode(self._waits())
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
            if isinstance(result, Coroutine):  # (ctx.activity(...) and the like too)
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
                set_decoded(waiter, args, Any, transform=signal_value)
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
            self._task_error = NondeterminismError(
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
        continued: ContinueAsNew | None = None
        try:
            positional, keywords = decode_args(args, handler)
            result = handler(*positional, **keywords)
            if inspect.isawaitable(result):
                result = await result
            outcome: dict[str, Any] = {"update_id": update_id, "result": encode(result)}
        except NondeterminismError:
            raise
        except asyncio.CancelledError:  # its caller sees a cancellation, as for an activity
            cut = asyncio.CancelledError(f"the handler of update {name!r} was cancelled")
            outcome = {"update_id": update_id, "failure": to_failure(cut)}
        except ContinueAsNew as exc:
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

    def _waits(self) -> dict[str, Any]:
        """The signals the code awaits (``ctx.wait_signal``), and how many conditions
        (``ctx.wait_until``) it waits for."""
        signals = sorted(
            name
            for name, waiters in self._signal_waiters.items()
            if any(not future.done() for future in waiters)
        )
        conditions = sum(1 for c in self._conditions if not c.future.done())
        return {"signals": signals, "conditions": conditions}
