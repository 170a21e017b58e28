"""The stack runs one way: no gpunn module imports one above it, and no two import each other.

The imports are read from the source (every `import` and `from ... import`, at module level or
inside a function, plus `importlib.import_module("gpunn...")`), so a late import inside a function
cannot hide an upward edge. Importing `a.b.c` also
runs the packages `a.b` and `a`, so those count as edges too (except packages the importer sits
in, which are already initialising).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gpunn"

# Each module belongs to the longest prefix listed here; it may import only its own level or below.
LEVELS: dict[str, int] = {
    "gpunn._checks": 0, "gpunn.errors": 0, "gpunn.parameter": 0, "gpunn.random": 0, "gpunn.emu": 0,
    "gpunn.precision": 0,
    "gpunn.backend.ops": 1, "gpunn.backend.detect": 1, "gpunn.backend.values": 1,
    "gpunn.backend.base": 2,
    "gpunn.backend.cpu": 3, "gpunn.backend.cuda": 3,
    "gpunn.backend.registry": 4, "gpunn.backend": 4,
    "gpunn.init": 5, "gpunn.regularizers": 5, "gpunn.constraints": 5, "gpunn.testing": 5, "gpunn.distributed": 5,
    "gpunn.losses": 6, "gpunn.optim": 6, "gpunn.data": 6,
    "gpunn.layers": 7,
    "gpunn.metrics": 8, "gpunn.io": 8, "gpunn.callbacks": 8, "gpunn.tune": 8, "gpunn.utils": 8,
    "gpunn.train": 9,
    "gpunn.models": 10,
    "gpunn": 11,  # the root package: the public surface, re-exported
    "gpunn.jobs": 12,
    "gpunn.cli": 13,
    "gpunn.__main__": 14,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def level(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LEVELS:
            return LEVELS[prefix]
    raise AssertionError(f"{module} has no level in LEVELS: give its package a place in the stack")


def _resolve(target: str) -> str:
    """The module an import names: `gpunn.a.b` itself when it is a module, else its package."""
    while target not in MODULES and "." in target:
        target = target.rsplit(".", 1)[0]
    return target


def imports_of(module: str, path: Path | None = None) -> set[str]:
    """Every gpunn module `module` imports, with the packages that importing it initialises."""
    path = MODULES[module] if path is None else path
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names = [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            attr = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if attr in ("import_module", "__import__"):
                names = [node.args[0].value]
        for name in names:
            if name == "gpunn" or name.startswith("gpunn."):
                found.add(_resolve(name))
    own = set()
    parts = module.split(".")
    for n in range(1, len(parts) + 1):
        own.add(".".join(parts[:n]))
    edges = set()
    for target in found:
        t_parts = target.split(".")
        for n in range(2, len(t_parts) + 1):  # the root package runs before anything: not an edge
            step = ".".join(t_parts[:n])
            if step not in own and step in MODULES:
                edges.add(step)
    return edges


GRAPH = {m: imports_of(m) for m in sorted(MODULES)}


def test_every_module_has_a_level():
    for m in MODULES:
        level(m)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_one_above_it(module):
    upward = sorted(t for t in GRAPH[module] if level(t) > level(module))
    assert not upward, (f"{module} (level {level(module)}) imports {upward}, which sit above it; "
                        "move the code down or the import up (see CONTRIBUTING.md, 'Where things live')")


def test_no_two_modules_import_each_other():
    """No cycle of any length (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
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
            if len(component) > 1 or v in GRAPH.get(v, ()):
                cycles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not cycles, f"modules that import each other: {cycles}"


def test_the_reader_sees_late_and_string_imports(tmp_path):
    """The checker itself: a function-local import and an import_module string both count."""
    probe = tmp_path / "activation.py"
    probe.write_text("def f():\n    from gpunn.train import model\n"
                     "def g():\n    import importlib\n    importlib.import_module('gpunn.jobs.train')\n")
    edges = imports_of("gpunn.backend.ops.activation", probe)
    assert {"gpunn.train", "gpunn.train.model", "gpunn.jobs", "gpunn.jobs.train"} <= edges
    assert all(level(t) > level("gpunn.backend.ops.activation") for t in edges)


# The one name that is looked up above its module rather than imported: a deprecated alias.
ALIASES = {("gpunn.layers", "gpunn.train.sequential")}


def test_only_the_listed_aliases_look_up_modules_above_them():
    """`sys.modules.get("gpunn...")` reaches a module without importing it; only the listed
    deprecated aliases may, and only for a module above them that `import gpunn` has loaded."""
    seen = set()
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("gpunn.") \
                    and node.value in MODULES and "sys.modules" in path.read_text(encoding="utf-8"):
                if level(node.value) > level(module):
                    seen.add((module, node.value))
    assert seen == ALIASES


def test_the_old_sequential_name_still_resolves_and_warns():
    """gpunn.layers.Sequential, which earlier READMEs documented, is the model, with a warning."""
    import gpunn
    import gpunn.layers as layers
    with pytest.warns(DeprecationWarning, match="gpunn.Sequential"):
        cls = layers.Sequential
    assert cls is gpunn.Sequential
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        layers.Nope  # noqa: B018
