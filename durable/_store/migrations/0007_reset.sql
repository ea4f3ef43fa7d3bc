-- A run started by a reset or a fork of another: which run and point it came from, and the
-- request that made it (the same request made again finds it instead of resetting twice).
ALTER TABLE durable.workflows ADD COLUMN reset_from_run uuid, ADD COLUMN reset_from_seq integer,
    ADD COLUMN reset_request text;
