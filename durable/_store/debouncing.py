"""Debounced starts: ``client.start(..., id=..., debounce=...)``.

The first debounced start of an id opens a run as any start does, due ``debounce`` later,
and marks it debounced. A later debounced start of the id, while that run has not begun
(still 'pending', never claimed), is applied to it instead: in one transaction, under the
run's lock (which a worker's claim also takes), the run's only event, WORKFLOW_STARTED,
takes the new start's arguments, and the run is due ``debounce`` from now, but never more
than ``debounce_max`` after the run was opened. Nothing of the run has run, so rewriting its
first event changes no history any code has seen. Once the run has begun (or for a later
start of another workflow or queue, or when the open run is not a debounced one), the start
follows the id policies as any start does.

Each start carries an id of its own (the run id the client made for it, the same in every
attempt): applying it records it with the run, so that an attempt made again after a lost
connection returns that run and applies nothing more, even once the run has begun.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

import asyncpg

from .._events import EventType
from .connection import _codecs, _now, _seal_attrs
from .records import StartRequest
from .runs import _execution_deadline, _started_attrs
from .sql.starting import (
    _DEBOUNCE_RUN_SQL,
    _DEBOUNCED_BEFORE_SQL,
    _DEBOUNCED_RUN_SQL,
    _MARK_DEBOUNCED_SQL,
)
from .starting import _start_in


async def _start_debounced(
    conn: asyncpg.Connection, request: StartRequest, run_id: str
) -> tuple[str, bool]:
    """Apply the debounced start ``request`` (``run_id``: the run it opens, and its id) to
    its id's debounced run that has not begun, else start it under the id policies.
    Returns (run id, whether it opened that run)."""
    open_run = await conn.fetchrow(_DEBOUNCED_RUN_SQL, request.workflow_id)
    applied = await conn.fetchval(_DEBOUNCED_BEFORE_SQL, request.workflow_id, _start_id(run_id))
    if applied is not None:  # by an earlier attempt of this start
        return str(applied), False
    if open_run is not None and _not_begun(open_run, request):
        await _debounce_run(conn, request, open_run, run_id)
        return str(open_run["run_id"]), False
    first = dataclasses.replace(request, start_delay=request.debounce)
    opened, started = await _start_in(conn, first, run_id)
    if started:
        await conn.execute(_MARK_DEBOUNCED_SQL, request.workflow_id, opened)
    return opened, started


def _not_begun(run: asyncpg.Record, request: StartRequest) -> bool:
    """Whether the open run (locked) is a debounced run of the same workflow and queue that
    no worker has taken yet."""
    return (
        run["debounced"]
        and run["status"] == "pending"
        and run["owner"] is None
        and run["workflow_name"] == request.workflow_name
        and run["task_queue"] == request.task_queue
    )


async def _debounce_run(
    conn: asyncpg.Connection, request: StartRequest, run: asyncpg.Record, start_id: str
) -> None:
    """Give the locked debounced run ``run`` the arguments, attributes and execution timeout
    of ``request``, due ``debounce`` from now (capped at ``debounce_max`` from its opening)."""
    now = _now(conn)
    opened: datetime = run["started_at"]  # also the time of its first event
    due = _debounced_due(opened, now, request)
    deadline = _execution_deadline(request, now)
    run_id = str(run["run_id"])
    started = _started_attrs(request, run_id, deadline, (due - opened).total_seconds())
    codecs = _codecs(conn)
    await conn.execute(
        _DEBOUNCE_RUN_SQL,
        request.workflow_id,
        run_id,
        due,
        request.attributes or {},
        _seal_attrs(codecs, started),
        int(EventType.WORKFLOW_TIMED_OUT),
        deadline,
        _seal_attrs(codecs, {}),
        _start_id(start_id),
    )


def _debounced_due(opened: datetime, now: datetime, request: StartRequest) -> datetime:
    """When a debounced run opened at ``opened`` begins after the start ``request`` made
    ``now``: ``debounce`` later, but no later than ``debounce_max`` after its opening."""
    assert request.debounce is not None
    due = now + request.debounce
    if request.debounce_max is not None:
        due = min(due, opened + request.debounce_max)
    return max(due, opened)


def _start_id(run_id: str) -> str:
    """The request id a debounced start applied to another run is recorded under."""
    return f"start:{run_id}"
