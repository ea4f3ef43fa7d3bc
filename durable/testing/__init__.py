"""Testing workflows: a time-skipping environment on a real database, a replayer of
recorded histories, and (``pytest -p durable.testing``) fixtures for pytest."""

from ._environment import VirtualClock, WorkflowEnvironment
from ._replay import Replayer, ReplayResult

__all__ = ["ReplayResult", "Replayer", "VirtualClock", "WorkflowEnvironment"]

try:  # the pytest plugin, where pytest and pytest-asyncio are installed
    from ._plugin import durable_client, durable_env, pytest_configure
except ImportError:  # pragma: no cover - used without pytest
    pass
else:
    __all__ += ["durable_client", "durable_env", "pytest_configure"]
