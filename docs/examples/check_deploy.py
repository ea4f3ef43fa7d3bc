"""The deploy check of docs/guide/testing.md: the new code replays the exported runs.

In a project: tests/test_deploy.py, run in CI with the histories production exported.
"""

import os
from pathlib import Path

import pytest
from tutorial_app import greet

from durable.testing import Replayer

# --8<-- [start:check]
HISTORIES = Path(os.environ.get("HISTORIES", "histories"))


@pytest.mark.asyncio
async def test_the_new_code_resumes_every_exported_run() -> None:
    files = sorted(HISTORIES.glob("*.jsonl"))
    assert files, f"no exported histories in {HISTORIES}"
    done = await Replayer(workflows=[greet]).replay(files)  # NondeterminismError names the run
    print(f"{done.replayed} runs replay with the new code")


# --8<-- [end:check]
