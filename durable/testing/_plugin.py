"""The pytest plugin (``pytest -p durable.testing``): a time-skipping environment per test.

    @pytest.mark.durable(workflows=[order], activities=[charge])
    async def test_order(durable_env, durable_client): ...

The marker's keywords go to ``WorkflowEnvironment.start_time_skipping``; without the marker
the environment has no worker (start them with ``durable_env.worker(...)``). Async fixtures
need pytest-asyncio.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from .._client import Client
from ._environment import WorkflowEnvironment


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "durable(**options): options of durable_env's WorkflowEnvironment.start_time_skipping "
        "(workflows=, activities=, task_queue=, dsn=, worker options)",
    )


@pytest_asyncio.fixture
async def durable_env(request: pytest.FixtureRequest) -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping WorkflowEnvironment of its own for the test."""
    marker = request.node.get_closest_marker("durable")
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    async with WorkflowEnvironment.start_time_skipping(**options) as env:
        yield env


@pytest_asyncio.fixture
async def durable_client(durable_env: WorkflowEnvironment) -> Client:
    """The client of the test's durable_env."""
    return durable_env.client
