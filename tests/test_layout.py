"""The layout of fastad (docs/design.md, "Layout"): fastad/core/ imports
only NumPy and the standard library, and no module of fastad imports, at
module level, a module that imports it back (no import cycle)."""
from __future__ import annotations

import ast
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "fastad"


def _modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _module_level_imports(name: str, path: pathlib.Path, modules: dict) -> set[str]:
    """The fastad modules ``name`` imports when it is imported (not inside
    functions, not under ``if TYPE_CHECKING``), and the other top-level names."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                full = f"{target}.{alias.name}"
                out.add(full if full in modules else target)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _module_level_imports(name, path, modules) for name, path in modules.items()}


def test_core_imports_only_numpy_and_the_standard_library():
    allowed_outside = {"numpy", "__future__"} | set(sys.stdlib_module_names)
    for name, imports in _graph().items():
        if not name.startswith("fastad.core"):
            continue
        foreign = {m for m in imports if not m.startswith("fastad.core")
                   and m.split(".")[0] not in allowed_outside}
        assert not foreign, f"{name} imports {sorted(foreign)}"


def test_no_import_cycles_in_fastad():
    graph = _graph()
    inside = {name: {m for m in imports if m in graph and m != name}
              for name, imports in graph.items()}
    # Tarjan's strongly connected components, iteratively
    index, low, on_stack, stack, cycles, counter = {}, {}, set(), [], [], [0]
    for root in inside:
        if root in index:
            continue
        work = [(root, iter(sorted(inside[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    if len(component) > 1:
                        cycles.append(sorted(component))
                continue
            if child not in index:
                index[child] = low[child] = counter[0]
                counter[0] += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(inside[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    assert not cycles, f"import cycles: {cycles}"


def test_the_layout_test_sees_a_cycle(tmp_path, monkeypatch):
    """The walker is not vacuous: two modules importing each other are a cycle."""
    package = tmp_path / "fastad"
    (package / "core").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "core" / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("from .a import x\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", package)
    try:
        test_no_import_cycles_in_fastad()
    except AssertionError as exc:
        assert "fastad.a" in str(exc) and "fastad.b" in str(exc)
    else:
        raise AssertionError("a cycle of two modules was not found")


# packages that the libraries the tests use import when present (not installed here)
_OPTIONAL_PACKAGES = {"sparse", "cupy", "pandas", "pyarrow", "xarray", "zarr", "tblib", "lz4",
                      "snappy", "zstandard", "cloudpickle", "psutil", "bokeh", "torch", "jax",
                      "matplotlib", "sklearn", "crick", "tiledb", "h5py"}


def test_benchmark_modules_shadow_no_installed_module():
    """Tests put benchmarks/ on sys.path, and libraries import optional
    packages by name (Dask tries `import sparse`): a benchmark module named
    like an installed or standard module would be imported in its place."""
    import importlib.util
    bench = ROOT.parent / "benchmarks"
    if not bench.is_dir():
        return
    saved = list(sys.path)
    try:
        sys.path[:] = [p for p in sys.path
                       if pathlib.Path(p or ".").resolve() != bench.resolve()]
        clashes = [p.stem for p in bench.glob("*.py")
                   if p.stem in sys.stdlib_module_names or p.stem in _OPTIONAL_PACKAGES
                   or (p.stem not in sys.modules and importlib.util.find_spec(p.stem) is not None)]
    finally:
        sys.path[:] = saved
    assert not clashes, clashes
