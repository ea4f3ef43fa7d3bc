"""durable.testing.Replayer: histories from handle.history(), `durable history --json` and
`durable export` files, replayed against workflow code, on a real Postgres."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import durable
from durable import ActivityError, ApplicationError, WorkflowContext, activity, workflow
from durable.testing import Replayer
from tests.conftest import wait_for

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Order:
    order_id: int
    amount: Decimal
    due: date


@activity
async def charge(order: Order) -> Decimal:
    return order.amount * 2


@activity
async def reserve(order_id: int) -> None:
    raise ApplicationError("out of stock", {"retry_in": 3}, type="OutOfStock", non_retryable=True)


@activity
async def ship(order_id: int, days: int) -> str:
    return f"order {order_id} ships in {days} days"


@activity
async def cancel_order(order_id: int) -> str:
    return f"order {order_id} cancelled"


@workflow(name="checkout")
async def checkout(ctx: WorkflowContext, order: Order) -> str:
    """Payloads of every kind in its history: a dataclass argument (Decimal, date), a
    Decimal result, a failure whose details it branches on, a timer, a side effect, a
    signal."""
    assert isinstance(order.amount, Decimal) and isinstance(order.due, date)
    total = await ctx.activity(charge, order)
    try:
        await ctx.activity(reserve, order.order_id)
        days = 0
    except ActivityError as exc:
        assert isinstance(exc.cause, ApplicationError)
        days = exc.cause.details[0]["retry_in"]
    await ctx.sleep(timedelta(milliseconds=10))
    note = await ctx.side_effect(lambda: "noted")
    await ctx.wait_signal("go")
    if days != 3:  # the failure's details as recorded, or this issues another command
        return await ctx.activity(cancel_order, order.order_id)
    shipped = await ctx.activity(ship, order.order_id, days)
    return f"{shipped}, {total}, {note}"


@workflow(name="checkout")
async def checkout_changed(ctx: WorkflowContext, order: Order) -> str:
    """checkout, changed incompatibly: its second activity is another one."""
    await ctx.activity(charge, order)
    return await ctx.activity(cancel_order, order.order_id)


@workflow(name="greeting")
async def greeting(ctx: WorkflowContext, name: str) -> str:
    return await ctx.activity(ship, len(name), 1)


ORDER = Order(7, Decimal("12.50"), date(2026, 5, 1))


def _worker(client: durable.Client) -> durable.Worker:
    return durable.Worker(
        client,
        workflows=[checkout, greeting],
        activities=[charge, reserve, ship, cancel_order],
        poll_interval=timedelta(milliseconds=100),
    )


async def _run_checkout(client: durable.Client, workflow_id: str) -> durable.WorkflowHandle[str]:
    handle = await client.start(checkout, ORDER, id=workflow_id)
    await handle.signal("go")
    assert await handle.result(timeout=20) == "order 7 ships in 3 days, 25.00, noted"
    return handle


async def _cli(dsn: str, *argv: str) -> str:
    """`durable ARGV --dsn DSN` run as a subprocess; its standard output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "durable",
        *argv,
        "--dsn",
        dsn,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def _history_file(dsn: str, workflow_id: str, path: Path) -> Path:
    path.write_text(await _cli(dsn, "history", workflow_id, "--json"), encoding="utf-8")
    return path


async def _export_file(dsn: str, path: Path) -> Path:
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    await _cli(dsn, "export", "--closed-before", tomorrow, "-o", str(path))
    return path


# ---------------------------------------------------------------------------- histories
async def test_a_completed_history_replays_clean(client: durable.Client) -> None:
    async with _worker(client):
        handle = await _run_checkout(client, "order-7")
    history = await handle.history()

    result = await Replayer(workflows=[checkout]).replay([history])
    assert result.replayed == 1
    assert Replayer(workflows=[checkout, greeting]).replay_sync([history, history]).replayed == 2


async def test_changed_code_raises_nondeterminism_naming_the_history(
    client: durable.Client,
) -> None:
    async with _worker(client):
        handle = await _run_checkout(client, "order-7")
    history = await handle.history()

    with pytest.raises(durable.NondeterminismError) as raised:
        await Replayer(workflows=[checkout_changed]).replay([history])
    message = str(raised.value)
    assert message.startswith("history #0 ")
    assert "'checkout'" in message and "at seq" in message
    assert "cancel_order" in message and "reserve" in message  # what was issued, and recorded


async def test_a_history_json_file_replays_clean(
    client: durable.Client, dsn: str, tmp_path: Path
) -> None:
    async with _worker(client):
        await _run_checkout(client, "order-7")
    path = await _history_file(dsn, "order-7", tmp_path / "order-7.json")

    assert (await Replayer(workflows=[checkout]).replay([path, str(path)])).replayed == 2
    with pytest.raises(durable.NondeterminismError, match=f"^{path} .*cancel_order"):
        await Replayer(workflows=[checkout_changed]).replay([path])


async def test_an_export_file_replays_every_run_and_names_the_line_that_diverges(
    client: durable.Client, dsn: str, tmp_path: Path
) -> None:
    async with _worker(client):
        first = await client.start(greeting, "ann", id="greeting-1")
        await first.result(timeout=20)  # closed first: the export's first line
        await _run_checkout(client, "order-7")
        await _run_checkout(client, "order-8")
    path = await _export_file(dsn, tmp_path / "closed.jsonl")
    assert len(path.read_text().splitlines()) == 3

    assert (await Replayer(workflows=[checkout, greeting]).replay([path])).replayed == 3
    run = await client.get_handle("order-7").describe()
    with pytest.raises(durable.NondeterminismError) as raised:
        await Replayer(workflows=[checkout_changed, greeting]).replay([path])
    message = str(raised.value)
    assert message.startswith(f"{path}:2 (workflow id 'order-7', run id {run.run_id}): ")
    assert "at seq" in message and "cancel_order" in message


# ---------------------------------------------------------------------------- errors
async def test_a_history_of_a_workflow_not_given_is_refused_by_name(
    client: durable.Client,
) -> None:
    async with _worker(client):
        handle = await client.start(greeting, "bo", id="greeting-1")
        await handle.result(timeout=20)
    with pytest.raises(ValueError, match=r"workflow 'greeting'.*given 'checkout'"):
        await Replayer(workflows=[checkout]).replay([await handle.history()])


async def test_malformed_files_name_the_file_the_line_and_the_problem(
    client: durable.Client, dsn: str, tmp_path: Path
) -> None:
    async with _worker(client):
        await _run_checkout(client, "order-7")
        await _run_checkout(client, "order-8")
    replayer = Replayer(workflows=[checkout])

    exported = (await _export_file(dsn, tmp_path / "good.jsonl")).read_text().splitlines()
    cut = _write(tmp_path / "cut.jsonl", exported[0], exported[1][:40])
    with pytest.raises(ValueError, match=f"^{cut}:2: not a JSON document: "):
        await replayer.replay([cut])

    text = (await _history_file(dsn, "order-7", tmp_path / "good.json")).read_text()
    lines = text.replace('"TIMER_FIRED"', '"TIMER_GONE"').splitlines()
    bad_type = _write(tmp_path / "type.json", *lines)
    event_line = _line_of_event_holding(lines, "TIMER_GONE")
    with pytest.raises(
        ValueError, match=rf"^{bad_type}:{event_line}: event #\d+ \(seq \d+\): 'TIMER_GONE' is not"
    ):
        await replayer.replay([bad_type])

    no_seq = _write(tmp_path / "seq.json", *(ln for ln in text.splitlines() if '"seq"' not in ln))
    with pytest.raises(ValueError, match=rf"^{no_seq}:2: event #0: the event has no 'seq'"):
        await replayer.replay([no_seq])

    (tmp_path / "text.json").write_text("hello")
    with pytest.raises(ValueError, match=f"^{tmp_path / 'text.json'}: .*durable history ID --json"):
        await replayer.replay([tmp_path / "text.json"])
    (tmp_path / "none.jsonl").write_text("")  # what `durable export` writes for no run
    assert (await replayer.replay([tmp_path / "none.jsonl"])).replayed == 0


def test_what_the_replayer_takes_is_checked() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Replayer(workflows=[])
    with pytest.raises(TypeError, match=r"@durable\.workflow"):
        Replayer(workflows=[charge])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="two workflow definitions are named 'checkout'"):
        Replayer(workflows=[checkout, checkout_changed])
    replayer = Replayer(workflows=[checkout])
    with pytest.raises(TypeError, match=r"pass \[history\], not history"):
        replayer.replay_sync([durable.HistoryEvent(1, "WORKFLOW_STARTED", datetime.now(UTC), {})])
    with pytest.raises(TypeError, match="iterable of histories or paths"):
        replayer.replay_sync("history.json")


def _write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _line_of_event_holding(lines: list[str], text: str) -> int:
    """The line (1-based) where the event of `durable history --json` holding ``text``
    begins (its "{", indented by the array's two spaces)."""
    index = next(i for i, line in enumerate(lines) if text in line)
    return next(i for i in range(index, -1, -1) if lines[i] == "  {") + 1


async def test_the_open_runs_export_for_checking_a_deploy(
    dsn: str, client: durable.Client, tmp_path: Path
) -> None:
    """`durable export --open`: the runs a new deploy must resume, replayed before it ships."""
    async with _worker(client):
        waiting = await client.start(checkout, ORDER, id="order-open")

        async def waits_for_go() -> bool:
            return any(e.type == "TIMER_FIRED" for e in await waiting.history())

        await wait_for(waits_for_go, timeout=20)
        await asyncio.sleep(0.3)  # (its side effect's step commits next)
        path = tmp_path / "open.jsonl"
        await _cli(dsn, "export", "--open", "-o", str(path))
        await waiting.signal("go")
        await waiting.result(timeout=20)
    assert len(path.read_text().splitlines()) == 1
    assert (await Replayer(workflows=[checkout]).replay([path])).replayed == 1
    with pytest.raises(durable.NondeterminismError, match=r"open\.jsonl:1"):
        await Replayer(workflows=[checkout_changed]).replay([path])


@workflow(name="random_child_parent")
async def random_child_parent(ctx: WorkflowContext) -> str:
    """Its child's id comes from ctx.uuid4(): replay must seed randomness as the run did."""
    child = greeting.with_options(id=f"child-{ctx.uuid4()}")
    return await ctx.child(child, "ann")


async def test_a_history_alone_replays_randomness_as_recorded(client: durable.Client) -> None:
    async with durable.Worker(client, workflows=[random_child_parent, greeting], activities=[ship]):
        handle = await client.start(random_child_parent)
        await handle.result(timeout=20)
    history = await handle.history()  # no run id in it: the start event names the seed
    assert (await Replayer(workflows=[random_child_parent]).replay([history])).replayed == 1
