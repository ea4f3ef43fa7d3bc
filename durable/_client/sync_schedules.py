"""The schedule and task queue calls of a SyncClient, and SyncScheduleHandle: each blocking
until done."""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from .._flow import RateLimit
from .._schedules import DEFAULT_CATCHUP
from .queues import TaskQueueDescription
from .schedules import ScheduleDescription, ScheduleHandle

if TYPE_CHECKING:
    from .client import Client

T = TypeVar("T")


class SyncScheduleMethods:
    """The schedule calls of a SyncClient (which runs them on its event loop)."""

    if TYPE_CHECKING:  # (what SyncClient provides)
        client: Client

        def _call(self, coro: Coroutine[Any, Any, T]) -> T: ...
        def _iterate(self, items: AsyncIterator[T]) -> Iterator[T]: ...

    def create_schedule(
        self,
        schedule_id: str,
        workflow: object,
        *args: Any,
        cron: str | None = None,
        every: timedelta | None = None,
        offset: timedelta | None = None,
        timezone: str = "UTC",
        task_queue: str | None = None,
        overlap: str = "skip",
        catchup_window: timedelta = DEFAULT_CATCHUP,
        jitter: timedelta = timedelta(0),
        start_at: datetime | None = None,
        end_at: datetime | None = None,
        paused: bool = False,
        note: str | None = None,
        workflow_options: Mapping[str, Any] | None = None,
    ) -> SyncScheduleHandle:
        """``Client.create_schedule``: start ``workflow(*args)`` at each slot of a ``cron``
        or ``every`` timetable; a handle to the schedule. Raises ScheduleError before
        writing anything."""
        handle = self._call(
            self.client.create_schedule(
                schedule_id,
                workflow,
                *args,
                cron=cron,
                every=every,
                offset=offset,
                timezone=timezone,
                task_queue=task_queue,
                overlap=overlap,
                catchup_window=catchup_window,
                jitter=jitter,
                start_at=start_at,
                end_at=end_at,
                paused=paused,
                note=note,
                workflow_options=workflow_options,
            )
        )
        return SyncScheduleHandle(self, handle)

    def get_schedule(self, schedule_id: str) -> SyncScheduleHandle:
        """``Client.get_schedule``: a handle to schedule ``schedule_id`` (no call is made)."""
        return SyncScheduleHandle(self, self.client.get_schedule(schedule_id))

    def list_schedules(self) -> Iterator[ScheduleDescription]:
        """``Client.list_schedules``: every schedule, in id order, read a page at a time as
        the iterator is consumed."""
        return self._iterate(self.client.list_schedules())


class SyncScheduleHandle:
    """A ScheduleHandle whose every method blocks until done."""

    def __init__(self, client: SyncScheduleMethods, handle: ScheduleHandle) -> None:
        self.client = client
        self.handle = handle
        self.schedule_id = handle.schedule_id

    def __repr__(self) -> str:
        return f"SyncScheduleHandle({self.schedule_id!r})"

    def describe(self) -> ScheduleDescription:
        """The schedule's settings, next fire times, recent slots and counters."""
        return self.client._call(self.handle.describe())

    def pause(self, note: str | None = None) -> None:
        """Stop firing (slots that pass while paused are made up on unpause within the
        catch-up window, the rest counted missed)."""
        self.client._call(self.handle.pause(note))

    def unpause(self, note: str | None = None) -> None:
        """Fire again."""
        self.client._call(self.handle.unpause(note))

    def trigger(self, *, overlap: str | None = None, request_id: str | None = None) -> None:
        """Fire now (a slot at the database's time), as the overlap policy (or ``overlap``,
        this once) allows."""
        self.client._call(self.handle.trigger(overlap=overlap, request_id=request_id))

    def backfill(self, start: datetime, end: datetime, *, overlap: str | None = None) -> None:
        """Fire every slot of the timetable in [start, end), as the overlap policy (or
        ``overlap``, this once) allows."""
        self.client._call(self.handle.backfill(start, end, overlap=overlap))

    def update(self, **changes: Any) -> None:
        """Change any of the settings ``create_schedule`` takes (see
        ``ScheduleHandle.update``)."""
        self.client._call(self.handle.update(**changes))

    def delete(self) -> None:
        """Delete the schedule; runs it started are left alone."""
        self.client._call(self.handle.delete())


class SyncQueueMethods:
    """The task queue calls of a SyncClient."""

    if TYPE_CHECKING:  # (what SyncClient provides)
        client: Client

        def _call(self, coro: Coroutine[Any, Any, T]) -> T: ...

    def configure_task_queue(
        self,
        task_queue: str,
        *,
        max_running_activities: int | None = None,
        rate_limit: RateLimit | None = None,
        priority_aging: timedelta | None = None,
    ) -> None:
        """``Client.configure_task_queue``: set the queue's limits (all at once)."""
        self._call(
            self.client.configure_task_queue(
                task_queue,
                max_running_activities=max_running_activities,
                rate_limit=rate_limit,
                priority_aging=priority_aging,
            )
        )

    def describe_task_queue(self, task_queue: str) -> TaskQueueDescription:
        """``Client.describe_task_queue``: its limits, backlog, running attempts, workers."""
        return self._call(self.client.describe_task_queue(task_queue))
