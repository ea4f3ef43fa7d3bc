"""durable: Python-native durable workflows on nothing but Postgres."""

from ._activity import ActivityContext, ActivityInfo, activity_context
from ._client import (
    Client,
    HistoryEvent,
    OpenChild,
    PendingActivity,
    PendingTimer,
    SyncClient,
    SyncWorkflowHandle,
    WorkflowDescription,
    WorkflowHandle,
)
from ._codecs import AesGcmCodec, PayloadCodec, ZlibCodec
from ._context import ChildWorkflowHandle, WorkflowContext, WorkflowInfo
from ._definitions import (
    ActivityDefinition,
    RetryPolicy,
    WorkflowDefinition,
    activity,
    workflow,
)
from ._errors import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    DatabaseUnavailableError,
    DurableError,
    NondeterminismError,
    PayloadError,
    QueryError,
    TimeoutError,
    UpdateError,
    WorkflowAlreadyStartedError,
    WorkflowCancelledError,
    WorkflowError,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowTerminatedError,
)
from ._worker import Worker

__version__ = "0.1.0"

__all__ = [
    "ActivityContext",
    "ActivityDefinition",
    "ActivityError",
    "ActivityInfo",
    "AesGcmCodec",
    "ApplicationError",
    "ChildWorkflowError",
    "ChildWorkflowHandle",
    "Client",
    "DatabaseUnavailableError",
    "DurableError",
    "HistoryEvent",
    "NondeterminismError",
    "OpenChild",
    "PayloadCodec",
    "PayloadError",
    "PendingActivity",
    "PendingTimer",
    "QueryError",
    "RetryPolicy",
    "SyncClient",
    "SyncWorkflowHandle",
    "TimeoutError",
    "UpdateError",
    "Worker",
    "WorkflowAlreadyStartedError",
    "WorkflowCancelledError",
    "WorkflowContext",
    "WorkflowDefinition",
    "WorkflowDescription",
    "WorkflowError",
    "WorkflowFailedError",
    "WorkflowHandle",
    "WorkflowInfo",
    "WorkflowNotFoundError",
    "WorkflowTerminatedError",
    "ZlibCodec",
    "__version__",
    "activity",
    "activity_context",
    "workflow",
]
