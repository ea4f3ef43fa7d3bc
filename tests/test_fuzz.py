"""Fuzzed payloads (issue "Bad input, fuzzed"), with hypothesis.

- every supported payload type, nested any way, round-trips end to end through a real
  workflow on a real Postgres database: client -> workflow argument -> signal -> activity
  argument -> activity result -> workflow result -> client, and through updates and queries;
- random, truncated and hostile bytes given to ``decode`` / ``decode_args`` never raise
  anything but PayloadError (no database);
- random workflow ids and attributes can be found again by id and by attribute filters.

tests/test_serialization.py checks the codec on its own; here the values travel through the
engine. Hypothesis runs in a thread while the worker keeps running on the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import itertools
import math
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, TypeVar

import msgpack
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import durable
from durable import PayloadError, WorkflowContext, activity, workflow
from durable._serialization import decode, decode_args, encode, encode_args

T = TypeVar("T")

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

# No shrinking end to end: a failing example is reported as found, at once (shrinking would
# replay workflows for minutes); the codec-only tests below shrink as usual.
END_TO_END = settings(
    phases=[Phase.explicit, Phase.generate],
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NO_DATABASE = settings(max_examples=600, deadline=None, database=None)


# ----------------------------------------------------------------------------- types and values


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"
    NUL = "nul\x00"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2**40


@dataclasses.dataclass(frozen=True)
class Inner:
    label: str
    when: datetime | None
    amount: Decimal
    color: Color = Color.RED


@dataclasses.dataclass
class Record:
    color: Color
    level: Level
    inner: Inner
    inners: list[Inner]
    by_name: dict[str, Color]
    pair: tuple[int, str]
    tags: set[str]
    ids: frozenset[uuid.UUID]
    day: date
    span: timedelta
    blob: bytes
    maybe: Inner | None
    anything: Any


@dataclasses.dataclass
class Echo:
    value: Any
    record: Record
    signalled: Any = None


OFFSETS = st.timedeltas(
    min_value=timedelta(hours=-23, minutes=59), max_value=timedelta(hours=23, minutes=59)
).map(timezone)
ZONES = st.none() | OFFSETS
ODD_TEXT = st.text(st.sampled_from(["\x00", "\n", "'", "%", "_", "\\", "\u00e9", "\U0001f600"]))
TEXT = st.text() | ODD_TEXT
DATETIMES = st.datetimes(timezones=ZONES)
INTEGERS = (
    st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.integers(min_value=-(2**300), max_value=2**300)
    | st.sampled_from([2**63, 2**64, -(2**63) - 1, 2**1000, -(2**1000)])
)

# Values that may be dict keys and set items (hashable, equal only to themselves).
KEY_LEAVES = (
    st.none()
    | st.booleans()
    | INTEGERS
    | st.floats(allow_nan=False)
    | TEXT
    | st.binary()
    | DATETIMES
    | st.dates()
    | st.timedeltas()
    | st.decimals(allow_nan=False)
    | st.uuids()
)
KEYS = st.recursive(
    KEY_LEAVES,
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=4,
)
LEAVES = KEY_LEAVES | st.floats() | st.decimals()  # NaN, Infinity and signalling NaN too
VALUES = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(KEYS, inner, max_size=4)
        | st.dictionaries(TEXT, inner, max_size=4)
        | st.sets(KEYS, max_size=4)
    ),
    max_leaves=12,
)
INNERS = st.builds(
    Inner,
    label=TEXT,
    when=st.none() | DATETIMES,
    amount=st.decimals(),
    color=st.sampled_from(Color),
)
RECORDS = st.builds(
    Record,
    color=st.sampled_from(Color),
    level=st.sampled_from(Level),
    inner=INNERS,
    inners=st.lists(INNERS, max_size=3),
    by_name=st.dictionaries(TEXT, st.sampled_from(Color), max_size=3),
    pair=st.tuples(INTEGERS, TEXT),
    tags=st.sets(TEXT, max_size=3),
    ids=st.frozensets(st.uuids(), max_size=3),
    day=st.dates(),
    span=st.timedeltas(),
    blob=st.binary(),
    maybe=st.none() | INNERS,
    anything=VALUES,
)


def same(a: Any, b: Any) -> bool:
    """Exact equality: same types all the way down, NaN equal to NaN, -0.0 not equal to 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, Decimal):
        if a.is_nan() or b.is_nan():
            return a.is_nan() and b.is_nan() and a.is_snan() == b.is_snan()
        return a == b and str(a) == str(b)
    if isinstance(a, datetime):
        return a == b and a.utcoffset() == b.utcoffset() and a.fold == b.fold
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (set, frozenset)):
        return len(a) == len(b) and all(any(same(x, y) for y in b) for x in a)
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            any(same(key, other) and same(value, b[other]) for other in b)
            for key, value in a.items()
        )
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return bool(a == b)


def test_same_is_strict() -> None:
    assert same([1, (2.0, {b"x"})], [1, (2.0, {b"x"})])
    assert same(math.nan, math.nan) and same(Decimal("sNaN"), Decimal("sNaN"))
    assert not same(1, 1.0) and not same(1, True) and not same(0.0, -0.0)
    assert not same((1,), [1]) and not same({1}, frozenset({1}))
    assert not same(Decimal("1.0"), Decimal("1.00"))
    assert not same(datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 1, 1))
    assert not same({1: "a"}, {True: "a"})


def run_on(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the test's event loop from hypothesis' thread."""
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)


async def in_thread(check: Callable[[], None]) -> None:
    await asyncio.to_thread(check)


async def event_types(handle: durable.WorkflowHandle[Any]) -> list[str]:
    return [e.type for e in await handle.history()]


async def result_of(handle: durable.WorkflowHandle[T], limit: float = 20.0) -> T:
    """The workflow's result; fails at once when its workflow task keeps failing."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + limit
    while True:
        desc = await handle.describe()
        if desc.closed_at is not None:
            return await handle.result(timeout=limit)
        assert desc.last_error is None, f"the workflow task keeps failing: {desc.last_error}"
        assert loop.time() < give_up, f"workflow {handle.workflow_id!r} did not close"
        await asyncio.sleep(0.01)


# ------------------------------------------------------------------- end to end through workflows


@activity
async def echo_activity(value: Any, record: Record) -> Echo:
    return Echo(value, record)


@workflow
async def echo_workflow(ctx: WorkflowContext, value: Any, record: Record) -> Echo:
    signalled = await ctx.wait_signal("extra")
    echoed = await ctx.activity(echo_activity, value, record)
    return Echo(echoed.value, echoed.record, signalled)


async def test_every_payload_type_round_trips_end_to_end(client: durable.Client) -> None:
    loop = asyncio.get_running_loop()
    runs: list[Any] = []

    async def round_trip(value: Any, record: Record) -> Echo:
        handle = await client.signal_with_start(
            echo_workflow,
            value,
            record,
            id=str(uuid.uuid4()),
            task_queue="fuzz",
            signal="extra",
            signal_args=(value,),
        )
        return await result_of(handle)

    @END_TO_END
    @given(VALUES, RECORDS)
    def check(value: Any, record: Record) -> None:
        runs.append(value)
        echo = run_on(loop, round_trip(value, record))
        assert type(echo) is Echo
        assert same(echo.value, value), (echo.value, value)
        assert same(echo.signalled, value), (echo.signalled, value)
        assert same(echo.record, record), (echo.record, record)

    async with durable.Worker(
        client, task_queue="fuzz", workflows=[echo_workflow], activities=[echo_activity]
    ):
        await in_thread(check)
    assert len(runs) == 30
    assert len([d async for d in client.list(workflow_name="echo_workflow")]) == 30


@workflow
async def register_wf(ctx: WorkflowContext) -> int:
    """Stores what updates send; answers queries with it; counts the updates."""
    stored: list[Any] = [None]
    count = 0

    def put(value: Any, record: Record) -> Echo:
        nonlocal count
        count += 1
        stored[0] = Echo(value, record)
        return Echo(value, record)

    ctx.on_update("put", put)
    ctx.on_query("get", lambda: stored[0])
    await ctx.wait_signal("stop")
    return count


async def test_update_and_query_payloads_round_trip(client: durable.Client) -> None:
    loop = asyncio.get_running_loop()
    updates = itertools.count(1)

    async with durable.Worker(client, task_queue="fuzz-calls", workflows=[register_wf]):
        handle = await client.start(register_wf.with_options(task_queue="fuzz-calls"))

        @settings(END_TO_END, max_examples=20)
        @given(VALUES, RECORDS)
        def check(value: Any, record: Record) -> None:
            updated = run_on(loop, handle.update("put", value, record, timeout=30))
            queried = run_on(loop, handle.query("get", timeout=30))
            next(updates)
            for answer in (updated, queried):  # no hint on the client side: plain values
                assert same(answer["value"], value), (answer["value"], value)
                assert answer["record"]["pair"] == record.pair
                assert same(answer["record"]["anything"], record.anything)
                assert answer["record"]["color"] == record.color.value

        await in_thread(check)
        await handle.signal("stop")
        count = next(updates) - 1
        assert count == 20
        assert await result_of(handle) == count
    assert (await event_types(handle)).count("UPDATE_COMPLETED") == count


# ------------------------------------------------------------- random ids and attribute filters

STORABLE_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
ID_TEXT = st.text(STORABLE_CHARS, min_size=1, max_size=200)
ATTRIBUTE_VALUES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15)
    | st.text(STORABLE_CHARS, max_size=30)
)
MARKER = "fuzz-example"  # an attribute that tells the examples apart
ATTRIBUTES = st.dictionaries(
    st.text(STORABLE_CHARS, max_size=30).filter(lambda key: key != MARKER),
    ATTRIBUTE_VALUES | st.lists(ATTRIBUTE_VALUES, max_size=3),
    max_size=4,
)


@workflow
async def idle_wf(ctx: WorkflowContext) -> None:
    await ctx.wait_signal("never")


async def test_random_ids_and_attributes_can_be_found_again(client: durable.Client) -> None:
    loop = asyncio.get_running_loop()
    examples = itertools.count()
    await client.start(idle_wf, id="bystander", attributes={MARKER: -1})

    async def start_and_find(workflow_id: str, attributes: dict[str, Any]) -> None:
        marker = next(examples)
        handle = await client.start(
            idle_wf,
            id=workflow_id,
            attributes={**attributes, MARKER: marker},
            id_conflict_policy="terminate_existing",
        )
        desc = await client.get_handle(workflow_id).describe()
        assert desc.workflow_id == workflow_id
        assert desc.run_id == handle.run_id
        assert desc.attributes == {**attributes, MARKER: marker}
        found = [d async for d in client.list(attributes={**attributes, MARKER: marker})]
        assert [(d.workflow_id, d.run_id) for d in found] == [(workflow_id, handle.run_id)]
        for key, value in attributes.items():
            matching = [d.run_id async for d in client.list(attributes={key: value})]
            assert handle.run_id in matching
        await client.get_handle(workflow_id).signal("never")  # still reachable by its id
        assert [d.workflow_id async for d in client.list(attributes={MARKER: -1})] == ["bystander"]

    @settings(END_TO_END, max_examples=40)
    @given(ID_TEXT, ATTRIBUTES)
    def check(workflow_id: str, attributes: dict[str, Any]) -> None:
        run_on(loop, start_and_find(workflow_id, attributes))

    await in_thread(check)
    assert next(examples) == 40


# ------------------------------------------------------------------ malformed payload bytes

HINTS: list[Any] = [
    Any,
    Record,
    Echo,
    Inner | None,
    list[Inner],
    dict[str, Color],
    tuple[int, str],
    set[uuid.UUID],
    frozenset[Level],
    Decimal,
    datetime,
    bytes,
]


def _decode_only_payload_error(data: bytes, hint: Any) -> None:
    with contextlib.suppress(PayloadError):
        decode(data, hint)
    with contextlib.suppress(PayloadError):
        decode_args(data, echo_activity.fn)


@NO_DATABASE
@given(st.binary(max_size=200), st.sampled_from(HINTS))
def test_random_bytes_only_raise_payload_error(data: bytes, hint: Any) -> None:
    _decode_only_payload_error(data, hint)


@settings(NO_DATABASE, max_examples=300)
@given(st.one_of(VALUES, RECORDS), st.sampled_from(HINTS), st.data())
def test_every_truncation_of_a_valid_payload_is_a_payload_error(
    value: Any, hint: Any, data: st.DataObject
) -> None:
    """msgpack is self-delimiting: no strict prefix of a payload is a complete payload."""
    for payload in (encode(value), encode_args([value], {"record": value})):
        cuts = range(len(payload))
        if len(payload) > 300:
            cuts = sorted(data.draw(st.sets(st.integers(0, len(payload) - 1), max_size=60)))
        for cut in cuts:
            with pytest.raises(PayloadError):
                decode(payload[:cut], hint)
            with pytest.raises(PayloadError):
                decode_args(payload[:cut], echo_activity.fn)


@NO_DATABASE
@given(st.one_of(VALUES, RECORDS), st.sampled_from(HINTS), st.data())
def test_corrupted_valid_payloads_only_raise_payload_error(
    value: Any, hint: Any, data: st.DataObject
) -> None:
    payload = bytearray(encode_args([value], {}) if data.draw(st.booleans()) else encode(value))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(payload) - 1))
        payload[at] = data.draw(st.integers(0, 255))  # flip a byte
    junk = data.draw(st.binary(max_size=4))
    _decode_only_payload_error(bytes(payload) + junk, hint)


def _ext(code: int, data: bytes) -> msgpack.ExtType:
    return msgpack.ExtType(code, data)


# Well-formed msgpack, hostile content: unknown, empty and malformed ext types (including the
# ones durable uses, 1-10), maps keyed by unhashable values.
EXT_CODES = st.sampled_from([*range(1, 11), 0, 11, 127])
HOSTILE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=10)
    | st.builds(_ext, EXT_CODES, st.binary(max_size=24)),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=5) | st.integers(-(2**63), 2**63 - 1), inner, max_size=3)
        | st.builds(
            lambda code, items: _ext(code, msgpack.packb(items, use_bin_type=True)),
            st.sampled_from([1, 2, 3]),
            st.lists(inner, max_size=3) | inner,
        )
    ),
    max_leaves=10,
)


def _pack_hostile(value: Any, unhashable_key: bool) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    if unhashable_key:  # a one-entry map whose key is the hostile value itself
        packed = b"\x81" + packed + b"\xc0"
    return packed


@NO_DATABASE
@given(HOSTILE, st.booleans(), st.sampled_from(HINTS))
def test_hostile_well_formed_msgpack_only_raises_payload_error(
    value: Any, unhashable_key: bool, hint: Any
) -> None:
    data = _pack_hostile(value, unhashable_key)
    _decode_only_payload_error(data, hint)
    _decode_only_payload_error(msgpack.packb([[value], {"record": value}], use_bin_type=True), hint)


@dataclasses.dataclass
class Node:
    children: list[Node]


NESTING = {  # (opener repeated ``depth`` times, terminator)
    "array": (b"\x91", b"\x90"),  # [[[...[]...]]]
    "map": (b"\x81\xa1k", b"\x80"),  # {"k": {"k": ...{}...}}
    "node": (b"\x81\xa8children\x91", b"\x81\xa8children\x90"),  # a valid Node chain
}


@settings(NO_DATABASE, max_examples=200)
@given(st.integers(1, 5000), st.sampled_from(sorted(NESTING)))
def test_deeply_nested_payloads_only_raise_payload_error(depth: int, kind: str) -> None:
    opener, terminator = NESTING[kind]
    data = opener * depth + terminator
    for hint in (Any, Node, list[Node], Record, list[list[list[int]]]):
        try:
            value = decode(data, hint)
        except PayloadError:
            continue
        if hint is Node:  # then it is the whole chain
            for _ in range(depth):
                (value,) = value.children
            assert value.children == []


CONVERSIONS = [0]


@dataclasses.dataclass
class Counted:
    n: int

    def __post_init__(self) -> None:
        CONVERSIONS[0] += 1


@dataclasses.dataclass
class Tree:
    leaf: Counted | None
    children: list[Tree]


def test_mismatch_deep_in_a_recursive_hint_is_found_without_re_decoding() -> None:
    depth = 12
    value: Any = {"leaf": {"n": depth}, "children": "not a list"}
    for level in reversed(range(depth)):
        value = {"leaf": {"n": level}, "children": [value]}
    CONVERSIONS[0] = 0
    with pytest.raises(
        PayloadError, match=r"payload(\.children\[0\]){12}\.children: expected list"
    ):
        decode(encode(value), Tree)
    assert CONVERSIONS[0] <= 2 * (depth + 1), f"{CONVERSIONS[0]} leaves rebuilt for {depth + 1}"


@NO_DATABASE
@given(st.binary(max_size=300), st.sampled_from(HINTS), st.booleans())
def test_hostile_msgpack_timestamps_only_raise_payload_error(
    data: bytes, hint: Any, wrap: bool
) -> None:
    """Ext type -1 (msgpack timestamps, decoded as UTC datetimes) with arbitrary data."""
    payload = b"\xc7" + bytes([min(len(data), 255)]) + b"\xff" + data[:255]
    if wrap:
        payload = b"\x92\x91" + payload + b"\x80"  # as decode_args' [[arg], {}]
    _decode_only_payload_error(payload, hint)
