"""Resetting a run to a point of its history, or forking it to a new workflow id: in one
transaction, the old run closed (a reset) and the new one opened with the kept events, the
work they started and did not see finish, and the signals to deliver again (see
durable/_reset_plan.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from .._errors import WorkflowAlreadyStartedError
from .._events import Event, EventType
from .._failures import failure
from .._reset_plan import ResetPlan, plan_reset
from .base import StoreBase
from .closing import _close_without_code, _terminate_run
from .commit import _start_child
from .connection import _codecs, _history_event, _pack, _seal_attrs
from .records import ResetRun
from .runs import _addressed_run, _insert_history
from .sql import (
    _COPY_HISTORY_SQL,
    _FILL_INBOX_SQL,
    _HELD_SIGNALS_SQL,
    _INSERT_RESET_RUN_SQL,
    _LOAD_HISTORY_SQL,
    _MARK_RESET_SQL,
    _REPOINT_CHILDREN_SQL,
    _RESCHEDULE_ACTIVITIES_SQL,
    _RESET_DONE_SQL,
    _START_LATEST_RUN_SQL,
)

E = EventType


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
            return await _reset_run(conn, run, seq, reason, request_id, fork_to)

        done: ResetRun = await self._retrying(work)
        return done


async def _reset_run(
    conn: asyncpg.Connection,
    run: asyncpg.Record,
    seq: int | None,
    reason: str | None,
    request_id: str,
    fork_to: str | None = None,
) -> ResetRun:
    """Reset (or fork) the run given, locked by the caller."""
    old_id, old_run = run["workflow_id"], str(run["run_id"])
    new_id = fork_to or old_id
    done = await conn.fetchrow(_RESET_DONE_SQL, new_id, request_id)
    if done is not None:
        return ResetRun(
            new_id,
            str(done["run_id"]),
            done["reset_from_seq"],
            run["workflow_name"],
            run["task_queue"],
            new=False,
        )
    plan = plan_reset(await _history(conn, old_id, old_run), seq)
    new_run = str(uuid.uuid4())
    is_open = run["closed_at"] is None
    # the parent of a run still open waits for it: the new run reports to it instead
    parent = None
    if fork_to is None and is_open and run["parent_workflow_id"] is not None:
        parent = (run["parent_workflow_id"], run["parent_run_id"], run["parent_seq"])
    held: list[bytes] = []
    repointed: set[int] = set()
    if fork_to is not None:
        await _require_no_open_run(conn, new_id)
    elif is_open:
        signals = await conn.fetch(_HELD_SIGNALS_SQL, old_id, old_run, int(E.SIGNAL_RECEIVED))
        held = [r["body"] for r in signals]
        repointed = {
            r["parent_seq"]
            for r in await conn.fetch(
                _REPOINT_CHILDREN_SQL, old_id, old_run, new_run, [c.seq for c in plan.children]
            )
        }
        closing = {
            "reason": reason or f"reset to seq {plan.seq}",
            "reset_run_id": new_run,
        }
        await _close_without_code(
            conn, [(old_id, old_run)], E.WORKFLOW_TERMINATED, closing, tell_parents=parent is None
        )
    else:
        current = await conn.fetchrow(_START_LATEST_RUN_SQL, old_id)
        if current is not None and current["closed_at"] is None:
            why = reason or f"run {old_run} was reset to seq {plan.seq}"
            await _terminate_run(conn, old_id, str(current["run_id"]), why)
    if fork_to is None:
        await conn.execute(_MARK_RESET_SQL, old_id, old_run, new_run)
    await _open_reset_run(conn, run, plan, new_id, new_run, parent, request_id)
    await _restart_work(conn, plan, new_id, new_run, held, repointed)
    return ResetRun(new_id, new_run, plan.seq, run["workflow_name"], run["task_queue"], new=True)


async def _history(conn: asyncpg.Connection, workflow_id: str, run_id: str) -> list[Event]:
    rows = await conn.fetch(_LOAD_HISTORY_SQL, workflow_id, run_id)
    return [_history_event(_codecs(conn), r) for r in rows]


async def _require_no_open_run(conn: asyncpg.Connection, workflow_id: str) -> None:
    current = await conn.fetchrow(_START_LATEST_RUN_SQL, workflow_id)
    if current is not None and current["closed_at"] is None:
        raise WorkflowAlreadyStartedError(
            f"cannot fork to workflow id {workflow_id!r}: it has an open run "
            f"({current['run_id']}); choose another new_id",
            workflow_id=workflow_id,
            run_id=str(current["run_id"]),
        )


async def _open_reset_run(
    conn: asyncpg.Connection,
    run: asyncpg.Record,
    plan: ResetPlan,
    new_id: str,
    new_run: str,
    parent: tuple[str, Any, int] | None,
    request_id: str,
) -> None:
    """The new run's row and history: its start as the old run's (same input, same seed of
    randomness), then the kept events copied."""
    parent_id, parent_run, parent_seq = parent or (None, None, None)
    begun = plan.seq > 1
    opened = await conn.fetchrow(
        _INSERT_RESET_RUN_SQL,
        new_id,
        new_run,
        run["workflow_name"],
        run["task_queue"],
        "running" if begun else "pending",
        parent_id,
        parent_run,
        parent_seq,
        dict(run["attributes"]),
        plan.seq if begun else 2,
        run["run_id"],
        plan.seq,
        request_id,
    )
    if opened is None:  # a start won the id meanwhile
        raise WorkflowAlreadyStartedError(
            f"workflow {new_id!r} was started while it was being reset; try again",
            workflow_id=new_id,
        )
    first = plan.kept[0]
    attrs = {
        **first.attrs,
        "seed_run": first.attrs.get("seed_run", str(run["run_id"])),
        "parent_workflow_id": parent_id,
    }
    started = Event(1, E.WORKFLOW_STARTED, first.timestamp, attrs, first.ends_step and begun)
    await _insert_history(conn, new_id, new_run, [started])
    await conn.execute(
        _COPY_HISTORY_SQL, run["workflow_id"], run["run_id"], new_id, new_run, plan.seq
    )


async def _restart_work(
    conn: asyncpg.Connection,
    plan: ResetPlan,
    new_id: str,
    new_run: str,
    held: Sequence[bytes],
    repointed: set[int],
) -> None:
    """What the kept events started and did not see finish, started again for the new run
    (children moved to it excepted), and the signals to deliver again."""
    codecs = _codecs(conn)
    messages: list[tuple[EventType, int | None, datetime | None, bytes]] = [
        (E.SIGNAL_RECEIVED, None, None, _seal_attrs(codecs, signal.attrs))
        for signal in plan.signals
    ]
    messages += [(E.SIGNAL_RECEIVED, None, None, body) for body in held]
    for timer in plan.timers:
        fire_at = datetime.fromtimestamp(timer.attrs["fire_at"], UTC)
        messages.append(
            (E.TIMER_FIRED, timer.seq, fire_at, _seal_attrs(codecs, {"started": timer.seq}))
        )
    deadline = plan.kept[0].attrs.get("execution_deadline")
    if deadline is not None:
        timeout_at = datetime.fromtimestamp(deadline, UTC)
        messages.append((E.WORKFLOW_TIMED_OUT, None, timeout_at, _seal_attrs(codecs, {})))
    cancelled = {c.seq for c in plan.cancelled_children}
    for child in plan.children:
        if child.seq in repointed:
            continue
        if child.seq in cancelled:  # its parent asked it to cancel, and it has closed
            outcome = {
                "scheduled": child.seq,
                "workflow_id": child.attrs["workflow_id"],
                "reason": "cancelled",
                "failure": failure("cancelled", "child workflow was cancelled"),
            }
            messages.append((E.CHILD_FAILED, None, None, _seal_attrs(codecs, outcome)))
        else:
            await _start_child(conn, (new_id, new_run, child.seq), child.attrs, None)
    if messages:
        kinds, refs, times, bodies = zip(*messages, strict=True)
        await conn.execute(
            _FILL_INBOX_SQL, new_id, new_run, [int(k) for k in kinds], refs, times, bodies
        )
    if plan.activities:
        await conn.execute(
            _RESCHEDULE_ACTIVITIES_SQL,
            new_id,
            new_run,
            *zip(*(_activity_row(codecs, a) for a in plan.activities), strict=True),
        )


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
    )
