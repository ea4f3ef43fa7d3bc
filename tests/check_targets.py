"""Workflows for `durable check` (tests/test_check.py): each line marked "finding" breaks
determinism; nothing else in a workflow does. The activity may do anything."""

from __future__ import annotations

import os
import random
import time as clock
import uuid
from datetime import timedelta

from durable import WorkflowContext, activity, workflow

from . import check_helpers
from .check_helpers import pure


@activity
async def fetch(url: str) -> str:
    with open(url) as page:  # an activity does I/O: not a finding
        return page.read()


@workflow
async def careless(ctx: WorkflowContext, n: int) -> list[object]:
    started = clock.time()  # finding
    pick = random.choice([1, 2, 3])  # finding
    key = uuid.uuid4()  # finding
    clock.sleep(0.1)  # finding
    region = os.environ.get("REGION")  # finding
    for tag in {"a", "b"}:  # finding
        ctx.logger.info(tag)
    with open("/etc/hostname") as f:  # finding
        host = f.read()
    note = check_helpers.stamp()
    page = await ctx.activity(fetch, "/etc/hostname")
    bucket = hash(page) % 8  # finding
    seen = id(page)  # finding
    return [started, pick, key, region, host, note, page, pure(n), bucket, seen, hash(3)]


@workflow
async def careful(ctx: WorkflowContext, n: int) -> list[object]:
    await ctx.sleep(timedelta(seconds=1))
    tags = sorted({"a", "b"})
    return [ctx.now(), ctx.random().random(), ctx.uuid4(), tags, pure(n)]
