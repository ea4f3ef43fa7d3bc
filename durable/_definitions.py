"""What users declare: @workflow, @activity, their options and RetryPolicy."""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    NewType,
    Protocol,
    TypeVar,
    get_origin,
    overload,
)

from typing_extensions import ParamSpec

from ._errors import WorkflowError
from ._flow import check_priority
from ._validate import check_duration, check_name

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

DEFAULT_TASK_QUEUE = "default"


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed activity is retried: exponential backoff, optionally bounded."""

    initial_interval: timedelta = timedelta(seconds=1)
    backoff_coefficient: float = 2.0
    maximum_interval: timedelta | None = None
    maximum_attempts: int = 0
    non_retryable_error_types: Sequence[str] = ()

    def __post_init__(self) -> None:
        check_duration("RetryPolicy.initial_interval", self.initial_interval, allow_zero=True)
        check_duration("RetryPolicy.maximum_interval", self.maximum_interval, allow_zero=True)
        coefficient = self.backoff_coefficient
        if not isinstance(coefficient, int | float) or not 1 <= coefficient < math.inf:
            raise ValueError(
                "RetryPolicy.backoff_coefficient must be a number >= 1, "
                f"got {self.backoff_coefficient!r}"
            )
        if not isinstance(self.maximum_attempts, int) or self.maximum_attempts < 0:
            raise ValueError(
                "RetryPolicy.maximum_attempts must be an int >= 0 (0 means unlimited), "
                f"got {self.maximum_attempts!r}"
            )
        if isinstance(self.non_retryable_error_types, str):
            raise TypeError(
                "RetryPolicy.non_retryable_error_types must be a sequence of type names, "
                f"got the string {self.non_retryable_error_types!r}; wrap it in a tuple"
            )
        types = tuple(self.non_retryable_error_types)
        if not all(isinstance(t, str) for t in types):
            raise TypeError(
                "RetryPolicy.non_retryable_error_types must hold type names (strings such as "
                f"'ValueError'), got {types!r}"
            )
        object.__setattr__(self, "non_retryable_error_types", types)

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2 = the first retry)."""
        initial = self.initial_interval.total_seconds()
        cap = (
            self.maximum_interval.total_seconds()
            if self.maximum_interval is not None
            else 100 * initial
        )
        return float(min(cap, initial * self.backoff_coefficient ** max(0, attempt - 2)))

    def _allows_attempt(self, attempt: int) -> bool:
        return self.maximum_attempts == 0 or attempt <= self.maximum_attempts

    def _to_dict(self) -> dict[str, Any]:
        """The policy as recorded in history (plain values)."""
        return {
            "initial_interval": self.initial_interval.total_seconds(),
            "backoff_coefficient": self.backoff_coefficient,
            "maximum_interval": (
                self.maximum_interval.total_seconds() if self.maximum_interval else None
            ),
            "maximum_attempts": self.maximum_attempts,
            "non_retryable_error_types": list(self.non_retryable_error_types),
        }

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> RetryPolicy:
        """The policy recorded by ``_to_dict``."""
        maximum = data.get("maximum_interval")
        return cls(
            initial_interval=timedelta(seconds=data["initial_interval"]),
            backoff_coefficient=data["backoff_coefficient"],
            maximum_interval=timedelta(seconds=maximum) if maximum is not None else None,
            maximum_attempts=data["maximum_attempts"],
            non_retryable_error_types=tuple(data["non_retryable_error_types"]),
        )


DEFAULT_RETRY_POLICY = RetryPolicy()  # frozen: one instance serves every default


@dataclass(frozen=True)
class ActivityOptions:
    task_queue: str | None = None
    retry: RetryPolicy | None = None
    start_to_close_timeout: timedelta | None = None
    schedule_to_close_timeout: timedelta | None = None
    heartbeat_timeout: timedelta | None = None
    priority: int | None = None  # None: the workflow's

    def __post_init__(self) -> None:
        check_name("task_queue", self.task_queue, optional=True)
        check_priority(self.priority)
        if self.retry is not None and not isinstance(self.retry, RetryPolicy):
            raise TypeError(f"retry must be a durable.RetryPolicy or None, got {self.retry!r}")
        for arg in ("start_to_close_timeout", "schedule_to_close_timeout", "heartbeat_timeout"):
            check_duration(arg, getattr(self, arg))

    def _replaced(
        self,
        task_queue: str | None,
        retry: RetryPolicy | None,
        start_to_close_timeout: timedelta | None,
        schedule_to_close_timeout: timedelta | None,
        heartbeat_timeout: timedelta | None,
        priority: int | None = None,
    ) -> ActivityOptions:
        """These options with those given (not None) instead."""
        given: dict[str, Any] = {
            "task_queue": task_queue,
            "retry": retry,
            "start_to_close_timeout": start_to_close_timeout,
            "schedule_to_close_timeout": schedule_to_close_timeout,
            "heartbeat_timeout": heartbeat_timeout,
            "priority": priority,
        }
        return dataclasses.replace(self, **{k: v for k, v in given.items() if v is not None})

    def _recorded(self) -> dict[str, Any]:
        """The options as ACTIVITY_SCHEDULED records them (and workers register them): plain
        values, None where not given."""
        return {
            "retry": self.retry._to_dict() if self.retry else None,
            "start_to_close": _seconds(self.start_to_close_timeout),
            "schedule_to_close": _seconds(self.schedule_to_close_timeout),
            "heartbeat": _seconds(self.heartbeat_timeout),
        }


def _seconds(value: timedelta | None) -> float | None:
    return value.total_seconds() if value is not None else None


class ActivityDefinition(Generic[P, R]):
    """An activity function registered under a name, with default options."""

    def __init__(self, fn: Callable[..., Any], name: str, options: ActivityOptions) -> None:
        self.fn = fn
        self.name = name
        self.options = options
        self.is_async = inspect.iscoroutinefunction(fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        from ._loop import in_workflow

        if in_workflow():
            raise WorkflowError(
                f"activity {self.name!r} was called directly inside a workflow; "
                f"use `await ctx.activity({self.fn.__name__}, ...)` so it is recorded and retried"
            )
        return self.fn(*args, **kwargs)

    def with_options(
        self,
        *,
        task_queue: str | None = None,
        retry: RetryPolicy | None = None,
        start_to_close_timeout: timedelta | None = None,
        schedule_to_close_timeout: timedelta | None = None,
        heartbeat_timeout: timedelta | None = None,
        name: str | None = None,
        priority: int | None = None,
    ) -> ActivityDefinition[P, R]:
        """A copy with some options replaced, for one call. ``priority`` (1 highest .. 5
        lowest; default: the calling workflow's) orders its claim among its queue's tasks."""
        check_name("name", name, optional=True)
        options = self.options._replaced(
            task_queue,
            retry,
            start_to_close_timeout,
            schedule_to_close_timeout,
            heartbeat_timeout,
            priority,
        )
        return ActivityDefinition(self.fn, name or self.name, options)

    def __repr__(self) -> str:
        return f"<activity {self.name}>"


class ActivityRef(Generic[R_co]):
    """An activity that another service's workers serve, by its registered name, with the
    type its result is rebuilt as: what ``ctx.activity(ref, *args)`` calls. Options it
    does not give are those the serving workers registered (its ``@activity``'s), found
    when the call is recorded. No worker serves a reference: its service's code does."""

    def __init__(self, name: str, returns: Any, options: ActivityOptions) -> None:
        self.name = check_name("name", name)
        self.returns = _check_returns(returns)
        self.options = options

    def with_options(
        self,
        *,
        task_queue: str | None = None,
        retry: RetryPolicy | None = None,
        start_to_close_timeout: timedelta | None = None,
        schedule_to_close_timeout: timedelta | None = None,
        heartbeat_timeout: timedelta | None = None,
        priority: int | None = None,
    ) -> ActivityRef[R_co]:
        """A copy with some options replaced, for one call (``priority``: see
        ``ActivityDefinition.with_options``)."""
        options = self.options._replaced(
            task_queue,
            retry,
            start_to_close_timeout,
            schedule_to_close_timeout,
            heartbeat_timeout,
            priority,
        )
        return ActivityRef(self.name, self.returns, options)

    def __repr__(self) -> str:
        return f"durable.activity_ref({self.name!r})"


def _check_returns(returns: Any) -> Any:
    """A type to rebuild the result as (a class, a generic alias such as ``list[int]``, a
    union, None, Any), not a value or the name of one."""
    is_hint = (
        returns is None
        or returns is Any
        or isinstance(returns, type | TypeVar | NewType)
        or get_origin(returns) is not None
    )
    if not is_hint:
        raise TypeError(
            f"returns must be the type the activity's result is rebuilt as (such as "
            f"returns=Receipt or returns=list[int]), got {returns!r}"
        )
    return returns


class WorkflowCall:
    """Typing only: the first parameter of ``WorkflowDefinition.__call__``, a type no user
    code has a value of. The client's typed signatures (``client.start(workflow, ...)``)
    match a definition through it, and refuse plain functions and other callables."""


class WorkflowResult(Generic[R_co]):
    """Typing only: what ``WorkflowDefinition.__call__`` is declared to return (the
    workflow's result type, wrapped so that no other callable's return matches it)."""


class WorkflowDefinition(Generic[P, R]):
    """A workflow function registered under a name; its first parameter is the context."""

    if TYPE_CHECKING:

        def __call__(
            self, call: WorkflowCall, /, *args: P.args, **kwargs: P.kwargs
        ) -> WorkflowResult[R]:
            """Never defined at run time (a definition is not callable): the workflow's
            parameters after its context, for type checkers to check the arguments given to
            ``client.start``, ``execute`` and ``signal_with_start`` against."""
            ...

    def __init__(
        self,
        fn: Callable[..., Awaitable[Any]],
        name: str,
        task_queue: str | None,
        id: str | None = None,
        priority: int | None = None,
    ) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(
                f"@workflow needs an `async def` function, got {fn!r}; make it `async def`"
            )
        if not inspect.signature(fn).parameters:
            raise TypeError(
                f"workflow {name!r} must take the WorkflowContext as its first parameter"
            )
        self.fn = fn
        self.name = name
        self.task_queue = task_queue
        self.id = id
        self.priority = check_priority(priority)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def with_options(
        self,
        *,
        name: str | None = None,
        task_queue: str | None = None,
        id: str | None = None,
        priority: int | None = None,
    ) -> WorkflowDefinition[P, R]:
        """A copy with other options (for one start or child): name, task queue, id,
        priority (1 highest .. 5 lowest; a child's default: its parent's)."""
        check_name("name", name, optional=True)
        check_name("task_queue", task_queue, optional=True)
        check_name("id", id, optional=True)
        return WorkflowDefinition(
            self.fn,
            name or self.name,
            task_queue or self.task_queue,
            id or self.id,
            priority or self.priority,
        )

    def __repr__(self) -> str:
        return f"<workflow {self.name}>"


class _ActivityDecorator(Protocol):
    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> ActivityDefinition[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> ActivityDefinition[P, R]: ...


@overload
def activity(fn: Callable[P, Awaitable[R]], /) -> ActivityDefinition[P, R]: ...
@overload
def activity(fn: Callable[P, R], /) -> ActivityDefinition[P, R]: ...
@overload
def activity(
    *,
    name: str | None = None,
    task_queue: str | None = None,
    retry: RetryPolicy | None = None,
    start_to_close_timeout: timedelta | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    heartbeat_timeout: timedelta | None = None,
) -> _ActivityDecorator: ...
def activity(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    task_queue: str | None = None,
    retry: RetryPolicy | None = None,
    start_to_close_timeout: timedelta | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    heartbeat_timeout: timedelta | None = None,
) -> Any:
    """Declare an activity: a function with side effects, run by a worker and retried."""
    check_name("name", name, optional=True)
    options = ActivityOptions(
        task_queue=task_queue,
        retry=retry,
        start_to_close_timeout=start_to_close_timeout,
        schedule_to_close_timeout=schedule_to_close_timeout,
        heartbeat_timeout=heartbeat_timeout,
    )

    def decorate(f: Callable[..., Any]) -> ActivityDefinition[Any, Any]:
        if not callable(f):
            raise TypeError(f"@activity decorates a function, got {f!r}")
        return ActivityDefinition(f, name or f.__qualname__, options)

    return decorate(fn) if fn is not None else decorate


@overload
def activity_ref(
    name: str,
    *,
    returns: type[R],
    task_queue: str | None = None,
    retry: RetryPolicy | None = None,
    start_to_close_timeout: timedelta | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    heartbeat_timeout: timedelta | None = None,
) -> ActivityRef[R]: ...
@overload
def activity_ref(
    name: str,
    *,
    returns: Any = Any,
    task_queue: str | None = None,
    retry: RetryPolicy | None = None,
    start_to_close_timeout: timedelta | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    heartbeat_timeout: timedelta | None = None,
) -> ActivityRef[Any]: ...
def activity_ref(
    name: str,
    *,
    returns: Any = Any,
    task_queue: str | None = None,
    retry: RetryPolicy | None = None,
    start_to_close_timeout: timedelta | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    heartbeat_timeout: timedelta | None = None,
) -> ActivityRef[Any]:
    """Refer to an activity another service serves, by its registered ``name``: workflows
    call it with ``ctx.activity(ref, *args)`` and get its result rebuilt as ``returns``.
    Without ``task_queue`` the call goes to a queue whose workers serve ``name``; the
    options not given here are those those workers registered. Never served by a worker."""
    options = ActivityOptions(
        task_queue=task_queue,
        retry=retry,
        start_to_close_timeout=start_to_close_timeout,
        schedule_to_close_timeout=schedule_to_close_timeout,
        heartbeat_timeout=heartbeat_timeout,
    )
    return ActivityRef(name, returns, options)


class _WorkflowDecorator(Protocol):
    def __call__(
        self, fn: Callable[Concatenate[Any, P], Awaitable[R]], /
    ) -> WorkflowDefinition[P, R]: ...


@overload
def workflow(fn: Callable[Concatenate[Any, P], Awaitable[R]], /) -> WorkflowDefinition[P, R]: ...
@overload
def workflow(*, name: str | None = None, task_queue: str | None = None) -> _WorkflowDecorator: ...
def workflow(
    fn: Callable[..., Awaitable[Any]] | None = None,
    /,
    *,
    name: str | None = None,
    task_queue: str | None = None,
) -> Any:
    """Declare a workflow: a deterministic async function whose every await is recorded."""
    check_name("name", name, optional=True)
    check_name("task_queue", task_queue, optional=True)

    def decorate(f: Callable[..., Awaitable[Any]]) -> WorkflowDefinition[Any, Any]:
        return WorkflowDefinition(f, name or f.__qualname__, task_queue)

    return decorate(fn) if fn is not None else decorate


def _registered_name(
    ref: object,
    kind: type[ActivityDefinition[Any, Any]] | type[WorkflowDefinition[Any, Any]],
    what: str,
) -> str:
    if isinstance(ref, kind):
        return ref.name
    if isinstance(ref, str) and ref:
        return ref
    raise TypeError(
        f"expected an @{what} function or its registered name, got {ref!r}; "
        f"decorate the function with @durable.{what}"
    )


def activity_name(ref: object) -> str:
    return _registered_name(ref, ActivityDefinition, "activity")


def workflow_name(ref: object) -> str:
    return _registered_name(ref, WorkflowDefinition, "workflow")
