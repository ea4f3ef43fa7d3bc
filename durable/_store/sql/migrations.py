"""The statements of the store's migrations (used by durable/_store/migrations.py and
where named), each with why it is written so."""

from __future__ import annotations

# Whether the table of applied migrations exists (NULL: not yet).
_MIGRATIONS_TABLE_SQL = "SELECT to_regclass('durable.schema_migrations')"

# The versions applied.
_APPLIED_MIGRATIONS_SQL = "SELECT version FROM durable.schema_migrations"

# One process migrates at a time: a lock held by the transaction that applies a migration,
# released by its commit or rollback. Never a session lock held across transactions: behind
# a transaction-mode pooler (PgBouncer) each transaction may run on another server
# connection, so the unlock would miss the lock, which would stay held for good.
_MIGRATION_LOCK_SQL = "SELECT pg_advisory_xact_lock($1)"

# The schema and the table of applied versions, for a new database.
_CREATE_MIGRATIONS_TABLE_SQL = """
CREATE SCHEMA IF NOT EXISTS durable;
CREATE TABLE IF NOT EXISTS durable.schema_migrations (
    version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())
"""

# A migration applied, in its transaction.
_RECORD_MIGRATION_SQL = "INSERT INTO durable.schema_migrations (version) VALUES ($1)"
