"""The package's shape: no import cycles, one way from lmrepl_jupyter to lmrepl."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Module-level statements, with ``if TYPE_CHECKING:`` blocks opened: a type-only
    import is a dependency too. Imports inside functions are deferred on purpose."""
    out: list[ast.stmt] = []
    for node in body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out.extend(node.body)
        else:
            out.append(node)
    return out


def _imports(path: Path) -> set[str]:
    """Modules of ours this file imports at module level."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in _top_level(tree.body):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if m.split(".")[0] in ("lmrepl", "lmrepl_jupyter")}


def _graph() -> dict[str, set[str]]:
    files = [*ROOT.joinpath("lmrepl").rglob("*.py"), *ROOT.joinpath("lmrepl_jupyter").rglob("*.py")]
    names = {_module_name(f): f for f in files}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        graph[name] = {m for m in _imports(path) if m in names and m != name}
    return graph


def test_no_import_cycles() -> None:
    graph = _graph()

    # A package imports its own submodules by design; a cycle through it is not a cycle
    # between modules that own ideas.
    def edges(name: str) -> set[str]:
        return {
            m for m in graph[name] if not name.startswith(m + ".") and not m.startswith(name + ".")
        }

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for dep in sorted(edges(name)):
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep) :], dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_the_engine_never_imports_the_notebook_side() -> None:
    for name, deps in _graph().items():
        if name.startswith("lmrepl.") or name == "lmrepl":
            assert not any(d.startswith("lmrepl_jupyter") for d in deps), name
