"""Resetting a run to a point of its history, or forking it to a new workflow id: in one
transaction, the old run closed (a reset) and the new one opened with the kept events, the
work they started and did not see finish, and the signals to deliver again (see
durable/_reset_plan.py)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from .._errors import WorkflowAlreadyStartedError
from .._events import REPLAY_RULES, Event, EventType
from .._failures import failure
from .._flow import DEFAULT_PRIORITY
from .._reset_plan import REDELIVERED, ResetPlan, plan_reset
from .base import StoreBase
from .closing import _close_without_code
from .commit import _start_child
from .connection import _codecs, _history_event, _now, _pack, _seal_attrs
from .records import ResetRun
from .runs import _addressed_run
from .sql.resets import (
    _FILL_INBOX_SQL,
    _HELD_MESSAGES_SQL,
    _INSERT_RESET_RUNS_SQL,
    _LATEST_RUNS_SQL,
    _MARK_RESET_SQL,
    _REPOINT_CHILDREN_SQL,
    _REPOINT_UPDATES_SQL,
    _RESCHEDULE_ACTIVITIES_SQL,
    _RESETS_DONE_SQL,
)
from .sql.retention import _HISTORIES_SQL
from .sql.starting import _START_LATEST_RUN_SQL

E = EventType
_FORKED_UPDATES = uuid.UUID("0b8f2c1e-6d3a-4f57-8e21-5a9c7d4e3b10")  # namespace of their ids


class Resets(StoreBase):
    """The statements behind WorkflowHandle.reset and Client.fork."""

    async def reset(
        self,
        workflow_id: str,
        run_id: str | None,
        seq: int | None,
        reason: str | None,
        request_id: str,
        *,
        fork_to: str | None = None,
    ) -> ResetRun:
        """Reset the run a handle addresses to ``seq`` (None: the default point), or with
        ``fork_to`` start a copy of it under that workflow id; once per request id (made
        again, it returns the run the first one started)."""

        async def work(conn: asyncpg.Connection) -> ResetRun:
            run = await _addressed_run(conn, workflow_id, run_id, lock=True)
            (done,) = await _reset_runs(conn, [run], seq, reason, request_id, fork_to=fork_to)
            return done

        done: ResetRun = await self._retrying(work)
        return done


@dataclass(slots=True)
class _Reset:
    """One run to reset, and what its reset decided."""

    run: asyncpg.Record
    plan: ResetPlan
    new_id: str
    new_run: str = field(default_factory=lambda: str(uuid.uuid4()))
    held: list[tuple[int, bytes]] = field(default_factory=list)  # its inbox's signals and
    # updates (kind, sealed body), oldest first
    repointed: set[int] = field(default_factory=set)  # children moved to the new run

    @property
    def old(self) -> tuple[str, str]:
        return self.run["workflow_id"], str(self.run["run_id"])

    @property
    def takes_parent(self) -> bool:
        """A run still open is awaited by its parent: the new run reports to it instead."""
        forked = self.new_id != self.run["workflow_id"]
        return not forked and self.run["closed_at"] is None

    def result(self, *, new: bool = True) -> ResetRun:
        return ResetRun(
            self.new_id,
            self.new_run,
            self.plan.seq,
            self.run["workflow_name"],
            self.run["task_queue"],
            new=new,
        )


async def _reset_runs(
    conn: asyncpg.Connection,
    runs: Sequence[asyncpg.Record],
    seq: int | None,
    reason: str | None,
    request_id: str,
    *,
    fork_to: str | None = None,
    latest_only: bool = False,
) -> list[ResetRun]:
    """Reset the runs given (locked by the caller, one run per workflow) to ``seq`` (None:
    each run's default point), or with ``fork_to`` start a copy of the one run given under
    that workflow id, with a statement per kind of row for all of them. A run ``request_id``
    reset already gives the run it started (``new`` False); with ``latest_only``, a run that
    is not its workflow's latest is left out."""
    new_ids = [fork_to or run["workflow_id"] for run in runs]
    done = {r["workflow_id"]: r for r in await conn.fetch(_RESETS_DONE_SQL, new_ids, request_id)}
    again = [
        ResetRun(
            new_id,
            str(done[new_id]["run_id"]),
            done[new_id]["reset_from_seq"],
            run["workflow_name"],
            run["task_queue"],
            new=False,
        )
        for run, new_id in zip(runs, new_ids, strict=True)
        if new_id in done
    ]
    todo = [run for run, new_id in zip(runs, new_ids, strict=True) if new_id not in done]
    superseded: list[tuple[asyncpg.Record, str]] = []  # (a closed run to reset, its open run)
    if fork_to is not None:
        await _require_no_open_run(conn, fork_to)
    elif todo:
        latest = {
            r["workflow_id"]: r
            for r in await conn.fetch(_LATEST_RUNS_SQL, [run["workflow_id"] for run in todo])
        }
        if latest_only:
            todo = [run for run in todo if latest[run["workflow_id"]]["run_id"] == run["run_id"]]
        superseded = [
            (run, str(now["run_id"]))
            for run in todo
            if (now := latest[run["workflow_id"]])["closed_at"] is None
            and now["run_id"] != run["run_id"]
        ]
    histories = await _histories(conn, todo)
    resets = [
        _Reset(run, plan_reset(histories[str(run["run_id"])], seq), fork_to or run["workflow_id"])
        for run in todo
    ]
    if not resets:
        return again
    await _close_old_runs(conn, [r for r in resets if r.takes_parent], reason)
    if superseded:
        plans = {str(r.run["run_id"]): r.plan for r in resets}
        why = [
            {
                "reason": reason
                or f"run {run['run_id']} was reset to seq {plans[str(run['run_id'])].seq}"
            }
            for run, _ in superseded
        ]
        open_runs = [(run["workflow_id"], current) for run, current in superseded]
        await _close_without_code(conn, open_runs, E.WORKFLOW_TERMINATED, why)
    if fork_to is None:
        await conn.execute(_MARK_RESET_SQL, *_columns([(*r.old, r.new_run) for r in resets], 3))
    await _open_reset_runs(conn, resets, request_id)
    await _restart_work(conn, resets)
    return [*again, *(r.result() for r in resets)]


async def _histories(
    conn: asyncpg.Connection, runs: Sequence[asyncpg.Record]
) -> dict[str, list[Event]]:
    """The runs' histories, by run id."""
    rows = await conn.fetch(
        _HISTORIES_SQL, [run["workflow_id"] for run in runs], [run["run_id"] for run in runs]
    )
    codecs = _codecs(conn)
    return {
        str(run_id): [_history_event(codecs, e) for e in events]
        for run_id, events in itertools.groupby(rows, key=lambda e: e["run_id"])
    }


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as the arrays of their columns (a statement's unnest parameters)."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


async def _close_old_runs(
    conn: asyncpg.Connection, resets: Sequence[_Reset], reason: str | None
) -> None:
    """The open runs reset, terminated (their parents are not told: the new runs report to
    them), with the signals and updates they held kept, and the children they started and
    the updates they had not answered moved to the new runs first."""
    if not resets:
        return
    by_run = {r.old[1]: r for r in resets}
    old_ids, old_runs = (list(c) for c in zip(*(r.old for r in resets), strict=True))
    kinds = [int(kind) for kind in REDELIVERED]
    for row in await conn.fetch(_HELD_MESSAGES_SQL, old_ids, old_runs, kinds):
        by_run[str(row["run_id"])].held.append((row["kind"], row["body"]))
    await conn.execute(_REPOINT_UPDATES_SQL, old_ids, old_runs, [r.new_run for r in resets])
    children = [(*r.old, r.new_run, c.seq) for r in resets for c in r.plan.children]
    if children:
        by_new = {r.new_run: r for r in resets}
        for row in await conn.fetch(_REPOINT_CHILDREN_SQL, *_columns(children, 4)):
            by_new[str(row["parent_run_id"])].repointed.add(row["parent_seq"])
    closing = [
        {"reason": reason or f"reset to seq {r.plan.seq}", "reset_run_id": r.new_run}
        for r in resets
    ]
    await _close_without_code(
        conn, [r.old for r in resets], E.WORKFLOW_TERMINATED, closing, tell_parents=False
    )


async def _require_no_open_run(conn: asyncpg.Connection, workflow_id: str) -> None:
    current = await conn.fetchrow(_START_LATEST_RUN_SQL, workflow_id)
    if current is not None and current["closed_at"] is None:
        raise WorkflowAlreadyStartedError(
            f"cannot fork to workflow id {workflow_id!r}: it has an open run "
            f"({current['run_id']}); choose another new_id",
            workflow_id=workflow_id,
            run_id=str(current["run_id"]),
        )


async def _open_reset_runs(
    conn: asyncpg.Connection, resets: Sequence[_Reset], request_id: str
) -> None:
    """The new runs' rows and histories: each one's start as its old run's (same input, same
    seed of randomness), then the kept events copied."""
    codecs = _codecs(conn)
    rows = []
    for r in resets:
        run, plan = r.run, r.plan
        parent = (
            (run["parent_workflow_id"], run["parent_run_id"], run["parent_seq"])
            if r.takes_parent
            else (None, None, None)
        )
        begun = plan.seq > 1
        first = plan.kept[0]
        attrs = {
            **first.attrs,
            "seed_run": first.attrs.get("seed_run", str(run["run_id"])),
            "parent_workflow_id": parent[0],
        }
        started_at = first.timestamp
        if not begun:  # nothing to replay: the run begins now, under today's replay rules
            attrs.pop("start_delay", None)
            attrs["rules"] = REPLAY_RULES
            started_at = _now(conn)
        rows.append(
            (
                r.new_id,
                r.new_run,
                run["workflow_name"],
                run["task_queue"],
                "running" if begun else "pending",
                *parent,
                dict(run["attributes"]),
                plan.seq if begun else 2,
                run["workflow_id"],
                run["run_id"],
                plan.seq,
                started_at,
                _seal_attrs(codecs, attrs),
                first.ends_step and begun,
            )
        )
    opened = {
        row["workflow_id"]
        for row in await conn.fetch(
            _INSERT_RESET_RUNS_SQL, *_columns(rows, 16), request_id, int(E.WORKFLOW_STARTED)
        )
    }
    lost = [r.new_id for r in resets if r.new_id not in opened]
    if lost:  # a start won the id meanwhile
        raise WorkflowAlreadyStartedError(
            f"workflow {lost[0]!r} was started while it was being reset; try again",
            workflow_id=lost[0],
        )


async def _restart_work(conn: asyncpg.Connection, resets: Sequence[_Reset]) -> None:
    """What the kept events started and did not see finish, started again for the new runs
    (children moved to them excepted), and the signals to deliver again."""
    codecs = _codecs(conn)
    messages: list[tuple[str, str, int, int | None, datetime | None, bytes]] = []
    activities: list[tuple[Any, ...]] = []
    for r in resets:
        key = (r.new_id, r.new_run)
        for kind, ref, at, body in _first_messages(codecs, r):
            messages.append((*key, int(kind), ref, at, body))
        activities += [(*key, *_activity_row(codecs, a)) for a in r.plan.activities]
        cancelled = {c.seq for c in r.plan.cancelled_children}
        for child in r.plan.children:
            if child.seq not in r.repointed and child.seq not in cancelled:
                await _start_child(conn, (*key, child.seq), child.attrs, None)
    if messages:
        await conn.execute(_FILL_INBOX_SQL, *_columns(messages, 6))
    if activities:
        await conn.execute(_RESCHEDULE_ACTIVITIES_SQL, *_columns(activities, 11))


def _first_messages(
    codecs: Any, reset: _Reset
) -> list[tuple[EventType, int | None, datetime | None, bytes]]:
    """A new run's first messages, in order: the signals and updates from the reset point
    on and those its old run held, its timers set again, its execution timeout, and the
    outcome of each child whose cancellation was asked (it has closed). A fork's updates
    get ids of their own: their callers are the original run's, which still answers them."""
    plan = reset.plan
    messages: list[tuple[EventType, int | None, datetime | None, bytes]] = [
        (message.type, None, None, _seal_attrs(codecs, _redelivered(reset, message)))
        for message in plan.messages
    ]
    messages += [(E(kind), None, None, body) for kind, body in reset.held]
    for timer in plan.timers:
        fire_at = datetime.fromtimestamp(timer.attrs["fire_at"], UTC)
        messages.append(
            (E.TIMER_FIRED, timer.seq, fire_at, _seal_attrs(codecs, {"started": timer.seq}))
        )
    deadline = plan.kept[0].attrs.get("execution_deadline")
    if deadline is not None:
        timeout_at = datetime.fromtimestamp(deadline, UTC)
        messages.append((E.WORKFLOW_TIMED_OUT, None, timeout_at, _seal_attrs(codecs, {})))
    for child in plan.cancelled_children:
        if child.seq in reset.repointed:
            continue
        outcome = {
            "scheduled": child.seq,
            "workflow_id": child.attrs["workflow_id"],
            "reason": "cancelled",
            "failure": failure("cancelled", "child workflow was cancelled"),
        }
        messages.append((E.CHILD_FAILED, None, None, _seal_attrs(codecs, outcome)))
    return messages


def _redelivered(reset: _Reset, message: Event) -> dict[str, Any]:
    if message.type is E.UPDATE_ACCEPTED and not reset.takes_parent:
        # no caller waits on the new run's answer: an id no call has
        return {
            **message.attrs,
            "update_id": str(
                uuid.uuid5(_FORKED_UPDATES, reset.new_run + message.attrs["update_id"])
            ),
        }
    return message.attrs


def _activity_row(codecs: Any, scheduled: Event) -> tuple[Any, ...]:
    attrs = scheduled.attrs
    return (
        scheduled.seq,
        attrs["task_queue"],
        attrs["name"],
        codecs.seal(attrs["args"]),
        _pack(attrs["retry"]) if attrs.get("retry") else None,
        attrs.get("start_to_close"),
        attrs.get("heartbeat"),
        attrs.get("schedule_to_close"),
        attrs.get("priority", DEFAULT_PRIORITY),
    )
