"""The tree reads as its layers, and the import graph proves it.

The graph is built from the source (every ``import`` statement, including the ones inside
functions, which is where circles used to hide), so it needs no import side effects:
- nothing under ``campaigns/`` imports ``workers/``;
- only ``campaigns/store/`` imports SQLAlchemy (ruff's banned-api rule says the same at lint
  time; this also covers imports inside functions and string-free ``importlib`` tricks aside);
- the modules of ``campaigns`` and ``workers`` form no import circle;
- no module is over ~400 lines unless its docstring says why.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("campaigns", "workers")
LONG_MODULE_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _imports(name: str, path: Path, known: set[str] | None = None) -> set[str]:
    """Every module ``name`` imports (absolute names; relative imports resolved). With
    ``known``, ``from package import module`` counts as an import of the module only, like
    import-linter's graph: the package's ``__init__`` runs first either way, and counting it
    would make every package that re-exports a submodule look like a circle."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            members = {f"{base}.{alias.name}" for alias in node.names}
            submodules = members & known if known is not None else members
            found.update(submodules)
            if known is None or submodules != members:
                found.add(base)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(name, path, set(modules)):
            # an import of a name inside a module is an import of that module
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def test_nothing_under_campaigns_imports_workers() -> None:
    offenders = {
        (name, path)
        for name, path in _modules().items()
        if name.startswith("campaigns")
        for imported in _imports(name, path)
        if imported == "workers" or imported.startswith("workers.")
    }
    assert offenders == set()


def test_only_the_store_imports_sqlalchemy() -> None:
    offenders = {
        name
        for name, path in _modules().items()
        if not name.startswith("campaigns.store")
        for imported in _imports(name, path)
        if imported.split(".")[0] == "sqlalchemy"
    }
    assert offenders == set()


def test_the_import_graph_has_no_circle() -> None:
    graph = _graph()
    # Tarjan's strongly connected components; a component of two or more is a circle. A
    # package importing its own submodules (``campaigns.store`` → ``campaigns.store.manager``)
    # is an edge like any other, so such an __init__ must not be imported back by them.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert circles == []


def test_graph_sees_imports_hidden_inside_functions() -> None:
    # the circle this test exists for was hidden by a function-local import
    source = "def f():\n    from workers.tasks import enqueue_batch\n"
    probe = ROOT / "campaigns" / "__probe_layout__.py"
    probe.write_text(source)
    try:
        assert "workers.tasks" in _imports("campaigns.__probe_layout__", probe)
    finally:
        probe.unlink()


def test_long_modules_say_why_at_their_top() -> None:
    unexplained = []
    for name, path in _modules().items():
        lines = path.read_text().count("\n")
        if lines <= LONG_MODULE_LINES:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if "longer than" not in doc.lower():
            unexplained.append(f"{name}: {lines} lines")
    assert unexplained == []
