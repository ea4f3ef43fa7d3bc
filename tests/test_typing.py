"""The public API type-checks under mypy --strict and pyright, carries workflow/activity
types through, and makes type checkers refuse arguments that do not fit the function.

Two probes: tests/typing_check.py must check clean; every line of tests/typing_errors.py
marked ``# expect-error`` must be reported, and no other (so a signature that stops
checking its arguments fails here). pyright runs from the npm package its PyPI wheel
bundles, on the machine's Node.js: nothing is downloaded at test time.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import durable

ROOT = Path(__file__).parent.parent
CLEAN_PROBE = "tests/typing_check.py"
ERRORS_PROBE = "tests/typing_errors.py"
MARK = "# expect-error"


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _marked_lines() -> set[int]:
    """The (1-based) lines of the errors probe that a checker must report."""
    text = (ROOT / ERRORS_PROBE).read_text().splitlines()
    marked = {number for number, line in enumerate(text, 1) if line.rstrip().endswith(MARK)}
    assert len(marked) >= 20, "the errors probe lost its marked lines"
    return marked


def _compare(checker: str, reported: set[int], output: str) -> None:
    """Fail unless ``reported`` is exactly the marked lines, naming the difference."""
    marked = _marked_lines()
    lines = (ROOT / ERRORS_PROBE).read_text().splitlines()
    missed = [f"  {n}: {lines[n - 1].strip()}" for n in sorted(marked - reported)]
    extra = [f"  {n}: {lines[n - 1].strip()}" for n in sorted(reported - marked)]
    message = ""
    if missed:
        message += f"{checker} no longer refuses (the checking stopped working):\n"
        message += "\n".join(missed) + "\n"
    if extra:
        message += f"{checker} reports errors on lines not marked {MARK!r}:\n"
        message += "\n".join(extra) + "\n"
    assert not message, message + output


# ------------------------------------------------------------------------------ mypy
def _mypy(*paths: str) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("mypy")
    return _run([sys.executable, "-m", "mypy", "--strict", *paths])


def test_public_api_is_typed() -> None:
    done = _mypy("durable", CLEAN_PROBE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_refuses_what_does_not_fit() -> None:
    done = _mypy(ERRORS_PROBE)
    pattern = re.compile(rf"^{re.escape(ERRORS_PROBE)}:(\d+): error:", re.MULTILINE)
    reported = {int(number) for number in pattern.findall(done.stdout)}
    _compare("mypy", reported, done.stdout + done.stderr)


# ------------------------------------------------------------------------------ pyright
def _pyright_command() -> list[str]:
    """node and the pyright script bundled in the pyright wheel, or skip saying why."""
    spec = importlib.util.find_spec("pyright")
    if spec is None or spec.origin is None:
        pytest.skip("pyright is not installed (it is in the dev extra: pip install -e '.[dev]')")
    script = Path(spec.origin).parent / "dist" / "index.js"
    if not script.is_file():
        pytest.skip(
            "the installed pyright wheel bundles no pyright npm package: running it would "
            "download one from npm at test time"
        )
    node = shutil.which("node")
    if node is None:
        pytest.skip(
            "pyright needs Node.js and none is on PATH: the pyright wrapper would download "
            "one (nodeenv) at test time"
        )
    return [node, str(script)]


def _pyright_errors(*paths: str) -> list[dict[str, Any]]:
    """pyright's error diagnostics over ``paths`` (with this interpreter's packages)."""
    options = ["--outputjson", "--pythonpath", sys.executable, "--pythonversion", "3.11"]
    done = _run([*_pyright_command(), *options, *paths])
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"pyright gave no JSON report:\n{done.stdout}\n{done.stderr}")
    return [d for d in report["generalDiagnostics"] if d["severity"] == "error"]


def _describe(errors: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{Path(e['file']).relative_to(ROOT)}:{e['range']['start']['line'] + 1}: {e['message']}"
        for e in errors
    )


def _public_modules() -> list[str]:
    """durable/__init__.py and the modules that define what it exports."""
    # and the typing-only module whose aliases the client's signatures are written in
    files = {Path(durable.__file__), ROOT / "durable" / "_client" / "signatures.py"}
    for name in durable.__all__:
        module = inspect.getmodule(getattr(durable, name))
        if module is not None and module.__name__.startswith("durable"):
            files.add(Path(str(module.__file__)))
    return sorted(str(path.relative_to(ROOT)) for path in files)


def test_pyright_finds_no_error_in_the_public_api() -> None:
    modules = _public_modules()
    assert "durable/_client/client.py" in modules and "durable/_context.py" in modules
    errors = _pyright_errors(CLEAN_PROBE, *modules)
    assert not errors, _describe(errors)


def test_pyright_refuses_what_does_not_fit() -> None:
    errors = _pyright_errors(ERRORS_PROBE)
    reported = {
        error["range"]["start"]["line"] + 1
        for error in errors
        if str(error["file"]).endswith(ERRORS_PROBE)
    }
    _compare("pyright", reported, _describe(errors))
