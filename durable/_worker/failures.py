"""What a workflow task that failed leaves behind: its run given back to be tried again,
with the error as its last_error, and the error logged once per run; but nothing said at
WARNING or above when this worker no longer held the run, or when only its copy of the run
in memory disagreed with what was recorded (a worker that stalled past its lease finds its
cached run overtaken by another worker's steps): the run is then replayed from history,
which says whether anything is wrong."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from .._errors import NondeterminismError, PayloadError
from .._failures import failure
from .._store import UNAVAILABLE, LostOwnership, MissedMessages, WorkflowTask
from .polling import Serving
from .routing import Unrouted

_log = logging.getLogger("durable.worker")
_RETRY_IN = 2.0  # seconds before a run given back after an error is tried again


class TaskFailures:
    """How one worker deals with its workflow tasks that fail."""

    def __init__(
        self, serving: Serving, forget_run: Callable[[str], None], due_again: set[str]
    ) -> None:
        self.serving = serving
        self._forget_run = forget_run
        self._due_again = due_again
        self._logged: dict[str, set[str]] = {}  # errors logged already, by run (until it commits)

    def committed(self, run_id: str) -> None:
        """A step of the run went through: a new error of it is news."""
        self._logged.pop(run_id, None)

    async def failed(self, task: WorkflowTask, exc: Exception, *, cached: bool) -> None:
        """The task of ``task``'s run raised ``exc``; ``cached``: while it stepped an
        instance kept in memory from earlier tasks (not replayed from history for this one)."""
        if isinstance(exc, LostOwnership):
            self._taken_over(task)
        elif isinstance(exc, MissedMessages):
            # messages arrived while the step that closes the run ran: run it again, from
            # history, with them (nothing of it was written)
            self._forget_run(task.run_id)
            self._due_again.add(task.run_id)
        elif isinstance(exc, UNAVAILABLE):  # the step runs again, from what history holds
            _log.warning("workflow task of %s lost the database: %r", task.workflow_id, exc)
            await self._give_back(task, exc, _RETRY_IN)
        elif cached and isinstance(exc, NondeterminismError | PayloadError):
            await self._replay_instead(task, exc)
        elif isinstance(exc, Unrouted):
            if await self._give_back(task, exc, _RETRY_IN):
                self._log_once(task, logging.WARNING, exc)
        elif isinstance(exc, NondeterminismError):
            if await self._give_back(task, exc, _RETRY_IN):
                self._log_once(task, logging.ERROR, exc)
                self.serving.telemetry.nondeterminism(task.workflow_name)
                await self._fail_waiting_queries(task, exc)
        elif isinstance(exc, PayloadError):  # its result does not fit: a fixed deploy completes it
            if await self._give_back(task, exc, _RETRY_IN):
                self._log_once(task, logging.ERROR, exc)
        elif await self._give_back(task, exc, _RETRY_IN):
            _log.error("workflow task of %s failed", task.workflow_id, exc_info=exc)

    async def _replay_instead(self, task: WorkflowTask, exc: Exception) -> None:
        """The run as this worker kept it disagreed with what it was sent: replay it from
        history at once, which reports the error again if history is at fault."""
        if await self._give_back(task, exc, 0.0):
            _log.info(
                "workflow %s: the run this worker kept in memory disagreed with its history "
                "(%s); replaying it from history",
                task.workflow_id,
                exc,
            )

    async def _give_back(self, task: WorkflowTask, exc: BaseException, retry_in: float) -> bool:
        """Give the run back, with the error as its last_error, to be tried again in
        ``retry_in`` seconds; False (and said so, at INFO) when this worker no longer held
        it: then nothing changes."""
        self._forget_run(task.run_id)
        try:
            held = await self.serving.store.release_workflow(
                task, self.serving.worker_id, f"{type(exc).__name__}: {exc}", retry_in=retry_in
            )
        except Exception:
            return True  # (the database is away: say what happened all the same)
        if not held:
            self._taken_over(task)
        return held

    def _taken_over(self, task: WorkflowTask) -> None:
        _log.info(
            "workflow %s: this worker no longer holds the run (another worker took it over, "
            "or it closed); dropped from memory",
            task.workflow_id,
        )
        self._forget_run(task.run_id)

    def _log_once(self, task: WorkflowTask, level: int, exc: Exception) -> None:
        """Log an error that stops a run once per run (the run tries again every few
        seconds, and its last_error keeps saying why)."""
        logged = self._logged.setdefault(task.run_id, set())
        if str(exc) not in logged:
            logged.add(str(exc))
            ids = {"workflow_id": task.workflow_id, "run_id": task.run_id}
            _log.log(level, "workflow %s: %s", task.workflow_id, exc, extra=ids)

    async def _fail_waiting_queries(self, task: WorkflowTask, exc: NondeterminismError) -> None:
        """The queries waiting for the run to take in earlier messages would wait until they
        time out, as if no worker ran: answer them with the reason it cannot."""
        why = failure(
            "application",
            f"workflow {task.workflow_id!r} cannot take in the messages sent before this "
            f"query, so the query cannot see them: its code fails to replay its history "
            f"(NondeterminismError: {exc}); describe().last_error says so while it is retried",
            type="NondeterminismError",
        )
        with contextlib.suppress(Exception):
            await self.serving.store.fail_waiting_queries(task.workflow_id, task.run_id, why)
