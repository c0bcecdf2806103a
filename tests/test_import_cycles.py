"""The first-party import graph has no cycles, and core/ imports no stage package.

Why: a cycle means a module is half-initialised while another reads from it; it works only while
the import order happens to be right, and a function-level import that closes the loop is the
same cycle deferred to run time. core/ is the foundation every stage imports, so it must stand
alone. The graph is built from the source with `ast` (no imports run), from every `import` and
`from ... import` at any depth (module level, inside functions, under `if TYPE_CHECKING`).

Edges: `import a.b.c` / `from a.b import c` point at the deepest first-party module named
(`a.b.c` when it is a module, else `a.b`), and at each package `__init__` on the way there that is
not already a package containing the importer (importing a module runs its packages' `__init__`
first, so a re-export in an `__init__` can close a cycle too). `from pkg import name` where `name`
is no submodule reads pkg's namespace, so it is an edge to `pkg` even from inside pkg.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "mining", "clustering", "datasets", "model", "train", "pipelines")
STAGES = tuple(p for p in PACKAGES if p != "core")


def _module_files() -> dict[str, Path]:
    """Module name -> source file, for every .py file under the first-party packages."""
    mods: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _imports(mod: str, path: Path) -> list[tuple[str, str]]:
    """(module path, attribute or "") per name `mod` imports, at any depth; relative ones resolved.

    `import a.b` gives ("a.b", ""); `from a.b import c` gives ("a.b", "c"), where c may be a
    submodule or a name defined in (or re-exported by) a.b."""
    is_pkg = path.name == "__init__.py"
    out: list[tuple[str, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.extend((alias.name, "") for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                base_name = ".".join(base + ([node.module] if node.module else []))
            else:
                base_name = node.module or ""
            out.extend((base_name, alias.name) for alias in node.names)
    return out


def import_graph() -> dict[str, set[str]]:
    """First-party module -> the first-party modules importing it runs (see the docstring)."""
    mods = _module_files()
    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        own_packages = {".".join(mod.split(".")[:i]) for i in range(1, mod.count(".") + 1)}
        if path.name == "__init__.py":
            own_packages.add(mod)
        edges: set[str] = set()
        for name, attr in _imports(mod, path):
            if attr and f"{name}.{attr}" in mods:
                name, attr = f"{name}.{attr}", ""
            parts = name.split(".")
            prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
            edges.update(p for p in prefixes if p in mods and p not in own_packages)
            if attr and name in mods:
                # a name read from a package's namespace: needs that __init__ to have run, even
                # when it is the importer's own package (a re-export that loops back is a cycle)
                edges.add(name)
        edges.discard(mod)
        graph[mod] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                if len(comp) > 1:
                    cycles.append(sorted(comp))
    return cycles


def test_graph_sees_function_level_and_init_imports():
    """The graph builder itself: a lazy import and an `__init__` re-export are both edges."""
    graph = import_graph()
    assert len(graph) > 50
    assert "mining.readers.common" in graph["mining.readers"]  # an __init__ re-export
    assert "mining.quality.finetune" in graph["mining.quality.scorer"]  # imported inside a method
    assert "core" in graph["mining"]  # `from core import __version__`: a package namespace


def test_find_cycles_reports_a_loop():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_core_imports_no_stage_package():
    bad = {mod: sorted(e for e in edges if e.split(".")[0] in STAGES)
           for mod, edges in import_graph().items() if mod.split(".")[0] == "core"}
    bad = {m: e for m, e in bad.items() if e}
    assert not bad, f"core/ imports stage code: {bad}"
