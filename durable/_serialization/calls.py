"""Function calls: arguments decoded by their parameters' annotations, results by the return's."""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._errors import PayloadError
from .decoding import _load
from .hints import _converter, _got, _identity, _rebuild, _resolved_hints
from .wire import Converter

_Param = tuple[object, Converter]  # (hint, converter)
_ANY: _Param = (Any, _identity)


@dataclasses.dataclass(slots=True)
class _ArgsPlan:
    name: str
    positional: list[_Param] = dataclasses.field(default_factory=list)
    positional_names: list[str] = dataclasses.field(default_factory=list)
    var_positional: _Param = _ANY
    var_positional_name: str = "args"
    keywords: dict[str, _Param] = dataclasses.field(default_factory=dict)
    var_keyword: _Param = _ANY

    def positional_name(self, index: int) -> str:
        if index < len(self.positional_names):
            return self.positional_names[index]
        return f"*{self.var_positional_name}"


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
            plan.var_positional, plan.var_positional_name = entry, param.name
        elif param.kind is param.VAR_KEYWORD:
            plan.var_keyword = entry
        else:
            if param.kind is not param.KEYWORD_ONLY:
                plan.positional.append(entry)
                plan.positional_names.append(param.name)
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
            what = f"{root} ({plan.positional_name(index)!r}) of {plan.name}()"
            value = _rebuild(value, hint, convert, root, what)
        args.append(value)
    kwargs = {}
    for name, value in raw_kwargs.items():
        hint, convert = plan.keywords.get(name, plan.var_keyword)
        if convert is not _identity:
            root = f"kwargs[{name!r}]"
            value = _rebuild(value, hint, convert, root, f"{root} of {plan.name}()")
        kwargs[name] = value
    return args, kwargs


def check_args(
    fn: Callable[..., Any],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    payload: bytes,
    *,
    what: str,
    skip_first: bool = False,
) -> None:
    """Refuse, where a call is made, the arguments (``payload``: them encoded) that ``fn``'s
    side would refuse when it decodes them: a wrong number or an unknown keyword (TypeError
    saying they do not fit ``what``), a value that does not fit its parameter's annotation
    (PayloadError naming the parameter and the field)."""
    try:
        inspect.signature(fn).bind(*((None,) if skip_first else ()), *args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"the arguments do not fit {what}: {exc}") from None
    try:
        decode_args(payload, fn, skip_first=skip_first)
    except PayloadError as exc:
        raise PayloadError(f"the arguments do not fit {what}: {exc}") from None


def check_result(fn: Callable[..., Any], payload: bytes, *, what: str) -> None:
    """PayloadError naming the field when ``payload`` (a result of ``fn``, ``what``, encoded)
    does not fit ``fn``'s return annotation, as whoever decodes it would find."""
    hint = return_hint(fn)
    convert = _converter(hint)
    if convert is _identity:
        return
    try:
        _rebuild(_load(payload), hint, convert, "result", "result")
    except PayloadError as exc:
        raise PayloadError(
            f"the result of {what} does not fit its return annotation: {exc}"
        ) from None


def positional_range(fn: Callable[..., Any], *, skip_first: bool = False) -> tuple[int, int | None]:
    """How many positional arguments ``fn`` takes: at least, at most (None: any number)."""
    least, most = 0, 0
    for param in list(inspect.signature(fn).parameters.values())[1 if skip_first else 0 :]:
        if param.kind is param.VAR_POSITIONAL:
            return least, None
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            most += 1
            if param.default is param.empty:
                least = most
    return least, most


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
