"""What clients do: start runs, post to them, read them, call queries and updates."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from .._errors import (
    UpdateError,
    WorkflowAlreadyStartedError,
)
from .._events import Event, EventType
from .base import StoreBase
from .closing import _cancel_run, _terminate_run
from .connection import (
    _history_event,
    _open_attrs,
    _seal_attrs,
)
from .debouncing import _start_debounced
from .listener import CHANNEL, NotificationKeys
from .records import (
    CallOutcome,
    Cursor,
    ListFilter,
    PendingActivityRow,
    RunRow,
    StartRequest,
    WaitRow,
    _Rows,
)
from .runs import (
    _UPDATE_IDS,
    KIND_UPDATE,
    REQUESTS_KEPT,
    _addressed_run,
    _count_matching,
    _first_time,
    _insert_runs,
    _latest_run,
    _list_page,
    _Post,
    _post,
    _post_many,
    _post_to_run,
    _require_open,
    _Start,
)
from .sql.client_ops import (
    _CALL_EXISTS_SQL,
    _CALL_OUTCOME_SQL,
    _CANCEL_REQUEST_SQL,
    _DATABASE_TIME_SQL,
    _FORGET_CALL_SQL,
    _INSERT_CALL_SQL,
    _LOAD_HISTORY_SQL,
    _NOTIFY_SQL,
    _PENDING_ACTIVITIES_SQL,
    _WAITS_SQL,
)
from .sql.runs import _RUN_SQL
from .starting import _start_in, _StartRaceLost

E = EventType


class ClientOps(StoreBase):
    """The statements behind Client and WorkflowHandle."""

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
            start = _start_in if request.debounce is None else _start_debounced
            opened, started = await start(conn, request, run_id)
            if signal is not None:
                name, args, request_id = signal
                attrs = {"name": name, "args": args}
                await _post(conn, request.workflow_id, opened, E.SIGNAL_RECEIVED, attrs, request_id)
            return opened, started

        try:
            result: tuple[str, bool] = await self._retrying(work)
        except _StartRaceLost:
            # a concurrent start of the same id won the race (a debounced start may apply
            # to the run it opened)
            if (
                request.id_conflict_policy == "use_existing"
                or signal is not None
                or request.debounce is not None
            ):
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
            if not await _first_time(conn, workflow_id, request_id):
                return
            while True:  # the run may continue as new while it is read: then the next one
                run = await _addressed_run(conn, workflow_id, run_id, lock=True)
                if run["closed_at"] is not None:
                    if run_id is not None:
                        _require_open(run, workflow_id, run_id)
                    return
                if await _cancel_run(conn, run, reason):
                    return

        await self._retrying(work)

    async def _post_many(self, posts: Sequence[_Post]) -> dict[str, bool]:
        """Whether each post (by key) found an open run, written in one statement."""
        rows: _Rows = await self._retrying(lambda conn: _post_many(conn, posts), transaction=False)
        posted = {r["key"] for r in rows}
        return {post[0]: post[0] in posted for post in posts}

    async def terminate(
        self, workflow_id: str, run_id: str | None, reason: str | None, request_id: str
    ) -> tuple[str, str] | None:
        """Terminate the run a handle addresses, once per request id; the workflow name and
        task queue of the run it terminated (None: none)."""

        async def work(conn: asyncpg.Connection) -> tuple[str, str] | None:
            run = await _addressed_run(conn, workflow_id, run_id, lock=True)
            if not await _first_time(conn, workflow_id, request_id):
                return None
            if run["closed_at"] is None:
                await _terminate_run(conn, workflow_id, str(run["run_id"]), reason)
                return run["workflow_name"], run["task_queue"]
            if run_id is not None:
                _require_open(run, workflow_id, run_id)
            return None

        terminated: tuple[str, str] | None = await self._retrying(work)
        return terminated

    async def latest_run(self, workflow_id: str) -> RunRow:
        """The workflow's open run, else its latest."""
        async with self.pool.acquire() as conn:
            return RunRow.of(await _latest_run(conn, workflow_id))

    async def run_row(self, workflow_id: str, run_id: str) -> RunRow | None:
        row = await self.pool.fetchrow(_RUN_SQL, workflow_id, run_id)
        return None if row is None else RunRow.of(row)

    async def open_work(
        self, workflow_id: str, run_id: str
    ) -> tuple[list[PendingActivityRow], list[WaitRow]]:
        """What an open run waits on: its pending activities, and its pending timers
        (soonest first) and open children, read in one snapshot (what one step scheduled
        shows whole)."""
        async with (
            self.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            activities = await conn.fetch(_PENDING_ACTIVITIES_SQL, workflow_id, run_id)
            waits = await conn.fetch(_WAITS_SQL, workflow_id, run_id, int(E.TIMER_FIRED))
        return [PendingActivityRow(**row) for row in activities], [
            WaitRow(
                **{
                    **row,
                    "child_run_id": None
                    if row["child_run_id"] is None
                    else str(row["child_run_id"]),
                }
            )
            for row in waits
        ]

    async def cancel_reason(self, workflow_id: str, run_id: str) -> str | None:
        """The reason given to the cancel request the run took in (None: none was given,
        or it took none in)."""
        kinds = [int(E.CANCEL_REQUESTED), int(E.WORKFLOW_CANCELLED)]
        body = await self.pool.fetchval(_CANCEL_REQUEST_SQL, workflow_id, run_id, kinds)
        if body is None:
            return None
        reason: str | None = _open_attrs(self.codecs, body).get("reason")
        return reason

    async def load_history(self, workflow_id: str, run_id: str) -> list[Event]:
        rows = await self.pool.fetch(_LOAD_HISTORY_SQL, workflow_id, run_id)
        return [_history_event(self.codecs, r) for r in rows]

    async def database_time(self) -> datetime:
        now: datetime = await self.pool.fetchval(_DATABASE_TIME_SQL)
        return now

    async def list_workflows(
        self, filters: ListFilter, after: Cursor | None, limit: int
    ) -> list[RunRow]:
        """The next ``limit`` runs matching ``filters`` after the run ``after``."""
        return [RunRow.of(row) for row in await _list_page(self.pool, filters, after, limit)]

    async def count_workflows(self, filters: ListFilter) -> int:
        """How many runs match ``filters``."""
        return await _count_matching(self.pool, filters)

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
                if not await conn.fetchval(_CALL_EXISTS_SQL, call_id):
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
                key = NotificationKeys.queries(run["task_queue"])
                await conn.execute(_NOTIFY_SQL, CHANNEL, key)
            await conn.execute(
                _INSERT_CALL_SQL,
                call_id,
                workflow_id,
                run["run_id"],
                kind,
                run["task_queue"],
                name,
                self.codecs.seal(args),
            )
        return call_id

    async def call_outcome(self, call_id: str) -> CallOutcome | None:
        """The answer to a call once it is done, sealed. A query is forgotten then; an
        update is kept (for a resend of its request: see purge_requests)."""
        row = await self.pool.fetchrow(_CALL_OUTCOME_SQL, call_id)
        return None if row is None else CallOutcome(row["result"], row["failure"])

    async def forget_call(self, call_id: str) -> None:
        await self.pool.execute(_FORGET_CALL_SQL, call_id)

    async def _insert_runs(self, starts: Sequence[_Start]) -> dict[str, bool]:
        """Whether each start opened its run (by run id), written in one statement."""
        opened: set[str] = await self._retrying(
            lambda conn: _insert_runs(conn, starts), transaction=False
        )
        return {run_id: run_id in opened for _, run_id in starts}
