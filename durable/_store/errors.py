"""What the store raises to the worker, and the SQLSTATEs of durable's own checks."""

from __future__ import annotations

import asyncpg

from .._errors import DurableError

_RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)

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
NEVER_SENT: tuple[type[BaseException], ...] = (
    ConnectionRefusedError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
)
# What opening a connection raises when it cannot (besides a malformed dsn's ValueError).
CONNECT_FAILED: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)
_ENSURE_FAILED = "DU001"  # raised by durable.ensure()
_MISSED_MESSAGES = "DU002"  # raised by durable.ensure_read_all()
_REQUEST_RACE = "DU003"  # raised by durable.ensure_new_requests()


class LostOwnership(DurableError):
    """Another worker took the workflow over (or it was terminated) while we ran it."""


class MissedMessages(DurableError):
    """Messages reached a run while the step that closes it ran: nothing was written, and
    the step is to be run again from history with them."""


def _request_race(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) == _REQUEST_RACE
