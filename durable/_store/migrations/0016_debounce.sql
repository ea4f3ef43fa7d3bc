-- Debounce (client.start(..., debounce=...)): a run a debounced start opened is marked, so
-- that a later debounced start of its workflow id, while the run has not begun, replaces
-- its arguments and moves its start instead of opening a run of its own.
-- durable.requests.run_id: the run a debounced start was applied to (an attempt of the
-- start made again after a lost connection finds it there and applies nothing more).
ALTER TABLE durable.workflows ADD COLUMN debounced boolean NOT NULL DEFAULT false;
ALTER TABLE durable.requests ADD COLUMN run_id uuid;
