"""The findings suite run for real on smollm2, in a subprocess (the capitals only, so it stays cheap):
as it is, and with a perturbed model."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
NUMBERS = sorted(int(p.stem.split("_")[1]) for p in (ROOT / "findings").glob("test_[0-9][0-9]_*.py"))


def run_findings(reports: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "findings/", "-m", "smollm2", "-q", "--tb=line", "-p", "no:cacheprovider",
         "--reports", str(reports), *extra],
        cwd=ROOT, capture_output=True, text=True,
    )


@pytest.fixture(scope="module")
def smollm2_run(tmp_path_factory, smollm2):  # smollm2: fetched and cached before the subprocess
    reports = tmp_path_factory.mktemp("reports")
    # The capitals without patching (the in-process findings run it): the report and three kinds of figure.
    return run_findings(reports, "-k", "capitals and not capitals_german and not patching"), reports


def test_the_findings_pass_on_smollm2_as_recorded(smollm2_run):
    done, _ = smollm2_run
    assert done.returncode == 0, done.stdout[-3000:]
    assert re.search(r"\d+ passed.*\d+ xfailed", done.stdout.splitlines()[-1])


def test_the_report_shows_every_claim_and_resolves_every_figure(smollm2_run):
    _, reports = smollm2_run
    report = (reports / "findings.md").read_text()
    for number in NUMBERS:
        assert f"\n| {number}. [" in report or number in (14, 15)  # patching: not selected here
    verdicts = report.split("## Verdicts")[1].split("## Changes")[0]
    assert verdicts.lstrip().startswith("Prompt set `capitals`:")
    header = next(line for line in verdicts.splitlines() if line.startswith("| claim"))
    assert "| smollm2 (" in header and "gemma3" not in header
    links = re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", report)
    assert sorted(Path(link).stem for link in links) == [
        "smollm2-answer-by-depth", "smollm2-attention", "smollm2-logit-lens"]
    for link in links:
        png = (reports / link).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert re.search(r"Not run yet: gemma3 \(`(\./run findings|pytest findings/) -m gemma3`\)", report)  # not mixed in


def test_a_perturbed_model_fails_snapshots_and_verdicts(tmp_path, smollm2):
    # One prompt set shows it: the capitals' snapshot and convergence depth, which read the same lens (the
    # snapshots of every set cost four times as much).
    selected = "snapshot and capitals] or convergence_depth and capitals]"
    done = run_findings(tmp_path, "-p", "tests.perturb", "-k", selected)
    assert done.returncode == 1
    failed = re.findall(r"^FAILED (\S+)", done.stdout, re.M)
    assert any("test_layer_snapshot[" in f for f in failed), done.stdout[-3000:]
    claims = [f for f in failed if re.search(r"test_\d\d_", f)]
    assert claims, done.stdout[-3000:]
