"""Workflow code served by `durable worker tests.cli_workflows` in tests/test_cli.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import durable
from durable import WorkflowContext, activity, workflow


@activity
async def greet(name: str) -> str:
    return f"hello {name}"


@workflow(name="greeter")
async def greeter(ctx: WorkflowContext, name: str) -> str:
    status = "greeting"
    ctx.on_query("status", lambda: status)
    ctx.on_update("shout", lambda word: f"{word.upper()}!")
    ctx.set_attributes(customer=name)
    greeting = await ctx.activity(greet, name)
    status = "waiting"
    suffix = await ctx.wait_signal("finish")
    return f"{greeting}{suffix}"


@dataclass
class Order:
    order_id: int
    amount: Decimal
    due: date


@workflow(name="priced")
async def priced(ctx: WorkflowContext, order: Order, fee: Decimal) -> str:
    """Its JSON arguments from the CLI arrive as the annotated types."""
    assert isinstance(order.amount, Decimal) and isinstance(order.due, date)
    return f"order {order.order_id}: {order.amount + fee} due {order.due.isoformat()}"


everything = [greeter, greet]  # `durable worker tests.cli_workflows:everything`


def make_worker(client: durable.Client) -> durable.Worker:  # `...:make_worker`
    return durable.Worker(client, workflows=[greeter], activities=[greet])
