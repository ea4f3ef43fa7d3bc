"""Developer sessions: `nox -s tests`, `nox -s lint`, `nox -s types`."""

import nox

nox.options.sessions = ["lint", "types", "tests"]


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "durable", "tests", "samples", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "durable", "tests", "samples", "noxfile.py")


@nox.session
def types(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy", "durable")
