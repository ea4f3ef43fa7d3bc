"""Checked by mypy and pyright (tests/test_typing.py), which must find no error here: the
public API carries the user's types through, and accepts every call that fits the
functions' parameters. typing_errors.py holds the calls they must refuse."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, assert_type

import durable
from durable import ChildWorkflowHandle, WorkflowContext, WorkflowHandle, activity, workflow


@dataclass
class Receipt:
    total: int


@dataclass
class Order:
    card: str
    cents: int


@activity
async def add(a: int, b: int) -> int:
    return a + b


@activity
def shout(text: str) -> str:
    return text.upper()


@activity
async def charge(card: str, cents: int, *, note: str = "") -> Receipt:
    return Receipt(cents)


@workflow
async def checkout(ctx: WorkflowContext, items: list[int]) -> Receipt:
    total = 0
    for item in items:
        total = await ctx.activity(add, total, item)
        assert_type(total, int)
    loud = await ctx.local_activity(shout, "hi")
    assert_type(loud, str)
    task = ctx.start_activity(shout, "x")
    assert_type(await task, str)
    child = await ctx.child(child_flow, 3)
    assert_type(child, str)
    receipt = await ctx.activity(charge, "card", 100, note="n")
    assert_type(receipt, Receipt)
    quick = charge.with_options(start_to_close_timeout=timedelta(seconds=5))
    assert_type(await ctx.activity(quick, "card", 5), Receipt)
    assert_type(await ctx.local_activity(charge, card="c", cents=1), Receipt)
    started = ctx.start_child(child_flow, 4)
    assert_type(started, ChildWorkflowHandle[str])
    assert_type(await started, str)
    assert_type(await ctx.child(child_flow.with_options(id="c"), 5), str)
    assert_type(await ctx.child("child", 6), Any)
    assert_type(await ctx.activity("shout", "by name"), Any)
    assert_type(await ctx.activity(remote_charge, "card", 5), Receipt)
    assert_type(ctx.start_activity(remote_charge, "card", 5), asyncio.Task[Receipt])
    once = remote_charge.with_options(retry=durable.RetryPolicy(maximum_attempts=1))
    assert_type(await ctx.activity(once, "card", 5), Receipt)
    assert_type(await ctx.activity(durable.activity_ref("audit"), "x"), Any)
    assert_type(await ctx.activity(rates, "EUR"), dict[str, float])
    return Receipt(total)


remote_charge = durable.activity_ref("payments.charge", returns=Receipt, task_queue="payments")
assert_type(remote_charge, durable.ActivityRef[Receipt])
rates = durable.activity_ref("rates", returns=dict[str, float])


@workflow(name="child")
async def child_flow(ctx: WorkflowContext, n: int) -> str:
    return str(n)


@workflow
async def order_flow(ctx: WorkflowContext, order: Order) -> Receipt:
    return await ctx.activity(charge, order.card, order.cents)


@workflow
async def no_args(ctx: WorkflowContext) -> None:
    pass


@workflow
async def defaults(ctx: WorkflowContext, a: int, b: str = "b", *, c: float = 1.0) -> str:
    return f"{a}{b}{c}"


@workflow
async def many(ctx: WorkflowContext, a: int, b: int, c: int, d: int, e: int, f: int) -> int:
    return a + b + c + d + e + f


@workflow
async def four(ctx: WorkflowContext, a: int, b: str, c: bytes, d: Order) -> int:
    return a


async def client_side(client: durable.Client, items: list[list[int]]) -> None:
    receipt = await client.execute(checkout, [1, 2])
    assert_type(receipt, Receipt)
    handle = await client.start(checkout, [1], id="x")
    assert_type(await handle.result(), Receipt)
    order = Order("4242", 100)
    assert_type(await client.execute(order_flow, order, id="o", task_queue="q"), Receipt)
    assert_type(await client.start(no_args, start_delay=timedelta(1)), WorkflowHandle[None])
    debounced = await client.start(
        checkout, [1], id="d", debounce=timedelta(seconds=5), debounce_max=timedelta(minutes=1)
    )
    assert_type(debounced, WorkflowHandle[Receipt])
    assert_type(await client.execute(defaults, 1), str)
    assert_type(await client.execute(defaults, 1, "x", id_reuse_policy="reject_duplicate"), str)
    assert_type(await client.execute(four, 1, "b", b"c", order), int)
    assert_type(await client.execute(many, 1, 2, 3, 4, 5, 6), int)  # more than 4: unchecked
    assert_type(await client.start(checkout, *items), WorkflowHandle[Receipt])
    assert_type(await client.start(order_flow.with_options(id="w"), order), WorkflowHandle[Receipt])
    assert_type(await client.start("checkout", [1], id="by-name"), WorkflowHandle[Any])
    assert_type(await client.execute("checkout", [1]), Any)
    assert_type(await client.start(workflow="checkout", id="kw"), WorkflowHandle[Any])
    assert_type(await client.start(workflow=no_args), WorkflowHandle[None])
    signalled = await client.signal_with_start(
        order_flow, order, id="s", signal="approve", signal_args=(True,)
    )
    assert_type(signalled, WorkflowHandle[Receipt])


async def handles(client: durable.Client) -> None:
    assert_type(client.get_handle("x"), WorkflowHandle[Any])
    assert_type(client.get_handle("x", run_id="r", result_type=None), WorkflowHandle[Any])
    typed = client.get_handle("x", result_type=Order)
    assert_type(typed, WorkflowHandle[Order])
    assert_type(await typed.result(timeout=1), Order)
    listed = client.get_handle("x", result_type=list[Order])
    assert_type(await listed.result(), list[Order])
    assert_type(client.get_handle("x", result_type=Order | None), WorkflowHandle[Any])


def sync_side(sync: durable.SyncClient) -> None:
    order = Order("4242", 100)
    assert_type(sync.execute(order_flow, order, id="o"), Receipt)
    started = sync.start(order_flow, order)
    assert_type(started, durable.SyncWorkflowHandle[Receipt])
    assert_type(started.result(), Receipt)
    assert_type(sync.execute(defaults, 1, "x"), str)
    assert_type(sync.start("order_flow", order), durable.SyncWorkflowHandle[Any])
    signalled = sync.signal_with_start(order_flow, order, id="s", signal="go")
    assert_type(signalled, durable.SyncWorkflowHandle[Receipt])
    typed = sync.get_handle("x", result_type=Order)
    assert_type(typed, durable.SyncWorkflowHandle[Order])
    assert_type(typed.result(), Order)
    assert_type(sync.get_handle("x").result(), Any)
