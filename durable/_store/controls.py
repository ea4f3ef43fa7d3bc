"""What operators do to runs from outside their code: pause and resume one run, and act on
every run a list filter matches (a batch), chunk by chunk."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg

from .._errors import WorkflowError
from .._events import EventType
from .base import StoreBase
from .closing import _cancel_runs, _close_without_code
from .records import BatchPage, Cursor, ListFilter, _Rows, run_status
from .resets import _reset_runs
from .runs import (
    _addressed_run,
    _first_time,
    _list_page,
    _pause_runs,
    _post_each,
    _resume_runs,
)
from .sql.controls import _LOCK_OPEN_RUNS_SQL, _LOCK_RUNS_SQL

E = EventType

BATCH_ACTIONS = ("cancel", "terminate", "signal", "pause", "resume", "reset")


class Controls(StoreBase):
    """The statements behind WorkflowHandle.pause and resume, and Client.batch."""

    async def pause(
        self, workflow_id: str, run_id: str | None, reason: str | None, request_id: str
    ) -> bool:
        """Pause the open run a handle addresses, once per request id; False if it was
        paused already (or the request was applied before)."""

        async def work(conn: asyncpg.Connection) -> bool:
            run = await _addressed_run(conn, workflow_id, run_id, lock=True)
            _require_open_to(run, "pause")
            if not await _first_time(conn, workflow_id, request_id):
                return False
            return bool(await _pause_runs(conn, [run], reason))

        done: bool = await self._retrying(work)
        return done

    async def resume(self, workflow_id: str, run_id: str | None, request_id: str) -> bool:
        """Resume the paused run a handle addresses, once per request id; False if it was
        not paused (or the request was applied before)."""

        async def work(conn: asyncpg.Connection) -> bool:
            run = await _addressed_run(conn, workflow_id, run_id, lock=True)
            _require_open_to(run, "resume")
            if not await _first_time(conn, workflow_id, request_id):
                return False
            return bool(await _resume_runs(conn, [run]))

        done: bool = await self._retrying(work)
        return done

    async def batch_page(
        self,
        action: str,
        filters: ListFilter,
        after: Cursor | None,
        limit: int,
        *,
        reason: str | None,
        signal: tuple[str, bytes] | None,
        request_id: str,
    ) -> BatchPage:
        """Apply ``action`` (one of BATCH_ACTIONS) to the next ``limit`` open runs matching
        ``filters`` after ``after``, in one transaction: the runs are locked, looked at as
        they are now (one that no longer matches the status filter is left alone), and
        acted on by set-based statements. Messages (cancel requests, signals) are posted
        once per workflow and ``request_id``, so a chunk done again changes nothing more.
        ``signal`` is (name, encoded args)."""
        act = _ACTS[action]
        message = _BatchMessage(reason, signal, request_id)

        async def work(conn: asyncpg.Connection) -> BatchPage:
            page = await _list_page(conn, filters, after, limit)
            if not page:
                return BatchPage([], None)
            locked: _Rows = await conn.fetch(
                _LOCK_RUNS_SQL if action == "reset" else _LOCK_OPEN_RUNS_SQL,
                [row["workflow_id"] for row in page],
                [row["run_id"] for row in page],
            )
            runs = [run for run in locked if filters.status in (None, run_status(run))]
            acted = await act(conn, runs, message) if runs else []
            last = page[-1]
            cursor = (last["started_at"], last["workflow_id"], str(last["run_id"]))
            return BatchPage(
                [(run["workflow_name"], run["task_queue"]) for run in acted],
                cursor if len(page) == limit else None,
            )

        done: BatchPage = await self._retrying(work)
        return done


@dataclass(frozen=True, slots=True)
class _BatchMessage:
    """What a batch's action carries to each run."""

    reason: str | None
    signal: tuple[str, bytes] | None  # (name, encoded args): action "signal" only
    request_id: str


_Act = Callable[[asyncpg.Connection, Sequence[asyncpg.Record], _BatchMessage], Awaitable[_Rows]]


async def _batch_terminate(
    conn: asyncpg.Connection, runs: Sequence[asyncpg.Record], message: _BatchMessage
) -> _Rows:
    pairs = [(run["workflow_id"], str(run["run_id"])) for run in runs]
    reason = {"reason": message.reason}
    return await _close_without_code(conn, pairs, E.WORKFLOW_TERMINATED, reason)


async def _batch_cancel(
    conn: asyncpg.Connection, runs: Sequence[asyncpg.Record], message: _BatchMessage
) -> _Rows:
    return await _cancel_runs(conn, runs, message.reason, message.request_id)


async def _batch_signal(
    conn: asyncpg.Connection, runs: Sequence[asyncpg.Record], message: _BatchMessage
) -> _Rows:
    assert message.signal is not None  # (Client.batch gives one for action "signal")
    name, args = message.signal
    attrs = {"name": name, "args": args}
    return await _post_each(conn, runs, E.SIGNAL_RECEIVED, attrs, message.request_id)


async def _batch_pause(
    conn: asyncpg.Connection, runs: Sequence[asyncpg.Record], message: _BatchMessage
) -> _Rows:
    return await _pause_runs(conn, runs, message.reason)


async def _batch_resume(
    conn: asyncpg.Connection, runs: Sequence[asyncpg.Record], message: _BatchMessage
) -> _Rows:
    return await _resume_runs(conn, runs)


async def _batch_reset(
    conn: asyncpg.Connection, runs: Sequence[asyncpg.Record], message: _BatchMessage
) -> _Rows:
    """Reset each run to its default point; a run that is not its workflow's latest (one
    reset or continued already, or followed by a new start) is left alone."""
    done = await _reset_runs(conn, runs, None, message.reason, message.request_id, latest_only=True)
    reset = {r.workflow_id for r in done if r.new}
    return [run for run in runs if run["workflow_id"] in reset]


_ACTS: dict[str, _Act] = {
    "cancel": _batch_cancel,
    "terminate": _batch_terminate,
    "signal": _batch_signal,
    "pause": _batch_pause,
    "resume": _batch_resume,
    "reset": _batch_reset,
}


def _require_open_to(run: asyncpg.Record, action: str) -> None:
    if run["closed_at"] is not None:
        raise WorkflowError(
            f"cannot {action} run {run['run_id']} of workflow {run['workflow_id']!r}: it is "
            f"closed ({run['status']}); only an open run can be paused or resumed"
        )
