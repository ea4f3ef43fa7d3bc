"""Printing: JSON of durable's payload types, tables, times."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
from collections.abc import Sequence
from typing import Any


def to_jsonable(value: Any) -> Any:
    """``json.dumps`` default=: turn the payload types durable supports into JSON values."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    model_dump = getattr(value, "model_dump", None)  # pydantic
    if callable(model_dump):
        return model_dump(mode="json")
    return str(value)  # Decimal, UUID, timedelta, and anything else


def dumps(value: Any, *, indent: int | None = None) -> str:
    return json.dumps(value, default=to_jsonable, indent=indent, ensure_ascii=False)


def print_json(value: Any) -> None:
    print(dumps(value, indent=2))


def seconds_in(value: Any) -> Any:
    """``value`` (dicts and lists nested) with each duration as its seconds, for JSON."""
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {key: seconds_in(item) for key, item in value.items()}
    if isinstance(value, list):
        return [seconds_in(item) for item in value]
    return value


def short(value: Any, limit: int = 40) -> str:
    if isinstance(value, bytes):
        text = repr(value)
        return text if len(text) <= limit else f"{text[:limit]}...({len(value)} bytes)"
    return dumps(value)


def time(value: dt.datetime | None) -> str:
    return value.isoformat(sep=" ", timespec="seconds") if value else "-"


def span(value: dt.timedelta) -> str:
    """A duration as the CLI takes them: 15m, 1h30m, 2d, 1.5s, 0s."""
    whole, micros = divmod(value // dt.timedelta(microseconds=1), 1_000_000)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    if whole or micros or not parts:
        parts.append(f"{whole + micros / 1_000_000:g}s")
    return "".join(parts)


def table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
