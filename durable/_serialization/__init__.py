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

from .calls import check_args, check_result, decode_args, positional_range, return_hint
from .encoding import MAX_PAYLOAD_BYTES, encode, encode_args
from .hints import decode

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "check_args",
    "check_result",
    "decode",
    "decode_args",
    "encode",
    "encode_args",
    "positional_range",
    "return_hint",
]
