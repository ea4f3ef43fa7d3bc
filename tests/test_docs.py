"""The user guide cannot rot: every example it shows runs, and the site builds.

The guide's runnable code lives in ``docs/examples/``; its pages include it with
pymdownx.snippets (``--8<-- "file.py:section"``). Here each example runs as users run it
(``python file.py``, ``bash file.sh``, ``pytest test_file.py``) against a fresh database of
the test server, with a real worker in its own process, several at a time. A Python block of
a page that is not an included example must be marked ``<!-- fragment -->`` on the line
before its fence; the public API and the command line must appear in the examples; and
``mkdocs build --strict`` must pass.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

import durable
from durable._cli import build_parser

from .conftest import _with_database

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
BIN = Path(sys.executable).parent
SNIPPET = re.compile(r'^\s*--8<--\s+"([^":]+)(?::([\w-]+))?"\s*$')
FENCE = re.compile(r"^(\s*)```(\w*)")
AT_ONCE = 4  # examples running together: each holds a pool of up to 10 connections
TIMEOUT = 60.0  # seconds an example may take, even on a loaded machine


def _kind(path: Path) -> str | None:
    """How an example runs: a shell script, a pytest file, a program; None for a module."""
    if path.suffix == ".sh":
        return "bash"
    if path.suffix != ".py":
        return None
    if path.name.startswith("test_"):
        return "pytest"
    return "python" if 'if __name__ == "__main__":' in path.read_text() else None


EXAMPLE_FILES = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".py", ".sh"))
RUNNABLE = [p for p in EXAMPLE_FILES if _kind(p)]
# the longest first, so that the last ones to start are short
RUNNABLE.sort(key=lambda p: (_kind(p) != "bash", p.name))


@dataclass
class Finished:
    returncode: int | None  # None: killed after TIMEOUT
    stdout: str
    stderr: str
    seconds: float

    def report(self) -> str:
        return (
            f"exit code {self.returncode} after {self.seconds:.1f} s\n"
            f"--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-6000:]}"
        )


def _command(path: Path) -> list[str]:
    kind = _kind(path)
    if kind == "bash":
        return ["bash", str(path)]
    if kind == "pytest":  # as a project of its own runs it: not with durable's pytest setup
        options = ["-q", "-p", "no:cacheprovider", "-c", os.devnull, "--rootdir", str(EXAMPLES)]
        # (plugins are not loaded by themselves here: the ones a project has, named)
        options += ["-p", "pytest_asyncio.plugin", "-p", "durable.testing"]
        return [sys.executable, "-m", "pytest", *options, str(path)]
    return [sys.executable, str(path)]


def _environment(path: Path, dsn: str, folder: Path, pycache: Path) -> dict[str, str]:
    dropped = ("DURABLE_DATABASE_URL", "DURABLE_CODECS", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)  # compiled once for all the examples' processes
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # `durable` and `python` of this venv
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(EXAMPLES), env.get("PYTHONPATH")]))
    env["DURABLE_HOME"] = str(folder / ".durable")  # never a .durable/ of the project
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # (test_*.py examples need no plugin)
    if path.name != "install.sh":  # (that one starts the embedded database itself)
        env["DURABLE_DATABASE_URL"] = dsn
    return env


async def _run(path: Path, dsn: str, folder: Path, pycache: Path) -> Finished:
    began = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *_command(path),
        cwd=folder,
        env=_environment(path, dsn, folder, pycache),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # a group of its own: what a script left running is ended
    )
    output = asyncio.ensure_future(process.communicate())
    try:
        out, err = await asyncio.wait_for(asyncio.shield(output), TIMEOUT)
        returncode: int | None = process.returncode
    except TimeoutError:
        returncode = None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # with whatever it started
        try:  # (unless something it started left its own group with our pipes)
            out, err = await asyncio.wait_for(output, 10)
        except TimeoutError:
            out, err = b"", b"(its output could not be read)"
        _stop_embedded(folder / ".durable")
    if returncode is None:
        err += f"\n(killed after {TIMEOUT:g} s)".encode()
    return Finished(returncode, out.decode(), err.decode(), time.monotonic() - began)


def _stop_embedded(home: Path) -> None:
    """Stop an embedded Postgres an example left running (install.sh stops its own)."""
    pid_file = home / "pgdata" / "postmaster.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)


@pytest.fixture(scope="module")
async def finished(
    server_dsn: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, Finished]]:
    """Every runnable example, run AT_ONCE at a time, each on a database of its own."""
    names = {p.name: f"durable_docs_{os.getpid()}_{i}" for i, p in enumerate(RUNNABLE)}
    await _on_server(
        server_dsn,
        [f'CREATE DATABASE "{d}" TEMPLATE "{template_database}"' for d in names.values()],
    )
    gate = asyncio.Semaphore(AT_ONCE)
    pycache = tmp_path_factory.mktemp("pycache")

    async def run(path: Path) -> Finished:
        async with gate:
            folder = tmp_path_factory.mktemp(path.stem)
            dsn = _with_database(server_dsn, names[path.name])
            return await _run(path, dsn, folder, pycache)

    try:
        results = await asyncio.gather(*(run(p) for p in RUNNABLE))
        yield {p.name: r for p, r in zip(RUNNABLE, results, strict=True)}
    finally:
        await _on_server(
            server_dsn, [f'DROP DATABASE IF EXISTS "{d}" WITH (FORCE)' for d in names.values()]
        )


async def _on_server(server_dsn: str, statements: list[str]) -> None:
    """Run statements one after another on one connection to the server."""
    admin = await asyncpg.connect(server_dsn)
    try:
        for statement in statements:
            await admin.execute(statement)
    finally:
        await admin.close()


@pytest.mark.parametrize("example", [p.name for p in RUNNABLE])
def test_example_runs(finished: dict[str, Finished], example: str) -> None:
    done = finished[example]
    assert done.returncode == 0, f"docs/examples/{example}: {done.report()}"
    assert "Traceback" not in done.stderr, f"docs/examples/{example}: {done.report()}"
    assert "No such file or directory" not in done.stderr, done.report()


# `... 2> worker.log &` then `until grep ... worker.log`: whether the background command has
# opened its log by the time grep reads it is a race (grep: worker.log: No such file ...)
_BACKGROUND_LOG = re.compile(r"^[^#]*\d?>\s*(\S+)\s*&(\s|$)")


def _logs_read_before_they_surely_exist(lines: list[str]) -> list[tuple[int, str]]:
    """(line, file) of each log a background command writes and a later line reads, that
    no earlier line created (`: > LOG`)."""
    racy = []
    for number, line in enumerate(lines, 1):
        if (match := _BACKGROUND_LOG.match(line)) is None:
            continue
        log = re.escape(match[1])
        created = any(re.match(rf":\s*>\s*{log}\b", e.strip()) for e in lines[: number - 1])
        read = any(re.search(rf"\b{log}\b", later) for later in lines[number:])
        if read and not created:
            racy.append((number, match[1]))
    return racy


def test_shell_examples_create_a_log_before_a_background_command_writes_it() -> None:
    racy = [
        f"docs/examples/{path.name}:{number}: {log}"
        for path in EXAMPLE_FILES
        if path.suffix == ".sh"
        for number, log in _logs_read_before_they_surely_exist(path.read_text().splitlines())
    ]
    assert not racy, f"create these logs before their writer starts (`: > LOG`): {racy}"


# ------------------------------------------------------------------------ the pages


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _blocks(page: Path) -> list[tuple[int, str, list[str], bool]]:
    """The fenced blocks of a page: (line, language, lines, marked as a fragment)."""
    blocks: list[tuple[int, str, list[str], bool]] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        language = opening[2]
        marked = i > 0 and lines[i - 1].strip() == "<!-- fragment -->"
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        blocks.append((i - len(body), language, body, marked))
        i += 1
    return blocks


def _includes() -> list[tuple[Path, int, str, str | None]]:
    """Every snippet include of the pages: (page, line, file, section)."""
    found = []
    for page in _pages():
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if match := SNIPPET.match(line):
                found.append((page, number, match[1], match[2]))
    return found


def test_python_blocks_of_the_guide_are_examples_or_marked_fragments() -> None:
    """A Python block is either included from docs/examples (so it runs) or marked
    ``<!-- fragment -->``: nothing that looks runnable is left unrun."""
    unmarked = []
    for page in _pages():
        if "examples" in page.parts:
            continue
        for line, language, body, marked in _blocks(page):
            included = bool(body) and all(SNIPPET.match(b) for b in body if b.strip())
            if language == "python" and not included and not marked and page.parent.name == "guide":
                unmarked.append(f"{page.relative_to(ROOT)}:{line}")
            if included and marked:
                unmarked.append(f"{page.relative_to(ROOT)}:{line} (an example marked fragment)")
    assert not unmarked, (
        "Python blocks neither included from docs/examples nor marked: " + ", ".join(unmarked)
    )


def test_every_include_names_an_existing_example_and_section() -> None:
    missing = []
    for page, line, name, section in _includes():
        target = EXAMPLES / name
        where = f"{page.relative_to(ROOT)}:{line}"
        if not target.is_file():
            missing.append(f"{where}: no docs/examples/{name}")
        elif section and f"--8<-- [start:{section}]" not in target.read_text():
            missing.append(f"{where}: no section {section!r} in {name}")
    assert not missing, "\n".join(missing)


def test_every_example_is_shown_in_a_page() -> None:
    shown = {name for _, _, name, _ in _includes()}
    orphans = [p.name for p in EXAMPLE_FILES if p.name not in shown]
    assert not orphans, f"examples no page includes: {orphans}"


def _example_text() -> str:
    return "\n".join(p.read_text() for p in EXAMPLE_FILES)


# members that are public for durable's own use, not for applications
_NOT_FOR_USERS = {("Worker", "gauge_readings")}  # read by the metrics gauges


def test_the_public_api_appears_in_the_examples() -> None:
    """Every name durable exports, and every public method and property of the objects users
    call, is used by some example (so each has a runnable example)."""
    text = _example_text()
    names = [n for n in durable.__all__ if n != "__version__" and not re.search(rf"\b{n}\b", text)]
    assert not names, f"exported names no example uses: {names}"
    classes = [
        durable.Client,
        durable.WorkflowHandle,
        durable.SyncClient,
        durable.SyncWorkflowHandle,
        durable.Worker,
        durable.WorkflowContext,
        durable.ChildWorkflowHandle,
        durable.ActivityContext,
    ]
    unused = [
        f"{cls.__name__}.{member}"
        for cls in classes
        for member, _ in inspect.getmembers(cls)
        if not member.startswith("_")
        and (cls.__name__, member) not in _NOT_FOR_USERS
        and not re.search(rf"\.{member}\b", text)
    ]
    assert not unused, f"public members no example uses: {unused}"


def test_every_command_appears_in_a_shell_example() -> None:
    scripts = "\n".join(p.read_text() for p in EXAMPLE_FILES if p.suffix == ".sh")
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    unused = [
        c for c in commands.choices if not re.search(rf"\bdurable (workflow )?{c}\b", scripts)
    ]
    assert not unused, f"commands no shell example runs: {unused}"


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="mkdocs is not installed: pip install -e '.[dev]'")
    mkdocs = shutil.which("mkdocs", path=str(BIN)) or "mkdocs"
    site = tmp_path / "site"
    done = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-6000:]
    tutorial = (site / "guide" / "tutorial" / "index.html").read_text()
    assert "compose_greeting" in tutorial, "the tutorial's example was not included"
    reference = (site / "reference" / "index.html").read_text()
    assert "call_timeout" in reference, "the API reference was not generated from docstrings"
    raw = [str(p.relative_to(site)) for p in site.rglob("*.html") if "--8&lt;--" in p.read_text()]
    assert not raw, f"pages with an include left unexpanded: {raw}"
