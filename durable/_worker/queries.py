"""Queries: answered from a run's committed state, by the worker that holds the run or
from its history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .._failures import to_failure
from .._replayer import WorkflowInstance
from .._store import QueryCall
from .polling import Wakeup, poll
from .workflows import WorkflowTasks

_RECHECK = timedelta(milliseconds=20)  # queries waiting for their run's step
_CLAIM_AT_ONCE = 10


class Queries:
    """The queries one worker answers for the workflows it runs."""

    def __init__(self, workflows: WorkflowTasks) -> None:
        self.workflows = workflows
        self.serving = workflows.serving
        self.wake = Wakeup()

    async def serve(self) -> None:
        """Claim queries as they come, until the worker stops."""
        serving, names = self.serving, list(self.workflows.definitions)
        waiting = False  # queries wait for their run's step: look again soon

        async def claim(limit: int) -> int:
            nonlocal waiting
            calls, waiting = await serving.store.claim_queries(
                serving.task_queue, serving.worker_id, names, limit, serving.builds
            )
            for call in calls:
                await self._answer(call)
            return len(calls)

        async def soon_if_waiting() -> datetime | None:
            return datetime.now(UTC) + _RECHECK if waiting else None

        await poll(serving, self.wake, lambda: _CLAIM_AT_ONCE, claim, soon_if_waiting)

    async def _answer(self, call: QueryCall) -> None:
        """Answer from the run's committed state: after the step in flight here, if any."""
        workflows, store = self.workflows, self.serving.store
        instance: WorkflowInstance | None = None
        replayed = False  # for this query only: let go once answered
        try:
            await workflows.busy.wait_idle(call.run_id)
            cached = workflows.cache.get(call.run_id)
            if cached is not None:
                instance = cached.instance
            else:
                instance = await workflows.replayed(
                    call.workflow_name, call.workflow_id, call.run_id, None
                )
                replayed = True
            result = instance.query(call.name, call.args)
        except Exception as exc:
            await store.answer_call(call.id, None, to_failure(exc))
        else:
            await store.answer_call(call.id, result, None)
        finally:
            if replayed and instance is not None:
                instance.discard()
            elif instance is not None and instance.tainted and call.run_id not in workflows.busy:
                workflows.forget_run(call.run_id)  # replayed from history at its next step
