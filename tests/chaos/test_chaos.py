"""The bounded chaos profile (65-110 s), part of the default test run (``pytest -m "not chaos"``
leaves it out; it is skipped, with the reason, where the suite cannot run its own Postgres).

150 workflows on 3 worker processes, 60 s of faults (each kind at least once, Postgres
restarted twice), then every invariant of tests/chaos/checks.py. The figures are printed
(see them with ``pytest -s``); on failure the message lists every violation.
"""

from __future__ import annotations

import os

import pytest

from .harness import Profile, describe, run_chaos

CI_PROFILE = Profile(
    workflows=150,
    workers=3,
    duration=60.0,
    seed=int(os.environ.get("CHAOS_SEED", "20240601")),
    min_restarts=2,
    settle_timeout=40.0,
)


@pytest.mark.chaos
@pytest.mark.timeout(240)
def test_chaos_ci_profile() -> None:
    report = run_chaos(CI_PROFILE)
    text = describe(report)
    print(text)
    assert not report.violations, text
