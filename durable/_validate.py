"""Checks of what callers pass in, each limit defined once: a bad value is refused with a
message naming the argument, the value and what would be accepted."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, TypeVar

C = TypeVar("C", bound=str)

MAX_DURATION = timedelta(days=365 * 100)  # of a timer, a timeout, any duration stored
MAX_SECONDS = MAX_DURATION.total_seconds()


def check_duration(arg: str, value: Any, *, allow_zero: bool = False) -> Any:
    """Validate an optional timedelta option (positive, at most a century); returns it."""
    if value is None:
        return None
    if not isinstance(value, timedelta):
        raise TypeError(f"{arg} must be a datetime.timedelta or None, got {value!r}")
    if value < timedelta(0) or (value == timedelta(0) and not allow_zero) or value > MAX_DURATION:
        raise ValueError(f"{arg} must be a positive timedelta of at most 100 years, got {value!r}")
    return value


def to_seconds(value: float | timedelta, arg: str) -> float:
    """A duration in seconds: finite, and at most a century (timers must be storable)."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(f"{arg} must be seconds (int/float) or a timedelta, got {value!r}")
    if not -MAX_SECONDS <= seconds <= MAX_SECONDS:  # also refuses nan
        raise ValueError(f"{arg} must be a finite duration of at most 100 years, got {value!r}")
    return seconds


def _utf8_length(text: str) -> float:
    """Bytes in UTF-8; infinite for text UTF-8 cannot hold (lone surrogates)."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return math.inf


def check_text(arg: str, value: Any) -> str:
    """Validate text Postgres can store (a string without NUL or lone surrogates)."""
    if not isinstance(value, str) or "\x00" in value or _utf8_length(value) == math.inf:
        raise ValueError(
            f"{arg} must be a string without NUL characters or lone surrogates, got {value!r:.200}"
        )
    return value


MAX_NAME_CHARS = 1000
MAX_NAME_BYTES = 2000  # what Postgres indexes comfortably (a btree entry is at most ~2.7 kB)


def check_name(arg: str, value: Any, *, optional: bool = False) -> Any:
    """Validate a workflow id, name, task queue or signal/query/update name; returns it."""
    if value is None and optional:
        return None
    if (
        not isinstance(value, str)
        or not value
        or "\x00" in value
        or len(value) > MAX_NAME_CHARS
        or _utf8_length(value) > MAX_NAME_BYTES
    ):
        raise ValueError(
            f"{arg} must be a non-empty string without NUL characters, at most "
            f"{MAX_NAME_CHARS} characters and {MAX_NAME_BYTES} bytes in UTF-8; got {value!r:.200}"
        )
    return value


def check_run_id(arg: str, value: Any) -> str | None:
    """Validate an optional run id (a UUID, as ``handle.run_id`` and ``describe().run_id``
    give it); returns it in its canonical spelling, so that it compares equal to theirs."""
    if value is None or isinstance(value, uuid.UUID):
        return None if value is None else str(value)
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise ValueError(
        f"{arg} must be a UUID, as handle.run_id, describe().run_id and `durable list` give "
        f"a run's id (e.g. 0f5c2e8e-9a0b-4c3d-8e7f-6a5b4c3d2e1f); got {value!r:.200}"
    )


def _is_attribute_scalar(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" not in value and _utf8_length(value) < math.inf
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return -(2**63) <= value < 2**64  # what msgpack stores in the recorded event
    return value is None or isinstance(value, bool)


def check_attributes(value: Any) -> Any:
    """Validate searchable attributes (stored as JSON); returns them as a dict or None."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"attributes must be a dict, got {value!r:.200}")
    for key, item in value.items():
        if not isinstance(key, str) or "\x00" in key or _utf8_length(key) == math.inf:
            raise ValueError(f"attribute names must be strings without NUL, got {key!r:.200}")
        if not _is_attribute_scalar(item) and not (
            isinstance(item, list) and all(_is_attribute_scalar(i) for i in item)
        ):
            raise ValueError(
                f"attribute {key!r} must be a string without NUL characters, a finite number, "
                f"a bool, None, or a list of those (it is stored as JSON); got {item!r:.200}"
            )
    return dict(value)


def check_timeout(value: Any, arg: str = "timeout") -> None:
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value < float("inf")
    ):
        raise ValueError(f"{arg} must be a positive number of seconds or None, got {value!r}")


def check_reason(value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or "\x00" in value):
        raise ValueError(f"reason must be a string without NUL characters or None, got {value!r}")
    return value


def check_choice(arg: str, value: Any, choices: tuple[C, ...]) -> C:
    for choice in choices:
        if value == choice and isinstance(value, str):
            return choice
    raise ValueError(f"{arg} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def check_seq(value: Any) -> int | None:
    """A history position (a reset point): a positive int, or None for the default."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(
            f"seq must be the positive seq of a history event (see handle.history()) or None "
            f"for the default point, got {value!r}"
        )
    return value
