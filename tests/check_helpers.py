"""A helper module of the same package as tests/check_targets.py: `durable check` follows
workflow code into it."""

from __future__ import annotations

from datetime import datetime


def stamp() -> str:
    return datetime.now().isoformat()  # finding: the wall clock, reached through a helper


def pure(n: int) -> int:
    return n * 2
