"""The instrument stands alone: importing lens pulls in neither pytest nor the suite nor the findings; and no
module of lens/, suite/ or findings/ imports itself in a circle."""

import ast
import subprocess
import sys
from pathlib import Path


def test_lens_imports_no_pytest_suite_or_findings():
    code = (
        "import sys, lens, lens.reads.trace, lens.cli, lens.reads.check, lens.reads.attention, lens.reads.patching, lens.reads.grid; "
        "print(sorted(m for m in ('pytest', '_pytest', 'suite', 'findings') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_suite_imports_no_findings():
    code = "import sys, suite.plugin, suite.report, suite.recorded; print('findings' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def imports(root: Path) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its code (in functions too: a deferred import
    hides a circle from Python, not from this walk). Package __init__ files only re-export."""
    modules = {".".join(f.relative_to(root).with_suffix("").parts): f for pkg in ("lens", "suite", "findings")
               for f in (root / pkg).rglob("*.py") if f.stem != "__init__"}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


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
    graph = imports(Path(__file__).parent.parent)
    assert len(graph) > 40 and graph["lens.models.loader"] >= {"lens.reads.check", "lens.models.model"}
    assert circles(graph) == []


def test_the_walk_finds_a_circle_where_there_is_one():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
