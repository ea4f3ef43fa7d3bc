-- The engine's clock: every due time, deadline and timestamp of a run is read from
-- durable.now() (the transaction's time) or durable.clock_timestamp() (the statement's),
-- never from now() itself, so that a test database can move time forward by replacing these
-- two functions (durable.testing.WorkflowEnvironment). Here they are the server's clock:
-- simple SQL functions that the planner inlines, at no cost. Worker leases, query claims
-- and request retention stay on now(): they measure real time.
CREATE FUNCTION durable.now() RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE
    AS 'SELECT now()';
CREATE FUNCTION durable.clock_timestamp() RETURNS timestamptz LANGUAGE sql VOLATILE
    PARALLEL SAFE AS 'SELECT clock_timestamp()';
ALTER TABLE durable.workflows ALTER COLUMN created_at SET DEFAULT durable.now(),
    ALTER COLUMN started_at SET DEFAULT durable.now();
ALTER TABLE durable.inbox ALTER COLUMN visible_at SET DEFAULT durable.now();
ALTER TABLE durable.activity_tasks ALTER COLUMN scheduled_at SET DEFAULT durable.now(),
    ALTER COLUMN visible_at SET DEFAULT durable.now();
