"""What workers serve, seen from the work that needs them: where a call by name goes and
which options it takes (durable/_worker/routing.py), and which work of a run waits on a task
queue where no worker ever served it (what describe says)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from .base import StoreBase
from .connection import _pack, _unpack

# Store.register_worker: the activities the worker serves on its queue ($2), with the options
# they declare (NULL: not declared), seen now (what Store.route_activity reads).
_REGISTER_ACTIVITY_TYPES_SQL = """
INSERT INTO durable.activity_types (name, task_queue, retry, start_to_close, schedule_to_close,
    heartbeat)
SELECT a.name, $2, a.retry, a.start_to_close, a.schedule_to_close, a.heartbeat
FROM unnest($1::text[], $3::bytea[], $4::float8[], $5::float8[], $6::float8[])
    AS a(name, retry, start_to_close, schedule_to_close, heartbeat)
ON CONFLICT (name, task_queue) DO UPDATE SET seen_at = now(), retry = EXCLUDED.retry,
    start_to_close = EXCLUDED.start_to_close, schedule_to_close = EXCLUDED.schedule_to_close,
    heartbeat = EXCLUDED.heartbeat
"""

# Store.route_workflow: the queue whose workers serve the workflow named $1: the caller's own
# queue $2 if its workers do, else the one seen last.
_ROUTE_WORKFLOW_SQL = """
SELECT task_queue FROM durable.workflow_types WHERE name = $1
ORDER BY task_queue = $2 DESC, seen_at DESC LIMIT 1
"""

# Store.route_activity: the same for the activity named $1, on queue $3 if the call gives one,
# with the options its workers there registered.
_ROUTE_ACTIVITY_SQL = """
SELECT task_queue, retry, start_to_close, schedule_to_close, heartbeat
FROM durable.activity_types WHERE name = $1 AND ($3::text IS NULL OR task_queue = $3)
ORDER BY task_queue = $2 DESC, seen_at DESC LIMIT 1
"""

# Store.unserved_work: what an open run waits for that no worker ever registered to serve:
# the run itself (its workflow on its task queue) and each of its pending activities (on
# the queue it was sent to), by the primary keys of workflow_types and activity_types (a
# worker records there what it serves whenever it registers; see Store.register_worker).
_UNSERVED_WORK_SQL = """
SELECT 'workflow' AS kind, workflow_name AS name, task_queue, NULL::integer AS seq
FROM durable.workflows w WHERE workflow_id = $1 AND run_id = $2 AND closed_at IS NULL
    AND NOT EXISTS (SELECT 1 FROM durable.workflow_types t
        WHERE t.name = w.workflow_name AND t.task_queue = w.task_queue)
UNION ALL
SELECT 'activity', activity_name, task_queue, seq FROM durable.activity_tasks a
WHERE workflow_id = $1 AND run_id = $2 AND NOT EXISTS (SELECT 1 FROM durable.activity_types t
    WHERE t.name = a.activity_name AND t.task_queue = a.task_queue)
ORDER BY seq NULLS FIRST
"""

# The options of an activity as ACTIVITY_SCHEDULED records them, which activity_types holds
# in columns of the same names (retry: msgpack, as activity_tasks.retry).
ACTIVITY_OPTIONS = ("retry", "start_to_close", "schedule_to_close", "heartbeat")


@dataclass(frozen=True, slots=True)
class ActivityRoute:
    """Where an activity called by name goes, and the options its workers on that queue
    registered (as ACTIVITY_SCHEDULED records them: None where not declared)."""

    task_queue: str
    options: dict[str, Any]


@dataclass(frozen=True, slots=True)
class UnservedWork:
    """A run (``seq`` None) or an activity of it (its ``seq``) waiting on a task queue where
    no worker ever served its workflow or activity ``name``."""

    kind: Literal["workflow", "activity"]
    name: str
    task_queue: str
    seq: int | None


async def _register_activities(
    conn: asyncpg.Connection, task_queue: str, activities: Mapping[str, Mapping[str, Any]]
) -> None:
    """Record the activities a worker serves on ``task_queue``, each with its options (by
    name, as ACTIVITY_SCHEDULED records them)."""
    names = list(activities)

    def column(option: str) -> list[Any]:
        return [activities[name][option] for name in names]

    retry = [_pack(policy) if policy else None for policy in column("retry")]
    await conn.execute(
        _REGISTER_ACTIVITY_TYPES_SQL,
        names,
        task_queue,
        retry,
        column("start_to_close"),
        column("schedule_to_close"),
        column("heartbeat"),
    )


class Routing(StoreBase):
    """Reads of what workers registered to serve."""

    async def route_workflow(self, name: str, own_queue: str) -> str | None:
        """The task queue whose workers serve the workflow ``name``: ``own_queue`` if they
        do, else the one seen last; None if no worker ever registered it."""
        queue: str | None = await self.pool.fetchval(_ROUTE_WORKFLOW_SQL, name, own_queue)
        return queue

    async def route_activity(
        self, name: str, own_queue: str, task_queue: str | None = None
    ) -> ActivityRoute | None:
        """Where the activity ``name`` goes (``task_queue`` if given, else ``own_queue`` if its
        workers serve it, else the queue seen last) and the options registered there; None
        if no worker ever registered it (on ``task_queue``)."""
        row = await self.pool.fetchrow(_ROUTE_ACTIVITY_SQL, name, own_queue, task_queue)
        if row is None:
            return None
        options = {key: row[key] for key in ACTIVITY_OPTIONS}
        options["retry"] = _unpack(row["retry"])
        return ActivityRoute(row["task_queue"], options)

    async def unserved_work(self, workflow_id: str, run_id: str) -> list[UnservedWork]:
        """What of the open run waits on a queue where no worker ever served it: the run
        first, then its activities in schedule order."""
        rows = await self.pool.fetch(_UNSERVED_WORK_SQL, workflow_id, run_id)
        return [UnservedWork(**row) for row in rows]
