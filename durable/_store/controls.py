"""What operators do to runs from outside their code: pause and resume."""

from __future__ import annotations

import asyncpg

from .._errors import WorkflowError
from .base import StoreBase
from .runs import _addressed_run, _first_time
from .sql import _PAUSE_RUN_SQL, _RESUME_RUN_SQL


class Controls(StoreBase):
    """The statements behind WorkflowHandle.pause and resume."""

    async def pause(
        self, workflow_id: str, run_id: str | None, reason: str | None, request_id: str
    ) -> bool:
        """Pause the open run a handle addresses, once per request id; False if it was
        paused already (or the request was applied before)."""

        async def work(conn: asyncpg.Connection) -> bool:
            run = await _addressed_run(conn, workflow_id, run_id, lock=True)
            _require_open_to(run, "pause")
            if not await _first_time(conn, workflow_id, request_id):
                return False
            paused = await conn.execute(_PAUSE_RUN_SQL, workflow_id, run["run_id"], reason)
            return bool(paused == "UPDATE 1")

        done: bool = await self._retrying(work)
        return done

    async def resume(self, workflow_id: str, run_id: str | None, request_id: str) -> bool:
        """Resume the paused run a handle addresses, once per request id; False if it was
        not paused (or the request was applied before)."""

        async def work(conn: asyncpg.Connection) -> bool:
            run = await _addressed_run(conn, workflow_id, run_id, lock=True)
            _require_open_to(run, "resume")
            if not await _first_time(conn, workflow_id, request_id):
                return False
            return await _resume_run(conn, workflow_id, str(run["run_id"]))

        done: bool = await self._retrying(work)
        return done


async def _resume_run(conn: asyncpg.Connection, workflow_id: str, run_id: str) -> bool:
    """Make a paused open run claimable again; False if it was not paused."""
    return await conn.fetchrow(_RESUME_RUN_SQL, workflow_id, run_id) is not None


def _require_open_to(run: asyncpg.Record, action: str) -> None:
    if run["closed_at"] is not None:
        raise WorkflowError(
            f"cannot {action} run {run['run_id']} of workflow {run['workflow_id']!r}: it is "
            f"closed ({run['status']}); only an open run can be paused or resumed"
        )
