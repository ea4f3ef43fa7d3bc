"""Workflow tasks: claims, fired timers, inboxes, commits, queries for workers."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from .._events import Event, EventType
from .._failures import Failure
from .base import StoreBase
from .closing import _close_run
from .commit import (
    _READS_ALL,
    _commits_alone,
    _eager_tasks,
    _fetch_commit,
    _plan_common_steps,
    _WideEffects,
)
from .connection import (
    _open_attrs,
    _seal_attrs,
    _seal_failure,
)
from .errors import MissedMessages
from .listener import CHANNEL
from .records import (
    NO_BUILD,
    ActivityTask,
    Builds,
    InboxMessage,
    QueryCall,
    TaskCommit,
    WorkflowTask,
    _Rows,
    _Step,
)
from .runs import _answer_call
from .sql.workflow_tasks import (
    _CLAIM_QUERIES_SQL,
    _CLAIM_WORKFLOWS_SQL,
    _FAIL_WAITING_QUERIES_SQL,
    _INBOX_READY_AT_SQL,
    _LOAD_INBOX_SQL,
    _NEXT_READY_SQL,
    _RECORD_FIRED_SQL,
    _RELEASE_WORKFLOW_SQL,
)

E = EventType


class WorkflowTasks(StoreBase):
    """What a worker does with the runs it holds."""

    # ------------------------------------------------------------------ workflow tasks
    async def prepare_for_steps(self) -> None:
        """Open every pooled connection with the common commit statements planned on it
        (and have connections opened later planned as they open): a worker pays for this
        before it takes work, not in its first steps."""
        if self.connection_setup.plan_steps is not None or not self.prepared_statements:
            return  # (without prepared statements nothing planned is kept)
        self.connection_setup.plan_steps = _plan_common_steps
        await self.pool.expire_connections()  # those open now reopen, planned, when next used
        size = self.pool.get_max_size()
        opened = await asyncio.gather(
            *(self.pool.acquire() for _ in range(size)), return_exceptions=True
        )
        # a connection that failed to open (the database away) opens, planned, when needed
        await asyncio.gather(
            *(self.pool.release(conn) for conn in opened if not isinstance(conn, BaseException))
        )

    async def claim_workflow_tasks(
        self,
        task_queue: str,
        worker_id: str,
        names: Sequence[str],
        busy: Sequence[str],
        limit: int,
        builds: Builds = NO_BUILD,
    ) -> list[WorkflowTask]:
        """Runs with work due: this worker's own (sticky, no write needed), then unowned ones
        and those of workers whose lease lapsed (taken over: the fence moves on).

        Inbox rows are visible from ``clock_timestamp()``, not ``now()``: a message stamped
        with its poster's transaction start can commit after this statement's transaction
        timestamp was taken and before its snapshot, so the snapshot holds the message (and
        the inbox_seq it bumped) while ``now()`` would hide it, and the commit would then
        take the inbox for read in full and leave the message stranded."""
        rows = await self.pool.fetch(
            _CLAIM_WORKFLOWS_SQL,
            task_queue,
            worker_id,
            list(names),
            list(busy),
            limit,
            builds.accepted,
            builds.build_id,
        )
        runs: dict[str, tuple[asyncpg.Record, list[InboxMessage]]] = {}
        for r in rows:  # one row per inbox message (or one for an empty inbox), grouped by run
            _, messages = runs.setdefault(str(r["run_id"]), (r, []))
            if r["message_id"] is not None:
                attrs = _open_attrs(self.codecs, r["body"])
                messages.append(InboxMessage(r["message_id"], E(r["kind"]), attrs))
        return [
            WorkflowTask(
                r["workflow_id"],
                run_id,
                r["workflow_name"],
                r["fence"],
                r["next_seq"],
                r["resumed"],
                r["inbox_seq"],
                tuple(messages),
                started=self._started_event(r),
            )
            for run_id, (r, messages) in runs.items()
        ]

    def _started_event(self, row: asyncpg.Record) -> Event | None:
        if row["started_body"] is None:
            return None
        attrs = _open_attrs(self.codecs, row["started_body"])
        return Event(1, E.WORKFLOW_STARTED, row["started_ts"], attrs)

    async def next_ready_at(
        self,
        task_queue: str,
        worker_id: str,
        names: Sequence[str],
        busy: Sequence[str],
        builds: Builds = NO_BUILD,
    ) -> datetime | None:
        value: datetime | None = await self.pool.fetchval(
            _NEXT_READY_SQL, task_queue, worker_id, list(names), list(busy), builds.accepted
        )
        return value

    async def record_fired_timers(
        self, worker_id: str, tasks: Sequence[WorkflowTask], lease: float
    ) -> list[WorkflowTask]:
        """Record each task's first message, a due timer, in its run's history: the workflow
        then proceeds past its sleep on a durable event, and what it does next needs no
        commit of the timer first (a timer followed by local work costs one commit).

        One statement for all: per run, fenced like a commit, the history row, the inbox
        row deleted and the run due again one lease from now (should this worker die
        before its next commit, another takes the run over then). Returns the tasks, those
        recorded carrying the event instead of the message."""
        fired = [t for t in tasks if t.messages and t.messages[0].type is E.TIMER_FIRED]
        if not fired:
            return list(tasks)
        row = await self.pool.fetchrow(
            _RECORD_FIRED_SQL,
            [t.workflow_id for t in fired],
            [t.run_id for t in fired],
            [t.fence for t in fired],
            [t.next_seq for t in fired],
            [t.messages[0].id for t in fired],
            [_seal_attrs(self.codecs, t.messages[0].attrs) for t in fired],
            worker_id,
            lease,
            int(E.TIMER_FIRED),
        )
        recorded = {str(run_id) for run_id in row["run_ids"]}
        return [
            dataclasses.replace(
                task,
                messages=task.messages[1:],
                fired=Event(task.next_seq, E.TIMER_FIRED, row["ts"], task.messages[0].attrs),
            )
            if task.run_id in recorded
            else task
            for task in tasks
        ]

    async def load_inbox(self, workflow_id: str, run_id: str) -> tuple[int, list[InboxMessage]]:
        """The run's inbox version and the messages visible now, read in one snapshot."""
        rows = await self.pool.fetch(_LOAD_INBOX_SQL, workflow_id, run_id)
        messages = [
            InboxMessage(r["id"], E(r["kind"]), _open_attrs(self.codecs, r["body"]))
            for r in rows
            if r["id"] is not None
        ]
        return (rows[0]["inbox_seq"] if rows else 0), messages

    async def commit_workflow_task(
        self, task: WorkflowTask, worker_id: str, commit: TaskCommit
    ) -> tuple[list[ActivityTask], datetime | None]:
        """Append the events of one workflow task and apply what they cause, atomically.

        Returns the activity tasks claimed for this worker and when the run is due next.
        The common case (activities, timers, incoming events) is one statement: one round
        trip, one commit. Events with wider effects (children, cancellations, updates,
        closing) continue in the same transaction with further statements.
        """
        step = (task, worker_id, commit)
        if _commits_alone(commit):
            rows = await self._group_commit.submit(step)
            if commit.closing is not None:
                return [], None
            return _eager_tasks(task, commit, rows), rows[0]["ready_at"]

        async def work(conn: asyncpg.Connection) -> tuple[list[ActivityTask], datetime | None]:
            rows = (await _fetch_commit(conn, [step], wide=True))[task.run_id]
            wide = _WideEffects(conn, task.workflow_id, task.run_id, commit.traces)
            for event in commit.events:
                if commit.has_effect(event):
                    await wide.apply(event)
            for update_id, failure in commit.rejected_updates:
                await _answer_call(conn, update_id, None, failure)
            if wide.closing is not None:
                if wide.closing.type in _READS_ALL and rows[0]["inbox_seq"] != commit.inbox_seq:
                    raise MissedMessages(
                        f"messages reached {task.workflow_id} while its closing step ran"
                    )
                await _close_run(
                    conn,
                    task.workflow_id,
                    task.run_id,
                    wide.closing,
                    rows[0],
                    started_children=commit.started_children,
                    trace=commit.run_trace,
                )
                return [], None
            ready_at = await conn.fetchval(_INBOX_READY_AT_SQL, task.workflow_id, task.run_id)
            eager = [t for t in _eager_tasks(task, commit, rows) if t.seq not in wide.cancelled]
            return eager, ready_at

        result: tuple[list[ActivityTask], datetime | None] = await self._retrying(work)
        return result

    async def _commit_steps(self, steps: Sequence[_Step]) -> dict[str, _Rows]:
        rows: dict[str, _Rows] = await self._retrying(
            lambda conn: _fetch_commit(conn, steps), transaction=False
        )
        self.commit_observer(len(steps))
        return rows

    async def release_workflow(
        self, task: WorkflowTask, worker_id: str, error: str, retry_in: float
    ) -> bool:
        """Give a workflow task back after it failed (e.g. nondeterminism), to retry later.
        False when the worker no longer held the run (another took it over, or it closed):
        then nothing changes."""
        status = await self.pool.execute(
            _RELEASE_WORKFLOW_SQL,
            task.workflow_id,
            task.run_id,
            worker_id,
            task.fence,
            error[:8000],
            retry_in,
        )
        return bool(status.endswith(" 1"))

    # ------------------------------------------------------------------ queries
    async def claim_queries(
        self,
        task_queue: str,
        worker_id: str,
        names: Sequence[str],
        limit: int,
        builds: Builds = NO_BUILD,
    ) -> tuple[list[QueryCall], bool]:
        """Queries this worker may answer now, and whether others wait for their run to take
        in the messages sent before them (see _CLAIM_QUERIES_SQL)."""
        rows = await self.pool.fetch(
            _CLAIM_QUERIES_SQL, task_queue, worker_id, list(names), limit, builds.accepted
        )
        calls = [
            QueryCall(
                str(r["id"]),
                r["workflow_id"],
                str(r["run_id"]),
                r["workflow_name"],
                r["name"],
                self.codecs.open(r["args"]),
            )
            for r in rows
            if r["id"] is not None
        ]
        return calls, any(r["waiting"] for r in rows if r["id"] is None)

    async def answer_call(
        self, call_id: str, result: bytes | None, failure: Failure | None
    ) -> None:
        async with self.pool.acquire() as conn:
            await _answer_call(conn, call_id, result, failure)

    async def fail_waiting_queries(self, workflow_id: str, run_id: str, failure: Failure) -> None:
        """Answer with ``failure`` the run's queries that wait for it to take in the messages
        sent before them (see _FAIL_WAITING_QUERIES_SQL)."""
        sealed = _seal_failure(self.codecs, failure)
        await self.pool.execute(_FAIL_WAITING_QUERIES_SQL, workflow_id, run_id, sealed, CHANNEL)
