"""The engine's notion of now, in one place.

Every due time, deadline and recorded timestamp is read from a Clock: in Python from
``Clock.now()``, in SQL from ``durable.now()`` and ``durable.clock_timestamp()`` (migration
0010). In production both are the system's clock. A test environment gives the store a clock
of its own and replaces the two SQL functions in its database, so that the very same code
paths run on a clock that it moves forward (durable.testing.WorkflowEnvironment). Worker
leases are not on this clock: they measure how long a process has been silent, in real time.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime


class Clock:
    """The system's clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    @contextlib.asynccontextmanager
    async def waiting_for_time(self) -> AsyncIterator[None]:
        """Held while a caller waits for workflows to make progress (``handle.result()``):
        a clock that can skip ahead may do so meanwhile. The system's clock cannot."""
        yield


SYSTEM_CLOCK = Clock()
