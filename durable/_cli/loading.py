"""Loading user code: a module, its workflows and activities, its codecs."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from .._codecs import PayloadCodec
from .._definitions import DEFAULT_TASK_QUEUE, ActivityDefinition, WorkflowDefinition

Definitions = tuple[list[WorkflowDefinition[Any, Any]], list[ActivityDefinition[Any, Any]]]


def load(target: str) -> tuple[str, Any]:
    """Import ``MODULE[:ATTR]``; returns a label and the module or the attribute."""
    module_name, _, attr = target.partition(":")
    if not module_name:
        raise ValueError(f"expected MODULE[:ATTR], got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r}: {exc}") from exc
    if not attr:
        return module_name, module
    try:
        return target, getattr(module, attr)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from None


def load_codecs(target: str | None) -> list[PayloadCodec]:
    """The codecs named by ``--codecs MODULE:ATTR``: a list of them, or a callable making one."""
    if target is None:
        return []
    if ":" not in target:
        raise ValueError(f"--codecs {target!r}: expected MODULE:ATTR naming a list of codecs")
    label, obj = load(target)
    codecs = obj() if callable(obj) else obj
    if not isinstance(codecs, list | tuple) or not all(isinstance(c, PayloadCodec) for c in codecs):
        raise TypeError(
            f"--codecs {label}: expected a list of durable.PayloadCodec, got {codecs!r}"
        )
    return list(codecs)


def definitions(label: str, obj: Any) -> Definitions:
    """The workflows and activities in a module's namespace, a list, or a single definition."""
    if inspect.ismodule(obj):
        items: Iterable[Any] = vars(obj).values()
    elif isinstance(obj, WorkflowDefinition | ActivityDefinition):
        items = [obj]
    elif isinstance(obj, list | tuple | set | frozenset):
        items = obj
    else:
        raise TypeError(
            f"{label} is not a module, a list of workflows/activities or a "
            f"durable.Worker factory: {obj!r}"
        )
    workflows: dict[str, WorkflowDefinition[Any, Any]] = {}
    activities: dict[str, ActivityDefinition[Any, Any]] = {}
    for item in items:  # the first definition of a name wins (with_options copies share it)
        if isinstance(item, WorkflowDefinition):
            workflows.setdefault(item.name, item)
        elif isinstance(item, ActivityDefinition):
            activities.setdefault(item.name, item)
    if not workflows and not activities:
        raise ValueError(f"{label} defines no @durable.workflow or @durable.activity")
    return list(workflows.values()), list(activities.values())


def default_queue(workflows: Sequence[WorkflowDefinition[Any, Any]]) -> str:
    declared = {w.task_queue for w in workflows if w.task_queue}
    return declared.pop() if len(declared) == 1 else DEFAULT_TASK_QUEUE
