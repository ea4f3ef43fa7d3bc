"""The ``chaos`` marker (``pytest -m "not chaos"`` leaves the chaos profile out), and a skip
with the reason when this machine cannot run the suite's own Postgres server."""

from __future__ import annotations

import pytest

from .server import unavailable


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: fault-injection run with its own Postgres")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = unavailable()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"chaos profile needs its own Postgres server: {reason}")
    for item in items:
        if item.get_closest_marker("chaos"):
            item.add_marker(skip)
