"""The shape of the code, checked: the public names (nothing leaves or arrives by accident),
the one-way layering (workflow code never reaches the database), docstrings on the public
surface."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import durable

PACKAGE = Path(durable.__file__).parent

PUBLIC_NAMES = {
    "ActivityContext",
    "ActivityDefinition",
    "ActivityError",
    "ActivityInfo",
    "ActivityRef",
    "AesGcmCodec",
    "ApplicationError",
    "ChildWorkflowError",
    "ChildWorkflowHandle",
    "Client",
    "DatabaseUnavailableError",
    "DurableError",
    "HistoryEvent",
    "NondeterminismError",
    "OpenChild",
    "PayloadCodec",
    "PayloadError",
    "PendingActivity",
    "PendingTimer",
    "QueryError",
    "RateLimit",
    "RetryPolicy",
    "ScheduleDescription",
    "ScheduleError",
    "ScheduleHandle",
    "ScheduleRun",
    "SyncClient",
    "SyncScheduleHandle",
    "SyncWorkflowHandle",
    "TaskQueueConfig",
    "TaskQueueDescription",
    "TaskQueueWorker",
    "TimeoutError",
    "UpdateError",
    "Worker",
    "WorkflowAlreadyStartedError",
    "WorkflowCancelledError",
    "WorkflowContext",
    "WorkflowDefinition",
    "WorkflowDescription",
    "WorkflowError",
    "WorkflowFailedError",
    "WorkflowHandle",
    "WorkflowInfo",
    "WorkflowNotFoundError",
    "WorkflowTerminatedError",
    "ZlibCodec",
    "__version__",
    "activity",
    "activity_context",
    "activity_ref",
    "workflow",
}

# The modules workflow code runs in, and what they must never import (directly or through
# the modules they import): the database, the worker, the client.
WORKFLOW_SIDE = {
    "_context",
    "_loop",
    "_replayer",
    "_events",
    "_failures",
    "_definitions",
    "_serialization",
}
FORBIDDEN = {"asyncpg", "_store", "_worker", "_client", "_calls", "_embedded", "_cli"}


def test_the_public_names_are_exactly_these() -> None:
    assert set(durable.__all__) == PUBLIC_NAMES
    for name in durable.__all__:
        assert hasattr(durable, name), name


def _is_module(name: str) -> bool:
    return (PACKAGE / f"{name}.py").exists() or (PACKAGE / name / "__init__.py").exists()


def _imports(module: str) -> set[str]:
    """The modules one of durable's modules (or packages: all their files) imports:
    durable's own by their short name (``_store``), others by their top-level name."""
    in_package = not (PACKAGE / f"{module}.py").exists()
    paths = sorted((PACKAGE / module).glob("*.py")) if in_package else [PACKAGE / f"{module}.py"]
    found: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level == (2 if in_package else 1):  # from .._x import y, from .. import z
                    found.add((node.module or "").split(".")[0] or node.names[0].name)
                elif node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
                # (a package's own modules, from .x import y, are read with it)
    return found


def test_workflow_code_never_reaches_the_database_or_the_worker() -> None:
    for start in sorted(WORKFLOW_SIDE):
        seen, todo = set(), [start]
        while todo:
            module = todo.pop()
            if module in seen:
                continue
            seen.add(module)
            imported = _imports(module)
            reached = imported & FORBIDDEN
            assert not reached, f"{start} imports {sorted(reached)} (through {module})"
            todo += [m for m in imported if _is_module(m)]


def test_every_public_class_method_and_function_has_a_docstring() -> None:
    missing = []
    for name in sorted(durable.__all__):
        item = getattr(durable, name)
        if not (inspect.isclass(item) or inspect.isfunction(item)):
            continue
        if not inspect.getdoc(item):
            missing.append(name)
        if inspect.isclass(item) and not issubclass(item, BaseException):
            for member, value in vars(item).items():
                if member.startswith("_") or not (
                    inspect.isfunction(value) or isinstance(value, property | classmethod)
                ):
                    continue
                if not inspect.getdoc(getattr(item, member)):
                    missing.append(f"{name}.{member}")
    assert not missing, f"no docstring: {missing}"


def test_only_the_store_imports_asyncpg() -> None:
    """SQL and the driver stay in one package: the others ask the store, and learn from it
    which errors mean that the database is away (UNAVAILABLE)."""
    modules = {p.stem for p in PACKAGE.glob("_*.py")} | {
        p.parent.name for p in PACKAGE.glob("*/__init__.py")
    }
    assert {"_store", "_worker", "testing"} <= modules
    importers = sorted(m for m in modules - {"_store"} if "asyncpg" in _imports(m))
    assert importers == []
