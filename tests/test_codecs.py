"""Payload codecs: compression and AES-GCM encryption with key rotation, applied to every
stored value that can hold user data. The end-to-end tests scan every table for a marker
string: with encryption on it must appear nowhere, with it off it must appear (so the scan
can fail)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import zlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

import durable
from durable import (
    AesGcmCodec,
    ApplicationError,
    PayloadCodec,
    PayloadError,
    RetryPolicy,
    WorkflowContext,
    ZlibCodec,
    activity,
    activity_context,
    workflow,
)
from durable._cli import main
from durable._codecs import Codecs

from .conftest import wait_for

SECRET = "SECRET-7f3a9c"
KEY_1, KEY_2 = os.urandom(32), os.urandom(32)
TABLES = ("workflows", "history", "inbox", "activity_tasks", "calls")


@contextlib.asynccontextmanager
async def serving(
    dsn: str, codecs: list[PayloadCodec], queue: str, *definitions: Any
) -> AsyncIterator[durable.Client]:
    """A client with these codecs and a worker for ``definitions`` running beside it."""
    workflows = [d for d in definitions if isinstance(d, durable.WorkflowDefinition)]
    activities = [d for d in definitions if isinstance(d, durable.ActivityDefinition)]
    async with (
        await durable.Client.connect(dsn, codecs=codecs) as client,
        durable.Worker(client, task_queue=queue, workflows=workflows, activities=activities),
    ):
        yield client


def encrypting(*, encrypt_with: str = "k1", **keys: bytes) -> list[PayloadCodec]:
    return [ZlibCodec(), AesGcmCodec(keys or {"k1": KEY_1}, encrypt_with=encrypt_with)]


# ---------------------------------------------------------------------------- the codecs alone


def test_a_chain_round_trips_and_plain_values_pass_through() -> None:
    chain = Codecs(encrypting())
    for value in (b"\x80", b"\x93\x01\x02\x03", b"\xa5hello" * 1000):
        sealed = chain.seal(value)
        assert sealed != value and sealed[0] == 0xC1
        assert chain.open(sealed) == value
    assert chain.open(b"\x92\x01\x02") == b"\x92\x01\x02"  # written before codecs were on
    assert chain.seal(None) is None and chain.open(None) is None


def test_compression_is_kept_only_when_it_pays() -> None:
    codec = ZlibCodec(min_size=64)
    assert codec.encode(b"x" * 63) is None
    assert codec.encode(os.urandom(4096)) is None  # incompressible
    packed = Codecs([codec]).seal(b"x" * 100_000)
    assert len(packed) < 1_000


def test_a_compression_bomb_is_refused() -> None:
    bomb = bytes([0xC1, 4]) + b"zlib" + zlib.compress(b"\0" * (80 * 1024 * 1024), 9)
    with pytest.raises(PayloadError, match="expands beyond"):
        Codecs([ZlibCodec()]).open(bomb)


def test_old_keys_decrypt_and_the_chosen_key_encrypts() -> None:
    old = Codecs(encrypting(k1=KEY_1))
    rotated = Codecs(encrypting(encrypt_with="k2", k1=KEY_1, k2=KEY_2))
    written_before = old.seal(b"\xa3abc")
    written_after = rotated.seal(b"\xa3xyz")
    assert b"k2" in written_after[:40] and b"k1" not in written_after[:40]
    assert rotated.open(written_before) == b"\xa3abc"
    with pytest.raises(PayloadError, match=r"key id 'k2'.*keep old keys"):
        old.open(written_after)


def test_tampering_and_wrong_keys_fail_authentication() -> None:
    chain = Codecs([AesGcmCodec({"k1": KEY_1}, encrypt_with="k1")])
    sealed = bytearray(chain.seal(b"\xa3abc"))
    sealed[-1] ^= 1
    with pytest.raises(PayloadError, match="failed authentication"):
        chain.open(bytes(sealed))
    impostor = Codecs([AesGcmCodec({"k1": KEY_2}, encrypt_with="k1")])
    with pytest.raises(PayloadError, match="failed authentication"):
        impostor.open(chain.seal(b"\xa3abc"))
    with pytest.raises(PayloadError, match="truncated"):
        chain.open(bytes(sealed[:12]))


def test_a_reader_without_the_codec_is_told_which_one_it_needs() -> None:
    sealed = Codecs(encrypting()).seal(b"\xa3abc")
    with pytest.raises(PayloadError, match=r"codec 'aes-gcm'.*codecs="):
        Codecs().open(sealed)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: AesGcmCodec({"k1": b"short"}, encrypt_with="k1"), "16, 24 or 32 bytes"),
        (lambda: AesGcmCodec({"k1": KEY_1}, encrypt_with="k9"), "encrypt_with='k9'"),
        (lambda: AesGcmCodec({}, encrypt_with="k1"), "non-empty mapping"),
        (lambda: AesGcmCodec({"": KEY_1}, encrypt_with=""), "key id ''"),
        (lambda: ZlibCodec(level=11), "level=11"),
        (lambda: Codecs([ZlibCodec(), ZlibCodec()]), "two codecs are named 'zlib'"),
    ],
)
def test_bad_codec_settings_are_refused_with_the_fix(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


async def test_a_client_refuses_something_that_is_not_a_codec(dsn: str) -> None:
    with pytest.raises(TypeError, match=r"not a durable\.PayloadCodec"):
        await durable.Client.connect(dsn, codecs=[zlib])  # type: ignore[list-item]


# ---------------------------------------------------------------------------- end to end

SEEN: list[Any] = []


@activity(
    retry=RetryPolicy(initial_interval=timedelta(seconds=3), maximum_attempts=2),
    heartbeat_timeout=timedelta(seconds=1),
)
async def keep_secret(secret: str) -> str:
    ctx = activity_context()
    if ctx.info.attempt == 1:
        ctx.heartbeat(f"progress of {secret}")
        await asyncio.sleep(0.8)  # past the flush interval (half the heartbeat timeout)
        raise ApplicationError(f"first attempt failed for {secret}", {"card": secret})
    SEEN.append(ctx.heartbeat_details)
    return f"kept {secret}"


@workflow
async def secret_keeper(ctx: WorkflowContext, secret: str) -> dict[str, str]:
    state = {"status": f"holding {secret}"}
    ctx.on_query("status", lambda: state["status"])

    def add(note: str) -> str:
        state["note"] = note
        return f"noted {note}"

    ctx.on_update("note", add)
    kept = await ctx.activity(keep_secret, secret)
    await ctx.wait_signal("go")
    await ctx.wait_until(lambda: "note" in state)
    ctx.set_attributes(stage="done")
    return {"kept": kept, "note": state["note"]}


async def stored_values(dsn: str) -> list[tuple[str, str, Any]]:
    """Every value of every row of durable's tables, as (table, column, value)."""
    conn = await asyncpg.connect(dsn)
    try:
        found = []
        for table in TABLES:
            for row in await conn.fetch(f"SELECT * FROM durable.{table}"):
                found.extend((table, column, value) for column, value in row.items())
        return found
    finally:
        await conn.close()


def places_holding(values: list[tuple[str, str, Any]], marker: str) -> set[str]:
    needle = marker.encode()
    places = set()
    for table, column, value in values:
        raw = value if isinstance(value, bytes) else json.dumps(value, default=str).encode()
        if needle in raw:
            places.add(f"{table}.{column}")
    return places


async def run_secret_keeper(dsn: str, codecs: list[PayloadCodec]) -> tuple[set[str], set[str]]:
    """Run the workflow through every kind of payload; returns where the secret was stored,
    while the activity waits for its retry and at the end."""
    async with serving(dsn, codecs, "secrets", secret_keeper, keep_secret) as client:
        handle = await client.start(secret_keeper, SECRET, id="keeper", task_queue="secrets")
        parked = await client.start(secret_keeper, SECRET, id="parked", task_queue="nobody")
        await parked.signal("go", f"go {SECRET}")  # no worker: stays in the inbox
        await wait_for(lambda: _retry_pending(dsn), timeout=30)
        during_retry = places_holding(await stored_values(dsn), SECRET)
        assert await handle.query("status") == f"holding {SECRET}"
        await handle.signal("go", f"go {SECRET}")
        assert await handle.update("note", f"note {SECRET}") == f"noted note {SECRET}"
        result = await handle.result(timeout=60)
        assert result == {"kept": f"kept {SECRET}", "note": f"note {SECRET}"}
        assert SEEN[-1] == (f"progress of {SECRET}",)
        history = await handle.history()
        assert any(SECRET in json.dumps(e.__dict__, default=str) for e in history)
        at_end = places_holding(await stored_values(dsn), SECRET)
    return during_retry, at_end


async def _retry_pending(dsn: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(
            await conn.fetchval(
                "SELECT count(*) FROM durable.activity_tasks WHERE last_failure IS NOT NULL"
            )
        )
    finally:
        await conn.close()


async def test_without_codecs_the_scan_finds_the_secret_everywhere(dsn: str) -> None:
    during_retry, at_end = await run_secret_keeper(dsn, [])
    assert {
        "activity_tasks.args",
        "activity_tasks.last_failure",
        "activity_tasks.heartbeat_details",
        "history.body",
        "inbox.body",
    } <= during_retry
    assert {"history.body", "workflows.result"} <= at_end


async def test_with_encryption_no_table_holds_the_secret(dsn: str) -> None:
    during_retry, at_end = await run_secret_keeper(dsn, encrypting())
    assert during_retry == set()
    assert at_end == set()


async def test_a_client_without_the_key_cannot_read_but_is_told_why(dsn: str) -> None:
    await run_secret_keeper(dsn, encrypting())
    async with await durable.Client.connect(dsn) as blind:
        handle = blind.get_handle("keeper")
        assert (await handle.describe()).status == "completed"
        with pytest.raises(PayloadError, match="codec 'aes-gcm'"):
            await handle.result()
        with pytest.raises(PayloadError, match="codec 'aes-gcm'"):
            await handle.history()


@workflow
async def two_phase(ctx: WorkflowContext, first: str) -> list[str]:
    second = await ctx.wait_signal("second")
    return [first, second]


async def test_rotating_keys_keeps_old_histories_readable(dsn: str) -> None:
    async with serving(dsn, encrypting(k1=KEY_1), "rot", two_phase) as client:
        handle = await client.start(two_phase, "alpha", id="rot", task_queue="rot")
        await wait_for(lambda: _status_is(handle, "running"), timeout=30)
    rotated = encrypting(encrypt_with="k2", k1=KEY_1, k2=KEY_2)
    async with serving(dsn, rotated, "rot", two_phase) as client:
        await client.get_handle("rot").signal("second", "beta")
        assert await client.get_handle("rot").result(timeout=30) == ["alpha", "beta"]
    conn = await asyncpg.connect(dsn)
    try:
        bodies = [r["body"] for r in await conn.fetch("SELECT body FROM durable.history")]
    finally:
        await conn.close()
    key_ids = {body[10:12] for body in bodies}  # 0xC1 7 "aes-gcm" len id
    assert key_ids == {b"k1", b"k2"}, bodies
    async with await durable.Client.connect(
        dsn, codecs=encrypting(k2=KEY_2, encrypt_with="k2")
    ) as c:
        with pytest.raises(PayloadError, match="key id 'k1'"):
            await c.get_handle(handle.workflow_id).history()


async def _status_is(handle: durable.WorkflowHandle[Any], status: str) -> bool:
    return (await handle.describe()).status == status


@workflow
async def echo_big(ctx: WorkflowContext, text: str) -> str:
    return text


async def test_compression_shrinks_what_is_stored(dsn: str) -> None:
    text = "all work and no play " * 20_000  # 420 KB
    async with serving(dsn, [ZlibCodec()], "zip", echo_big) as client:
        assert await client.execute(echo_big, text, task_queue="zip") == text
    conn = await asyncpg.connect(dsn)
    try:
        stored = await conn.fetchval(
            "SELECT sum(octet_length(body)) FROM durable.history"
        ) + await conn.fetchval("SELECT sum(octet_length(result)) FROM durable.workflows")
    finally:
        await conn.close()
    assert stored < len(text) / 20


# ---------------------------------------------------------------------------- the CLI

CLI_CODECS = encrypting()


async def test_the_cli_reads_encrypted_histories_with_codecs(
    dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serving(dsn, CLI_CODECS, "cli", echo_big) as client:
        await client.execute(echo_big, SECRET, id="cli-secret", task_queue="cli")
    code = await asyncio.to_thread(main, ["history", "cli-secret", "--dsn", dsn, "--json"])
    assert code == 2 and "codec 'aes-gcm'" in capsys.readouterr().err
    monkeypatch.setenv("DURABLE_CODECS", "tests.test_codecs:CLI_CODECS")
    code = await asyncio.to_thread(main, ["history", "cli-secret", "--dsn", dsn, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert SECRET in out
