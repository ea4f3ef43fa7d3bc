"""The rules for closing a run: its status and outcome, its parent told, its children and
leftovers swept, continue-as-new; and closing from outside its code (terminate, cancel)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from .._codecs import Codecs
from .._events import Event, EventType
from .._failures import Failure, failure
from .._types import Status
from .connection import _codecs, _now, _seal_attrs, _seal_failure
from .records import StartRequest, _Rows
from .runs import _insert_run, _post, _post_each, _post_many, _resume_runs
from .sql.closing import (
    _CLOSE_RUN_SQL,
    _CLOSE_WITHOUT_CODE_SQL,
    _MOVE_CALLS_SQL,
    _MOVE_INBOX_SQL,
    _NEW_RUN_DUE_SQL,
    _OPEN_CHILDREN_SQL,
)

E = EventType

TERMINAL_STATUS: dict[EventType, Status] = {
    E.WORKFLOW_COMPLETED: "completed",
    E.WORKFLOW_FAILED: "failed",
    E.WORKFLOW_CANCELLED: "cancelled",
    E.WORKFLOW_CONTINUED_AS_NEW: "continued_as_new",
    E.WORKFLOW_TERMINATED: "terminated",
    E.WORKFLOW_TIMED_OUT: "timed_out",
}


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


def _closing_failure(closing: Event) -> Failure | None:
    """The failure a run closed by ``closing`` records (None for a completed run)."""
    if closing.type is E.WORKFLOW_CANCELLED:
        return failure("cancelled", "workflow was cancelled")
    if closing.type is E.WORKFLOW_TERMINATED:
        return failure("terminated", closing.attrs.get("reason") or "workflow was terminated")
    if closing.type is E.WORKFLOW_TIMED_OUT:
        return failure("timeout", "workflow execution timed out")
    recorded: Failure | None = closing.attrs.get("failure")
    return recorded


def _update_cut_off(workflow_id: str, status: str) -> Failure:
    """The answer to an update still pending when its workflow closed."""
    return failure(
        "application",
        f"workflow {workflow_id!r} closed ({status}) before the update completed",
        type="UpdateError",
    )


async def _close_run(
    conn: asyncpg.Connection,
    workflow_id: str,
    run_id: str,
    closing: Event,
    row: asyncpg.Record,
    *,
    started_children: bool = True,
    trace: Mapping[str, str] | None = None,
) -> None:
    """Close a run: status, result, parent notification, cleanup, continue-as-new (the new
    run in the trace context ``trace``).

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
        _CLOSE_RUN_SQL,
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
                trace=trace,
                priority=row["priority"],
            ),
            new_run_id,
        )
        await conn.execute(_MOVE_INBOX_SQL, workflow_id, run_id, new_run_id)
        await conn.execute(_MOVE_CALLS_SQL, workflow_id, run_id, new_run_id)
        await conn.execute(_NEW_RUN_DUE_SQL, workflow_id, new_run_id)
    if new_run_id is None and row["parent_workflow_id"]:
        await _post(conn, *_told_parent(workflow_id, row, closing.type, status, attrs, failure))
    if new_run_id is None:  # parent close policy: its open children are terminated
        children = zip(children["ids"], children["run_ids"], strict=True)
        await _terminate_children(conn, workflow_id, status, list(children))


def _told_parent(
    workflow_id: str,
    row: asyncpg.Record,
    etype: EventType,
    status: Status,
    attrs: Mapping[str, Any],
    failure: Failure | None,
) -> tuple[str, str, EventType, dict[str, Any]]:
    """The message a closed child's parent is sent: (parent id, its run, kind, attributes)."""
    if etype is E.WORKFLOW_COMPLETED:
        kind, outcome = E.CHILD_COMPLETED, {"result": attrs["result"]}
    else:
        kind = E.CHILD_FAILED
        outcome = {"workflow_id": workflow_id, "reason": status, "failure": failure}
    outcome["scheduled"] = row["parent_seq"]
    return row["parent_workflow_id"], str(row["parent_run_id"]), kind, outcome


async def _terminate_children(
    conn: asyncpg.Connection, workflow_id: str, status: str, children: Sequence[tuple[str, str]]
) -> None:
    if children:
        reason = f"parent workflow {workflow_id!r} closed ({status})"
        await _close_without_code(conn, children, E.WORKFLOW_TERMINATED, {"reason": reason})


async def _terminate_run(
    conn: asyncpg.Connection, workflow_id: str, run_id: str, reason: str | None
) -> bool:
    """Terminate an open run; False if it had closed (nothing done)."""
    closed = await _close_without_code(
        conn, [(workflow_id, run_id)], E.WORKFLOW_TERMINATED, {"reason": reason}
    )
    return bool(closed)


async def _cancel_run(conn: asyncpg.Connection, run: asyncpg.Record, reason: str | None) -> bool:
    """Cancel an open run (locked by the caller); False if it had closed (nothing done)."""
    return bool(await _cancel_runs(conn, [run], reason))


async def _cancel_runs(
    conn: asyncpg.Connection,
    runs: Sequence[asyncpg.Record],
    reason: str | None,
    request_id: str | None = None,
) -> _Rows:
    """Cancel open runs (locked by the caller): one that has not begun is closed at once,
    as no code of it ran; the others are sent a cancel request (once per workflow and
    ``request_id``), and resumed if paused, as their code must run to see it. Returns the
    runs acted on now (one closed meanwhile is left out)."""
    pending = [
        (run["workflow_id"], str(run["run_id"])) for run in runs if run["status"] == "pending"
    ]
    begun = [run for run in runs if run["status"] != "pending"]
    attrs = {"reason": reason, "before_start": True}
    closed = (
        await _close_without_code(conn, pending, E.WORKFLOW_CANCELLED, attrs) if pending else []
    )
    asked = (
        await _post_each(conn, begun, E.CANCEL_REQUESTED, {"reason": reason}, request_id)
        if begun
        else []
    )
    paused = [run for run in asked if run["paused_at"] is not None]
    if paused:
        await _resume_runs(conn, paused)
    return [*closed, *asked]


async def _close_without_code(
    conn: asyncpg.Connection,
    runs: Sequence[tuple[str, str]],
    etype: EventType,
    attrs: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    tell_parents: bool = True,
) -> _Rows:
    """Close open runs (workflow id, run id) from outside their code (terminated, cancelled
    before they began), in one statement: the fence moves, so that an owner's next commit
    fails, and the closing event (``attrs``: the same for every run, or one per run) is a
    step of its own that runs no code on replay. Their parents are told (unless not
    ``tell_parents``: a reset's new run reports to them), their open children terminated.
    Returns the runs closed (those closed already are left out)."""
    codecs = _codecs(conn)
    status = TERMINAL_STATUS[etype]
    each = [dict(attrs)] * len(runs) if isinstance(attrs, Mapping) else [dict(a) for a in attrs]
    failures = [_closing_failure(Event(0, etype, _now(conn), a)) for a in each]
    closed: _Rows = await conn.fetch(
        _CLOSE_WITHOUT_CODE_SQL,
        [workflow_id for workflow_id, _ in runs],
        [run_id for _, run_id in runs],
        int(etype),
        [_seal_attrs(codecs, a) for a in each],
        status,
        [_seal_failure(codecs, f) for f in failures],
        [_seal_failure(codecs, _update_cut_off(workflow_id, status)) for workflow_id, _ in runs],
    )
    position = {run_id: i for i, (_, run_id) in enumerate(runs)}
    told = []
    for row in closed:
        if row["parent_workflow_id"] and tell_parents:
            i = position[str(row["run_id"])]
            told.append(_told_parent(row["workflow_id"], row, etype, status, each[i], failures[i]))
    if told:
        await _post_many(
            conn,
            [
                ("", parent, run, kind, _seal_attrs(codecs, outcome), None)
                for parent, run, kind, outcome in told
            ],
        )
    if closed:
        children = await conn.fetch(
            _OPEN_CHILDREN_SQL,
            [row["workflow_id"] for row in closed],
            [row["run_id"] for row in closed],
        )
        for parent, group in itertools.groupby(children, key=lambda c: c["parent_workflow_id"]):
            pairs = [(c["workflow_id"], str(c["run_id"])) for c in group]
            await _terminate_children(conn, parent, status, pairs)
    return closed
