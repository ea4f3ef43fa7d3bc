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
