"""Workflow code that breaks replay, for `durable check` (docs/guide/testing.md)."""

import os
import random
from datetime import datetime

from durable import WorkflowContext, workflow


@workflow
async def raffle(ctx: WorkflowContext, tickets: list[str]) -> str:
    if datetime.now().hour < 6:  # the wall clock: differs on replay
        return "closed"
    prefix = os.environ.get("RAFFLE_PREFIX", "")  # differs between workers
    return prefix + random.choice(tickets)  # not seeded from history
