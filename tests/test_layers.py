"""The layers point one way, and nothing imports in a circle (a static read of every import with ``ast``).

retrieval → (nothing of ours); agent → retrieval; ui → agent, retrieval. Every import counts: at module level,
inside functions, and under ``if TYPE_CHECKING:``. ``from package import name`` is an import of the module
``package.name`` when there is one, else of ``package``; a module's parent packages are not counted as imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("retrieval", "agent", "ui")
#: package -> the project packages it must never import
FORBIDDEN = {"retrieval": {"agent", "ui"}, "agent": {"ui"}, "ui": set()}
#: finer rules: modules under the key must never import these modules (the store knows no settings)
FORBIDDEN_MODULES = {"agent.store": {"agent.settings"}}


def module_files() -> dict[str, Path]:
    """Every module of the three packages, by dotted name (``agent/cli/__init__.py`` is ``agent.cli``)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """The project modules that module ``name`` imports."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import agent.store.models as m` -> that module
                target = target.rpartition(".")[0]
            if target and target.split(".")[0] in PACKAGES:
                out.add(target)
    out.discard(name)
    return out


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read():
    graph = import_graph()
    assert "agent.pipeline" in graph and "retrieval.index" in graph and "ui.app" in graph
    assert "retrieval.index" in graph["agent.pipeline"]  # a lazy import inside a method counts
    assert "agent.conversation" in graph["ui.app"]


def test_layers_point_one_way():
    wrong = [f"{module} imports {target}" for module, targets in sorted(import_graph().items())
             for target in sorted(targets) if target.split(".")[0] in FORBIDDEN[module.split(".")[0]]]
    assert wrong == [], "\n".join(wrong)


def test_the_store_knows_no_settings():
    wrong = [f"{module} imports {target}" for module, targets in sorted(import_graph().items())
             for prefix, banned in FORBIDDEN_MODULES.items() if module == prefix or module.startswith(prefix + ".")
             for target in sorted(targets & banned)]
    assert wrong == [], "\n".join(wrong)


def test_no_import_cycles():
    found = cycles(import_graph())
    assert found == [], "\n".join(" <-> ".join(c) for c in found)


def test_the_check_catches_a_cycle_and_a_wrong_layer(tmp_path):
    """The checks themselves, on a made-up graph (so that a broken check cannot pass silently)."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ui.app import build_app\n"
                      "def f():\n    import agent.store.models as m\n    from agent.attribution import games\n")
    modules = {"ui.app", "agent.store.models", "agent.store", "agent.attribution", "agent.attribution.games"}
    assert imports_of("retrieval.m", module, modules) == {"ui.app", "agent.store.models", "agent.attribution.games"}
