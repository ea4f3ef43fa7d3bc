"""What the commands share: how one is declared, its JSON arguments, its connection."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Protocol

from opentelemetry.metrics import MeterProvider

from .._client import Client, WorkflowHandle
from .loading import load_codecs

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


class AddCommand(Protocol):
    """Declares a subcommand: its name, handler and summary, with the --dsn/--codecs and
    --json options unless told otherwise."""

    def __call__(
        self, name: str, handler: Handler, summary: str, *, dsn: bool = True, json: bool = True
    ) -> argparse.ArgumentParser: ...


def add_json_args(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "args",
        nargs="*",
        type=json_value,
        metavar="ARG",
        help=f"{what}, each parsed as JSON (a bare word that is not JSON is a string); "
        "@PATH is the JSON in file PATH, @- the JSON on standard input",
    )


def json_value(text: str) -> Any:
    """``text`` as JSON; a bare word (``hello``) is the string it spells, but text that
    begins like a JSON object, array or string must be one: a typo there is refused with
    its position rather than passed on as a string. ``@PATH`` is the JSON document in file
    PATH, ``@-`` the one on standard input (as curl reads ``-d @PATH``): for arguments too
    long for a command line; a string that begins with @ is written as JSON (``'"@ann"'``)."""
    if text.startswith("@"):
        return _json_document(text[1:])
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if text.lstrip()[:1] in ("{", "[", '"'):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not valid JSON: {_where(exc)}; fix it, or quote a plain string "
                "as JSON ('\"...\"')"
            ) from None
        return text


def _json_document(path: str) -> Any:
    """The JSON document in file ``path``, or on standard input for ``-``."""
    source = "standard input (@-)" if path == "-" else f"file {path!r} (@{path})"
    try:
        if path == "-":
            content = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as file:
                content = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise argparse.ArgumentTypeError(
            f"cannot read {source}: {reason}; a string that begins with @ is written as "
            "JSON ('\"@...\"')"
        ) from None
    if not content.strip():
        raise argparse.ArgumentTypeError(
            f"{source} is empty: it must hold one JSON value (standard input can be read once)"
        )
    try:
        return json.loads(content)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"{source} is not valid JSON: {_where(exc)}") from None


def _where(exc: json.JSONDecodeError) -> str:
    return f"{exc.msg} at line {exc.lineno} column {exc.colno}"


def aware_time(text: str) -> datetime:
    """An ISO 8601 time with its offset (argparse type)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time with an offset, e.g. 2026-12-01T09:00:00+00:00"
        )
    return value


def attribute(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--attribute must look like KEY=JSON, got {text!r}")
    return key, json_value(value)


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """The run a per-run command acts on: a workflow id, and optionally one of its runs."""
    parser.add_argument("id", help="workflow id")
    parser.add_argument(
        "--run-id",
        help="act on this run only (default: the workflow's open run, else its latest)",
    )


def run_handle(client: Client, args: argparse.Namespace) -> WorkflowHandle[Any]:
    """The handle a per-run command acts on (see add_run_args)."""
    return client.get_handle(args.id, run_id=args.run_id)


@asynccontextmanager
async def connect(
    args: argparse.Namespace, *, meter_provider: MeterProvider | None = None
) -> AsyncIterator[Client]:
    client = await Client.connect(
        args.dsn, codecs=load_codecs(args.codecs), meter_provider=meter_provider
    )
    try:
        yield client
    finally:
        await client.close()
