"""Definitions on two task queues, for `durable worker tests.cli_queues` (tests/test_routing.py):
the workflow is served on "orders", the activity it calls by name on "payments", and an
activity declaring no queue on both; the reference to another service's activity on
"refunds" is not served."""

from __future__ import annotations

import durable


@durable.activity(task_queue="payments")
async def charge_card(amount: int) -> str:
    return f"charged {amount}"


@durable.activity
async def audit(note: str) -> str:
    return f"audited {note}"


refund = durable.activity_ref("refund", returns=str, task_queue="refunds")


@durable.workflow(task_queue="orders")
async def order_flow(ctx: durable.WorkflowContext, amount: int) -> list[str]:
    charged = str(await ctx.activity("charge_card", amount))
    return [charged, await ctx.activity(audit, charged)]
