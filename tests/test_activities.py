"""End-to-end tests of activities at run time (API.md, "Activities at run time"): their
context, retries, timeouts, heartbeats, thread pool and per-call options."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import durable
from durable import (
    ActivityError,
    ApplicationError,
    RetryPolicy,
    WorkflowContext,
    activity,
    activity_context,
    workflow,
)

from .conftest import wait_for


def fast_retry(**kwargs: Any) -> RetryPolicy:
    return RetryPolicy(initial_interval=timedelta(milliseconds=50), **kwargs)


def describe_activity_error(exc: ActivityError) -> dict[str, Any]:
    cause = exc.cause
    return {
        "error": type(exc).__name__,
        "cause": type(cause).__name__,
        "type": getattr(cause, "type", None),
        "message": getattr(cause, "message", str(cause)),
        "details": list(getattr(cause, "details", ())),
        "non_retryable": getattr(cause, "non_retryable", None),
    }


# ---------------------------------------------------------------------------- activity_context().info

INFOS: list[durable.ActivityInfo] = []


@activity(retry=fast_retry(maximum_attempts=3))
async def info_act(tag: str) -> str:
    info = activity_context().info
    INFOS.append(info)
    if tag == "retry" and info.attempt == 1:
        raise ValueError("the first attempt fails")
    return tag


@workflow
async def info_act_wf(ctx: WorkflowContext) -> list[str]:
    first = await ctx.activity(
        info_act.with_options(start_to_close_timeout=timedelta(seconds=30)), "retry"
    )
    second = await ctx.activity(info_act, "plain")
    return [first, second]


async def test_activity_context_info_fields(client: durable.Client) -> None:
    INFOS.clear()
    started = datetime.now(UTC)
    async with durable.Worker(client, workflows=[info_act_wf], activities=[info_act]):
        handle = await client.start(info_act_wf, id="info-act")
        assert await handle.result(timeout=20) == ["retry", "plain"]
    assert [i.attempt for i in INFOS] == [1, 2, 1]
    first, retried, other = INFOS
    for info in INFOS:
        assert info.workflow_id == "info-act"
        assert info.run_id == handle.run_id
        assert info.activity_name == "info_act"
        assert isinstance(info.idempotency_key, str) and info.idempotency_key
        assert isinstance(info.activity_id, str) and info.activity_id
    # the same activity call keeps its id and idempotency key across retries
    assert retried.idempotency_key == first.idempotency_key
    assert retried.activity_id == first.activity_id
    # another call has other ones
    assert other.idempotency_key != first.idempotency_key
    assert other.activity_id != first.activity_id
    # a deadline when start_to_close_timeout is set, none without any timeout
    for info in (first, retried):
        assert isinstance(info.deadline, datetime)
        assert info.deadline.tzinfo is not None
        assert started < info.deadline <= datetime.now(UTC) + timedelta(seconds=30)
    assert other.deadline is None


KEYS: list[str] = []


@activity
async def remember_key() -> None:
    KEYS.append(activity_context().info.idempotency_key)


@workflow
async def keys_wf(ctx: WorkflowContext, round_: int) -> None:
    await ctx.activity(remember_key)
    if round_ == 1:
        ctx.continue_as_new(round_ + 1)


async def test_idempotency_keys_differ_across_continue_as_new(client: durable.Client) -> None:
    KEYS.clear()
    async with durable.Worker(client, workflows=[keys_wf], activities=[remember_key]):
        handle = await client.start(keys_wf, 1, id="keys")
        await client.get_handle("keys").result(timeout=20)
    assert (await handle.describe()).status == "continued_as_new"
    assert len(KEYS) == 2 and KEYS[0] != KEYS[1]  # the same call position, a new run


async def test_activity_context_outside_activity_is_an_error() -> None:
    with pytest.raises(durable.DurableError):
        activity_context()


# ---------------------------------------------------------------------------- retries

ATTEMPT_TIMES: list[float] = []


@activity(retry=RetryPolicy(initial_interval=timedelta(milliseconds=100), backoff_coefficient=2))
async def flaky(succeed_on: int) -> str:
    ATTEMPT_TIMES.append(time.monotonic())
    attempt = activity_context().info.attempt
    if attempt < succeed_on:
        raise ConnectionError(f"attempt {attempt} failed")
    return f"ok on {attempt}"


@workflow
async def flaky_wf(ctx: WorkflowContext, succeed_on: int) -> str:
    return await ctx.activity(flaky, succeed_on)


async def test_retry_policy_retries_with_backoff_until_success(client: durable.Client) -> None:
    ATTEMPT_TIMES.clear()
    async with durable.Worker(client, workflows=[flaky_wf], activities=[flaky]):
        handle = await client.start(flaky_wf, 3)
        assert await handle.result(timeout=20) == "ok on 3"
    assert len(ATTEMPT_TIMES) == 3
    # the waits grow: at least initial_interval, then initial_interval * backoff_coefficient
    assert ATTEMPT_TIMES[1] - ATTEMPT_TIMES[0] >= 0.09
    assert ATTEMPT_TIMES[2] - ATTEMPT_TIMES[1] >= 0.19
    types = [e.type for e in await handle.history()]
    assert types.count("ACTIVITY_SCHEDULED") == 1  # retries are not workflow events
    assert "ACTIVITY_FAILED" not in types


@activity(
    retry=RetryPolicy(
        initial_interval=timedelta(milliseconds=50),
        backoff_coefficient=10,
        maximum_interval=timedelta(milliseconds=150),
    )
)
async def capped(succeed_on: int) -> int:
    ATTEMPT_TIMES.append(time.monotonic())
    if activity_context().info.attempt < succeed_on:
        raise ConnectionError("not yet")
    return activity_context().info.attempt


@workflow
async def capped_wf(ctx: WorkflowContext) -> int:
    return await ctx.activity(capped, 4)


async def test_maximum_interval_caps_the_backoff(client: durable.Client) -> None:
    ATTEMPT_TIMES.clear()
    async with durable.Worker(client, workflows=[capped_wf], activities=[capped]):
        assert await client.execute(capped_wf) == 4
    waits = [b - a for a, b in itertools.pairwise(ATTEMPT_TIMES)]
    assert waits[0] >= 0.045  # initial_interval
    assert waits[1] >= 0.14 and waits[2] >= 0.14  # 0.5 s and 5 s, capped at 0.15 s
    assert waits[2] < 2.0, waits


ATTEMPTS: list[int] = []


@activity(retry=fast_retry(maximum_attempts=3))
async def always_value_error(text: str) -> None:
    ATTEMPTS.append(activity_context().info.attempt)
    raise ValueError(f"bad {text}")


@workflow
async def exhaust_wf(ctx: WorkflowContext) -> dict[str, Any]:
    try:
        await ctx.activity(always_value_error, "input")
    except ActivityError as exc:
        return describe_activity_error(exc)
    return {}


@workflow
async def exhaust_uncaught_wf(ctx: WorkflowContext) -> None:
    await ctx.activity(always_value_error, "input")


async def test_maximum_attempts_exhausted_raises_activity_error(client: durable.Client) -> None:
    ATTEMPTS.clear()
    async with durable.Worker(client, workflows=[exhaust_wf], activities=[always_value_error]):
        result = await client.execute(exhaust_wf)
    assert ATTEMPTS == [1, 2, 3]
    assert result["error"] == "ActivityError"
    assert result["cause"] == "ApplicationError"
    assert result["type"] == "ValueError"  # any other exception is wrapped with its type name
    assert result["message"] == "bad input"


async def test_uncaught_activity_error_fails_workflow_with_cause_chain(
    client: durable.Client,
) -> None:
    ATTEMPTS.clear()
    async with durable.Worker(
        client, workflows=[exhaust_uncaught_wf], activities=[always_value_error]
    ):
        handle = await client.start(exhaust_uncaught_wf)
        with pytest.raises(durable.WorkflowFailedError) as info:
            await handle.result(timeout=20)
    activity_error = info.value.cause
    assert isinstance(activity_error, ActivityError)
    assert isinstance(activity_error.cause, ApplicationError)
    assert activity_error.cause.type == "ValueError"
    assert "bad input" in activity_error.cause.message
    assert ATTEMPTS == [1, 2, 3]


@activity(retry=fast_retry(maximum_attempts=5))
async def declines(card: str) -> None:
    ATTEMPTS.append(activity_context().info.attempt)
    raise ApplicationError("card declined", card, 42, type="Declined", non_retryable=True)


@activity(retry=fast_retry(maximum_attempts=5, non_retryable_error_types=("KeyError",)))
def missing_key() -> None:
    ATTEMPTS.append(activity_context().info.attempt)
    raise KeyError("sku-1")


@workflow
async def non_retryable_wf(ctx: WorkflowContext) -> dict[str, Any]:
    try:
        await ctx.activity(declines, "card-1")
    except ActivityError as exc:
        return describe_activity_error(exc)
    return {}


@workflow
async def missing_key_wf(ctx: WorkflowContext) -> dict[str, Any]:
    try:
        await ctx.activity(missing_key)
    except ActivityError as exc:
        return describe_activity_error(exc)
    return {}


async def test_non_retryable_application_error_stops_retries(client: durable.Client) -> None:
    ATTEMPTS.clear()
    async with durable.Worker(client, workflows=[non_retryable_wf], activities=[declines]):
        result = await client.execute(non_retryable_wf)
    assert ATTEMPTS == [1]
    assert result == {
        "error": "ActivityError",
        "cause": "ApplicationError",
        "type": "Declined",
        "message": "card declined",
        "details": ["card-1", 42],
        "non_retryable": True,
    }


async def test_non_retryable_error_types_stop_retries(client: durable.Client) -> None:
    ATTEMPTS.clear()
    async with durable.Worker(client, workflows=[missing_key_wf], activities=[missing_key]):
        result = await client.execute(missing_key_wf)
    assert ATTEMPTS == [1]
    assert result["cause"] == "ApplicationError"
    assert result["type"] == "KeyError"


# ---------------------------------------------------------------------------- timeouts


@activity(retry=fast_retry(maximum_attempts=3), start_to_close_timeout=timedelta(milliseconds=300))
async def slow_first_time() -> int:
    attempt = activity_context().info.attempt
    ATTEMPTS.append(attempt)
    if attempt == 1:
        await asyncio.sleep(30)
    return attempt


@workflow
async def slow_first_wf(ctx: WorkflowContext) -> int:
    return await ctx.activity(slow_first_time)


async def test_start_to_close_timeout_triggers_retry(client: durable.Client) -> None:
    ATTEMPTS.clear()
    async with durable.Worker(client, workflows=[slow_first_wf], activities=[slow_first_time]):
        assert await client.execute(slow_first_wf) == 2
    assert ATTEMPTS == [1, 2]


HEARTBEAT_SEEN: list[tuple[int, Any]] = []


@activity(retry=fast_retry(maximum_attempts=3), heartbeat_timeout=timedelta(milliseconds=400))
async def stops_heartbeating() -> Any:
    ctx = activity_context()
    HEARTBEAT_SEEN.append((ctx.info.attempt, ctx.heartbeat_details))
    if ctx.info.attempt == 1:
        ctx.heartbeat("step", 7)
        await asyncio.sleep(30)  # no more heartbeats: the heartbeat timeout fires
    return ctx.heartbeat_details


@workflow
async def heartbeat_wf(ctx: WorkflowContext) -> Any:
    return await ctx.activity(stops_heartbeating)


async def test_heartbeat_timeout_retries_with_last_heartbeat_details(
    client: durable.Client,
) -> None:
    HEARTBEAT_SEEN.clear()
    async with durable.Worker(client, workflows=[heartbeat_wf], activities=[stops_heartbeating]):
        result = await client.execute(heartbeat_wf)
    assert HEARTBEAT_SEEN == [(1, None), (2, ("step", 7))]
    assert result == ("step", 7)


@activity(retry=fast_retry(maximum_attempts=3), heartbeat_timeout=timedelta(milliseconds=300))
async def keeps_heartbeating(steps: int) -> int:
    ctx = activity_context()
    ATTEMPTS.append(ctx.info.attempt)
    for i in range(steps):
        ctx.heartbeat(i)
        await asyncio.sleep(0.05)
    return steps


@workflow
async def keeps_heartbeating_wf(ctx: WorkflowContext) -> int:
    return await ctx.activity(keeps_heartbeating, 20)


async def test_heartbeats_keep_a_long_activity_alive(client: durable.Client) -> None:
    ATTEMPTS.clear()
    async with durable.Worker(
        client, workflows=[keeps_heartbeating_wf], activities=[keeps_heartbeating]
    ):
        handle = await client.start(keeps_heartbeating_wf)
        try:
            result = await handle.result(timeout=10)
        except durable.WorkflowFailedError:
            result = None
    assert result == 20
    assert ATTEMPTS == [1]


@activity(retry=fast_retry(maximum_attempts=3))
async def heartbeat_then_fail() -> Any:
    ctx = activity_context()
    if ctx.info.attempt == 1:
        ctx.heartbeat("progress", 5)
        raise RuntimeError("crash right after a heartbeat")
    return ctx.heartbeat_details


@workflow
async def heartbeat_then_fail_wf(ctx: WorkflowContext) -> Any:
    return await ctx.activity(heartbeat_then_fail)


async def test_heartbeat_details_of_failed_attempt_reach_next_attempt(
    client: durable.Client,
) -> None:
    async with durable.Worker(
        client, workflows=[heartbeat_then_fail_wf], activities=[heartbeat_then_fail]
    ):
        assert await client.execute(heartbeat_then_fail_wf) == ("progress", 5)


@activity(
    retry=fast_retry(backoff_coefficient=1), schedule_to_close_timeout=timedelta(milliseconds=600)
)
async def never_succeeds() -> None:
    ATTEMPTS.append(activity_context().info.attempt)
    raise ConnectionError("still down")


@workflow
async def schedule_to_close_wf(ctx: WorkflowContext) -> dict[str, Any]:
    try:
        await ctx.activity(never_succeeds)
    except ActivityError as exc:
        return describe_activity_error(exc)
    return {}


async def test_schedule_to_close_timeout_ends_retries(client: durable.Client) -> None:
    ATTEMPTS.clear()
    async with durable.Worker(
        client, workflows=[schedule_to_close_wf], activities=[never_succeeds]
    ):
        handle = await client.start(schedule_to_close_wf)
        result = await handle.result(timeout=20)
        attempts = list(ATTEMPTS)
        assert result["error"] == "ActivityError"
        assert attempts and attempts == list(range(1, len(attempts) + 1))
        assert not (await handle.describe()).pending_activities
        await asyncio.sleep(0.3)
    assert attempts == ATTEMPTS  # no attempt after the workflow saw the failure


@activity(retry=fast_retry(), schedule_to_close_timeout=timedelta(milliseconds=400))
async def hangs() -> None:
    ATTEMPTS.append(activity_context().info.attempt)
    await asyncio.sleep(30)


@workflow
async def hangs_wf(ctx: WorkflowContext) -> str:
    try:
        await ctx.activity(hangs)
    except ActivityError:
        return "timed out"
    return "finished"


async def test_schedule_to_close_timeout_bounds_a_hanging_attempt(client: durable.Client) -> None:
    ATTEMPTS.clear()
    async with durable.Worker(client, workflows=[hangs_wf], activities=[hangs]):
        assert await client.execute(hangs_wf) == "timed out"
    assert ATTEMPTS == [1]


# ---------------------------------------------------------------------------- sync activities

THREADS: list[str] = []


@activity
def blocking_work(n: int) -> dict[str, Any]:
    current = threading.current_thread()
    THREADS.append(current.name)
    info = activity_context().info  # the context is visible in the thread too
    return {
        "main": current is threading.main_thread(),
        "attempt": info.attempt,
        "value": n + 1,
    }


@workflow
async def blocking_wf(ctx: WorkflowContext) -> list[dict[str, Any]]:
    return list(
        await asyncio.gather(ctx.activity(blocking_work, 1), ctx.activity(blocking_work, 2))
    )


async def test_sync_activities_run_in_a_thread_pool(client: durable.Client) -> None:
    THREADS.clear()
    async with durable.Worker(client, workflows=[blocking_wf], activities=[blocking_work]):
        result = await client.execute(blocking_wf)
    assert result == [
        {"main": False, "attempt": 1, "value": 2},
        {"main": False, "attempt": 1, "value": 3},
    ]
    assert len(THREADS) == 2
    assert threading.main_thread().name not in THREADS


SYNC_CANCEL: list[str] = []


@activity(heartbeat_timeout=timedelta(seconds=1))
def sync_polls_cancellation() -> str:
    ctx = activity_context()
    SYNC_CANCEL.append("started")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ctx.heartbeat()
        if ctx.is_cancelled():
            SYNC_CANCEL.append("cancelled")
            return "stopped"
        time.sleep(0.05)
    return "ran out"


@workflow
async def sync_cancel_wf(ctx: WorkflowContext) -> str:
    task = ctx.start_activity(sync_polls_cancellation)
    await ctx.wait_signal("cancel")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await ctx.wait_signal("finish")
    return "done"


async def test_sync_activity_sees_cancellation_through_is_cancelled(
    client: durable.Client,
) -> None:
    SYNC_CANCEL.clear()
    async with durable.Worker(
        client, workflows=[sync_cancel_wf], activities=[sync_polls_cancellation]
    ):
        handle = await client.start(sync_cancel_wf)
        await wait_for(lambda: SYNC_CANCEL)
        await handle.signal("cancel")
        await wait_for(lambda: "cancelled" in SYNC_CANCEL)
        await handle.signal("finish")
        assert await handle.result(timeout=20) == "done"


WAITED: list[str] = []


@activity(heartbeat_timeout=timedelta(seconds=1))
async def waits_for_cancel() -> str:
    ctx = activity_context()
    WAITED.append("started")

    async def beat() -> None:
        while True:
            ctx.heartbeat()
            await asyncio.sleep(0.05)

    beater = asyncio.ensure_future(beat())
    try:
        await ctx.wait_cancelled()
        WAITED.append("wait_cancelled returned")
    except asyncio.CancelledError:
        WAITED.append(f"CancelledError, is_cancelled={ctx.is_cancelled()}")
        raise
    finally:
        beater.cancel()
    return "cancelled"


@workflow
async def wait_cancelled_wf(ctx: WorkflowContext) -> str:
    task = ctx.start_activity(waits_for_cancel)
    await ctx.wait_signal("cancel")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await ctx.wait_signal("finish")
    return "done"


async def test_async_activity_wait_cancelled(client: durable.Client) -> None:
    WAITED.clear()
    async with durable.Worker(client, workflows=[wait_cancelled_wf], activities=[waits_for_cancel]):
        handle = await client.start(wait_cancelled_wf)
        await wait_for(lambda: WAITED)
        await handle.signal("cancel")
        await wait_for(lambda: len(WAITED) >= 2)
        await handle.signal("finish")
        assert await handle.result(timeout=20) == "done"
    assert WAITED[1] in ("wait_cancelled returned", "CancelledError, is_cancelled=True")


# ---------------------------------------------------------------------------- with_options


@activity(retry=RetryPolicy(maximum_attempts=1))
async def needs_three_tries(key: str) -> str:
    ATTEMPTS.append(activity_context().info.attempt)
    if activity_context().info.attempt < 3:
        raise ConnectionError(f"{key} not yet")
    return key


@workflow
async def with_options_wf(ctx: WorkflowContext) -> dict[str, Any]:
    patient = needs_three_tries.with_options(retry=fast_retry(maximum_attempts=5))
    value = await ctx.activity(patient, "k")  # positional args after the function go to it
    kw_value = await ctx.activity(patient, key="kw")
    try:
        await ctx.activity(needs_three_tries, "default")  # the defaults are unchanged
        default = "succeeded"
    except ActivityError:
        default = "failed"
    return {"value": value, "kw_value": kw_value, "default": default}


async def test_with_options_overrides_options_for_one_call(client: durable.Client) -> None:
    ATTEMPTS.clear()
    async with durable.Worker(client, workflows=[with_options_wf], activities=[needs_three_tries]):
        result = await client.execute(with_options_wf)
    assert result == {"value": "k", "kw_value": "kw", "default": "failed"}
    assert ATTEMPTS == [1, 2, 3, 1, 2, 3, 1]
    assert needs_three_tries.options.retry == RetryPolicy(maximum_attempts=1)
