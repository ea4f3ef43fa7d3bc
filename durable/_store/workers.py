"""Worker records: leases, the workflows and activities they serve (where a call by name goes:
see routing), the purge of old requests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .base import StoreBase
from .records import WorkflowType
from .routing import _register_activities
from .sql.workers import (
    _BACKLOG_SQL,
    _DELETE_WORKER_SQL,
    _FORGET_LAPSED_WORKERS_SQL,
    _PURGE_REQUESTS_SQL,
    _REGISTER_WORKER_SQL,
    _REGISTER_WORKFLOW_TYPES_SQL,
    _REGISTERED_WORKFLOW_SQL,
    _RELEASE_FORGOTTEN_RUNS_SQL,
    _RELEASE_WORKER_QUERIES_SQL,
    _RELEASE_WORKER_RUNS_SQL,
    _RENEW_WORKER_SQL,
)


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
        activities: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        arities: Mapping[str, tuple[int, int | None]] | None = None,
    ) -> None:
        """Take or renew the worker's lease, and record what it serves on its queue: its
        workflows (with ``arities``, the positional arguments each takes: at least, at most,
        None for any number), and its activities by name with their options (as
        ACTIVITY_SCHEDULED records them), where calls by name find them."""
        known = arities or {}
        async with self._transaction() as conn:
            await conn.execute(
                _REGISTER_WORKER_SQL,
                worker_id,
                task_queue,
                identity,
                ttl,
            )
            await conn.execute(
                _REGISTER_WORKFLOW_TYPES_SQL,
                list(workflow_names),
                task_queue,
                [known[name][0] if name in known else None for name in workflow_names],
                [known[name][1] if name in known else None for name in workflow_names],
            )
            await _register_activities(conn, task_queue, activities or {})
            gone = await conn.fetchval(_FORGET_LAPSED_WORKERS_SQL)
            if gone:
                await conn.execute(_RELEASE_FORGOTTEN_RUNS_SQL, gone)

    async def purge_requests(self, kept: float, limit: int = 1000) -> int:
        """Forget client requests older than ``kept`` seconds (a request sent again after
        that is applied again), and the answered updates with them; a batch at a time."""
        status = await self.pool.execute(_PURGE_REQUESTS_SQL, kept, limit)
        return int(status.split()[-1])

    async def backlog(self, task_queue: str) -> tuple[int, int]:
        """Due workflow tasks and activity tasks of ``task_queue`` no worker holds."""
        row = await self.pool.fetchrow(_BACKLOG_SQL, task_queue)
        assert row is not None
        return int(row["workflow_tasks"]), int(row["activity_tasks"])

    async def renew_worker(self, worker_id: str, ttl: float) -> bool:
        status = await self.pool.execute(_RENEW_WORKER_SQL, worker_id, ttl)
        return bool(status == "UPDATE 1")

    async def unregister_worker(self, worker_id: str) -> None:
        async with self._transaction() as conn:
            await conn.execute(_RELEASE_WORKER_RUNS_SQL, worker_id)
            await conn.execute(_RELEASE_WORKER_QUERIES_SQL, worker_id)
            await conn.execute(_DELETE_WORKER_SQL, worker_id)

    async def registered_workflow(
        self, workflow_name: str, task_queue: str | None = None
    ) -> WorkflowType | None:
        """Where the workflow type is served and what it takes: on ``task_queue`` if its
        workers registered it, else on the queue seen last; None if no worker ever did."""
        row = await self.pool.fetchrow(_REGISTERED_WORKFLOW_SQL, workflow_name, task_queue)
        if row is None:
            return None
        least = row["min_args"]
        arity = None if least is None else (least, row["max_args"])
        return WorkflowType(row["task_queue"], arity)
