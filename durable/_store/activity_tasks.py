"""Activity tasks: claims, outcomes, heartbeats, the reaper."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from .._clock import Clock
from .._codecs import Codecs
from .._definitions import DEFAULT_RETRY_POLICY, RetryPolicy
from .._events import EventType
from .._failures import Failure, activity_failure, failure, may_retry
from .base import StoreBase
from .connection import (
    _codecs,
    _now,
    _seal_failure,
    _unpack,
)
from .records import ActivityClaim, ActivityTask, ReleasedAttempt
from .runs import _post
from .sql.activity_tasks import (
    _CLAIM_ACTIVITIES_SQL,
    _CLAIM_LIMITED_ACTIVITIES_SQL,
    _DELETE_ACTIVITY_SQL,
    _FINISH_ATTEMPT_SQL,
    _HEARTBEAT_SQL,
    _LOCK_ATTEMPT_SQL,
    _LOCK_QUEUE_SQL,
    _NEXT_ACTIVITY_VISIBLE_SQL,
    _REAP_ACTIVITIES_SQL,
    _RELEASE_UNSTARTED_SQL,
    _RETRY_ACTIVITY_SQL,
)

E = EventType


class ActivityTasks(StoreBase):
    """What a worker does with activity attempts."""

    # ------------------------------------------------------------------ activity tasks
    async def claim_activity_tasks(
        self, task_queue: str, worker_id: str, names: Sequence[str], limit: int
    ) -> ActivityClaim:
        """Claim up to ``limit`` due attempts of the queue, highest priority first, within
        the queue's limits (held across every worker)."""
        args = (task_queue, worker_id, list(names), limit)
        if task_queue not in self.limited_queues:
            rows = await self.pool.fetch(_CLAIM_ACTIVITIES_SQL, *args)
            if not rows[0]["limited"]:
                return ActivityClaim(_claimed(self.codecs, rows), None)
        async with self._transaction() as conn:
            await conn.execute(_LOCK_QUEUE_SQL, task_queue)
            rows = await conn.fetch(_CLAIM_LIMITED_ACTIVITIES_SQL, *args)
        if rows[0]["limited"]:
            self.limited_queues.add(task_queue)
        else:
            self.limited_queues.discard(task_queue)
        tasks = _claimed(self.codecs, rows)
        return ActivityClaim(tasks, _held_back_until(rows[0], limit, len(tasks), self.clock))

    async def next_activity_visible_at(
        self, task_queue: str, names: Sequence[str]
    ) -> datetime | None:
        value: datetime | None = await self.pool.fetchval(
            _NEXT_ACTIVITY_VISIBLE_SQL, task_queue, list(names)
        )
        return value

    async def complete_activity(self, task: ActivityTask, worker_id: str, result: bytes) -> bool:
        return await self._finish_activity(
            task, worker_id, E.ACTIVITY_COMPLETED, {"scheduled": task.seq, "result": result}
        )

    async def fail_activity(
        self, task: ActivityTask, worker_id: str, failure: Failure, details: bytes | None = None
    ) -> datetime | None:
        """Retry the activity or fail it for good; nothing if the attempt is no longer this
        worker's. ``details`` are heartbeat details not flushed yet, kept for the next attempt.
        Returns when the next attempt is due (None: none)."""

        async def work(conn: asyncpg.Connection) -> datetime | None:
            owned = await conn.fetchval(
                _LOCK_ATTEMPT_SQL,
                task.workflow_id,
                task.run_id,
                task.seq,
                task.attempt,
                worker_id,
            )
            if owned is None:
                return None
            return await _retry_or_fail(conn, task, failure, details)

        retry_at: datetime | None = await self._retrying(work)
        return retry_at

    async def _finish_activity(
        self, task: ActivityTask, worker_id: str, etype: EventType, attrs: dict[str, Any]
    ) -> bool:
        async def work(conn: asyncpg.Connection) -> bool:
            deleted = await conn.fetchval(
                _FINISH_ATTEMPT_SQL,
                task.workflow_id,
                task.run_id,
                task.seq,
                task.attempt,
                worker_id,
            )
            if deleted is None:
                return False
            await _post(conn, task.workflow_id, task.run_id, etype, attrs)
            return True

        finished: bool = await self._retrying(work)
        return finished

    async def heartbeat_activity(
        self, task: ActivityTask, worker_id: str, details: bytes | None
    ) -> bool | None:
        """Record a heartbeat; returns whether cancellation was requested, None if lost."""
        row = await self.pool.fetchrow(
            _HEARTBEAT_SQL,
            task.workflow_id,
            task.run_id,
            task.seq,
            task.attempt,
            worker_id,
            self.codecs.seal(details),
        )
        if row is None:
            return None
        task.deadline = row["deadline"]
        return bool(row["cancel_requested"])

    async def reap_activities(self, task_queue: str) -> int:
        """Time out activities past their deadline or held by dead workers; retry or fail them."""

        async def work(conn: asyncpg.Connection) -> int:
            rows = await conn.fetch(_REAP_ACTIVITIES_SQL, task_queue)
            for row in rows:
                task = _activity_task(self.codecs, row)
                await _retry_or_fail(conn, task, _timeout_failure(row, _now(conn)))
            return len(rows)

        reaped: int = await self._retrying(work)
        return reaped

    async def release_unstarted_activities(
        self,
        task_queue: str,
        worker_id: str,
        running: Sequence[ActivityTask],
        busy_runs: Sequence[str],
        older_than: float,
    ) -> list[ReleasedAttempt]:
        """Make visible again the attempts claimed for this worker more than ``older_than``
        seconds ago that it does not run: the reply to their claim was lost (the claim
        committed, the connection died). Attempts running here and activities of runs busy
        here (results handed to the run, not yet committed) are kept. Returns the released."""
        rows = await self.pool.fetch(
            _RELEASE_UNSTARTED_SQL,
            task_queue,
            worker_id,
            older_than,
            list(busy_runs),
            [t.run_id for t in running],
            [t.seq for t in running],
            [t.attempt for t in running],
        )
        return [ReleasedAttempt(**row) for row in rows]


def _activity_task(codecs: Codecs, row: asyncpg.Record) -> ActivityTask:
    retry = _unpack(row["retry"])
    return ActivityTask(
        workflow_id=row["workflow_id"],
        run_id=str(row["run_id"]),
        seq=row["seq"],
        task_queue=row["task_queue"],
        activity_name=row["activity_name"],
        args=codecs.open(row["args"]),
        attempt=row["attempt"],
        retry=RetryPolicy._from_dict(retry) if retry else DEFAULT_RETRY_POLICY,
        heartbeat_timeout=row["heartbeat_timeout"],
        deadline=row["deadline"],
        heartbeat_details=codecs.open(row["heartbeat_details"]),
        schedule_deadline=row["schedule_deadline"],
        visible_at=row["visible_at"],
        trace=row["trace"],
        workflow_name=row.get("workflow_name") or "",
    )


def _timeout_failure(row: asyncpg.Record, now: datetime) -> Failure:
    if row["owner"] is None:
        what = "schedule_to_close timeout"
    elif row["deadline"] is not None and row["deadline"] < now:
        what = "start_to_close/heartbeat timeout"
    else:
        what = "lost worker (the worker running it stopped heartbeating)"
    return failure(
        "timeout",
        f"activity {row['activity_name']!r} timed out: {what}",
        type="TimeoutError",
        non_retryable=row["owner"] is None,
    )


async def _retry_or_fail(
    conn: asyncpg.Connection, task: ActivityTask, failure: Failure, details: bytes | None = None
) -> datetime | None:
    """Under the row lock: schedule the next attempt (returns when it is due), or post the
    final failure."""
    next_attempt = task.attempt + 1
    delay = task.retry.delay_before(next_attempt)
    retry_at = _now(conn) + timedelta(seconds=delay)
    too_late = task.schedule_deadline is not None and retry_at >= task.schedule_deadline
    if may_retry(task.retry, task.attempt, failure) and not too_late:
        await conn.execute(
            _RETRY_ACTIVITY_SQL,
            task.workflow_id,
            task.run_id,
            task.seq,
            delay,
            _seal_failure(_codecs(conn), failure),
            _codecs(conn).seal(details),
        )
        return retry_at
    await conn.execute(_DELETE_ACTIVITY_SQL, task.workflow_id, task.run_id, task.seq)
    await _post(
        conn,
        task.workflow_id,
        task.run_id,
        E.ACTIVITY_FAILED,
        {
            "scheduled": task.seq,
            "failure": activity_failure(task.activity_name, task.attempt, failure),
        },
    )
    return None


# how soon a worker looks again at a queue whose running limit held due tasks back (a slot
# another worker frees is not notified)
_RUNNING_LIMIT_RECHECK = 0.1


def _claimed(codecs: Codecs, rows: list[asyncpg.Record]) -> list[ActivityTask]:
    return [_activity_task(codecs, r) for r in rows if r["workflow_id"] is not None]


def _held_back_until(
    row: asyncpg.Record, asked: int, claimed: int, clock: Clock
) -> datetime | None:
    """When the queue's limits, which let ``claimed`` of ``asked`` be taken, may let more:
    when its bucket has a token again, or soon if its running limit was reached; None if
    they held nothing back."""
    if claimed >= asked:
        return None
    available, rate = row["available"], row["rate_limit"]
    if available is not None and rate and available - claimed < 1:
        return clock.now() + timedelta(seconds=(1 - (available - claimed)) / rate)
    if row["max_running"] is not None and row["running"] + claimed >= row["max_running"]:
        return clock.now() + timedelta(seconds=_RUNNING_LIMIT_RECHECK)
    return None
