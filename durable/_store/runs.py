"""Statements on runs inside a transaction: find the run a handle addresses or the runs a
list filter matches, post to them (once per request id), pause and resume them, open runs,
append history, answer calls."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from .._errors import WorkflowNotFoundError
from .._events import REPLAY_RULES, Event, EventType
from .._failures import Failure
from .._flow import DEFAULT_PRIORITY
from .connection import _codecs, _now, _seal_attrs, _seal_failure
from .errors import _request_race
from .listener import CHANNEL
from .records import Cursor, ListFilter, StartRequest, _Rows
from .sql.client_ops import _count_workflows_sql, _list_workflows_sql
from .sql.controls import _PAUSE_RUNS_SQL, _RESUME_RUNS_SQL
from .sql.runs import (
    _ANSWER_CALL_SQL,
    _CHAIN_END_SQL,
    _INSERT_HISTORY_SQL,
    _INSERT_RUNS_SQL,
    _LATEST_RUN_FOR_UPDATE_SQL,
    _LATEST_RUN_SQL,
    _POST_SQL,
    _RECORD_REQUEST_SQL,
    _RUN_FOR_UPDATE_SQL,
    _RUN_SQL,
)

E = EventType
KIND_QUERY, KIND_UPDATE = 1, 2


async def _latest_run(
    conn: asyncpg.Connection, workflow_id: str, *, lock: bool = False
) -> asyncpg.Record:
    row = await conn.fetchrow(_LATEST_RUN_FOR_UPDATE_SQL if lock else _LATEST_RUN_SQL, workflow_id)
    if row is None:
        raise WorkflowNotFoundError(f"no workflow with id {workflow_id!r}")
    return row


async def _addressed_run(
    conn: asyncpg.Connection, workflow_id: str, run_id: str | None, *, lock: bool = False
) -> asyncpg.Record:
    """The run a handle acts on: without a run id, the workflow's open run, else its latest;
    with one, that run or, if it continued as new or was reset, the run it became
    (transitively). A new
    run started later under the same id is not reached by a handle pinned to an older one."""
    while True:
        if run_id is None:
            row = await _latest_run(conn, workflow_id, lock=lock)
        else:
            end = await conn.fetchval(_CHAIN_END_SQL, workflow_id, run_id)
            row = None
            if end is not None:
                row = await conn.fetchrow(
                    _RUN_FOR_UPDATE_SQL if lock else _RUN_SQL, workflow_id, end
                )
            if row is None:
                raise WorkflowNotFoundError(f"no run {run_id} of workflow {workflow_id!r}")
        if not (lock and row["continued_run_id"] is not None):
            return row
        # it continued as new (or was reset) while we waited for its lock: the next run is
        # the one


async def _list_page(
    conn: asyncpg.Connection | asyncpg.Pool, filters: ListFilter, after: Cursor | None, limit: int
) -> _Rows:
    """The next ``limit`` runs matching ``filters`` after the run ``after``, in (started_at,
    workflow_id, run_id) order."""
    used, values = _filter_values(filters, after)
    rows: _Rows = await conn.fetch(_list_workflows_sql(used), *values, limit)
    return rows


async def _count_matching(conn: asyncpg.Connection | asyncpg.Pool, filters: ListFilter) -> int:
    used, values = _filter_values(filters, None)
    count: int = await conn.fetchval(_count_workflows_sql(used), *values)
    return count


def _filter_values(filters: ListFilter, after: Cursor | None) -> tuple[tuple[str, ...], list[Any]]:
    """The names of the filters given (as _LIST_FILTERS orders them) and their values."""
    given: dict[str, tuple[Any, ...] | None] = {
        "status": None if filters.status is None else (filters.status,),
        "workflow_name": None if filters.workflow_name is None else (filters.workflow_name,),
        "attributes": None if filters.attributes is None else (filters.attributes,),
        "started_after": None if filters.started_after is None else (filters.started_after,),
        "started_by": None if filters.started_by is None else (filters.started_by,),
        "open_only": () if filters.open_only else None,
        "after": after,
    }
    used = tuple(name for name, values in given.items() if values is not None)
    return used, [value for name in used for value in given[name] or ()]


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


async def _post_each(
    conn: asyncpg.Connection,
    runs: Sequence[asyncpg.Record],
    etype: EventType,
    attrs: dict[str, Any],
    request_id: str | None = None,
) -> _Rows:
    """Post the same message to each open run given, in one statement (once per workflow
    and ``request_id``); returns the runs it was posted to now."""
    body = _seal_attrs(_codecs(conn), attrs)
    posts = [
        (str(i), run["workflow_id"], str(run["run_id"]), etype, body, request_id)
        for i, run in enumerate(runs)
    ]
    posted = {row["key"] for row in await _post_many(conn, posts) if not row["duplicate"]}
    return [run for i, run in enumerate(runs) if str(i) in posted]


async def _pause_runs(
    conn: asyncpg.Connection, runs: Sequence[asyncpg.Record], reason: str | None
) -> _Rows:
    """Pause the open runs given (locked by the caller); returns those paused now."""
    paused: _Rows = await conn.fetch(
        _PAUSE_RUNS_SQL,
        [run["workflow_id"] for run in runs],
        [run["run_id"] for run in runs],
        reason,
    )
    return paused


async def _resume_runs(conn: asyncpg.Connection, runs: Sequence[asyncpg.Record]) -> _Rows:
    """Make the paused open runs given claimable again; returns those resumed now."""
    resumed: _Rows = await conn.fetch(
        _RESUME_RUNS_SQL, [run["workflow_id"] for run in runs], [run["run_id"] for run in runs]
    )
    return resumed


REQUESTS_KEPT = timedelta(days=1)  # a client request is applied once within this time
_UPDATE_IDS = uuid.UUID("9d7c3f7e-4b1e-4a53-9c44-6a1c1a6f0d11")  # namespace of update ids


async def _first_time(conn: asyncpg.Connection, workflow_id: str, request_id: str) -> bool:
    """Record a client request in this transaction; False if it was applied before."""
    inserted = await conn.fetchval(_RECORD_REQUEST_SQL, workflow_id, request_id)
    return bool(inserted)


_Start = tuple[StartRequest, str]  # a run to open and its new run id


async def _insert_run(conn: asyncpg.Connection, request: StartRequest, run_id: str) -> bool:
    """Open a run; False (and nothing written) if the workflow id has an open run."""
    return run_id in await _insert_runs(conn, [(request, run_id)])


async def _insert_runs(conn: asyncpg.Connection, starts: Sequence[_Start]) -> set[str]:
    """Open runs in one statement; returns the run ids opened (a workflow id with an open
    run, or given twice, opens nothing more)."""
    codecs = _codecs(conn)
    columns: list[list[Any]] = [[] for _ in range(14)]
    now = _now(conn)
    for request, run_id in starts:
        parent_id, parent_run, parent_seq = request.parent or (None, None, None)
        delay = request.start_delay.total_seconds() if request.start_delay else 0.0
        deadline = _execution_deadline(request, now)
        started = _started_attrs(request, run_id, deadline, delay)
        _append(columns, request.workflow_id, run_id, request.workflow_name, request.task_queue)
        _append(columns[4:], parent_id, parent_run, parent_seq, request.attributes or {}, delay)
        _append(columns[9:], now, _seal_attrs(codecs, started), deadline)
        columns[12].append(_seal_attrs(codecs, {}))
        columns[13].append(request.priority)
    rows = await conn.fetch(
        _INSERT_RUNS_SQL,
        *columns[:13],
        int(E.WORKFLOW_STARTED),
        int(E.WORKFLOW_TIMED_OUT),
        columns[13],
    )
    return {str(r["run_id"]) for r in rows}


def _execution_deadline(request: StartRequest, now: datetime) -> datetime | None:
    """When a run started now times out (None: never)."""
    return now + request.execution_timeout if request.execution_timeout else None


def _started_attrs(
    request: StartRequest, run_id: str, deadline: datetime | None, delay: float
) -> dict[str, Any]:
    """The attributes of a run's first event, WORKFLOW_STARTED (``delay``: seconds from the
    event's time to the run's first step)."""
    started: dict[str, Any] = {
        "name": request.workflow_name,
        "task_queue": request.task_queue,
        "args": request.args,
        "parent_workflow_id": request.parent[0] if request.parent else None,
        "attempt": 1,
        "execution_deadline": deadline.timestamp() if deadline else None,
        "seed_run": run_id,  # a history replays alone, without its run's row
        "rules": REPLAY_RULES,
    }
    if delay:  # the run begins then: its first step's time (see WorkflowInstance)
        started["start_delay"] = delay
    if request.priority != DEFAULT_PRIORITY:
        started["priority"] = request.priority
    if request.trace:
        started["trace"] = request.trace
    return started


async def _insert_history(
    conn: asyncpg.Connection, workflow_id: str, run_id: str, events: Sequence[Event]
) -> None:
    if not events:
        return
    await conn.execute(
        _INSERT_HISTORY_SQL,
        workflow_id,
        run_id,
        [e.seq for e in events],
        [int(e.type) for e in events],
        [e.timestamp for e in events],
        [_seal_attrs(_codecs(conn), e.attrs) for e in events],
        [e.ends_step for e in events],
    )


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
        _ANSWER_CALL_SQL,
        call_id,
        _codecs(conn).seal(result),
        _seal_failure(_codecs(conn), failure),
        CHANNEL,
    )


def _append(columns: list[list[Any]], *values: Any) -> None:
    for column, value in zip(columns, values, strict=False):
        column.append(value)
