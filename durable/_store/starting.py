"""Starting a run under the id reuse and conflict policies."""

from __future__ import annotations

import uuid

import asyncpg

from .._errors import WorkflowAlreadyStartedError
from .._types import FAILED_STATUSES
from .closing import _terminate_run
from .records import StartRequest
from .runs import _insert_run
from .sql.starting import _START_LATEST_RUN_SQL


async def _start_in(
    conn: asyncpg.Connection, request: StartRequest, run_id: str | None = None
) -> tuple[str, bool]:
    existing = await conn.fetchrow(_START_LATEST_RUN_SQL, request.workflow_id)
    if existing is not None and existing["closed_at"] is None:
        if request.id_conflict_policy == "use_existing":
            return str(existing["run_id"]), False
        if request.id_conflict_policy == "terminate_existing":
            await _terminate_run(
                conn,
                request.workflow_id,
                str(existing["run_id"]),
                "terminated by a new start (id_conflict_policy)",
            )
        else:
            raise WorkflowAlreadyStartedError(
                f"workflow {request.workflow_id!r} is already running (run {existing['run_id']}); "
                "pass id_conflict_policy='use_existing' to get its handle instead",
                workflow_id=request.workflow_id,
                run_id=str(existing["run_id"]),
            )
    elif existing is not None:
        policy = request.id_reuse_policy
        if policy == "reject_duplicate" or (
            policy == "allow_failed_only" and existing["status"] not in FAILED_STATUSES
        ):
            raise WorkflowAlreadyStartedError(
                f"workflow id {request.workflow_id!r} was already used (last run "
                f"{existing['status']}) and id_reuse_policy={policy!r} forbids reusing it",
                workflow_id=request.workflow_id,
                run_id=str(existing["run_id"]),
            )
    run_id = run_id or str(uuid.uuid4())
    if not await _insert_run(conn, request, run_id):
        raise _StartRaceLost
    return run_id, True


class _StartRaceLost(Exception):
    """A concurrent start of the same workflow id opened its run first."""
