"""Calls by name with no task queue go to a queue that serves the name; while none ever did,
the run waits at the call with a clear last_error and goes on by itself once one does."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import durable
from durable._cli import main
from durable._cli.loading import definitions, queues_served
from durable._definitions import DEFAULT_TASK_QUEUE
from durable._events import EventType
from durable._replayer import WorkflowInstance
from tests import cli_queues

from .conftest import wait_for, worker_subprocess


@durable.activity(name="remote_charge")
async def remote_charge(amount: int) -> str:
    return f"charged {amount}"


@durable.workflow
async def remote_child(ctx: durable.WorkflowContext, n: int) -> int:
    return n + 1


@durable.workflow
async def charges_by_name(ctx: durable.WorkflowContext, amount: int) -> str:
    return str(await ctx.activity("remote_charge", amount))


@durable.workflow
async def child_by_name(ctx: durable.WorkflowContext, n: int) -> int:
    return int(await ctx.child("remote_child", n))


async def _last_error(handle: durable.WorkflowHandle[Any]) -> str | None:
    return (await handle.describe()).last_error


async def _scheduled(handle: durable.WorkflowHandle[Any]) -> list[durable.HistoryEvent]:
    return [e for e in await handle.history() if e.type == "ACTIVITY_SCHEDULED"]


async def test_an_activity_by_name_waits_for_a_worker_that_serves_it(
    client: durable.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="durable")
    async with durable.Worker(client, task_queue="orders", workflows=[charges_by_name]):
        handle = await client.start(charges_by_name, 7, task_queue="orders")
        error = await wait_for(lambda: _last_error(handle), timeout=20)
        assert "no worker serves the activity 'remote_charge' on any task queue" in error
        assert (await handle.describe()).status == "running"
        assert "remote_charge" in caplog.text
        async with durable.Worker(client, task_queue="payments", activities=[remote_charge]):
            assert await handle.result(timeout=30) == "charged 7"
    scheduled = [e for e in await handle.history() if e.type == "ACTIVITY_SCHEDULED"]
    assert [e.fields["task_queue"] for e in scheduled] == ["payments"]
    assert (await handle.describe()).last_error is None


async def test_a_name_served_by_the_own_queue_stays_there(client: durable.Client) -> None:
    async with (
        durable.Worker(client, task_queue="elsewhere", activities=[remote_charge]),
        durable.Worker(
            client, task_queue="mixed", workflows=[charges_by_name], activities=[remote_charge]
        ),
    ):
        handle = await client.start(charges_by_name, 3, task_queue="mixed")
        assert await handle.result(timeout=30) == "charged 3"
    history = await client.store.load_history(handle.workflow_id, (await handle.describe()).run_id)
    scheduled = [e for e in history if e.type is EventType.ACTIVITY_SCHEDULED]
    assert [e.attrs["task_queue"] for e in scheduled] == ["mixed"]


async def test_a_child_by_name_goes_to_the_queue_of_its_workflow(client: durable.Client) -> None:
    async with (
        durable.Worker(client, task_queue="parents", workflows=[child_by_name]),
        durable.Worker(client, task_queue="children", workflows=[remote_child]),
    ):
        handle = await client.start(child_by_name, 41, task_queue="parents")
        assert await handle.result(timeout=30) == 42
    children = [run async for run in client.list(workflow_name="remote_child")]
    assert [c.task_queue for c in children] == ["children"]


def test_each_declared_queue_gets_a_worker() -> None:
    served = queues_served([cli_queues.order_flow], [cli_queues.charge_card, cli_queues.audit])
    assert {
        queue: ([w.name for w in ws], [a.name for a in acts])
        for queue, (ws, acts) in served.items()
    } == {
        "orders": (["order_flow"], ["audit"]),
        "payments": ([], ["charge_card", "audit"]),
    }
    # a module's references to other services' activities are not its to serve
    workflows, activities = definitions("tests.cli_queues", cli_queues)
    assert [a.name for a in activities] == ["charge_card", "audit"]
    assert "refunds" not in queues_served(workflows, activities)
    everything = queues_served([cli_queues.order_flow], [cli_queues.audit], "one")
    assert list(everything) == ["one"]
    assert list(queues_served([remote_child], [remote_charge])) == [DEFAULT_TASK_QUEUE]


async def test_durable_worker_serves_every_queue_its_module_names(
    dsn: str, client: durable.Client, tmp_path: Path
) -> None:
    async with worker_subprocess(tmp_path / "worker.log", "tests.cli_queues", "--dsn", dsn) as proc:
        await wait_for(lambda: client.store.route_activity("charge_card", "-"), timeout=15)
        handle = await client.start(cli_queues.order_flow, 5)
        assert await handle.result(timeout=30) == ["charged 5", "audited charged 5"]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    text = (tmp_path / "worker.log").read_text()
    assert "task queue 'orders'" in text and "task queue 'payments'" in text
    assert "task queue 'refunds'" not in text


# ---------------------------------------------------------------- options of calls by name
@dataclass
class Receipt:
    charge_id: str
    cents: int


TWO_ATTEMPTS = durable.RetryPolicy(initial_interval=timedelta(milliseconds=10), maximum_attempts=2)


@durable.activity(
    name="payments.charge", retry=TWO_ATTEMPTS, start_to_close_timeout=timedelta(seconds=30)
)
async def payments_charge(cents: int) -> Receipt:
    if cents < 0:
        raise ValueError("card declined")
    return Receipt(f"ch_{cents}", cents)


@durable.workflow
async def pays_by_name(ctx: durable.WorkflowContext, cents: int) -> str:
    try:
        return repr(await ctx.activity("payments.charge", cents))
    except durable.ActivityError as exc:
        return f"failed after {exc.attempt}"


@pytest.mark.parametrize("activity_queue", ["orders", "payments"])
async def test_a_call_by_name_takes_the_options_its_workers_registered(
    client: durable.Client, activity_queue: str
) -> None:
    """The payments service declared its retry policy and timeout: a call by name from
    another service's workflow takes them (recorded with the call), not retry-for-ever. On
    the workflow's own queue the worker runs the activity at once, from the recorded call."""
    async with (
        durable.Worker(client, task_queue="orders", workflows=[pays_by_name]),
        durable.Worker(client, task_queue=activity_queue, activities=[payments_charge]),
    ):
        handle = await client.start(pays_by_name, -1, task_queue="orders")
        (scheduled,) = await wait_for(lambda: _scheduled(handle), timeout=20)
        assert scheduled.fields["task_queue"] == activity_queue
        assert scheduled.fields["retry"]["maximum_attempts"] == 2
        assert scheduled.fields["start_to_close"] == 30.0
        assert scheduled.fields["schedule_to_close"] is None
        assert await handle.result(timeout=30) == "failed after 2"
    # replay reads the recorded options: the code issues the call without them, as it did
    run_id = (await handle.describe()).run_id
    history = await client.store.load_history(handle.workflow_id, run_id)
    WorkflowInstance(pays_by_name, handle.workflow_id, run_id, history).replay()


charge_ref = durable.activity_ref("payments.charge", returns=Receipt, task_queue="payments")


@durable.workflow
async def pays_by_ref(ctx: durable.WorkflowContext, cents: int) -> Receipt:
    return await ctx.activity(charge_ref, cents)


@durable.workflow
async def pays_once_by_ref(ctx: durable.WorkflowContext, cents: int) -> str:
    once = charge_ref.with_options(retry=durable.RetryPolicy(maximum_attempts=1))
    try:
        return repr(await ctx.activity(once, cents))
    except durable.ActivityError as exc:
        return f"failed after {exc.attempt}"


async def test_a_reference_calls_another_services_activity_with_its_options(
    client: durable.Client,
) -> None:
    """A typed reference goes to its queue once a worker there serves the name (the run
    waits at the call until then), its result is rebuilt as the type it names, and the
    options it gives replace only those: the rest are the ones its workers registered."""
    async with durable.Worker(
        client, task_queue="orders", workflows=[pays_by_ref, pays_once_by_ref]
    ):
        handle = await client.start(pays_by_ref, 5, task_queue="orders")
        error = await wait_for(lambda: _last_error(handle), timeout=20)
        assert "no worker serves the activity 'payments.charge' on task queue 'payments'" in error
        async with durable.Worker(client, task_queue="payments", activities=[payments_charge]):
            assert await handle.result(timeout=30) == Receipt("ch_5", 5)
            once = await client.start(pays_once_by_ref, -1, task_queue="orders")
            assert await once.result(timeout=30) == "failed after 1"
    (scheduled,) = await _scheduled(once)
    assert scheduled.fields["task_queue"] == "payments"
    assert scheduled.fields["retry"]["maximum_attempts"] == 1  # its own
    assert scheduled.fields["start_to_close"] == 30.0  # registered


async def test_a_reference_is_never_served_nor_run_locally(client: durable.Client) -> None:
    with pytest.raises(TypeError, match="reference to an activity another service"):
        durable.Worker(client, activities=[charge_ref])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"call it with ctx\.activity"):
        await durable.WorkflowContext(None).local_activity(charge_ref)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        durable.activity_ref("")
    with pytest.raises(TypeError, match="returns must be the type"):
        durable.activity_ref("payments.charge", returns="Receipt")
    with pytest.raises(TypeError, match=r"retry must be a durable\.RetryPolicy"):
        durable.activity_ref("payments.charge", retry=3)  # type: ignore[arg-type]


# ------------------------------------------------------------- queues no worker ever served
@durable.activity(task_queue="nowhere")
async def unserved_activity() -> None:
    pass


@durable.workflow
async def calls_unserved(ctx: durable.WorkflowContext) -> None:
    await ctx.activity(unserved_activity)


async def test_describe_says_no_worker_ever_served_the_queue_of_a_run_or_activity(
    client: durable.Client, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    unserved_run = await client.start(remote_child, 1, task_queue="nobody")
    assert await _last_error(unserved_run) == (
        "no worker has ever served workflow 'remote_child' on task queue 'nobody': "
        "the run waits until one does"
    )
    async with durable.Worker(client, task_queue="orders", workflows=[calls_unserved]):
        handle = await client.start(calls_unserved, task_queue="orders")
        await wait_for(lambda: _scheduled(handle))
        assert await _last_error(handle) == (
            "no worker has ever served activity 'unserved_activity' on task queue 'nowhere': "
            "activity 2 waits until one does"
        )
    code = await asyncio.to_thread(main, ["describe", unserved_run.workflow_id, "--dsn", dsn])
    assert code == 0
    assert "no worker has ever served workflow 'remote_child'" in capsys.readouterr().out
    # a worker that served the queue once (gone since) is no news: the run is not described so
    async with durable.Worker(client, task_queue="nowhere", activities=[unserved_activity]):
        pass
    assert await _last_error(handle) is None
