"""The Postgres store: the only package that speaks SQL (and imports asyncpg).

Invariants kept here:
- a history event is written in the same transaction as the state change it causes;
- only the worker that owns a workflow (owner + fence) appends to its history, except
  terminate and cancel-before-start, which move the fence so that the owner's next commit
  fails, and the fired timer a claim records, fenced like a commit;
- a paused run is claimed by no worker (pausing moves its fence as terminate does);
- what happens to a workflow reaches it through its inbox, or, when produced by the
  worker that holds it (activity and local activity outcomes), in that worker's memory,
  and becomes history only in a commit of the owner.

Its parts: records (what leaves the store), sql (static statements), commit (the commit
statement builder), closing (the rules for closing a run), runs (posting to and starting
runs), batching, listener, migrations, stalled (ending tasks that wait on a database that
stopped answering); the Store class is made of base, workers, routing, client_ops,
controls, resets, retention, schedules, task_queues, workflow_tasks and activity_tasks.
"""

from __future__ import annotations

import itertools

import asyncpg

from .._clock import SYSTEM_CLOCK, Clock
from .._codecs import PLAIN, Codecs
from .activity_tasks import ActivityTasks
from .batching import InFlightBudget, _Batcher
from .client_ops import ClientOps
from .closing import TERMINAL_STATUS
from .connection import (
    COMMAND_TIMEOUT,
    _Connection,
    _ConnectionSetup,
    _keep_session,
    _make_role_settings,
)
from .controls import BATCH_ACTIONS, Controls
from .diagnosis import Finding, diagnose
from .errors import CONNECT_FAILED, NEVER_SENT, UNAVAILABLE, LostOwnership, MissedMessages
from .listener import CHANNEL, Listener, NotificationKeys, wait_notified
from .migrations import apply_migrations, apply_migrations_at, migrate, migrations_pending
from .records import (
    NO_BUILD,
    ActivityClaim,
    ActivityTask,
    BatchPage,
    Builds,
    CallOutcome,
    Cursor,
    InboxMessage,
    ListFilter,
    PendingActivityRow,
    QueryCall,
    ReleasedAttempt,
    ResetRun,
    RunRow,
    StartRequest,
    TaskCommit,
    WaitRow,
    WorkflowTask,
    WorkflowType,
)
from .resets import Resets
from .retention import Retention
from .routing import ACTIVITY_OPTIONS, ActivityRoute, Routing, UnservedWork
from .runs import KIND_QUERY, KIND_UPDATE, REQUESTS_KEPT
from .schedules import FiredSlot, RecentSlot, ScheduleRecord, Schedules, run_id_of
from .sql.client_ops import _NOTIFY_SQL
from .stalled import UNWIND, end_within
from .task_queues import QueueState, QueueWorkerRow, TaskQueues
from .test_databases import TimeSkipping, drop_test_database, new_test_database
from .workers import WorkerRecords
from .workflow_tasks import WorkflowTasks

__all__ = [
    "ACTIVITY_OPTIONS",
    "BATCH_ACTIONS",
    "CONNECT_FAILED",
    "KIND_QUERY",
    "KIND_UPDATE",
    "NEVER_SENT",
    "NO_BUILD",
    "REQUESTS_KEPT",
    "TERMINAL_STATUS",
    "UNAVAILABLE",
    "UNWIND",
    "ActivityClaim",
    "ActivityRoute",
    "ActivityTask",
    "BatchPage",
    "Builds",
    "CallOutcome",
    "Cursor",
    "Finding",
    "FiredSlot",
    "InboxMessage",
    "ListFilter",
    "LostOwnership",
    "MissedMessages",
    "NotificationKeys",
    "PendingActivityRow",
    "QueryCall",
    "QueueState",
    "QueueWorkerRow",
    "RecentSlot",
    "ReleasedAttempt",
    "ResetRun",
    "RunRow",
    "ScheduleRecord",
    "StartRequest",
    "Store",
    "TaskCommit",
    "UnservedWork",
    "WaitRow",
    "WorkflowTask",
    "WorkflowType",
    "apply_migrations",
    "diagnose",
    "drop_test_database",
    "end_within",
    "migrate",
    "new_test_database",
    "run_id_of",
    "wait_notified",
]


def _ignore(steps: int) -> None:
    pass


class Store(
    WorkerRecords,
    Routing,
    ClientOps,
    Controls,
    Resets,
    Retention,
    Schedules,
    TaskQueues,
    TimeSkipping,
    WorkflowTasks,
    ActivityTasks,
):
    """Every statement durable runs, behind thin methods that return typed records."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        codecs: Codecs,
        setup: _ConnectionSetup,
        *,
        listen_dsn: str | None = None,
        prepared_statements: bool = True,
        command_timeout: float = COMMAND_TIMEOUT,
    ) -> None:
        self.pool = pool
        self.connection_setup = setup
        self.commit_observer = _ignore
        self.dsn = dsn
        self.listen_dsn = listen_dsn
        self.prepared_statements = prepared_statements
        self.codecs = codecs
        self.clock = setup.clock
        self.listener = Listener(listen_dsn or dsn, self._probe_notifications, command_timeout)
        budget = InFlightBudget(pool.get_max_size() // 2)  # claims and reads keep the rest
        self._group_commit = _Batcher(budget, self._commit_steps, lambda step: step[0].run_id)
        self._group_start = _Batcher(budget, self._insert_runs, lambda start: start[1])
        self._group_post = _Batcher(budget, self._post_many, lambda post: post[0])
        self._post_keys = itertools.count()
        self.limited_queues = set()

    async def _probe_notifications(self, key: str) -> None:
        await self.pool.execute(_NOTIFY_SQL, CHANNEL, key)

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        max_connections: int = 10,
        migrate: bool = True,
        codecs: Codecs = PLAIN,
        connect_timeout: float = 10.0,
        clock: Clock = SYSTEM_CLOCK,
        listen_dsn: str | None = None,
        prepared_statements: bool = True,
        command_timeout: float = COMMAND_TIMEOUT,
    ) -> Store:
        """A pool on ``dsn`` (a pooler in transaction mode needs ``prepared_statements=False``
        unless it keeps them, as PgBouncer >= 1.21 does), notifications on ``listen_dsn``
        (a session: direct, or through a pooler in session mode; default: ``dsn``); no
        statement waits longer than ``command_timeout`` seconds for its answer (see
        COMMAND_TIMEOUT), except migrations."""
        pooled = listen_dsn is not None or not prepared_statements  # a pooler in between
        setup = _ConnectionSetup(codecs, clock, pooled=pooled)
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=max_connections,
            connection_class=_Connection,
            init=setup,
            reset=_keep_session,
            timeout=connect_timeout,
            statement_cache_size=100 if prepared_statements else 0,
            command_timeout=command_timeout,
        )
        store = cls(
            pool,
            dsn,
            codecs,
            setup,
            listen_dsn=listen_dsn,
            prepared_statements=prepared_statements,
            command_timeout=command_timeout,
        )
        pending = False
        if migrate or pooled:
            async with pool.acquire() as conn:
                pending = migrate and await migrations_pending(conn)
                if pooled:
                    await _make_role_settings(conn)
        if pending:
            await apply_migrations_at(dsn, connect_timeout)
        return store
