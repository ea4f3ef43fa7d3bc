"""What workers serve, seen from the work that needs them: which work of a run waits on a
task queue where no worker ever served it (what describe says)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .base import StoreBase

# Store.unserved_work: what an open run waits for that no worker ever registered to serve:
# the run itself (its workflow on its task queue) and each of its pending activities (on
# the queue it was sent to), by the primary keys of workflow_types and activity_types (a
# worker records there what it serves whenever it registers; see Store.register_worker).
_UNSERVED_WORK_SQL = """
SELECT 'workflow' AS kind, workflow_name AS name, task_queue, NULL::integer AS seq
FROM durable.workflows w WHERE workflow_id = $1 AND run_id = $2 AND closed_at IS NULL
    AND NOT EXISTS (SELECT 1 FROM durable.workflow_types t
        WHERE t.name = w.workflow_name AND t.task_queue = w.task_queue)
UNION ALL
SELECT 'activity', activity_name, task_queue, seq FROM durable.activity_tasks a
WHERE workflow_id = $1 AND run_id = $2 AND NOT EXISTS (SELECT 1 FROM durable.activity_types t
    WHERE t.name = a.activity_name AND t.task_queue = a.task_queue)
ORDER BY seq NULLS FIRST
"""


@dataclass(frozen=True, slots=True)
class UnservedWork:
    """A run (``seq`` None) or an activity of it (its ``seq``) waiting on a task queue where
    no worker ever served its workflow or activity ``name``."""

    kind: Literal["workflow", "activity"]
    name: str
    task_queue: str
    seq: int | None


class Routing(StoreBase):
    """Reads of what workers registered to serve."""

    async def unserved_work(self, workflow_id: str, run_id: str) -> list[UnservedWork]:
        """What of the open run waits on a queue where no worker ever served it: the run
        first, then its activities in schedule order."""
        rows = await self.pool.fetch(_UNSERVED_WORK_SQL, workflow_id, run_id)
        return [UnservedWork(**row) for row in rows]
