-- The options the workers of each task queue declare for the activities they serve (their
-- @activity's retry policy and timeouts, as ACTIVITY_SCHEDULED records them; NULL: not
-- declared), written at each registration: an activity called by name takes those it is
-- not given, and history records them with the call (durable/_worker/routing.py).
ALTER TABLE durable.activity_types
    ADD COLUMN retry bytea,
    ADD COLUMN start_to_close double precision,
    ADD COLUMN schedule_to_close double precision,
    ADD COLUMN heartbeat double precision;
