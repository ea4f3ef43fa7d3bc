"""`Replayer`: recorded histories replayed against workflow code, as a test.

A history comes from ``handle.history()`` (its payloads decoded), from a ``durable history ID
--json`` file (one JSON array of events) or from a ``durable export`` file (JSON lines: one
closed run per line, with its ids and history). Each is turned back into the events the
store holds (payloads encoded again) and replayed by ``WorkflowInstance.replayed``, the
replay the worker and ``durable replay`` run.

A ``durable history --json`` file and a ``handle.history()`` list do not hold the run's
ids; the run whose id seeds ``ctx.random()`` and the order of the workflow loop's sets is
recorded in its start event (``seed_run``) since schema 0010, so only a run started before
that is replayed under a stand-in id (then code that branches on randomness may diverge).
What JSON has no value of (a tuple, a set, bytes, a datetime under an ``Any`` annotation)
the code receives as JSON gave it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeAlias

from .._client import HistoryEvent
from .._definitions import WorkflowDefinition
from .._errors import NondeterminismError, PayloadError
from .._events import PAYLOAD_KEYS, Event, EventType
from .._replayer import WorkflowInstance
from .._serialization import encode

History: TypeAlias = Sequence[HistoryEvent]
HistorySource: TypeAlias = History | str | os.PathLike[str]

# the ids a history that does not record them is replayed under
_UNKNOWN_ID = "unknown"
_EVENT_KEYS = ("seq", "type", "timestamp", "fields", "ends_step")


@dataclass(frozen=True)
class ReplayResult:
    """What :meth:`Replayer.replay` did: it replayed ``replayed`` histories, none diverging."""

    replayed: int


class Replayer:
    """Replays recorded histories against the given workflow definitions and raises
    :class:`durable.NondeterminismError` where the code no longer issues what a history
    recorded: the check that changed workflow code still resumes the runs in flight."""

    def __init__(self, workflows: Iterable[WorkflowDefinition[Any, Any]]) -> None:
        self._workflows: dict[str, WorkflowDefinition[Any, Any]] = {}
        for definition in workflows:
            self._add(definition)
        if not self._workflows:
            raise ValueError("Replayer needs at least one @durable.workflow definition")

    def _add(self, definition: WorkflowDefinition[Any, Any]) -> None:
        if not isinstance(definition, WorkflowDefinition):
            raise TypeError(f"Replayer takes @durable.workflow definitions, got {definition!r}")
        known = self._workflows.setdefault(definition.name, definition)
        if known is not definition:
            raise ValueError(f"two workflow definitions are named {definition.name!r}")

    async def replay(self, histories: Iterable[HistorySource]) -> ReplayResult:
        """Replay each history: a list of events from ``handle.history()``, or the path of
        a file ``durable history ID --json`` or ``durable export -o FILE`` wrote (every run
        in it). Raises NondeterminismError (naming the history, the run and the event) at
        the first divergence, ValueError for a malformed file or a history of a workflow
        this Replayer was not given. The code runs on the replay's own loop, in this
        thread."""
        return self.replay_sync(histories)

    def replay_sync(self, histories: Iterable[HistorySource]) -> ReplayResult:
        """:meth:`replay`, as a blocking call."""
        if isinstance(histories, str | os.PathLike):
            raise TypeError(f"histories must be an iterable of histories or paths: [{histories!r}]")
        count = 0
        for recorded in _recorded(histories):
            self._replay_one(recorded)
            count += 1
        return ReplayResult(count)

    def _replay_one(self, recorded: _Recorded) -> None:
        events = [_stored_event(e, recorded.where) for e in recorded.events]
        definition = self._definition_for(recorded, events)
        workflow_id, run_id = recorded.workflow_id or _UNKNOWN_ID, recorded.run_id or _UNKNOWN_ID
        try:
            WorkflowInstance.replayed(definition, workflow_id, run_id, events).discard()
        except NondeterminismError as exc:
            raise NondeterminismError(f"{recorded.describe()}: {exc}") from exc
        except Exception as exc:
            exc.add_note(f"while replaying {recorded.describe()}")
            raise

    def _definition_for(
        self, recorded: _Recorded, events: Sequence[Event]
    ) -> WorkflowDefinition[Any, Any]:
        if not events:
            raise ValueError(f"{recorded.where}: the history has no events")
        started = events[0]
        if started.type is not EventType.WORKFLOW_STARTED:
            raise ValueError(
                f"{recorded.where}: the history begins with {started.type.name} at seq "
                f"{started.seq}, not WORKFLOW_STARTED"
            )
        name = started.attrs.get("name")
        definition = self._workflows.get(name) if isinstance(name, str) else None
        if definition is None:
            given = ", ".join(repr(n) for n in sorted(self._workflows))
            raise ValueError(
                f"{recorded.where}: the history is of workflow {name!r}, which this Replayer "
                f"was not given (it was given {given})"
            )
        return definition


@dataclass(frozen=True)
class _Recorded:
    """One history to replay, with where it came from and the run's ids where known."""

    where: str  # "history #0", "path", "path:3"
    events: Sequence[HistoryEvent]
    workflow_id: str | None = None
    run_id: str | None = None

    def describe(self) -> str:
        if self.workflow_id is None or self.run_id is None:
            return f"{self.where} (its workflow and run ids are not recorded in it)"
        return f"{self.where} (workflow id {self.workflow_id!r}, run id {self.run_id})"


def _recorded(histories: Iterable[HistorySource]) -> Iterator[_Recorded]:
    for index, item in enumerate(histories):
        if isinstance(item, str | os.PathLike):
            yield from _read_file(Path(item))
        elif isinstance(item, HistoryEvent):
            raise TypeError(
                "histories must be an iterable of histories, got a HistoryEvent: "
                "pass [history], not history"
            )
        else:
            yield _Recorded(f"history #{index}", _checked_events(item, index))


def _checked_events(item: Iterable[Any], index: int) -> list[HistoryEvent]:
    events = list(item)
    for event in events:
        if not isinstance(event, HistoryEvent):
            raise TypeError(
                f"history #{index} holds a {type(event).__name__}, not a durable.HistoryEvent "
                "(a history is what handle.history() returns)"
            )
    return events


def _stored_event(event: HistoryEvent, where: str) -> Event:
    """The event as the store holds it: its payloads encoded again."""
    try:
        kind = EventType[event.type]
    except KeyError:
        raise ValueError(f"{where}: seq {event.seq} has no event type {event.type!r}") from None
    try:
        attrs = {
            key: encode(value) if key in PAYLOAD_KEYS else value
            for key, value in event.fields.items()
        }
    except PayloadError as exc:
        raise ValueError(f"{where}: seq {event.seq} ({event.type}): {exc}") from exc
    return Event(event.seq, kind, event.timestamp, attrs, event.ends_step)


# ---------------------------------------------------------------------------- files
def _read_file(path: Path) -> Iterator[_Recorded]:
    """The histories of a ``durable history --json`` file (a JSON array of events) or of
    a ``durable export`` file (JSON lines, each a run with its history; an export of no run
    is empty)."""
    text = path.read_text(encoding="utf-8")
    first = text.lstrip()[:1]
    if not first:
        return
    if first == "[":
        yield _Recorded(str(path), list(_history_document(path, text)))
    elif first == "{":
        yield from _exported_runs(path, text)
    else:
        raise ValueError(
            f"{path}: begins with {first!r}; expected "
            "what `durable history ID --json` writes (a JSON array of events) or "
            "`durable export` writes (JSON lines, one run per line)"
        )


def _history_document(path: Path, text: str) -> Iterator[HistoryEvent]:
    for index, (line, item) in enumerate(_array_items(path, text)):
        yield _history_event(item, f"{path}:{line}: event #{index}")


def _exported_runs(path: Path, text: str) -> Iterator[_Recorded]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            run = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{where}: not a JSON document: {exc.msg} at column {exc.colno} (a "
                "`durable export` file has one run per line)"
            ) from None
        yield _exported_run(run, where)


def _exported_run(run: Any, where: str) -> _Recorded:
    if not isinstance(run, dict):
        raise ValueError(f"{where}: expected a run (a JSON object), got {_kind(run)}")
    for key in ("workflow_id", "run_id"):
        if not isinstance(run.get(key), str):
            raise ValueError(f"{where}: the run has no {key!r} (a string)")
    history = run.get("history")
    if not isinstance(history, list):
        raise ValueError(f"{where}: the run has no 'history' (a JSON array of events)")
    events = [_history_event(e, f"{where}: event #{i}") for i, e in enumerate(history)]
    return _Recorded(where, events, run["workflow_id"], run["run_id"])


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"\s*")


def _array_items(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """The items of the JSON array ``text`` holds, each with the line it begins on."""
    line, seen = 1, 0

    def skip(pos: int) -> int:
        end = _SPACE.match(text, pos)
        return end.end() if end else pos

    def line_of(pos: int) -> int:
        nonlocal line, seen
        line, seen = line + text.count("\n", seen, pos), pos
        return line

    pos = skip(skip(0) + 1)  # past the "["
    closing = text.startswith("]", pos)
    while not closing:
        try:
            item, end = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
        yield line_of(pos), item
        pos = skip(end)
        closing = text.startswith("]", pos)
        if not closing and not text.startswith(",", pos):
            raise ValueError(f"{path}:{line_of(pos)}: expected ',' or ']' in the array of events")
        pos = skip(pos + 1) if not closing else pos
    if skip(pos + 1) != len(text):
        raise ValueError(f"{path}:{line_of(skip(pos + 1))}: text after the array of events")


def _history_event(item: Any, where: str) -> HistoryEvent:
    """An event as ``durable history --json`` wrote it (``event_dict``), read back."""
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected an event (a JSON object), got {_kind(item)}")
    missing = [key for key in _EVENT_KEYS if key not in item]
    if missing:
        raise ValueError(f"{where}: the event has no {', '.join(map(repr, missing))}")
    seq, kind, fields, ends_step = item["seq"], item["type"], item["fields"], item["ends_step"]
    if type(seq) is not int or seq < 1:
        raise ValueError(f"{where}: 'seq' must be a positive integer, got {seq!r}")
    if not isinstance(kind, str) or kind not in EventType.__members__:
        raise ValueError(f"{where} (seq {seq}): {kind!r} is not an event type")
    if not isinstance(fields, dict):
        raise ValueError(f"{where} (seq {seq}): 'fields' must be an object, got {_kind(fields)}")
    if not isinstance(ends_step, bool):
        raise ValueError(f"{where} (seq {seq}): 'ends_step' must be true or false")
    timestamp = _timestamp(item["timestamp"], f"{where} (seq {seq})")
    return HistoryEvent(seq, kind, timestamp, _restored_fields(fields), ends_step)


def _timestamp(value: Any, where: str) -> datetime:
    try:
        stamp = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        stamp = None
    if stamp is None or stamp.tzinfo is None:
        raise ValueError(
            f"{where}: 'timestamp' must be an ISO 8601 time with its offset, got {value!r}"
        )
    return stamp


def _restored_fields(fields: dict[str, Any]) -> dict[str, Any]:
    if "failure" not in fields:
        return fields
    return {**fields, "failure": _restored_failure(fields["failure"])}


def _restored_failure(failure: Any) -> Any:
    """A failure record as JSON wrote it, its encoded details (written as text) bytes again,
    as ``handle.history()`` gives them."""
    if not isinstance(failure, dict):
        return failure
    restored = dict(failure)
    if isinstance(restored.get("details"), str):
        restored["details"] = _unescaped(restored["details"])
    if restored.get("cause") is not None:
        restored["cause"] = _restored_failure(restored["cause"])
    return restored


_ESCAPED_BYTE = re.compile(r"\\x([0-9a-f]{2})")


def _unescaped(text: str) -> bytes:
    """The bytes that JSON output wrote as text: UTF-8, with ``\\xNN`` for each byte that
    is not (``bytes.decode("utf-8", "backslashreplace")``, undone)."""
    parts = _ESCAPED_BYTE.split(text)  # text, hex digits, text, ...
    return b"".join(
        bytes.fromhex(part) if index % 2 else part.encode() for index, part in enumerate(parts)
    )


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
