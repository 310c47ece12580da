"""suite.config: the suite knows the package of claims only through the pytest configuration. The configuration
is found as pytest finds it, the project's names every option the plugin declares (each path there), and no code of
the suite names a path of the package of claims."""

import ast
import re
from pathlib import Path

import pytest

from lens.errors import LensError
from suite.config import FINDINGS, OPTIONS, findings_command, option, path_option, project_config

ROOT = Path(__file__).parents[2]


def test_the_configuration_is_found_upward_as_pytest_finds_it(tmp_path):
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert project_config(deep) is None or project_config(deep)[0] not in (tmp_path, deep)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')  # no pytest section: not pytest's
    (tmp_path / "a" / "setup.cfg").write_text("[metadata]\nname = x\n")
    assert project_config(deep) is None or project_config(deep)[0] not in (tmp_path, tmp_path / "a")
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\nlens_findings = "claims"\n')
    assert project_config(deep) == (tmp_path, {"lens_findings": "claims"})
    assert path_option(FINDINGS, deep) == tmp_path / "claims"
    (tmp_path / "a" / "pytest.ini").write_text("[pytest]\nlens_findings = here\n")  # nearer, and first in a folder
    assert project_config(deep) == (tmp_path / "a", {"lens_findings": "here"}) and option(FINDINGS, deep) == "here"


def test_an_option_the_configuration_does_not_name_says_what_to_add(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    assert option(FINDINGS, tmp_path) == ""
    with pytest.raises(LensError, match="names no lens_findings .*add `lens_findings = PATH`"):
        path_option(FINDINGS, tmp_path)


def test_the_projects_configuration_names_every_option_and_each_path_is_there():
    for name in OPTIONS:
        assert path_option(name, ROOT).exists(), name


def test_the_findings_command_runs_the_package_of_claims_the_configuration_names(tmp_path, monkeypatch):
    monkeypatch.delenv("LENS_LAUNCHER", raising=False)
    monkeypatch.chdir(ROOT)
    assert findings_command("-m llama3") == f"pytest {option(FINDINGS)}/ -m llama3"
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    monkeypatch.chdir(tmp_path)
    assert findings_command("-m llama3") == "pytest -m llama3"  # what pytest collects there
    monkeypatch.setenv("LENS_LAUNCHER", "./run lens")
    assert findings_command("-m llama3") == "./run findings -m llama3"


def paths_named(source: str) -> list[str]:
    """The package of claims' paths a module's code names: a string "findings/..." or "pytest findings/", or
    "findings" joined into a path (docstrings aside: they may say where the claims live)."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if node.value.startswith("findings/") or " findings/" in node.value:
                found.append(node.value)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            found += [
                side.value
                for side in (node.left, node.right)
                if isinstance(side, ast.Constant) and side.value == "findings"
            ]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Path":
            found += [arg.value for arg in node.args if isinstance(arg, ast.Constant) and arg.value == "findings"]
    return found


def test_no_code_of_the_suite_names_a_path_of_the_package_of_claims():
    named = paths_named('x = Path("findings") / "claims.toml"\ny = root / "findings"\nz = "pytest findings/ -m a"')
    assert sorted(named) == ["findings", "findings", "pytest findings/ -m a"]  # the walk finds what it looks for
    assert {
        path.name: paths_named(path.read_text())
        for path in (ROOT / "suite").glob("*.py")
        if paths_named(path.read_text())
    } == {}


def test_no_module_of_the_suite_loads_the_tests():
    """The upgrade check once loaded tests.perturb; a test that wants a plugin in a candidate run passes `-p` itself."""
    loads = {
        path.name
        for path in (ROOT / "suite").glob("*.py")
        if re.search(r"\btests\.\w+|from tests\b|import tests\b", path.read_text())
    }
    assert loads == set()
