"""Registers the ``chaos`` marker (``pytest -m "not chaos"`` skips the chaos suite)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: fault-injection run with its own Postgres")
