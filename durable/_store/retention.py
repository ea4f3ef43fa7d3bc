"""Retention: deleting closed runs with everything they left, in small batches, and reading
them out first for those who archive."""

from __future__ import annotations

import itertools
from datetime import datetime

from .._events import Event
from .base import StoreBase
from .connection import _history_event
from .records import Cursor, RunRow
from .sql.retention import _CLOSED_PAGE_SQL, _HISTORIES_SQL, _PURGE_CLOSED_SQL

_NO_RUN = "00000000-0000-0000-0000-000000000000"


class Retention(StoreBase):
    """The statements behind Client.purge, Client.export and Worker(retention=...)."""

    async def purge_closed(self, closed_before: datetime, status: str | None, limit: int) -> int:
        """Delete up to ``limit`` runs closed before ``closed_before`` (with ``status``, if
        given), oldest first, with their history, inbox, tasks and calls; the number
        deleted (fewer than ``limit``: nothing more to delete now)."""
        deleted: int = await self.pool.fetchval(_PURGE_CLOSED_SQL, closed_before, status, limit)
        return deleted

    async def closed_page(
        self, closed_before: datetime, status: str | None, after: Cursor | None, limit: int
    ) -> list[tuple[RunRow, list[Event]]]:
        """The next ``limit`` runs closed before ``closed_before`` after the run ``after``
        (closed_at, workflow_id, run_id), oldest first, each with its history."""
        closed_at, workflow_id, run_id = after or (None, "", _NO_RUN)
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            rows = await conn.fetch(
                _CLOSED_PAGE_SQL,
                closed_before,
                status,
                closed_at,
                workflow_id,
                run_id,
                limit,
            )
            events = await conn.fetch(
                _HISTORIES_SQL, [r["workflow_id"] for r in rows], [r["run_id"] for r in rows]
            )
        histories = {
            (wid, str(rid)): [_history_event(self.codecs, e) for e in group]
            for (wid, rid), group in itertools.groupby(
                events, key=lambda e: (e["workflow_id"], e["run_id"])
            )
        }
        return [
            (RunRow.of(r), histories.get((r["workflow_id"], str(r["run_id"])), [])) for r in rows
        ]
