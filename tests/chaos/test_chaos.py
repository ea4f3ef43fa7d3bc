"""The bounded chaos profiles, part of the default test run (``pytest -m "not chaos"`` leaves
them out; each is skipped, with the reason, where the suite cannot run its own Postgres, or
PgBouncer for the second).

- 150 workflows on 3 worker processes, 60 s of faults (each kind at least once, Postgres
  restarted twice): 65-110 s;
- the same through PgBouncer in transaction mode (the workers' pools through it, with no
  prepared statements; their LISTEN and the harness direct), 80 workflows, 30 s: 35-50 s.

Then every invariant of tests/chaos/checks.py. The figures are printed (see them with
``pytest -s``); on failure the message lists every violation. (One file: xdist runs the two
one after the other, not side by side on a small machine.)
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from ..pgbouncer import unavailable as no_pgbouncer
from .harness import Profile, describe, run_chaos

CI_PROFILE = Profile(
    workflows=150,
    workers=3,
    duration=60.0,
    seed=int(os.environ.get("CHAOS_SEED", "20240601")),
    min_restarts=2,
    settle_timeout=40.0,
)
POOLER_PROFILE = dataclasses.replace(CI_PROFILE, workflows=80, duration=30.0, pooler=True)


def _check(profile: Profile) -> None:
    report = run_chaos(profile)
    text = describe(report)
    print(text)
    assert not report.violations, text


@pytest.mark.chaos
@pytest.mark.timeout(240)
def test_chaos_ci_profile() -> None:
    _check(CI_PROFILE)


@pytest.mark.chaos
@pytest.mark.skipif(no_pgbouncer() is not None, reason=str(no_pgbouncer()))
@pytest.mark.timeout(180)
def test_chaos_through_a_transaction_pooler() -> None:
    _check(POOLER_PROFILE)
