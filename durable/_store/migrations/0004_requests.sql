-- Client writes (signals, cancellations, terminations, updates) carry a request id: the same
-- request applied twice has one effect. Rows are kept a day (durable.requests_kept), then
-- purged by the workers.
CREATE TABLE durable.requests (
    workflow_id text NOT NULL,
    request_id  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, request_id)
);
CREATE INDEX requests_by_age ON durable.requests (created_at);

-- Like durable.ensure, for a post whose request a concurrent post applied first: the post is
-- run again, and finds the request applied.
CREATE FUNCTION durable.ensure_new_requests(ok boolean) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION USING ERRCODE = 'DU003',
            MESSAGE = 'a concurrent post applied the same request first';
    END IF;
    RETURN true;
END $$;
