"""The chaos (fault-injection) suite: see docs/reliability.md."""

# The workers' lease and poll interval, in seconds, read by app.py as it is imported (in the
# harness and in every worker process): python -m tests.chaos.recovery sets them.
LEASE_ENV, POLL_ENV = "CHAOS_LEASE_SECONDS", "CHAOS_POLL_SECONDS"
# The file a worker process writes its spans to (see checks.check_traces).
SPANS_ENV = "CHAOS_SPANS_FILE"
# The build a worker process runs (see app.BUILDS and checks.check_builds).
BUILD_ENV = "CHAOS_BUILD"
# Workers keep no prepared statements ("0"): they run behind a pooler in transaction mode
# (Profile.pooler), with $DURABLE_LISTEN_DATABASE_URL a direct connection.
PREPARED_ENV = "CHAOS_PREPARED_STATEMENTS"
