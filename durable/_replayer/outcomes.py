"""The outcomes a run awaits, as history delivers them: its start and its body's end,
activities, children, local activities, timers, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .._errors import (
    ActivityError,
    ChildWorkflowError,
    NondeterminismError,
    PayloadError,
)
from .._events import EventType
from .._failures import from_failure, to_failure
from .._serialization import check_result, decode_args, encode
from .state import Awaited, RunState, set_decoded

E = EventType


class Outcomes(RunState):
    """Applies the recorded outcomes to what the code awaits."""

    __slots__ = ()

    def _on_started(self, attrs: dict[str, Any]) -> None:
        try:
            positional, keywords = decode_args(attrs["args"], self.definition.fn, skip_first=True)
            body = self.definition.fn(self.ctx, *positional, **keywords)
        except (
            PayloadError,
            TypeError,
        ) as exc:  # arguments that do not fit the function
            self._set_closing(E.WORKFLOW_FAILED, {"failure": to_failure(exc)})
            return
        self._main = self.loop.create_task(body, name="workflow")
        self._main.add_done_callback(self._on_main_done)

    def _on_main_done(self, task: asyncio.Task[Any]) -> None:
        if self._task_error is not None:
            return
        if task.cancelled():
            self._set_closing(E.WORKFLOW_CANCELLED, {})
            return
        exc = task.exception()
        if isinstance(exc, NondeterminismError):
            self._task_error = exc
        elif exc is not None:
            self._close_with(exc)
        else:
            try:
                payload = encode(task.result())
            except PayloadError as error:
                self._set_closing(E.WORKFLOW_FAILED, {"failure": to_failure(error)})
                return
            try:  # a result its callers cannot decode is a bug of the code: not recorded
                what = f"workflow {self.info.workflow_name!r}"
                check_result(self.definition.fn, payload, what=what)
            except PayloadError as error:
                self._task_error = error
            else:
                self._set_closing(E.WORKFLOW_COMPLETED, {"result": payload})

    def _resolve(self, seq: int, event: str, outcome: Callable[[Awaited], None]) -> None:
        awaited = self._awaited.pop(seq, None)
        if awaited is None:
            self._corrupt(f"{event} answers seq {seq}, which awaits no outcome")
            return
        if not awaited.future.done():
            outcome(awaited)

    def _corrupt(self, what: str) -> None:
        if self._task_error is None:
            self._task_error = NondeterminismError(
                f"workflow {self.info.workflow_id!r} run {self.info.run_id}: corrupt history: "
                f"{what} (a second outcome of one command, or one of no command)"
            )

    def _on_activity_completed(self, attrs: dict[str, Any]) -> None:
        self._resolve(
            attrs["scheduled"],
            "ACTIVITY_COMPLETED",
            lambda a: set_decoded(a.future, attrs["result"], a.hint),
        )

    def _on_activity_failed(self, attrs: dict[str, Any]) -> None:
        def fail(awaited: Awaited) -> None:
            error = from_failure(attrs["failure"])
            if not isinstance(error, ActivityError):
                error = ActivityError(
                    f"activity {awaited.name!r} failed",
                    error,
                    activity_name=awaited.name,
                )
            awaited.future.set_exception(error)

        self._resolve(attrs["scheduled"], "ACTIVITY_FAILED", fail)

    def _on_child_completed(self, attrs: dict[str, Any]) -> None:
        self._resolve(
            attrs["scheduled"],
            "CHILD_COMPLETED",
            lambda a: set_decoded(a.future, attrs["result"], a.hint),
        )

    def _on_child_failed(self, attrs: dict[str, Any]) -> None:
        def fail(awaited: Awaited) -> None:
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
            self._task_error = NondeterminismError(
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
            set_decoded(call.future, attrs["result"], call.hint)

    def _on_timer_fired(self, attrs: dict[str, Any]) -> None:
        handle = self._timers.pop(attrs["started"], None)
        if handle is None:
            self._corrupt(f"TIMER_FIRED answers seq {attrs['started']}, which is no pending timer")
            return
        self.loop.fire(handle)

    def _on_cancel_requested(self, attrs: dict[str, Any]) -> None:
        if self._main is not None and not self._main.done():
            self._main.cancel(attrs.get("reason"))

    def _on_closed_externally(self, attrs: dict[str, Any]) -> None:
        self.closed = True
        self._closing = None

    def _on_step_completed(self, attrs: dict[str, Any]) -> None:
        pass
