"""The rooms of the code and the arrows between them: every import of every module (top-level
and lazy, read from the source) points one way, down the layers of README "Where things go"."""

from __future__ import annotations

import ast
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A layer and the layers it may import (its own always). Most specific prefix wins.
ALLOWED: dict[str, set[str]] = {
    "indexer.storage": set(),
    "indexer.ingest": {"indexer.storage"},
    "indexer": {"indexer.storage", "indexer.ingest"},  # the package's own front door
    "retrieval.extras": set(),
    "retrieval.models": {"retrieval.extras"},
    "retrieval.search": {"retrieval.models", "retrieval.extras", "indexer.storage"},
    "retrieval.server": {"retrieval.search", "retrieval.models", "retrieval.extras", "indexer.storage"},
    "retrieval.train": {"retrieval.models", "retrieval.extras"},
    # The commands' terminal output and option parsing: for cli.py and retrieval.bench.commands only.
    "retrieval.console": {"retrieval.extras", "indexer.storage"},
    "retrieval.bench": {
        "retrieval.console",
        "retrieval.search",
        "retrieval.models",
        "retrieval.train",
        "retrieval.server",
        "retrieval.extras",
        "indexer",
        "indexer.storage",
        "indexer.ingest",
        "retrieval",
    },
    "retrieval": {"retrieval.models", "retrieval.search"},  # the package's own front door
}


def _layer(module: str) -> str:
    return max((name for name in ALLOWED if module == name or module.startswith(name + ".")), key=len)


def _modules() -> dict[str, Path]:
    out = {}
    for top in ("indexer", "retrieval"):
        for path in (ROOT / top).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _parse(source: str) -> ast.Module:
    """``ast.parse``, again when CPython 3.11's AST conversion raises "AST constructor recursion
    depth mismatch" (python/cpython#106905: its counter is the module's, not the thread's; seen
    once in the full suite, with threads of earlier tests still running), a spurious error."""
    for _ in range(4):
        try:
            return ast.parse(source)
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc):
                raise
            time.sleep(0.2)
    return ast.parse(source)


def _imports(module: str, path: Path) -> set[str]:
    """Every xmr module ``module`` imports, wherever in the file (lazy imports included)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(_parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}  # from PKG import module
    return {name for name in found if name.split(".")[0] in ("indexer", "retrieval", "cli")}


def test_imports_point_down_the_layers() -> None:
    modules = _modules()
    wrong = []
    for module, path in sorted(modules.items()):
        mine = _layer(module)
        for target in sorted(_imports(module, path)):
            if target.split(".")[0] == "cli":
                wrong.append(f"{module} -> cli")
                continue
            if target not in modules:
                continue  # a name imported from a module, not a module
            theirs = _layer(target)
            if theirs != mine and theirs not in ALLOWED[mine]:
                wrong.append(f"{module} ({mine}) -> {target} ({theirs})")
    assert wrong == [], "imports against the layers:\n" + "\n".join(wrong)


def test_no_import_circles_between_modules() -> None:
    modules = _modules()
    graph = {m: {t for t in _imports(m, p) if t in modules and t != m} for m, p in modules.items()}
    # A package's __init__ re-exporting its own modules is not a circle of the code's design.
    for m in graph:
        graph[m] = {t for t in graph[m] if not (modules[t].name == "__init__.py" and m.startswith(t + "."))}
    circles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert circles == [], "import circles:\n" + "\n".join(circles)


def test_the_layer_check_sees_a_wrong_arrow(tmp_path: Path) -> None:
    """The check itself: an import against the layers is found, lazy or not."""
    sample = tmp_path / "store.py"
    sample.write_text("def f():\n    from ..ingest.build import index_folder\n")
    assert "indexer.ingest.build" in _imports("indexer.storage.store", sample)
    assert _layer("indexer.ingest.build") not in ALLOWED[_layer("indexer.storage.store")]
