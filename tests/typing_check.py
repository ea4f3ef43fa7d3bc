"""Checked by mypy (tests/test_typing.py): the public API carries the user's types through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_type

import durable
from durable import WorkflowContext, activity, workflow


@dataclass
class Receipt:
    total: int


@activity
async def add(a: int, b: int) -> int:
    return a + b


@activity
def shout(text: str) -> str:
    return text.upper()


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
    return Receipt(total)


@workflow(name="child")
async def child_flow(ctx: WorkflowContext, n: int) -> str:
    return str(n)


async def client_side(client: durable.Client) -> None:
    receipt = await client.execute(checkout, [1, 2])
    assert_type(receipt, Receipt)
    handle = await client.start(checkout, [1], id="x")
    assert_type(await handle.result(), Receipt)
