-- How many positional arguments each registered workflow takes after its context, as its
-- workers declare it at each registration: at least min_args, at most max_args (NULL: any
-- number, it has *args). A start by name (the client has no function to check them
-- against) is refused when its count does not fit. NULL min_args: registered by a worker
-- from before this migration, nothing is known.
ALTER TABLE durable.workflow_types
    ADD COLUMN min_args integer,
    ADD COLUMN max_args integer;
