"""The statement that commits workflow steps, assembled from the parts a batch needs, and
the effects a step has beyond its run's rows (children, cancellations, update replies)."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import asyncpg

from .._codecs import Codecs
from .._definitions import DEFAULT_RETRY_POLICY, RetryPolicy
from .._errors import WorkflowAlreadyStartedError
from .._events import Event, EventType
from .._failures import failure
from .._flow import DEFAULT_PRIORITY
from .closing import _cancel_run, _closing_values
from .connection import _codecs, _pack, _seal_attrs
from .errors import _ENSURE_FAILED, _MISSED_MESSAGES, LostOwnership, MissedMessages
from .records import ActivityTask, StartRequest, TaskCommit, WorkflowTask, _Rows, _Step
from .runs import _answer_call, _post
from .starting import _start_in, _StartRaceLost

E = EventType


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
    ("priority", "smallint"),
)
# the trace context of each new activity task, in the statement only when a step has one
_TRACE_COLUMNS: _Columns = (("trace", "jsonb"),)
# run columns only a commit that goes on in its transaction (wide effects) needs
_WIDE_RETURNING = (
    ("parent_workflow_id", "text"),
    ("parent_run_id", "uuid"),
    ("parent_seq", "int"),
    ("workflow_name", "text"),
    ("task_queue", "text"),
    ("attributes", "jsonb"),
    ("inbox_seq", "bigint"),
    ("priority", "smallint"),
)


class _CommitShape(NamedTuple):  # a tuple: cheap to build and hash for the statement cache
    """Which parts of the commit statement a batch of steps needs."""

    attributes: bool = False
    history: bool = False
    consumed: bool = False
    finished: bool = False
    timers: bool = False
    scheduled: bool = False
    traced: bool = False  # a scheduled activity carries a trace context
    closing: bool = False
    wide: bool = False  # return the run rows in full: the transaction goes on


def _scheduled_columns(shape: _CommitShape) -> _Columns:
    return _SCHEDULED_COLUMNS + _TRACE_COLUMNS if shape.traced else _SCHEDULED_COLUMNS


def _eager_unless_limited(columns: _Columns) -> str:
    """The new activity tasks (``a``), each owned by the committing worker if it asked to
    run it at once, unless its queue has activity limits (migration 0015): the claims of a
    limited queue take turns under its limits, and an attempt taken past them would not."""
    names = ", ".join(f"a.{name}" for name, _ in columns if name != "owner")
    return f"""(SELECT {names}, CASE WHEN a.owner IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM durable.task_queues q WHERE q.task_queue = a.task_queue AND q.limited)
        THEN a.owner END AS owner
    FROM {_unnest("a", columns)}) AS a"""


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
            " WHEN w.inbox_seq <> s.inbox_seq THEN durable.now() ELSE s.next_due END",
            "status = coalesce(s.status, w.status)",
            "closed_at = CASE WHEN s.status IS NOT NULL THEN durable.now() END",
            "result = s.result",
            "failure = s.failure",
        ]
    else:
        updates.append(
            "ready_at = CASE WHEN w.inbox_seq <> s.inbox_seq THEN durable.now() ELSE s.next_due END"
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
        attempt, started_at, priority, trace)
    SELECT workflow_id, run_id, seq, task_queue, name, args, retry, start_to_close, heartbeat,
        durable.now() + make_interval(secs => schedule_to_close),
        CASE WHEN owner IS NOT NULL THEN LEAST(durable.now() + make_interval(secs => start_to_close),
            durable.now() + make_interval(secs => schedule_to_close),
            durable.now() + make_interval(secs => heartbeat))
        ELSE durable.now() + make_interval(secs => schedule_to_close) END,
        owner, CASE WHEN owner IS NOT NULL THEN 1 ELSE 0 END,
        CASE WHEN owner IS NOT NULL THEN durable.now() END, priority,
        {"trace" if shape.traced else "NULL"}
    FROM {_eager_unless_limited(_scheduled_columns(shape))}
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


# The shapes most steps commit through: a first step scheduling an activity, a result handed
# over or read from the inbox with the next activity or the closing, local work, a timer.
_COMMON_SHAPES = tuple(
    _CommitShape(history=True, **dict.fromkeys(parts, True))
    for parts in (
        ("scheduled",),
        ("finished", "scheduled"),
        ("consumed", "scheduled"),
        (),
        ("closing",),
        ("finished", "closing"),
        ("consumed", "closing"),
        ("consumed",),
        ("timers",),
    )
)


async def _plan_common_steps(conn: asyncpg.Connection) -> None:
    """Prepare and plan the commit statement of each common shape on ``conn``, so that a
    fresh worker's first steps do not pay for it. Run with no steps, each statement only
    checks that nothing was asked of it (it writes nothing, so it commits nothing)."""
    for shape in _COMMON_SHAPES:
        sql, names = _commit_statement(shape)
        await conn.fetch(sql, *([] for _ in names))


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
                        attrs.get("priority", DEFAULT_PRIORITY),
                        commit.traces.get(event.seq),
                    )
                )
    shape = _CommitShape(
        attributes=any(attributes),
        history=bool(history),
        consumed=bool(consumed),
        finished=bool(finished),
        timers=bool(timers),
        scheduled=bool(scheduled),
        traced=any(row[-1] is not None for row in scheduled),
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
        ("a", _scheduled_columns(shape), scheduled),
    ):
        for (name, _), values in zip(columns, zip(*rows, strict=True), strict=False):
            arrays[f"{prefix}_{name}"] = values
    sql, names = _commit_statement(shape)
    return sql, [arrays[name] for name in names]


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
                trace=commit.traces.get(event.seq),
                workflow_name=task.workflow_name,
            )
        )
    return tasks


class _WideEffects:
    """The effects of events that reach beyond the run's own rows, inside the commit."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        workflow_id: str,
        run_id: str,
        traces: Mapping[int, Mapping[str, str]],
    ) -> None:
        self.conn = conn
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.traces = traces
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
            parent = (self.workflow_id, self.run_id, event.seq)
            await _start_child(self.conn, parent, attrs, self.traces.get(event.seq))
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

    async def _post_to_child(self, scheduled: int, etype: EventType, attrs: dict[str, Any]) -> None:
        child = await self._open_child(scheduled)
        if child is not None:
            await _post(self.conn, child["workflow_id"], str(child["run_id"]), etype, attrs)

    async def _open_child(self, scheduled: int, *, lock: bool = False) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(
            "SELECT workflow_id, run_id, status, paused_at FROM durable.workflows"
            " WHERE parent_workflow_id = $1 AND parent_run_id = $2 AND parent_seq = $3 AND closed_at IS NULL"
            + (" FOR UPDATE" if lock else ""),
            self.workflow_id,
            self.run_id,
            scheduled,
        )
        return row


async def _start_child(
    conn: asyncpg.Connection,
    parent: tuple[str, str, int],
    attrs: Mapping[str, Any],
    trace: Mapping[str, str] | None,
) -> None:
    """Start the child a CHILD_SCHEDULED event (``attrs``, at seq ``parent[2]``) asks for; one
    that cannot start (its id is taken) is a failure sent to the parent."""
    request = StartRequest(
        workflow_id=attrs["workflow_id"],
        workflow_name=attrs["name"],
        task_queue=attrs["task_queue"],
        args=attrs["args"],
        parent=parent,
        trace=trace,
        priority=attrs.get("priority", DEFAULT_PRIORITY),
    )
    try:
        async with conn.transaction():  # a savepoint: a failed start leaves the rest
            await _start_in(conn, request)
    except (WorkflowAlreadyStartedError, _StartRaceLost) as exc:
        await conn.execute(
            "INSERT INTO durable.inbox (workflow_id, run_id, kind, body) VALUES ($1, $2, $3, $4)",
            parent[0],
            parent[1],
            int(E.CHILD_FAILED),
            _seal_attrs(
                _codecs(conn),
                {
                    "scheduled": parent[2],
                    "workflow_id": attrs["workflow_id"],
                    "reason": "could not start",
                    "failure": failure(
                        "application",
                        str(exc),
                        type="WorkflowAlreadyStartedError",
                        non_retryable=True,
                    ),
                },
            ),
        )
