-- An activity task carries the trace context of the span that scheduled it (the propagator's
-- fields, e.g. {"traceparent": "00-..."}; NULL when the scheduling worker traced nothing), so
-- that each attempt's span, on any worker, is that span's child.
ALTER TABLE durable.activity_tasks ADD COLUMN trace jsonb;
