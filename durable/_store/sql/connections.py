"""The statements of the store's connections (used by durable/_store/connection.py and
where named), each with why it is written so."""

from __future__ import annotations

# _init_connection, on each new connection: every statement here is meant to be driven by
# an index. The inbox and task tables go from empty to large in seconds, faster than
# autovacuum's statistics, and a plan cached while a table looked empty would scan all of it
# on every commit from then on. JIT never pays for statements this short, and before
# Postgres 18 a disabled scan's cost would make some of them JIT-compile for seconds.
# Statements are planned once per connection (a generic plan) instead of for each of their
# first five runs: planning the commit statement costs about a round trip, so a fresh
# worker's first steps took twice as long as later ones.
_SESSION_SETTINGS_SQL = (
    "SET enable_seqscan = off; SET jit = off; SET plan_cache_mode = force_generic_plan"
)

# Behind a connection pooler a session SET lands on whichever server connection ran it, and
# another client's statements may then run on one without it: the settings above are made the
# role's own in this database instead (a role may set its own defaults), read by every server
# connection the pooler opens for it. What this role and database have of them already:
_ROLE_SETTINGS_SQL = """
SELECT coalesce(array_agg(config), '{}') FROM pg_db_role_setting s, unnest(s.setconfig) config
WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
    AND s.setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = current_user))
"""

# The settings made the defaults of the connecting role in this database; the server
# connection that runs this (opened before) takes them too. Server connections the pooler
# opened before keep their old defaults until it reopens them (PgBouncer: server_lifetime,
# or RECONNECT on its console).
_SET_ROLE_SETTINGS_SQL = f"""
DO $$BEGIN
    EXECUTE format('ALTER ROLE CURRENT_USER IN DATABASE %I SET enable_seqscan = off',
        current_database());
    EXECUTE format('ALTER ROLE CURRENT_USER IN DATABASE %I SET jit = off', current_database());
    EXECUTE format('ALTER ROLE CURRENT_USER IN DATABASE %I SET plan_cache_mode = '
        'force_generic_plan', current_database());
END$$;
{_SESSION_SETTINGS_SQL}
"""

# The same, for the message that tells an administrator what to run when the role may not.
ROLE_SETTINGS = ("enable_seqscan=off", "jit=off", "plan_cache_mode=force_generic_plan")
