"""A findings run stopped part way loses nothing it finished: stopped by SIGINT (Ctrl-C) or SIGTERM, its report keeps
the claims that finished, its model marked partial, and a rerun computes only what is missing; killed outright
(SIGKILL), its journal is folded into the next run's report. Real processes and real signals, on fake claims that
read the artefacts of two tiny random models (nothing downloaded)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).parent.parent.parent
CLAIMS = 5
CLAIM = '''
"""Claim {n}: counted.

Claim: none (a fake, for the tests of an interrupted run)."""
import os
import pathlib
import time

import pytest
from suite.statistics import Verdict

pytestmark = pytest.mark.claim("claim_{n}", number={n})


def test_claim(model_name, model_artefacts, record_verdict):
    if {n} == {last} and os.environ.get("STOP_AT") == model_name:  # this model's claims 1-{before} are done
        pathlib.Path(os.environ["STOPPED"]).touch()
        time.sleep(300)

    def compute(model):
        with open(os.environ["COMPUTED"], "a") as log:
            log.write(f"{{model_name}} {n}\\n")
        return model.n_layers

    layers = model_artefacts.get(("layers", {n}), compute)
    record_verdict(Verdict(claim="claim_{n}", models=(model_name,), prompt_set="capitals", verdict="holds",
                           statistic="share", value=layers / 10, ci=(0.1, 0.9), rule="r", n=7))
'''


@pytest.fixture
def project(tmp_path, tiny_folder):
    """A project of five fake claims and two tiny models, "alpha" and "beta" (each claim reads an artefact of its
    model, noting each computation in `computed.txt`)."""
    (tmp_path / "pytest.ini").write_text("[pytest]\nstrict_markers = true\n")
    (tmp_path / "findings").mkdir()
    for n in range(1, CLAIMS + 1):
        (tmp_path / "findings" / f"test_{n:02d}_claim.py").write_text(CLAIM.format(n=n, last=CLAIMS, before=CLAIMS - 1))
    for name in ("alpha", "beta"):
        shutil.copytree(tiny_folder, tmp_path / name)
    return tmp_path


def start(project: Path, **env: str) -> subprocess.Popen:
    """The findings on both models in a process of their own, with SIGINT as a terminal's Ctrl-C finds it (a
    background job starts with it ignored, and Python then never raises KeyboardInterrupt)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "findings",
            "-p",
            "suite.plugin",
            "-p",
            "no:cacheprovider",
            "-q",
            "--model",
            str(project / "alpha"),
            "--model",
            str(project / "beta"),
        ],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ
        | {
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "COMPUTED": str(project / "computed.txt"),
            "OMP_NUM_THREADS": "1",
        }
        | env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def stop_after_alphas_first_claims(project: Path, how: signal.Signals) -> tuple[int, str]:
    """Run until alpha's claims 1-4 are done (its fifth waits), then send `how`; the exit status and output."""
    stopped = project / "stopped"
    process = start(project, STOP_AT="alpha", STOPPED=str(stopped))
    deadline = time.monotonic() + 240
    while not stopped.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the run never reached alpha's fifth claim:\n{process.communicate()[0][-3000:]}")
        time.sleep(0.1)
    process.send_signal(how)
    output = process.communicate(timeout=240)[0]
    return process.returncode, output


def computed(project: Path) -> list[str]:
    path = project / "computed.txt"
    return path.read_text().splitlines() if path.is_file() else []


def findings(project: Path) -> dict:
    return json.loads((project / "reports" / "findings.json").read_text())


def claims_of(data: dict, model: str) -> list[int]:
    return [entry["number"] for entry in data["claims"].values() for r in entry["results"] if model in r["models"]]


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stopped_run_keeps_what_finished_marked_partial_and_a_rerun_does_only_the_rest(project, how):
    status, output = stop_after_alphas_first_claims(project, how)
    assert status == pytest.ExitCode.INTERRUPTED, output[-3000:]
    data = findings(project)
    assert claims_of(data, "alpha") == [1, 2, 3, 4] and "beta" not in data["runs"]
    assert data["runs"]["alpha"]["partial"] == [4, 5]
    report = (project / "reports" / "findings.md").read_text()
    assert "| alpha, logit (partial) " in report and "alpha stopped after 4 of its 5 tests" in report
    assert "partial: alpha (4 of 5 tests); run again to finish" in output
    assert not (project / "reports" / ".journal").exists()  # the report holds the run: its journal is gone
    assert computed(project) == [f"alpha {n}" for n in (1, 2, 3, 4)]
    if how != signal.SIGINT:
        return
    rerun = start(project)
    output = rerun.communicate(timeout=240)[0]
    assert rerun.returncode == 0, output[-3000:]
    # Alpha's first four readings are read back, not computed again: only the missing work is done.
    assert computed(project) == [f"alpha {n}" for n in (1, 2, 3, 4, 5)] + [f"beta {n}" for n in range(1, 6)]
    data = findings(project)
    assert claims_of(data, "alpha") == claims_of(data, "beta") == [1, 2, 3, 4, 5]
    assert "partial" not in data["runs"]["alpha"] and "partial" not in data["runs"]["beta"]
    assert "partial" not in (project / "reports" / "findings.md").read_text()


def test_a_run_killed_outright_leaves_its_journal_and_the_next_run_reports_it(project, pytester, monkeypatch):
    status, _ = stop_after_alphas_first_claims(project, signal.SIGKILL)
    assert status == -signal.SIGKILL
    assert not (project / "reports" / "findings.json").exists()  # no report: the run never reached its end
    (journal,) = (project / "reports" / ".journal").iterdir()
    entries = sorted(p.name for p in journal.iterdir())
    assert "run.json" in entries and not [name for name in entries if name.startswith(".")]  # whole files only
    # The next run, whatever it runs (here nothing: in this process, cheaper, and no model loads), reports it.
    monkeypatch.chdir(project)
    later = pytester.runpytest_inprocess(
        "findings",
        "-p",
        "suite.plugin",
        "-p",
        "no:cacheprovider",
        "--model",
        str(project / "beta"),
        "-k",
        "no_such_test",
    )
    assert later.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    data = findings(project)
    assert claims_of(data, "alpha") == [1, 2, 3, 4] and data["runs"]["alpha"]["partial"] == [4, 5]
    assert data["runs"]["alpha"]["command"].count("--model") == 2  # the killed run's own command and date
    assert "beta" not in data["runs"]
    assert "alpha stopped after 4 of its 5 tests" in (project / "reports" / "findings.md").read_text()
    assert not (project / "reports" / ".journal").exists()
