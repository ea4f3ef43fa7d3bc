"""Typing only: the signatures that check a workflow's arguments where the client starts it.

``client.start(checkout, order, id=...)`` checks ``order`` against ``checkout``'s parameters.
A ParamSpec cannot do it (neither mypy nor pyright allows keyword options beside
``*args: P.args``), so ``start``, ``execute`` and ``signal_with_start`` have one overload per
number of arguments, 0 to 4: each takes the workflow as a callable of that
many arguments after ``WorkflowCall`` (which ``WorkflowDefinition.__call__`` declares, and
no plain function matches) and the arguments as type variables solved from it. A workflow
called with more arguments than that is started unchecked.

Under mypy, a list or dict literal is inferred before the workflow's parameter is known:
``[1]`` for a ``list[float]`` parameter is refused; annotate it (pyright infers it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, Required, TypedDict, TypeVar

from .._definitions import WorkflowCall, WorkflowResult

R = TypeVar("R")
A1 = TypeVar("A1")
A2 = TypeVar("A2")
A3 = TypeVar("A3")
A4 = TypeVar("A4")

# a workflow definition taking exactly these arguments after its context
Takes0 = Callable[[WorkflowCall], WorkflowResult[R]]
Takes1 = Callable[[WorkflowCall, A1], WorkflowResult[R]]
Takes2 = Callable[[WorkflowCall, A1, A2], WorkflowResult[R]]
Takes3 = Callable[[WorkflowCall, A1, A2, A3], WorkflowResult[R]]
Takes4 = Callable[[WorkflowCall, A1, A2, A3, A4], WorkflowResult[R]]
TakesMore = Callable[..., WorkflowResult[R]]


class StartOptions(TypedDict, total=False):
    """The keyword options of ``Client.start`` and ``Client.execute``."""

    id: str | None
    task_queue: str | None
    id_reuse_policy: str
    id_conflict_policy: str
    start_delay: timedelta | None
    execution_timeout: timedelta | None
    attributes: Mapping[str, Any] | None
    priority: int | None
    debounce: timedelta | None
    debounce_max: timedelta | None


class SignalWithStartOptions(TypedDict, total=False):
    """The keyword options of ``Client.signal_with_start`` (``id`` and ``signal`` required)."""

    id: Required[str]
    signal: Required[str]
    signal_args: tuple[Any, ...]
    task_queue: str | None
    start_delay: timedelta | None
    execution_timeout: timedelta | None
    priority: int | None
    attributes: Mapping[str, Any] | None
    request_id: str | None
