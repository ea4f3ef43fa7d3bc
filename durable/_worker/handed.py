"""Outcomes produced in this process for a run it holds, handed to the run's next step."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from .._events import EventType
from .._replayer import LocalActivityCall
from .._store import ActivityTask


class HandedOver(NamedTuple):
    """An activity attempt's result (committed fenced by that attempt) or a local
    activity's outcome, delivered with the run's next step in one commit."""

    etype: EventType
    attrs: dict[str, Any]
    activity: ActivityTask | None = None
    local: LocalActivityCall | None = None

    @property
    def wanted(self) -> bool:
        """A local activity's outcome is not recorded once the workflow cancelled its await."""
        return self.local is None or not self.local.future.done()


class HandOver(Protocol):
    def __call__(self, workflow_id: str, run_id: str, item: HandedOver) -> bool:
        """Hand ``item`` to the run if this worker holds it; False when it does not."""
        ...
