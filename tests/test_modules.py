"""The module structure: every evrt module imports on its own in a fresh interpreter, and the imports
between evrt modules have no cycle (module-level imports, and lazy ones inside functions too)."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "evrt"


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _resolve(name: str, mods: dict) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _eager_nodes(node):
    """Statements run when the module is imported: everything outside function bodies."""
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield child
            yield from _eager_nodes(child)


def import_edges(lazy: bool = True) -> dict[str, set[str]]:
    """evrt module -> the evrt modules it imports (a package counts as its __init__). With lazy=True,
    imports inside functions count too, except a package's lazy imports of its own submodules (the
    dispatch pattern: the package picks a submodule at call time, the submodule uses the package's
    shared definitions)."""
    mods = modules()
    edges = {}
    for mod, path in mods.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        eager = set(_eager_nodes(tree))
        nodes = ast.walk(tree) if lazy else eager
        deps = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(base + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                # `from pkg import sub` depends on the module pkg.sub; `from pkg import name` on pkg
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            top = node in eager
            for n in names:
                t = _resolve(n, mods) if n.startswith("evrt") else None
                if not t or t == mod or (not top and path.name == "__init__.py" and t.startswith(mod + ".")):
                    continue
                deps.add(t)
        edges[mod] = deps
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(edges.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (c := visit(d)):
                return c
        state[m] = 2
        stack.pop()
        return None

    for m in sorted(edges):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_module_level_imports():
    assert find_cycle(import_edges(lazy=False)) is None


def test_no_import_cycle_even_counting_lazy_imports():
    assert find_cycle(import_edges(lazy=True)) is None


def test_kernels_and_ops_layering():
    edges = import_edges()
    for m, deps in edges.items():
        if m.startswith("evrt.kernels"):
            assert not {d for d in deps if not d.startswith("evrt.kernels")}, (m, deps)
        if m.startswith("evrt.ops"):
            assert "evrt.graph" not in deps and "evrt.engine" not in deps, (m, deps)


FRESH = """
import importlib, sys
base = set(sys.modules)
for name in sys.argv[1:]:
    for m in [m for m in sys.modules if m == "evrt" or m.startswith("evrt.")]:
        del sys.modules[m]          # every evrt module imported anew, on its own
    importlib.import_module(name)
"""


def test_every_module_imports_on_its_own():
    """Each module imported with no evrt module loaded before it (third-party imports stay cached, so
    this is one interpreter, not sixty)."""
    names = [m for m in modules() if m != "evrt.__main__"]   # __main__ runs the CLI
    r = subprocess.run([sys.executable, "-c", FRESH, *names], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_every_family_module_is_a_family_mapper():
    from evrt.archs import ARCHS, FamilyMapper, arch_module
    for arch in ARCHS:
        assert isinstance(arch_module(arch), FamilyMapper), arch
