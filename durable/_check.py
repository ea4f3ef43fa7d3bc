"""The determinism checker behind ``durable check MODULE``: reads workflow functions (and
the functions of the same package they call) as source, without running them, and reports
each call that would differ between a run and its replay, or block the worker's loop.

Names are resolved the way the module sees them: its imports (``import time as t``,
``from datetime import datetime``) and, for a call of a plain name, the object that name
holds in the loaded module, so that a helper of the same package is read too. Activities
are not read: doing I/O is what they are for.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ._definitions import WorkflowDefinition

_WALL_CLOCK = ("reads the wall clock", "ctx.now()")
_RANDOM = ("is random, not seeded from history", "ctx.random() or ctx.uuid4()")
_IO = ("does I/O from workflow code", "an activity (ctx.activity) that does it")
_ENVIRONMENT = ("reads the environment, which differs between workers", "a workflow argument")
# qualified name (or prefix ending in ".") -> (what is wrong, the deterministic alternative)
RULES: dict[str, tuple[str, str]] = {
    **dict.fromkeys(
        (
            "time.time",
            "time.time_ns",
            "time.monotonic",
            "time.monotonic_ns",
            "time.perf_counter",
            "time.perf_counter_ns",
            "time.localtime",
            "time.gmtime",
            "datetime.datetime.now",
            "datetime.datetime.utcnow",
            "datetime.datetime.today",
            "datetime.date.today",
        ),
        _WALL_CLOCK,
    ),
    "time.sleep": (
        "blocks the worker's event loop (and every workflow on it)",
        "await ctx.sleep(seconds)",
    ),
    **dict.fromkeys(("random.", "secrets.", "os.urandom", "uuid.uuid1", "uuid.uuid4"), _RANDOM),
    **dict.fromkeys(
        (
            "open",
            "input",
            "socket.",
            "subprocess.",
            "os.system",
            "os.popen",
            "shutil.",
            "requests.",
            "httpx.",
            "urllib.request.",
            "aiohttp.",
            "asyncpg.",
            "psycopg.",
            "psycopg2.",
            "sqlite3.",
            "pathlib.Path.read_text",
            "pathlib.Path.read_bytes",
            "pathlib.Path.write_text",
            "pathlib.Path.write_bytes",
            "pathlib.Path.open",
        ),
        _IO,
    ),
    **dict.fromkeys(
        ("threading.Thread", "concurrent.futures.", "multiprocessing."),
        ("starts threads or processes the replay cannot see", "activities, or ctx tasks"),
    ),
    **dict.fromkeys(("os.environ", "os.getenv", "os.environb"), _ENVIRONMENT),
}
# builtins whose value differs between processes, when the module does not rebind the name
_PROCESS_BOUND = {
    "hash": (
        "is salted per process for str and bytes (PYTHONHASHSEED) and an address for most "
        "objects, so it differs on replay",
        "a digest of the value (hashlib.sha256(value.encode()).hexdigest()) or the value itself",
    ),
    "id": (
        "is a memory address, different in every process and replay",
        "the value itself, or a counter kept in the workflow",
    ),
}
_ENVIRONMENT_OBJECTS = ("os.environ", "os.environb")
_SET_ITERATION = (
    "iterates over a set, whose order differs between processes",
    "sorted(...) of it, or a list or dict",
)


@dataclass(frozen=True)
class Finding:
    """One call that breaks determinism: where, what, and what to use instead."""

    path: str
    line: int
    function: str
    call: str
    problem: str
    instead: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}"
        return f"{where}: {self.call} in {self.function} {self.problem}; use {self.instead}"


def check(definitions: list[Any]) -> list[Finding]:
    """The findings in the workflow functions of ``definitions`` and in the functions of
    their package that they call, in file and line order."""
    workflows = [d for d in definitions if isinstance(d, WorkflowDefinition)]
    seen: set[types.FunctionType] = set()
    findings: list[Finding] = []
    pending = [inspect.unwrap(w.fn) for w in workflows]
    while pending:
        fn = pending.pop()
        if fn in seen or not isinstance(fn, types.FunctionType):
            continue
        seen.add(fn)
        reading = _Reading(fn)
        findings += reading.findings()
        pending += reading.called_helpers()
    return sorted(set(findings), key=lambda f: (f.path, f.line, f.call))


class _Reading:
    """One function's source, read with the names its module binds."""

    def __init__(self, fn: types.FunctionType) -> None:
        self.fn = fn
        self.path = inspect.getsourcefile(fn) or "<unknown>"
        lines, first = inspect.getsourcelines(fn)
        self.tree = ast.parse(textwrap.dedent("".join(lines)))
        ast.increment_lineno(self.tree, first - 1)
        self.aliases = _module_aliases(inspect.getmodule(fn))

    def qualified(self, node: ast.expr) -> str | None:
        """``time.time`` for ``time.time`` or ``t.time`` (import time as t), ``datetime.
        datetime.now`` for ``datetime.now`` (from datetime import datetime), ...; None for
        what is not a dotted name."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        root = self.aliases.get(node.id, node.id)
        return ".".join([root, *reversed(parts)])

    def findings(self) -> Iterator[Finding]:
        for node in ast.walk(self.tree):
            found = self._breach(node)
            if found is not None:
                line, name, (problem, instead) = found
                yield Finding(self.path, line, self.fn.__qualname__, name, problem, instead)

    def _breach(self, node: ast.AST) -> tuple[int, str, tuple[str, str]] | None:
        """(line, what, rule) when ``node`` breaks determinism."""
        if isinstance(node, ast.Call):
            name = self.qualified(node.func)
            builtin = self._process_bound(node)
            if builtin is not None:
                return node.lineno, f"{name}()", builtin
            rule = _rule(name)
            return None if rule is None or name is None else (node.lineno, name, rule)
        if isinstance(node, ast.Attribute):  # os.environ[...], os.environ.get(...)
            name = self.qualified(node)
            if name in _ENVIRONMENT_OBJECTS:
                return node.lineno, name, RULES[name]
        if isinstance(node, ast.For | ast.AsyncFor | ast.comprehension) and _is_set(node.iter):
            return node.iter.lineno, "for ... in a set", _SET_ITERATION
        return None

    def _process_bound(self, call: ast.Call) -> tuple[str, str] | None:
        """The rule of a call of builtin ``hash`` or ``id`` (not of a number literal)."""
        func = call.func
        if not isinstance(func, ast.Name) or func.id not in _PROCESS_BOUND:
            return None
        if func.id in self.fn.__globals__ or func.id in self.aliases:
            return None  # the module's own hash or id
        first = call.args[0] if call.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, int | float | bool | None):
            return None  # hash(3) is 3 everywhere
        return _PROCESS_BOUND[func.id]

    def called_helpers(self) -> list[types.FunctionType]:
        """The plain functions of the same package this function calls (by name, or as
        ``module.function`` of an imported module of the package)."""
        package = (self.fn.__module__ or "").split(".")[0]
        found = []
        for node in ast.walk(self.tree):
            if not isinstance(node, ast.Call):
                continue
            target = _resolve(self.fn.__globals__, node.func)
            if (
                isinstance(target, types.FunctionType)
                and (target.__module__ or "").split(".")[0] == package
            ):
                found.append(target)
        return found


def _rule(name: str | None) -> tuple[str, str] | None:
    if name is None:
        return None
    if name in RULES:
        return RULES[name]
    for prefix, rule in RULES.items():
        if prefix.endswith(".") and name.startswith(prefix):
            return rule
    return None


def _is_set(node: ast.expr) -> bool:
    if isinstance(node, ast.Set | ast.SetComp):
        return True
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("set", "frozenset")
    )


def _resolve(namespace: dict[str, Any], node: ast.expr) -> Any:
    """What a called ``name`` or ``module.name`` is in the function's module, if anything."""
    if isinstance(node, ast.Name):
        return namespace.get(node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        owner = namespace.get(node.value.id)
        if isinstance(owner, types.ModuleType):
            return getattr(owner, node.attr, None)
    return None


@functools.cache
def _module_aliases(module: types.ModuleType | None) -> dict[str, str]:
    """Each name the module's imports bind, to the dotted name it stands for (read once per
    module, however many of its functions are read)."""
    if module is None:
        return {}
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError):
        return {}
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases
