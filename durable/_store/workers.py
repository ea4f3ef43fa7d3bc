"""Worker records: leases, the workflow types they serve, the purge of old requests."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .._events import EventType
from .base import StoreBase

E = EventType
_log = logging.getLogger("durable.store")


class WorkerRecords(StoreBase):
    """Workers announce themselves, renew their lease and leave."""

    # ------------------------------------------------------------------ workers
    async def register_worker(
        self,
        worker_id: str,
        task_queue: str,
        identity: str,
        ttl: float,
        workflow_names: Sequence[str],
    ) -> None:
        async with self._transaction() as conn:
            await conn.execute(
                "INSERT INTO durable.workers (worker_id, task_queue, identity, expires_at) "
                "VALUES ($1, $2, $3, now() + make_interval(secs => $4)) "
                "ON CONFLICT (worker_id) DO UPDATE SET expires_at = EXCLUDED.expires_at",
                worker_id,
                task_queue,
                identity,
                ttl,
            )
            await conn.execute(
                "INSERT INTO durable.workflow_types (name, task_queue) "
                "SELECT unnest($1::text[]), $2 "
                "ON CONFLICT (name, task_queue) DO UPDATE SET seen_at = now()",
                list(workflow_names),
                task_queue,
            )
            gone = await conn.fetchval(
                "WITH gone AS (DELETE FROM durable.workers"
                " WHERE expires_at < now() - interval '1 hour' RETURNING worker_id)"
                " SELECT array_agg(worker_id) FROM gone"
            )
            if gone:  # their runs stay claimable only while the lapsed lease is on record
                await conn.execute(
                    "UPDATE durable.workflows SET owner = NULL"
                    " WHERE owner = ANY($1) AND closed_at IS NULL",
                    gone,
                )

    async def purge_requests(self, kept: float, limit: int = 1000) -> int:
        """Forget client requests older than ``kept`` seconds (a request sent again after
        that is applied again), and the answered updates with them; a batch at a time."""
        status = await self.pool.execute(
            "WITH old AS (DELETE FROM durable.requests WHERE ctid = ANY(ARRAY("
            "  SELECT ctid FROM durable.requests"
            "  WHERE created_at < now() - make_interval(secs => $1) LIMIT $2))"
            " RETURNING 1) "
            "DELETE FROM durable.calls WHERE kind = 2 AND done"
            " AND created_at < now() - make_interval(secs => $1)"
            " AND (SELECT count(*) FROM old) >= 0",
            kept,
            limit,
        )
        return int(status.split()[-1])

    async def renew_worker(self, worker_id: str, ttl: float) -> bool:
        status = await self.pool.execute(
            "UPDATE durable.workers SET expires_at = now() + make_interval(secs => $2) "
            "WHERE worker_id = $1 AND expires_at > now()",
            worker_id,
            ttl,
        )
        return bool(status == "UPDATE 1")

    async def unregister_worker(self, worker_id: str) -> None:
        async with self._transaction() as conn:
            await conn.execute(  # closed runs keep theirs: rewriting them all is not free
                "UPDATE durable.workflows SET owner = NULL WHERE owner = $1 AND closed_at IS NULL",
                worker_id,
            )
            await conn.execute(
                "UPDATE durable.calls SET claimed_by = NULL, claimed_until = NULL "
                "WHERE claimed_by = $1 AND NOT done",
                worker_id,
            )
            await conn.execute("DELETE FROM durable.workers WHERE worker_id = $1", worker_id)

    async def registered_task_queue(self, workflow_name: str) -> str | None:
        rows = await self.pool.fetch(
            "SELECT task_queue FROM durable.workflow_types WHERE name = $1 ORDER BY seen_at DESC",
            workflow_name,
        )
        return rows[0]["task_queue"] if rows else None
