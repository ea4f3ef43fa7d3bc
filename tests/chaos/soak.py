"""The chaos harness for as long as you like:

    python -m tests.chaos.soak --duration 600 --workflows 1000 --workers 4

Prints the figures and, last, ``invariant violations: N``; exits 1 when N > 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from .harness import Profile, describe, run_chaos


def parse_args(argv: list[str]) -> Profile:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--duration", type=float, default=600.0, help="seconds of fault injection (default 600)"
    )
    parser.add_argument(
        "--workflows", type=int, default=1000, help="workflows to run (default 1000)"
    )
    parser.add_argument("--workers", type=int, default=4, help="worker processes (default 4)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the time)")
    parser.add_argument(
        "--min-restarts",
        type=int,
        default=None,
        help="Postgres restarts at least (default: one per 120 s, at least 1)",
    )
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=120.0,
        help="seconds to let workflows finish after the faults (default 120)",
    )
    parser.add_argument(
        "--pooler",
        action="store_true",
        help="the workers through PgBouncer in transaction mode (tests/pgbouncer.py): no "
        "prepared statements, LISTEN on a direct connection",
    )
    args = parser.parse_args(argv)
    if args.duration < 20 or args.workflows < 1 or args.workers < 2:
        parser.error("need --duration >= 20, --workflows >= 1 and --workers >= 2")
    return Profile(
        workflows=args.workflows,
        workers=args.workers,
        duration=args.duration,
        seed=args.seed if args.seed is not None else int(time.time()) % 1_000_000,
        min_restarts=args.min_restarts
        if args.min_restarts is not None
        else max(1, int(args.duration // 120)),
        start_fraction=0.9,
        settle_timeout=args.settle_timeout,
        pooler=args.pooler,
    )


def _stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the server and the workers are stopped."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    profile = parse_args(sys.argv[1:] if argv is None else argv)
    _stop_on_sigterm()
    report = run_chaos(profile, log=lambda line: print(line, flush=True))
    print(describe(report), flush=True)
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
