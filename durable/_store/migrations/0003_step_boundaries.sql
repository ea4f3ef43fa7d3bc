-- Steps in history: the last event a completed step recorded ends it (see durable/_events.py).
ALTER TABLE durable.history ADD COLUMN ends_step boolean NOT NULL DEFAULT false;

-- Like durable.ensure, for a closing step that did not read every message the run was sent
-- before it committed: the step is run again with them.
CREATE FUNCTION durable.ensure_read_all(ok boolean) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION USING ERRCODE = 'DU002',
            MESSAGE = 'messages reached the run while its closing step ran';
    END IF;
    RETURN true;
END $$;
