"""Exceptions <-> failure records (plain dicts stored in history and in the workflow row)."""

from __future__ import annotations

import asyncio
import builtins
import traceback
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from ._errors import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    PayloadError,
    TimeoutError,
    WorkflowCancelledError,
    WorkflowTerminatedError,
)
from ._serialization import decode, encode

if TYPE_CHECKING:
    from ._definitions import RetryPolicy

FailureKind = Literal["application", "activity", "child", "cancelled", "terminated", "timeout"]


class Failure(TypedDict, total=False):
    """A failure as history and the workflows table record it (msgpack, so it outlives the
    exception's class): what kind, a message, and for some kinds where it came from."""

    kind: FailureKind
    message: str
    type: str | None  # the exception class's name, or ApplicationError's type
    non_retryable: bool
    details: bytes | None  # ApplicationError's details, encoded
    traceback: str | None
    cause: Failure | None
    activity_name: str  # kind "activity"
    attempt: int  # kind "activity"
    workflow_id: str  # kind "child"


def failure(
    kind: FailureKind, message: str, *, type: str | None = None, non_retryable: bool = False
) -> Failure:
    """A failure record made here rather than from an exception (a timeout the engine
    detects, a run closed from outside, an update cut off)."""
    return {"kind": kind, "message": message, "type": type, "non_retryable": non_retryable}


def _encode_details(details: tuple[Any, ...]) -> bytes:
    try:
        return encode(list(details))
    except PayloadError:
        return encode([repr(d) for d in details])


_MAX_CAUSES = 20  # a chain of causes is recorded this deep (a cycle would never end)


def to_failure(exc: BaseException, _depth: int = 0) -> Failure:
    """Describe an exception (with its chain of causes) as a failure record that survives
    serialization."""
    failure: Failure = {
        "kind": "application",
        "message": str(exc),
        "type": type(exc).__name__,
        "non_retryable": False,
        "details": None,
        "traceback": "".join(traceback.format_exception(exc)) if exc.__traceback__ else None,
        "cause": None,
    }
    if isinstance(exc, ApplicationError):
        failure.update(
            {
                "message": exc.message,
                "type": exc.type,
                "non_retryable": exc.non_retryable,
                "details": _encode_details(exc.details) if exc.details else None,
            }
        )
        if exc.remote_traceback and not failure["traceback"]:
            failure["traceback"] = exc.remote_traceback
    elif isinstance(exc, ActivityError):
        failure.update(
            {"kind": "activity", "activity_name": exc.activity_name, "attempt": exc.attempt}
        )
    elif isinstance(exc, ChildWorkflowError):
        failure.update({"kind": "child", "workflow_id": exc.workflow_id})
    elif isinstance(exc, asyncio.CancelledError | WorkflowCancelledError):
        failure.update({"kind": "cancelled", "message": str(exc) or "cancelled"})
    elif isinstance(exc, WorkflowTerminatedError):
        failure["kind"] = "terminated"
    elif isinstance(exc, builtins.TimeoutError):
        failure.update({"kind": "timeout", "message": str(exc) or "timed out"})
    cause = getattr(exc, "cause", None)
    if not isinstance(cause, BaseException):
        cause = exc.__cause__  # raise ... from cause
    if isinstance(cause, BaseException) and _depth < _MAX_CAUSES:
        failure["cause"] = to_failure(cause, _depth + 1)
    return failure


def from_failure(failure: Failure) -> BaseException:
    """Rebuild the exception a failure record describes (never imports code by name)."""
    kind = failure.get("kind", "application")
    message = failure.get("message", "")
    recorded_cause = failure.get("cause")
    cause = from_failure(recorded_cause) if recorded_cause else None
    exc: BaseException
    if kind == "activity":
        exc = ActivityError(
            message,
            cause,
            activity_name=failure.get("activity_name", ""),
            attempt=failure.get("attempt", 0),
        )
    elif kind == "child":
        exc = ChildWorkflowError(message, cause, workflow_id=failure.get("workflow_id", ""))
    elif kind == "cancelled":
        exc = WorkflowCancelledError(message)
    elif kind == "terminated":
        exc = WorkflowTerminatedError(message)
    elif kind == "timeout":
        exc = TimeoutError(message)
    else:
        encoded = failure.get("details")
        details = decode(encoded) if encoded else []
        app = ApplicationError(
            message,
            *details,
            type=failure.get("type"),
            non_retryable=bool(failure.get("non_retryable")),
        )
        app.remote_traceback = failure.get("traceback")
        exc = app
    if cause is not None and exc.__cause__ is None:
        exc.__cause__ = cause
    return exc


def may_retry(retry: RetryPolicy, attempt: int, failure: Failure) -> bool:
    """Whether ``retry`` allows another attempt after attempt ``attempt`` failed so."""
    if not retry._allows_attempt(attempt + 1) or failure.get("non_retryable"):
        return False
    return failure.get("type") not in tuple(retry.non_retryable_error_types)


def activity_failure(name: str, attempt: int, cause: Failure) -> Failure:
    """The failure a workflow sees when an activity fails for good, wrapping the last cause."""
    return {
        "kind": "activity",
        "message": f"activity {name!r} failed on attempt {attempt}: {cause.get('message', '')}",
        "type": "ActivityError",
        "non_retryable": True,
        "activity_name": name,
        "attempt": attempt,
        "cause": cause,
    }
