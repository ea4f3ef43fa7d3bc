"""Debounced starts in the chaos run: bursts of debounced starts of a few ids, through the
faults, each start retried until it lands; and their invariants, checked afterwards:

- each id ran exactly once: one run (a start after it began gets its handle, or, once it
  closed, is refused: ``use_existing`` and ``reject_duplicate``), completed;
- it ran with the arguments its history records (its result is made of them), and those
  are the arguments of one of the starts sent for the id;
- every start that returned a handle returned that run's.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import durable
from durable._serialization import decode

from . import app
from .checks import Snapshot

IDS = 6
STARTS = 8  # in each id's burst, 0.2-0.6 s apart: under the debounce, unless a fault intervenes
DEBOUNCE = timedelta(seconds=2)
DEBOUNCE_MAX = timedelta(seconds=20)

Retry = Callable[..., Awaitable[Any]]


@dataclass
class Sent:
    values: list[int] = field(default_factory=list)  # of every start tried
    runs: set[str] = field(default_factory=set)  # the run ids the starts returned
    refused: int = 0  # starts after the run closed (id_reuse_policy="reject_duplicate")


def workflow_id(number: int) -> str:
    return f"chaos-debounced-{number}"


async def drive_all(
    client: durable.Client,
    retry: Retry,
    sent: dict[str, Sent],
    duration: float,
    clock: Callable[[], float],
) -> None:
    """The bursts, one id after another over the faults' duration (what each sent, into
    ``sent``)."""
    sent.update({workflow_id(n): Sent() for n in range(IDS)})
    await asyncio.gather(
        *(
            _burst(client, retry, n, sent[workflow_id(n)], n * duration / IDS, clock)
            for n in range(IDS)
        )
    )
    return sent


async def _burst(
    client: durable.Client,
    retry: Retry,
    number: int,
    sent: Sent,
    at: float,
    clock: Callable[[], float],
) -> None:
    await asyncio.sleep(max(0.0, at - clock()))
    wid = workflow_id(number)
    rng = random.Random(number)
    for start in range(STARTS):
        value = number * 100 + start
        sent.values.append(value)
        try:
            handle = await retry("debounced start", lambda v=value: _start(client, wid, v))
        except durable.WorkflowAlreadyStartedError:
            sent.refused += 1  # its run has closed
        else:
            sent.runs.add(handle.run_id)
        await asyncio.sleep(rng.uniform(0.2, 0.6))


async def _start(client: durable.Client, wid: str, value: int) -> durable.WorkflowHandle[Any]:
    return await client.start(
        app.chaos_debounced,
        value,
        id=wid,
        task_queue=app.TASK_QUEUE,
        debounce=DEBOUNCE,
        debounce_max=DEBOUNCE_MAX,
        id_conflict_policy="use_existing",
        id_reuse_policy="reject_duplicate",
    )


# ---------------------------------------------------------------------------- checks
@dataclass
class Figures:
    starts: int = 0
    refused: int = 0
    last: int = 0  # ids whose run ran with the arguments of their last start

    def line(self) -> str:
        return (
            f"debounced: {IDS} ids, {self.starts} starts ({self.refused} after the run "
            f"closed); {self.last} ran with their last start's arguments"
        )


def check(sent: dict[str, Sent], snapshot: Snapshot) -> tuple[list[str], Figures]:
    problems: list[str] = []
    figures = Figures()
    for wid, burst in sent.items():
        figures.starts += len(burst.values)
        figures.refused += burst.refused
        runs = snapshot.runs_of(wid)
        if len(runs) != 1:
            problems.append(f"{wid}: {len(runs)} runs, expected exactly one")
            continue
        (run,) = runs
        if run.status != "completed":
            problems.append(f"{run.label()}: not completed")
            continue
        (value,), _ = decode(run.events[0].attrs["args"])
        figures.last += value == burst.values[-1]
        if value not in burst.values:
            problems.append(f"{run.label()}: ran with {value}, which no start sent")
        result = decode(run.row["result"])
        if result != app.debounced_value(value):
            problems.append(
                f"{run.label()}: returned {result}, not what its recorded arguments ({value}) "
                "give: it ran with other arguments than its history holds"
            )
        if burst.runs - {run.run_id}:
            problems.append(f"{wid}: starts returned other runs: {sorted(burst.runs)}")
    return problems, figures
