"""The wire format's ext type codes and struct layouts, and what encoding and decoding share."""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from typing import Any

EXT_TUPLE = 1
EXT_SET = 2
EXT_FROZENSET = 3
EXT_DATETIME = 4
EXT_DATE = 5
EXT_TIME = 6
EXT_TIMEDELTA = 7
EXT_DECIMAL = 8
EXT_UUID = 9
EXT_BIGINT = 10

_MAX_EXT_DEPTH = 32
_MAX_NESTING = 500  # msgpack's packer gives up a little above this (511)
_TIMEDELTA = struct.Struct("<iii")  # days, seconds, microseconds
_DATE = struct.Struct("<HBB")  # year, month, day
_DATETIME = struct.Struct("<HBBBBBIB")  # year, month, day, hour, minute, second, microsecond, fold
_TIME = struct.Struct("<BBBIB")  # hour, minute, second, microsecond, fold
_OFFSET = struct.Struct("<q")  # UTC offset in microseconds, appended for tz-aware values
_SUPPORTED = (
    "use None, bool, int, float, str, bytes, list, tuple, dict, set, datetime, date, timedelta, "
    "Decimal, UUID, Enum, dataclasses or pydantic models"
)

Encoder = Callable[[Any, int], Any]
Converter = Callable[[Any], Any]


def _pydantic_base() -> type | None:
    # No instance of a pydantic model can exist before pydantic is imported, so never import it.
    module = sys.modules.get("pydantic")
    return getattr(module, "BaseModel", None)


def _is_pydantic_model(cls: object) -> bool:
    base = _pydantic_base()
    return base is not None and isinstance(cls, type) and issubclass(cls, base)


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
