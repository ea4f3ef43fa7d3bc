"""Task queues' settings: the limits configure_task_queue sets, and what a queue holds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .._flow import TaskQueueConfig
from .base import StoreBase
from .sql.task_queues import (
    _CONFIGURE_QUEUE_SQL,
    _QUEUE_BACKLOG_SQL,
    _QUEUE_RUNNING_SQL,
    _QUEUE_SETTINGS_SQL,
    _QUEUE_WORKERS_SQL,
)


@dataclass(frozen=True)
class QueueWorkerRow:
    identity: str
    started_at: datetime
    lease_until: datetime


@dataclass(frozen=True)
class QueueState:
    config: TaskQueueConfig
    backlog: dict[int, int]  # due tasks no worker took, by priority
    running: int  # activity attempts running
    workers: list[QueueWorkerRow]


class TaskQueues(StoreBase):
    """The statements on task queues' settings."""

    async def configure_task_queue(self, task_queue: str, config: TaskQueueConfig) -> None:
        await self.pool.execute(_CONFIGURE_QUEUE_SQL, task_queue, *config.columns())

    async def describe_task_queue(self, task_queue: str) -> QueueState:
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            settings = await conn.fetchrow(_QUEUE_SETTINGS_SQL, task_queue)
            backlog = await conn.fetch(_QUEUE_BACKLOG_SQL, task_queue)
            running = await conn.fetchval(_QUEUE_RUNNING_SQL, task_queue)
            workers = await conn.fetch(_QUEUE_WORKERS_SQL, task_queue)
        config = TaskQueueConfig() if settings is None else TaskQueueConfig.from_columns(*settings)
        return QueueState(
            config,
            {row["priority"]: row["n"] for row in backlog},
            int(running),
            [QueueWorkerRow(w["identity"], w["started_at"], w["expires_at"]) for w in workers],
        )
