"""A watch on live workflow steps: one that holds the worker's event loop for more than
``HELD_FOR`` seconds without awaiting (a blocking call in workflow code: ``time.sleep``, file
or network I/O) stalls every workflow and activity of the worker, so it is logged once, at
WARNING, with the stack where it is held, while it is held.

A thread of its own looks every ``LOOK_EVERY`` seconds; a step costs two assignments.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from pathlib import Path
from types import FrameType

from .._context import WorkflowInfo

HELD_FOR = 0.1
LOOK_EVERY = 0.05

_log = logging.getLogger("durable.worker")


# durable's own modules and asyncio's, which run workflow code
_ENGINE = (str(Path(__file__).resolve().parent.parent), str(Path(asyncio.__file__).parent))


def _workflow_frames(frame: FrameType) -> str:
    """The innermost frames, out to the engine's own: the workflow code (and what it
    called) that holds the loop, not the worker and asyncio around it."""
    stack = traceback.extract_stack(frame)
    inner = len(stack)
    while inner > 0 and not stack[inner - 1].filename.startswith(_ENGINE):
        inner -= 1
    shown = stack[inner:] or stack[-5:]
    return "".join(traceback.format_list(shown))


class SlowStepWatch:
    """Warns about a live step that holds its thread's event loop for too long."""

    def __init__(self) -> None:
        # (thread id, time.monotonic() it began, the run) of the step running now
        self._step: tuple[int, float, WorkflowInfo] | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopped.clear()
        self._thread = threading.Thread(target=self._watch, name="durable-step-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def began(self, info: WorkflowInfo) -> None:
        """The synchronous part of a live step (its workflow code running) begins..."""
        self._step = (threading.get_ident(), time.monotonic(), info)

    def ended(self) -> None:
        """...and ends."""
        self._step = None

    def _watch(self) -> None:
        warned: tuple[int, float, WorkflowInfo] | None = None
        while not self._stopped.wait(LOOK_EVERY):
            step = self._step
            if step is None or step is warned:
                continue
            thread_id, began, info = step
            held = time.monotonic() - began
            if held < HELD_FOR:
                continue
            frame = sys._current_frames().get(thread_id)
            if frame is None or self._step is not step:
                continue
            warned = step
            _log.warning(
                "a step of workflow %s (%s) has held the worker's event loop for %.0f ms "
                "without awaiting: every workflow and activity of this worker waits for it. "
                "Blocking calls (time.sleep, file or network I/O) belong in activities. "
                "It is here:\n%s",
                info.workflow_id,
                info.workflow_name,
                held * 1000,
                _workflow_frames(frame),
                extra={"workflow_id": info.workflow_id, "run_id": info.run_id},
            )
