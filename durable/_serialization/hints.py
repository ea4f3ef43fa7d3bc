"""Rebuilding: a decoded value made into the class its annotation names, or a clear error."""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import datetime
import decimal
import enum
import functools
import inspect
import itertools
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from .._errors import PayloadError
from .decoding import _load
from .wire import Converter, _is_pydantic_model, _short


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
    if cls in _FROM_TEXT:
        return _compile_from_text(cls, _FROM_TEXT[cls])
    return _compile_instance(cls)


# Types JSON has no value of, read from the text that stands for them (ISO 8601 times, a
# decimal's digits, a UUID's hex): JSON arguments (the CLI's, an HTTP API's) can carry them.
# An instance is taken as it is; a Decimal is also read from a JSON number (a float by its
# shortest repr, so 12.5 is Decimal("12.5")).
_FROM_TEXT: dict[type, Callable[[str], Any]] = {
    decimal.Decimal: decimal.Decimal,
    uuid.UUID: uuid.UUID,
    datetime.datetime: datetime.datetime.fromisoformat,
    datetime.date: datetime.date.fromisoformat,
    datetime.time: datetime.time.fromisoformat,
}


def _compile_from_text(cls: type, parse: Callable[[str], Any]) -> Converter:
    def convert(value: Any) -> Any:
        if isinstance(value, cls):
            return value
        if cls is decimal.Decimal and type(value) in (int, float):
            return decimal.Decimal(repr(value))
        if isinstance(value, str):
            try:
                return parse(value)
            except (ValueError, ArithmeticError):
                raise _Mismatch(
                    f"expected {cls.__qualname__} (or its text), {_got(value)}"
                ) from None
        raise _Mismatch(f"expected {cls.__qualname__}, {_got(value)}")

    return convert


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
