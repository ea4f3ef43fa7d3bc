"""Traces, metrics and logs (docs/guide/observability.md)."""

import asyncio
import logging

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import durable
from durable import WorkflowContext, activity, workflow

QUEUE = "observability"


@activity
async def fetch(url: str) -> int:
    durable.activity_context().logger.info("fetching %s", url)
    return len(url)


@workflow(task_queue=QUEUE)
async def crawl(ctx: WorkflowContext, urls: list[str]) -> int:
    ctx.logger.info("crawling %d pages", len(urls))
    sizes = await asyncio.gather(*(ctx.activity(fetch, u) for u in urls))
    await ctx.sleep(0.1)
    return sum(sizes)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def main() -> None:
    # --8<-- [start:providers]
    spans = InMemorySpanExporter()  # in production: an OTLP exporter, say
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    metrics = InMemoryMetricReader()  # in production: a Prometheus or OTLP reader
    meter_provider = MeterProvider(metric_readers=[metrics])
    client = await durable.Client.connect(
        tracer_provider=tracer_provider,  # None (the default): OpenTelemetry's global ones
        meter_provider=meter_provider,
    )
    # --8<-- [end:providers]
    collect = Collect()
    logging.getLogger("durable").addHandler(collect)
    logging.getLogger("durable").setLevel(logging.INFO)
    async with (
        client,
        durable.Worker(client, task_queue=QUEUE, workflows=[crawl], activities=[fetch]),
    ):
        assert await client.execute(crawl, ["a.example", "b.example"]) == 18

    # --8<-- [start:read]
    names = sorted({span.name for span in spans.get_finished_spans()})
    print("spans:", names)
    trace_ids = {span.context.trace_id for span in spans.get_finished_spans()}
    print("traces:", len(trace_ids))  # one trace for the whole workflow
    data = metrics.get_metrics_data()
    found = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    print("metrics:", sorted(n for n in found if n.startswith("durable.workflow")))
    for r in collect.records:  # ctx.logger and activity_context().logger records
        if r.name in ("durable.workflow", "durable.activity"):
            print(f"log: {r.getMessage()} (run {r.run_id[:8]}, trace {r.trace_id[:8]})")
    # --8<-- [end:read]
    logged = [r for r in collect.records if r.name == "durable.activity"]
    assert {r.trace_id for r in logged} == {f"{t:032x}" for t in trace_ids}
    assert "RunActivity:fetch" in names and "StartWorkflow:crawl" in names
    assert len(trace_ids) == 1 and "durable.workflows.completed" in found


if __name__ == "__main__":
    asyncio.run(main())
