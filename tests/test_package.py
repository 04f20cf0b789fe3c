"""The package's shape: no import cycles, no re-export shims in leaf modules, a lazy face."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "emosteer"


def _modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


MODULES = _modules()


def _own_imports(tree: ast.AST) -> list[tuple[ast.AST, str, list[str]]]:
    """(node, module, names) for every import of the package's own modules, at any depth."""
    found = []
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module and (
                n.module == "emosteer" or n.module.startswith("emosteer.")):
            found.append((n, n.module, [a.name for a in n.names]))
        elif isinstance(n, ast.Import):
            found += [(n, a.name, []) for a in n.names if a.name.startswith("emosteer")]
    return found


def _target(module: str, name: str) -> str:
    """The module an import binds: `from a.b import c` binds module a.b.c when that exists."""
    return f"{module}.{name}" if f"{module}.{name}" in MODULES else module


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        for _, module, names in _own_imports(ast.parse(path.read_text())):
            for t in {_target(module, n) for n in names} or {module}:
                if t in MODULES and t != mod:
                    graph[mod].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state and (cycle := visit(w)):
                return cycle
        state[v] = 2
        stack.pop()
        return None

    for v in sorted(graph):
        if v not in state and (cycle := visit(v)):
            return cycle
    return None


def test_find_cycle_detects_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_between_own_modules():
    assert find_cycle(import_graph()) is None


def _used_names(tree: ast.AST) -> set[str]:
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    # names in string annotations ("Steerer") count as used
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.isidentifier():
            used.add(n.value)
    return used


def reexports(path: Path) -> list[str]:
    """Names a module imports from the package and then only hands on (never uses, or lists
    in __all__)."""
    tree = ast.parse(path.read_text())
    used = _used_names(tree) - {
        t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) for t in n.targets
        if isinstance(t, ast.Name) and t.id == "__all__"}
    exported: set[str] = set()
    for n in tree.body:
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__"
                                             for t in n.targets):
            exported = {e.value for e in ast.walk(n.value) if isinstance(e, ast.Constant)}
    bad = []
    for node, module, _ in _own_imports(tree):
        for a in getattr(node, "names", []):
            bound = a.asname or a.name.split(".")[0]
            if module != "emosteer" or a.name != "__version__":
                if bound in exported or bound not in used:
                    bad.append(f"{module}.{a.name}")
    return bad


def test_reexport_check_flags_a_shim(tmp_path):
    shim = tmp_path / "shim.py"
    shim.write_text("from emosteer.errors import ConfigError  # noqa: F401\n")
    assert reexports(shim) == ["emosteer.errors.ConfigError"]
    user = tmp_path / "user.py"
    user.write_text("from emosteer.errors import ConfigError\nraise ConfigError('x')\n")
    assert reexports(user) == []


@pytest.mark.parametrize("module", sorted(m for m, p in MODULES.items() if p.name != "__init__.py"))
def test_leaf_modules_reexport_nothing(module):
    assert reexports(MODULES[module]) == []


def test_face_is_lazy_and_complete():
    code = ("import sys, emosteer as e; assert 'torch' not in sys.modules, 'torch imported'; "
            "e.Steerer, e.load_encoder, e.build_axis, e.load_vocoder, e.extract_store, "
            "e.EmbeddingStore, e.EmotionAxis, e.learn_prosody_delta, e.ProsodyDelta, "
            "e.train_mapper, e.load_mapper, e.SteerConfig, e.EmosteerError, e.__version__")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_subpackage_face_names_only_what_exists():
    for mod, path in MODULES.items():
        if path.name == "__init__.py" and mod != "emosteer":
            tree = ast.parse(path.read_text())
            for n in tree.body:
                if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__"
                                                     for t in n.targets):
                    names = [e.value for e in n.value.elts]
                    imported = {a.asname or a.name for x in tree.body
                                if isinstance(x, ast.ImportFrom) for a in x.names}
                    assert set(names) <= imported, (mod, set(names) - imported)
