"""Encoding: values to msgpack bytes, with an error naming the part that cannot be encoded."""

from __future__ import annotations

import dataclasses
import enum
import functools
import os
import typing
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import msgpack

from .._errors import PayloadError
from .wire import (
    _DATE,
    _DATETIME,
    _MAX_EXT_DEPTH,
    _MAX_NESTING,
    _OFFSET,
    _SUPPORTED,
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
    Encoder,
    _is_pydantic_model,
    _short,
)


class _Unsupported(TypeError):
    pass


def _default(depth: int, obj: object) -> Any:
    """msgpack's ``default`` hook: lower a non-native object to something msgpack can pack."""
    cls = type(obj)
    encoder = _ENCODERS.get(cls)
    if encoder is None:
        encoder = _ENCODERS[cls] = _encoder_for(cls)
    return encoder(obj, depth)


# One hook per tuple/set nesting depth, so the depth needs no thread-local state.
_DEFAULTS = [functools.partial(_default, depth) for depth in range(_MAX_EXT_DEPTH + 1)]
_NATIVE = frozenset({type(None), bool, float, str, bytes, list, dict})


def _lower(value: object, depth: int) -> Any:
    # msgpack calls ``default`` once per object, so what it returns must already be packable.
    return value if type(value) in _NATIVE else _default(depth, value)


def _pack_items(items: list[Any], depth: int) -> bytes:
    if depth >= _MAX_EXT_DEPTH:
        raise _Unsupported(f"tuples and sets nested more than {_MAX_EXT_DEPTH} deep")
    packed: bytes = msgpack.packb(
        items, default=_DEFAULTS[depth + 1], strict_types=True, use_bin_type=True
    )
    return packed


def _encode_int(obj: int, depth: int) -> Any:
    n = int.__index__(obj)
    if -(1 << 63) <= n < (1 << 64):
        return n
    return msgpack.ExtType(EXT_BIGINT, n.to_bytes((n.bit_length() + 8) // 8, "big", signed=True))


def _encode_timedelta(obj: timedelta, depth: int) -> Any:
    return msgpack.ExtType(EXT_TIMEDELTA, _TIMEDELTA.pack(obj.days, obj.seconds, obj.microseconds))


def _ext_items(code: int) -> Encoder:
    return lambda obj, depth: msgpack.ExtType(code, _pack_items(list(obj), depth))


def _offset(delta: timedelta | None) -> bytes:
    return b"" if delta is None else _OFFSET.pack(delta // timedelta(microseconds=1))


def _encode_datetime(obj: datetime, depth: int) -> Any:
    fields = (obj.year, obj.month, obj.day, obj.hour, obj.minute, obj.second, obj.microsecond)
    data = _DATETIME.pack(*fields, obj.fold) + _offset(obj.utcoffset())
    return msgpack.ExtType(EXT_DATETIME, data)


def _encode_time(obj: time, depth: int) -> Any:
    data = _TIME.pack(obj.hour, obj.minute, obj.second, obj.microsecond, obj.fold)
    return msgpack.ExtType(EXT_TIME, data + _offset(obj.utcoffset()))


def _encode_date(obj: date, depth: int) -> Any:
    return msgpack.ExtType(EXT_DATE, _DATE.pack(obj.year, obj.month, obj.day))


# Checked in order with issubclass, for classes msgpack does not pack natively (strict_types).
_BY_BASE: list[tuple[type | tuple[type, ...], Encoder]] = [
    (int, _encode_int),
    (float, lambda obj, depth: float.__float__(obj)),
    (str, lambda obj, depth: str.__str__(obj)),
    (bytes, lambda obj, depth: bytes(obj)),
    ((bytearray, memoryview), lambda obj, depth: bytes(obj)),  # packed natively unless subclassed
    (list, lambda obj, depth: [*obj]),
    (dict, lambda obj, depth: {**obj}),
    (tuple, _ext_items(EXT_TUPLE)),
    (set, _ext_items(EXT_SET)),
    (frozenset, _ext_items(EXT_FROZENSET)),
    (datetime, _encode_datetime),
    (date, _encode_date),
    (time, _encode_time),
    (timedelta, _encode_timedelta),
    (Decimal, lambda obj, depth: msgpack.ExtType(EXT_DECIMAL, str(obj).encode())),
    (uuid.UUID, lambda obj, depth: msgpack.ExtType(EXT_UUID, obj.bytes)),
]


def _encoder_for(cls: type) -> Encoder:
    if issubclass(cls, enum.Enum):
        return lambda obj, depth: _lower(obj.value, depth)
    if dataclasses.is_dataclass(cls):
        names = tuple(field.name for field in dataclasses.fields(cls))
        return lambda obj, depth: {name: getattr(obj, name) for name in names}
    if _is_pydantic_model(cls):
        return lambda obj, depth: _lower(obj.model_dump(mode="python"), depth)
    for base, encoder in _BY_BASE:
        if issubclass(cls, base):
            return encoder
    raise _Unsupported(f"object of type {cls.__qualname__!r} is not supported")


_ENCODERS: dict[type, Encoder] = {}


def _new_packer() -> Any:
    return msgpack.Packer(default=_DEFAULTS[0], strict_types=True, use_bin_type=True)


# A pool rather than one shared Packer: safe across threads and against re-entrant encode()
# calls from user code (e.g. a pydantic serializer), while reusing packers on the hot path.
_PACKERS: list[Any] = []


def _pack(value: object) -> bytes:
    try:
        packer = _PACKERS.pop()
    except IndexError:
        packer = _new_packer()
    try:
        packed: bytes = packer.pack(value)  # the Packer resets its buffer when pack() raises
        return packed
    finally:
        _PACKERS.append(packer)


_Children = Iterator[tuple[str, object]]


def _children(node: object) -> _Children | None:
    """The parts of a container-like value, as (path suffix, part); None for leaves."""
    if isinstance(node, enum.Enum):
        return iter([(".value", node.value)])
    if isinstance(node, dict):
        return _dict_children(node)
    if isinstance(node, (list, tuple)):
        return ((f"[{index}]", item) for index, item in enumerate(node))
    if isinstance(node, (set, frozenset)):
        return (("<set item>", item) for item in node)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return ((f".{f.name}", getattr(node, f.name)) for f in dataclasses.fields(node))
    if _is_pydantic_model(type(node)):
        names = typing.cast(Any, type(node)).model_fields
        return ((f".{name}", getattr(node, name)) for name in names)
    return None


def _dict_children(node: dict[Any, Any]) -> _Children:
    for key, item in node.items():
        yield "<dict key>", key
        yield f"[{_short(key, 40)}]", item


def _leaf_problem(node: object) -> str | None:
    cls = type(node)
    if cls is str:
        try:
            node.encode()  # type: ignore[attr-defined]
        except UnicodeEncodeError:
            return "string contains unpaired surrogates, which UTF-8 cannot encode"
        return None
    try:
        _ENCODERS.get(cls) or _encoder_for(cls)
    except _Unsupported as exc:
        return f"{exc}; {_SUPPORTED}"
    return None


def _find_problem(root: object, root_path: str) -> tuple[str, str] | None:
    """Walk a value that failed to pack and say where the culprit is and what is wrong with it.

    Iterative, so values nested deeper than Python's recursion limit are handled too.
    """
    stack: list[tuple[int, str, _Children, int]] = []  # (id, path, children, ext depth)
    on_path: set[int] = set()
    pending: tuple[str, object] | None = (root_path, root)
    while pending is not None or stack:
        if pending is None:
            node_id, path, children, _ = stack[-1]
            step = next(children, None)
            if step is None:
                stack.pop()
                on_path.discard(node_id)
            else:
                pending = (path + step[0], step[1])
            continue
        path, node = pending
        pending = None
        parts = _children(node)
        if parts is None:
            problem = _leaf_problem(node)
            if problem is not None:
                return path, problem
            continue
        if id(node) in on_path:
            return path, "the value contains itself (a reference cycle)"
        if len(stack) >= _MAX_NESTING:
            return path, f"the value is nested more than {_MAX_NESTING} levels deep"
        ext_depth = (stack[-1][3] if stack else 0) + isinstance(node, (tuple, set, frozenset))
        if ext_depth > _MAX_EXT_DEPTH:
            return path, f"tuples and sets nested more than {_MAX_EXT_DEPTH} deep"
        on_path.add(id(node))
        stack.append((id(node), path, parts, ext_depth))
    return None


def _encode_error(roots: Sequence[tuple[str, object]], exc: Exception) -> PayloadError:
    for root_path, value in roots:
        try:
            found = _find_problem(value, root_path)
        except Exception as walk_exc:  # e.g. a property raising while we look around
            found = (root_path, f"{type(walk_exc).__name__}: {walk_exc}")
        if found is not None:
            path, problem = found
            where = "" if path == "value" else f" at {path}"
            return PayloadError(f"cannot serialize value{where}: {problem}")
    return PayloadError(f"cannot serialize value: {type(exc).__name__}: {exc}")


# The largest payload stored (argument list, result, signal, heartbeat details): a history
# row is no place for bulk data. Set $DURABLE_MAX_PAYLOAD_BYTES to change it.
MAX_PAYLOAD_BYTES = int(os.environ.get("DURABLE_MAX_PAYLOAD_BYTES") or 2 * 1024 * 1024)


def _within_limit(payload: bytes, what: str) -> bytes:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(
            f"{what} is {len(payload):,} bytes encoded, over the limit of {MAX_PAYLOAD_BYTES:,} "
            "bytes ($DURABLE_MAX_PAYLOAD_BYTES); store large data elsewhere (a blob store, a "
            "table) and pass a reference"
        )
    return payload


def encode(value: object) -> bytes:
    """Serialize ``value`` to msgpack bytes; raises PayloadError naming any unsupported part."""
    try:
        payload = _pack(value)
    except Exception as exc:
        raise _encode_error([("value", value)], exc) from exc
    return _within_limit(payload, "the value")


def encode_args(args: Sequence[object], kwargs: Mapping[str, object]) -> bytes:
    """Serialize call arguments as ``[args, kwargs]``."""
    try:
        payload = _pack([list(args), dict(kwargs)])
    except Exception as exc:
        roots = [(f"args[{i}]", arg) for i, arg in enumerate(args)]
        roots += [(f"kwargs[{name!r}]", arg) for name, arg in kwargs.items()]
        raise _encode_error(roots, exc) from exc
    return _within_limit(payload, "the argument list")
