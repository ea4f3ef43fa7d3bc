"""The exception hierarchy users catch. Everything derives from DurableError."""

from __future__ import annotations

import builtins
from typing import Any


class DurableError(Exception):
    """Base of every error raised by durable."""


class ApplicationError(DurableError):
    """A typed failure raised by user code (activity or workflow).

    Any other exception raised by an activity or workflow is wrapped into an
    ApplicationError whose ``type`` is the original exception's type name.
    """

    def __init__(
        self,
        message: str,
        *details: Any,
        type: str | None = None,
        non_retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details: tuple[Any, ...] = details
        self.type = type
        self.non_retryable = non_retryable
        self.remote_traceback: str | None = None

    def __str__(self) -> str:
        prefix = f"{self.type}: " if self.type else ""
        return f"{prefix}{self.message}"


class _CausedError(DurableError):
    """An error that wraps the failure that caused it, available as ``.cause``."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        self.__cause__ = cause


class ActivityError(_CausedError):
    """An activity failed for good (retries exhausted, non-retryable, timed out or cancelled)."""

    def __init__(
        self,
        message: str,
        cause: BaseException | None = None,
        *,
        activity_name: str = "",
        attempt: int = 0,
    ) -> None:
        super().__init__(message, cause)
        self.activity_name = activity_name
        self.attempt = attempt


class ChildWorkflowError(_CausedError):
    """A child workflow failed, was cancelled, terminated or timed out."""

    def __init__(
        self, message: str, cause: BaseException | None = None, *, workflow_id: str = ""
    ) -> None:
        super().__init__(message, cause)
        self.workflow_id = workflow_id


class WorkflowFailedError(_CausedError):
    """``handle.result()`` of a workflow that failed; ``.cause`` is what it raised."""


class WorkflowCancelledError(DurableError):
    """The workflow ended because it was cancelled."""


class WorkflowTerminatedError(DurableError):
    """The workflow was terminated (forcibly stopped, no cleanup ran)."""


class WorkflowAlreadyStartedError(DurableError):
    """A workflow with this id is already running."""

    def __init__(self, message: str, *, workflow_id: str = "", run_id: str = "") -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
        self.run_id = run_id


class WorkflowNotFoundError(DurableError):
    """No workflow with this id (or run id) exists."""


class QueryError(DurableError):
    """A query was rejected or its handler raised."""


class UpdateError(_CausedError):
    """An update was rejected by its validator or its handler raised."""


class NondeterminismError(DurableError):
    """Workflow code no longer matches its recorded history."""


class PayloadError(DurableError, TypeError):
    """A value cannot be serialized or deserialized."""


class WorkflowError(DurableError):
    """Workflow code used the API in a way that cannot work (a programming error)."""


class ScheduleError(DurableError, ValueError):
    """A schedule cannot be created or changed as asked (bad cron, zone, interval or
    policy; a duplicate or unknown schedule id). Nothing was written."""


class TimeoutError(DurableError, builtins.TimeoutError):
    """An operation timed out; also an ``asyncio.TimeoutError``."""


class DatabaseUnavailableError(DurableError):
    """The database could not be reached for a client operation (connection refused, reset
    or terminated, server starting up or shutting down), within the call's deadline.

    ``operation`` names the call; ``may_have_taken_effect`` is False when the write surely
    did not happen (it was never sent) and True when it may have: repeat it with the same
    ``request_id`` to apply it exactly once."""

    def __init__(self, message: str, *, operation: str, may_have_taken_effect: bool) -> None:
        super().__init__(message)
        self.operation = operation
        self.may_have_taken_effect = may_have_taken_effect
