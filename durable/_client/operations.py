"""Acting on many runs at once from a client: batch actions, purge and export."""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import functools
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from .._serialization import encode_args
from .._store import BATCH_ACTIONS, Cursor, ListFilter
from .._types import CLOSED_STATUSES, STATUSES
from .._validate import (
    check_attributes,
    check_choice,
    check_duration,
    check_name,
    check_reason,
    check_text,
)
from .base import ClientBase
from .descriptions import HistoryEvent, WorkflowDescription, description, history_event
from .requests import request_id_of


class Operations(ClientBase):
    """The calls of a Client that act on the runs a filter matches."""

    async def batch(
        self,
        action: str,
        *,
        status: str | None = None,
        workflow_name: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        started_after: datetime | None = None,
        reason: str | None = None,
        signal: str | None = None,
        signal_args: Sequence[Any] = (),
        request_id: str | None = None,
    ) -> int:
        """Apply ``action`` ("cancel", "terminate", "signal", "pause" or "resume") to every
        open run matching the filters (as :meth:`list` takes them) that had started when the
        call began, or ("reset") reset to its default point every matching run, closed ones
        too, that is its workflow's latest; returns the number of runs acted on. The
        database does it in chunks of 200 runs, one transaction each, resting after each as
        long as it took. Done again (say, after a crash part-way), it acts on what is left:
        runs terminated, cancelled, paused, resumed or reset already are not counted again,
        and a cancel request, signal (``signal``: its name, with ``signal_args``) or reset
        applies to each workflow once per ``request_id`` (default: a new one per call; give
        one to repeat a batch safely)."""
        check_choice("action", action, BATCH_ACTIONS)
        filters = list_filter(status, workflow_name, attributes, started_after)
        message = _batch_signal(action, signal, signal_args)
        reason = check_reason(reason)
        request = request_id_of(request_id)
        started_by = await self._call("batch", None, self.store.database_time)
        # a reset also starts closed runs again (the failed ones, say)
        open_only = action != "reset"
        filters = dataclasses.replace(filters, started_by=started_by, open_only=open_only)
        acted = 0
        after: Cursor | None = None
        while True:
            chunk = functools.partial(
                self.store.batch_page,
                action,
                filters,
                after,
                _BATCH_CHUNK,
                reason=reason,
                signal=message,
                request_id=request,
            )
            began = time.monotonic()
            page = await self._call("batch", None, chunk, writes=True)
            took = time.monotonic() - began
            acted += len(page.acted)
            if action == "terminate":
                for workflow_name_, task_queue in page.acted:
                    self.telemetry.metrics.count(
                        "durable.workflows.terminated", task_queue, "workflow_name", workflow_name_
                    )
            if page.after is None:
                return acted
            after = page.after
            await asyncio.sleep(took * _BATCH_REST)

    async def purge(self, closed_before: datetime | timedelta, status: str | None = None) -> int:
        """Delete the runs closed before ``closed_before`` (a time, or how long ago by the
        database's clock: ``timedelta(0)`` is every run closed by now), only those with
        ``status`` if given, with their history, inbox, tasks and calls; returns how many.
        Open runs are never touched. The database does it 200 runs per transaction, oldest
        first, resting after each as long as it took; runs another purge is deleting are
        skipped, not waited for. To archive first, see :meth:`export`."""
        if status is not None:
            check_choice("status", status, CLOSED_STATUSES)
        cutoff = await self._cutoff(closed_before)
        purged = 0
        while True:
            chunk = functools.partial(self.store.purge_closed, cutoff, status, _BATCH_CHUNK)
            began = time.monotonic()
            deleted = await self._call("purge", None, chunk, writes=True)
            purged += deleted
            if deleted < _BATCH_CHUNK:
                return purged
            await asyncio.sleep((time.monotonic() - began) * _BATCH_REST)

    async def export(
        self, closed_before: datetime | timedelta, status: str | None = None
    ) -> AsyncIterator[tuple[WorkflowDescription, builtins.list[HistoryEvent]]]:
        """The runs :meth:`purge` would delete with the same arguments, oldest closed first,
        each with its history (as ``handle.history()`` gives it): what ``durable export``
        writes as JSON lines before a purge."""
        if status is not None:
            check_choice("status", status, CLOSED_STATUSES)
        cutoff = await self._cutoff(closed_before)
        after: Cursor | None = None
        while True:
            page = functools.partial(self.store.closed_page, cutoff, status, after, 100)
            runs = await self._call("export", None, page)
            for row, events in runs:
                described = description(self.store, row)
                yield described, [history_event(e) for e in events]
            if len(runs) < 100:
                return
            last = runs[-1][0]
            assert last.closed_at is not None  # (closed runs only)
            after = (last.closed_at, last.workflow_id, last.run_id)

    async def _cutoff(self, closed_before: datetime | timedelta) -> datetime:
        if isinstance(closed_before, timedelta):
            check_duration("closed_before", closed_before, allow_zero=True)
            now = await self._call("database time", None, self.store.database_time)
            return now - closed_before
        if not isinstance(closed_before, datetime) or closed_before.tzinfo is None:
            raise ValueError(
                "closed_before must be a timezone-aware datetime or a timedelta (how long "
                f"ago), got {closed_before!r}"
            )
        return closed_before


_BATCH_CHUNK = 200  # runs per transaction of a batch action
# after each chunk, the batch rests this many times as long as the chunk took: it takes at
# most half of the database's time from the workflows running meanwhile
_BATCH_REST = 1.0


def list_filter(
    status: str | None,
    workflow_name: str | None,
    attributes: Mapping[str, Any] | None,
    started_after: datetime | None,
) -> ListFilter:
    """The filters of a list or a batch, validated."""
    if workflow_name is not None:
        check_text("workflow_name", workflow_name)
    if status is not None:
        check_choice("status", status, STATUSES)
    if started_after is not None and (
        not isinstance(started_after, datetime) or started_after.tzinfo is None
    ):
        raise ValueError(f"started_after must be a timezone-aware datetime, got {started_after!r}")
    return ListFilter(status, workflow_name, check_attributes(attributes), started_after)


def _batch_signal(
    action: str, signal: str | None, signal_args: Sequence[Any]
) -> tuple[str, bytes] | None:
    """The signal a batch sends (name, encoded arguments): for action "signal" only."""
    if action != "signal":
        if signal is not None or signal_args:
            raise ValueError(
                f"signal and signal_args are for action 'signal', not {action!r}; drop them"
            )
        return None
    if signal is None:
        raise ValueError("action 'signal' needs signal=NAME (and signal_args=[...] if any)")
    if isinstance(signal_args, (str, bytes)) or not isinstance(signal_args, Sequence):
        raise ValueError(f"signal_args must be a list or tuple, got {signal_args!r:.200}")
    return check_name("signal", signal), encode_args(signal_args, {})
