"""Decoding: msgpack bytes to plain values, the ext types rebuilt (no hint needed)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgpack

from .._errors import PayloadError
from .wire import (
    _DATE,
    _DATETIME,
    _MAX_EXT_DEPTH,
    _OFFSET,
    _TIME,
    _TIMEDELTA,
    EXT_BIGINT,
    EXT_DATE,
    EXT_DATETIME,
    EXT_DECIMAL,
    EXT_FROZENSET,
    EXT_SET,
    EXT_TIME,
    EXT_TIMEDELTA,
    EXT_TUPLE,
    EXT_UUID,
)


def _ext_hook(depth: int, code: int, data: bytes) -> Any:
    decoder = _EXT_DECODERS.get(code)
    if decoder is None:
        raise ValueError(f"unknown ext type {code}")
    return decoder(data, depth)


_EXT_HOOKS = [functools.partial(_ext_hook, depth) for depth in range(_MAX_EXT_DEPTH + 1)]


def _unpack(data: bytes, depth: int) -> Any:
    # msgpack bounds every length by the buffer size, so memory use is bounded by len(data).
    # Standard msgpack timestamps (ext -1, from other writers) become UTC datetimes.
    return msgpack.unpackb(
        data, ext_hook=_EXT_HOOKS[depth], strict_map_key=False, raw=False, timestamp=3
    )


def _unpack_items(data: bytes, depth: int) -> list[Any]:
    if depth >= _MAX_EXT_DEPTH:
        raise ValueError(f"tuples and sets nested more than {_MAX_EXT_DEPTH} deep")
    items = _unpack(data, depth + 1)
    if type(items) is not list:
        raise ValueError("tuple or set ext data is not an array")
    return items


def _decode_timedelta(data: bytes, depth: int) -> timedelta:
    days, seconds, microseconds = _TIMEDELTA.unpack(data)
    return timedelta(days, seconds, microseconds)


def _decode_tz(data: bytes, size: int) -> timezone | None:
    if len(data) == size:
        return None
    (microseconds,) = _OFFSET.unpack(data[size:])
    return timezone(timedelta(microseconds=microseconds))


def _decode_datetime(data: bytes, depth: int) -> datetime:
    year, month, day, hour, minute, second, microsecond, fold = _DATETIME.unpack_from(data)
    tz = _decode_tz(data, _DATETIME.size)
    return datetime(year, month, day, hour, minute, second, microsecond, tz, fold=fold)


def _decode_time(data: bytes, depth: int) -> time:
    hour, minute, second, microsecond, fold = _TIME.unpack_from(data)
    return time(hour, minute, second, microsecond, _decode_tz(data, _TIME.size), fold=fold)


def _decode_uuid(data: bytes, depth: int) -> uuid.UUID:
    return uuid.UUID(bytes=data)


def _decode_bigint(data: bytes, depth: int) -> int:
    if not data:
        raise ValueError("empty big int ext data")
    return int.from_bytes(data, "big", signed=True)


_EXT_DECODERS: dict[int, Callable[[bytes, int], Any]] = {
    EXT_TUPLE: lambda data, depth: tuple(_unpack_items(data, depth)),
    EXT_SET: lambda data, depth: set(_unpack_items(data, depth)),
    EXT_FROZENSET: lambda data, depth: frozenset(_unpack_items(data, depth)),
    EXT_DATETIME: _decode_datetime,
    EXT_DATE: lambda data, depth: date(*_DATE.unpack(data)),
    EXT_TIME: _decode_time,
    EXT_TIMEDELTA: _decode_timedelta,
    EXT_DECIMAL: lambda data, depth: Decimal(data.decode()),
    EXT_UUID: _decode_uuid,
    EXT_BIGINT: _decode_bigint,
}


def _load(data: bytes) -> Any:
    try:
        return _unpack(data, 0)
    except msgpack.ExtraData as exc:
        raise PayloadError("cannot decode payload: unexpected bytes after the value") from exc
    except Exception as exc:  # msgpack, the ext decoders and hashing raise assorted types
        if not isinstance(data, (bytes, bytearray, memoryview)):
            reason = f"expected bytes, got {type(data).__name__}"
        elif isinstance(exc, TypeError) and "unhashable" in str(exc):
            reason = f"a map key is a list, map or set, which cannot be a dict key ({exc})"
        elif isinstance(exc, ValueError) and "incomplete input" in str(exc):
            reason = "the data is truncated"
        else:
            reason = f"malformed data ({type(exc).__name__}{f': {exc}' if str(exc) else ''})"
        raise PayloadError(f"cannot decode payload: {reason}") from exc
