"""The layout holds the architecture: imports go down the layers that
``server/__init__.py`` lists, never up, and never in a cycle (``TYPE_CHECKING``
imports included: this reads every import statement)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Top to bottom. A module may import modules of its own layer or below.
LAYERS: list[tuple[str, ...]] = [
    ("server.ops.cli",),
    ("server.app",),
    ("server.ops.front_protocol",),
    ("server.ops.http_protocol",),
    ("server.node",),
    ("server.web",),
    ("server.lobby.upgrade",),
    ("server.lobby.endpoints",),
    ("server.lobby.waiting_room",),
    ("server.lobby.hub", "server.lobby.broker"),
    ("server.lobby.connection",),
    ("server.notify",),
    ("server.calendars",),
    ("server.hosts.settings",),
    ("server.hosts.directory",),
    ("server.meetings",),
    ("server.access",),
    ("server.storage",),
    (
        "server.ops.config",
        "server.ops.embedded",
        "server.ops.gc_policy",
        "server.ids",
        "server.ops.process",
        "server.tasks",
        "server.logs",
        "server.metrics",
        "server.i18n",
        "server.browser_files",
    ),
    ("server",),  # the package docstring
]


def _layer(module: str) -> int:
    best = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                best = max(best, (len(prefix), index))
    assert best[1] >= 0, f"{module} is in no layer: add it to LAYERS"
    return best[1]


def _modules() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / "server").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        imports: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imports.add(node.module)
                imports.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                imports.update(a.name for a in node.names)
        graph[name] = {i for i in imports if i.split(".")[0] == "server"}
    return graph


def _resolve(name: str, graph: dict[str, set[str]]) -> str | None:
    """``server.x.y`` may name a module or a thing inside one."""
    while name and name not in graph:
        name = name.rpartition(".")[0]
    return name or None


def test_imports_go_down_the_layers() -> None:
    graph = _modules()
    wrong = []
    for module, imports in graph.items():
        for target in imports:
            found = _resolve(target, graph)
            if found is None or found == module:
                continue
            if _layer(found) < _layer(module):
                wrong.append(f"{module} imports {found} (a layer above it)")
    assert wrong == []


def test_no_import_cycles() -> None:
    graph = _modules()
    edges = {m: {r for t in ts if (r := _resolve(t, graph)) and r != m} for m, ts in graph.items()}
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(edges[module]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path, module, nxt]))
            elif nxt not in state:
                visit(nxt, [*path, module])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [])
    assert cycles == []


def test_protocol_imports_nothing_of_the_server() -> None:
    for path in (ROOT / "protocol").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("server"), path
