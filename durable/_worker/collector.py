"""The garbage collector's young-collection threshold while a worker serves."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

# While a worker serves, the cyclic garbage collector runs a young collection every 10,000
# net allocations of tracked objects instead of the interpreter's 700. Every cached run holds
# a few dozen tracked objects that each full collection walks: with 10,000 runs cached and
# the default, a burst of their timers spent ~18 % of the worker's CPU in collections, each
# full one a ~100 ms pause. A threshold the process set higher already is kept.
_YOUNG_COLLECTION_EVERY = 10_000


class _CollectorSetting:
    """The young-collection threshold of the process while any worker in it serves."""

    def __init__(self) -> None:
        self.serving = 0
        self.saved = self.applied = gc.get_threshold()

    @contextlib.contextmanager
    def while_serving(self) -> Iterator[None]:
        if self.serving == 0:
            self.saved = gc.get_threshold()
            self.applied = (max(self.saved[0], _YOUNG_COLLECTION_EVERY), *self.saved[1:])
            gc.set_threshold(*self.applied)
        self.serving += 1
        try:
            yield
        finally:
            self.serving -= 1
            if self.serving == 0 and gc.get_threshold() == self.applied:
                gc.set_threshold(*self.saved)  # unless the process changed it meanwhile


collector = _CollectorSetting()
