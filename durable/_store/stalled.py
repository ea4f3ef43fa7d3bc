"""Ending tasks that may be waiting on a database that stopped answering."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

UNWIND = 2.0  # seconds a cancelled task gets to unwind (its cleanup may write to the database)
_RECANCEL = 0.05  # seconds between two cancellations of a task that has not ended


async def end_within(tasks: Collection[asyncio.Task[Any]], seconds: float) -> None:
    """Return once ``tasks`` ended: wait up to ``seconds`` for them, then cancel what is left,
    again every _RECANCEL seconds until it ended; what they raised is dropped.

    One cancellation does not end a task whose statement waits for a server (or pooler) that
    stopped answering: asyncpg then sends a cancel request and the connection's release,
    shielded from cancellation, waits for it, which waits for the server too (until the
    statement's deadline, COMMAND_TIMEOUT); the next cancellation ends the wait on the release,
    which goes on in the background."""
    pending = {task for task in tasks if not task.done()}
    if pending:
        _, pending = await asyncio.wait(pending, timeout=seconds)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=_RECANCEL)
    await asyncio.gather(*tasks, return_exceptions=True)
