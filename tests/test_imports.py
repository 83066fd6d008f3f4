"""No import cycle anywhere in the package: the graph of dialer's modules importing each other
(every import, at the top of a module or inside a function, where a cycle would hide) has no
strongly connected part larger than one module. Read from the source's syntax tree."""

from __future__ import annotations

import ast
from pathlib import Path

import dialer

PACKAGE = Path(dialer.__file__).parent


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()

    def module_of(name: str) -> str | None:  # `dialer.db.attempts.settle` -> dialer.db.attempts
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            for target in targets:
                found = module_of(target) if target.startswith("dialer") else None
                # a module importing its own package (`from dialer import x`) is not a cycle
                if found and found != name and not name.startswith(found + "."):
                    graph[name].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            part = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                part.append(member)
                if member == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 100 and graph["dialer.runtime"]  # the graph was read
    assert cycles(graph) == []


def test_a_cycle_would_be_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return seen


DATA_LAYER = ["dialer.db.connect", "dialer.db.attempts", "dialer.settle", "dialer.calls"]


def test_the_data_layer_imports_no_adapter_and_no_configuration() -> None:
    """The domain values (dialer.calls) and the runtime SQL are usable without the provider
    adapters or dialer.toml's models, which import every adapter."""
    graph = import_graph()
    for module in DATA_LAYER + [m for m in graph if m.startswith("dialer.db.")]:
        below = reachable(graph, module)
        adapters = sorted(m for m in below if m.startswith("dialer.providers."))
        assert adapters == [], f"{module} imports {adapters}"
        assert "dialer.config" not in below, module
