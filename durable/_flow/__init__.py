"""Flow control, pure: priorities, and the limits a task queue can be given (checked here;
held by the store, across every worker)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

PRIORITIES = range(1, 6)  # 1 the highest, 5 the lowest
DEFAULT_PRIORITY = 3


def check_priority(priority: object, arg: str = "priority") -> int | None:
    """A priority (None: inherited or the default), checked."""
    if priority is None:
        return None
    if isinstance(priority, bool) or not isinstance(priority, int) or priority not in PRIORITIES:
        raise ValueError(
            f"{arg} must be an int from 1 (highest) to 5 (lowest), got {priority!r}; "
            f"the default is {DEFAULT_PRIORITY}"
        )
    return priority


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` per ``per`` (a token bucket: ``count`` at once, refilled evenly)."""

    count: int
    per: timedelta = timedelta(seconds=1)

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError(
                f"RateLimit count must be a positive int (starts per period), got {self.count!r}"
            )
        if not isinstance(self.per, timedelta) or self.per <= timedelta(0):
            raise ValueError(f"RateLimit per must be a positive timedelta, got {self.per!r}")

    @property
    def per_second(self) -> float:
        """The refill rate: starts per second."""
        return self.count / self.per.total_seconds()


@dataclass(frozen=True)
class TaskQueueConfig:
    """The limits of a task queue (None: none)."""

    max_running_activities: int | None = None
    rate_limit: RateLimit | None = None
    priority_aging: timedelta | None = None

    @classmethod
    def build(
        cls,
        max_running_activities: object = None,
        rate_limit: object = None,
        priority_aging: object = None,
    ) -> TaskQueueConfig:
        """The limits, checked: ValueError naming the argument for a bad one."""
        if max_running_activities is not None and (
            isinstance(max_running_activities, bool)
            or not isinstance(max_running_activities, int)
            or max_running_activities < 1
        ):
            raise ValueError(
                "max_running_activities must be a positive int (activities of the queue "
                f"running at once across all workers) or None, got {max_running_activities!r}"
            )
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            raise ValueError(
                "rate_limit must be a durable.RateLimit (e.g. RateLimit(100, "
                f"per=timedelta(seconds=1))) or None, got {rate_limit!r}"
            )
        if priority_aging is not None and (
            not isinstance(priority_aging, timedelta) or priority_aging <= timedelta(0)
        ):
            raise ValueError(
                "priority_aging must be a positive timedelta (a waiting task gains a level "
                f"per interval) or None, got {priority_aging!r}"
            )
        return cls(max_running_activities, rate_limit, priority_aging)

    def columns(self) -> tuple[Any, ...]:
        """The stored form: max running, starts per second, burst, aging seconds."""
        rate = self.rate_limit
        aging = self.priority_aging
        return (
            self.max_running_activities,
            None if rate is None else rate.per_second,
            None if rate is None else float(rate.count),
            None if aging is None else aging.total_seconds(),
        )

    @classmethod
    def from_columns(
        cls, running: int | None, rate: float | None, burst: float | None, aging: float | None
    ) -> TaskQueueConfig:
        """The limits from their stored form (see :meth:`columns`)."""
        limit = None
        if rate is not None and burst is not None:
            limit = RateLimit(int(burst), timedelta(seconds=burst / rate))
        return cls(running, limit, None if aging is None else timedelta(seconds=aging))
