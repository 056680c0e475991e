"""The package's shape: layers in data-flow order, no import cycle (lazy imports included),
no module or function grown too long."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hmmclf"
LAYERS = ("utils", "task", "data", "model", "evaluation", "app")
"""The subpackages, each allowed to import only those before it (and itself)."""
MAX_MODULE_LINES = 600
MAX_FUNCTION_BODY_LINES = 80


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.lru_cache(maxsize=1)
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(module: str, node: ast.ImportFrom) -> list[str]:
    """Absolute names an ``ImportFrom`` brings in (the module, and each alias as a possible submodule)."""
    if node.level:
        package = module.split(".")
        is_package = _modules()[module].name == "__init__.py"
        base = package if is_package else package[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [target] + [f"{target}.{alias.name}" for alias in node.names]


def _internal_imports(module: str, path: Path) -> set[str]:
    """hmmclf modules imported anywhere in ``path``, function bodies included."""
    known = set(_modules())
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            names = _resolve(module, node)
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in known)
    return found - {module}


@functools.lru_cache(maxsize=1)
def _graph() -> dict[str, set[str]]:
    return {name: _internal_imports(name, path) for name, path in _modules().items()}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [nxt])
                if cycle:
                    return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_cycle_finder_sees_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_relative_and_lazy_imports():
    graph = _graph()
    assert "hmmclf.data.extraction" in graph["hmmclf.app.pipeline"]  # imported at module level
    assert "hmmclf.model.classifier" in graph["hmmclf.app.pipeline"]  # imported inside a function
    assert "hmmclf.model.decision" in graph["hmmclf.model.classifier"]  # a subpackage
    assert "hmmclf.utils.errors" in graph["hmmclf.utils.parallel"]  # imported inside a function


def test_every_module_sits_in_a_layer():
    loose = [m for m in _modules() if _layer(m) is None and m not in ("hmmclf", "hmmclf.__main__")]
    assert not loose, f"modules outside the layers {LAYERS}: {loose}"


def test_no_import_cycle_inside_the_package():
    assert _find_cycle(_graph()) is None


@pytest.mark.parametrize("layer", LAYERS)
def test_no_layer_imports_a_later_one(layer):
    graph = _graph()
    upward = {
        (module, target)
        for module, targets in graph.items()
        if _layer(module) == LAYERS.index(layer)
        for target in targets
        if _layer(target) is not None and _layer(target) > LAYERS.index(layer)
    }
    assert not upward, f"{layer} imports later layers: {sorted(upward)}"


def test_the_model_layer_needs_no_csv_parser():
    # The label classes live in task.classes, so the model never imports the labels-file reader (pandas).
    graph = _graph()
    model = [m for m in graph if m.startswith("hmmclf.model")]
    assert all("hmmclf.data.labels" not in graph[m] for m in model)


def test_no_module_is_longer_than_the_limit():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring does not count
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0


def test_no_function_body_is_longer_than_the_limit():
    long = {
        f"{p.relative_to(PACKAGE)}:{node.name}": n
        for p in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and (n := _body_lines(node)) > MAX_FUNCTION_BODY_LINES
    }
    assert not long


def test_the_public_face():
    import hmmclf

    for name in hmmclf.__all__:
        assert getattr(hmmclf, name) is not None, name
    from hmmclf import HMMClassifier, cross_validate, extract_corpus, load_model  # noqa: F401


def test_every_relative_import_resolves():
    # Imports inside functions run only on some paths (Ctrl-C, errors): a moved module must not break them.
    import importlib.util

    missing = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = _resolve(name, node)[0]
                if importlib.util.find_spec(target) is None:
                    missing.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {target}")
    assert not missing
