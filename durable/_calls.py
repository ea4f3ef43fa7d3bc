"""Client operations against the database: a deadline on each, database failures as
durable errors, and transient failures of idempotent operations retried within it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from ._errors import DatabaseUnavailableError, DurableError, TimeoutError

T = TypeVar("T")

# The database is away: refused, reset or terminated connections, a server starting up or
# shutting down (class 57), out of connections (class 53), a database not accepting
# connections (55000), a client-side connect timeout.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.ObjectNotInPrerequisiteStateError,
    asyncpg.InternalClientError,  # asyncpg's state machine broken by a terminated connection
)
# ... and these failures mean that nothing reached the server.
_NEVER_SENT: tuple[type[BaseException], ...] = (
    ConnectionRefusedError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
)
_FIRST_RETRY, _MAX_RETRY = 0.05, 1.0  # seconds between attempts, doubling
_LAST_TRY_BEFORE = 0.05  # seconds before the deadline: no attempt starts later


def _what(operation: str, workflow_id: str | None) -> str:
    return f"{operation} of workflow {workflow_id!r}" if workflow_id else operation


async def call(
    operation: str,
    workflow_id: str | None,
    deadline: float | None,
    attempt: Callable[[], Awaitable[T]],
    *,
    writes: bool,
    retry: bool,
) -> T:
    """Run ``attempt`` within ``deadline`` seconds (None: no deadline). While the database is
    away, an idempotent operation (``retry``) is attempted again with backoff until the
    deadline; any other raises DatabaseUnavailableError at once. Past the deadline: the
    last DatabaseUnavailableError, or TimeoutError naming the operation.

    The deadline holds whatever the server does: an attempt still running then is cancelled
    and left behind (a cancelled query on a stalled server can keep its connection busy
    until the server answers; the caller does not wait for that)."""
    loop = asyncio.get_running_loop()
    end = None if deadline is None else loop.time() + deadline
    failure: BaseException | None = None
    maybe_applied = False
    delay = _FIRST_RETRY
    while True:
        running = asyncio.ensure_future(attempt())
        remaining = None if end is None else max(0.0, end - loop.time())
        done, _ = await _wait(running, remaining)
        if not done:
            _abandon(running)
            if failure is not None:
                raise _unavailable(operation, workflow_id, failure, maybe_applied) from failure
            raise TimeoutError(
                f"{_what(operation, workflow_id)} got no answer from the database within "
                f"{deadline:g} s (call_timeout); it may be overloaded or stalled"
                + ("; the write may have taken effect" if writes else "")
            )
        try:
            return running.result()
        except DurableError:
            raise  # (durable's TimeoutError is an OSError too)
        except UNAVAILABLE as exc:
            failure = exc
            maybe_applied = maybe_applied or (writes and not isinstance(exc, _NEVER_SENT))
            if end is not None:  # the last attempt just before the deadline
                delay = min(delay, end - loop.time() - _LAST_TRY_BEFORE)
            if not retry or delay <= 0:
                raise _unavailable(operation, workflow_id, exc, maybe_applied) from exc
        await asyncio.sleep(delay)
        delay = min(delay * 2, _MAX_RETRY)


async def _wait(running: asyncio.Future[T], timeout: float | None) -> tuple[set[Any], set[Any]]:
    try:
        return await asyncio.wait({running}, timeout=timeout)
    except asyncio.CancelledError:  # the caller is cancelled: so is its attempt
        _abandon(running)
        raise


def _abandon(running: asyncio.Future[Any]) -> None:
    running.cancel()
    running.add_done_callback(_retrieve)


def _retrieve(running: asyncio.Future[Any]) -> None:
    if not running.cancelled():
        running.exception()  # an outcome nobody waits for any more


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
