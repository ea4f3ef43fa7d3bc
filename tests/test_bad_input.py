"""Bad input (issue "Bad input, fuzzed"): odd ids and names, bad attributes, oversized payloads
and wrong argument types, end to end through the public API on a real Postgres database.

The contract checked everywhere: a value either works exactly (it round-trips, and a workflow
started with it can be found, signalled, queried and listed by it) or the call raises a clear
ValueError / TypeError / PayloadError naming the argument, before anything is written; and
nothing is damaged (the durable tables still exist, other workflows still list correctly).

Tests marked ``xfail(strict=True)`` assert the contract against an engine bug named in their
reason; they start passing (and then fail as XPASS) once the engine is fixed: then drop the mark.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

import durable
from durable import (
    PayloadError,
    RetryPolicy,
    WorkflowContext,
    WorkflowDescription,
    WorkflowFailedError,
    activity,
    workflow,
)

from .conftest import wait_for

# ------------------------------------------------------------------------------------ helpers

DURABLE_TABLES = ("workers", "workflow_types", "workflows", "history", "inbox", "activity_tasks")
DURABLE_TABLES += ("calls", "schema_migrations")


async def ids(client: durable.Client, **filters: Any) -> list[str]:
    return [d.workflow_id async for d in client.list(**filters)]


async def event_types(handle: durable.WorkflowHandle[Any]) -> list[str]:
    return [e.type for e in await handle.history()]


async def settled(handle: durable.WorkflowHandle[Any], limit: float = 15.0) -> WorkflowDescription:
    """Wait until the workflow closed; fail at once when its workflow task keeps failing."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + limit
    while True:
        desc = await handle.describe()
        if desc.closed_at is not None:
            return desc
        assert desc.last_error is None, (
            f"the workflow task of {handle.workflow_id!r} keeps failing: {desc.last_error}"
        )
        assert loop.time() < give_up, f"workflow {handle.workflow_id!r} did not close"
        await asyncio.sleep(0.02)


async def outcome(handle: durable.WorkflowHandle[Any]) -> Any:
    await settled(handle)
    return await handle.result(timeout=10)


async def assert_intact(dsn: str) -> None:
    """Every durable table still exists and can be read."""
    conn = await asyncpg.connect(dsn)
    try:
        for table in DURABLE_TABLES:
            assert await conn.fetchval("SELECT to_regclass($1)", f"durable.{table}") is not None
            await conn.fetchval(f"SELECT count(*) FROM durable.{table}")
    finally:
        await conn.close()


async def open_calls(dsn: str) -> int:
    """Queries and updates not answered (answered updates are kept for their request ids)."""
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM durable.calls WHERE NOT done")
        return count
    finally:
        await conn.close()


def incompressible_unicode(length: int, seed: int = 7) -> str:
    """``length`` random characters outside the BMP (4 UTF-8 bytes each, not compressible)."""
    rnd = random.Random(seed)
    return "".join(chr(rnd.randrange(0x10000, 0x30000)) for _ in range(length))


# ------------------------------------------------------------------------ workflows, activities


@activity
async def echo_text(text: str) -> str:
    return text


@activity
async def echo_any(value: Any) -> Any:
    return value


@workflow
async def parked_wf(ctx: WorkflowContext) -> Any:
    """Waits for signal "go" and returns its payload (started without a worker: stays pending)."""
    return await ctx.wait_signal("go")


@workflow
async def odd_wf(ctx: WorkflowContext, s: str) -> dict[str, Any]:
    """Uses ``s`` as attribute key and value, query, update, signal and activity name."""
    ctx.set_attributes(**{s: s, "odd": s})
    updates: list[str] = []

    def on_update(value: str) -> tuple[str, str]:
        updates.append(value)
        return ("updated", value)

    ctx.on_query(s, lambda: ("queried", s))
    ctx.on_update(s, on_update)
    signalled = await ctx.wait_signal(s)
    echoed = await ctx.activity(echo_text.with_options(name=s), s)
    return {
        "id": ctx.info.workflow_id,
        "name": ctx.info.workflow_name,
        "queue": ctx.info.task_queue,
        "signal": signalled,
        "activity": echoed,
        "updates": updates,
    }


# ---------------------------------------------------------------------- odd ids and names work

ODD_STRINGS = [
    pytest.param("x'; DROP TABLE durable.workflows; --", id="sql-drop"),
    pytest.param("Robert'); DELETE FROM durable.history; --", id="sql-delete"),
    pytest.param("' OR '1'='1", id="sql-or"),
    pytest.param("%", id="percent"),
    pytest.param("_", id="underscore"),
    pytest.param("a%b_c\\%\\_*?[]", id="like-patterns"),
    pytest.param("\\", id="backslash"),
    pytest.param("C:\\new\\x00\\u0000", id="backslash-escapes"),
    pytest.param("   ", id="spaces-only"),
    pytest.param("\t", id="tab-only"),
    pytest.param("line1\nline2", id="newline"),
    pytest.param("\r\n", id="crlf"),
    pytest.param(
        "\u00fcn\u00efc\u00f8d\u00e9 \u2713 \u4e2d\u6587 \U0001f600 \u202eRTL", id="unicode"
    ),
    pytest.param("\u200b\ufeff\u00a0", id="invisible"),
    pytest.param('"quoted" $1 $$ :name ? {}', id="placeholders"),
    pytest.param('{"json": [1, null]}', id="json-like"),
    pytest.param("NULL", id="NULL"),
    pytest.param("a" * 1000, id="1000-ascii"),
    pytest.param("\u00e9" * 1000, id="1000-two-byte"),
]


@pytest.mark.parametrize("s", ODD_STRINGS)
async def test_odd_string_round_trips_as_every_id_and_name(
    client: durable.Client, dsn: str, s: str
) -> None:
    control = await client.start(parked_wf, id="control", attributes={"odd": "control"})
    named = odd_wf.with_options(name=s)
    async with durable.Worker(
        client, task_queue=s, workflows=[named], activities=[echo_text.with_options(name=s)]
    ):
        handle = await client.start(named, s, id=s, task_queue=s, attributes={"start": s})
        found = client.get_handle(s)
        desc = await found.describe()
        assert (desc.workflow_id, desc.workflow_name, desc.task_queue) == (s, s, s)
        assert await found.query(s, timeout=10) == ("queried", s)
        assert await found.update(s, s, timeout=10) == ("updated", s)
        await found.signal(s, s)
        assert await outcome(handle) == {
            "id": s,
            "name": s,
            "queue": s,
            "signal": s,
            "activity": s,
            "updates": [s],
        }
    signals = [e for e in await handle.history() if e.type == "SIGNAL_RECEIVED"]
    assert [e.name for e in signals] == [s]
    desc = await found.describe()
    assert desc.status == "completed"
    assert desc.attributes == {"start": s, s: s, "odd": s}
    # listing by id, name and attributes finds exactly this workflow, and no pattern matching
    assert await ids(client) == ["control", s]
    assert await ids(client, workflow_name=s) == [s]
    assert await ids(client, attributes={"odd": s}) == [s]
    assert await ids(client, attributes={s: s}) == [s]
    assert await ids(client, attributes={"start": s, "odd": s}) == [s]
    assert await ids(client, attributes={"odd": "control"}) == ["control"]
    assert await ids(client, attributes={"odd": s + "x"}) == []
    for pattern in ("%", "_", "\\", "*"):
        expected = [s] if s == pattern else []
        assert await ids(client, workflow_name=pattern) == expected
        assert await ids(client, attributes={"odd": pattern}) == expected
    # nothing else was damaged
    assert (await control.describe()).status == "pending"
    assert await event_types(control) == ["WORKFLOW_STARTED"]
    await assert_intact(dsn)


LONG_UNICODE = [
    pytest.param("\U0001f600" * 1000, id="1000-emoji"),
    pytest.param(incompressible_unicode(1000), id="1000-random-4-byte"),
    pytest.param("\u00e9" * 600 + incompressible_unicode(400), id="mixed-2600-bytes"),
]


@pytest.mark.parametrize("s", LONG_UNICODE)
@pytest.mark.parametrize("where", ["id", "task_queue"])
async def test_long_unicode_id_or_task_queue_works_or_is_refused(
    client: durable.Client, dsn: str, where: str, s: str
) -> None:
    """1000 characters of up to 4 UTF-8 bytes: beyond what a Postgres btree entry holds."""
    try:
        handle = await client.start(parked_wf, **{where: s})  # type: ignore[arg-type]
    except ValueError as exc:
        assert re.search(rf"\b{where}\b", str(exc)), exc
        assert await ids(client) == []
    else:
        desc = await client.get_handle(handle.workflow_id).describe()
        assert getattr(desc, "workflow_id" if where == "id" else "task_queue") == s
        assert [d.run_id async for d in client.list()] == [handle.run_id]
    await assert_intact(dsn)


@pytest.mark.parametrize("s", LONG_UNICODE)
async def test_long_unicode_workflow_name_works_or_is_refused(
    client: durable.Client, s: str
) -> None:
    try:
        named = parked_wf.with_options(name=s)
    except ValueError as exc:
        assert re.search(r"\bname\b", str(exc)), exc
        return
    async with durable.Worker(client, workflows=[named]):
        handle = await client.start(s)
        await handle.signal("go", 1)
        assert await outcome(handle) == 1


@workflow
async def parent_of_child_wf(ctx: WorkflowContext) -> str:
    child = ctx.start_child(parked_wf)
    await child.signal("go", "from parent")
    assert await child == "from parent"
    return child.workflow_id


async def test_child_of_workflow_with_longest_id_can_be_looked_up(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[parent_of_child_wf, parked_wf]):
        parent = await client.start(parent_of_child_wf, id="p" * 1000)
        child_id = await outcome(parent)
    assert child_id in await ids(client)
    assert (await client.get_handle(child_id).describe()).status == "completed"


# ------------------------------------------------------------ ids and names that are refused

NUL = "a\x00b"
SURROGATE = "a\ud800b"
UNSTORABLE_STRINGS = [
    pytest.param(NUL, id="nul"),
    pytest.param(SURROGATE, id="lone-surrogate"),
]
REFUSED_STRINGS = [
    pytest.param("", id="empty"),
    pytest.param("x" * 1001, id="1001-chars"),
    *UNSTORABLE_STRINGS,
]


@pytest.mark.parametrize("bad", REFUSED_STRINGS)
async def test_bad_workflow_id_is_refused_and_nothing_written(
    client: durable.Client, dsn: str, bad: str
) -> None:
    with pytest.raises(ValueError, match=r"\bid\b"):
        await client.start(parked_wf, id=bad)
    with pytest.raises(ValueError, match=r"\bid\b"):
        await client.signal_with_start(parked_wf, id=bad, signal="go", signal_args=(1,))
    with pytest.raises(ValueError, match=r"\bid\b"):
        await client.execute(parked_wf, id=bad)
    with pytest.raises(ValueError, match="workflow_id"):
        client.get_handle(bad)
    with pytest.raises(ValueError, match=r"\bid\b"):
        parked_wf.with_options(id=bad)
    assert await ids(client) == []
    await assert_intact(dsn)


@pytest.mark.parametrize("bad", REFUSED_STRINGS)
async def test_bad_task_queue_is_refused_and_nothing_written(
    client: durable.Client, bad: str
) -> None:
    with pytest.raises(ValueError, match="task_queue"):
        await client.start(parked_wf, task_queue=bad)
    with pytest.raises(ValueError, match="task_queue"):
        workflow(task_queue=bad)
    with pytest.raises(ValueError, match="task_queue"):
        activity(task_queue=bad)
    with pytest.raises(ValueError, match="task_queue"):
        parked_wf.with_options(task_queue=bad)
    with pytest.raises(ValueError, match="task_queue"):
        echo_text.with_options(task_queue=bad)
    assert await ids(client) == []


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("", id="empty"),
        pytest.param("x" * 1001, id="1001-chars"),
        *UNSTORABLE_STRINGS,
    ],
)
async def test_worker_refuses_bad_task_queue(client: durable.Client, bad: str) -> None:
    with pytest.raises(ValueError, match="task_queue"):
        durable.Worker(client, task_queue=bad, workflows=[parked_wf])


@pytest.mark.parametrize("bad", REFUSED_STRINGS)
async def test_bad_workflow_and_activity_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"\bname\b"):
        workflow(name=bad)
    with pytest.raises(ValueError, match=r"\bname\b"):
        activity(name=bad)
    with pytest.raises(ValueError, match=r"\bname\b"):
        parked_wf.with_options(name=bad)
    with pytest.raises(ValueError, match=r"\bname\b"):
        echo_text.with_options(name=bad)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("", id="empty"),
        pytest.param("x" * 1001, id="1001-chars"),
        *UNSTORABLE_STRINGS,
    ],
)
async def test_bad_signal_query_update_names_are_refused_and_nothing_written(
    client: durable.Client, bad: str
) -> None:
    handle = await client.start(parked_wf, id="target")
    with pytest.raises(ValueError, match=r"\bname\b"):
        await handle.signal(bad, 1)
    with pytest.raises(ValueError, match=r"\bname\b"):
        await handle.query(bad, timeout=5)
    with pytest.raises(ValueError, match=r"\bname\b"):
        await handle.update(bad, 1, timeout=5)
    with pytest.raises(ValueError, match="signal"):
        await client.signal_with_start(parked_wf, id="target", signal=bad, signal_args=(1,))
    with pytest.raises(ValueError, match="signal"):
        await client.signal_with_start(parked_wf, id="other", signal=bad)
    assert await event_types(handle) == ["WORKFLOW_STARTED"]
    assert await ids(client) == ["target"]


@workflow
async def nul_names_wf(ctx: WorkflowContext) -> Any:
    try:  # workflow code may register NUL names, or be refused at once
        ctx.on_query(NUL, lambda: "queried")
        ctx.on_update(NUL, lambda value: ("updated", value))
        return await ctx.wait_signal(NUL)
    except ValueError:
        return await ctx.wait_signal("stop")


async def test_nul_in_signal_name_works_or_is_refused(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[nul_names_wf]):
        handle = await client.start(nul_names_wf)
        try:
            await handle.signal(NUL, "payload")
        except ValueError as exc:
            assert re.search(r"\bname\b", str(exc)), exc
            assert "SIGNAL_RECEIVED" not in await event_types(handle)
            await handle.terminate()
        else:
            assert await outcome(handle) == "payload"


async def test_nul_in_query_and_update_names_works_or_is_refused(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[nul_names_wf]):
        handle = await client.start(nul_names_wf)
        for call, expected in (
            (lambda: handle.query(NUL, timeout=10), "queried"),
            (lambda: handle.update(NUL, 1, timeout=10), ("updated", 1)),
        ):
            try:
                answer = await call()
            except ValueError as exc:
                assert re.search(r"\bname\b", str(exc)), exc
            else:
                assert answer == expected
        await handle.terminate()


async def test_odd_workflow_name_filters_work(client: durable.Client) -> None:
    await client.start(parked_wf, id="one")
    for name in ("", " ", "%", "_", "x" * 1001, "parked_wf'; --", "PARKED_WF", "parked_wf "):
        assert await ids(client, workflow_name=name) == []
    assert await ids(client, workflow_name="parked_wf") == ["one"]


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "lone-surrogate"])
async def test_unstorable_workflow_name_filter_is_refused(client: durable.Client, bad: str) -> None:
    await client.start(parked_wf, id="one")
    try:
        found = await ids(client, workflow_name=bad)
    except ValueError as exc:
        assert "workflow_name" in str(exc)
    else:
        assert found == []
    assert await ids(client) == ["one"]


@pytest.mark.parametrize("bad", UNSTORABLE_STRINGS)
async def test_unstorable_workflow_id_is_refused_by_get_handle(
    client: durable.Client, bad: str
) -> None:
    with pytest.raises(ValueError, match="workflow_id"):
        await client.get_handle(bad).describe()


MALFORMED_RUN_IDS = [
    pytest.param("x", id="word"),
    pytest.param("", id="empty"),
    pytest.param("123", id="digits"),
    pytest.param("0f5c2e8e-9a0b-4c3d-8e7f-6a5b4c3d2e1", id="one-digit-short"),
    pytest.param(NUL, id="nul"),
    pytest.param(42, id="int"),
]


@pytest.mark.parametrize("bad", MALFORMED_RUN_IDS)
async def test_malformed_run_id_is_refused_by_get_handle(client: durable.Client, bad: Any) -> None:
    """get_handle itself refuses it (not a later call, with asyncpg's DataError), naming
    run_id, the value and what a run id looks like."""
    with pytest.raises(ValueError, match="run_id") as info:
        client.get_handle("wf", run_id=bad)
    assert repr(bad) in str(info.value) and "UUID" in str(info.value)


async def test_malformed_run_id_is_refused_by_fork_and_nothing_written(
    client: durable.Client,
) -> None:
    await client.start(parked_wf, id="original")
    with pytest.raises(ValueError, match=r"run_id must be a UUID.*got 'nope'"):
        await client.fork("original", run_id="nope")
    assert await ids(client) == ["original"]


async def test_a_run_id_in_any_uuid_spelling_is_its_canonical_form(
    client: durable.Client,
) -> None:
    handle = await client.start(parked_wf, id="spelled")
    assert handle.run_id is not None
    shouted = client.get_handle("spelled", run_id=handle.run_id.upper())
    assert shouted.run_id == handle.run_id
    assert (await shouted.describe()).run_id == handle.run_id


# -------------------------------------------------------------------------------- attributes

UNSTORABLE_ATTRIBUTES = [
    pytest.param({"k": NUL}, id="nul-value"),
    pytest.param({NUL: 1}, id="nul-key"),
    pytest.param({"k": ["ok", NUL]}, id="nul-in-list"),
    pytest.param({"k": SURROGATE}, id="surrogate-value"),
    pytest.param({SURROGATE: 1}, id="surrogate-key"),
    pytest.param({"k": math.nan}, id="nan"),
    pytest.param({"k": math.inf}, id="inf"),
    pytest.param({"k": [1.0, -math.inf]}, id="inf-in-list"),
]


@pytest.mark.parametrize("attributes", UNSTORABLE_ATTRIBUTES)
async def test_unstorable_attributes_are_refused_at_start_and_in_filters(
    client: durable.Client, dsn: str, attributes: dict[str, Any]
) -> None:
    await client.start(parked_wf, id="bystander", attributes={"k": "fine"})
    with pytest.raises(ValueError, match="attribute"):
        await client.start(parked_wf, id="bad", attributes=attributes)
    with pytest.raises(ValueError, match="attribute"):
        await client.signal_with_start(parked_wf, id="bad", signal="go", attributes=attributes)
    with pytest.raises(ValueError, match="attribute"):
        await ids(client, attributes=attributes)
    assert await ids(client) == ["bystander"]
    await assert_intact(dsn)


# The attributes each set_attributes_wf run sets, by key: some cannot even be a payload.
ATTRIBUTE_CASES: dict[str, dict[str, Any]] = {}


def attribute_case(attributes: dict[str, Any]) -> str:
    key = str(len(ATTRIBUTE_CASES))
    ATTRIBUTE_CASES[key] = attributes
    return key


@workflow
async def set_attributes_wf(ctx: WorkflowContext, case: str) -> str:
    try:
        ctx.set_attributes(**ATTRIBUTE_CASES[case])
    except (TypeError, ValueError) as exc:
        return f"refused: {exc}"
    return "set"


@pytest.mark.parametrize(
    "attributes",
    [
        pytest.param({"": "empty key"}, id="empty-key"),
        pytest.param({" ": ""}, id="blank"),
        pytest.param({"x'; DROP TABLE durable.workflows; --": "%_\\"}, id="sql"),
        pytest.param({"\U0001f600\n": "\u202e\u200b"}, id="unicode"),
        pytest.param({"max": 2**64 - 1, "min": -(2**63)}, id="int64-range"),
        pytest.param({"list": [None, True, 0, -1.5, "x"], "none": None}, id="mixed"),
        pytest.param({"k" * 1000: "v" * 10_000}, id="long"),
    ],
)
async def test_set_attributes_round_trip(
    client: durable.Client, attributes: dict[str, Any]
) -> None:
    async with durable.Worker(client, workflows=[set_attributes_wf]):
        handle = await client.start(set_attributes_wf, attribute_case(attributes))
        assert await outcome(handle) == "set"
    assert (await handle.describe()).attributes == attributes
    for key, value in attributes.items():
        assert await ids(client, attributes={key: value}) == [handle.workflow_id]


@pytest.mark.parametrize(
    "attributes",
    [
        *UNSTORABLE_ATTRIBUTES,
        pytest.param({"k": 2**70}, id="int-above-64-bit"),
        pytest.param({"k": -(2**63) - 1}, id="int-below-64-bit"),
        pytest.param({"k": [2**64]}, id="big-int-in-list"),
    ],
)
async def test_set_attributes_with_unstorable_values_refused_at_call_site(
    client: durable.Client, attributes: dict[str, Any]
) -> None:
    async with durable.Worker(client, workflows=[set_attributes_wf]):
        handle = await client.start(set_attributes_wf, attribute_case(attributes))
        result = await outcome(handle)
    if result != "set":  # refused: the error names the offending attribute
        assert result.startswith("refused: ")
        assert any(repr(key) in result or key in result for key in attributes)
    else:  # or stored exactly
        assert (await handle.describe()).attributes == attributes


async def test_attribute_filters_match_exactly_by_json_type(client: durable.Client) -> None:
    values: list[Any] = [True, 1, "1", 1.5, None, "%", "_", "\\", "", " ", "true", 0, False]
    for index, value in enumerate(values):
        await client.start(parked_wf, id=f"w{index}", attributes={"k": value})
    await client.start(parked_wf, id="no-k", attributes={"other": 1})
    for index, value in enumerate(values):
        assert await ids(client, attributes={"k": value}) == [f"w{index}"], value
    assert await ids(client, attributes={"k": "%"}) == [f"w{values.index('%')}"]
    assert await ids(client, attributes={"missing": None}) == []
    assert len(await ids(client, attributes={})) == len(values) + 1


async def test_float_attribute_keeps_its_type(client: durable.Client) -> None:
    handle = await client.start(parked_wf, attributes={"price": 1e16, "tiny": 1e-300})
    attributes = (await handle.describe()).attributes
    assert attributes == {"price": 1e16, "tiny": 1e-300}
    assert all(type(value) is float for value in attributes.values())


async def test_large_float_attributes_keep_their_type_and_are_found_by_value(
    client: durable.Client,
) -> None:
    floats = [1e16, -2.5e17, 1.7976931348623157e308, 2.0, 1e-300]
    await client.start(parked_wf, id="floats", attributes={"xs": floats, "one": 1e20})
    await client.start(parked_wf, id="int", attributes={"one": 7})
    async with durable.Worker(client, workflows=[set_attributes_wf]):
        handle = await client.start(set_attributes_wf, attribute_case({"big": 3e30}), id="set")
        assert await outcome(handle) == "set"
    assert (await handle.describe()).attributes == {"big": 3e30}
    assert type((await handle.describe()).attributes["big"]) is float
    attributes = (await client.get_handle("floats").describe()).attributes
    assert attributes == {"xs": floats, "one": 1e20}
    assert all(type(value) is float for value in [*attributes["xs"], attributes["one"]])
    assert await ids(client, attributes={"one": 1e20}) == ["floats"]
    assert await ids(client, attributes={"xs": [1.7976931348623157e308]}) == ["floats"]
    assert await ids(client, attributes={"big": 3e30}) == ["set"]
    assert await ids(client, attributes={"one": 7}) == ["int"]
    assert await ids(client, attributes={"one": 7.0}) == ["int"]  # numbers match by value
    assert await ids(client, attributes={"one": 1e16}) == []


# -------------------------------------------------------------------------- oversized payloads

MiB = 1024 * 1024
BIG = 3 * MiB
UNDER_LIMIT = 3 * MiB // 2


@workflow
async def big_activity_wf(ctx: WorkflowContext, size: int) -> str:
    try:
        result = await ctx.activity(echo_any, b"\xab" * size)
    except PayloadError:
        return "refused"
    return f"scheduled, echoed {len(result)} bytes"


@workflow
async def big_result_wf(ctx: WorkflowContext, size: int) -> bytes:
    return b"\xab" * size


@workflow
async def echo_signal_wf(ctx: WorkflowContext) -> Any:
    signalled = await ctx.wait_signal("value")
    return await ctx.activity(echo_any, signalled)


@workflow
async def length_wf(ctx: WorkflowContext, data: bytes) -> int:
    return len(data)


async def test_oversized_start_argument_is_refused_and_nothing_written(
    client: durable.Client,
) -> None:
    with pytest.raises(PayloadError):
        await client.start(parked_wf, b"\xab" * BIG)
    with pytest.raises(PayloadError):
        await client.signal_with_start(length_wf, b"\xab" * BIG, id="a", signal="value")
    with pytest.raises(PayloadError):
        await client.signal_with_start(
            echo_signal_wf, id="b", signal="value", signal_args=(b"\xab" * BIG,)
        )
    assert await ids(client) == []


async def test_oversized_activity_argument_is_refused_at_call_site(
    client: durable.Client,
) -> None:
    async with durable.Worker(client, workflows=[big_activity_wf], activities=[echo_any]):
        handle = await client.start(big_activity_wf, BIG)
        assert await outcome(handle) == "refused"
    assert "ACTIVITY_SCHEDULED" not in await event_types(handle)


async def test_oversized_signal_is_refused_and_history_unchanged(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[echo_signal_wf], activities=[echo_any]):
        handle = await client.start(echo_signal_wf)

        async def first_step_done() -> bool:
            return "STEP_COMPLETED" in await event_types(handle)

        await wait_for(first_step_done)  # (else the step may be recorded meanwhile)
        before = await event_types(handle)
        with pytest.raises(PayloadError):
            await handle.signal("value", b"\xab" * BIG)
        assert await event_types(handle) == before
        await handle.signal("value", "small")
        assert await outcome(handle) == "small"
    assert (await event_types(handle)).count("SIGNAL_RECEIVED") == 1


async def test_oversized_workflow_result_fails_the_workflow_with_payload_error(
    client: durable.Client,
) -> None:
    async with durable.Worker(client, workflows=[big_result_wf]):
        handle = await client.start(big_result_wf, BIG)
        await settled(handle)
        with pytest.raises(WorkflowFailedError) as info:
            await handle.result(timeout=10)
    cause = info.value.cause
    assert isinstance(cause, durable.ApplicationError)
    assert cause.type == "PayloadError"
    types = await event_types(handle)
    assert "WORKFLOW_COMPLETED" not in types
    assert types[-1] == "WORKFLOW_FAILED"


@activity
async def big_result_activity(size: int) -> bytes:
    return b"\xab" * size


@workflow
async def big_activity_result_wf(ctx: WorkflowContext, size: int) -> str:
    try:
        await ctx.activity(big_result_activity, size)
    except durable.ActivityError as exc:
        return f"{exc.attempt}: {exc.cause}"
    return "completed"


async def test_oversized_activity_result_fails_the_activity_without_retrying(
    client: durable.Client,
) -> None:
    async with durable.Worker(
        client, workflows=[big_activity_result_wf], activities=[big_result_activity]
    ):
        handle = await client.start(big_activity_result_wf, BIG)
        result = await outcome(handle)
    attempt, _, message = result.partition(": ")
    assert attempt == "1"  # the same result would be refused again
    assert message.startswith("PayloadError: ")
    assert "ACTIVITY_COMPLETED" not in await event_types(handle)


@workflow
async def big_query_wf(ctx: WorkflowContext) -> Any:
    ctx.on_query("big", lambda: b"\xab" * BIG)
    ctx.on_update("store", lambda value: len(value))
    return await ctx.wait_signal("stop")


async def test_oversized_update_argument_and_query_result_are_refused(
    client: durable.Client, dsn: str
) -> None:
    async with durable.Worker(client, workflows=[big_query_wf]):
        handle = await client.start(big_query_wf)
        with pytest.raises(PayloadError):
            await handle.update("store", b"\xab" * BIG, timeout=10)
        with pytest.raises((PayloadError, durable.QueryError), match=r"PayloadError|bytes"):
            await handle.query("big", timeout=10)
        assert await handle.update("store", b"small", timeout=10) == 5
        await handle.signal("stop", "done")
        assert await outcome(handle) == "done"
    assert (await event_types(handle)).count("UPDATE_ACCEPTED") == 1
    assert await open_calls(dsn) == 0


def test_payload_limit_is_configurable() -> None:
    """$DURABLE_MAX_PAYLOAD_BYTES sets the limit (read when durable is imported)."""
    script = (
        "import durable\n"
        "from durable._serialization import encode, encode_args\n"
        "encode(b'x' * 900); encode_args([b'x' * 900], {})\n"
        "for call in (lambda: encode(b'x' * 1100), lambda: encode_args([b'x' * 1100], {})):\n"
        "    try:\n"
        "        call()\n"
        "    except durable.PayloadError as exc:\n"
        "        assert '1,000' in str(exc) or '1000' in str(exc), exc\n"
        "    else:\n"
        "        raise SystemExit('not refused')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "DURABLE_MAX_PAYLOAD_BYTES": "1000"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr + done.stdout


def test_default_payload_limit_is_2_mib() -> None:
    if os.environ.get("DURABLE_MAX_PAYLOAD_BYTES"):
        pytest.skip("$DURABLE_MAX_PAYLOAD_BYTES overrides the default")
    from durable._serialization import encode

    header = len(encode(b"x" * 70_000)) - 70_000  # msgpack bin32: 5 bytes
    assert len(encode(b"x" * (2 * MiB - header))) == 2 * MiB  # exactly the limit: accepted
    with pytest.raises(PayloadError, match="2,097,153 bytes encoded, over the limit of 2,097,152"):
        encode(b"x" * (2 * MiB - header + 1))


async def test_payload_under_the_limit_round_trips(client: durable.Client) -> None:
    value = bytes(range(256)) * (UNDER_LIMIT // 256)
    workflows = [echo_signal_wf, length_wf, big_activity_wf, big_result_wf]
    async with durable.Worker(client, workflows=workflows, activities=[echo_any]):
        assert await client.execute(length_wf, value) == len(value)
        handle = await client.start(echo_signal_wf)
        await handle.signal("value", value)
        assert await outcome(handle) == value
        assert await client.execute(big_activity_wf, UNDER_LIMIT) == (
            f"scheduled, echoed {UNDER_LIMIT} bytes"
        )
        assert await client.execute(big_result_wf, UNDER_LIMIT) == b"\xab" * UNDER_LIMIT


# ---------------------------------------------------------------------------- wrong arg types


def _not_decorated() -> None:
    pass


Call = Callable[[durable.Client], Any]

WRONG_TYPES: list[Any] = [
    # client.start / execute / signal_with_start
    ("id", lambda c: c.start(parked_wf, id=123)),
    ("id", lambda c: c.start(parked_wf, id=b"bytes-id")),
    ("task_queue", lambda c: c.start(parked_wf, task_queue=123)),
    ("start_delay", lambda c: c.start(parked_wf, start_delay=5)),
    ("start_delay", lambda c: c.start(parked_wf, start_delay=timedelta(seconds=-1))),
    ("execution_timeout", lambda c: c.start(parked_wf, execution_timeout="5")),
    ("attributes", lambda c: c.start(parked_wf, attributes=[("k", 1)])),
    ("attribute", lambda c: c.start(parked_wf, attributes={"k": {"nested": 1}})),
    ("attribute", lambda c: c.start(parked_wf, attributes={1: "int key"})),
    ("id_reuse_policy", lambda c: c.start(parked_wf, id_reuse_policy=None)),
    ("id_conflict_policy", lambda c: c.start(parked_wf, id_conflict_policy=1)),
    ("workflow", lambda c: c.start(123)),
    ("workflow", lambda c: c.start(_not_decorated)),
    ("workflow", lambda c: c.start("")),
    ("id", lambda c: c.execute(parked_wf, id=1.5)),
    ("signal", lambda c: c.signal_with_start(parked_wf, id="x", signal=None)),
    ("id", lambda c: c.signal_with_start(parked_wf, id=None, signal="go")),
    # handles
    ("workflow_id", lambda c: c.get_handle(123)),
    ("workflow_id", lambda c: c.get_handle(None)),
    ("name", lambda c: c.get_handle("x").signal(123)),
    ("name", lambda c: c.get_handle("x").query(None)),
    ("name", lambda c: c.get_handle("x").update(b"u")),
    # listing
    ("status", lambda c: ids(c, status=1)),
    ("status", lambda c: ids(c, status="RUNNING")),
    ("started_after", lambda c: ids(c, started_after="2024-01-01")),
    ("started_after", lambda c: ids(c, started_after=datetime(2024, 1, 1))),
    ("attributes", lambda c: ids(c, attributes="k=v")),
    # definitions
    ("maximum_attempts", lambda c: RetryPolicy(maximum_attempts=-1)),
    ("maximum_attempts", lambda c: RetryPolicy(maximum_attempts=2.5)),
    ("maximum_attempts", lambda c: RetryPolicy(maximum_attempts="3")),
    ("initial_interval", lambda c: RetryPolicy(initial_interval=1)),
    ("initial_interval", lambda c: RetryPolicy(initial_interval=timedelta(seconds=-1))),
    ("maximum_interval", lambda c: RetryPolicy(maximum_interval="10s")),
    ("backoff_coefficient", lambda c: RetryPolicy(backoff_coefficient="2")),
    ("backoff_coefficient", lambda c: RetryPolicy(backoff_coefficient=0.5)),
    ("non_retryable_error_types", lambda c: RetryPolicy(non_retryable_error_types="KeyError")),
    ("start_to_close_timeout", lambda c: activity(start_to_close_timeout=5)),
    ("schedule_to_close_timeout", lambda c: activity(schedule_to_close_timeout="1m")),
    ("heartbeat_timeout", lambda c: activity(heartbeat_timeout=timedelta(0))),
    ("retry", lambda c: activity(retry={"maximum_attempts": 1})),
    ("name", lambda c: activity(name=123)),
    ("task_queue", lambda c: workflow(task_queue=5)),
    ("start_to_close_timeout", lambda c: echo_text.with_options(start_to_close_timeout=1.0)),
    ("retry", lambda c: echo_text.with_options(retry=3)),
    # workers
    ("task_queue", lambda c: durable.Worker(c, task_queue=None, workflows=[parked_wf])),
    ("workflows", lambda c: durable.Worker(c, workflows=parked_wf)),
    ("workflows", lambda c: durable.Worker(c, workflows=[_not_decorated])),
    ("activities", lambda c: durable.Worker(c, activities=[_not_decorated])),
    ("activities", lambda c: durable.Worker(c, activities=[parked_wf])),
    (
        "max_concurrent_activities",
        lambda c: durable.Worker(c, activities=[echo_text], max_concurrent_activities=0),
    ),
    (
        "max_concurrent_workflow_tasks",
        lambda c: durable.Worker(c, workflows=[parked_wf], max_concurrent_workflow_tasks="10"),
    ),
    ("lease_ttl", lambda c: durable.Worker(c, workflows=[parked_wf], lease_ttl=10)),
    ("poll_interval", lambda c: durable.Worker(c, workflows=[parked_wf], poll_interval=0.5)),
    # more client arguments
    ("timeout", lambda c: c.get_handle("x").result(timeout="5")),
    ("workflow_name", lambda c: ids(c, workflow_name=123)),
    ("signal_args", lambda c: c.signal_with_start(parked_wf, id="x", signal="go", signal_args=5)),
    (  # a string is not an argument tuple: it must not be sent as the arguments "a", "b"
        "signal_args",
        lambda c: c.signal_with_start(parked_wf, id="x", signal="go", signal_args="ab"),
    ),
    ("start_delay", lambda c: c.start(parked_wf, start_delay=timedelta.max)),
    ("execution_timeout", lambda c: c.start(parked_wf, execution_timeout=timedelta.max)),
    # RetryPolicy values that would silently misbehave
    ("backoff_coefficient", lambda c: RetryPolicy(backoff_coefficient=math.nan)),
    (  # classes instead of type names would never match a failure
        "non_retryable_error_types",
        lambda c: RetryPolicy(non_retryable_error_types=[ValueError]),
    ),
]


@pytest.mark.parametrize(
    ("argument", "call"),
    [pytest.param(*case, id=f"{case[0]}-{index}") for index, case in enumerate(WRONG_TYPES)],
)
async def test_wrong_argument_is_refused_naming_it_and_nothing_written(
    client: durable.Client, dsn: str, argument: str, call: Call
) -> None:
    with pytest.raises((TypeError, ValueError)) as info:
        result = call(client)
        if isinstance(result, Awaitable):
            await result
    assert argument in str(info.value)
    assert await ids(client) == []
    await assert_intact(dsn)


@dataclass
class Order:
    order_id: str
    cents: int


@workflow
async def order_wf(ctx: WorkflowContext, order: Order, note: str = "") -> str:
    return f"{order.order_id}: {order.cents} {note}"


UNFIT_STARTS: list[Any] = [
    # (what the error names, the call)
    ("'order'", lambda c: c.start(order_wf, "not-an-order")),
    ("'order'", lambda c: c.start(order_wf, {"order_id": "o-1", "cents": "x"})),
    ("too many positional arguments", lambda c: c.start(order_wf, Order("o-1", 1), "n", 3)),
    ("missing a required argument: 'order'", lambda c: c.start(order_wf)),
    ("'order'", lambda c: c.execute(order_wf, "not-an-order")),
    ("'order'", lambda c: c.signal_with_start(order_wf, "not-an-order", id="s", signal="go")),
    (
        "too many positional arguments",
        lambda c: c.signal_with_start(order_wf, Order("o-1", 1), "n", 3, id="s", signal="go"),
    ),
]


@pytest.mark.parametrize(
    ("named", "call"),
    [pytest.param(*case, id=f"{index}") for index, case in enumerate(UNFIT_STARTS)],
)
async def test_start_refuses_arguments_that_do_not_fit_the_workflow_and_writes_nothing(
    client: durable.Client, dsn: str, named: str, call: Call
) -> None:
    """Checked at the call, against the workflow function, as ctx.child does (the run would
    otherwise be written, then fail on its worker)."""
    with pytest.raises(TypeError) as info:
        await call(client)
    assert named in str(info.value) and "order_wf" in str(info.value), str(info.value)
    assert await ids(client) == []


async def test_start_by_name_refuses_a_wrong_number_of_arguments_and_writes_nothing(
    client: durable.Client,
) -> None:
    """The client does not have the function: the count its workers registered decides."""
    async with durable.Worker(client, workflows=[order_wf, parked_wf]):
        with pytest.raises(TypeError, match=r"'order_wf' takes 1 to 2 arguments, got 3"):
            await client.start("order_wf", {"order_id": "o-1", "cents": 1}, "n", 3)
        with pytest.raises(TypeError, match=r"'order_wf' takes 1 to 2 arguments, got 0"):
            await client.start("order_wf")
        with pytest.raises(TypeError, match=r"'parked_wf' takes no arguments, got 1"):
            await client.signal_with_start("parked_wf", "x", id="s", signal="go")
        assert await ids(client) == []
        handle = await client.start("order_wf", {"order_id": "o-1", "cents": 1})
        assert await outcome(handle) == "o-1: 1 "


@workflow
async def update_counter_wf(ctx: WorkflowContext) -> int:
    count = 0

    def bump(by: int) -> int:
        nonlocal count
        count += by
        return count

    ctx.on_update("bump", bump)
    ctx.on_query("count", lambda: count)
    await ctx.wait_signal("stop")
    return count


async def test_bad_update_and_query_timeout_is_refused_before_anything_is_written(
    client: durable.Client, dsn: str
) -> None:
    async with durable.Worker(client, workflows=[update_counter_wf]):
        handle = await client.start(update_counter_wf)
        assert await handle.update("bump", 1, timeout=10) == 1
        with pytest.raises((TypeError, ValueError), match="timeout"):
            await handle.update("bump", 100, timeout="5")  # type: ignore[arg-type]
        with pytest.raises((TypeError, ValueError), match="timeout"):
            await handle.query("count", timeout="5")  # type: ignore[arg-type]
        assert await handle.query("count", timeout=10) == 1
        await handle.signal("stop")
        assert await outcome(handle) == 1
    assert (await event_types(handle)).count("UPDATE_ACCEPTED") == 1
    assert await open_calls(dsn) == 0


async def test_cancel_and_terminate_refuse_non_string_reason(client: durable.Client) -> None:
    handle = await client.start(parked_wf)
    with pytest.raises((TypeError, ValueError), match="reason"):
        await handle.cancel(reason=123)  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError), match="reason"):
        await handle.terminate(reason=["why"])  # type: ignore[arg-type]
    desc = await handle.describe()
    assert desc.status == "pending"
    assert await event_types(handle) == ["WORKFLOW_STARTED"]


# ---------------------------------------------------------- wrong values inside workflow code


async def _wait_with_asyncio_timeout(ctx: WorkflowContext, seconds: float) -> None:
    async with asyncio.timeout(seconds):
        await ctx.wait_signal("s")


MISUSE: dict[str, Callable[[WorkflowContext], Any]] = {
    "sleep-str": lambda ctx: ctx.sleep("5"),
    "sleep-negative": lambda ctx: ctx.sleep(-1),
    "sleep-bool": lambda ctx: ctx.sleep(True),
    "sleep-nan": lambda ctx: ctx.sleep(math.nan),
    "sleep-1e20": lambda ctx: ctx.sleep(1e20),
    "sleep-timedelta-max": lambda ctx: ctx.sleep(timedelta.max),
    "sleep-until-naive": lambda ctx: ctx.sleep_until(datetime(2030, 1, 1)),
    "sleep-until-str": lambda ctx: ctx.sleep_until("2030-01-01"),
    "wait-signal-timeout-str": lambda ctx: ctx.wait_signal("s", timeout="5"),
    "wait-signal-timeout-nan": lambda ctx: ctx.wait_signal("s", timeout=math.nan),
    "wait-signal-timeout-1e20": lambda ctx: ctx.wait_signal("s", timeout=1e20),
    "wait-signal-name-int": lambda ctx: ctx.wait_signal(123, timeout=0.01),
    "asyncio-sleep-nan": lambda ctx: asyncio.sleep(math.nan),
    "asyncio-timeout-1e20": lambda ctx: _wait_with_asyncio_timeout(ctx, 1e20),
    "wait-until-timeout-str": lambda ctx: ctx.wait_until(lambda: False, timeout="1"),
    "wait-until-not-callable": lambda ctx: ctx.wait_until(True),
    "activity-int": lambda ctx: ctx.activity(123),
    "activity-empty-name": lambda ctx: ctx.activity(""),
    "activity-undecorated": lambda ctx: ctx.activity(_not_decorated),
    "local-activity-name": lambda ctx: ctx.local_activity("echo_text", "x"),
    "child-int": lambda ctx: ctx.child(123),
    "child-kwargs": lambda ctx: ctx.start_child(parked_wf, x=1),
    "child-wrong-type": lambda ctx: ctx.start_child(order_wf, "not-an-order"),
    "set-attributes-object": lambda ctx: ctx.set_attributes(k=object()),
    "set-attributes-dict": lambda ctx: ctx.set_attributes(k={"a": 1}),
    "side-effect-not-callable": lambda ctx: ctx.side_effect(5),
    "patched-empty": lambda ctx: ctx.patched(""),
    "on-signal-not-callable": lambda ctx: ctx.on_signal("s", "handler"),
    "on-query-not-callable": lambda ctx: ctx.on_query("q", None),
    "on-update-validator": lambda ctx: ctx.on_update("u", echo_text, validator=1),
}


@workflow
async def misuse_wf(ctx: WorkflowContext, case: str) -> str:
    try:
        value = MISUSE[case](ctx)
        if isinstance(value, Awaitable):
            await value
    except (TypeError, ValueError) as exc:
        return f"refused: {exc}"
    except Exception as exc:
        return f"raised {type(exc).__name__}: {exc}"
    return "accepted"


MISUSE_CASES: list[Any] = [
    ("sleep-str", "duration"),
    ("sleep-negative", "duration"),
    ("sleep-bool", "duration"),
    ("sleep-until-naive", "when"),
    ("sleep-until-str", "when"),
    ("wait-signal-timeout-str", "timeout"),
    ("wait-until-timeout-str", "timeout"),
    ("wait-until-not-callable", "predicate"),
    ("activity-int", "activity"),
    ("activity-empty-name", "activity"),
    ("activity-undecorated", "activity"),
    ("local-activity-name", "activity"),
    ("child-int", "workflow"),
    ("child-kwargs", "do not fit child workflow"),
    ("child-wrong-type", "do not fit child workflow 'order_wf': cannot decode args[0] ('order')"),
    ("set-attributes-object", "'k'"),
    ("set-attributes-dict", "'k'"),
    ("side-effect-not-callable", "fn"),
    ("patched-empty", "change_id"),
    ("on-signal-not-callable", "handler"),
    ("on-query-not-callable", "fn"),
    ("on-update-validator", "validator"),
    # durations that cannot become a stored timer
    ("sleep-nan", "duration"),
    ("sleep-1e20", "duration"),
    ("sleep-timedelta-max", "duration"),
    ("wait-signal-timeout-nan", "timeout"),
    ("wait-signal-timeout-1e20", "timeout"),
    ("asyncio-sleep-nan", "timer"),
    ("asyncio-timeout-1e20", "timer"),
    ("wait-signal-name-int", "name"),
]


@pytest.mark.parametrize(("case", "argument"), [pytest.param(*c, id=c[0]) for c in MISUSE_CASES])
async def test_wrong_values_in_workflow_code_raise_at_the_call_site(
    client: durable.Client, case: str, argument: str
) -> None:
    async with durable.Worker(client, workflows=[misuse_wf, parked_wf]):
        handle = await client.start(misuse_wf, case)
        result = await outcome(handle)
    assert result.startswith("refused: "), result
    assert argument in result
    recorded = set(await event_types(handle))
    assert recorded <= {"WORKFLOW_STARTED", "WORKFLOW_COMPLETED"}, recorded


@workflow
async def sleep_forever_wf(ctx: WorkflowContext) -> str:
    try:
        await ctx.sleep(math.inf)
    except (TypeError, ValueError) as exc:
        return f"refused: {exc}"
    return "woke up"


async def test_infinite_sleep_is_refused_or_sleeps_until_cancelled(
    client: durable.Client,
) -> None:
    async with durable.Worker(client, workflows=[sleep_forever_wf]):
        handle = await client.start(sleep_forever_wf)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 15
        while True:  # wait until the first workflow task finished, one way or another
            desc = await handle.describe()
            assert desc.last_error is None, desc.last_error
            if desc.closed_at is not None or "TIMER_STARTED" in await event_types(handle):
                break
            assert loop.time() < give_up
            await asyncio.sleep(0.02)
        if desc.closed_at is not None:
            assert "duration" in await handle.result()
        else:  # sleeping forever is fine too, as long as the workflow stays healthy
            await handle.cancel()
            with pytest.raises(durable.WorkflowCancelledError):
                await outcome(handle)


async def test_a_worker_runs_once(client: durable.Client) -> None:
    worker = durable.Worker(client, task_queue="runs-once", workflows=[parked_wf])
    async with worker:
        pass
    with pytest.raises(RuntimeError, match=r"a Worker runs once; create a new durable\.Worker"):
        async with worker:
            pass
    with pytest.raises(RuntimeError, match="has run already"):
        await worker.run()
