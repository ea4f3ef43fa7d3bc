"""Client operations against the database: a deadline on each, database failures as
durable errors, and transient failures of idempotent operations retried within it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ._errors import DatabaseUnavailableError, DurableError, TimeoutError
from ._store import NEVER_SENT, UNAVAILABLE

T = TypeVar("T")

_FIRST_RETRY, _MAX_RETRY = 0.05, 1.0  # seconds between attempts, doubling
_LAST_TRY_BEFORE = 0.05  # seconds before the deadline: no attempt starts later
_RECANCEL = 0.05  # seconds between cancellations of an attempt past its deadline


def _what(operation: str, workflow_id: str | None) -> str:
    return f"{operation} of workflow {workflow_id!r}" if workflow_id else operation


class Outage:
    """What the calls given it last found of the database: the error that showed it
    unavailable, until a later attempt got an answer. For a caller with a deadline of its
    own (``result(timeout=...)``), that ends while a call is still trying: it says why."""

    __slots__ = ("failure",)

    def __init__(self) -> None:
        self.failure: BaseException | None = None

    def error(self, operation: str, workflow_id: str | None) -> DatabaseUnavailableError | None:
        """The DatabaseUnavailableError to raise if the database was last found away."""
        if self.failure is None:
            return None
        return _unavailable(operation, workflow_id, self.failure, False)


async def call(
    operation: str,
    workflow_id: str | None,
    deadline: float | None,
    attempt: Callable[[], Awaitable[T]],
    *,
    writes: bool,
    retry: bool,
    outage: Outage | None = None,
) -> T:
    """Run ``attempt`` within ``deadline`` seconds (None: no deadline). While the database is
    away, an idempotent operation (``retry``) is attempted again with backoff until the
    deadline; any other raises DatabaseUnavailableError at once. Past the deadline: the
    last DatabaseUnavailableError, or TimeoutError naming the operation. ``outage``, if
    given, is kept up to date with what the attempts found.

    The deadline holds whatever the server does: past it, the attempt is cancelled, and
    cancelled again every 50 ms until it gives up (a query cancelled on a stalled server can
    wait for the server once more, in its connection's release)."""
    loop = asyncio.get_running_loop()
    end = None if deadline is None else loop.time() + deadline
    failure: BaseException | None = None
    maybe_applied = False
    delay = _FIRST_RETRY
    while True:
        try:
            async with _Deadline(end):
                answer = await attempt()
            if outage is not None:
                outage.failure = None
            return answer
        except DurableError:
            raise  # (durable's TimeoutError is an OSError too)
        except _Expired:
            if failure is not None:
                raise _unavailable(operation, workflow_id, failure, maybe_applied) from failure
            raise TimeoutError(
                f"{_what(operation, workflow_id)} got no answer from the database within "
                f"{deadline:g} s (call_timeout); it may be overloaded or stalled"
                + ("; the write may have taken effect" if writes else "")
            ) from None
        except UNAVAILABLE as exc:
            failure = exc
            if outage is not None:
                outage.failure = exc
            maybe_applied = maybe_applied or (writes and not isinstance(exc, NEVER_SENT))
            if end is not None:  # the last attempt just before the deadline
                delay = min(delay, end - loop.time() - _LAST_TRY_BEFORE)
            if not retry or delay <= 0:
                raise _unavailable(operation, workflow_id, exc, maybe_applied) from exc
        await asyncio.sleep(delay)
        delay = min(delay * 2, _MAX_RETRY)


class _Expired(Exception):
    """The deadline of a call passed."""


class _Deadline:
    """Like ``asyncio.timeout_at(end)``, but once past ``end`` it cancels the task again
    every _RECANCEL seconds until the block is left, and raises _Expired."""

    __slots__ = ("cancels", "end", "handle", "task")

    def __init__(self, end: float | None) -> None:
        self.end = end
        self.handle: asyncio.TimerHandle | None = None
        self.cancels = 0

    async def __aenter__(self) -> None:
        if self.end is not None:
            task = asyncio.current_task()
            assert task is not None
            self.task = task
            self.handle = asyncio.get_running_loop().call_at(self.end, self._expire)

    def _expire(self) -> None:
        self.cancels += 1
        self.task.cancel()
        self.handle = asyncio.get_running_loop().call_later(_RECANCEL, self._expire)

    async def __aexit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if self.handle is not None:
            self.handle.cancel()
        if not self.cancels:
            return
        remaining = self.task.cancelling()
        for _ in range(self.cancels):
            remaining = self.task.uncancel()
        if kind is asyncio.CancelledError and remaining == 0:  # ours alone
            raise _Expired


def _unavailable(
    operation: str, workflow_id: str | None, exc: BaseException, maybe_applied: bool
) -> DatabaseUnavailableError:
    effect = (
        "it may have taken effect: repeat it with the same request_id to apply it once"
        if maybe_applied
        else "it did not take effect"
    )
    reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
    return DatabaseUnavailableError(
        f"{_what(operation, workflow_id)} failed: the database is unavailable ({reason}); {effect}",
        operation=operation,
        may_have_taken_effect=maybe_applied,
    )
