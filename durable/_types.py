"""The vocabularies shared by the client, the store and the CLI, each defined once."""

from __future__ import annotations

from typing import Literal, get_args

Status = Literal[
    "pending",
    "running",
    "completed",
    "failed",
    "cancelled",
    "terminated",
    "continued_as_new",
    "timed_out",
    "paused",  # an open run (pending or running) that an operator paused
]
STATUSES: tuple[Status, ...] = get_args(Status)
OPEN_STATUSES: tuple[Status, ...] = ("pending", "running", "paused")
# the statuses of closed runs: all but those of open runs
CLOSED_STATUSES: tuple[Status, ...] = tuple(s for s in STATUSES if s not in OPEN_STATUSES)
# the closed runs a start with id_reuse_policy="allow_failed_only" may follow
FAILED_STATUSES: frozenset[Status] = frozenset({"failed", "cancelled", "terminated", "timed_out"})

IdReusePolicy = Literal["allow_duplicate", "allow_failed_only", "reject_duplicate"]
ID_REUSE_POLICIES: tuple[IdReusePolicy, ...] = get_args(IdReusePolicy)

IdConflictPolicy = Literal["fail", "use_existing", "terminate_existing"]
ID_CONFLICT_POLICIES: tuple[IdConflictPolicy, ...] = get_args(IdConflictPolicy)
