from __future__ import annotations

import contextlib
import dataclasses
import enum
import math
import struct
import threading
import uuid
from collections.abc import Awaitable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import (
    Annotated,
    Any,
    Generic,
    Literal,
    NamedTuple,
    NewType,
    Optional,
    TypedDict,
    TypeVar,
    Union,
)
from zoneinfo import ZoneInfo

import msgpack
import pytest
import typing_extensions

from durable._errors import PayloadError
from durable._serialization import decode, decode_args, encode, encode_args, return_hint

T = TypeVar("T")
UserId = NewType("UserId", int)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    FAST = "fast"
    SAFE = "safe"


@dataclasses.dataclass
class Item:
    name: str
    qty: int = 1
    tags: set[str] = dataclasses.field(default_factory=set)
    color: Color = Color.RED


@dataclasses.dataclass(frozen=True)
class Point:
    x: float
    y: float


@dataclasses.dataclass
class Node:
    value: int
    children: list[Node] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Order:
    id: uuid.UUID
    placed: datetime
    items: list[Item]
    total: Decimal
    origin: Point | None = None
    level: Level = Level.LOW


@dataclasses.dataclass
class Box(Generic[T]):
    content: T
    history: list[T] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Cat:
    name: str
    lives: int


@dataclasses.dataclass
class Dog:
    name: str
    good: bool


class Pair(NamedTuple):
    left: Color
    right: int = 0


class Review(typing_extensions.TypedDict, total=False):
    stars: Level
    text: str


class Movie(TypedDict):
    title: str
    year: int


def roundtrip(value: object, hint: object = Any) -> Any:
    return decode(encode(value), hint)


def tagged(value: object) -> object:
    """A type-exact, NaN-safe, hashable picture of a value, for strict round-trip comparisons."""
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, Decimal):
        return ("Decimal", str(value))
    if isinstance(value, datetime):
        return ("datetime", value.replace(tzinfo=None), value.utcoffset())
    if isinstance(value, time):
        return ("time", value.replace(tzinfo=None), value.utcoffset())
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(tagged(item) for item in value))
    if isinstance(value, (set, frozenset)):
        return (type(value).__name__, frozenset(tagged(item) for item in value))
    if isinstance(value, dict):
        return ("dict", frozenset((tagged(k), tagged(v)) for k, v in value.items()))
    return (type(value).__name__, value)


SCALARS: list[object] = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    2**64,
    -(2**63) - 1,
    10**100,
    -(10**100),
    1.5,
    -0.0,
    math.inf,
    -math.inf,
    "",
    "héllo ✓",
    b"",
    b"\x00\xff",
    datetime(2024, 2, 29, 23, 59, 59, 999999),
    datetime(2024, 1, 1, 12, tzinfo=UTC),
    datetime(2024, 1, 1, 12, 0, 0, 1, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    date(1, 1, 1),
    date(9999, 12, 31),
    time(0, 0),
    time(23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=2))),
    timedelta(0),
    timedelta(days=-1, microseconds=1),
    timedelta.max,
    timedelta.min,
    Decimal("1.10"),
    Decimal("-0"),
    Decimal("1E+1000"),
    Decimal("Infinity"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
]


@pytest.mark.parametrize("value", SCALARS, ids=repr)
def test_scalars_roundtrip_with_exact_types(value: object) -> None:
    assert tagged(roundtrip(value)) == tagged(value)


@pytest.mark.parametrize("value", SCALARS, ids=repr)
def test_scalars_roundtrip_inside_every_container(value: object) -> None:
    hashable = {value} if not isinstance(value, (dict, list, set)) else set()
    containers: list[object] = [
        [value, value],
        (value,),
        {"k": value},
        {value: "v"},
        frozenset(hashable),
        set(hashable),
        {"deep": [({"x": (value, [value])},)]},
    ]
    for container in containers:
        assert tagged(roundtrip(container)) == tagged(container)


def test_nan_roundtrips() -> None:
    assert math.isnan(roundtrip(math.nan))
    out = roundtrip({"v": [math.nan]}, dict[str, list[float]])
    assert math.isnan(out["v"][0])


def test_bytearray_comes_back_as_bytes() -> None:
    assert roundtrip(bytearray(b"ab")) == b"ab"
    assert type(roundtrip(bytearray(b"ab"))) is bytes
    assert roundtrip(b"ab", bytearray) == bytearray(b"ab")


def test_tuple_and_set_types_survive_without_hint() -> None:
    value = {(1, "a"): {frozenset({1, 2}), frozenset()}, "t": ((), (1, (2,)))}
    out = roundtrip(value)
    assert out == value
    assert type(next(iter(out))) is tuple
    assert type(out["t"][1][1]) is tuple


def test_dict_keys_of_many_types() -> None:
    value: dict[object, str] = {1: "int", 2.5: "float", None: "none", b"k": "bytes"}
    value[(1, 2)] = "tuple"
    value[False] = "bool"
    value[date(2020, 1, 1)] = "date"
    value[uuid.UUID(int=5)] = "uuid"
    assert tagged(roundtrip(value)) == tagged(value)


def test_big_ints_use_exact_values() -> None:
    for n in [2**64, -(2**64), 2**64 + 1, 3**200, -(3**200), -(2**63) - 1]:
        assert roundtrip(n) == n
        assert roundtrip([n], list[int]) == [n]


def test_zoneinfo_datetime_keeps_instant_and_offset() -> None:
    paris = datetime(2024, 7, 1, 12, 30, tzinfo=ZoneInfo("Europe/Paris"))
    out = roundtrip(paris)
    assert out == paris
    assert out.utcoffset() == timedelta(hours=2)
    assert out.tzinfo == timezone(timedelta(hours=2))  # documented: fixed offset, not the zone


def test_sub_minute_utc_offsets_roundtrip() -> None:
    tz = timezone(timedelta(hours=1, seconds=30, microseconds=5))
    value = datetime(2020, 5, 17, 1, 2, 3, 4, tzinfo=tz)
    assert roundtrip(value).utcoffset() == tz.utcoffset(None)


def test_naive_datetime_stays_naive() -> None:
    value = datetime(2020, 1, 1, 1, 2, 3, 456789)
    out = roundtrip(value)
    assert out == value
    assert out.tzinfo is None


def test_datetime_hint_does_not_degrade_to_date() -> None:
    assert type(roundtrip(date(2020, 1, 1), date)) is date
    assert type(roundtrip(datetime(2020, 1, 1), datetime)) is datetime


def test_dataclass_without_hint_is_a_plain_dict() -> None:
    out = roundtrip(Item("pen", 2, {"a"}))
    assert out == {"name": "pen", "qty": 2, "tags": {"a"}, "color": "red"}


def test_dataclass_nested_in_list_in_dict() -> None:
    value = {"a": [Item("pen", 2, {"x"}, Color.BLUE), Item("cup")], "b": []}
    out = roundtrip(value, dict[str, list[Item]])
    assert out == value
    assert isinstance(out["a"][0], Item)
    assert out["a"][0].color is Color.BLUE


def test_rich_dataclass_roundtrip() -> None:
    order = Order(
        id=uuid.uuid4(),
        placed=datetime(2024, 1, 1, tzinfo=UTC),
        items=[Item("pen", tags={"blue"})],
        total=Decimal("9.99"),
        origin=Point(1.0, 2.5),
        level=Level.HIGH,
    )
    out = roundtrip(order, Order)
    assert out == order
    assert type(out.level) is Level
    assert type(out.origin) is Point


def test_recursive_dataclass() -> None:
    tree = Node(1, [Node(2), Node(3, [Node(4)])])
    assert roundtrip(tree, Node) == tree


def test_dataclass_defaults_fill_missing_fields_and_extra_keys_are_ignored() -> None:
    out = decode(encode({"name": "pen", "obsolete": 1}), Item)
    assert out == Item("pen")


def test_generic_dataclass_alias() -> None:
    out = roundtrip(Box(Color.RED, [Color.BLUE]), Box[Color])
    assert out == Box(Color.RED, [Color.BLUE])
    assert roundtrip(Box(Point(1, 2)), Box[Point]).content == Point(1, 2)
    assert roundtrip(Box(1), Box).content == 1  # unparametrized: TypeVar fields left as is


def test_float_field_accepts_int_payload() -> None:
    out = roundtrip({"x": 1, "y": 2}, Point)
    assert out == Point(1.0, 2.0)
    assert type(out.x) is float
    assert type(roundtrip(3, float)) is float


def test_enums() -> None:
    assert roundtrip(Color.BLUE) == "blue"
    assert roundtrip(Color.BLUE, Color) is Color.BLUE
    assert roundtrip(Level.HIGH, Level) is Level.HIGH
    assert type(roundtrip(Level.HIGH)) is int
    assert roundtrip(Mode.SAFE, Mode) is Mode.SAFE
    assert type(roundtrip(Mode.SAFE)) is str
    assert roundtrip({Color.RED: [Level.LOW]}, dict[Color, list[Level]]) == {Color.RED: [Level.LOW]}


def test_containers_by_hint() -> None:
    assert roundtrip([1, 2], tuple[int, ...]) == (1, 2)
    assert roundtrip((1, "a"), tuple[int, str]) == (1, "a")
    assert roundtrip((), tuple[()]) == ()
    assert roundtrip(["red"], set[Color]) == {Color.RED}
    assert roundtrip({1, 2}, frozenset[int]) == frozenset({1, 2})
    assert roundtrip((1, 2), list[int]) == [1, 2]
    assert roundtrip([("red", 1)], list[Pair]) == [Pair(Color.RED, 1)]
    assert roundtrip(["blue"], Pair) == Pair(Color.BLUE, 0)
    assert roundtrip({"title": "Up", "year": 2009}, Movie) == {"title": "Up", "year": 2009}
    assert roundtrip([{"stars": 2}], list[Review]) == [{"stars": Level.HIGH}]


def test_optional_union_literal_annotated_newtype_typevar() -> None:
    assert roundtrip(None, Optional[Item]) is None  # noqa: UP045 - testing the typing form
    assert roundtrip(Item("x"), Optional[Item]) == Item("x")  # noqa: UP045
    assert roundtrip("red", Color | None) is Color.RED
    assert roundtrip(3, Union[str, int]) == 3  # noqa: UP007
    assert roundtrip("blue", Literal["red", "blue"]) == "blue"
    assert roundtrip("blue", Literal[Color.BLUE]) is Color.BLUE
    assert roundtrip("red", Annotated[Color, "meta"]) is Color.RED
    assert roundtrip(7, UserId) == 7
    assert roundtrip({"a": 1}, T) == {"a": 1}
    assert roundtrip({"a": 1}, object) == {"a": 1}


def test_union_prefers_the_dataclass_whose_fields_match() -> None:
    assert roundtrip(Dog("rex", True), Cat | Dog) == Dog("rex", True)
    assert roundtrip(Cat("tom", 9), Cat | Dog) == Cat("tom", 9)
    assert roundtrip(Cat("tom", 9), dict[str, Any] | Cat) == Cat("tom", 9)
    assert roundtrip({"other": 1}, dict[str, Any] | Cat) == {"other": 1}
    assert roundtrip(1, float | int) == 1
    assert type(roundtrip(1, float | int)) is int
    assert type(roundtrip(1, float | str)) is float


def test_union_mismatch_lists_members() -> None:
    with pytest.raises(PayloadError, match=r"matches no member of Cat \| Dog"):
        roundtrip({"name": "x"}, Cat | Dog)


def test_pydantic_models() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Address(pydantic.BaseModel):
        city: str
        since: date

    class User(pydantic.BaseModel):
        name: str
        color: Color
        addresses: list[Address]
        tags: frozenset[str] = frozenset()
        nick: str = pydantic.Field(default="", alias="nickname")

    user = User(
        name="ann",
        color=Color.BLUE,
        addresses=[Address(city="Oslo", since=date(2020, 1, 1))],
        tags=frozenset({"a"}),
        nickname="annie",
    )
    assert roundtrip(user, User) == user
    plain = roundtrip(user)
    assert plain["addresses"] == [{"city": "Oslo", "since": date(2020, 1, 1)}]
    assert plain["color"] == "blue"
    assert roundtrip({"u": [user]}, dict[str, list[User]]) == {"u": [user]}
    with pytest.raises(PayloadError, match="User validation failed"):
        roundtrip({"name": "ann"}, User)


def test_pydantic_serializer_may_call_encode_reentrantly() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Wrapper(pydantic.BaseModel):
        inner: bytes

        @pydantic.field_serializer("inner")
        def _ser(self, value: bytes) -> bytes:
            return encode({"nested": (value,)})

    out = roundtrip([Wrapper(inner=b"x"), (1, 2)])
    assert decode(out[0]["inner"]) == {"nested": (b"x",)}
    assert out[1] == (1, 2)


def test_encode_is_thread_safe() -> None:
    values = [
        {"i": i, "t": (i, Item(str(i))), "d": datetime(2020, 1, 1 + i % 28)} for i in range(200)
    ]
    expected = [encode(v) for v in values]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(5):
            assert list(pool.map(encode, values)) == expected


def test_hot_path_encoding_is_plain_msgpack() -> None:
    value = {"a": 1, "b": "x", "c": [1.5, None, True, b"z"]}
    assert encode(value) == msgpack.packb(value, use_bin_type=True)


def test_standard_msgpack_timestamps_decode_to_utc_datetimes() -> None:
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    assert decode(msgpack.packb(moment, datetime=True)) == moment


# --------------------------------------------------------------------------- arguments


async def workflow(ctx: object, order: Order, count: int, *extra: Color, **flags: Level) -> Item:
    raise NotImplementedError


def activity(items: dict[str, list[Item]], /, when: date, *, mode: Mode = Mode.FAST) -> None:
    raise NotImplementedError


class Service:
    def handle(self, point: Point, scale: float = 1.0) -> list[Point]:
        raise NotImplementedError


def test_decode_args_for_async_workflow_with_skipped_context() -> None:
    order = Order(uuid.uuid4(), datetime(2024, 1, 1), [Item("a")], Decimal("1"))
    data = encode_args([order, 3, Color.RED, "blue"], {"urgency": Level.HIGH})
    args, kwargs = decode_args(data, workflow, skip_first=True)
    assert args == [order, 3, Color.RED, Color.BLUE]
    assert kwargs == {"urgency": Level.HIGH}
    assert type(kwargs["urgency"]) is Level


def test_decode_args_positional_only_keyword_only_and_methods() -> None:
    data = encode_args([{"k": [Item("x")]}], {"when": date(2020, 1, 1), "mode": "safe"})
    args, kwargs = decode_args(data, activity)
    assert args == [{"k": [Item("x")]}]
    assert kwargs == {"when": date(2020, 1, 1), "mode": Mode.SAFE}

    service = Service()
    args, kwargs = decode_args(encode_args([Point(1, 2)], {"scale": 2}), service.handle)
    assert args == [Point(1, 2)]
    assert kwargs == {"scale": 2.0}
    assert type(kwargs["scale"]) is float


def test_decode_args_leaves_unknown_arguments_alone() -> None:
    data = encode_args([Point(1, 2), 2, "extra"], {"nope": (1,)})
    args, kwargs = decode_args(data, Service().handle)
    assert args == [Point(1.0, 2.0), 2.0, "extra"]
    assert type(args[1]) is float
    assert kwargs == {"nope": (1,)}


def test_decode_args_errors_name_the_argument() -> None:
    data = encode_args([{"x": 1}], {})
    with pytest.raises(
        PayloadError, match=r"args\[0\] \('point'\) of Service.handle\(\).*missing.*'y'"
    ):
        decode_args(data, Service().handle)
    data = encode_args([{"k": [Item("x")]}], {"when": "today"})
    with pytest.raises(PayloadError, match=r"kwargs\['when'\] of activity\(\) as date"):
        decode_args(data, activity)
    with pytest.raises(PayloadError, match=r"expected \[args, kwargs\]"):
        decode_args(encode([1, 2]), activity)


def test_encode_args_without_kwargs() -> None:
    assert msgpack.unpackb(encode_args((1, "a"), {})) == [[1, "a"], {}]


def test_return_hint() -> None:
    async def coro() -> list[Item]:
        raise NotImplementedError

    def awaitable() -> Awaitable[Point]:
        raise NotImplementedError

    def coroutine() -> Coroutine[Any, Any, int]:
        raise NotImplementedError

    def nothing():  # type: ignore[no-untyped-def]
        pass

    assert return_hint(coro) == list[Item]
    assert return_hint(workflow) is Item
    assert return_hint(awaitable) is Point
    assert return_hint(coroutine) is int
    assert return_hint(nothing) is Any
    assert return_hint(activity) is type(None)
    assert return_hint(Service().handle) == list[Point]


# ------------------------------------------------------------------------------ errors


def test_unserializable_object_deep_inside_names_the_path() -> None:
    lock = threading.Lock()
    with pytest.raises(PayloadError) as info:
        encode_args([1, {"items": [0, 1, lock]}], {})
    message = str(info.value)
    assert message.startswith("cannot serialize value at args[1]['items'][2]: object of type")
    assert type(lock).__name__ in message
    assert "dataclasses or pydantic models" in message

    order = Order(uuid.uuid4(), datetime.now(), [], Decimal(0), Point(lock, 1))  # type: ignore[arg-type]
    with pytest.raises(PayloadError, match=r"at kwargs\['opts'\]\.origin\.x: object of type"):
        encode_args([], {"opts": order})

    with pytest.raises(PayloadError, match=r"at value\[0\]\['k'\]\[1\]<set item>: object of type"):
        encode([{"k": (1, {Color.RED, 1.5, complex(1, 2)})}])

    with pytest.raises(PayloadError, match=r"^cannot serialize value: object of type 'object'"):
        encode(object())


def test_path_skips_supported_values_before_the_culprit() -> None:
    value = [bytearray(b"x"), memoryview(b"y"), 2**70, Color.RED, Item("a"), {1: (2,)}, 1j]
    with pytest.raises(PayloadError, match=r"at value\[6\]: object of type 'complex'"):
        encode(value)


def test_unsupported_dict_key_is_reported() -> None:
    with pytest.raises(PayloadError, match=r"at value\['a'\]<dict key>: object of type 'object'"):
        encode({"a": {object(): 1}})


def test_self_referencing_values() -> None:
    items: list[object] = [1]
    items.append(items)
    with pytest.raises(PayloadError, match=r"at value\[1\]: the value contains itself"):
        encode(items)
    mapping: dict[str, object] = {}
    mapping["me"] = [mapping]
    with pytest.raises(PayloadError, match=r"at args\[0\]\['me'\]\[0\]: the value contains itself"):
        encode_args([mapping], {})


def test_very_deep_values_are_a_payload_error() -> None:
    deep: list[object] = []
    for _ in range(2000):
        deep = [deep]
    with pytest.raises(PayloadError, match="nested more than"):
        encode(deep)
    nested: tuple[object, ...] = ()
    for _ in range(40):
        nested = (nested,)
    with pytest.raises(PayloadError, match="tuples and sets nested more than 32 deep"):
        encode(nested)


def test_lone_surrogates_are_reported() -> None:
    with pytest.raises(PayloadError, match=r"at value\['s'\]: string contains unpaired surrogates"):
        encode({"s": "\ud800"})


def test_truncated_and_garbage_bytes() -> None:
    data = encode({"items": [Item("x")], "when": datetime.now()})
    for cut in range(len(data)):
        with pytest.raises(PayloadError, match="cannot decode payload"):
            decode(data[:cut])
    with pytest.raises(PayloadError, match="truncated"):
        decode(data[:-1])
    with pytest.raises(PayloadError, match="unexpected bytes after the value"):
        decode(data + b"\x00")
    with pytest.raises(PayloadError, match="malformed"):
        decode(b"\xc1")
    with pytest.raises(PayloadError, match="expected bytes, got str"):
        decode("abc")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "payload"),
    [
        (1, msgpack.packb(5)),
        (2, msgpack.packb([[1]])),
        (4, b"short"),
        (4, struct.pack("<HBBBBBIBq", 2020, 1, 1, 0, 0, 0, 0, 0, 24 * 3600 * 10**6)),  # offset 24h
        (4, struct.pack("<HBBBBBIBb", 2020, 1, 1, 0, 0, 0, 0, 0, 1)),  # partial offset
        (4, struct.pack("<HBBBBBIB", 2020, 2, 30, 0, 0, 0, 0, 0)),  # February 30
        (5, struct.pack("<HBB", 2020, 13, 1)),
        (6, struct.pack("<BBBIB", 25, 0, 0, 0, 0)),
        (6, struct.pack("<BBBIB", 1, 0, 0, 10**6, 0)),  # a million microseconds
        (7, b"short"),
        (8, b"one"),
        (9, b"\x00" * 15),
        (10, b""),
        (99, b"x"),
    ],
)
def test_wrong_ext_data(code: int, payload: bytes) -> None:
    with pytest.raises(PayloadError, match="cannot decode payload"):
        decode(msgpack.packb(msgpack.ExtType(code, payload)))


def test_unhashable_map_key_from_foreign_bytes() -> None:
    with pytest.raises(PayloadError, match="cannot be a dict key"):
        decode(b"\x81\x91\x01\x01")  # {[1]: 1}
    with pytest.raises(PayloadError, match="cannot be a dict key"):
        decode(encode({Point(1, 2): "frozen dataclass key"}))  # documented limitation


def test_hostile_ext_nesting_is_bounded() -> None:
    data = msgpack.packb([1])
    for _ in range(5000):
        data = msgpack.packb([msgpack.ExtType(1, data)])
    with pytest.raises(PayloadError, match="nested more than 32 deep"):
        decode(data)


def test_huge_declared_lengths_do_not_allocate() -> None:
    with pytest.raises(PayloadError):
        decode(b"\xdd\xff\xff\xff\xff")  # array32 claiming 4 billion items
    with pytest.raises(PayloadError):
        decode(b"\xc6\xff\xff\xff\xff")  # bin32 claiming 4 GiB


def test_rebuild_errors_name_hint_path_and_problem() -> None:
    with pytest.raises(PayloadError, match=r"as Color: 'purple' is not a valid Color"):
        roundtrip("purple", Color)
    with pytest.raises(PayloadError, match=r"as Item: missing required field\(s\) 'name' of Item"):
        roundtrip({"qty": 2}, Item)
    message = r"as dict\[str, list\[Item\]\]: at payload\['a'\]\[1\]\.color: 'green' is not a valid"
    with pytest.raises(PayloadError, match=message):
        roundtrip({"a": [Item("x"), {"name": "y", "color": "green"}]}, dict[str, list[Item]])
    with pytest.raises(PayloadError, match=r"at payload<key 'nope'>: 'nope' is not a valid Color"):
        roundtrip({"nope": 1}, dict[Color, int])
    with pytest.raises(PayloadError, match=r"as tuple\[int, str\]: expected a tuple of 2 items"):
        roundtrip((1,), tuple[int, str])
    with pytest.raises(PayloadError, match=r"as int: expected int, got str 'x'"):
        roundtrip("x", int)
    with pytest.raises(PayloadError, match=r"as Literal\['a'\]: 'b' is not one of"):
        roundtrip("b", Literal["a"])
    with pytest.raises(PayloadError, match="missing required key"):
        roundtrip({"title": "Up"}, Movie)
    with pytest.raises(PayloadError, match="expected None"):
        roundtrip(1, None)


@pytest.mark.parametrize(
    ("value", "hint", "path"),
    [
        ([1, 2, "x"], list[int], r"payload\[2\]"),
        ((1, 2, "x"), tuple[int, ...], r"payload\[2\]"),
        ((1, "a", "x"), tuple[int, str, int], r"payload\[2\]"),
        ({"a": 1, "b": "x"}, dict[str, int], r"payload\['b'\]"),
        ({"a": 1, 2: 2}, dict[str, int], r"payload<key 2>"),
        ({Color.RED: [1], Color.BLUE: [2, "x"]}, dict[Color, list[int]], r"payload\['blue'\]\[1\]"),
        ({"title": "Up", "year": "x"}, Movie, r"payload\['year'\]"),
        (
            [{"title": "Up", "year": 1}, {"title": 2, "year": 1}],
            list[Movie],
            r"payload\[1\]\['title'\]",
        ),
    ],
)
def test_rebuild_errors_name_the_failing_part_of_each_container(
    value: object, hint: object, path: str
) -> None:
    with pytest.raises(PayloadError, match=rf"at {path}: expected (int|str), got"):
        roundtrip(value, hint)


def test_dataclass_post_init_failure_is_a_payload_error() -> None:
    @dataclasses.dataclass
    class Positive:
        n: int

        def __post_init__(self) -> None:
            if self.n <= 0:
                raise ValueError("n must be positive")

    with pytest.raises(PayloadError, match="n must be positive"):
        roundtrip({"n": -1}, Positive)


def test_unhashable_items_for_a_set_hint() -> None:
    with pytest.raises(PayloadError, match="cannot decode payload as set"):
        roundtrip([Item("x")], set[Item])


# -------------------------------------------------------------------------- properties


def _strategies() -> Any:
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    offsets = st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
    zones = st.none() | offsets.map(timezone)
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.integers(min_value=-(2**200), max_value=2**200)
        | st.floats(allow_nan=True)
        | st.text()
        | st.binary()
        | st.datetimes(timezones=zones)
        | st.dates()
        | st.times(timezones=zones)
        | st.timedeltas()
        | st.decimals(allow_nan=False)
        | st.uuids()
    )
    keys = st.recursive(scalars, lambda inner: st.tuples(inner, inner) | st.frozensets(inner))
    leaves = scalars | st.decimals(allow_nan=True)  # a signaling NaN cannot be hashed
    values = st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.tuples(inner, inner)
            | st.dictionaries(keys, inner, max_size=4)
            | st.sets(keys, max_size=4)
            | st.frozensets(keys, max_size=4)
        ),
        max_leaves=20,
    )
    return hypothesis, st, values


@pytest.mark.filterwarnings("ignore:Generating overly large repr")
def test_property_any_value_roundtrips() -> None:
    hypothesis, _st, values = _strategies()

    @hypothesis.settings(max_examples=300, deadline=None)
    @hypothesis.given(values)
    def check(value: object) -> None:
        assert tagged(decode(encode(value))) == tagged(value)

    check()


def test_property_dataclasses_roundtrip_by_hint() -> None:
    hypothesis, st, _values = _strategies()
    items = st.builds(
        Item,
        name=st.text(),
        qty=st.integers(),
        tags=st.sets(st.text(), max_size=3),
        color=st.sampled_from(Color),
    )
    orders = st.builds(
        Order,
        id=st.uuids(),
        placed=st.datetimes(),
        items=st.lists(items, max_size=3),
        total=st.decimals(allow_nan=False),
        origin=st.none() | st.builds(Point, x=st.floats(allow_nan=False), y=st.floats(-1, 1)),
        level=st.sampled_from(Level),
    )

    @hypothesis.settings(max_examples=200, deadline=None)
    @hypothesis.given(st.dictionaries(st.text(), st.lists(orders, max_size=2), max_size=3))
    def check(value: dict[str, list[Order]]) -> None:
        assert roundtrip(value, dict[str, list[Order]]) == value

    check()


@pytest.mark.filterwarnings("ignore:Generating overly large repr")
def test_property_arbitrary_bytes_only_raise_payload_error() -> None:
    hypothesis, st, values = _strategies()
    hints: list[object] = [Any, Order, dict[str, list[Item]], Color | None, tuple[int, ...]]

    @hypothesis.settings(max_examples=400, deadline=None)
    @hypothesis.given(st.data(), st.sampled_from(hints))
    def check(draw: Any, hint: object) -> None:
        data = draw.draw(st.binary()) if draw.draw(st.booleans()) else encode(draw.draw(values))
        at = draw.draw(st.integers(0, len(data)))
        data = data[:at] + draw.draw(st.binary(max_size=3)) + data[at + 1 :]
        with contextlib.suppress(PayloadError):
            decode(data, hint)

    check()


def test_types_json_lacks_are_read_from_their_text() -> None:
    """What a JSON caller (the CLI) can give for a Decimal, a time or a UUID: their text
    (and a number for a Decimal); anything else is still refused, naming the type."""
    from datetime import date, time

    assert decode(encode("19.99"), Decimal) == Decimal("19.99")
    assert decode(encode(12.5), Decimal) == Decimal("12.5")
    assert decode(encode(3), Decimal) == Decimal(3)
    assert decode(encode("2026-12-24"), date) == date(2026, 12, 24)
    assert decode(encode("2026-12-24T10:00:00+00:00"), datetime).tzinfo is not None
    assert decode(encode("10:30"), time) == time(10, 30)
    some = uuid.uuid4()
    assert decode(encode(str(some)), uuid.UUID) == some
    for value, hint in (("abc", Decimal), ("soon", date), (True, Decimal), ([1], uuid.UUID)):
        with pytest.raises(PayloadError, match=f"expected {hint.__qualname__}"):
            decode(encode(value), hint)
