"""The replayer: runs workflow code on a deterministic loop against its history.

A WorkflowInstance is built from recorded events. ``replay()`` walks them: each command
the code issues must match the recorded command at the same position (else
NondeterminismError); each recorded incoming event is delivered where it was delivered
originally. After replay the instance is live: ``run_step()`` feeds new incoming events
and commands become new events, collected for the worker to commit.

The parts: ``instance`` (the driver: replay, live steps, what the worker asks of a run),
``state`` (what a run is made of, and how a command is matched or recorded), and the three
sides of a run's code: ``commands`` it issues, ``messages`` it receives, ``outcomes`` it
awaits.
"""

from .instance import WorkflowInstance
from .messages import WAITS_QUERY
from .state import LocalActivityCall

__all__ = ["WAITS_QUERY", "LocalActivityCall", "WorkflowInstance"]
