"""When a schedule's slots fall: a five-field cron expression read in an IANA time zone
(evaluated by cronsim, which keeps Debian cron's daylight-saving rules: a time skipped by a
spring-forward fires once when the clock jumps past it, a time repeated by a fall-back fires
once), or a fixed interval counted from the Unix epoch plus an offset. Slots are UTC instants;
each may be delayed by a jitter drawn from the schedule id and the slot, so that a retry of
the same slot waits the same."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .._errors import ScheduleError

_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_MAX_SPAN = timedelta(days=366 * 100)


@dataclass(frozen=True)
class ScheduleSpec:
    """A validated timetable: build it with :meth:`build`, which raises ScheduleError."""

    cron: str | None = None
    every: timedelta | None = None
    offset: timedelta = timedelta(0)
    timezone: str = "UTC"
    jitter: timedelta = timedelta(0)
    start_at: datetime | None = None
    end_at: datetime | None = None

    @classmethod
    def build(
        cls,
        *,
        cron: str | None = None,
        every: timedelta | None = None,
        offset: timedelta | None = None,
        timezone: str | None = None,
        jitter: timedelta | None = None,
        start_at: datetime | None = None,
        end_at: datetime | None = None,
    ) -> ScheduleSpec:
        if (cron is None) == (every is None):
            raise ScheduleError(
                "give exactly one of cron= (e.g. cron='0 3 * * *') and every= (e.g. "
                f"every=timedelta(hours=1)); got cron={cron!r}, every={every!r}"
            )
        zone = _check_zone(timezone)
        if offset is not None and every is None:
            raise ScheduleError(
                f"offset={offset!r} shifts an every= interval; a cron schedule has none: drop it"
            )
        spec = cls(
            cron=None if cron is None else _check_cron(cron, zone),
            every=None if every is None else _check_every(every),
            offset=timedelta(0) if offset is None else _check_offset(offset, every),
            timezone=zone,
            jitter=_check_span("jitter", jitter, allow_zero=True) or timedelta(0),
            start_at=_check_instant("start_at", start_at),
            end_at=_check_instant("end_at", end_at),
        )
        if spec.start_at and spec.end_at and spec.end_at <= spec.start_at:
            raise ScheduleError(
                f"end_at={spec.end_at.isoformat()} is not after start_at="
                f"{spec.start_at.isoformat()}: give an end_at later than start_at, or None"
            )
        return spec

    # ------------------------------------------------------------------ slots
    def slots_after(self, after: datetime) -> Iterator[datetime]:
        """The slots strictly after ``after``, in order, as aware UTC datetimes, from
        ``start_at`` (inclusive) until ``end_at`` (inclusive)."""
        if self.start_at is not None and self.start_at > after:
            after = self.start_at - timedelta(microseconds=1)
        slots = self._cron_slots(after) if self.cron else self._interval_slots(after)
        for slot in slots:
            if self.end_at is not None and slot > self.end_at:
                return
            yield slot

    def _cron_slots(self, after: datetime) -> Iterator[datetime]:
        assert self.cron is not None
        zone = ZoneInfo(self.timezone)
        for local in CronSim(self.cron, after.astimezone(zone)):
            slot = local.astimezone(UTC)
            if slot > after:  # (cronsim may answer a time before a start inside a repeated hour)
                yield slot

    def _interval_slots(self, after: datetime) -> Iterator[datetime]:
        assert self.every is not None
        step = _micros(self.every)
        phase = _micros(self.offset)
        k = (_micros(after - _EPOCH) - phase) // step + 1
        while True:
            yield _EPOCH + timedelta(microseconds=k * step + phase)
            k += 1

    def jitter_for(self, schedule_id: str, slot: datetime) -> timedelta:
        """How long after ``slot`` it fires: the same for the same schedule and slot."""
        if not self.jitter:
            return timedelta(0)
        digest = hashlib.sha256(f"{schedule_id}@{slot_label(slot)}".encode()).digest()
        fraction = int.from_bytes(digest[:8], "big") / 2**64
        return timedelta(milliseconds=int(fraction * self.jitter / timedelta(milliseconds=1)))

    def fire_times(self, schedule_id: str, after: datetime, count: int) -> list[datetime]:
        """The next ``count`` times it fires after ``after``, slot plus jitter, in the
        schedule's zone."""
        zone = ZoneInfo(self.timezone)
        times: list[datetime] = []
        for slot in self.slots_after(after):
            if len(times) == count:
                break
            times.append((slot + self.jitter_for(schedule_id, slot)).astimezone(zone))
        return times

    # ------------------------------------------------------------------ stored form
    def to_json(self) -> dict[str, Any]:
        return {
            "cron": self.cron,
            "every": None if self.every is None else self.every.total_seconds(),
            "offset": self.offset.total_seconds(),
            "timezone": self.timezone,
            "jitter": self.jitter.total_seconds(),
            "start_at": None if self.start_at is None else self.start_at.isoformat(),
            "end_at": None if self.end_at is None else self.end_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScheduleSpec:
        def instant(text: str | None) -> datetime | None:
            return None if text is None else datetime.fromisoformat(text)

        every = data["every"]
        return cls(
            cron=data["cron"],
            every=None if every is None else timedelta(seconds=every),
            offset=timedelta(seconds=data["offset"]),
            timezone=data["timezone"],
            jitter=timedelta(seconds=data["jitter"]),
            start_at=instant(data["start_at"]),
            end_at=instant(data["end_at"]),
        )


@functools.lru_cache(maxsize=4096)  # (a burst of fires labels the same few slots)
def slot_label(slot: datetime) -> str:
    """A slot as workflow ids carry it: ISO 8601 in UTC, to the second (to the millisecond
    when it has a fraction, as a trigger's may)."""
    slot = slot.astimezone(UTC)
    if slot.microsecond:
        return slot.strftime("%Y-%m-%dT%H:%M:%S.") + f"{slot.microsecond // 1000:03d}Z"
    return slot.strftime("%Y-%m-%dT%H:%M:%SZ")


def _micros(span: timedelta) -> int:
    return span // timedelta(microseconds=1)


def _check_zone(timezone: str | None) -> str:
    if timezone is None:
        return "UTC"
    if not isinstance(timezone, str):
        raise ScheduleError(
            f"timezone must be an IANA zone name such as 'Europe/Berlin', got {timezone!r}"
        )
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"timezone={timezone!r} is not an IANA time zone known here: use a name such as "
            "'Europe/Berlin', 'America/New_York' or 'UTC'"
        ) from None
    return timezone


def _check_cron(cron: str, zone: str) -> str:
    if not isinstance(cron, str):
        raise ScheduleError(f"cron must be a string such as '0 3 * * *', got {cron!r}")
    expression = " ".join(cron.split())
    expression = _ALIASES.get(expression.lower(), expression)
    if expression.startswith("@"):
        raise ScheduleError(
            f"cron={cron!r} is not an alias durable knows: use one of {', '.join(_ALIASES)}, or "
            "five fields (minute hour day month weekday)"
        )
    if len(expression.split()) != 5:
        raise ScheduleError(
            f"cron={cron!r} must have five fields (minute hour day month weekday), e.g. "
            f"'0 3 * * *' for 03:00 every day; it has {len(expression.split())}"
        )
    try:
        next(iter(CronSim(expression, datetime.now(ZoneInfo(zone)))))
    except (CronSimError, StopIteration) as exc:
        reason = str(exc) or "it never fires"
        raise ScheduleError(
            f"cron={cron!r} cannot be read ({reason}): five fields, minute (0-59) hour (0-23) "
            "day (1-31) month (1-12) weekday (0-6, 0 is Sunday), e.g. '*/15 * * * *'"
        ) from None
    return expression


def _check_every(every: timedelta) -> timedelta:
    span = _check_span("every", every, allow_zero=False)
    assert span is not None
    if span < _SECOND or span % _SECOND:
        raise ScheduleError(
            f"every={every!r} must be a whole number of seconds, at least one second "
            "(e.g. every=timedelta(minutes=15))"
        )
    return span


def _check_offset(offset: timedelta, every: timedelta | None) -> timedelta:
    span = _check_span("offset", offset, allow_zero=True)
    assert span is not None and every is not None
    if span >= every or span % _SECOND:
        raise ScheduleError(
            f"offset={offset!r} must be whole seconds from 0 up to (not including) "
            f"every={every!r}: it shifts each slot of the interval"
        )
    return span


def _check_span(arg: str, value: object, *, allow_zero: bool) -> timedelta | None:
    if value is None:
        return None
    if not isinstance(value, timedelta):
        raise ScheduleError(f"{arg} must be a datetime.timedelta, got {value!r}")
    if value < timedelta(0) or (not allow_zero and not value) or value > _MAX_SPAN:
        least = "zero or more" if allow_zero else "positive"
        raise ScheduleError(
            f"{arg} must be a {least} timedelta of at most 100 years, got {value!r}"
        )
    return value


def _check_instant(arg: str, value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ScheduleError(
            f"{arg} must be a timezone-aware datetime (e.g. datetime(2027, 1, 1, tzinfo=UTC)), "
            f"got {value!r}"
        )
    return value.astimezone(UTC)
