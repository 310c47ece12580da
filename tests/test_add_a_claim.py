"""CONTRIBUTING.md's worked example of adding a claim, built as the guide writes it: its blocks, written into a copy
of the package of claims (the module as a file, the section appended to claims.toml), make a claim the suite runs to
a verdict with nothing else touched; on SmolLM2, recorded with `./run verdicts --record`, it then passes as recorded."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lens.models.registry import registry
from suite.document import RESULTS, load_results
from suite.statistics import Label

ROOT = Path(__file__).parent.parent
GUIDE = ROOT / "CONTRIBUTING.md"


def example() -> dict[str, str]:
    """The worked example's files, from the fenced blocks of the guide's "Add a claim" whose first line names their
    file: path -> text (that line left out)."""
    section = GUIDE.read_text().split("## Add a claim")[1].split("\n## ")[0]
    found = {}
    for body in re.findall(r"```\w+\n(.*?)```", section, re.S):
        first, _, rest = body.partition("\n")
        if first.startswith("# findings/"):
            found[first[2:].strip()] = rest
    return found


@pytest.fixture
def copy(tmp_path) -> Path:
    """The package of claims and the pytest configuration, copied, with the example added as the guide says."""
    shutil.copytree(ROOT / "findings", tmp_path / "findings", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pytest.ini", "conftest.py"):
        shutil.copy(ROOT / name, tmp_path / name)
    files = example()
    assert sorted(files) == ["findings/claims.toml", "findings/test_17_answer_on_top.py"]  # the module, its section
    (tmp_path / "findings" / "test_17_answer_on_top.py").write_text(files["findings/test_17_answer_on_top.py"])
    with (tmp_path / "findings" / "claims.toml").open("a") as settings:
        settings.write("\n" + files["findings/claims.toml"])
    return tmp_path


def python(copy: Path, *args: str) -> subprocess.CompletedProcess:
    """Python in the copy: its package of claims first, the suite and the instrument from here."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=copy,
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": f"{copy}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"},
    )


JUDGE = """
import importlib, json
from findings.data import prompt_sets_of
from findings.evidence import judged
from findings.work import claim_of, reads_of
from tests.test_claims import settling_at, uniform

module = importlib.import_module("findings.test_17_answer_on_top")
early = judged(module.evaluate, module.CLAIM, uniform(settling_at(10)), "capitals")  # top-1 from half depth on
late = judged(module.evaluate, module.CLAIM, uniform(settling_at(19)), "capitals")  # top-1 at the last block only
wrong = judged(module.evaluate, module.CLAIM, uniform(settling_at(10), answered=False), "capitals", control="w")
print(json.dumps({"claim": module.CLAIM, "number": module.pytestmark.kwargs["number"], "early": early.verdict,
                  "late": late.verdict, "wrong": wrong.verdict, "sensitivity": len(early.sensitivity),
                  "sets": prompt_sets_of(module.CLAIM), "reads": reads_of(module.CLAIM),
                  "test": claim_of("findings/test_17_answer_on_top.py::test_answer_on_top[smollm2-capitals]")}))
"""


def test_the_guides_example_is_a_claim_judged_under_its_own_section(copy):
    done = python(copy, "-c", JUDGE)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout)
    assert found == {
        "claim": "answer_on_top",
        "number": 17,
        "early": Label.HOLDS,
        "late": Label.REFUTED,
        "wrong": Label.HOLDS,
        "sensitivity": 5,
        "sets": ["capitals"],
        "reads": [],
        "test": "answer_on_top",
    }  # 5: two values of at_depth, one of majority, two confidences
    assert not (ROOT / "findings" / "test_17_answer_on_top.py").exists()  # the project itself is untouched


@pytest.mark.slow
def test_the_guides_example_runs_to_a_verdict_on_smollm2_and_is_then_recorded(copy, tmp_path_factory):
    spec = registry()["smollm2"]
    if not spec.is_present():
        pytest.skip(f"smollm2's weights are not here: `{spec.download_command()}`")
    reports = tmp_path_factory.mktemp("example-reports")
    run = [
        "-m",
        "pytest",
        "findings/test_17_answer_on_top.py",
        "-m",
        "smollm2",
        "-q",
        "--tb=line",
        "-p",
        "no:cacheprovider",
        "--reports",
        str(reports),
    ]
    first = python(copy, *run)
    results = load_results(reports)
    assert results is not None, first.stdout[-3000:] + first.stderr[-3000:]
    entry = results.claims["answer_on_top"]
    assert (entry.number, entry.title) == (
        17,
        "Answer on top: where the model answers, the lens already has its answer top-1 at three quarters of depth",
    )
    verdict = entry.result_for("smollm2", "capitals").verdict
    assert verdict is not None and verdict.verdict in Label and verdict.n > 0 and verdict.exploratory
    # Not yet recorded: it passes where it holds, fails where it is refuted or inconclusive.
    assert first.returncode == (1 if verdict.verdict in (Label.REFUTED, Label.INCONCLUSIVE) else 0), first.stdout
    recorded = python(copy, "-m", "suite", "verdicts", "--record", "--reports", str(reports))
    assert recorded.returncode == 0, recorded.stderr
    assert '[answer_on_top."smollm2"]' in (copy / "findings" / "expected_verdicts.toml").read_text()
    again = python(copy, *run)
    assert again.returncode == 0, again.stdout[-3000:]  # as recorded: a pass, or a strict xfail
    assert json.loads((reports / RESULTS).read_text())["claims"]["answer_on_top"]["results"][0]["recorded"]
