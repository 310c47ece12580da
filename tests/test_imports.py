"""The house's walls, from the import graph of lens/, suite/ and findings/ (every import, in functions too: a
deferred import hides a circle from Python, not from this walk): no circle, no layer importing one above it, and
the instrument importing neither pytest nor the suite nor the findings.

The layers, lowest first (a module imports its own layer and those below only):
- ground: `lens.errors`, `lens.paths`, `lens.progress`, `lens.tokens`;
- `lens.models`: what a model is (the `Model` protocol), how it loads, runs here and is checked;
- `lens.lenses`: ways to read a residual vector, how each is built (the lens registry), trained, fetched;
- `lens.reads`: running a model and reading it through a lens (trace, grid, generation, attention, patching);
- `lens.remote`: NDIF, the reads a remote model answers its own way registered on the generic ones;
- the instrument's face: `lens` (the public API), `lens.cli`, `lens.table`;
- `suite`, then `findings`.
"""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
LAYERS = (
    ("lens.errors", "lens.paths", "lens.progress", "lens.tokens"),
    ("lens.models",),
    ("lens.lenses",),
    ("lens.reads",),
    ("lens.remote",),
    ("lens", "lens.cli", "lens.table"),
    ("suite",),
    ("findings",),
)
"""Module prefixes per layer, lowest first."""


def test_lens_imports_no_pytest_suite_or_findings():
    code = (
        "import sys, lens, lens.cli, lens.remote, lens.reads.check, lens.reads.attention, lens.reads.patching, "
        "lens.lenses.train_tuned, lens.lenses.published, lens.models.simulate; "
        "print(sorted(m for m in ('pytest', '_pytest', 'suite', 'findings') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_public_api_is_every_name_lens_exports_imported_on_first_use():
    code = (
        "import sys, lens; before = 'torch' in sys.modules; "
        "print(before, all(getattr(lens, name) is not None for name in lens.__all__), 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "False True True"


def test_the_suite_imports_no_findings():
    code = "import sys, suite.plugin, suite.report, suite.recorded; print('findings' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def module_files(root: Path) -> dict[str, Path]:
    """Every module of lens/, suite/ and findings/ by its dotted name (a package by its own name)."""
    out = {}
    for pkg in ("lens", "suite", "findings"):
        for path in (root / pkg).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(root: Path) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its code. `from package import name` is an import of
    the submodule where `name` is one, else of the package."""
    modules = module_files(root)
    graph = {}
    for name, path in modules.items():
        found = set()
        package = name if path.stem == "__init__" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's own package
                    base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
                for alias in node.names:
                    found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def external(root: Path) -> dict[str, set[str]]:
    """Module -> the top-level names of everything it imports (the project's own and libraries)."""
    out = {}
    for name, path in module_files(root).items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
        out[name] = found
    return out


def layer(module: str) -> int:
    """The layer of a module: the one whose prefix matches it most closely."""
    best = max(
        (
            (len(prefix), i)
            for i, prefixes in enumerate(LAYERS)
            for prefix in prefixes
            if module == prefix or module.startswith(prefix + ".")
        ),
        default=None,
    )
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[1]


def upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Every import of a module from a layer above its own."""
    return sorted((a, b) for a, targets in graph.items() for b in targets if layer(b) > layer(a))


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return out


def test_no_import_circle_in_lens_suite_or_findings():
    graph = imports(ROOT)
    assert len(graph) > 60 and graph["lens.models.loader"] >= {"lens.models.exact", "lens.models.model"}
    assert circles(graph) == []


def test_no_layer_imports_one_above_it():
    graph = imports(ROOT)
    assert {layer(m) for m in graph} == set(range(len(LAYERS)))  # every layer has modules: no stale prefix
    assert upward(graph) == []


def test_lens_imports_no_pytest_suite_or_findings_anywhere_in_its_code():
    named = {
        m: found & {"pytest", "_pytest", "suite", "findings"}
        for m, found in external(ROOT).items()
        if m == "lens" or m.startswith("lens.")
    }
    assert {m: found for m, found in named.items() if found} == {}


def test_no_module_of_lens_is_over_400_lines():
    long = {
        str(path.relative_to(ROOT)): n
        for path in (ROOT / "lens").rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 400
    }
    assert long == {}


def test_the_walk_finds_a_circle_and_an_upward_import_where_there_is_one():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert upward({"lens.models.loader": {"lens.reads.trace"}, "lens.reads.trace": {"lens.models.model"}}) == [
        ("lens.models.loader", "lens.reads.trace")
    ]


def test_the_walk_reads_a_package_import_as_its_submodule():
    graph = imports(ROOT)
    assert "lens.remote.blocks" in graph["lens.remote.model"] and "lens.remote" not in graph["lens.remote.model"]
