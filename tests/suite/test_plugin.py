"""The report plugin, run inside pytest on small fake findings: verdicts, a skip, a failure, xdist,
an interrupted run, and the changes since the previous run."""

import json

import pytest

pytest_plugins = ["pytester"]

FAKE_CLAIM = '''
"""Fake claim: the answer is always right.

Claim: "it is" (nowhere). Definition: a fake for the plugin's tests."""
import pytest
from lens.verdicts import Verdict

@pytest.mark.parametrize("model_name", ["smollm2", "gemma3"])
def test_fake(model_name, record_verdict):
    verdict = "{verdict}" if model_name == "smollm2" else "refuted"
    record_verdict(Verdict(claim="fake_claim", model=model_name, verdict=verdict, statistic="share",
                           value=0.8, ci=(0.6, 0.9), rule="holds above 0.5", n=7,
                           evidence=({{"prompt": "p1", "x": 1.0}}, {{"prompt": "p2", "x": 0.0}})))
'''
SKIPPING = '''
"""Skipping claim: not run.\n\nClaim: none."""
import pytest

@pytest.mark.parametrize("model_name", ["llama3"])
def test_skip(model_name):
    pytest.skip("llama3 not run: its weights are not here; fetch them with `lens download llama3`")
'''
FAILING = '''
"""Failing claim: crashes.\n\nClaim: none."""
import pytest

@pytest.mark.parametrize("model_name", ["smollm2"])
def test_crash(model_name):
    raise ValueError("boom: the finding itself is broken")
'''


@pytest.fixture
def fake_findings(pytester):
    pytester.makeini("[pytest]\nstrict_markers = true\n")
    findings = pytester.mkdir("findings")
    (findings / "test_01_fake_claim.py").write_text(FAKE_CLAIM.format(verdict="holds"))
    (findings / "test_02_skipping_claim.py").write_text(SKIPPING)
    (findings / "test_03_failing_claim.py").write_text(FAILING)
    return pytester


def run(pytester, *args):
    return pytester.runpytest_subprocess("-p", "lens.pytest_plugin", "-p", "no:cacheprovider", *args)


def results(pytester):
    return json.loads((pytester.path / "reports" / "findings.json").read_text())


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_verdicts_skips_and_failures_reach_the_report(fake_findings, xdist):
    outcome = run(fake_findings, "findings", *xdist)
    outcome.assert_outcomes(passed=2, skipped=1, failed=1)
    data = results(fake_findings)
    fake = data["claims"]["fake_claim"]["results"]
    assert fake["smollm2"]["verdict"]["verdict"] == "holds"
    assert fake["gemma3"]["verdict"]["verdict"] == "refuted"
    assert data["claims"]["skipping_claim"]["results"]["llama3"]["outcome"] == "skipped"
    crash = data["claims"]["failing_claim"]["results"]["smollm2"]
    assert crash["outcome"] == "failed" and "boom: the finding itself is broken" in crash["message"]
    report = (fake_findings.path / "reports" / "findings.md").read_text()
    matrix = report.split("## Verdicts")[1].split("## Changes")[0]
    assert "| holds " in matrix and "| refuted " in matrix and "skipped [" in matrix and "failed [" in matrix
    assert "lens download llama3" in matrix and "boom" in matrix
    assert "### 1. Fake claim: the answer is always right" in report
    assert "| p1       |" in report  # the per-prompt evidence, via pandas


def test_an_interrupted_run_leaves_the_previous_report_whole(fake_findings):
    run(fake_findings, "findings").assert_outcomes(passed=2, skipped=1, failed=1)
    before = {p.name: p.read_bytes() for p in (fake_findings.path / "reports").iterdir() if p.is_file()}
    (fake_findings.path / "findings" / "test_04_interrupting.py").write_text(
        "def test_interrupt():\n    raise KeyboardInterrupt\n"
    )
    run(fake_findings, "findings")
    after = {p.name: p.read_bytes() for p in (fake_findings.path / "reports").iterdir() if p.is_file()}
    assert after == before
    assert not [p for p in (fake_findings.path / "reports").iterdir() if p.name.startswith(".")]


def test_the_report_says_what_changed_since_the_previous_run(fake_findings):
    run(fake_findings, "findings")
    (fake_findings.path / "findings" / "test_01_fake_claim.py").write_text(FAKE_CLAIM.format(verdict="refuted"))
    run(fake_findings, "findings")
    assert results(fake_findings)["changes"] == ["fake_claim on smollm2: holds → refuted"]
    assert "- fake_claim on smollm2: holds → refuted" in (fake_findings.path / "reports" / "findings.md").read_text()


def test_a_run_of_one_model_says_the_others_did_not_run(fake_findings):
    run(fake_findings, "findings", "-k", "smollm2")
    data = results(fake_findings)
    assert set(data["claims"]["fake_claim"]["results"]) == {"smollm2"}
    report = (fake_findings.path / "reports" / "findings.md").read_text()
    assert "gemma3: not selected in this run" in report


def test_lens_report_rerenders_without_models(fake_findings, monkeypatch, capsys):
    from lens.cli import main

    run(fake_findings, "findings")
    reports = fake_findings.path / "reports"
    (reports / "findings.md").unlink()
    assert main(["report", "--reports", str(reports)]) == 0
    assert "### 1. Fake claim" in (reports / "findings.md").read_text()
    assert main(["report", "--reports", str(fake_findings.path / "nowhere")]) == 2
    assert "run the findings first" in capsys.readouterr().err


PER_SET = '''
"""Set claim: judged per prompt set.\n\nClaim: none."""
import pytest
from lens.verdicts import Verdict

@pytest.mark.parametrize("model_name", ["smollm2"])
@pytest.mark.parametrize("prompt_set", ["capitals", "arithmetic"])
def test_per_set(model_name, prompt_set, record_verdict):
    key = model_name if prompt_set == "capitals" else f"{model_name}@{prompt_set}"
    record_verdict(Verdict(claim="set_claim", model=key, verdict="holds" if prompt_set == "capitals" else "refuted",
                           statistic="share", value=0.5, ci=(0.4, 0.6), rule="r", n=9))
'''


def test_each_prompt_set_gets_its_own_verdict_matrix(pytester):
    pytester.makeini("[pytest]\nstrict_markers = true\n")
    pytester.mkdir("findings")
    (pytester.path / "findings" / "test_01_set_claim.py").write_text(PER_SET)
    run(pytester, "findings").assert_outcomes(passed=2)
    report = (pytester.path / "reports" / "findings.md").read_text()
    capitals, arithmetic = report.split("## Verdicts")[1].split("## Changes")[0].split("Prompt set `arithmetic`:")
    assert "| holds " in capitals and "refuted" not in capitals
    assert "| refuted " in arithmetic and "holds" not in arithmetic
