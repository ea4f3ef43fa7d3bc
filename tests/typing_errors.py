"""Calls that mypy and pyright must refuse (tests/test_typing.py): each line marked
``# expect-error`` must be reported as an error by both, and no other line may be.

A marked line that stops being reported means the checking stopped working (say, a
signature went back to ``*args: Any``); keep every marked call on one line. Never imported.
"""

from __future__ import annotations

from dataclasses import dataclass

import durable
from durable import WorkflowContext, activity, workflow


@dataclass
class Order:
    card: str
    cents: int


@dataclass
class Receipt:
    total: int


@activity
async def charge(card: str, cents: int) -> Receipt:
    return Receipt(cents)


@workflow
async def order_workflow(ctx: WorkflowContext, order: Order) -> Receipt:
    return Receipt(order.cents)


@workflow
async def pair(ctx: WorkflowContext, a: int, b: str = "b") -> str:
    return f"{a}{b}"


async def plain(ctx: WorkflowContext, order: Order) -> Receipt:  # not decorated
    return Receipt(order.cents)


ORDER = Order("4242", 100)


def want_str(value: str) -> None:
    """A result of the wrong type given to it is an error."""


def want_receipt(value: Receipt) -> None:
    """A result of the wrong type given to it is an error."""


async def client_calls(client: durable.Client) -> None:
    await client.execute(order_workflow, 42)  # expect-error
    await client.execute(order_workflow)  # expect-error
    await client.execute(order_workflow, ORDER, ORDER)  # expect-error
    await client.start(order_workflow, 42, id="x")  # expect-error
    await client.start(order_workflow, ORDER, idd="x")  # expect-error
    await client.start(order_workflow, ORDER, start_delay=5)  # expect-error
    await client.start(order_workflow, ORDER, id="x", debounce=5)  # expect-error
    await client.start(pair, "a")  # expect-error
    await client.start(pair, 1, 2)  # expect-error
    await client.start(plain, ORDER)  # expect-error
    await client.start(print, "x")  # expect-error
    await client.signal_with_start(order_workflow, 42, id="x", signal="go")  # expect-error
    await client.signal_with_start(order_workflow, ORDER, signal="go")  # expect-error
    want_str(await client.execute(order_workflow, ORDER))  # expect-error
    handle = client.get_handle("x", result_type=Order)
    want_receipt(await handle.result())  # expect-error
    client.get_handle("x", Order)  # expect-error


def sync_calls(sync: durable.SyncClient) -> None:
    sync.execute(order_workflow, 42)  # expect-error
    sync.start(order_workflow, 42, id="x")  # expect-error
    sync.signal_with_start(order_workflow, 42, id="x", signal="go")  # expect-error
    want_receipt(sync.get_handle("x", result_type=Order).result())  # expect-error


@workflow
async def context_calls(ctx: WorkflowContext) -> None:
    await ctx.activity(charge, "4242", "100")  # expect-error
    ctx.start_activity(charge, 4242, 100)  # expect-error
    await ctx.local_activity(charge, "4242")  # expect-error
    await ctx.child(order_workflow, 42)  # expect-error
    ctx.start_child(order_workflow, 42)  # expect-error
    await ctx.child(pair, 1, "b", "c")  # expect-error
    want_str(await ctx.child(order_workflow, ORDER))  # expect-error
    want_str(await ctx.activity(remote_charge, "4242", 100))  # expect-error
    await ctx.local_activity(remote_charge, "4242", 100)  # expect-error


remote_charge = durable.activity_ref("payments.charge", returns=Receipt)


def worker_of(client: durable.Client) -> durable.Worker:
    return durable.Worker(client, activities=[remote_charge])  # expect-error
