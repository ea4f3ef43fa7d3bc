"""The client: start workflows and talk to them (signal, query, update, cancel, ...).

Its parts: ``client`` (Client: connect, start, list, handles), ``handle`` (WorkflowHandle:
what a caller does with one workflow), ``descriptions`` (what it reads back),
``schedules`` (ScheduleHandle and the schedule calls), ``sync`` and
``sync_schedules`` (SyncClient and its handles, blocking), ``operations`` (batch, purge,
export), ``base`` (the call deadline and start checks every part uses), ``requests``
(request ids of writes) and ``signatures`` (typing only: how type checkers
check a workflow's arguments at ``start``). Every call goes through ``_calls`` (deadline,
errors, retries).
"""

from .client import Client, redact_dsn
from .descriptions import (
    HistoryEvent,
    OpenChild,
    PendingActivity,
    PendingTimer,
    WorkflowDescription,
)
from .handle import WorkflowHandle
from .queues import TaskQueueDescription, TaskQueueWorker
from .schedules import ScheduleDescription, ScheduleHandle, ScheduleRun
from .sync import SyncClient, SyncWorkflowHandle
from .sync_schedules import SyncScheduleHandle

__all__ = [
    "Client",
    "HistoryEvent",
    "OpenChild",
    "PendingActivity",
    "PendingTimer",
    "ScheduleDescription",
    "ScheduleHandle",
    "ScheduleRun",
    "SyncClient",
    "SyncScheduleHandle",
    "SyncWorkflowHandle",
    "TaskQueueDescription",
    "TaskQueueWorker",
    "WorkflowDescription",
    "WorkflowHandle",
    "redact_dsn",
]
