"""Traces, metrics and logs (API.md "Observability"): SDK providers with in-memory
exporters, real Postgres, real workers."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import durable
from durable import RetryPolicy, WorkflowContext, activity, workflow

from .conftest import wait_for
from .spans import read_spans
from .traced_app import traced_steps

TRACED_APP = Path(__file__).with_name("traced_app.py")

FLAKY: dict[str, int] = {}


@activity
async def greet(name: str) -> str:
    durable.activity_context().logger.info("greeting %s", name)
    return f"hello {name}"


@activity(retry=RetryPolicy(initial_interval=timedelta(milliseconds=10), maximum_attempts=3))
async def flaky(key: str) -> str:
    FLAKY[key] = FLAKY.get(key, 0) + 1
    if FLAKY[key] < 2:
        raise RuntimeError(f"flaky {key} failed once")
    return "steady"


@workflow
async def child_wf(ctx: WorkflowContext, name: str) -> str:
    return await ctx.activity(greet, name)


@workflow
async def traced_wf(ctx: WorkflowContext, name: str) -> list[str]:
    ctx.logger.info("starting for %s", name)
    first = await ctx.activity(greet, name)
    await ctx.sleep(timedelta(milliseconds=50))
    second = await ctx.activity(flaky, ctx.info.workflow_id)
    third = await ctx.child(child_wf, name)
    local = await ctx.local_activity(greet, "local")
    return [first, second, third, local]


@workflow
async def rounds_wf(ctx: WorkflowContext, left: int) -> str:
    await ctx.activity(greet, f"round {left}")
    if left > 0:
        ctx.continue_as_new(left - 1)
    return "done"


@workflow
async def blocking_wf(ctx: WorkflowContext) -> str:
    time.sleep(0.3)  # the mistake the worker warns about: it blocks the whole worker
    return "woke"


@workflow
async def parked_wf(ctx: WorkflowContext) -> None:
    await ctx.wait_signal("never")


@workflow
async def failing_wf(ctx: WorkflowContext) -> None:
    raise durable.ApplicationError("the order was refused", non_retryable=True)


class Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def metric_points(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        points: dict[str, list[Any]] = {}
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points.setdefault(metric.name, []).extend(metric.data.data_points)
        return points


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    yield Telemetry()


@pytest.fixture
async def traced_client(dsn: str, telemetry: Telemetry) -> AsyncIterator[durable.Client]:
    client = await durable.Client.connect(
        dsn,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )
    yield client
    await client.close()


def _by_name(spans: list[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        found.setdefault(span.name, []).append(span)
    return found


async def test_a_workflow_is_one_trace_under_the_span_that_started_it(
    traced_client: durable.Client, telemetry: Telemetry
) -> None:
    app = telemetry.tracer_provider.get_tracer("app")
    async with durable.Worker(
        traced_client, workflows=[traced_wf, child_wf], activities=[greet, flaky]
    ):
        with app.start_as_current_span("POST /orders") as request:
            handle = await traced_client.start(traced_wf, "ada", id="traced")
        result = await handle.result(timeout=30)
    assert result == ["hello ada", "steady", "hello ada", "hello local"]
    spans = telemetry.finished()
    names = _by_name(spans)
    trace_id = request.get_span_context().trace_id
    assert {s.context.trace_id for s in spans} == {trace_id}, "one trace"
    by_id = {s.context.span_id: s for s in spans}

    def parent(span: ReadableSpan) -> ReadableSpan:
        assert span.parent is not None
        return by_id[span.parent.span_id]

    start = names["StartWorkflow:traced_wf"][0]
    assert start.kind is SpanKind.PRODUCER and parent(start).name == "POST /orders"
    steps = names["RunWorkflow:traced_wf"]
    assert len(steps) >= 4 and all(s.kind is SpanKind.CONSUMER for s in steps)
    assert {parent(s).name for s in steps} == {"StartWorkflow:traced_wf"}
    for run in names["RunActivity:greet"]:
        assert run.kind is SpanKind.CONSUMER
        assert parent(run).name == "StartActivity:greet"
        assert parent(parent(run)).name in {"RunWorkflow:traced_wf", "RunWorkflow:child_wf"}
    attempts = names["RunActivity:flaky"]
    assert [s.attributes["durable.attempt"] for s in attempts] == [1, 2]
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" for e in attempts[0].events)
    assert attempts[1].status.status_code is not StatusCode.ERROR
    assert {parent(s).name for s in attempts} == {"StartActivity:flaky"}
    child_steps = names["RunWorkflow:child_wf"]
    assert {parent(s).name for s in child_steps} == {"StartChildWorkflow:child_wf"}
    (timer,) = names["Timer"]
    assert timer.end_time is not None and timer.start_time is not None
    assert timer.end_time - timer.start_time >= 40_000_000  # it covers the sleep
    (local,) = names["RunLocalActivity:greet"]
    assert local.kind is SpanKind.INTERNAL
    # every span carries the ids of its run
    assert all(s.attributes["durable.workflow_id"] == "traced" for s in steps)
    # and the name of its workflow (the attempts of activities too: API.md, "Observability")
    for span in spans:
        if span.name != "POST /orders":
            assert span.attributes is not None
            workflow_name = span.attributes.get("durable.workflow_name")
            assert workflow_name in {"traced_wf", "child_wf"}, (span.name, workflow_name)


@pytest.mark.parametrize("client_traces", [True, False])
async def test_continue_as_new_stays_in_the_trace(
    dsn: str, traced_client: durable.Client, telemetry: Telemetry, client_traces: bool
) -> None:
    """Three runs of one workflow, one trace: that of the span it was started in, or (started
    by a client that traces nothing) the one made from its first run."""
    async with durable.Worker(traced_client, workflows=[rounds_wf], activities=[greet]):
        if client_traces:
            with telemetry.tracer_provider.get_tracer("app").start_as_current_span("job"):
                handle = await traced_client.start(rounds_wf, 2, id="rounds")
        else:
            async with await durable.Client.connect(dsn) as untraced:
                handle = await untraced.start(rounds_wf, 2, id="rounds")
        assert await traced_client.get_handle("rounds").result(timeout=30) == "done"
    spans = telemetry.finished()
    steps = [s for s in spans if s.name == "RunWorkflow:rounds_wf"]
    assert len({s.attributes["durable.run_id"] for s in steps}) == 3
    assert len({s.context.trace_id for s in spans}) == 1, "every run in one trace"
    assert any(s.name == "job" for s in spans) is client_traces
    assert handle.workflow_id == "rounds"


async def test_metrics_count_a_known_workload(
    traced_client: durable.Client, telemetry: Telemetry
) -> None:
    async with durable.Worker(
        traced_client,
        workflows=[traced_wf, child_wf, failing_wf, parked_wf],
        activities=[greet, flaky],
    ):
        parked = await traced_client.start(parked_wf, id="parked")
        for i in range(3):
            await traced_client.execute(traced_wf, "bob", id=f"counted-{i}")
        failed = await traced_client.start(failing_wf, id="refused")
        with pytest.raises(durable.WorkflowFailedError):
            await failed.result(timeout=30)
        await parked.terminate("enough")
        # closed already: nothing terminated, nothing counted
        await traced_client.get_handle("parked").terminate("enough")
        points = telemetry.metric_points()  # while the worker serves: its gauges too

    def total(name: str, **attributes: str) -> float:
        return sum(
            p.value
            for p in points.get(name, [])
            if all(p.attributes.get(k) == v for k, v in attributes.items())
        )

    assert total("durable.workflows.started", workflow_name="traced_wf") == 3
    assert total("durable.workflows.completed", workflow_name="traced_wf") == 3
    assert total("durable.workflows.completed", workflow_name="child_wf") == 3
    assert total("durable.workflows.failed", workflow_name="failing_wf") == 1
    assert total("durable.workflows.terminated", workflow_name="parked_wf") == 1
    # greet: 2 per traced run (one local) + 1 per child; flaky: 2 attempts, 1 failed
    assert total("durable.activities.attempts", activity_name="greet") == 9
    assert total("durable.activities.attempts", activity_name="flaky") == 6
    assert total("durable.activities.failed", activity_name="flaky") == 3
    for histogram in (
        "durable.workflow_task.duration",
        "durable.activity.duration",
        "durable.activity.schedule_to_start",
        "durable.workflow.end_to_end",
        "durable.commit.batch_size",
    ):
        assert sum(p.count for p in points[histogram]) > 0, histogram
    slots = {p.attributes["kind"]: p.value for p in points["durable.worker.slots_used"]}
    assert slots == {"workflow": 0, "activity": 0}, "nothing runs once all closed"
    backlog = {p.attributes["kind"]: p.value for p in points["durable.task_queue.backlog"]}
    assert backlog == {"workflow": 0, "activity": 0}
    assert "durable.worker.cached_workflows" in points


async def test_logs_carry_ids_and_failures_are_logged_once(
    traced_client: durable.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="durable")
    async with durable.Worker(
        traced_client, workflows=[traced_wf, child_wf, failing_wf], activities=[greet, flaky]
    ):
        await traced_client.execute(traced_wf, "eve", id="logged")
        failed = await traced_client.start(failing_wf, id="refused-logged")
        with pytest.raises(durable.WorkflowFailedError):
            await failed.result(timeout=30)

        async def failure_logged() -> bool:
            return any("refused-logged" in r.getMessage() for r in caplog.records)

        await wait_for(failure_logged)
    workflow_logs = [r for r in caplog.records if "starting for eve" in r.getMessage()]
    assert len(workflow_logs) == 1, "logged once, not again on replay"
    record = workflow_logs[0]
    assert record.__dict__["workflow_id"] == "logged" and record.__dict__["attempt"] == 1
    assert len(record.__dict__["trace_id"]) == 32 and len(record.__dict__["span_id"]) == 16
    activity_logs = [r for r in caplog.records if "greeting eve" in r.getMessage()]
    assert activity_logs and activity_logs[0].__dict__["attempt"] == 1
    assert activity_logs[0].__dict__["activity_id"]
    retried = [
        r for r in caplog.records if "flaky" in r.getMessage() and "next attempt" in r.getMessage()
    ]
    assert len(retried) == 1 and retried[0].levelno == logging.WARNING
    refused = [r for r in caplog.records if "refused-logged" in r.getMessage()]
    assert len(refused) == 1 and "the order was refused" in refused[0].getMessage()
    description = await failed.describe()
    assert description.failure == "the order was refused"


async def test_a_worker_killed_mid_workflow_leaves_one_trace_and_no_replayed_spans(
    dsn: str, telemetry: Telemetry, tmp_path: Path
) -> None:
    """Worker A (its own global tracer provider, spans written as they end) runs steps 0
    and 1 and is SIGKILLed in step 2; worker B takes the run over after A's lease. Every
    span of both processes belongs to the trace of the application span that started the
    workflow, and B, which replays steps 0-2 from history, makes spans for its live steps
    only. Each worker process also keeps its own tracer provider (exit code 0, not 3)."""
    spans_a, spans_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    hold = Path(f"{spans_a}.hold-2")
    hold.touch()
    env = {**os.environ, "PYTHONPATH": str(TRACED_APP.parent.parent)}

    def spawn(spans: Path) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "tests.traced_app", dsn, str(spans)]
        return subprocess.Popen(command, env=env, cwd=TRACED_APP.parent.parent)

    first = spawn(spans_a)
    second: subprocess.Popen[bytes] | None = None
    client = await durable.Client.connect(dsn, tracer_provider=telemetry.tracer_provider)
    try:
        app = telemetry.tracer_provider.get_tracer("app")
        with app.start_as_current_span("POST /batch") as request:
            handle = await client.start(traced_steps, 5, id="killed-mid-trace")

        async def reached_step_2() -> bool:
            return Path(f"{spans_a}.reached-2").exists()

        await wait_for(reached_step_2, timeout=30)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        hold.unlink()
        second = spawn(spans_b)
        # step 2's activity reads its hold file by the path of the process that runs it
        assert await handle.result(timeout=60) == sum(range(5))
        second.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(second.wait, 20) == 0, "B kept its own tracer provider"
    finally:
        await client.close()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    a, b = read_spans([spans_a]), read_spans([spans_b])
    trace_id = request.get_span_context().trace_id
    assert a and b
    assert {s["trace_id"] for s in a + b} == {trace_id}, "one trace across both workers"
    runs_a = [s for s in a if s["name"] == "RunWorkflow:traced_steps"]
    runs_b = [s for s in b if s["name"] == "RunWorkflow:traced_steps"]
    assert len(runs_a) == 3, "A's live steps: the first one and one after each of 2 results"
    # B's live steps: the result of step 2 (its retried attempt), of 3 and of 4, and
    # perhaps the takeover claim's own step; replayed steps 0-2 would add 3 more
    assert 3 <= len(runs_b) <= 4, [s["attributes"] for s in runs_b]
    attempts: dict[str, list[int]] = {}
    for span in a + b:
        if span["name"] == "RunActivity:hold_step":
            attrs = span["attributes"]
            attempts.setdefault(attrs["durable.activity_id"], []).append(attrs["durable.attempt"])
    assert sorted(attempts.values()) == [[1], [1], [1], [1], [2]], attempts


async def test_a_step_that_blocks_the_loop_is_logged_once_with_its_stack(
    traced_client: durable.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="durable.worker")
    async with durable.Worker(traced_client, workflows=[blocking_wf, traced_wf, child_wf],
                              activities=[greet, flaky]):  # fmt: skip
        assert await traced_client.execute(blocking_wf, id="blocking") == "woke"
        await traced_client.execute(traced_wf, "quick", id="not-blocking")
    held = [r for r in caplog.records if "held the worker's event loop" in r.getMessage()]
    assert len(held) == 1, [r.getMessage() for r in held]
    message = held[0].getMessage()
    assert "blocking_wf" in message and "time.sleep(0.3)" in message
    assert held[0].__dict__["workflow_id"] == "blocking"
