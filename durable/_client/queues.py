"""Task queues from a client: their limits (held across every worker) and what they hold."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta

from .._flow import RateLimit, TaskQueueConfig
from .._validate import check_name
from .base import ClientBase


@dataclass(frozen=True)
class TaskQueueWorker:
    """A live worker of the queue."""

    identity: str
    started_at: datetime
    lease_until: datetime  # it renews its lease about every second while it lives


@dataclass(frozen=True)
class TaskQueueDescription:
    task_queue: str
    config: TaskQueueConfig
    backlog: dict[int, int]  # due workflow tasks and activity attempts waiting, by priority
    running: int  # activity attempts running, across all workers
    workers: list[TaskQueueWorker]


class QueueMethods(ClientBase):
    """The task queue calls of a Client."""

    async def configure_task_queue(
        self,
        task_queue: str,
        *,
        max_running_activities: int | None = None,
        rate_limit: RateLimit | None = None,
        priority_aging: timedelta | None = None,
    ) -> None:
        """Set the queue's limits, held across every worker together (Postgres is the
        arbiter): ``max_running_activities`` attempts running at once, ``rate_limit`` starts
        of attempts (a token bucket), ``priority_aging`` the wait after which a due task
        gains one priority level (so none starves). Each call sets them all (None: no
        limit); it takes effect at the next claim. Invalid values raise ValueError naming
        the argument, before anything is written."""
        check_name("task_queue", task_queue)
        config = TaskQueueConfig.build(max_running_activities, rate_limit, priority_aging)
        configure = functools.partial(self.store.configure_task_queue, task_queue, config)
        await self._call("configure_task_queue", None, configure, writes=True)

    async def describe_task_queue(self, task_queue: str) -> TaskQueueDescription:
        """The queue's limits, its backlog by priority, the attempts running and its live
        workers (read in one snapshot)."""
        check_name("task_queue", task_queue)
        state = await self._call(
            "describe_task_queue",
            None,
            functools.partial(self.store.describe_task_queue, task_queue),
        )
        return TaskQueueDescription(
            task_queue,
            state.config,
            state.backlog,
            state.running,
            [TaskQueueWorker(w.identity, w.started_at, w.lease_until) for w in state.workers],
        )
