"""The arguments of a start, checked before anything is written (else the run is written,
then fails as it starts on its worker).

With the workflow function, they are checked as ``ctx.child`` checks a child's: against its
signature and its parameters' annotations. By registered name the client has no function:
their number is checked against what the workers serving the name registered. Their types
are not: the rules a value must fit live in the parameters' classes (a dataclass's fields,
a pydantic model's validators, an enum's values), which only the workers have; a value that
does not fit fails the run as it starts, naming the parameter and the field."""

from __future__ import annotations

from typing import Any

from .._definitions import WorkflowDefinition
from .._errors import WorkflowNotFoundError
from .._serialization import check_args
from .._store import WorkflowType


def check_start_arguments(
    definition: WorkflowDefinition[Any, Any], args: tuple[Any, ...], payload: bytes
) -> None:
    """TypeError (PayloadError for a value) when ``args`` (``payload``: them encoded) do not
    fit the workflow's parameters."""
    what = f"workflow {definition.name!r}"
    check_args(definition.fn, args, {}, payload, what=what, skip_first=True)


def served_queue(name: str, queue: str | None, registered: WorkflowType | None, count: int) -> str:
    """The queue a start of workflow ``name`` by name goes to: ``queue`` if given, else the
    one where its workers registered it (``registered``); refused (before anything is
    written) when no worker ever registered it, or when ``count`` arguments do not fit what
    the workers of that queue registered."""
    if registered is None:
        raise WorkflowNotFoundError(
            f"no worker has registered a workflow named {name!r}; check the name, or "
            "start a worker that serves it first (or pass the workflow function)"
        )
    if queue is None or queue == registered.task_queue:
        _check_count(name, registered, count)
    return queue or registered.task_queue


def _check_count(name: str, registered: WorkflowType, count: int) -> None:
    if registered.arity is None:  # registered by workers that did not say
        return
    least, most = registered.arity
    if least <= count and (most is None or count <= most):
        return
    raise TypeError(
        f"the arguments do not fit workflow {name!r}: {name!r} takes {_takes(least, most)}, "
        f"got {count} (as its workers on task queue {registered.task_queue!r} registered "
        "it); pass its arguments in the order its function declares them"
    )


def _takes(least: int, most: int | None) -> str:
    if most is None:
        return f"at least {least} argument{'' if least == 1 else 's'}"
    if most == 0:
        return "no arguments"
    if least == most:
        return f"{most} argument{'' if most == 1 else 's'}"
    return f"{least} to {most} arguments"
