"""Invariants the chaos run must leave in the database, checked once everything stopped.

Each check returns a list of violations: one precise sentence per broken invariant, naming
the workflow, run and events concerned, so a failure can be reproduced and diagnosed.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import msgpack

from durable import NondeterminismError
from durable._events import Event as DurableEvent
from durable._events import EventType, unpack_attrs
from durable._replayer import WorkflowInstance
from durable._serialization import decode
from durable._store import TERMINAL_STATUS

from . import app

E = EventType
COMPLETIONS = {  # incoming event -> (the command it answers, the attribute naming it)
    E.ACTIVITY_COMPLETED: (E.ACTIVITY_SCHEDULED, "scheduled"),
    E.ACTIVITY_FAILED: (E.ACTIVITY_SCHEDULED, "scheduled"),
    E.TIMER_FIRED: (E.TIMER_STARTED, "started"),
    E.CHILD_COMPLETED: (E.CHILD_SCHEDULED, "scheduled"),
    E.CHILD_FAILED: (E.CHILD_SCHEDULED, "scheduled"),
}
CLOCK_TOLERANCE = 1e-5  # seconds: fire_at is a float, timestamps are microseconds


@dataclass
class Event:
    seq: int
    type: EventType
    ts: datetime
    attrs: dict[str, Any]
    ends_step: bool = False


@dataclass
class Run:
    row: asyncpg.Record
    events: list[Event] = field(default_factory=list)

    @property
    def workflow_id(self) -> str:
        return str(self.row["workflow_id"])

    @property
    def run_id(self) -> str:
        return str(self.row["run_id"])

    @property
    def status(self) -> str:
        return str(self.row["status"])

    @property
    def closed(self) -> bool:
        return self.row["closed_at"] is not None

    def label(self) -> str:
        return f"{self.workflow_id} run {self.run_id[:8]} ({self.status})"

    def of_type(self, *types: EventType) -> list[Event]:
        return [e for e in self.events if e.type in types]

    def scheduled_names(self) -> dict[int, str]:
        return {e.seq: e.attrs["name"] for e in self.of_type(E.ACTIVITY_SCHEDULED)}


@dataclass
class Snapshot:
    """Everything the checks read, loaded once after the run."""

    runs: list[Run]
    orphan_events: list[str]  # history rows of no run
    inbox: list[asyncpg.Record]
    activity_tasks: list[asyncpg.Record]
    workers: list[asyncpg.Record]
    executions: list[asyncpg.Record]
    effects: list[asyncpg.Record]

    def runs_of(self, workflow_id: str) -> list[Run]:
        """The runs of one workflow id in the order they ran."""
        return sorted(
            (r for r in self.runs if r.workflow_id == workflow_id),
            key=lambda r: (r.row["created_at"], r.row["next_seq"]),
        )

    def children_of(self, workflow_id: str) -> list[Run]:
        return [r for r in self.runs if r.row["parent_workflow_id"] == workflow_id]


async def load_runs(conn: asyncpg.Connection) -> tuple[list[Run], list[str]]:
    """Every run with its history, and the history rows of no run."""
    runs = {
        (r["workflow_id"], str(r["run_id"])): Run(r)
        for r in await conn.fetch("SELECT * FROM durable.workflows")
    }
    orphans: list[str] = []
    for row in await conn.fetch(
        "SELECT workflow_id, run_id, seq, kind, ts, body, ends_step FROM durable.history "
        "ORDER BY workflow_id, run_id, seq"
    ):
        run = runs.get((row["workflow_id"], str(row["run_id"])))
        if run is None:
            orphans.append(f"{row['workflow_id']} run {str(row['run_id'])[:8]} seq {row['seq']}")
            continue
        attrs = unpack_attrs(row["body"])
        run.events.append(Event(row["seq"], E(row["kind"]), row["ts"], attrs, row["ends_step"]))
    return list(runs.values()), orphans


async def load_snapshot(conn: asyncpg.Connection) -> Snapshot:
    runs, orphans = await load_runs(conn)
    return Snapshot(
        runs=runs,
        orphan_events=orphans,
        inbox=list(await conn.fetch("SELECT workflow_id, run_id, id, kind FROM durable.inbox")),
        activity_tasks=list(
            await conn.fetch(
                "SELECT workflow_id, run_id, seq, activity_name, owner, attempt"
                " FROM durable.activity_tasks"
            )
        ),
        workers=list(
            await conn.fetch(
                "SELECT worker_id, identity, expires_at > now() AS live FROM durable.workers"
            )
        ),
        executions=list(
            await conn.fetch(
                "SELECT idempotency_key, activity_name, attempt, pid FROM chaos_executions"
            )
        ),
        effects=list(
            await conn.fetch("SELECT idempotency_key, activity_name, value FROM chaos_effects")
        ),
    )


# ---------------------------------------------------------------------------- histories
def check_history(run: Run, workflows: Sequence[Any] = app.WORKFLOWS) -> list[str]:
    """Contiguous seq 1..n, one terminal event at the end, no duplicate or dangling
    completion, no timer fired before its time; a closed run's history replays."""
    problems: list[str] = []
    seqs = [e.seq for e in run.events]
    if seqs != list(range(1, len(seqs) + 1)):
        problems.append(f"{run.label()}: history is not contiguous: seqs {_ranges(seqs)}")
    if run.row["next_seq"] != len(seqs) + 1:
        problems.append(
            f"{run.label()}: next_seq is {run.row['next_seq']} but the history has {len(seqs)} events"
        )
    if not run.events or run.events[0].type is not E.WORKFLOW_STARTED:
        problems.append(f"{run.label()}: history does not begin with WORKFLOW_STARTED")
    problems += _check_terminal(run)
    problems += _check_completions(run)
    problems += _check_replay(run, workflows)
    return problems


def _check_replay(run: Run, workflows: Sequence[Any]) -> list[str]:
    """A closed run's steps are all complete, and replaying them with the workflow code
    issues exactly the commands they recorded, none twice answered."""
    if not run.closed or not run.events:
        return []
    if not run.events[-1].ends_step:
        return [f"{run.label()}: the closing event at seq {run.events[-1].seq} ends no step"]
    definitions = {d.name: d for d in workflows}
    history = [DurableEvent(e.seq, e.type, e.ts, e.attrs, e.ends_step) for e in run.events]
    try:
        instance = WorkflowInstance.replayed(
            definitions[run.row["workflow_name"]], run.workflow_id, run.run_id, history
        )
    except NondeterminismError as exc:
        return [f"{run.label()}: its history does not replay: {exc}"]
    instance.discard()  # (its code, suspended or never begun, closed now: not at collection)
    return []


def _check_terminal(run: Run) -> list[str]:
    terminal = [e for e in run.events if e.type.is_terminal]
    if not run.closed:
        return (
            [f"{run.label()}: open run has terminal events {_seqs(terminal)}"] if terminal else []
        )
    if len(terminal) != 1 or terminal[0] is not run.events[-1]:
        return [
            f"{run.label()}: closed run must end with exactly one terminal event, has "
            f"{[(e.seq, e.type.name) for e in terminal]} of {len(run.events)} events"
        ]
    if TERMINAL_STATUS[terminal[0].type] != run.status:
        return [f"{run.label()}: status {run.status} but history ends with {terminal[0].type.name}"]
    return []


def _check_completions(run: Run) -> list[str]:
    problems: list[str] = []
    commands = {e.seq: e for e in run.events if e.type.is_command}
    answered: dict[tuple[str, int], Event] = {}
    for event in run.events:
        if event.type not in COMPLETIONS:
            continue
        command_type, key = COMPLETIONS[event.type]
        ref = event.attrs.get(key)
        command = commands.get(ref)  # type: ignore[arg-type]
        family = command_type.name
        if command is None or command.type is not command_type or command.seq >= event.seq:
            problems.append(
                f"{run.label()}: {event.type.name} at seq {event.seq} answers "
                f"{key}={ref}, which is no earlier {family}"
            )
            continue
        earlier = answered.get((family, ref))  # type: ignore[arg-type]
        if earlier is not None:
            problems.append(
                f"{run.label()}: {family} at seq {ref} completed twice: "
                f"{earlier.type.name} at seq {earlier.seq} and {event.type.name} "
                f"at seq {event.seq}"
            )
        answered[(family, ref)] = event  # type: ignore[index]
        if event.type is E.TIMER_FIRED:
            fire_at = float(command.attrs["fire_at"])
            if event.ts.timestamp() + CLOCK_TOLERANCE < fire_at:
                problems.append(
                    f"{run.label()}: timer {ref} fired at {event.ts.isoformat()}, "
                    f"{fire_at - event.ts.timestamp():.6f} s before its fire_at"
                )
    return problems


# ---------------------------------------------------------------------------- controls
def check_worker_logs(worker_log: collections.Counter[str]) -> list[str]:
    """The workload's code never changes, so a worker that reports nondeterminism or a
    corrupt history is wrong (a stale instance after a stall, or a replay defect): an
    operator who reads it would stop a deploy."""
    false_alarms = ("corrupt history", "changed incompatibly")
    return [
        f"{count} worker log line(s) report what did not happen: {line}"
        for line, count in worker_log.items()
        if any(alarm in line for alarm in false_alarms)
    ]


def check_not_paused(snapshot: Snapshot) -> list[str]:
    """Every pause the harness sent, one by one or by batch, was followed by a resume that
    was applied: no run is left paused."""
    return [
        f"{run.label()}: still paused at the end (since {run.row['paused_at']})"
        for run in snapshot.runs
        if run.row["paused_at"] is not None and not run.closed
    ]


# ---------------------------------------------------------------------------- leases
def check_leases(snapshot: Snapshot, stopped_pids: Iterable[int]) -> list[str]:
    """After a graceful stop: nothing held, nothing pending on closed runs, nothing open."""
    problems = [f"history event {o} belongs to no workflow run" for o in snapshot.orphan_events]
    closed = {(r.workflow_id, r.run_id) for r in snapshot.runs if r.closed}
    for task in snapshot.activity_tasks:
        where = (
            f"activity task {task['workflow_id']} run {str(task['run_id'])[:8]} seq {task['seq']}"
        )
        if task["owner"] is not None:
            problems.append(f"{where} ({task['activity_name']}) is still owned by {task['owner']}")
        if (task["workflow_id"], str(task["run_id"])) in closed:
            problems.append(f"{where} ({task['activity_name']}) belongs to a closed run")
    pending = collections.Counter(
        (m["workflow_id"], str(m["run_id"]))
        for m in snapshot.inbox
        if (m["workflow_id"], str(m["run_id"])) in closed
    )
    for (workflow_id, run_id), count in sorted(pending.items()):
        problems.append(f"{workflow_id} run {run_id[:8]}: closed but has {count} inbox rows")
    for run in snapshot.runs:
        if run.closed and run.row["ready_at"] is not None:
            problems.append(f"{run.label()}: closed but ready_at = {run.row['ready_at']}")
        if not run.closed:
            problems.append(
                f"{run.label()}: never finished (hang): {_describe_open(run, snapshot)}"
            )
    suffixes = {f":{pid}" for pid in stopped_pids}
    for worker in snapshot.workers:
        if any(worker["identity"].endswith(s) for s in suffixes):
            problems.append(
                f"worker {worker['identity']} stopped gracefully but is still "
                f"registered (live={worker['live']})"
            )
    return problems


def _describe_open(run: Run, snapshot: Snapshot) -> str:
    key = (run.workflow_id, run.run_id)
    inbox = [
        E(m["kind"]).name for m in snapshot.inbox if (m["workflow_id"], str(m["run_id"])) == key
    ]
    tasks = [
        (t["seq"], t["activity_name"], t["attempt"], t["owner"])
        for t in snapshot.activity_tasks
        if (t["workflow_id"], str(t["run_id"])) == key
    ]
    last = run.events[-1] if run.events else None
    return (
        f"ready_at={run.row.get('ready_at')} owner={run.row.get('owner')} "
        f"fence={run.row.get('fence')} last_error={run.row.get('last_error')!r} "
        f"last event={last.seq if last else None}:{last.type.name if last else None} "
        f"inbox={inbox} activity_tasks={tasks}"
    )


# ---------------------------------------------------------------------------- hangs
STUCK_AFTER = 10.0  # seconds: every activity of the app runs well under this


async def diagnose_hang(
    conn: asyncpg.Connection,
    workers: dict[int, int],
    retried: dict[int, int],
    failed_tasks: dict[str, list[int]],
    *,
    stuck_after: float = STUCK_AFTER,
    idle: bool = True,
) -> list[str]:
    """Why open runs make no progress, read while the workers are still running.

    ``workers`` maps worker pids to their numbers in the harness, ``retried`` to how many
    "recording the outcome of activity ... failed" warnings they logged; ``failed_tasks`` maps
    workflow ids to the workers that logged "workflow task of ... failed" for them. Work
    waiting less than ``stuck_after`` seconds is not reported; runs that wait for nothing
    durable only with ``idle`` (once the harness sent every signal and cancel).
    """
    problems = []
    for t in await conn.fetch(_STUCK_TASKS, stuck_after):
        where = (
            f"activity task {t['workflow_id']} run {str(t['run_id'])[:8]} seq {t['seq']} "
            f"({t['activity_name']}, attempt {t['attempt']})"
        )
        if t["owner"] is None:
            problems.append(f"{where}: visible for {t['waiting']:.0f} s, no worker claims it")
            continue
        holder = _worker_name(t["identity"], workers)
        if not t["owner_live"]:
            problems.append(f"{where}: held by {holder}, whose lease lapsed, and nobody reaps it")
        elif t["deadline"] is None:
            problems.append(
                f"{where}: held for {t['held']:.0f} s by {holder}, which is alive and renews "
                f"its lease but has not recorded an outcome ({holder} logged "
                f"{retried.get(_pid(t['identity']), 0)} x 'recording the outcome of activity "
                "... failed'; an attempt whose claim reply was lost is never started). The "
                "task has no deadline, so no reaper retries it"
            )
        else:
            problems.append(
                f"{where}: held for {t['held']:.0f} s by {holder}, deadline {t['deadline']}"
            )
    for r in await conn.fetch(_STUCK_RUNS, stuck_after):
        problems.append(
            f"{r['workflow_id']} run {str(r['run_id'])[:8]}: due for {r['waiting']:.0f} s but "
            f"not processed (owner {_worker_name(r['identity'], workers)}, "
            f"live={r['owner_live']}, fence {r['fence']}, last_error {r['last_error']!r})"
        )
    for r in await conn.fetch(_IDLE_RUNS) if idle else []:
        failed = failed_tasks.get(r["workflow_id"], [])
        problems.append(
            f"{r['workflow_id']} run {str(r['run_id'])[:8]}: nothing will ever run it again: not "
            "due (ready_at NULL), no timer, no inbox message, no activity task, no open child, "
            "and the harness sent everything it waits for. Its last event is "
            f"{E(r['last_kind']).name}; the only step of the app that leaves no durable trace "
            "is a local activity (ctx.local_activity(mix) follows the last ACTIVITY_COMPLETED "
            "of a round's fan-out), which runs in the owner's memory after the commit that set "
            f"ready_at to NULL. Owner: {_worker_name(r['identity'], workers)}, "
            f"live={r['owner_live']}; workers that logged 'workflow task of "
            f"{r['workflow_id']} failed': {failed or 'none'} (a failed commit after the local "
            "activity, then a failed give-back, leaves the run like this; so does a worker "
            "killed or stopped while the local activity runs)"
        )
    return problems


_STUCK_TASKS = """
SELECT t.workflow_id, t.run_id, t.seq, t.activity_name, t.attempt, t.owner, t.deadline,
    k.identity, coalesce(k.expires_at > now(), false) AS owner_live,
    extract(epoch FROM now() - t.started_at)::float8 AS held,
    extract(epoch FROM now() - t.visible_at)::float8 AS waiting
FROM durable.activity_tasks t
JOIN durable.workflows w ON w.workflow_id = t.workflow_id AND w.run_id = t.run_id
LEFT JOIN durable.workers k ON k.worker_id = t.owner
WHERE w.closed_at IS NULL AND (
    (t.owner IS NOT NULL AND t.started_at < now() - make_interval(secs => $1))
    OR (t.owner IS NULL AND t.visible_at < now() - make_interval(secs => $1)))
ORDER BY t.workflow_id, t.seq
"""

_STUCK_RUNS = """
SELECT w.workflow_id, w.run_id, w.fence, w.last_error, k.identity,
    coalesce(k.expires_at > now(), false) AS owner_live,
    extract(epoch FROM now() - w.ready_at)::float8 AS waiting
FROM durable.workflows w LEFT JOIN durable.workers k ON k.worker_id = w.owner
WHERE w.closed_at IS NULL AND w.ready_at < now() - make_interval(secs => $1)
ORDER BY w.workflow_id
"""


_IDLE_RUNS = """
SELECT w.workflow_id, w.run_id, k.identity, coalesce(k.expires_at > now(), false) AS owner_live,
    (SELECT h.kind FROM durable.history h WHERE h.workflow_id = w.workflow_id
     AND h.run_id = w.run_id ORDER BY h.seq DESC LIMIT 1) AS last_kind
FROM durable.workflows w LEFT JOIN durable.workers k ON k.worker_id = w.owner
WHERE w.closed_at IS NULL AND w.ready_at IS NULL
    AND NOT EXISTS (SELECT 1 FROM durable.inbox i
                    WHERE i.workflow_id = w.workflow_id AND i.run_id = w.run_id)
    AND NOT EXISTS (SELECT 1 FROM durable.activity_tasks t
                    WHERE t.workflow_id = w.workflow_id AND t.run_id = w.run_id)
    AND NOT EXISTS (SELECT 1 FROM durable.workflows c WHERE c.parent_workflow_id = w.workflow_id
                    AND c.parent_run_id = w.run_id AND c.closed_at IS NULL)
ORDER BY w.workflow_id
"""


def _pid(identity: str | None) -> int | None:
    return int(identity.rsplit(":", 1)[1]) if identity else None


def _worker_name(identity: str | None, workers: dict[int, int]) -> str:
    pid = _pid(identity)
    if pid is None:
        return "an unregistered worker"
    return f"worker {workers[pid]} (pid {pid})" if pid in workers else f"worker {identity}"


# ---------------------------------------------------------------------------- workflows
@dataclass
class Sent:
    """What the harness confirmed it sent to one workflow."""

    signals: list[int] = field(default_factory=list)
    cancelled: bool = False


def check_workflow(spec: app.Spec, sent: Sent, snapshot: Snapshot) -> list[str]:
    """The expected terminal status and result, signals exactly once in order, cleanup.

    A workflow still open at the end is reported by check_leases (and diagnose_hang); here
    it is only checked for what it received so far.
    """
    runs = snapshot.runs_of(spec.workflow_id)
    if not runs:
        return [f"{spec.workflow_id}: no run at all (never started)"]
    last = runs[-1]
    pending_cancels = [
        m
        for m in snapshot.inbox
        if m["workflow_id"] == spec.workflow_id and m["kind"] == int(E.CANCEL_REQUESTED)
    ]
    problems = _check_signals(spec, sent, runs)
    problems += _check_cancel_requests(spec, sent, runs, len(pending_cancels))
    for earlier in runs[:-1]:
        if earlier.status != "continued_as_new":
            problems.append(f"{earlier.label()}: a run before the last must be continued_as_new")
    if not last.closed:
        return problems
    if last.status == "completed":
        if spec.mode == "hold":
            problems.append(f"{last.label()}: a hold workflow can only end cancelled")
        problems += _check_completed(spec, runs)
    elif last.status == "cancelled":
        if spec.mode == "normal":
            problems.append(f"{last.label()}: cancelled although the harness never cancelled it")
        problems += _check_cancelled(last)
    else:
        problems.append(
            f"{last.label()}: unexpected final status {last.status} (failure={_failure(last)})"
        )
    problems += _check_children(spec, runs, snapshot)
    return problems


def _check_completed(spec: app.Spec, runs: list[Run]) -> list[str]:
    last = runs[-1]
    problems: list[str] = []
    if len(runs) != spec.rounds:
        problems.append(f"{last.label()}: completed after {len(runs)} runs, expected {spec.rounds}")
    outcome: app.Outcome = decode(last.row["result"], app.Outcome)
    expected = app.expected_value(spec)
    if outcome.value != expected:
        problems.append(f"{last.label()}: result value {outcome.value}, expected {expected}")
    if outcome.runs != spec.rounds:
        problems.append(f"{last.label()}: result says {outcome.runs} runs, expected {spec.rounds}")
    if outcome.signals != list(range(spec.signals)):
        problems.append(
            f"{last.label()}: the workflow received signals {outcome.signals}, "
            f"expected {list(range(spec.signals))}"
        )
    for timer in outcome.timers:
        waited = (timer.after - timer.before).total_seconds()
        if waited + CLOCK_TOLERANCE < timer.seconds:
            problems.append(
                f"{last.label()}: a sleep of {timer.seconds} s resumed after "
                f"{waited:.6f} s of workflow time"
            )
    for run in runs:
        if "compensate" in run.scheduled_names().values():
            problems.append(f"{run.label()}: ran compensate although it was never cancelled")
    return problems


def _check_cancelled(last: Run) -> list[str]:
    """The workflow's cleanup ran exactly once, to completion, before it ended cancelled."""
    names = last.scheduled_names()
    compensations = [seq for seq, name in names.items() if name == "compensate"]
    done = {e.attrs["scheduled"] for e in last.of_type(E.ACTIVITY_COMPLETED)}
    if len(compensations) != 1 or compensations[0] not in done:
        return [
            f"{last.label()}: cancelled with compensate scheduled at {compensations} and "
            f"completed at {sorted(done & set(compensations))}: expected exactly one, "
            "completed"
        ]
    return []


def _check_signals(spec: app.Spec, sent: Sent, runs: list[Run]) -> list[str]:
    received = [
        decode(e.attrs["args"])[0][0]
        for run in runs
        for e in run.of_type(E.SIGNAL_RECEIVED)
        if e.attrs.get("name") == app.SIGNAL_NAME
    ]
    problems = []
    if sent.signals != list(range(spec.signals)):
        problems.append(
            f"{spec.workflow_id}: the harness confirmed signals {sent.signals}, "
            f"planned {list(range(spec.signals))}"
        )
    expected = sent.signals if runs[-1].closed else sent.signals[: len(received)]
    if received != expected:
        problems.append(
            f"{spec.workflow_id}: signals sent {sent.signals} but history received "
            f"{received} (each must arrive exactly once, in order)"
        )
    return problems


def _check_cancel_requests(spec: app.Spec, sent: Sent, runs: list[Run], pending: int) -> list[str]:
    """At most the one cancel the harness sent; and a cancel accepted while the workflow was
    running reaches it (its history, or its inbox if it is stuck), unless the workflow
    completed meanwhile."""
    requests = [(run.run_id[:8], e.seq) for run in runs for e in run.of_type(E.CANCEL_REQUESTED)]
    if len(requests) + pending > 1 or (requests and not sent.cancelled):
        return [
            f"{spec.workflow_id}: {len(requests)} CANCEL_REQUESTED events {requests} and "
            f"{pending} in the inbox, the harness sent {int(sent.cancelled)}"
        ]
    if sent.cancelled and not requests and not pending and runs[-1].status != "completed":
        statuses = [r.status for r in runs]
        return [
            f"{spec.workflow_id}: the harness's cancel was accepted but no run received it "
            f"(runs: {statuses}); a cancel posted while a run continues as new is dropped "
            "with that run's inbox (see test_races.py)"
        ]
    return []


def _check_children(spec: app.Spec, runs: list[Run], snapshot: Snapshot) -> list[str]:
    problems: list[str] = []
    children = snapshot.children_of(spec.workflow_id)
    completed_parent = runs[-1].status == "completed"
    if completed_parent and len(children) != spec.children * spec.rounds:
        problems.append(
            f"{spec.workflow_id}: {len(children)} child runs, expected "
            f"{spec.children * spec.rounds}"
        )
    for child in children:
        seed, tag = decode(child.events[0].attrs["args"])[0] if child.events else (None, None)
        if child.status == "completed":
            value = decode(child.row["result"])
            expected = app.child_value(seed, tag, tag % 10)
            if value != expected:
                problems.append(f"{child.label()}: result {value}, expected {expected}")
            gos = [e.seq for e in child.of_type(E.SIGNAL_RECEIVED) if e.attrs.get("name") == "go"]
            if len(gos) != 1:
                problems.append(
                    f"{child.label()}: received the parent's 'go' signal at {gos}, "
                    "expected exactly once"
                )
        elif completed_parent or child.status != "cancelled":
            problems.append(
                f"{child.label()}: child of a {runs[-1].status} parent ended "
                f"{child.status} (failure={_failure(child)})"
            )
    return problems


def check_reset_workflow(workflow_id: str, sent: Sent, snapshot: Snapshot) -> list[str]:
    """The one reset the harness sent (retried with its request id after faults) applied
    exactly once: two runs, the first terminated and pointing to the second, which came
    from it; every signal sent reached the new run's history exactly once, in order (those
    the old run had received from the reset point on were delivered again)."""
    runs = snapshot.runs_of(workflow_id)
    reset = [r for r in runs if r.row["reset_from_run"] is not None]
    if len(runs) != 2 or len(reset) != 1:
        statuses = [r.status for r in runs]
        return [
            f"{workflow_id}: {len(runs)} runs ({statuses}), {len(reset)} started by a reset: "
            "the one reset the harness sent must apply exactly once"
        ]
    new = reset[0]
    old = next(r for r in runs if r is not new)
    problems = []
    if str(new.row["reset_from_run"]) != old.run_id:
        problems.append(f"{new.label()}: reset from {new.row['reset_from_run']}, not {old.run_id}")
    if old.status != "terminated" or str(old.row["continued_run_id"]) != new.run_id:
        problems.append(
            f"{old.label()}: a run reset while open must be terminated and point to the new "
            f"run {new.run_id[:8]}, it points to {old.row['continued_run_id']}"
        )
    received = [
        decode(e.attrs["args"])[0][0]
        for e in new.of_type(E.SIGNAL_RECEIVED)
        if e.attrs.get("name") == app.SIGNAL_NAME
    ]
    if received != sent.signals or sent.signals != list(range(app.RESET_SIGNALS)):
        problems.append(
            f"{new.label()}: signals sent {sent.signals}, the new run's history received "
            f"{received} (each exactly once, in order)"
        )
    if new.status != "completed":
        problems.append(f"{new.label()}: ended {new.status} (failure={_failure(new)})")
    elif decode(new.row["result"]) != sent.signals:
        problems.append(f"{new.label()}: returned {decode(new.row['result'])}, sent {sent.signals}")
    return problems


@dataclass
class Purge:
    """The purge the harness ran amid the faults: its cutoff, and how many it deleted."""

    cutoff: datetime | None = None
    purged: int = 0


def check_purge(purge: Purge, decoys: dict[str, float], snapshot: Snapshot) -> list[str]:
    """The purge deleted only runs closed before its cutoff (a decoy whose deadline, when
    it timed out, was after the cutoff could not have closed before it; no other run may go
    missing: the other checks need them all), and left none of those behind."""
    if purge.cutoff is None:
        return ["the harness never ran its purge"]
    cutoff = purge.cutoff.timestamp()
    problems = []
    missing = [wid for wid in decoys if not snapshot.runs_of(wid)]
    for wid in missing:
        if decoys[wid] >= cutoff:
            problems.append(
                f"{wid}: purged, but its execution deadline was {decoys[wid] - cutoff:.3f} s "
                "after the purge's closed_before: it was open or closed after it"
            )
    for wid in decoys:
        for run in snapshot.runs_of(wid):
            closed = run.row["closed_at"]
            if run.status == "timed_out" and closed is not None and closed < purge.cutoff:
                problems.append(f"{run.label()}: closed before the purge's cutoff and left behind")
    if purge.purged > len(missing):
        problems.append(f"the purge says it deleted {purge.purged} runs, {len(missing)} are gone")
    return problems


def _kept(run: Run, seq: int) -> bool:
    """Whether a run started by a reset has event ``seq`` from the run it was reset from
    (whose own checks cover it)."""
    return run.row["reset_from_run"] is not None and seq < run.row["reset_from_seq"]


# ---------------------------------------------------------------------------- activities
@dataclass
class ActivityFigures:
    completions: int = 0  # recorded ACTIVITY_COMPLETED of activities that record executions
    executions: int = 0  # attempts that started (chaos_executions rows)
    planned_failures: int = 0  # flaky()'s planned failed attempts among them
    effects: int = 0


def check_activities(snapshot: Snapshot) -> tuple[list[str], ActivityFigures]:
    """At least once (executions >= completions); exactly one side effect per completion."""
    problems: list[str] = []
    figures = ActivityFigures()
    executions: dict[str, list[int]] = collections.defaultdict(list)
    for row in snapshot.executions:
        executions[row["idempotency_key"]].append(row["attempt"])
    effects = {row["idempotency_key"]: row for row in snapshot.effects}
    scheduled: dict[str, tuple[Run, str]] = {}
    for run in snapshot.runs:
        names = run.scheduled_names()
        for seq, name in names.items():
            scheduled[f"{run.workflow_id}/{run.run_id}/{seq}"] = (run, name)
        for event in run.of_type(E.ACTIVITY_COMPLETED):
            seq = event.attrs["scheduled"]
            if _kept(run, event.seq):
                continue
            name = names.get(seq)
            key = f"{run.workflow_id}/{run.run_id}/{seq}"
            if name in app.RECORDING_ACTIVITIES:
                figures.completions += 1
                problems += _check_executed(run, name, seq, executions.get(key, []))
            if name in app.EFFECTFUL_ACTIVITIES:
                problems += _check_effect(run, name, seq, event, effects.get(key))
    for key, row in effects.items():
        problems += _check_effect_origin(key, row, scheduled)
    figures.executions = len(snapshot.executions)
    figures.planned_failures = sum(
        1
        for r in snapshot.executions
        if r["activity_name"] == "flaky" and r["attempt"] <= app.FLAKY_FAILURES
    )
    figures.effects = len(effects)
    if figures.executions < figures.completions:
        problems.append(
            f"{figures.executions} activity executions for {figures.completions} "
            "recorded completions: fewer executions than completions"
        )
    return problems, figures


def _check_executed(run: Run, name: str, seq: int, attempts: list[int]) -> list[str]:
    if not attempts:
        return [f"{run.label()}: {name} at seq {seq} completed but never executed"]
    if name == "flaky" and max(attempts) <= app.FLAKY_FAILURES:
        return [
            f"{run.label()}: flaky at seq {seq} completed, but its executions were attempts "
            f"{sorted(attempts)}; attempts <= {app.FLAKY_FAILURES} always fail"
        ]
    return []


def _check_effect(
    run: Run, name: str, seq: int, event: Event, effect: asyncpg.Record | None
) -> list[str]:
    if effect is None:
        return [f"{run.label()}: {name} at seq {seq} completed without its side effect row"]
    result = decode(event.attrs["result"])
    if effect["value"] != result:
        return [
            f"{run.label()}: {name} at seq {seq} completed with {result} but its side "
            f"effect holds {effect['value']}"
        ]
    return []


def _check_effect_origin(
    key: str, row: asyncpg.Record, scheduled: dict[str, tuple[Run, str]]
) -> list[str]:
    origin = scheduled.get(key)
    if origin is None or origin[1] != row["activity_name"]:
        return [f"side effect {key} ({row['activity_name']}) matches no scheduled activity"]
    run, name = origin
    seq = int(key.rsplit("/", 1)[1])
    completed = any(e.attrs["scheduled"] == seq for e in run.of_type(E.ACTIVITY_COMPLETED))
    cancelled = run.status in ("cancelled", "terminated") or any(
        e.attrs["scheduled"] == seq for e in run.of_type(E.ACTIVITY_CANCEL_REQUESTED)
    )
    if run.closed and not completed and not cancelled:
        return [
            f"{run.label()}: {name} at seq {seq} left a side effect but its completion was "
            "never recorded (and it was not cancelled)"
        ]
    return []


# ---------------------------------------------------------------------------- helpers
def _failure(run: Run) -> Any:
    data = run.row["failure"]
    return msgpack.unpackb(data, raw=False) if data else None


def _seqs(events: list[Event]) -> list[int]:
    return [e.seq for e in events]


def _ranges(seqs: list[int]) -> str:
    if len(seqs) <= 12:
        return str(seqs)
    return f"{seqs[:6]}...{seqs[-6:]} ({len(seqs)} events)"


# ============================================================================ traces
def check_traces(spans: Sequence[dict[str, Any]], workflow_ids: Iterable[str]) -> list[str]:
    """The spans every worker process wrote (each with its own tracer provider, killed,
    stalled or not): each workflow, with all its runs and children, is one trace; no
    activity attempt has two spans (a replayed step would make them); and every workflow
    that the workload ran has spans at all."""
    problems = []
    traces: dict[str, set[int]] = collections.defaultdict(set)
    attempts: collections.Counter[tuple[str, str, int]] = collections.Counter()
    for span in spans:
        attrs = span["attributes"]
        workflow_id = attrs.get("durable.workflow_id")
        if workflow_id is None:
            continue
        traces[_top_level(workflow_id)].add(span["trace_id"])
        if span["name"].startswith("RunActivity:"):
            attempts[
                (attrs["durable.run_id"], attrs["durable.activity_id"], attrs["durable.attempt"])
            ] += 1
    for workflow_id in workflow_ids:
        found = traces.get(workflow_id, set())
        if len(found) != 1:
            problems.append(
                f"traces: workflow {workflow_id} (with its children) has spans in "
                f"{len(found)} traces, expected 1"
            )
    problems += [
        f"traces: activity {activity} of run {run} has {n} spans for attempt {attempt}"
        for (run, activity, attempt), n in attempts.items()
        if n > 1
    ]
    return problems


@dataclass
class BuildFigures:
    """Which build ran the steps of runs pinned to which (step spans counted)."""

    steps: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)

    def line(self) -> str:
        ran = ", ".join(f"{n} steps of {pin} runs by {by}" for (pin, by), n in self.steps.items())
        return f"pinned builds: {ran or '-'}"


def check_builds(
    spans: Sequence[dict[str, Any]], snapshot: Snapshot
) -> tuple[list[str], BuildFigures]:
    """Every step of a run ran on a worker of the build the run is pinned to, or of one that
    lists it as compatible; every run that ran a step is pinned (every chaos worker has a
    build). Runs purged since (the decoys) are not looked at."""
    pinned = {run.run_id: run.row["build_id"] for run in snapshot.runs}
    wrong: dict[str, set[str]] = collections.defaultdict(set)  # run id -> builds that ran it
    figures = BuildFigures()
    for span in spans:
        attrs = span["attributes"]
        run_id, by = attrs.get("durable.run_id"), str(attrs.get("durable.build_id"))
        if not span["name"].startswith("RunWorkflow:") or run_id not in pinned:
            continue
        pin = pinned[run_id]
        figures.steps[(str(pin), by)] += 1
        if pin != by and pin not in app.BUILDS.get(by, ()):
            wrong[run_id].add(by)
    problems = [
        f"builds: run {run_id} (pinned to {pinned[run_id]}) ran steps on workers of build "
        f"{', '.join(sorted(builds))}, which do not accept it"
        for run_id, builds in wrong.items()
    ]
    return problems, figures


def _top_level(workflow_id: str) -> str:
    """The workload's workflow a workflow id belongs to: a child's default id begins with
    its parent's and a "/" (chaos workflow ids have none)."""
    return workflow_id.split("/", 1)[0]
