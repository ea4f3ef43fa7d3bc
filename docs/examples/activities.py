"""Activities: retries, typed failures, heartbeats, cancellation, timeouts, idempotency keys
and local activities (docs/guide/activities.md)."""

import asyncio
import time
from datetime import timedelta

import durable
from durable import ApplicationError, RetryPolicy, WorkflowContext, activity, workflow

QUEUE = "activities"
FAST = RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_attempts=5)
charged: dict[str, int] = {}  # stands in for a payment provider that dedupes by key


# --8<-- [start:retries]
@activity(retry=FAST, start_to_close_timeout=timedelta(seconds=10))
async def charge(card: str, cents: int) -> str:
    info = durable.activity_context().info  # a durable.ActivityInfo
    if info.attempt < 3:
        raise ConnectionError("payment provider unreachable")  # retried per the policy
    # The key is the same on every attempt of this call: let the provider dedupe on it.
    charged.setdefault(info.idempotency_key, cents)
    return f"charge {info.activity_id} of {info.workflow_id}, attempt {info.attempt}"


@activity(retry=FAST)
async def validate(card: str) -> None:
    if not card.isdigit():
        # A typed failure that retrying cannot fix.
        raise ApplicationError(
            "card number is not numeric", card, type="BadCard", non_retryable=True
        )


# --8<-- [end:retries]


# --8<-- [start:heartbeat]
@activity(retry=FAST, heartbeat_timeout=timedelta(seconds=5))
def import_rows(rows: int) -> int:  # sync: runs in the worker's thread pool
    ctx: durable.ActivityContext = durable.activity_context()
    done = ctx.heartbeat_details[0] if ctx.heartbeat_details else 0  # from the last attempt
    for row in range(done, rows):
        if row == 5 and ctx.info.attempt == 1:
            raise RuntimeError("lost the connection half-way")
        ctx.heartbeat(row + 1)  # progress: keeps heartbeat_timeout from firing
    return ctx.info.attempt


# --8<-- [end:heartbeat]


# --8<-- [start:cancel]
@activity(heartbeat_timeout=timedelta(seconds=1))
def watch_feed() -> str:  # sync: it must look for the cancellation itself
    ctx = durable.activity_context()
    while not ctx.is_cancelled():  # a cancellation arrives through heartbeats
        ctx.heartbeat()
        time.sleep(0.05)
    return "stopped"


@activity(start_to_close_timeout=timedelta(milliseconds=300), retry=RetryPolicy(maximum_attempts=1))
async def too_slow() -> None:
    ctx = durable.activity_context()
    await ctx.wait_cancelled()  # stopped here once past its start_to_close_timeout


# --8<-- [end:cancel]


# --8<-- [start:local]
@activity
def lookup_rate(currency: str) -> float:
    return {"EUR": 1.0, "USD": 1.08}[currency]


# --8<-- [end:local]


# --8<-- [start:workflow]
LOOKUP_RATE: durable.ActivityRef[float] = durable.activity_ref("lookup_rate", returns=float)


@workflow
async def pay(ctx: WorkflowContext, card: str, cents: int) -> dict[str, object]:
    out: dict[str, object] = {"charge": await ctx.activity(charge, card, cents)}
    try:
        await ctx.activity(validate, "not-a-card")
    except durable.ActivityError as exc:  # failed for good: .cause says why
        out["validate"] = f"{exc.cause} after {exc.attempt} attempt(s)"
    out["import_attempts"] = await ctx.activity(import_rows, 10)

    feed = ctx.start_activity(watch_feed)  # a task; cancelling it cancels the activity
    await ctx.sleep(0.3)
    feed.cancel()
    try:
        await feed
    except asyncio.CancelledError:
        out["feed"] = "cancelled"
    try:
        await ctx.activity(too_slow)
    except durable.ActivityError as exc:
        out["too_slow"] = type(exc.cause).__name__

    # One call with other options; the arguments after the function go to the function.
    quick = charge.with_options(start_to_close_timeout=timedelta(seconds=2))
    out["again"] = await ctx.activity(quick, card, 1)
    # By registered name (no import of the activity's code needed), or by a typed
    # reference; either takes the options its workers registered.
    out["by_name"] = await ctx.activity("lookup_rate", "USD")
    out["by_ref"] = await ctx.activity(LOOKUP_RATE, "USD")  # a float
    # In this worker process: one history write, retried in place.
    out["local"] = await ctx.local_activity(lookup_rate, "EUR")
    return out


# --8<-- [end:workflow]


async def main() -> None:
    async with await durable.Client.connect() as client:
        activities = [charge, validate, import_rows, watch_feed, too_slow, lookup_rate]
        async with durable.Worker(client, QUEUE, workflows=[pay], activities=activities):
            result = await client.execute(pay, "4242", 500, task_queue=QUEUE)
        for key, value in result.items():
            print(f"{key:>15}: {value}")
        assert result["validate"] == "BadCard: card number is not numeric after 1 attempt(s)"
        assert result["import_attempts"] == 2 and result["feed"] == "cancelled"
        assert result["too_slow"] == "TimeoutError" and result["local"] == 1.0
        assert result["by_name"] == result["by_ref"] == 1.08
        assert len(charged) == 2  # two calls of charge, each recorded once
        assert lookup_rate("USD") == 1.08  # outside a workflow: a plain function call


if __name__ == "__main__":
    asyncio.run(main())
