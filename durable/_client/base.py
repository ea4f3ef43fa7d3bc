"""What every part of the Client stands on: the store, telemetry, and how a call is made."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

from .._calls import Outage, call
from .._definitions import DEFAULT_TASK_QUEUE, WorkflowDefinition, workflow_name
from .._flow import DEFAULT_PRIORITY, check_priority
from .._serialization import encode_args, return_hint
from .._store import StartRequest, Store
from .._telemetry import Telemetry
from .._types import ID_CONFLICT_POLICIES, ID_REUSE_POLICIES
from .._validate import check_attributes, check_choice, check_duration, check_name
from .arguments import check_start_arguments, served_queue

T = TypeVar("T")


class ClientBase:
    """The Client's state and the two things each of its parts does: call the store within
    the call deadline, and turn a start's arguments into a checked StartRequest."""

    def __init__(
        self,
        store: Store,
        call_timeout: float | None = 30.0,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.store = store
        self.call_timeout = call_timeout
        self.telemetry = telemetry or Telemetry()
        store.commit_observer = self.telemetry.metrics.commit_batch_size.record

    async def _call(
        self,
        operation: str,
        workflow_id: str | None,
        attempt: Callable[[], Awaitable[T]],
        *,
        writes: bool = False,
        outage: Outage | None = None,
    ) -> T:
        return await call(
            operation,
            workflow_id,
            self.call_timeout,
            attempt,
            writes=writes,
            retry=True,
            outage=outage,
        )

    async def _start_request(
        self,
        workflow: object,
        args: tuple[Any, ...],
        id: str | None,
        task_queue: str | None,
        id_reuse_policy: str,
        id_conflict_policy: str,
        start_delay: timedelta | None,
        execution_timeout: timedelta | None,
        attributes: Mapping[str, Any] | None,
        priority: int | None = None,
        debounce: timedelta | None = None,
        debounce_max: timedelta | None = None,
    ) -> tuple[StartRequest, Any]:
        name = workflow_name(workflow)
        definition = workflow if isinstance(workflow, WorkflowDefinition) else None
        fixed_id = id is not None or (definition is not None and definition.id is not None)
        check_debounce(debounce, debounce_max, fixed_id=fixed_id, start_delay=start_delay)
        workflow_id = check_name(
            "id",
            id
            if id is not None
            else (definition.id if definition and definition.id else str(uuid.uuid4())),
        )
        if task_queue is not None:
            check_name("task_queue", task_queue)
        request = StartRequest(
            workflow_id=workflow_id,
            workflow_name=name,
            task_queue="",
            args=encode_args(args, {}),
            id_reuse_policy=check_choice("id_reuse_policy", id_reuse_policy, ID_REUSE_POLICIES),
            id_conflict_policy=check_choice(
                "id_conflict_policy", id_conflict_policy, ID_CONFLICT_POLICIES
            ),
            start_delay=check_duration("start_delay", start_delay, allow_zero=True),
            execution_timeout=check_duration("execution_timeout", execution_timeout),
            attributes=check_attributes(attributes),
            priority=check_priority(priority)
            or (definition.priority if definition else None)
            or DEFAULT_PRIORITY,
            debounce=debounce,
            debounce_max=debounce_max,
        )
        queue = task_queue or (definition.task_queue if definition else None)
        if definition is not None:
            check_start_arguments(definition, args, request.args)
        else:
            registered = await self._call(
                "start", workflow_id, lambda: self.store.registered_workflow(name, queue)
            )
            queue = served_queue(name, queue, registered, len(args))
        request = dataclasses.replace(request, task_queue=queue or DEFAULT_TASK_QUEUE)
        return request, return_hint(definition.fn) if definition else Any


def check_debounce(
    debounce: timedelta | None,
    debounce_max: timedelta | None,
    *,
    fixed_id: bool,
    start_delay: timedelta | None,
) -> None:
    """Refuse debounce options that cannot work, naming the argument and the fix."""
    if debounce is None:
        if debounce_max is not None:
            raise ValueError(
                f"debounce_max={debounce_max!r} needs debounce: it caps how far later "
                "debounced starts push the run's start; pass debounce=timedelta(...) too, "
                "or leave debounce_max out"
            )
        return
    check_duration("debounce", debounce)
    check_duration("debounce_max", debounce_max)
    if debounce_max is not None and debounce_max < debounce:
        raise ValueError(
            f"debounce_max must be at least debounce ({debounce!r}), got {debounce_max!r}: "
            "it is how long after the first debounced start the run begins at the latest; "
            "pass a debounce_max >= debounce, or None for no cap"
        )
    if not fixed_id:
        raise ValueError(
            f"debounce={debounce!r} needs id=: a debounced start is applied to the run of "
            "the same workflow id that has not begun yet; pass id='...' (e.g. "
            "id=f'reindex-{doc_id}')"
        )
    if start_delay is not None:
        raise ValueError(
            f"start_delay={start_delay!r} cannot be combined with debounce: a debounced run "
            "begins debounce after the last start; leave start_delay out"
        )
