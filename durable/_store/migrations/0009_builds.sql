-- The build of the worker that started a run (ran its first workflow task), when that
-- worker had one: only workers of that build, or listing it as compatible, claim the run.
ALTER TABLE durable.workflows ADD COLUMN build_id text;
