"""What the commands share: how one is declared, its JSON arguments, its connection."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from opentelemetry.metrics import MeterProvider

from .._client import Client, WorkflowHandle
from .._embedded import (
    ENV_DSN,
    ENV_HOME,
    HOME_NAME,
    holds_database,
    home_folder,
    open_embedded,
    resolve_dsn,
)
from .._errors import DurableError
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


_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


def is_duration(text: str) -> bool:
    return _DURATION.fullmatch(text.strip()) is not None


def duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s`` or ``0s`` (argparse type)."""
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 30d, 12h, 90m or 45s")
    return timedelta(**{_UNITS[found[2]]: float(found[1])})


def age(text: str) -> timedelta:
    """A positive duration: ``30d``, ``12h``, ``90m`` or ``45s`` (argparse type)."""
    value = duration(text)
    if not value:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive duration such as 30d, 12h, 90m or 45s"
        )
    return value


def attribute(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--attribute must look like KEY=JSON, got {text!r}")
    return key, json_value(value)


def add_attribute_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--attr KEY=JSON`` (repeatable), read by :func:`attribute` into ``args.attribute``."""
    parser.add_argument(
        "--attr",
        "--attribute",
        dest="attribute",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help=help,
    )


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
    args: argparse.Namespace,
    *,
    meter_provider: MeterProvider | None = None,
    create_database: bool = False,
) -> AsyncIterator[Client]:
    """A client on the command's database (see database_of)."""
    dsn = await database_of(args, create=create_database)
    client = await Client.connect(
        dsn,
        codecs=load_codecs(args.codecs),
        meter_provider=meter_provider,
        listen_dsn=args.listen_dsn,
        prepared_statements=args.prepared_statements,
    )
    try:
        yield client
    finally:
        await client.close()


async def database_of(args: argparse.Namespace, *, create: bool) -> str:
    """The DSN a command uses: --dsn, else $DURABLE_DATABASE_URL, else the embedded
    database, saying on stderr which folder's. Only a command that may ``create`` one
    (it writes: start, worker, migrate) uses a folder that holds no database yet: any
    other would start an empty one, and find nothing there."""
    dsn = resolve_dsn(args.dsn)
    if dsn is not None:
        return dsn
    home = home_folder()
    if not create and not holds_database(home):
        raise DurableError(_no_database(home))
    embedded = await asyncio.to_thread(open_embedded, home)
    if getattr(args, "json", False):
        notice = {"database": {"embedded": str(embedded.home), "started": embedded.started}}
        print(json.dumps(notice), file=sys.stderr)
    else:
        how = "started" if embedded.started else "reused"
        print(f"using the embedded Postgres in {embedded.home} ({how})", file=sys.stderr)
    return embedded.dsn


def _no_database(home: Path) -> str:
    if os.environ.get(ENV_HOME):
        where = f"${ENV_HOME} ({home}) holds no embedded database"
    elif home.is_dir():
        where = f"{home} holds no embedded database yet"
    else:
        where = f"there is no {HOME_NAME}/ folder in {Path.cwd()} or any folder above it"
    return (
        f"no database: no --dsn, ${ENV_DSN} is not set, and {where}. This command works on "
        "existing workflows and creates no database: run it from your project's folder "
        f"(where `durable dev`, a worker or your app created {HOME_NAME}/), pass --dsn or set "
        f"${ENV_DSN} to use your Postgres, or set ${ENV_HOME} to the {HOME_NAME}/ folder "
        "to use"
    )
