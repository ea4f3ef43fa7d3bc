"""What a running activity sees (activity_context()) and how an activity function is run."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import logging
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._definitions import ActivityDefinition
from ._errors import PayloadError, WorkflowError
from ._failures import Failure, to_failure
from ._serialization import check_result, decode, encode
from ._telemetry import ids_of_current

_log = logging.getLogger("durable.activity")
_current: contextvars.ContextVar[ActivityContext] = contextvars.ContextVar("durable_activity")


@dataclass(frozen=True)
class ActivityInfo:
    workflow_id: str
    run_id: str
    activity_id: str
    activity_name: str
    attempt: int
    idempotency_key: str
    deadline: datetime | None
    task_queue: str
    is_local: bool = False


class ActivityContext:
    """Handed to a running activity through ``durable.activity_context()``."""

    def __init__(self, info: ActivityInfo, heartbeat_details: bytes | None) -> None:
        self.info = info
        self._last_details = heartbeat_details
        self._pending: bytes | None = None
        self._dirty = False
        self._cancelled = False  # read from the activity's thread, set in the worker's loop
        self._cancelled_event: asyncio.Event | None = None  # made by the first waiter

    @property
    def heartbeat_details(self) -> tuple[Any, ...] | None:
        """The details of the last heartbeat recorded, possibly by an earlier attempt."""
        if self._last_details is None:
            return None
        return tuple(decode(self._last_details))

    def heartbeat(self, *details: Any) -> None:
        """Report progress; keeps a heartbeat_timeout from firing, and brings cancellation."""
        payload = encode(list(details))
        self._last_details = payload
        self._pending = payload
        self._dirty = True

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry the workflow, run and activity ids, the attempt and
        the current trace and span ids in their ``extra`` fields."""
        return _ActivityLogger(self.info)

    def is_cancelled(self) -> bool:
        """Whether this attempt was asked to stop: its activity was cancelled, or the attempt
        passed its deadline. A sync activity must check it itself."""
        return self._cancelled

    async def wait_cancelled(self) -> None:
        """Return once ``is_cancelled()`` is true."""
        if self._cancelled_event is None:
            self._cancelled_event = asyncio.Event()
            if self._cancelled:
                self._cancelled_event.set()
        await self._cancelled_event.wait()

    # -- used by the worker --------------------------------------------------------------
    def _take_heartbeat(self) -> tuple[bool, bytes | None]:
        dirty, payload = self._dirty, self._pending
        self._dirty, self._pending = False, None
        return dirty, payload

    def _mark_cancelled(self) -> None:
        self._cancelled = True
        if self._cancelled_event is not None:
            self._cancelled_event.set()


class _ActivityLogger(logging.LoggerAdapter[logging.Logger]):
    def __init__(self, info: ActivityInfo) -> None:
        super().__init__(_log, {})
        self._info = info

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        info = self._info
        kwargs.setdefault("extra", {}).update(
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            activity_id=info.activity_id,
            attempt=info.attempt,
            **ids_of_current(),
        )
        return f"[{info.activity_name} {info.workflow_id}/{info.activity_id}] {msg}", kwargs


def activity_context() -> ActivityContext:
    """The context of the activity running in this task or thread."""
    try:
        return _current.get()
    except LookupError:
        raise WorkflowError(
            "durable.activity_context() was called outside a running activity"
        ) from None


async def run_activity_function(
    definition: ActivityDefinition[Any, Any],
    args: list[Any],
    kwargs: dict[str, Any],
    context: ActivityContext,
    executor: concurrent.futures.Executor,
) -> Any:
    """Run the user's function with its context set: async in this loop, sync in a thread."""
    token = _current.set(context)
    try:
        if definition.is_async:
            return await definition.fn(*args, **kwargs)
        call: Callable[[], Any] = functools.partial(definition.fn, *args, **kwargs)
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(executor, ctx.run, call)
    finally:
        _current.reset(token)


def encode_result(definition: ActivityDefinition[Any, Any], result: Any) -> bytes | Failure:
    """An activity's result encoded, or the failure of the attempt: a result that cannot be
    encoded (not retried: the same result would fail again), one that does not fit the
    activity's return annotation (retried as any failure: the code has a bug, and a fixed
    deploy returns what fits; the workflow never receives what it cannot decode)."""
    try:
        encoded = encode(result)
    except PayloadError as exc:
        return {**to_failure(exc), "non_retryable": True}
    try:
        check_result(definition.fn, encoded, what=f"activity {definition.name!r}")
    except PayloadError as exc:
        return to_failure(exc)
    return encoded
