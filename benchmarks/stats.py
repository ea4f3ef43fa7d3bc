"""Small statistics helpers."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by the nearest-rank method."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def gaps(stamps: Sequence[float]) -> list[float]:
    """Differences between consecutive time stamps."""
    return [later - earlier for earlier, later in itertools.pairwise(stamps)]
