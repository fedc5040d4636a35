"""The modules' imports form no circle: each module of `agent/` can be read, tested and moved
with what it imports below it. Every import counts, at module level or inside a function,
type-only ones too: a circle hidden in a function is still one module needing the other.

The rooms of `agent/` are ordered by what they serve (docs/architecture.md#layout): a room
imports only rooms below it, so the call never reaches up into the worker that runs it, nor
an engine into the call that leases it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "agent"

# Top to bottom. The shared modules at the foot are the package's own top-level files.
ROOMS = ("web", "worker", "call", "cloud", "sip", "engines", "accounts", "shared")
SHARED = {
    "settings",
    "metrics",
    "compat",
    "process_wide",
    "shared_cache",
    "server_api",
    "healthcheck",
}


def _module(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules `path` imports (resolving relative imports)."""
    name = _module(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from . import metrics` names a module; `from .x import y` names x (or x.y).
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module(p) for p in paths}
    graph = {_module(p): _imports(p, modules) for p in paths}
    # A package's __init__ importing its own submodules is the package, not a circle.
    return {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_the_circle_finder_finds_one() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_agent_modules_import_in_no_circle() -> None:
    graph = import_graph()
    assert (
        "agent.call.handoff.core" in graph
        and "agent.call.handoff.desk" in graph["agent.call.handoff.core"]
    ), graph
    assert circles(graph) == []


def room(module: str) -> str:
    """`agent.call.session` -> "call"; a top-level module of `agent/` -> "shared"."""
    parts = module.split(".")
    if len(parts) == 2 and parts[1] in SHARED:
        return "shared"
    assert len(parts) > 2 or parts[1] in ROOMS, f"{module}: not in a room ({ROOMS}, {SHARED})"
    return parts[1]


def test_every_module_is_in_a_room_and_imports_only_rooms_below_its_own() -> None:
    upward = [
        f"{module} ({room(module)}) -> {target} ({room(target)})"
        for module, targets in import_graph().items()
        if module != "agent"
        for target in targets - {"agent"}  # `from .. import metrics` also names the package
        if ROOMS.index(room(target)) < ROOMS.index(room(module))
    ]
    assert upward == []


def test_the_room_check_sees_an_arrow_going_up() -> None:
    assert room("agent.call.session") == "call" and room("agent.metrics") == "shared"
    assert ROOMS.index(room("agent.worker.job")) < ROOMS.index(room("agent.call.session"))


def test_the_caller_simulator_is_not_in_the_product_package() -> None:
    # A test tool (Whisper, Piper, a SIP user agent) that the worker and its image never need.
    assert not (PACKAGE / "caller").exists()
    assert (PROJECT_ROOT / "caller" / "simulator.py").exists()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            assert not any(n.split(".")[0] == "caller" for n in names), path
