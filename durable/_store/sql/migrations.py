"""The statements of the store's migrations (used by durable/_store/migrations.py and
where named), each with why it is written so."""

from __future__ import annotations

# Whether the table of applied migrations exists (NULL: not yet).
_MIGRATIONS_TABLE_SQL = "SELECT to_regclass('durable.schema_migrations')"

# The versions applied.
_APPLIED_MIGRATIONS_SQL = "SELECT version FROM durable.schema_migrations"

# One process migrates at a time: a session lock, held across the migrations' transactions.
_MIGRATION_LOCK_SQL = "SELECT pg_advisory_lock($1)"

# Its release, once the migrations are applied (or one failed).
_MIGRATION_UNLOCK_SQL = "SELECT pg_advisory_unlock($1)"

# The schema and the table of applied versions, for a new database.
_CREATE_MIGRATIONS_TABLE_SQL = """
CREATE SCHEMA IF NOT EXISTS durable;
CREATE TABLE IF NOT EXISTS durable.schema_migrations (
    version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())
"""

# A migration applied, in its transaction.
_RECORD_MIGRATION_SQL = "INSERT INTO durable.schema_migrations (version) VALUES ($1)"
