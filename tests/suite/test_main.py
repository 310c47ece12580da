"""`python -m suite` (./run report, verdicts, upgrade-check): the report re-renders from findings.json without
importing torch (it runs no model: 2.6 s of torch's import were all its wait), and `verdicts --record` writes where
the pytest configuration names the recorded verdicts."""

import os
import subprocess
import sys
from pathlib import Path

from suite.__main__ import main
from suite.document import RESULTS, dumps
from tests.suite.built import result, results

ROOT = Path(__file__).parents[2]


def imported(stderr: str) -> set[str]:
    """The modules `python -X importtime` says it imported."""
    return {line.rpartition("|")[2].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def test_the_report_renders_from_findings_json_without_importing_torch(tmp_path):
    (tmp_path / RESULTS).write_text(dumps(results("2026-12-03 10:00 UTC", {"a": [result(), result(["gemma3"])]})))
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "suite", "report", "--reports", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(tmp_path / "findings.md")
    assert "holds 0.80" in (tmp_path / "findings.md").read_text()
    modules = imported(done.stderr)
    assert {"suite.report", "suite.document", "matplotlib"} <= modules  # the walk sees what ran
    assert not {name for name in modules if name == "torch" or name.startswith("torch.")}


def test_verdicts_are_recorded_where_the_configuration_names_them(tmp_path, monkeypatch, capsys):
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / RESULTS).write_text(dumps(results("mon", {"a": [result()]})))
    (tmp_path / "pytest.ini").write_text("[pytest]\nlens_expected_verdicts = claims/recorded.toml\n")
    (tmp_path / "claims").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["verdicts", "--record"]) == 0
    assert '[a."smollm2"]' in (tmp_path / "claims" / "recorded.toml").read_text()
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    assert main(["verdicts", "--record"]) == 2
    assert "names no lens_expected_verdicts" in capsys.readouterr().err
