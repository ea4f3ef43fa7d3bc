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


Served = tuple[list[WorkflowDefinition[Any, Any]], list[ActivityDefinition[Any, Any]]]


def queues_served(
    workflows: Sequence[WorkflowDefinition[Any, Any]],
    activities: Sequence[ActivityDefinition[Any, Any]],
    task_queue: str | None = None,
) -> dict[str, Served]:
    """What a worker of each task queue serves: every definition on ``task_queue`` if one is
    given; else each on the queue it declares, a workflow declaring none on the one queue the
    definitions declare (several: the default queue), and an activity declaring none on
    every queue (a workflow calls it on its own)."""
    if task_queue is not None:
        return {task_queue: (list(workflows), list(activities))}
    declared = {d.task_queue for d in workflows if d.task_queue}
    declared |= {d.options.task_queue for d in activities if d.options.task_queue}
    home = next(iter(declared)) if len(declared) == 1 else DEFAULT_TASK_QUEUE
    if not declared or any(not d.task_queue for d in workflows):
        declared.add(home)
    served: dict[str, Served] = {queue: ([], []) for queue in sorted(declared)}
    for workflow in workflows:
        served[workflow.task_queue or home][0].append(workflow)
    for activity in activities:
        for queue in [activity.options.task_queue] if activity.options.task_queue else served:
            served[queue][1].append(activity)
    return {queue: items for queue, items in served.items() if items[0] or items[1]}
