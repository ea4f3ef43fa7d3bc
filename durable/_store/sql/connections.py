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
_SETTINGS = (("enable_seqscan", "off"), ("jit", "off"), ("plan_cache_mode", "force_generic_plan"))
_SESSION_SETTINGS_SQL = "; ".join(f"SET {name} = {value}" for name, value in _SETTINGS)

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
_SET_ROLE_SETTINGS_SQL = "DO $$BEGIN\n{}\nEND$$;\n{}".format(
    "\n".join(
        f"    EXECUTE format('ALTER ROLE CURRENT_USER IN DATABASE %I SET {name} = {value}',"
        " current_database());"
        for name, value in _SETTINGS
    ),
    _SESSION_SETTINGS_SQL,
)

# The settings as pg_db_role_setting spells them, and as the message names them that tells an
# administrator what to run when the role may not.
ROLE_SETTINGS = tuple(f"{name}={value}" for name, value in _SETTINGS)
