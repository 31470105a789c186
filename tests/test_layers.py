"""The layers point one way, nothing imports in a circle (a static read of every import with ``ast``), and modules
and functions stay small enough to read (outside tests and benches).

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
#: the most lines of a module, and of a function (docstring and all), in the three packages
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60
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


#: The walk of one chat turn, top to bottom: UI handler -> conversation -> pipeline -> (retrieval, prompt, decoding,
#: attribution) -> store -> renderer's value. A module may import only modules of a lower rank (or of its own
#: component, which the cycle check keeps acyclic); the training and CLI components sit beside and above.
RANKS = {
    "ui": 9,
    "agent.cli": 8,
    "agent.conversation": 7,
    "agent.pipeline": 6,
    "agent.background": 6,  # exact explanations after the turn: store + attribution (the runner is handed one)
    "agent.training": 6,
    "agent.access": 6,  # users and passwords, on top of the store (ui.access checks callers with it)
    "agent.store": 5,
    "agent.turn": 4,
    "agent.attribution": 3,
    "agent.generation": 2,
    "agent.settings": 1,
    "agent.vocabulary": 1,
    "agent.errors": 1,
    "agent": 1,
    "retrieval": 0,
}
#: Who calls whom in one chat turn, in order: (caller, callee) with the callee's entry point in the comment.
CHAT_TURN = [
    ("ui.app", "agent.conversation"),              # MomentsApp.chat -> ConversationRunner.stream (history)
    ("agent.conversation", "agent.pipeline"),      # -> Agent.stream
    ("agent.pipeline", "retrieval.index"),         # -> KnowledgeIndex.search_conversation (lazy import)
    ("agent.pipeline", "agent.generation.prompt"),    # -> build_prompt
    ("agent.pipeline", "agent.generation.decoding"),  # -> stream_tokens
    ("agent.pipeline", "agent.attribution"),       # -> attribute (lazy import)
    ("agent.conversation", "agent.store"),         # -> Store.add_turn (the store is passed in; typed import)
    ("ui.app", "ui.render"),                       # -> explanation_html(TurnResult)
    ("ui.render", "agent.turn"),
]


def component(module: str) -> str:
    """The longest key of :data:`RANKS` that ``module`` is or lies under."""
    parts = module.split(".")
    return next(".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in RANKS)


def test_one_turn_walks_down_the_layers():
    graph = import_graph()
    upward = [f"{m} (rank {RANKS[component(m)]}) imports {t} (rank {RANKS[component(t)]})"
              for m, targets in sorted(graph.items()) for t in sorted(targets)
              if component(t) != component(m) and RANKS[component(t)] >= RANKS[component(m)]]
    assert upward == [], "\n".join(upward)
    for caller, callee in CHAT_TURN:  # every step of the turn is a call down (or within the UI)
        assert callee in graph[caller], f"{caller} does not import {callee}"
        assert RANKS[component(caller)] > RANKS[component(callee)] or component(caller) == component(callee)


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


def test_files_and_functions_stay_small():
    too_long = []
    for name, path in sorted(module_files().items()):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_FILE_LINES:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and ".migrations.versions." not in name:  # revisions are frozen
                    too_long.append(f"{name}.{node.name} (line {node.lineno}): {length} lines")
    assert too_long == [], "\n".join(too_long)
