"""A real PgBouncer (Debian's `pgbouncer` package) in front of a test server, on a free port of
127.0.0.1, in transaction or session mode: what tests/test_poolers.py runs durable through.

`.ci/run` installs the package when it is missing; where the binary is not found the tests
that need it are skipped, saying so."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .chaos.server import _free_port, _server_user

BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def unavailable() -> str | None:
    """Why PgBouncer cannot run here, or None."""
    if not os.access(BINARY, os.X_OK):
        return "pgbouncer is not installed (apt-get install -y pgbouncer)"
    return None


class PgBouncer:
    """One PgBouncer process pooling every database of the server at ``server_port``."""

    def __init__(
        self, server_port: int, pool_mode: str, pool_size: int = 20, log: Path | None = None
    ) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix=f"durable-pgbouncer-{pool_mode}-"))
        self.port = _free_port()
        self.pool_mode = pool_mode
        self.log = log or self.folder / "pgbouncer.log"  # (given: kept after it stops)
        config = self.folder / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={server_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"pool_mode = {pool_mode}\nauth_type = trust\nauth_file = {self.folder / 'users.txt'}\n"
            f"max_client_conn = 1000\ndefault_pool_size = {pool_size}\nmax_db_connections = 0\n"
            # (asyncpg sends no other startup parameter; a pooler refuses the ones it does not know)
            "ignore_startup_parameters = extra_float_digits,options\n"
            # after a failed login (the server restarting) it waits this long before it tries
            # again, every client with it: 15 s by default
            "server_login_retry = 1\n"
            f"logfile = {self.log}\npidfile = {self.folder / 'pgbouncer.pid'}\n"
            "admin_users = postgres\n"
        )
        (self.folder / "users.txt").write_text('"postgres" ""\n')
        self._config = config
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # -q: no log line to stderr besides the logfile (a full stderr pipe would block it)
        argv = [BINARY, "-q", str(self._config)]
        user = _server_user()
        if user is not None:  # it refuses to run as root: as the server's user then
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            for path in self.folder.iterdir():
                os.chown(path, user.pw_uid, user.pw_gid)
            self.folder.chmod(0o755)
            argv[1:1] = ["-u", user.pw_name]
        with (self.folder / "stderr.txt").open("wb") as stderr:  # what it says before it logs
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            if self._process.poll() is not None:
                break
            time.sleep(0.05)
        said = (self.folder / "stderr.txt").read_text(errors="replace")
        raise RuntimeError(f"pgbouncer did not start:\n{said}{self.log_tail()}")

    async def reconnect(self) -> None:
        """Have it reopen its server connections (as each is next free), on its console."""
        import asyncpg

        console = await asyncpg.connect(self.dsn("pgbouncer"), statement_cache_size=0)
        try:
            await console.execute("RECONNECT")
        finally:
            await console.close()

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Stopped (SIGSTOP) meanwhile: a pooler that answers nobody, as a blocked one does."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self._process.send_signal(signal.SIGCONT)

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(10)
            if self._process.poll() is None:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def running_pgbouncer(
    server_port: int, pool_mode: str, pool_size: int = 20, log: Path | None = None
) -> Iterator[PgBouncer]:
    """``pool_size`` server connections per database and user: in session mode, one per
    client connection at once."""
    bouncer = PgBouncer(server_port, pool_mode, pool_size, log)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()
