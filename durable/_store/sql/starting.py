"""The statements of the store's starting (used by durable/_store/starting.py and
where named), each with why it is written so."""

from __future__ import annotations

# _start_in: the workflow's open run, else its latest, locked while the id conflict and
# reuse policies decide on it.
_START_LATEST_RUN_SQL = """
SELECT run_id, status, closed_at FROM durable.workflows WHERE workflow_id = $1
ORDER BY closed_at IS NULL DESC, created_at DESC LIMIT 1 FOR UPDATE
"""
