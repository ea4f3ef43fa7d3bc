"""How long the engine takes to recover from each kind of fault, one fault at a time:

    python -m tests.chaos.recovery --lease 10 --poll 1 --rounds 3

Workers run with the given lease and poll interval (default: the Worker's defaults, 10 s and
1 s); each kind of fault (kill -9 a worker, restart Postgres, terminate backends, stall a
worker past its lease) is injected ``--rounds`` times, in turn, far enough apart that each
recovers before the next. Prints the chaos report, whose "recovery by kind" line gives each
kind's worst and median recovery beside the bound of one lease plus one poll. Checks every
invariant too; exits 1 on a violation.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import LEASE_ENV, POLL_ENV
from .faults import FAULT_KINDS


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos.recovery",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--lease", type=float, default=10.0, help="lease_ttl, s (default 10)")
    parser.add_argument("--poll", type=float, default=1.0, help="poll_interval, s (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="faults of each kind (default 3)")
    parser.add_argument("--seed", type=int, default=20261202)
    args = parser.parse_args(argv)
    # before the harness imports app.py, which reads them (as every worker process does)
    os.environ[LEASE_ENV], os.environ[POLL_ENV] = str(args.lease), str(args.poll)
    from .harness import Profile, describe, run_chaos

    gap = args.lease + 8.0  # a stall lasts 1.5 leases; the next fault comes once it is over
    faults = args.rounds * len(FAULT_KINDS)
    profile = Profile(
        workflows=40 * faults,
        workers=3,
        duration=3.0 + gap * faults,
        seed=args.seed,
        fault_gap=(gap, gap),
        stall_seconds=1.5 * args.lease,
        start_fraction=0.95,
        settle_timeout=60.0 + 3 * args.lease,
        max_wait=30.0 + 3 * args.lease,
        kinds_in_turn=True,
    )
    report = run_chaos(profile)
    print(describe(report))
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
