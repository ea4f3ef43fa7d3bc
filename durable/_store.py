"""The Postgres store: every SQL statement of durable lives in this module.

Invariants kept here:
- a history event is written in the same transaction as the state change it causes;
- only the worker that owns a workflow (owner + fence) appends to its history, except
  terminate, which bumps the fence so that the owner's next commit fails;
- an outcome reaches a workflow through its inbox and becomes history only when the
  owner has delivered it to the code.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import json
import logging
import math
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any, Generic, NamedTuple, TypeVar

import asyncpg
import msgpack

from ._codecs import PLAIN, Codecs
from ._definitions import DEFAULT_RETRY_POLICY, RetryPolicy
from ._errors import (
    DurableError,
    UpdateError,
    WorkflowAlreadyStartedError,
    WorkflowNotFoundError,
)
from ._events import Event, EventType, pack_attrs, unpack_attrs
from ._failures import Failure, activity_failure, may_retry

E = EventType
_log = logging.getLogger("durable.store")
CHANNEL = "durable"
_MIGRATION_LOCK = 0x6475726162  # "durab"
_RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)

TERMINAL_STATUS = {
    E.WORKFLOW_COMPLETED: "completed",
    E.WORKFLOW_FAILED: "failed",
    E.WORKFLOW_CANCELLED: "cancelled",
    E.WORKFLOW_CONTINUED_AS_NEW: "continued_as_new",
    E.WORKFLOW_TERMINATED: "terminated",
    E.WORKFLOW_TIMED_OUT: "timed_out",
}
CLOSED_STATUSES = frozenset(TERMINAL_STATUS.values())
FAILED_STATUSES = frozenset({"failed", "cancelled", "terminated", "timed_out"})
KIND_QUERY, KIND_UPDATE = 1, 2
_ENSURE_FAILED = "DU001"  # raised by durable.ensure()
_MISSED_MESSAGES = "DU002"  # raised by durable.ensure_read_all()
_REQUEST_RACE = "DU003"  # raised by durable.ensure_new_requests()


_CANCELS = frozenset({E.TIMER_CANCELLED, E.ACTIVITY_CANCEL_REQUESTED, E.CHILD_CANCEL_REQUESTED})


class LostOwnership(DurableError):
    """Another worker took the workflow over (or it was terminated) while we ran it."""


class MissedMessages(DurableError):
    """Messages reached a run while the step that closes it ran: nothing was written, and
    the step is to be run again from history with them."""


@dataclass(frozen=True)
class WorkflowTask:
    workflow_id: str
    run_id: str
    workflow_name: str
    fence: int
    next_seq: int
    resumed: bool  # some worker ran this run before (it was no longer pending)
    inbox_seq: int | None = None  # the inbox as the claim read it, when it did
    messages: tuple[InboxMessage, ...] = ()
    started: Event | None = None  # a new run's only event, when the claim read it
    fired: Event | None = None  # its due timer, recorded in history by the store (seq next_seq)


@dataclass(frozen=True)
class TaskCommit:
    """What one workflow task writes."""

    events: Sequence[Event]
    next_seq: int  # the run's next seq once these events are appended
    inbox_seq: int  # the inbox version the delivered messages were read at
    next_due: datetime | None  # when its earliest pending timer fires
    consumed: Sequence[int] = ()  # inbox rows delivered
    finished_activities: Sequence[tuple[int, int]] = ()  # (seq, attempt) finished in-process
    rejected_updates: Sequence[tuple[str, Failure]] = ()
    eager_slots: int = 0
    eager_activities: frozenset[tuple[str, str]] = frozenset()
    started_children: bool = True  # the run may have open children to close with it
    has_parent: bool = True  # a parent waits for the run's outcome

    @functools.cached_property
    def closing(self) -> Event | None:
        """The event that closes the run, if this step closes it."""
        return next((e for e in self.events if e.type.is_terminal), None)

    @functools.cached_property
    def withdrawn(self) -> frozenset[int]:
        """Activities, timers and children this step scheduled and cancelled again: never
        sent (neither their scheduling nor their cancellation has an effect)."""
        cancelled = {
            e.attrs["started" if e.type is E.TIMER_CANCELLED else "scheduled"]
            for e in self.events
            if e.type in _CANCELS
        }
        return frozenset(e.seq for e in self.events if e.seq in cancelled)

    def has_effect(self, event: Event) -> bool:
        """Whether the event changes anything beyond history (it is not withdrawn)."""
        if not self.withdrawn:
            return True
        ref = event.attrs.get("started" if event.type is E.TIMER_CANCELLED else "scheduled")
        return event.seq not in self.withdrawn and ref not in self.withdrawn


@dataclass(frozen=True)
class InboxMessage:
    id: int
    type: EventType
    attrs: dict[str, Any]


@dataclass
class ActivityTask:
    workflow_id: str
    run_id: str
    seq: int
    task_queue: str
    activity_name: str
    args: bytes
    attempt: int
    retry: RetryPolicy
    heartbeat_timeout: float | None
    deadline: datetime | None
    heartbeat_details: bytes | None
    schedule_deadline: datetime | None


@dataclass(frozen=True)
class QueryCall:
    id: str
    workflow_id: str
    run_id: str
    workflow_name: str
    name: str
    args: bytes


@dataclass(frozen=True)
class StartRequest:
    workflow_id: str
    workflow_name: str
    task_queue: str
    args: bytes
    id_reuse_policy: str = "allow_duplicate"
    id_conflict_policy: str = "fail"
    start_delay: timedelta | None = None
    execution_timeout: timedelta | None = None
    attributes: dict[str, Any] | None = None
    parent: tuple[str, str, int] | None = None

    @property
    def is_plain(self) -> bool:
        """Started with the default policies and no parent: nothing to check but the id."""
        return (
            self.id_reuse_policy == "allow_duplicate"
            and self.id_conflict_policy == "fail"
            and self.parent is None
        )


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(data: bytes | None) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False) if data is not None else None


class _Connection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection that carries its store's payload codecs to every statement helper."""

    codecs: Codecs = PLAIN


def _codecs(conn: asyncpg.Connection) -> Codecs:
    codecs: Codecs = conn.codecs
    return codecs


def _seal_attrs(codecs: Codecs, attrs: dict[str, Any]) -> bytes:
    return codecs.seal(pack_attrs(attrs))


def _open_attrs(codecs: Codecs, body: bytes) -> dict[str, Any]:
    return unpack_attrs(codecs.open(body))


def _seal_failure(codecs: Codecs, failure: Failure | None) -> bytes | None:
    return codecs.seal(_pack(failure)) if failure is not None else None


def _json_float(value: float) -> str:
    text = float.__repr__(value)  # the shortest text that reads back as this float
    if "e+" in text:
        # jsonb keeps numbers as numeric, which prints 1e+16 back as 10000000000000000: an int
        # to json.loads. Written out with a fraction it keeps its scale, and stays a float.
        text = f"{Decimal(text):f}.0"
    return text


def _json_dumps(value: Any) -> str:
    """``json.dumps`` for jsonb parameters, except that a float always comes back a float.

    Containment (``@>``) and the GIN index compare numbers by value, so 10000000000000000.0
    still matches 1e16 (and 1 matches 1.0, as in Python).
    """
    if isinstance(value, float) and math.isfinite(value):
        return _json_float(value)
    if isinstance(value, dict) and all(type(key) is str for key in value):
        items = (f"{json.dumps(key)}:{_json_dumps(item)}" for key, item in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(_json_dumps, value)) + "]"
    return json.dumps(value)


async def _init_connection(conn: asyncpg.Connection, codecs: Codecs) -> None:
    conn.codecs = codecs
    await conn.set_type_codec("jsonb", encoder=_json_dumps, decoder=json.loads, schema="pg_catalog")
    # Every statement here is meant to be driven by an index. The inbox and task tables go
    # from empty to large in seconds, faster than autovacuum's statistics, and a plan cached
    # while a table looked empty would scan all of it on every commit from then on. JIT
    # never pays for statements this short, and before Postgres 18 a disabled scan's cost
    # would make some of them JIT-compile for seconds.
    await conn.execute("SET enable_seqscan = off; SET jit = off")


async def wait_notified(event: asyncio.Event, timeout: float) -> None:
    """Wait until ``event`` is set or ``timeout`` seconds passed.

    (asyncio.wait_for can swallow a cancellation that arrives as the event is set, on 3.11;
    asyncio.timeout cannot.)
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool connections carry no session state (no LISTEN, SET or held locks), so they need
    no reset query on release: that saves a round trip per use."""


class Listener:
    """One LISTEN connection fanning notifications out to waiting asyncio.Events."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: asyncpg.Connection | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._lock = asyncio.Lock()

    async def subscribe(self, key: str, event: asyncio.Event) -> None:
        self._waiters.setdefault(key, set()).add(event)
        await self._ensure_connected()

    def unsubscribe(self, key: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(key)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[key]

    async def _ensure_connected(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return
            try:
                conn = await asyncpg.connect(self._dsn)
                await conn.add_listener(CHANNEL, self._on_notification)
                conn.add_termination_listener(self._on_lost)
                self._conn = conn
            except (OSError, asyncpg.PostgresError) as exc:
                _log.warning("LISTEN connection failed (%s); falling back to polling", exc)
            self._wake_all()  # whatever was missed while disconnected gets polled

    def _on_notification(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        for event in self._waiters.get(payload, ()):
            event.set()

    def _on_lost(self, conn: Any) -> None:
        self._conn = None
        self._wake_all()

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def reconnect_if_lost(self) -> None:
        if self._waiters:
            await self._ensure_connected()

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=2)
            self._conn = None


class Store:
    def __init__(self, pool: asyncpg.Pool, dsn: str, codecs: Codecs) -> None:
        self.pool = pool
        self.dsn = dsn
        self.codecs = codecs
        self.listener = Listener(dsn)
        self._group_commit = _Batcher(pool, self._commit_steps, lambda step: step[0].run_id)
        self._group_start = _Batcher(pool, self._insert_runs, lambda start: start[1])
        self._group_post = _Batcher(pool, self._post_many, lambda post: post[0])
        self._post_keys = itertools.count()

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        max_connections: int = 10,
        migrate: bool = True,
        codecs: Codecs = PLAIN,
        connect_timeout: float = 10.0,
    ) -> Store:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=max_connections,
            connection_class=_Connection,
            init=functools.partial(_init_connection, codecs=codecs),
            reset=_keep_session,
            timeout=connect_timeout,
        )
        store = cls(pool, dsn, codecs)
        if migrate:
            async with pool.acquire() as conn:
                await apply_migrations(conn)
        return store

    async def close(self) -> None:
        await self.listener.close()
        await self.pool.close()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            try:
                yield conn
            except BaseException:
                # a connection that died took its transaction with it: then rolling back fails
                # with "the underlying connection is closed", which must not hide the error
                # that says why
                with contextlib.suppress(asyncpg.InterfaceError, asyncpg.InternalClientError):
                    await transaction.rollback()
                raise
            await transaction.commit()

    async def _retrying(
        self, work: Callable[[asyncpg.Connection], Any], *, transaction: bool = True
    ) -> Any:
        """Run ``work`` (in a transaction), again if Postgres aborted it for a deadlock."""
        for attempt in range(5):
            try:
                if not transaction:
                    async with self.pool.acquire() as conn:
                        return await work(conn)
                async with self._transaction() as conn:
                    return await work(conn)
            except (*_RETRYABLE, asyncpg.PostgresError) as exc:
                if attempt == 4 or not (isinstance(exc, _RETRYABLE) or _request_race(exc)):
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

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

    # ------------------------------------------------------------------ starting
    async def start_workflow(
        self,
        request: StartRequest,
        run_id: str,
        signal: tuple[str, bytes, str] | None = None,
        *,
        again: bool = False,
    ) -> tuple[str, bool]:
        """Start run ``run_id`` (or, per the conflict policy, use the open one) and post
        ``signal`` (name, arguments, request id) to it. Returns (run_id, started).

        ``again``: an earlier attempt with this run id may have committed (its connection
        broke); if it did, that is the start."""
        if again and await self.run_row(request.workflow_id, run_id) is not None:
            return run_id, True
        plain = signal is None and request.is_plain  # one statement, unless the id is in use
        if plain and await self._group_start.submit((request, run_id)):
            return run_id, True

        async def work(conn: asyncpg.Connection) -> tuple[str, bool]:
            opened, started = await _start_in(conn, request, run_id)
            if signal is not None:
                name, args, request_id = signal
                attrs = {"name": name, "args": args}
                await _post(conn, request.workflow_id, opened, E.SIGNAL_RECEIVED, attrs, request_id)
            return opened, started

        try:
            result: tuple[str, bool] = await self._retrying(work)
        except _StartRaceLost:
            # a concurrent start of the same id won the race
            if request.id_conflict_policy == "use_existing" or signal is not None:
                return await self.start_workflow(request, run_id, signal)
            raise WorkflowAlreadyStartedError(
                f"workflow {request.workflow_id!r} is already running",
                workflow_id=request.workflow_id,
            ) from None
        return result

    # ------------------------------------------------------------------ client operations
    async def signal(
        self, workflow_id: str, run_id: str | None, name: str, args: bytes, request_id: str
    ) -> None:
        """Post a signal to the open run a handle addresses (see :func:`_addressed_run`),
        once per request id."""
        attrs = {"name": name, "args": args}
        key, body = str(next(self._post_keys)), _seal_attrs(self.codecs, attrs)
        post = (key, workflow_id, run_id, E.SIGNAL_RECEIVED, body, request_id)
        if await self._group_post.submit(post):
            return  # grouped with concurrent posts into one statement
        async with self.pool.acquire() as conn:
            run = await _post_to_run(
                conn, workflow_id, run_id, E.SIGNAL_RECEIVED, attrs, request_id
            )
        _require_open(run, workflow_id, run_id)

    async def request_cancel(
        self, workflow_id: str, run_id: str | None, reason: str | None, request_id: str
    ) -> None:
        """Ask the run a handle addresses to cancel, once per request id. Nothing to do once
        the workflow closed, unless the handle is pinned to a run: then its run being closed
        is an error."""

        async def work(conn: asyncpg.Connection) -> None:
            run = await _addressed_run(conn, workflow_id, run_id, lock=True)
            if not await _first_time(conn, workflow_id, request_id):
                return
            if run["closed_at"] is None:
                await _cancel_run(conn, run, reason)
            elif run_id is not None:
                _require_open(run, workflow_id, run_id)

        await self._retrying(work)

    async def _post_many(self, posts: Sequence[_Post]) -> dict[str, bool]:
        """Whether each post (by key) found an open run, written in one statement."""
        rows: _Rows = await self._retrying(lambda conn: _post_many(conn, posts), transaction=False)
        posted = {r["key"] for r in rows}
        return {post[0]: post[0] in posted for post in posts}

    async def terminate(
        self, workflow_id: str, run_id: str | None, reason: str | None, request_id: str
    ) -> None:
        """Terminate the run a handle addresses, once per request id."""

        async def work(conn: asyncpg.Connection) -> None:
            run = await _addressed_run(conn, workflow_id, run_id, lock=True)
            if not await _first_time(conn, workflow_id, request_id):
                return
            if run["closed_at"] is None:
                await _terminate_run(conn, workflow_id, str(run["run_id"]), reason)
            elif run_id is not None:
                _require_open(run, workflow_id, run_id)

        await self._retrying(work)

    async def latest_run(self, workflow_id: str) -> asyncpg.Record:
        """The run's row; its payload columns are sealed (see :meth:`open_failure`)."""
        async with self.pool.acquire() as conn:
            return await _latest_run(conn, workflow_id)

    async def addressed_run(self, workflow_id: str, run_id: str | None) -> asyncpg.Record:
        """The run a handle acts on (see :func:`_addressed_run`)."""
        async with self.pool.acquire() as conn:
            return await _addressed_run(conn, workflow_id, run_id)

    async def run_row(self, workflow_id: str, run_id: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT * FROM durable.workflows WHERE workflow_id = $1 AND run_id = $2",
            workflow_id,
            run_id,
        )

    def open_payload(self, data: bytes) -> bytes:
        return self.codecs.open(data)

    def open_failure(self, data: bytes | None) -> Failure | None:
        failure: Failure | None = _unpack(self.codecs.open(data))
        return failure

    async def pending_activities(self, workflow_id: str, run_id: str) -> list[asyncpg.Record]:
        return list(
            await self.pool.fetch(
                "SELECT seq, activity_name, attempt, owner IS NOT NULL AS running, scheduled_at, "
                "visible_at, last_failure FROM durable.activity_tasks "
                "WHERE workflow_id = $1 AND run_id = $2 ORDER BY seq",
                workflow_id,
                run_id,
            )
        )

    async def load_history(self, workflow_id: str, run_id: str) -> list[Event]:
        rows = await self.pool.fetch(
            "SELECT seq, kind, ts, body, ends_step FROM durable.history "
            "WHERE workflow_id = $1 AND run_id = $2 ORDER BY seq",
            workflow_id,
            run_id,
        )
        return [
            Event(
                r["seq"], E(r["kind"]), r["ts"], _open_attrs(self.codecs, r["body"]), r["ends_step"]
            )
            for r in rows
        ]

    async def list_workflows(
        self,
        *,
        status: str | None,
        workflow_name: str | None,
        attributes: dict[str, Any] | None,
        started_after: datetime | None,
        after: tuple[datetime, str, str] | None,
        limit: int,
    ) -> list[asyncpg.Record]:
        return list(
            await self.pool.fetch(
                "SELECT * FROM durable.workflows WHERE "
                "($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR workflow_name = $2) "
                "AND ($3::jsonb IS NULL OR attributes @> $3) "
                "AND ($4::timestamptz IS NULL OR started_at > $4) "
                "AND ($5::timestamptz IS NULL OR (started_at, workflow_id, run_id::text) > ($5, $6, $7)) "
                "ORDER BY started_at, workflow_id, run_id::text LIMIT $8",
                status,
                workflow_name,
                attributes,
                started_after,
                after[0] if after else None,
                after[1] if after else None,
                after[2] if after else None,
                limit,
            )
        )

    async def create_call(
        self,
        kind: int,
        workflow_id: str,
        run_id: str | None,
        name: str,
        args: bytes,
        request_id: str | None = None,
    ) -> str:
        """Insert a query or update request for the run a handle addresses; an update also
        goes to that run's inbox, and needs it open. An update with a request id is sent
        once: sent again, it is the same call (its id derives from the request id)."""
        call_id = str(uuid.uuid4())
        if request_id is not None:
            call_id = str(uuid.uuid5(_UPDATE_IDS, f"{workflow_id}\x00{request_id}"))
        async with self._transaction() as conn:
            if request_id is not None and not await _first_time(conn, workflow_id, request_id):
                if not await conn.fetchval("SELECT 1 FROM durable.calls WHERE id = $1", call_id):
                    raise UpdateError(
                        f"the update with request_id {request_id!r} to workflow {workflow_id!r} "
                        f"was applied more than {REQUESTS_KEPT} ago; its answer is forgotten"
                    )
                return call_id  # sent before: its answer (when there is one) is the answer
            if kind == KIND_UPDATE:
                attrs = {"update_id": call_id, "name": name, "args": args}
                run = await _post_to_run(conn, workflow_id, run_id, E.UPDATE_ACCEPTED, attrs)
                _require_open(run, workflow_id, run_id)
            else:
                run = await _addressed_run(conn, workflow_id, run_id)
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, "q" + run["task_queue"])
            await conn.execute(
                "INSERT INTO durable.calls (id, workflow_id, run_id, kind, task_queue, name, args) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                call_id,
                workflow_id,
                run["run_id"],
                kind,
                run["task_queue"],
                name,
                self.codecs.seal(args),
            )
        return call_id

    async def call_outcome(self, call_id: str) -> asyncpg.Record | None:
        """The answer to a call once it is done, sealed. A query is forgotten then; an
        update is kept (for a resend of its request: see purge_requests)."""
        return await self.pool.fetchrow(
            "WITH answer AS (SELECT id, kind, result, failure FROM durable.calls"
            " WHERE id = $1 AND done),"
            " forgotten AS (DELETE FROM durable.calls WHERE id = $1 AND kind = 1 AND done) "
            "SELECT result, failure FROM answer",
            call_id,
        )

    async def forget_call(self, call_id: str) -> None:
        await self.pool.execute("DELETE FROM durable.calls WHERE id = $1", call_id)

    # ------------------------------------------------------------------ workflow tasks
    async def claim_workflow_tasks(
        self, task_queue: str, worker_id: str, names: Sequence[str], busy: Sequence[str], limit: int
    ) -> list[WorkflowTask]:
        """Runs with work due: this worker's own (sticky, no write needed), then unowned ones
        and those of workers whose lease lapsed (taken over: the fence moves on).

        Inbox rows are visible from ``clock_timestamp()``, not ``now()``: a message stamped
        with its poster's transaction start can commit after this statement's transaction
        timestamp was taken and before its snapshot, so the snapshot holds the message (and
        the inbox_seq it bumped) while ``now()`` would hide it, and the commit would then
        take the inbox for read in full and leave the message stranded."""
        rows = await self.pool.fetch(
            _CLAIM_WORKFLOWS_SQL, task_queue, worker_id, list(names), list(busy), limit
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
        self, task_queue: str, worker_id: str, names: Sequence[str], busy: Sequence[str]
    ) -> datetime | None:
        value: datetime | None = await self.pool.fetchval(
            _NEXT_READY_SQL, task_queue, worker_id, list(names), list(busy)
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
        rows = await self.pool.fetch(
            "SELECT w.inbox_seq, i.id, i.kind, i.body FROM durable.workflows w"
            " LEFT JOIN durable.inbox i ON i.workflow_id = w.workflow_id AND i.run_id = w.run_id"
            "  AND i.visible_at <= clock_timestamp() "
            "WHERE w.workflow_id = $1 AND w.run_id = $2 ORDER BY i.visible_at, i.id",
            workflow_id,
            run_id,
        )
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
            wide = _WideEffects(conn, task.workflow_id, task.run_id)
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
                )
                return [], None
            ready_at = await conn.fetchval(
                "UPDATE durable.workflows SET ready_at = (SELECT min(visible_at) FROM durable.inbox"
                " i WHERE i.workflow_id = $1 AND i.run_id = $2) WHERE workflow_id = $1 AND run_id = $2"
                " RETURNING ready_at",
                task.workflow_id,
                task.run_id,
            )
            eager = [t for t in _eager_tasks(task, commit, rows) if t.seq not in wide.cancelled]
            return eager, ready_at

        result: tuple[list[ActivityTask], datetime | None] = await self._retrying(work)
        return result

    async def _insert_runs(self, starts: Sequence[_Start]) -> dict[str, bool]:
        """Whether each start opened its run (by run id), written in one statement."""
        opened: set[str] = await self._retrying(
            lambda conn: _insert_runs(conn, starts), transaction=False
        )
        return {run_id: run_id in opened for _, run_id in starts}

    async def _commit_steps(self, steps: Sequence[_Step]) -> dict[str, _Rows]:
        rows: dict[str, _Rows] = await self._retrying(
            lambda conn: _fetch_commit(conn, steps), transaction=False
        )
        return rows

    async def release_workflow(
        self, task: WorkflowTask, worker_id: str, error: str, retry_in: float
    ) -> None:
        """Give a workflow task back after it failed (e.g. nondeterminism), to retry later."""
        await self.pool.execute(
            "UPDATE durable.workflows SET owner = NULL, task_failures = task_failures + 1,"
            " last_error = $5, ready_at = now() + make_interval(secs => $6) "
            "WHERE workflow_id = $1 AND run_id = $2 AND owner = $3 AND fence = $4",
            task.workflow_id,
            task.run_id,
            worker_id,
            task.fence,
            error[:8000],
            retry_in,
        )

    # ------------------------------------------------------------------ activity tasks
    async def claim_activity_tasks(
        self, task_queue: str, worker_id: str, names: Sequence[str], limit: int
    ) -> list[ActivityTask]:
        rows = await self.pool.fetch(
            "WITH picked AS ("
            " SELECT workflow_id, run_id, seq FROM durable.activity_tasks"
            " WHERE task_queue = $1 AND owner IS NULL AND visible_at <= now()"
            "  AND activity_name = ANY($3)"
            " ORDER BY visible_at LIMIT $4 FOR UPDATE SKIP LOCKED) "
            f"UPDATE durable.activity_tasks t SET {_CLAIM_ACTIVITY_SET} "
            "FROM picked WHERE t.workflow_id = picked.workflow_id AND t.run_id = picked.run_id"
            " AND t.seq = picked.seq RETURNING t.*",
            task_queue,
            worker_id,
            list(names),
            limit,
        )
        return [_activity_task(self.codecs, r) for r in rows]

    async def next_activity_visible_at(
        self, task_queue: str, names: Sequence[str]
    ) -> datetime | None:
        value: datetime | None = await self.pool.fetchval(
            "SELECT min(visible_at) FROM durable.activity_tasks "
            "WHERE task_queue = $1 AND owner IS NULL AND activity_name = ANY($2)",
            task_queue,
            list(names),
        )
        return value

    async def complete_activity(self, task: ActivityTask, worker_id: str, result: bytes) -> bool:
        return await self._finish_activity(
            task, worker_id, E.ACTIVITY_COMPLETED, {"scheduled": task.seq, "result": result}
        )

    async def fail_activity(
        self, task: ActivityTask, worker_id: str, failure: Failure, details: bytes | None = None
    ) -> str:
        """Retry or fail for good; returns "retry", "failed" or "lost".

        ``details`` are heartbeat details not flushed yet, kept for the next attempt.
        """

        async def work(conn: asyncpg.Connection) -> str:
            owned = await conn.fetchval(
                "SELECT 1 FROM durable.activity_tasks WHERE workflow_id = $1 AND run_id = $2 "
                "AND seq = $3 AND attempt = $4 AND owner = $5 FOR UPDATE",
                task.workflow_id,
                task.run_id,
                task.seq,
                task.attempt,
                worker_id,
            )
            if owned is None:
                return "lost"
            return await _retry_or_fail(conn, task, failure, details)

        outcome: str = await self._retrying(work)
        return outcome

    async def _finish_activity(
        self, task: ActivityTask, worker_id: str, etype: EventType, attrs: dict[str, Any]
    ) -> bool:
        async def work(conn: asyncpg.Connection) -> bool:
            deleted = await conn.fetchval(
                "DELETE FROM durable.activity_tasks WHERE workflow_id = $1 AND run_id = $2 "
                "AND seq = $3 AND attempt = $4 AND owner = $5 RETURNING 1",
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
            "UPDATE durable.activity_tasks SET heartbeat_details = coalesce($6, heartbeat_details),"
            " deadline = LEAST(started_at + make_interval(secs => start_to_close), schedule_deadline,"
            "   now() + make_interval(secs => heartbeat_timeout)) "
            "WHERE workflow_id = $1 AND run_id = $2 AND seq = $3 AND attempt = $4 AND owner = $5 "
            "RETURNING cancel_requested, deadline",
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
            rows = await conn.fetch(
                "SELECT * FROM durable.activity_tasks t WHERE t.task_queue = $1 AND ("
                " t.deadline < now() OR (t.owner IS NOT NULL AND NOT EXISTS ("
                "  SELECT 1 FROM durable.workers k WHERE k.worker_id = t.owner"
                "  AND k.expires_at > now()))) "
                "LIMIT 100 FOR UPDATE SKIP LOCKED",
                task_queue,
            )
            for row in rows:
                task = _activity_task(self.codecs, row)
                await _retry_or_fail(conn, task, _timeout_failure(row))
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
    ) -> list[asyncpg.Record]:
        """Make visible again the attempts claimed for this worker more than ``older_than``
        seconds ago that it does not run: the reply to their claim was lost (the claim
        committed, the connection died). Attempts running here and activities of runs busy
        here (results handed to the run, not yet committed) are kept. Returns the released."""
        return list(
            await self.pool.fetch(
                "UPDATE durable.activity_tasks SET owner = NULL, started_at = NULL,"
                " visible_at = now(), deadline = schedule_deadline "
                "WHERE task_queue = $1 AND owner = $2"
                " AND started_at < now() - make_interval(secs => $3)"
                " AND NOT (run_id = ANY($4::uuid[]))"
                " AND (run_id, seq, attempt) NOT IN ("
                "  SELECT * FROM unnest($5::uuid[], $6::int[], $7::int[])) "
                "RETURNING workflow_id, seq, activity_name, attempt",
                task_queue,
                worker_id,
                older_than,
                list(busy_runs),
                [t.run_id for t in running],
                [t.seq for t in running],
                [t.attempt for t in running],
            )
        )

    # ------------------------------------------------------------------ queries
    async def claim_queries(
        self, task_queue: str, worker_id: str, names: Sequence[str], limit: int
    ) -> tuple[list[QueryCall], bool]:
        """Queries this worker may answer now, and whether others wait for their run to take
        in the messages sent before them (see _CLAIM_QUERIES_SQL)."""
        rows = await self.pool.fetch(_CLAIM_QUERIES_SQL, task_queue, worker_id, list(names), limit)
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


# ====================================================================== statements in a transaction


async def _applied_migrations(conn: asyncpg.Connection) -> set[int]:
    if await conn.fetchval("SELECT to_regclass('durable.schema_migrations')") is None:
        return set()
    return {r["version"] for r in await conn.fetch("SELECT version FROM durable.schema_migrations")}


async def apply_migrations(conn: asyncpg.Connection) -> list[int]:
    """Apply the numbered migrations not yet applied; safe to run from many processes at once.

    An up-to-date schema is detected without DDL or locks, so roles that may not alter the
    schema can connect.
    """
    if {version for version, _ in _migration_files()} <= await _applied_migrations(conn):
        return []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE SCHEMA IF NOT EXISTS durable;"
            "CREATE TABLE IF NOT EXISTS durable.schema_migrations ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = await _applied_migrations(conn)
        done = []
        for version, sql in _migration_files():
            if version in applied:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO durable.schema_migrations (version) VALUES ($1)", version
                )
            done.append(version)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)


def _migration_files() -> list[tuple[int, str]]:
    folder = resources.files("durable") / "_migrations"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(int(f.name.split("_", 1)[0]), f.read_text()) for f in files]


async def _latest_run(
    conn: asyncpg.Connection, workflow_id: str, *, lock: bool = False
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT * FROM durable.workflows WHERE workflow_id = $1 "
        "ORDER BY closed_at IS NULL DESC, created_at DESC LIMIT 1"
        + (" FOR UPDATE" if lock else ""),
        workflow_id,
    )
    if row is None:
        raise WorkflowNotFoundError(f"no workflow with id {workflow_id!r}")
    return row


# The last run of the chain of continue-as-new that begins with a given run.
_CHAIN_END_SQL = """
WITH RECURSIVE chain AS (
    SELECT run_id, continued_run_id, 1 AS depth FROM durable.workflows
    WHERE workflow_id = $1 AND run_id = $2
    UNION ALL
    SELECT w.run_id, w.continued_run_id, c.depth + 1
    FROM chain c JOIN durable.workflows w ON w.workflow_id = $1 AND w.run_id = c.continued_run_id)
SELECT run_id FROM chain ORDER BY depth DESC LIMIT 1
"""


async def _addressed_run(
    conn: asyncpg.Connection, workflow_id: str, run_id: str | None, *, lock: bool = False
) -> asyncpg.Record:
    """The run a handle acts on: without a run id, the workflow's open run, else its latest;
    with one, that run or, if it continued as new, the run it became (transitively). A new
    run started later under the same id is not reached by a handle pinned to an older one."""
    while True:
        if run_id is None:
            row = await _latest_run(conn, workflow_id, lock=lock)
        else:
            end = await conn.fetchval(_CHAIN_END_SQL, workflow_id, run_id)
            row = None
            if end is not None:
                row = await conn.fetchrow(
                    "SELECT * FROM durable.workflows WHERE workflow_id = $1 AND run_id = $2"
                    + (" FOR UPDATE" if lock else ""),
                    workflow_id,
                    end,
                )
            if row is None:
                raise WorkflowNotFoundError(f"no run {run_id} of workflow {workflow_id!r}")
        if not (lock and row["status"] == "continued_as_new"):
            return row
        # it continued as new while we waited for its lock: the next run is the one


def _require_open(run: asyncpg.Record, workflow_id: str, run_id: str | None = None) -> None:
    if run["closed_at"] is None:
        return
    if run_id is None:
        raise WorkflowNotFoundError(
            f"workflow {workflow_id!r} is not running (its latest run is {run['status']})"
        )
    raise WorkflowNotFoundError(
        f"run {run_id} of workflow {workflow_id!r} is closed ({run['status']}); a handle "
        f"pinned to a run acts on that run only: use client.get_handle({workflow_id!r}) "
        "for the workflow's latest run"
    )


async def _post_to_run(
    conn: asyncpg.Connection,
    workflow_id: str,
    run_id: str | None,
    etype: EventType,
    attrs: dict[str, Any],
    request_id: str | None = None,
) -> asyncpg.Record:
    """Post a message to the open run a handle addresses (one statement) and return that
    run, or return the run it addresses, closed, without posting. A run may open between a
    post that found none and the read that follows (it continued as new): then post again."""
    target = run_id
    while True:
        posted = await _post(conn, workflow_id, target, etype, attrs, request_id)
        if posted is not None:
            return posted
        run = await _addressed_run(conn, workflow_id, run_id)
        if run["closed_at"] is not None:
            return run
        target = None if run_id is None else str(run["run_id"])


async def _start_in(
    conn: asyncpg.Connection, request: StartRequest, run_id: str | None = None
) -> tuple[str, bool]:
    existing = await conn.fetchrow(
        "SELECT run_id, status, closed_at FROM durable.workflows WHERE workflow_id = $1 "
        "ORDER BY closed_at IS NULL DESC, created_at DESC LIMIT 1 FOR UPDATE",
        request.workflow_id,
    )
    if existing is not None and existing["closed_at"] is None:
        if request.id_conflict_policy == "use_existing":
            return str(existing["run_id"]), False
        if request.id_conflict_policy == "terminate_existing":
            await _terminate_run(
                conn,
                request.workflow_id,
                str(existing["run_id"]),
                "terminated by a new start (id_conflict_policy)",
            )
        else:
            raise WorkflowAlreadyStartedError(
                f"workflow {request.workflow_id!r} is already running (run {existing['run_id']}); "
                "pass id_conflict_policy='use_existing' to get its handle instead",
                workflow_id=request.workflow_id,
                run_id=str(existing["run_id"]),
            )
    elif existing is not None:
        policy = request.id_reuse_policy
        if policy == "reject_duplicate" or (
            policy == "allow_failed_only" and existing["status"] not in FAILED_STATUSES
        ):
            raise WorkflowAlreadyStartedError(
                f"workflow id {request.workflow_id!r} was already used (last run "
                f"{existing['status']}) and id_reuse_policy={policy!r} forbids reusing it",
                workflow_id=request.workflow_id,
                run_id=str(existing["run_id"]),
            )
    run_id = run_id or str(uuid.uuid4())
    if not await _insert_run(conn, request, run_id):
        raise _StartRaceLost
    return run_id, True


# Store.claim_workflow_tasks: the worker's own due runs, unowned ones, then those of workers
# whose lease lapsed, each an index range of workflows_ready_by_owner in due order ("ORDER BY
# owner, ready_at": the planner reads IS NULL as a filter, not as a constant, and would sort).
# A worker whose own lease lapsed (an outage longer than the lease) is not one of those: its
# runs are its own, found once; counted twice they would bring each message twice.
_CLAIM_WORKFLOWS_SQL = """
WITH mine AS (
    SELECT workflow_id, run_id, workflow_name, fence, next_seq, true AS resumed
    FROM durable.workflows
    WHERE task_queue = $1 AND owner = $2 AND ready_at <= now()
        AND workflow_name = ANY($3) AND NOT (run_id = ANY($4::uuid[]))
    ORDER BY ready_at LIMIT $5),
unowned AS (
    SELECT workflow_id, run_id, status <> 'pending' AS resumed
    FROM durable.workflows
    WHERE task_queue = $1 AND owner IS NULL AND ready_at <= now() AND workflow_name = ANY($3)
    ORDER BY owner, ready_at LIMIT greatest($5 - (SELECT count(*) FROM mine), 0)
    FOR UPDATE SKIP LOCKED),
orphaned AS (
    SELECT workflow_id, run_id, status <> 'pending' AS resumed
    FROM durable.workflows
    WHERE task_queue = $1 AND ready_at <= now() AND workflow_name = ANY($3)
        AND owner = ANY(ARRAY(SELECT worker_id FROM durable.workers
                              WHERE task_queue = $1 AND expires_at <= now() AND worker_id <> $2))
    ORDER BY ready_at
    LIMIT greatest($5 - (SELECT count(*) FROM mine) - (SELECT count(*) FROM unowned), 0)
    FOR UPDATE SKIP LOCKED),
taken AS (
    UPDATE durable.workflows w SET fence = w.fence + 1, owner = $2,
        status = CASE WHEN w.status = 'pending' THEN 'running' ELSE w.status END
    FROM (SELECT * FROM unowned UNION ALL SELECT * FROM orphaned) o
    WHERE w.workflow_id = o.workflow_id AND w.run_id = o.run_id
    RETURNING w.workflow_id, w.run_id, w.workflow_name, w.fence, w.next_seq, o.resumed),
claimed AS (SELECT * FROM mine UNION ALL SELECT * FROM taken)
SELECT c.*, w.inbox_seq, i.id AS message_id, i.kind, i.body,
    h.ts AS started_ts, h.body AS started_body
FROM claimed c JOIN durable.workflows w ON w.workflow_id = c.workflow_id AND w.run_id = c.run_id
LEFT JOIN LATERAL (
    SELECT id, kind, body, visible_at FROM durable.inbox
    WHERE workflow_id = c.workflow_id AND run_id = c.run_id AND visible_at <= clock_timestamp()
    OFFSET 0) i ON true
LEFT JOIN durable.history h ON NOT c.resumed AND h.workflow_id = c.workflow_id
    AND h.run_id = c.run_id AND h.seq = 1
ORDER BY c.workflow_id, c.run_id, i.visible_at, i.id
"""

# When a run of the queue is due next for this worker (its own but the busy ones, unowned
# ones, those of lapsed workers): the first entry of each index range.
_NEXT_READY_SQL = """
SELECT least(
    (SELECT min(ready_at) FROM durable.workflows WHERE task_queue = $1 AND owner = $2
        AND ready_at IS NOT NULL AND workflow_name = ANY($3) AND NOT (run_id = ANY($4::uuid[]))),
    (SELECT min(ready_at) FROM durable.workflows WHERE task_queue = $1 AND owner IS NULL
        AND ready_at IS NOT NULL AND workflow_name = ANY($3)),
    (SELECT min(ready_at) FROM durable.workflows WHERE task_queue = $1
        AND ready_at IS NOT NULL AND workflow_name = ANY($3)
        AND owner = ANY(ARRAY(SELECT worker_id FROM durable.workers
                              WHERE task_queue = $1 AND expires_at <= now()))))
"""


# Store.record_fired_timers: each run's first message, a due timer, becomes its next history
# event. Runs whose owner, fence or next_seq moved since the claim are left out (their timer
# stays in the inbox and is delivered as a message). Inbox ids are unique: matching each key
# column against its array is exact.
_RECORD_FIRED_SQL = """
WITH advanced AS (
    UPDATE durable.workflows w SET next_seq = f.seq + 1,
        ready_at = now() + make_interval(secs => $8)
    FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::int[]) AS f(workflow_id, run_id, fence, seq)
    WHERE w.workflow_id = f.workflow_id AND w.run_id = f.run_id AND w.owner = $7
        AND w.fence = f.fence AND w.next_seq = f.seq
    RETURNING w.run_id),
moved AS (
    DELETE FROM durable.inbox WHERE workflow_id = ANY($1::text[])
        AND run_id = ANY(ARRAY(SELECT run_id FROM advanced)) AND id = ANY($5::bigint[])),
recorded AS (
    INSERT INTO durable.history (workflow_id, run_id, seq, kind, ts, body)
    SELECT f.workflow_id, f.run_id, f.seq, $9, now(), f.body
    FROM unnest($1::text[], $2::uuid[], $4::int[], $6::bytea[]) AS f(workflow_id, run_id, seq, body)
    WHERE f.run_id = ANY(ARRAY(SELECT run_id FROM advanced)))
SELECT now() AS ts, ARRAY(SELECT run_id FROM advanced) AS run_ids
"""


# Store.claim_queries: the pending queries of runs this worker may read (its own, unowned,
# closed, or held by a lapsed worker). A query is answered only once its run has taken in
# every message that reached it before the query was sent (read-your-writes: a query right
# after a signal sees the signal); until then it waits, and the last row says so.
_CLAIM_QUERIES_SQL = """
WITH picked AS (
    SELECT c.id, w.workflow_name, EXISTS (
        SELECT 1 FROM durable.inbox i WHERE i.workflow_id = c.workflow_id
            AND i.run_id = c.run_id AND i.visible_at <= c.created_at) AS behind
    FROM durable.calls c JOIN durable.workflows w
        ON w.workflow_id = c.workflow_id AND w.run_id = c.run_id
    WHERE c.task_queue = $1 AND c.kind = 1 AND NOT c.done
        AND (c.claimed_until IS NULL OR c.claimed_until < now())
        AND w.workflow_name = ANY($3)
        AND (w.owner IS NULL OR w.owner = $2 OR w.closed_at IS NOT NULL OR NOT EXISTS (
            SELECT 1 FROM durable.workers k WHERE k.worker_id = w.owner AND k.expires_at > now()))
    ORDER BY c.created_at LIMIT $4 FOR UPDATE OF c SKIP LOCKED),
claimed AS (
    UPDATE durable.calls c SET claimed_by = $2, claimed_until = now() + interval '30 seconds'
    FROM picked WHERE c.id = picked.id AND NOT picked.behind
    RETURNING c.id, c.workflow_id, c.run_id, picked.workflow_name, c.name, c.args)
SELECT *, false AS waiting FROM claimed
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, EXISTS (SELECT 1 FROM picked WHERE behind)
"""


REQUESTS_KEPT = timedelta(days=1)  # a client request is applied once within this time
_UPDATE_IDS = uuid.UUID("9d7c3f7e-4b1e-4a53-9c44-6a1c1a6f0d11")  # namespace of update ids


async def _first_time(conn: asyncpg.Connection, workflow_id: str, request_id: str) -> bool:
    """Record a client request in this transaction; False if it was applied before."""
    inserted = await conn.fetchval(
        "INSERT INTO durable.requests (workflow_id, request_id) VALUES ($1, $2)"
        " ON CONFLICT DO NOTHING RETURNING true",
        workflow_id,
        request_id,
    )
    return bool(inserted)


class _StartRaceLost(Exception):
    """A concurrent start of the same workflow id opened its run first."""


# New runs in one statement (one run, or many started together): each run's row (unless its
# workflow id has an open run), its first history event, its execution timeout, and a
# wake-up for the workers of its queue. Returns the runs opened.
_INSERT_RUNS_SQL = """
WITH req AS (
    SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[],
        $6::uuid[], $7::int[], $8::jsonb[], $9::float8[], $10::timestamptz[], $11::bytea[],
        $12::timestamptz[], $13::bytea[])
        AS q(workflow_id, run_id, workflow_name, task_queue, parent_workflow_id,
            parent_run_id, parent_seq, attributes, delay, ts, body, deadline, timeout_body)),
run AS (
    INSERT INTO durable.workflows (workflow_id, run_id, workflow_name, task_queue, status,
        parent_workflow_id, parent_run_id, parent_seq, attributes, ready_at, started_at)
    SELECT workflow_id, run_id, workflow_name, task_queue, 'pending', parent_workflow_id,
        parent_run_id, parent_seq, attributes, now() + make_interval(secs => delay), ts
    FROM req
    ON CONFLICT (workflow_id) WHERE closed_at IS NULL DO NOTHING
    RETURNING workflow_id, run_id, task_queue),
started AS (
    INSERT INTO durable.history (workflow_id, run_id, seq, kind, ts, body)
    SELECT r.workflow_id, r.run_id, 1, $14::smallint, q.ts, q.body
    FROM run r JOIN req q ON q.run_id = r.run_id),
timeout AS (
    INSERT INTO durable.inbox (workflow_id, run_id, kind, visible_at, body)
    SELECT r.workflow_id, r.run_id, $15::smallint, q.deadline, q.timeout_body
    FROM run r JOIN req q ON q.run_id = r.run_id WHERE q.deadline IS NOT NULL)
SELECT run_id, (SELECT count(pg_notify('durable', 'w' || queue))
                FROM (SELECT DISTINCT task_queue AS queue FROM run) AS queues) AS woken
FROM run
"""

_Start = tuple[StartRequest, str]  # a run to open and its new run id


async def _insert_run(conn: asyncpg.Connection, request: StartRequest, run_id: str) -> bool:
    """Open a run; False (and nothing written) if the workflow id has an open run."""
    return run_id in await _insert_runs(conn, [(request, run_id)])


async def _insert_runs(conn: asyncpg.Connection, starts: Sequence[_Start]) -> set[str]:
    """Open runs in one statement; returns the run ids opened (a workflow id with an open
    run, or given twice, opens nothing more)."""
    codecs = _codecs(conn)
    columns: list[list[Any]] = [[] for _ in range(13)]
    now = _utcnow()
    for request, run_id in starts:
        parent_id, parent_run, parent_seq = request.parent or (None, None, None)
        delay = request.start_delay.total_seconds() if request.start_delay else 0.0
        deadline = now + request.execution_timeout if request.execution_timeout else None
        started = {
            "name": request.workflow_name,
            "task_queue": request.task_queue,
            "args": request.args,
            "parent_workflow_id": parent_id,
            "attempt": 1,
            "execution_deadline": deadline.timestamp() if deadline else None,
        }
        _append(columns, request.workflow_id, run_id, request.workflow_name, request.task_queue)
        _append(columns[4:], parent_id, parent_run, parent_seq, request.attributes or {}, delay)
        _append(columns[9:], now, _seal_attrs(codecs, started), deadline)
        columns[12].append(_seal_attrs(codecs, {}))
    rows = await conn.fetch(
        _INSERT_RUNS_SQL, *columns, int(E.WORKFLOW_STARTED), int(E.WORKFLOW_TIMED_OUT)
    )
    return {str(r["run_id"]) for r in rows}


async def _insert_history(
    conn: asyncpg.Connection, workflow_id: str, run_id: str, events: Sequence[Event]
) -> None:
    if not events:
        return
    await conn.execute(
        "INSERT INTO durable.history (workflow_id, run_id, seq, kind, ts, body, ends_step) "
        "SELECT $1, $2, s, k, t, b, e FROM unnest($3::int[], $4::smallint[], $5::timestamptz[],"
        " $6::bytea[], $7::bool[]) AS x(s, k, t, b, e)",
        workflow_id,
        run_id,
        [e.seq for e in events],
        [int(e.type) for e in events],
        [e.timestamp for e in events],
        [_seal_attrs(_codecs(conn), e.attrs) for e in events],
        [e.ends_step for e in events],
    )


# Messages to open runs, in one statement (one message, or many sent together): each
# addressed run (a given run, or the workflow's open run) is locked in workflow_id order, so
# that concurrent posts cannot deadlock on each other, its inbox_seq bumped by its number of
# messages and made due; the inbox rows go in in the order given, and each queue's workers
# are woken once. Returns a row per message posted (those for closed runs post nothing).
# Each message finds its run by its own index lookup, and a run's messages travel as arrays
# from there on: no join between two sets of a batch, whose plan would rest on row estimates
# that a burst into tables last analyzed nearly empty (or nearly all closed) makes ~1, and
# then compare every row with every other. A run may close between the lookup (statement
# snapshot) and the update (latest version): the update then changes nothing and the run's
# messages are not posted. A run that has not begun keeps its due time: a message does not
# start a delayed run early (a run not delayed is due already).
_POST_SQL = """
WITH post AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::smallint[], $5::bytea[],
        $6::text[]) WITH ORDINALITY AS p(key, workflow_id, run_id, kind, body, request_id, ord)),
seen AS (
    SELECT p.key FROM post p WHERE p.request_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM durable.requests q
        WHERE q.workflow_id = p.workflow_id AND q.request_id = p.request_id)),
locked AS (
    SELECT 1 FROM durable.workflows w
    WHERE w.workflow_id = ANY($2::text[]) AND w.closed_at IS NULL
    ORDER BY w.workflow_id FOR UPDATE),
addressed AS (
    SELECT r.run_id AS open_run_id, p.* FROM post p
    CROSS JOIN LATERAL (SELECT w.run_id FROM durable.workflows w
        WHERE w.workflow_id = p.workflow_id AND w.closed_at IS NULL
            AND (p.run_id IS NULL OR w.run_id = p.run_id) OFFSET 0) r
    WHERE NOT (p.key = ANY(ARRAY(SELECT key FROM seen)))),
runs AS (
    SELECT workflow_id, open_run_id AS run_id, array_agg(key ORDER BY ord) AS keys,
        array_agg(kind ORDER BY ord) AS kinds, array_agg(body ORDER BY ord) AS bodies,
        array_agg(ord ORDER BY ord) AS ords, array_agg(request_id ORDER BY ord) AS request_ids
    FROM addressed GROUP BY workflow_id, open_run_id),
target AS (
    UPDATE durable.workflows w SET
        ready_at = CASE WHEN w.closed_at IS NULL AND w.status <> 'pending'
            THEN LEAST(coalesce(w.ready_at, 'infinity'), now()) ELSE w.ready_at END,
        inbox_seq = w.inbox_seq + CASE WHEN w.closed_at IS NULL THEN cardinality(r.keys) ELSE 0 END
    FROM runs r
    WHERE w.workflow_id = r.workflow_id AND w.run_id = r.run_id AND (SELECT count(*) FROM locked) >= 0
    RETURNING w.workflow_id, w.run_id, w.task_queue, w.status, w.closed_at, r.keys, r.kinds,
        r.bodies, r.ords, r.request_ids),
posted AS (
    INSERT INTO durable.inbox (workflow_id, run_id, kind, body)
    SELECT t.workflow_id, t.run_id, m.kind, m.body
    FROM target t CROSS JOIN LATERAL unnest(t.kinds, t.bodies, t.ords) AS m(kind, body, ord)
    WHERE t.closed_at IS NULL
    ORDER BY m.ord
    RETURNING 1),
recorded AS (
    SELECT t.workflow_id, q.request_id
    FROM target t CROSS JOIN LATERAL unnest(t.request_ids) AS q(request_id)
    WHERE t.closed_at IS NULL AND q.request_id IS NOT NULL),
requested AS (
    INSERT INTO durable.requests (workflow_id, request_id)
    SELECT workflow_id, request_id FROM recorded
    ON CONFLICT DO NOTHING
    RETURNING 1),
checked AS (
    SELECT durable.ensure_new_requests(
        (SELECT count(*) FROM requested) = (SELECT count(*) FROM recorded)) AS ok)
SELECT k.key, t.workflow_id, t.run_id, t.task_queue, t.status, t.closed_at, false AS duplicate,
    (SELECT count(pg_notify('durable', 'w' || queue)) FROM (SELECT DISTINCT task_queue AS queue
        FROM target WHERE closed_at IS NULL) AS queues) AS woken
FROM target t CROSS JOIN LATERAL unnest(t.keys) AS k(key)
WHERE t.closed_at IS NULL AND (SELECT ok FROM checked)
UNION ALL
SELECT key, NULL, NULL, NULL, NULL, NULL, true, 0 FROM seen
"""

# key (unique among posts sent together), workflow id, run id (None: the open run), message
# kind, sealed attributes, request id (None: no client request to apply once)
_Post = tuple[str, str, str | None, EventType, bytes, str | None]


def _post_arrays(posts: Sequence[_Post]) -> list[list[Any]]:
    """The parameters of _POST_SQL: each column of the posts as an array."""
    columns: list[list[Any]] = [[] for _ in range(6)]
    for post in posts:
        _append(columns, *post)
    columns[3] = [int(kind) for kind in columns[3]]
    return columns


async def _post_many(conn: asyncpg.Connection, posts: Sequence[_Post]) -> _Rows:
    """Post in one statement. A request that a concurrent post of the same request id
    applied first aborts it (DU003); then it runs again and finds that request applied."""
    for attempt in range(3):
        try:
            rows: _Rows = await conn.fetch(_POST_SQL, *_post_arrays(posts))
            return rows
        except asyncpg.PostgresError as exc:  # (in a transaction, _retrying runs it again)
            if not _request_race(exc) or attempt == 2 or conn.is_in_transaction():
                raise
    raise AssertionError("unreachable")


def _request_race(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) == _REQUEST_RACE


async def _post(
    conn: asyncpg.Connection,
    workflow_id: str,
    run_id: str | None,
    etype: EventType,
    attrs: dict[str, Any],
    request_id: str | None = None,
) -> asyncpg.Record | None:
    """Put a message into an open run's inbox (``run_id`` None: the workflow's open run) and
    wake its workers, once per ``request_id``. Returns the run's row (``duplicate`` when the
    request was applied before, its other columns then NULL), None if it is closed."""
    post = ("", workflow_id, run_id, etype, _seal_attrs(_codecs(conn), attrs), request_id)
    rows = await _post_many(conn, [post])
    return rows[0] if rows else None


async def _answer_call(
    conn: asyncpg.Connection, call_id: str, result: bytes | None, failure: Failure | None
) -> None:
    await conn.execute(
        "WITH answered AS (UPDATE durable.calls SET done = true, result = $2, failure = $3"
        " WHERE id = $1 AND NOT done RETURNING id) "
        "SELECT pg_notify($4, 'r' || id::text) FROM answered",
        call_id,
        _codecs(conn).seal(result),
        _seal_failure(_codecs(conn), failure),
        CHANNEL,
    )


_CLAIM_ACTIVITY_SET = (
    "owner = $2, attempt = t.attempt + 1, started_at = now(),"
    " deadline = LEAST(now() + make_interval(secs => t.start_to_close), t.schedule_deadline,"
    "  now() + make_interval(secs => t.heartbeat_timeout))"
)


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
    )


def _timeout_failure(row: asyncpg.Record) -> Failure:
    if row["owner"] is None:
        what = "schedule_to_close timeout"
    elif row["deadline"] is not None and row["deadline"] < _utcnow():
        what = "start_to_close/heartbeat timeout"
    else:
        what = "lost worker (the worker running it stopped heartbeating)"
    return {
        "kind": "timeout",
        "message": f"activity {row['activity_name']!r} timed out: {what}",
        "type": "TimeoutError",
        "non_retryable": row["owner"] is None,
    }


async def _retry_or_fail(
    conn: asyncpg.Connection, task: ActivityTask, failure: Failure, details: bytes | None = None
) -> str:
    """Under the row lock: schedule the next attempt, or post the final failure."""
    next_attempt = task.attempt + 1
    delay = task.retry.delay_before(next_attempt)
    too_late = task.schedule_deadline is not None and (
        _utcnow() + timedelta(seconds=delay) >= task.schedule_deadline
    )
    if may_retry(task.retry, task.attempt, failure) and not too_late:
        await conn.execute(
            "UPDATE durable.activity_tasks SET owner = NULL, started_at = NULL,"
            " visible_at = now() + make_interval(secs => $4), deadline = schedule_deadline,"
            " last_failure = $5, heartbeat_details = coalesce($6, heartbeat_details) "
            "WHERE workflow_id = $1 AND run_id = $2 AND seq = $3",
            task.workflow_id,
            task.run_id,
            task.seq,
            delay,
            _seal_failure(_codecs(conn), failure),
            _codecs(conn).seal(details),
        )
        return "retry"
    await conn.execute(
        "DELETE FROM durable.activity_tasks WHERE workflow_id = $1 AND run_id = $2 AND seq = $3",
        task.workflow_id,
        task.run_id,
        task.seq,
    )
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
    return "failed"


# The statement that commits workflow tasks: one step, or the steps of several runs at once
# (group commit). Every step writes through it: the fenced update of its run (owner, fence
# and expected next_seq, else durable.ensure aborts everything), the history rows, the
# consumed inbox rows, the activity tasks finished in this process, new timers and new
# activity tasks (those the worker runs itself come back already claimed), and for a run
# that closes without a parent or children: its status and outcome, the removal of its
# remaining tasks and inbox, answers to its pending updates, the wake-up of its waiters.
# It returns one row for the check, one per run (seq 0) and one per claimed activity task.
# The statement is assembled from the parts a batch needs (a typical step has no timers,
# consumed messages, attributes or closing): every part left out is parameters not encoded
# and a table not visited. Each shape is prepared once per connection.
# The runs are joined on their key alone: with no other condition on durable.workflows the
# planner's only cheap way in is an index lookup per step, whatever the statistics say. A
# condition such as "closed_at IS NULL" (estimated from statistics taken when nearly every
# run was closed) made it expect one row and compare each run with every step. A run closes
# only through its owner's commit (next_seq moves) or a termination (the fence moves), so
# the fence check refuses closed runs already. The queue tables are reached with "= ANY"
# on their keys instead, whatever their statistics (a join with unnest() alone once chose a
# hash join over a full scan of the inbox); inbox ids are unique, so matching each key
# column against its array is exact.
_Columns = tuple[tuple[str, str], ...]
_STEP_COLUMNS: _Columns = (
    ("workflow_id", "text"),
    ("run_id", "uuid"),
    ("owner", "uuid"),
    ("fence", "bigint"),
    ("first_seq", "int"),
    ("next_seq", "int"),
    ("inbox_seq", "bigint"),
    ("next_due", "timestamptz"),
)
_ATTRIBUTE_COLUMNS: _Columns = (("attributes", "jsonb"),)
_CLOSING_COLUMNS: _Columns = (
    ("status", "text"),
    ("result", "bytea"),
    ("failure", "bytea"),
    ("update_failure", "bytea"),
)
_HISTORY_COLUMNS: _Columns = (
    ("workflow_id", "text"),
    ("run_id", "uuid"),
    ("seq", "int"),
    ("kind", "smallint"),
    ("ts", "timestamptz"),
    ("body", "bytea"),
)
# A history row's kind in the commit's parameters carries its ends_step as this bit: one
# array fewer to encode for every commit.
_ENDS_STEP_BIT = 0x4000
_CONSUMED_COLUMNS: _Columns = (("workflow_id", "text"), ("run_id", "uuid"), ("id", "bigint"))
_FINISHED_COLUMNS: _Columns = (
    ("workflow_id", "text"),
    ("run_id", "uuid"),
    ("owner", "uuid"),
    ("seq", "int"),
    ("attempt", "int"),
)
_TIMER_COLUMNS: _Columns = (
    ("workflow_id", "text"),
    ("run_id", "uuid"),
    ("seq", "int"),
    ("fire_at", "float8"),
    ("body", "bytea"),
)
_SCHEDULED_COLUMNS: _Columns = (
    ("workflow_id", "text"),
    ("run_id", "uuid"),
    ("seq", "int"),
    ("task_queue", "text"),
    ("name", "text"),
    ("args", "bytea"),
    ("retry", "bytea"),
    ("start_to_close", "float8"),
    ("heartbeat", "float8"),
    ("schedule_to_close", "float8"),
    ("owner", "uuid"),
)
# run columns only a commit that goes on in its transaction (wide effects) needs
_WIDE_RETURNING = (
    ("parent_workflow_id", "text"),
    ("parent_run_id", "uuid"),
    ("parent_seq", "int"),
    ("workflow_name", "text"),
    ("task_queue", "text"),
    ("attributes", "jsonb"),
    ("inbox_seq", "bigint"),
)


class _CommitShape(NamedTuple):  # a tuple: cheap to build and hash for the statement cache
    """Which parts of the commit statement a batch of steps needs."""

    attributes: bool = False
    history: bool = False
    consumed: bool = False
    finished: bool = False
    timers: bool = False
    scheduled: bool = False
    closing: bool = False
    wide: bool = False  # return the run rows in full: the transaction goes on


def _unnest(prefix: str, columns: _Columns) -> str:
    """``unnest`` of the parameters ``$<prefix>_<column>`` as rows named like the columns."""
    arrays = ", ".join(f"${prefix}_{name}::{kind}[]" for name, kind in columns)
    return f"unnest({arrays}) AS {prefix}({', '.join(name for name, _ in columns)})"


@functools.cache
def _commit_statement(shape: _CommitShape) -> tuple[str, tuple[str, ...]]:
    """The commit statement of ``shape``, and its parameters' names in ``$n`` order."""
    step_columns = _STEP_COLUMNS
    if shape.attributes:
        step_columns += _ATTRIBUTE_COLUMNS
    if shape.closing:
        step_columns += _CLOSING_COLUMNS
    updates = ["next_seq = s.next_seq", "task_failures = 0", "last_error = NULL"]
    if shape.attributes:
        updates.append("attributes = w.attributes || s.attributes")
    if shape.closing:
        updates += [
            "ready_at = CASE WHEN s.status IS NOT NULL THEN NULL"
            " WHEN w.inbox_seq <> s.inbox_seq THEN now() ELSE s.next_due END",
            "status = coalesce(s.status, w.status)",
            "closed_at = CASE WHEN s.status IS NOT NULL THEN now() END",
            "result = s.result",
            "failure = s.failure",
        ]
    else:
        updates.append(
            "ready_at = CASE WHEN w.inbox_seq <> s.inbox_seq THEN now() ELSE s.next_due END"
        )
    wide = [name for name, _ in _WIDE_RETURNING] if shape.wide else []
    returning = [f"w.{name}" for name in ["run_id", "ready_at", *wide]]
    if shape.closing:  # a step that closes the run must have read every message sent to it
        returning.append(
            "s.status IN ('completed', 'failed', 'cancelled') AND w.inbox_seq <> s.inbox_seq"
            " AS missed_messages"
        )
    parts = [
        f"step AS (SELECT * FROM {_unnest('s', step_columns)})",
        f"""fenced AS (
    UPDATE durable.workflows w SET {", ".join(updates)}
    FROM step s
    WHERE w.workflow_id = s.workflow_id AND w.run_id = s.run_id AND w.owner = s.owner
        AND w.fence = s.fence AND w.next_seq = s.first_seq
    RETURNING {", ".join(returning)})""",
    ]
    held = ["(SELECT count(*) FROM fenced) = cardinality($s_run_id::uuid[])"]
    wakes = []
    if shape.history:
        parts.append(f"""appended AS (
    INSERT INTO durable.history (workflow_id, run_id, seq, kind, ts, body, ends_step)
    SELECT workflow_id, run_id, seq, kind & {_ENDS_STEP_BIT - 1}, ts, body,
        kind & {_ENDS_STEP_BIT} <> 0
    FROM {_unnest("h", _HISTORY_COLUMNS)})""")
    if shape.consumed:
        parts.append("""consumed AS (
    DELETE FROM durable.inbox WHERE workflow_id = ANY($c_workflow_id::text[])
        AND run_id = ANY($c_run_id::uuid[]) AND id = ANY($c_id::bigint[]))""")
    if shape.finished:
        parts.append(f"""finished AS (
    DELETE FROM durable.activity_tasks t USING {_unnest("f", _FINISHED_COLUMNS)}
    WHERE t.workflow_id = ANY($f_workflow_id::text[]) AND t.workflow_id = f.workflow_id
        AND t.run_id = f.run_id AND t.seq = f.seq AND t.attempt = f.attempt AND t.owner = f.owner
    RETURNING 1)""")
        held.append("(SELECT count(*) FROM finished) = cardinality($f_seq::int[])")
    if shape.timers:
        parts.append(f"""timers AS (
    INSERT INTO durable.inbox (workflow_id, run_id, kind, ref, visible_at, body)
    SELECT workflow_id, run_id, {int(E.TIMER_FIRED)}, seq, to_timestamp(fire_at), body
    FROM {_unnest("t", _TIMER_COLUMNS)})""")
    if shape.scheduled:
        parts.append(f"""scheduled AS (
    INSERT INTO durable.activity_tasks (workflow_id, run_id, seq, task_queue, activity_name,
        args, retry, start_to_close, heartbeat_timeout, schedule_deadline, deadline, owner,
        attempt, started_at)
    SELECT workflow_id, run_id, seq, task_queue, name, args, retry, start_to_close, heartbeat,
        now() + make_interval(secs => schedule_to_close),
        CASE WHEN owner IS NOT NULL THEN LEAST(now() + make_interval(secs => start_to_close),
            now() + make_interval(secs => schedule_to_close),
            now() + make_interval(secs => heartbeat))
        ELSE now() + make_interval(secs => schedule_to_close) END,
        owner, CASE WHEN owner IS NOT NULL THEN 1 ELSE 0 END,
        CASE WHEN owner IS NOT NULL THEN now() END
    FROM {_unnest("a", _SCHEDULED_COLUMNS)}
    RETURNING run_id, seq, task_queue, owner, deadline, schedule_deadline)""")
        wakes.append(
            "(SELECT count(pg_notify('durable', 'a' || q)) FROM (SELECT DISTINCT task_queue AS q"
            " FROM scheduled WHERE owner IS NULL) AS queues)"
        )
    if shape.closing:
        kept_tasks = (
            """
        AND NOT EXISTS (SELECT 1 FROM unnest($f_run_id::uuid[], $f_seq::int[]) AS f(run_id, seq)
            WHERE f.run_id = t.run_id AND f.seq = t.seq)"""
            if shape.finished
            else ""
        )
        kept_messages = " AND NOT (i.id = ANY($c_id::bigint[]))" if shape.consumed else ""
        closing_ids = "ARRAY(SELECT workflow_id FROM step WHERE status IS NOT NULL)"
        parts += [
            f"""swept AS (
    DELETE FROM durable.activity_tasks t USING step s
    WHERE s.status IS NOT NULL AND t.workflow_id = ANY({closing_ids})
        AND t.workflow_id = s.workflow_id AND t.run_id = s.run_id{kept_tasks})""",
            f"""cleared AS (
    DELETE FROM durable.inbox i USING step s
    WHERE s.status IS NOT NULL AND i.workflow_id = ANY({closing_ids})
        AND i.workflow_id = s.workflow_id AND i.run_id = s.run_id{kept_messages})""",
            """cut_off AS (
    UPDATE durable.calls c SET done = true, failure = s.update_failure FROM step s
    WHERE s.status IS NOT NULL AND c.workflow_id = s.workflow_id AND c.run_id = s.run_id
        AND c.kind = 2 AND NOT c.done)""",
        ]
        wakes.append(
            "(SELECT count(pg_notify('durable', 'c' || workflow_id)) FROM step"
            " WHERE status IS NOT NULL)"
        )
    read_all = (
        ", durable.ensure_read_all(NOT EXISTS (SELECT 1 FROM fenced WHERE missed_messages))"
        " AS read_all"
        if shape.closing
        else ""
    )
    parts.append(f"""checked AS (
    SELECT durable.ensure({" AND ".join(held)},
            'the workflow or one of its activity tasks is no longer held by this worker') AS ok,
        {" + ".join(wakes) or "0"} AS woken{read_all})""")
    no_wide = "".join(f", NULL::{kind} AS {name}" for name, kind in _WIDE_RETURNING)
    no_wide = no_wide if shape.wide else ""
    selects = [
        "SELECT NULL::uuid AS run_id, -1 AS seq, NULL::timestamptz AS deadline,"
        f" NULL::timestamptz AS schedule_deadline, NULL::timestamptz AS ready_at{no_wide}"
        f" FROM checked WHERE ok AND woken >= 0{' AND read_all' if shape.closing else ''}",
        f"SELECT run_id, 0, NULL, NULL, ready_at{''.join(', ' + n for n in wide)} FROM fenced",
    ]
    if shape.scheduled:
        selects.append(
            f"SELECT run_id, seq, deadline, schedule_deadline, NULL{no_wide}"
            " FROM scheduled WHERE owner IS NOT NULL"
        )
    sql = "WITH " + ",\n".join(parts) + "\n" + "\nUNION ALL\n".join(selects)
    return _number_parameters(sql)


def _number_parameters(sql: str) -> tuple[str, tuple[str, ...]]:
    """Replace the named parameters ``$name`` of ``sql`` by ``$1``, ``$2``... in order of
    first use; the names in that order."""
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"${numbers.setdefault(match[1], len(numbers) + 1)}"

    numbered = re.sub(r"\$([a-z][a-z_]*)", number, sql)
    return numbered, tuple(numbers)


_Step = tuple[WorkflowTask, str, TaskCommit]  # a run's step, the worker committing it
_Rows = list[asyncpg.Record]


_Item = TypeVar("_Item")
_Out = TypeVar("_Out")


class _Batcher(Generic[_Item, _Out]):
    """Group commit: items (workflow steps, starts) that arrive while earlier batches are in
    flight are written together by one statement (one round trip, one transaction). No item
    is acknowledged before the transaction holding it committed. Up to half the pool's
    connections carry batches at once. When a batch fails (say one run's fence moved), it
    rolled back whole, and each of its items is retried alone so that only the failing one
    fails. ``write`` returns each item's outcome by ``key(item)``, unique within a batch."""

    MAX_BATCH = 64

    def __init__(
        self,
        pool: asyncpg.Pool,
        write: Callable[[Sequence[_Item]], Awaitable[dict[str, _Out]]],
        key: Callable[[_Item], str],
    ) -> None:
        self._write = write
        self._key = key
        self._max_in_flight = max(1, pool.get_max_size() // 2)  # the rest serve claims
        self._waiting: list[tuple[_Item, asyncio.Future[_Out]]] = []
        self._flushers: set[asyncio.Task[None]] = set()

    async def submit(self, item: _Item) -> _Out:
        future: asyncio.Future[_Out] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if len(self._flushers) < self._max_in_flight:
            flusher = asyncio.create_task(self._flush())
            self._flushers.add(flusher)
            flusher.add_done_callback(self._flushers.discard)
        return await future

    async def _flush(self) -> None:
        while self._waiting:
            batch = self._waiting[: self.MAX_BATCH]
            del self._waiting[: len(batch)]
            live = [(item, future) for item, future in batch if not future.done()]
            if len(live) == 1:
                await self._write_alone(*live[0])
                continue
            try:
                outcomes = await self._write([item for item, _ in live])
            except Exception:  # nothing of the batch was written: find out which item failed
                for item, future in live:
                    await self._write_alone(item, future)
                continue
            for item, future in live:
                _settle(future, outcomes[self._key(item)])

    async def _write_alone(self, item: _Item, future: asyncio.Future[_Out]) -> None:
        try:
            outcomes = await self._write([item])
        except Exception as exc:
            _settle(future, exc)
        else:
            _settle(future, outcomes[self._key(item)])


def _settle(future: asyncio.Future[_Out], outcome: _Out | Exception) -> None:
    if future.done():  # its caller was cancelled
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


# Events whose effects reach beyond the run's own rows: committed in a transaction.
_WIDE_EVENTS = frozenset(
    {
        E.TIMER_CANCELLED,
        E.ACTIVITY_CANCEL_REQUESTED,
        E.CHILD_SCHEDULED,
        E.CHILD_CANCEL_REQUESTED,
        E.CHILD_SIGNALED,
        E.UPDATE_COMPLETED,
    }
)
# Closings of code that ran to its end: its step must have read every message of the run.
_READS_ALL = frozenset({E.WORKFLOW_COMPLETED, E.WORKFLOW_FAILED, E.WORKFLOW_CANCELLED})
# Closings the commit statement does itself: nobody to notify, nothing to start after.
_SIMPLE_CLOSINGS = frozenset(
    {E.WORKFLOW_COMPLETED, E.WORKFLOW_FAILED, E.WORKFLOW_CANCELLED, E.WORKFLOW_TIMED_OUT}
)


def _commits_alone(commit: TaskCommit) -> bool:
    """Whether the commit statement covers everything this commit causes."""
    if commit.rejected_updates or any(
        e.type in _WIDE_EVENTS and commit.has_effect(e) for e in commit.events
    ):
        return False
    closing = commit.closing
    return closing is None or (
        closing.type in _SIMPLE_CLOSINGS and not commit.has_parent and not commit.started_children
    )


def _commit_call(
    codecs: Codecs, steps: Sequence[_Step], *, wide: bool = False
) -> tuple[str, list[Any]]:
    """The commit statement for ``steps`` and its parameters (per column, every step's
    values). ``wide``: one step whose transaction goes on (its closing is done there)."""
    runs: list[tuple[Any, ...]] = []
    closings: list[tuple[Any, ...]] = []
    attributes: list[dict[str, Any]] = []
    history: list[tuple[Any, ...]] = []
    consumed: list[tuple[Any, ...]] = []
    finished: list[tuple[Any, ...]] = []
    timers: list[tuple[Any, ...]] = []
    scheduled: list[tuple[Any, ...]] = []
    for task, worker_id, commit in steps:
        key = (task.workflow_id, task.run_id)
        closing = None if wide else commit.closing
        closings.append(_closing_values(codecs, task.workflow_id, closing))
        events = commit.events
        set_attributes: dict[str, Any] = {}
        for event in events:
            if event.type is E.ATTRIBUTES_SET:
                set_attributes.update(event.attrs["attributes"])
            sealed = _seal_attrs(codecs, event.attrs)
            kind = int(event.type) | (_ENDS_STEP_BIT if event.ends_step else 0)
            history.append((*key, event.seq, kind, event.timestamp, sealed))
        attributes.append(set_attributes)
        first_seq = events[0].seq if events else commit.next_seq
        runs.append(
            (
                *key,
                worker_id,
                task.fence,
                first_seq,
                commit.next_seq,
                commit.inbox_seq,
                commit.next_due,
            )
        )
        consumed += [(*key, message_id) for message_id in commit.consumed]
        finished += [(*key, worker_id, *activity) for activity in commit.finished_activities]
        slots = commit.eager_slots
        for event in () if closing else events:  # a closing run keeps no timers or tasks
            if event.seq in commit.withdrawn:
                continue
            if event.type is E.TIMER_STARTED:
                sealed = _seal_attrs(codecs, {"started": event.seq})
                timers.append((*key, event.seq, event.attrs["fire_at"], sealed))
            elif event.type is E.ACTIVITY_SCHEDULED:
                attrs = event.attrs
                eager = (
                    slots > 0 and (attrs["task_queue"], attrs["name"]) in commit.eager_activities
                )
                slots -= 1
                retry = _pack(attrs["retry"]) if attrs.get("retry") else None
                scheduled.append(
                    (
                        *key,
                        event.seq,
                        attrs["task_queue"],
                        attrs["name"],
                        codecs.seal(attrs["args"]),
                        retry,
                        attrs.get("start_to_close"),
                        attrs.get("heartbeat"),
                        attrs.get("schedule_to_close"),
                        worker_id if eager else None,
                    )
                )
    shape = _CommitShape(
        attributes=any(attributes),
        history=bool(history),
        consumed=bool(consumed),
        finished=bool(finished),
        timers=bool(timers),
        scheduled=bool(scheduled),
        closing=any(status is not None for status, *_ in closings),
        wide=wide,
    )
    arrays: dict[str, Sequence[Any]] = {"s_attributes": attributes}
    for prefix, columns, rows in (
        ("s", _STEP_COLUMNS, runs),
        ("s", _CLOSING_COLUMNS, closings),
        ("h", _HISTORY_COLUMNS, history),
        ("c", _CONSUMED_COLUMNS, consumed),
        ("f", _FINISHED_COLUMNS, finished),
        ("t", _TIMER_COLUMNS, timers),
        ("a", _SCHEDULED_COLUMNS, scheduled),
    ):
        for (name, _), values in zip(columns, zip(*rows, strict=True), strict=False):
            arrays[f"{prefix}_{name}"] = values
    sql, names = _commit_statement(shape)
    return sql, [arrays[name] for name in names]


def _closing_values(
    codecs: Codecs, workflow_id: str, closing: Event | None
) -> tuple[str | None, bytes | None, bytes | None, bytes | None]:
    """Status, result, failure and the answer to pending updates of a run closed by the
    commit statement (all None for a run that stays open)."""
    if closing is None:
        return None, None, None, None
    status = TERMINAL_STATUS[closing.type]
    return (
        status,
        codecs.seal(closing.attrs.get("result")),
        _seal_failure(codecs, _closing_failure(closing)),
        _seal_failure(codecs, _update_cut_off(workflow_id, status)),
    )


def _append(columns: list[list[Any]], *values: Any) -> None:
    for column, value in zip(columns, values, strict=False):
        column.append(value)


def _rows_by_run(rows: _Rows) -> dict[str, _Rows]:
    """Each run's rows of a commit: its run row (seq 0) first, then its claimed tasks."""
    by_run: dict[str, _Rows] = {}
    for row in sorted((r for r in rows if r["seq"] >= 0), key=lambda r: r["seq"]):
        by_run.setdefault(str(row["run_id"]), []).append(row)
    return by_run


async def _fetch_commit(
    conn: asyncpg.Connection, steps: Sequence[_Step], *, wide: bool = False
) -> dict[str, _Rows]:
    sql, parameters = _commit_call(_codecs(conn), steps, wide=wide)
    try:
        return _rows_by_run(await conn.fetch(sql, *parameters))
    except asyncpg.PostgresError as exc:
        state = getattr(exc, "sqlstate", None)
        if state == _ENSURE_FAILED:
            raise LostOwnership(str(exc)) from None
        if state == _MISSED_MESSAGES:
            raise MissedMessages(str(exc)) from None
        raise


def _eager_tasks(
    task: WorkflowTask, commit: TaskCommit, rows: list[asyncpg.Record]
) -> list[ActivityTask]:
    claimed = {r["seq"]: r for r in rows[1:]}
    tasks = []
    for event in commit.events:
        row = claimed.get(event.seq)
        if event.type is not E.ACTIVITY_SCHEDULED or row is None:
            continue
        retry = event.attrs.get("retry")
        tasks.append(
            ActivityTask(
                workflow_id=task.workflow_id,
                run_id=task.run_id,
                seq=event.seq,
                task_queue=event.attrs["task_queue"],
                activity_name=event.attrs["name"],
                args=event.attrs["args"],
                attempt=1,
                retry=RetryPolicy._from_dict(retry) if retry else DEFAULT_RETRY_POLICY,
                heartbeat_timeout=event.attrs.get("heartbeat"),
                deadline=row["deadline"],
                heartbeat_details=None,
                schedule_deadline=row["schedule_deadline"],
            )
        )
    return tasks


class _WideEffects:
    """The effects of events that reach beyond the run's own rows, inside the commit."""

    def __init__(self, conn: asyncpg.Connection, workflow_id: str, run_id: str) -> None:
        self.conn = conn
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.closing: Event | None = None
        self.cancelled: set[int] = set()

    async def apply(self, event: Event) -> None:
        t, attrs = event.type, event.attrs
        if t is E.TIMER_CANCELLED:
            await self.conn.execute(
                "DELETE FROM durable.inbox WHERE workflow_id = $1 AND run_id = $2 "
                "AND kind = $3 AND ref = $4",
                self.workflow_id,
                self.run_id,
                int(E.TIMER_FIRED),
                attrs["started"],
            )
        elif t is E.ACTIVITY_CANCEL_REQUESTED:
            self.cancelled.add(attrs["scheduled"])
            await self._cancel_activity(attrs["scheduled"])
        elif t is E.CHILD_SCHEDULED:
            await self._start_child(event)
        elif t is E.CHILD_CANCEL_REQUESTED:
            child = await self._open_child(attrs["scheduled"], lock=True)
            if child is not None:
                await _cancel_run(self.conn, child, "parent requested cancellation")
        elif t is E.CHILD_SIGNALED:
            await self._post_to_child(
                attrs["scheduled"],
                E.SIGNAL_RECEIVED,
                {"name": attrs["name"], "args": attrs["args"]},
            )
        elif t is E.UPDATE_COMPLETED:
            await _answer_call(
                self.conn, attrs["update_id"], attrs.get("result"), attrs.get("failure")
            )
        if t.is_terminal:
            self.closing = event

    async def _cancel_activity(self, seq: int) -> None:
        await self.conn.execute(
            "WITH gone AS (DELETE FROM durable.activity_tasks WHERE workflow_id = $1"
            " AND run_id = $2 AND seq = $3 AND owner IS NULL RETURNING 1) "
            "UPDATE durable.activity_tasks SET cancel_requested = true "
            "WHERE workflow_id = $1 AND run_id = $2 AND seq = $3 AND owner IS NOT NULL",
            self.workflow_id,
            self.run_id,
            seq,
        )

    async def _start_child(self, event: Event) -> None:
        attrs = event.attrs
        request = StartRequest(
            workflow_id=attrs["workflow_id"],
            workflow_name=attrs["name"],
            task_queue=attrs["task_queue"],
            args=attrs["args"],
            parent=(self.workflow_id, self.run_id, event.seq),
        )
        try:
            async with self.conn.transaction():  # a savepoint: a failed start leaves the rest
                await _start_in(self.conn, request)
        except (WorkflowAlreadyStartedError, _StartRaceLost) as exc:
            await self.conn.execute(
                "INSERT INTO durable.inbox (workflow_id, run_id, kind, body) VALUES ($1, $2, $3, $4)",
                self.workflow_id,
                self.run_id,
                int(E.CHILD_FAILED),
                _seal_attrs(
                    _codecs(self.conn),
                    {
                        "scheduled": event.seq,
                        "workflow_id": attrs["workflow_id"],
                        "reason": "could not start",
                        "failure": {
                            "kind": "application",
                            "type": "WorkflowAlreadyStartedError",
                            "message": str(exc),
                            "non_retryable": True,
                        },
                    },
                ),
            )

    async def _post_to_child(self, scheduled: int, etype: EventType, attrs: dict[str, Any]) -> None:
        child = await self._open_child(scheduled)
        if child is not None:
            await _post(self.conn, child["workflow_id"], str(child["run_id"]), etype, attrs)

    async def _open_child(self, scheduled: int, *, lock: bool = False) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(
            "SELECT workflow_id, run_id, status FROM durable.workflows WHERE parent_workflow_id = $1"
            " AND parent_run_id = $2 AND parent_seq = $3 AND closed_at IS NULL"
            + (" FOR UPDATE" if lock else ""),
            self.workflow_id,
            self.run_id,
            scheduled,
        )
        return row


def _closing_failure(closing: Event) -> Failure | None:
    """The failure a run closed by ``closing`` records (None for a completed run)."""
    if closing.type is E.WORKFLOW_CANCELLED:
        return {"kind": "cancelled", "message": "workflow was cancelled"}
    if closing.type is E.WORKFLOW_TERMINATED:
        return {
            "kind": "terminated",
            "message": closing.attrs.get("reason") or "workflow was terminated",
        }
    if closing.type is E.WORKFLOW_TIMED_OUT:
        return {"kind": "timeout", "message": "workflow execution timed out"}
    failure: Failure | None = closing.attrs.get("failure")
    return failure


def _update_cut_off(workflow_id: str, status: str) -> Failure:
    """The answer to an update still pending when its workflow closed."""
    return {
        "kind": "application",
        "type": "UpdateError",
        "message": f"workflow {workflow_id!r} closed ({status}) before the update completed",
    }


async def _close_run(
    conn: asyncpg.Connection,
    workflow_id: str,
    run_id: str,
    closing: Event,
    row: asyncpg.Record,
    *,
    started_children: bool = True,
) -> None:
    """Close a run: status, result, parent notification, cleanup, continue-as-new.

    Open children are looked up only for a run that started some: that lookup's plan
    depends on statistics that lag behind a fast-growing table, and once scanned every
    open run for each closing one."""
    status = TERMINAL_STATUS[closing.type]
    attrs = closing.attrs
    failure = _closing_failure(closing)
    new_run_id = str(uuid.uuid4()) if closing.type is E.WORKFLOW_CONTINUED_AS_NEW else None
    carried_over = (
        [int(E.SIGNAL_RECEIVED), int(E.UPDATE_ACCEPTED), int(E.CANCEL_REQUESTED)]
        if new_run_id
        else []
    )
    children = await conn.fetchrow(
        """
        WITH closed AS (
            UPDATE durable.workflows SET status = $3, closed_at = now(), ready_at = NULL,
                result = $4, failure = $5, continued_run_id = $6
            WHERE workflow_id = $1 AND run_id = $2),
        tasks AS (
            DELETE FROM durable.activity_tasks WHERE workflow_id = $1 AND run_id = $2),
        inbox AS (
            DELETE FROM durable.inbox WHERE workflow_id = $1 AND run_id = $2
                AND NOT (kind = ANY($7::smallint[]))),
        updates AS (
            UPDATE durable.calls SET done = true, failure = $8
            WHERE workflow_id = $1 AND run_id = $2 AND kind = 2 AND NOT done AND $6::uuid IS NULL)
        SELECT pg_notify('durable', 'c' || $1) AS notified,
            array(SELECT workflow_id FROM durable.workflows WHERE $9 AND parent_workflow_id = $1
                AND parent_run_id = $2 AND closed_at IS NULL ORDER BY workflow_id) AS ids,
            array(SELECT run_id::text FROM durable.workflows WHERE $9 AND parent_workflow_id = $1
                AND parent_run_id = $2 AND closed_at IS NULL ORDER BY workflow_id) AS run_ids
        """,
        workflow_id,
        run_id,
        status,
        _codecs(conn).seal(attrs.get("result")),
        _seal_failure(_codecs(conn), failure),
        new_run_id,
        carried_over,
        _seal_failure(_codecs(conn), _update_cut_off(workflow_id, status)),
        started_children,
    )
    if new_run_id is not None:
        await _insert_run(
            conn,
            StartRequest(
                workflow_id=workflow_id,
                workflow_name=row["workflow_name"],
                task_queue=row["task_queue"],
                args=attrs["args"],
                attributes=dict(row["attributes"]),
                parent=(row["parent_workflow_id"], str(row["parent_run_id"]), row["parent_seq"])
                if row["parent_workflow_id"]
                else None,
            ),
            new_run_id,
        )
        await conn.execute(
            "UPDATE durable.inbox SET run_id = $3 WHERE workflow_id = $1 AND run_id = $2",
            workflow_id,
            run_id,
            new_run_id,
        )
        await conn.execute(
            "UPDATE durable.calls SET run_id = $3 WHERE workflow_id = $1 AND run_id = $2 AND NOT done",
            workflow_id,
            run_id,
            new_run_id,
        )
        await conn.execute(
            "UPDATE durable.workflows SET ready_at = now() WHERE workflow_id = $1 AND run_id = $2",
            workflow_id,
            new_run_id,
        )
    if new_run_id is None and row["parent_workflow_id"]:
        outcome = (
            {"scheduled": row["parent_seq"], "result": attrs["result"]}
            if closing.type is E.WORKFLOW_COMPLETED
            else {
                "scheduled": row["parent_seq"],
                "workflow_id": workflow_id,
                "reason": status,
                "failure": failure,
            }
        )
        await _post(
            conn,
            row["parent_workflow_id"],
            row["parent_run_id"],
            E.CHILD_COMPLETED if closing.type is E.WORKFLOW_COMPLETED else E.CHILD_FAILED,
            outcome,
        )
    if new_run_id is None:  # parent close policy: its open children are terminated
        for child_id, child_run in zip(children["ids"], children["run_ids"], strict=True):
            await _terminate_run(
                conn, child_id, child_run, f"parent workflow {workflow_id!r} closed ({status})"
            )


async def _terminate_run(
    conn: asyncpg.Connection, workflow_id: str, run_id: str, reason: str | None
) -> None:
    await _close_without_code(conn, workflow_id, run_id, E.WORKFLOW_TERMINATED, {"reason": reason})


async def _cancel_run(conn: asyncpg.Connection, run: asyncpg.Record, reason: str | None) -> None:
    """Ask an open run (its row locked) to cancel. A run that has not begun (no worker ran
    it yet, and its queue may have none) is cancelled at once: none of its code ever ran,
    none has to clean up."""
    workflow_id, run_id = run["workflow_id"], str(run["run_id"])
    if run["status"] == "pending":
        attrs = {"reason": reason, "before_start": True}
        await _close_without_code(conn, workflow_id, run_id, E.WORKFLOW_CANCELLED, attrs)
    else:
        await _post(conn, workflow_id, run_id, E.CANCEL_REQUESTED, {"reason": reason})


async def _close_without_code(
    conn: asyncpg.Connection,
    workflow_id: str,
    run_id: str,
    etype: EventType,
    attrs: dict[str, Any],
) -> None:
    """Close an open run from outside its code (terminated, cancelled before it began): the
    fence moves, so that its owner's next commit fails, and the closing event is a step of
    its own that runs no code on replay."""
    row = await conn.fetchrow(
        "UPDATE durable.workflows SET next_seq = next_seq + 1, fence = fence + 1, owner = NULL "
        "WHERE workflow_id = $1 AND run_id = $2 AND closed_at IS NULL "
        "RETURNING next_seq - 1 AS seq, parent_workflow_id, parent_run_id, parent_seq,"
        " workflow_name, task_queue, attributes",
        workflow_id,
        run_id,
    )
    if row is None:
        return
    event = Event(row["seq"], etype, _utcnow(), attrs, ends_step=True)
    await _insert_history(conn, workflow_id, run_id, [event])
    await _close_run(conn, workflow_id, run_id, event, row)
