"""Payloads: msgpack bytes, rebuilt into rich Python types from type annotations.

Nothing here ever pickles, evals or imports a class by name, so decoding untrusted bytes is safe:
a payload only says *what shape* a value has, the caller's annotation says *which class* to build.

Wire format. None, bool, int, float, str, bytes, list and dict are plain msgpack. The stdlib
types that must come back as themselves even without a hint use msgpack ext types:

    1 tuple      2 set          3 frozenset   (ext data: a msgpack array of the items)
    4 datetime   5 date         6 time        (ext data: struct, see _DATE/_TIME/_OFFSET)
    7 timedelta  (ext data: struct "<iii" days, seconds, microseconds)
    8 Decimal    (ext data: str(decimal))
    9 UUID       (ext data: the 16 raw bytes)
    10 int outside the 64-bit msgpack range (ext data: big-endian two's complement)

Enum members encode as their ``.value``; dataclasses as a map of field name to value; pydantic
models as ``model_dump(mode="python")``. Without a hint those come back as plain values / dicts.

Limitations: a tz-aware datetime or time comes back with a fixed-offset ``datetime.timezone``
(a ``ZoneInfo`` or a named timezone is not preserved, only its UTC offset at that instant).
Tuples and sets may nest at most 32 deep (each level is decoded by a nested msgpack call with a
large C stack frame). A frozen dataclass or pydantic model used as a dict key encodes as a map,
which cannot be a key when decoded, so decoding such a payload raises PayloadError.
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import dataclasses
import enum
import functools
import inspect
import itertools
import os
import struct
import sys
import types
import typing
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgpack

from ._errors import PayloadError

__all__ = ["decode", "decode_args", "encode", "encode_args", "return_hint"]

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


# --------------------------------------------------------------------------------- encoding


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


# --------------------------------------------------------------------------------- decoding


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


# ------------------------------------------------------------------- rebuilding from hints


class _Mismatch(Exception):
    """A payload value does not fit its hint; ``path`` is filled in innermost first."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []


def _identity(value: Any) -> Any:
    return value


def _type_name(hint: object) -> str:
    if hint is type(None) or hint is None:
        return "None"
    if hint is Ellipsis:
        return "..."
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(_type_name(arg) for arg in args)
    if origin is typing.Literal:
        return f"Literal[{', '.join(map(repr, args))}]"
    if origin is not None and args:
        return f"{_type_name(origin)}[{', '.join(_type_name(arg) for arg in args)}]"
    if isinstance(hint, type):
        return hint.__qualname__
    return repr(hint).removeprefix("typing.")


def _got(value: object) -> str:
    return f"got {type(value).__name__} {_short(value)}"


_CONVERTERS: dict[object, Converter] = {}


def _converter(hint: object) -> Converter:
    try:
        return _CONVERTERS[hint]
    except KeyError:
        converter = _CONVERTERS[hint] = _compile(hint)
        return converter
    except TypeError:  # an unhashable hint, e.g. Annotated[X, [1]]
        return _compile(hint)


def _compile(hint: object) -> Converter:
    if hint is Any or hint is object or isinstance(hint, (typing.TypeVar, str, typing.ForwardRef)):
        return _identity
    if hint is None or hint is type(None):
        return _expect_none
    if isinstance(hint, typing.NewType):
        return _converter(hint.__supertype__)
    origin = typing.get_origin(hint)
    if origin is not None:
        return _compile_generic(hint, origin, typing.get_args(hint))
    if isinstance(hint, type):
        return _compile_class(hint, ())
    return _identity


def _expect_none(value: Any) -> None:
    if value is not None:
        raise _Mismatch(f"expected None, {_got(value)}")


_LIST_LIKE = (list, tuple)
_SET_LIKE = (set, frozenset, list, tuple)
# origin -> (container to build, or None to keep the payload's own type; payload types accepted)
_COLLECTIONS: dict[object, tuple[type | None, tuple[type, ...]]] = {
    list: (list, _LIST_LIKE),
    cabc.MutableSequence: (list, _LIST_LIKE),
    cabc.Sequence: (None, _LIST_LIKE),
    cabc.Collection: (None, _SET_LIKE),
    cabc.Iterable: (None, _SET_LIKE),
    set: (set, _SET_LIKE),
    cabc.MutableSet: (set, _SET_LIKE),
    cabc.Set: (None, (set, frozenset)),
    frozenset: (frozenset, _SET_LIKE),
}
_MAPPINGS = {dict, cabc.Mapping, cabc.MutableMapping}
_WRAPPERS = {typing.Annotated, typing.ClassVar, typing.Final, typing.Required, typing.NotRequired}


def _compile_generic(hint: object, origin: object, args: tuple[Any, ...]) -> Converter:
    if origin in _WRAPPERS:
        return _converter(args[0])
    if origin is typing.Union or origin is types.UnionType:
        return _compile_union(hint, args)
    if origin is typing.Literal:
        return _compile_literal(hint, args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _compile_collection(tuple, _LIST_LIKE, args[0])
        return _compile_fixed_tuple(args)
    if origin in _COLLECTIONS:
        build, accepts = _COLLECTIONS[origin]
        return _compile_collection(build, accepts, args[0] if args else Any)
    if origin in _MAPPINGS:
        return _compile_mapping(*(args or (Any, Any)))
    if isinstance(origin, type) and dataclasses.is_dataclass(origin):
        return _compile_class(origin, args)
    return _identity


def _compile_class(cls: type, args: tuple[Any, ...]) -> Converter:
    if issubclass(cls, enum.Enum):
        return _compile_enum(cls)
    if dataclasses.is_dataclass(cls):
        return _compile_dataclass(cls, args)
    if _is_pydantic_model(cls):
        return _compile_pydantic(cls)
    if _is_typeddict(cls):
        return _compile_typeddict(cls)
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        return _compile_namedtuple(cls)
    if cls is float:
        return _to_float
    if cls is bytearray:
        return _compile_via(bytes, bytearray)
    if cls is tuple:
        return _converter(tuple[Any, ...])
    if cls in (list, set, frozenset, dict):
        return _compile_generic(cls, cls, ())
    try:
        isinstance(None, cls)
    except TypeError:  # e.g. a Protocol that is not runtime-checkable: nothing to check against
        return _identity
    return _compile_instance(cls)


def _is_typeddict(cls: type) -> bool:
    # Duck-typed so that typing_extensions.TypedDict classes are recognised too.
    return issubclass(cls, dict) and hasattr(cls, "__required_keys__")


def _compile_instance(cls: type) -> Converter:
    def convert(value: Any) -> Any:
        if isinstance(value, cls):
            return value
        raise _Mismatch(f"expected {cls.__qualname__}, {_got(value)}")

    return convert


def _compile_via(payload_type: type, build: type) -> Converter:
    def convert(value: Any) -> Any:
        if isinstance(value, payload_type):
            return build(value)
        raise _Mismatch(f"expected {build.__qualname__}, {_got(value)}")

    return convert


def _to_float(value: Any) -> float:
    cls = type(value)
    if cls is float:
        return value  # type: ignore[no-any-return]
    if cls is int:
        try:
            return float(value)
        except OverflowError:
            raise _Mismatch(f"int {_short(value)} is too large for a float") from None
    raise _Mismatch(f"expected float, {_got(value)}")


def _failed_index(size: int, rest: Any) -> int:
    """The index of the part a comprehension over the iterator ``rest`` was converting when it
    raised: the iterator had handed that part out, so ``size - index - 1`` parts remain in it.

    Containers convert with fast comprehensions over an explicit iterator (nothing is spent per
    part) and ask this only once a part failed: each level adds its own step to the path of the
    mismatch raised below it, so locating one converts nothing twice.
    """
    index: int = size - rest.__length_hint__() - 1
    return index


def _compile_collection(build: type | None, accepts: tuple[type, ...], item: object) -> Converter:
    convert_item = _converter(item)
    expected = (build or accepts[0]).__qualname__

    def convert(value: Any) -> Any:
        if type(value) not in accepts:
            raise _Mismatch(f"expected {expected}, {_got(value)}")
        make = build or type(value)
        if convert_item is _identity:
            return value if type(value) is make else make(value)
        rest = iter(value)
        try:
            items = [convert_item(part) for part in rest]
        except _Mismatch as exc:
            exc.path.append(f"[{_failed_index(len(value), rest)}]")
            raise
        return items if make is list else make(items)

    return convert


def _compile_fixed_tuple(args: tuple[Any, ...]) -> Converter:
    converters = [_converter(arg) for arg in args]

    def convert(value: Any) -> tuple[Any, ...]:
        if type(value) not in _LIST_LIKE:
            raise _Mismatch(f"expected tuple, {_got(value)}")
        if len(value) != len(converters):
            raise _Mismatch(f"expected a tuple of {len(converters)} items, got {len(value)}")
        rest = iter(value)
        try:
            # zip takes the converter first, then the part: ``rest`` is exact when one fails.
            return tuple([c(part) for c, part in zip(converters, rest, strict=False)])
        except _Mismatch as exc:
            exc.path.append(f"[{_failed_index(len(value), rest)}]")
            raise

    return convert


def _compile_mapping(key: object, item: object) -> Converter:
    convert_key, convert_item = _converter(key), _converter(item)

    def convert(value: Any) -> dict[Any, Any]:
        if type(value) is not dict:
            raise _Mismatch(f"expected dict, {_got(value)}")
        if convert_key is _identity and convert_item is _identity:
            return value
        rest = iter(value.items())
        try:
            return {convert_key(k): convert_item(v) for k, v in rest}
        except _Mismatch as exc:
            key = next(itertools.islice(value, _failed_index(len(value), rest), None))
            if convert_key is not _identity:
                # Was it the key or its value? Keys are small (maps cannot be keys): re-check it.
                try:
                    convert_key(key)
                except _Mismatch as key_exc:
                    key_exc.path.append(f"<key {_short(key, 40)}>")
                    raise key_exc from None
            exc.path.append(f"[{_short(key, 40)}]")
            raise

    return convert


def _compile_literal(hint: object, values: tuple[Any, ...]) -> Converter:
    raw = [(v.value if isinstance(v, enum.Enum) else v, v) for v in values]
    name = _type_name(hint)

    def convert(value: Any) -> Any:
        for payload, literal in raw:
            if type(payload) is type(value) and payload == value:
                return literal
        raise _Mismatch(f"{_short(value)} is not one of {name}")

    return convert


def _compile_enum(cls: type[enum.Enum]) -> Converter:
    def convert(value: Any) -> enum.Enum:
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except (ValueError, TypeError):
            raise _Mismatch(f"{_short(value)} is not a valid {cls.__qualname__}") from None

    return convert


def _resolved_hints(obj: Any) -> dict[str, Any]:
    """``typing.get_type_hints``, degrading to whatever can be resolved (the rest is Any)."""
    try:
        return typing.get_type_hints(obj)
    except Exception:
        pass
    if dataclasses.is_dataclass(obj):
        return {f.name: f.type for f in dataclasses.fields(obj) if not isinstance(f.type, str)}
    try:
        signature = inspect.signature(obj, eval_str=True)
    except Exception:
        return {}
    hints = {
        name: param.annotation
        for name, param in signature.parameters.items()
        if param.annotation is not param.empty
    }
    if signature.return_annotation is not signature.empty:
        hints["return"] = signature.return_annotation
    return hints


def _substitute(hint: object, bindings: Mapping[object, object]) -> object:
    """Replace type variables of a generic dataclass field by the alias' arguments."""
    if isinstance(hint, typing.TypeVar):
        return bindings.get(hint, Any)
    params = getattr(hint, "__parameters__", ())
    if params and typing.get_origin(hint) is not None:
        try:
            return hint[tuple(bindings.get(p, Any) for p in params)]  # type: ignore[index]
        except TypeError:
            return hint
    return hint


def _is_required(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _compile_dataclass(cls: type, args: tuple[Any, ...]) -> Converter:
    name = cls.__qualname__
    plan: list[tuple[str, Converter]] | None = None
    required: list[str] = []

    def make_plan() -> list[tuple[str, Converter]]:
        # Deferred to the first call so self-referencing dataclasses compile without recursing.
        nonlocal required
        hints = _resolved_hints(cls)
        bindings = dict(zip(getattr(cls, "__parameters__", ()), args, strict=False))
        fields = [f for f in dataclasses.fields(cls) if f.init]
        required = [f.name for f in fields if _is_required(f)]
        plan = []
        for f in fields:
            hint = hints.get(f.name, Any)
            plan.append((f.name, _converter(_substitute(hint, bindings) if bindings else hint)))
        return plan

    def convert(value: Any) -> Any:
        nonlocal plan
        if type(value) is not dict:
            if isinstance(value, cls):
                return value
            raise _Mismatch(f"expected a map for {name}, {_got(value)}")
        if plan is None:
            plan = make_plan()
        missing = [field for field in required if field not in value]
        if missing:
            raise _Mismatch(f"missing required field(s) {', '.join(map(repr, missing))} of {name}")
        kwargs = {}
        for field, convert_field in plan:
            if field in value:
                try:
                    kwargs[field] = convert_field(value[field])
                except _Mismatch as exc:
                    exc.path.append(f".{field}")
                    raise
        return _construct(cls, kwargs)

    return convert


def _construct(cls: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    try:
        return cls(**kwargs)
    except Exception as exc:  # e.g. validation in __post_init__
        name = getattr(cls, "__qualname__", repr(cls))
        raise _Mismatch(f"{name}() raised {type(exc).__name__}: {exc}") from exc


def _compile_pydantic(cls: Any) -> Converter:
    validate = cls.model_validate
    if "by_name" in inspect.signature(validate).parameters:  # pydantic >= 2.11
        # Payloads carry field names, even for fields that also have an alias.
        validate = functools.partial(validate, by_name=True)

    def convert(value: Any) -> Any:
        if isinstance(value, cls):
            return value
        try:
            return validate(value)
        except Exception as exc:  # pydantic.ValidationError, without importing pydantic
            raise _Mismatch(f"{cls.__qualname__} validation failed: {exc}") from exc

    return convert


def _compile_typeddict(cls: Any) -> Converter:
    plan: dict[str, Converter] | None = None
    required: frozenset[str] = cls.__required_keys__

    def convert(value: Any) -> dict[str, Any]:
        nonlocal plan
        if type(value) is not dict:
            raise _Mismatch(f"expected a map for {cls.__qualname__}, {_got(value)}")
        missing = sorted(required - value.keys())
        if missing:
            raise _Mismatch(f"missing required key(s) {missing} of {cls.__qualname__}")
        if plan is None:
            plan = {key: _converter(hint) for key, hint in _resolved_hints(cls).items()}
        rest = iter(value.items())
        try:
            return {k: plan[k](v) if k in plan else v for k, v in rest}
        except _Mismatch as exc:
            key = next(itertools.islice(value, _failed_index(len(value), rest), None))
            exc.path.append(f"[{key!r}]")
            raise

    return convert


def _compile_namedtuple(cls: Any) -> Converter:
    plan: list[Converter] | None = None

    def convert(value: Any) -> Any:
        nonlocal plan
        if isinstance(value, cls):
            return value
        if type(value) not in _LIST_LIKE:
            raise _Mismatch(f"expected a tuple for {cls.__qualname__}, {_got(value)}")
        if len(value) > len(cls._fields):
            raise _Mismatch(f"too many items for {cls.__qualname__}: {len(value)}")
        if plan is None:
            hints = _resolved_hints(cls)
            plan = [_converter(hints.get(field, Any)) for field in cls._fields]
        items = []
        for index, (convert_item, part) in enumerate(zip(plan, value, strict=False)):
            try:
                items.append(convert_item(part))
            except _Mismatch as exc:
                exc.path.append(f"[{index}]")
                raise
        try:
            return cls(*items)
        except Exception as exc:
            raise _Mismatch(f"{cls.__qualname__}() raised {type(exc).__name__}: {exc}") from exc

    return convert


def _field_names(hint: object) -> tuple[frozenset[str], frozenset[str]] | None:
    """(all field names, required ones) of a dataclass, pydantic model or TypedDict hint."""
    cls = typing.get_origin(hint) or hint
    if not isinstance(cls, type):
        return None
    if dataclasses.is_dataclass(cls):
        fields = [f for f in dataclasses.fields(cls) if f.init]
        required = frozenset(f.name for f in fields if _is_required(f))
        return frozenset(f.name for f in fields), required
    if _is_typeddict(cls):
        return frozenset(cls.__annotations__), typing.cast(Any, cls).__required_keys__
    if _is_pydantic_model(cls):
        model_fields = typing.cast(Any, cls).model_fields
        aliases = (f.alias for f in model_fields.values() if f.alias)
        required = frozenset(name for name, f in model_fields.items() if f.is_required())
        return frozenset([*model_fields, *aliases]), required
    return None


def _plain_class(hint: object) -> bool:
    if not isinstance(hint, type):
        return False
    try:
        isinstance(None, hint)
    except TypeError:
        return False
    return True


def _compile_union(hint: object, members: tuple[Any, ...]) -> Converter:
    none_ok = type(None) in members
    others = [member for member in members if member is not type(None)]
    if none_ok and len(others) == 1:
        convert_other = _converter(others[0])
        return lambda value: None if value is None else convert_other(value)

    classes = tuple(member for member in others if _plain_class(member))
    candidates = [(member, _converter(member)) for member in others]
    shapes = [(member, conv, _field_names(member)) for member, conv in candidates]
    structured = [(member, conv, shape) for member, conv, shape in shapes if shape is not None]
    name = _type_name(hint)

    def convert(value: Any) -> Any:
        if value is None and none_ok:
            return None
        failures: list[str] = []
        tried: list[object] = []
        if structured and type(value) is dict:
            # Prefer a dataclass/model whose fields fit the keys exactly, before `dict` etc.
            keys = value.keys()
            for member, conv, (names, required) in structured:
                if required <= keys and keys <= names:
                    try:
                        return conv(value)
                    except _Mismatch as exc:
                        failures.append(f"{_type_name(member)}: {exc.reason}")
                        tried.append(member)
        if classes and isinstance(value, classes):
            return value
        for member, conv in candidates:
            if member in tried:
                continue
            try:
                return conv(value)
            except _Mismatch as exc:
                failures.append(f"{_type_name(member)}: {exc.reason}")
        raise _Mismatch(f"{_got(value)} matches no member of {name} ({'; '.join(failures)})")

    return convert


def _rebuild(value: Any, hint: object, convert: Converter, root: str, what: str) -> Any:
    try:
        return convert(value)
    except _Mismatch as exc:
        where = f"at {root}{''.join(reversed(exc.path))}: " if exc.path else ""
        reason = f"{where}{exc.reason}"
    except RecursionError:
        reason = "the payload is nested too deeply"
    except Exception as exc:  # e.g. building a set of unhashable items
        reason = f"{type(exc).__name__}: {exc}"
    raise PayloadError(f"cannot decode {what} as {_type_name(hint)}: {reason}")


def decode(data: bytes, hint: object = Any) -> Any:
    """Deserialize bytes made by ``encode``, rebuilding dataclasses, enums, ... from ``hint``."""
    value = _load(data)
    if hint is Any:
        return value
    return _rebuild(value, hint, _converter(hint), "payload", "payload")


_Param = tuple[object, Converter]  # (hint, converter)
_ANY: _Param = (Any, _identity)


@dataclasses.dataclass(slots=True)
class _ArgsPlan:
    name: str
    positional: list[_Param] = dataclasses.field(default_factory=list)
    var_positional: _Param = _ANY
    keywords: dict[str, _Param] = dataclasses.field(default_factory=dict)
    var_keyword: _Param = _ANY


_ARGS_PLANS: dict[object, _ArgsPlan] = {}
_RETURN_HINTS: dict[object, object] = {}


def _cache_key(fn: Callable[..., Any], flag: bool) -> object:
    # Bound methods are created on every attribute access: key on the function underneath.
    if type(fn) is types.MethodType:
        return (fn.__func__, "method", flag)
    return (fn, flag)


def _make_args_plan(fn: Callable[..., Any], skip_first: bool) -> _ArgsPlan:
    params = list(inspect.signature(fn).parameters.values())[1 if skip_first else 0 :]
    hints = _resolved_hints(fn)
    plan = _ArgsPlan(getattr(fn, "__qualname__", repr(fn)))
    for param in params:
        hint = hints.get(param.name, Any)
        entry = (hint, _converter(hint))
        if param.kind is param.VAR_POSITIONAL:
            plan.var_positional = entry
        elif param.kind is param.VAR_KEYWORD:
            plan.var_keyword = entry
        else:
            if param.kind is not param.KEYWORD_ONLY:
                plan.positional.append(entry)
            if param.kind is not param.POSITIONAL_ONLY:
                plan.keywords[param.name] = entry
    return plan


def _args_plan(fn: Callable[..., Any], skip_first: bool) -> _ArgsPlan:
    key = _cache_key(fn, skip_first)
    try:
        return _ARGS_PLANS[key]
    except KeyError:
        plan = _ARGS_PLANS[key] = _make_args_plan(fn, skip_first)
        return plan
    except TypeError:  # an unhashable callable
        return _make_args_plan(fn, skip_first)


def decode_args(
    data: bytes, fn: Callable[..., Any], *, skip_first: bool = False
) -> tuple[list[Any], dict[str, Any]]:
    """Deserialize ``encode_args`` bytes, rebuilding each argument from ``fn``'s annotations.

    Arguments ``fn`` does not accept are decoded as-is; calling ``fn`` will reject them.
    """
    payload = _load(data)
    if not (
        type(payload) is list
        and len(payload) == 2
        and type(payload[0]) is list
        and type(payload[1]) is dict
    ):
        raise PayloadError(f"cannot decode arguments: expected [args, kwargs], {_got(payload)}")
    raw_args, raw_kwargs = payload
    plan = _args_plan(fn, skip_first)
    count = len(plan.positional)
    args = []
    for index, value in enumerate(raw_args):
        hint, convert = plan.positional[index] if index < count else plan.var_positional
        if convert is not _identity:
            root = f"args[{index}]"
            value = _rebuild(value, hint, convert, root, f"{root} of {plan.name}()")
        args.append(value)
    kwargs = {}
    for name, value in raw_kwargs.items():
        hint, convert = plan.keywords.get(name, plan.var_keyword)
        if convert is not _identity:
            root = f"kwargs[{name!r}]"
            value = _rebuild(value, hint, convert, root, f"{root} of {plan.name}()")
        kwargs[name] = value
    return args, kwargs


def return_hint(fn: Callable[..., Any]) -> object:
    """The resolved return annotation of ``fn`` (awaited type for coroutines), or Any."""
    key = _cache_key(fn, False)
    try:
        return _RETURN_HINTS[key]
    except (KeyError, TypeError):
        pass
    hint = _resolved_hints(fn).get("return", Any)
    if typing.get_origin(hint) in (cabc.Awaitable, cabc.Coroutine):
        hint = (typing.get_args(hint) or (Any,))[-1]
    with contextlib.suppress(TypeError):
        _RETURN_HINTS[key] = hint
    return hint
