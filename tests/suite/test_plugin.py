"""The suite plugin and its report, run inside pytest on small fake claims: verdicts, a skip, a failure,
figures, xdist, an interrupted run, results accumulating over runs, the changes since each model's previous
run, and recorded expectations."""

import json
import re
import shutil
import subprocess
import sys

import pytest

from lens.models.registry import embedded_models
from suite.__main__ import main as suite_main
from suite.statistics import share_ci

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _embedded_models_present(tmp_path_factory, monkeypatch):
    """A lens cache where the embedded models' files are present (empty: the fake claims never load a model),
    so `--model smollm2` runs whether or not this machine has fetched the real ones (pytester moves HOME)."""
    monkeypatch.setenv("LENS_CACHE_DIR", str(tmp_path_factory.mktemp("lens-cache")))
    for spec in embedded_models():
        spec.gguf_path.parent.mkdir(parents=True, exist_ok=True)
        spec.gguf_path.write_bytes(b"")


FAKE_CLAIM = '''
"""Fake claim: the answer is always right.

Claim: "it is" (nowhere). Definition: a fake for the plugin's tests."""
import pytest
from suite.figures import PositionHeatmap
from suite.statistics import Evidence, Verdict

pytestmark = pytest.mark.claim("fake_claim", number=1)

def test_fake(model_name, record_verdict, record_figure):
    verdict = "{verdict}" if model_name == "smollm2" else "refuted"
    record_figure(PositionHeatmap(model=model_name, name="fake", tokens=["a", "b"], values=[[0.1, 0.9]]))
    record_verdict(Verdict(claim="fake_claim", models=(model_name,), prompt_set="capitals", verdict=verdict,
                           statistic="share", value=0.8, ci=(0.6, 0.9), rule="holds above 0.5", n=7,
                           evidence=(Evidence("f1", {{"prompt": "p1", "x": 1.0}}),
                                     Evidence("f2", {{"prompt": "p2", "x": 0.0}}))))
'''
SKIPPING = '''
"""Skipping claim: not run.\n\nClaim: none."""
import pytest

pytestmark = pytest.mark.claim("skipping_claim", number=2)

def test_skip(model_name):
    pytest.skip(f"{model_name} not run: its weights are not here; fetch them with `lens download {model_name}`")
'''
FAILING = '''
"""Failing claim: crashes.\n\nClaim: none."""
import pytest

pytestmark = pytest.mark.claim("failing_claim", number=3)

def test_crash(model_name):
    raise ValueError("boom: the finding itself is broken")
'''
MODELS = ["--model", "smollm2", "--model", "gemma3"]


@pytest.fixture
def fake_findings(pytester):
    pytester.makeini("[pytest]\nstrict_markers = true\n")
    findings = pytester.mkdir("findings")
    (findings / "test_01_fake_claim.py").write_text(FAKE_CLAIM.format(verdict="holds"))
    (findings / "test_02_skipping_claim.py").write_text(SKIPPING)
    (findings / "test_03_failing_claim.py").write_text(FAILING)
    return pytester


def run(pytester, *args, **kwargs):
    """The suite's plugin inside pytest, in this process: what a subprocess would show (outcomes, output, the
    report), without paying the imports again (a subprocess run cost 6-16 s, this one well under one)."""
    return pytester.runpytest_inprocess("-p", "suite.plugin", "-p", "no:cacheprovider", *args, **kwargs)


def results(pytester):
    return json.loads((pytester.path / "reports" / "findings.json").read_text())


def by_model(data, claim):
    return {tuple(r["models"]): r for r in data["claims"][claim]["results"]}


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_verdicts_skips_failures_and_figures_reach_the_report(fake_findings, xdist):
    outcome = run(fake_findings, "findings", *MODELS, *xdist)
    outcome.assert_outcomes(passed=2, skipped=2, failed=2)
    data = results(fake_findings)
    fake = by_model(data, "fake_claim")
    assert fake[("smollm2",)]["verdict"]["verdict"] == "holds"
    assert fake[("gemma3",)]["verdict"]["verdict"] == "refuted"
    assert fake[("gemma3",)]["prompt_set"] == "capitals"
    assert by_model(data, "skipping_claim")[("gemma3",)]["outcome"] == "skipped"
    crash = by_model(data, "failing_claim")[("smollm2",)]
    assert crash["outcome"] == "failed" and "boom: the finding itself is broken" in crash["message"]
    report = (fake_findings.path / "reports" / "findings.md").read_text()
    matrix = report.split("## Verdicts")[1].split("## Changes")[0]
    assert "| holds " in matrix and "| refuted " in matrix and "skipped [" in matrix and "failed [" in matrix
    assert "lens download gemma3" in matrix and "boom" in matrix
    outcome.stdout.fnmatch_lines(
        [
            "*= findings =*",
            "smollm2 *capitals *1 holds",
            "gemma3 *capitals *1 refuted",
            "smollm2 * 1 failed, 1 skipped",
            f"report: {fake_findings.path / 'reports' / 'findings.md'}",
        ]
    )
    claim_section = report.split("### 1. Fake claim: the answer is always right")[1].split("### 2.")[0]
    assert "Per-prompt figures: `findings.json`, under `claims.fake_claim`." in claim_section
    evidence = by_model(data, "fake_claim")[("smollm2",)]["verdict"]["evidence"]
    assert evidence[0] == {"fact": "f1", "prompt": "p1", "x": 1.0}
    assert "![smollm2-fake.png](figures/smollm2-fake.png)" in claim_section  # the figure beside its claim
    png = (fake_findings.path / "reports" / "figures" / "gemma3-fake.png").read_bytes()
    assert png.startswith(b"\x89PNG")


def test_an_interrupted_run_keeps_what_it_finished_marked_partial(fake_findings):
    first = run(fake_findings, "findings", *MODELS)
    first.assert_outcomes(passed=2, skipped=2, failed=2)
    before = results(fake_findings)
    (fake_findings.path / "findings" / "test_01_fake_claim.py").write_text(FAKE_CLAIM.format(verdict="refuted"))
    (fake_findings.path / "findings" / "test_04_interrupting.py").write_text(
        "import pytest\npytestmark = pytest.mark.claim('x', number=4)\n"
        "def test_interrupt(model_name):\n    raise KeyboardInterrupt\n"
    )
    stopped = run(fake_findings, "findings", *MODELS, no_reraise_ctrlc=True)  # the interrupt stays in the inner run
    assert stopped.ret == pytest.ExitCode.INTERRUPTED
    data = results(fake_findings)
    # smollm2's three claims ran before the interrupt (the fourth, its last test, did not): this run's, marked
    # partial; gemma3 never ran in it: its results and run are the first run's.
    assert by_model(data, "fake_claim")[("smollm2",)]["verdict"]["verdict"] == "refuted"
    assert data["runs"]["smollm2"]["partial"] == [3, 4] and "x" not in data["claims"]
    assert data["runs"]["gemma3"] == before["runs"]["gemma3"]
    assert by_model(data, "fake_claim")[("gemma3",)] == by_model(before, "fake_claim")[("gemma3",)]
    report = (fake_findings.path / "reports" / "findings.md").read_text()
    assert "| smollm2, logit (partial) " in report  # its column
    assert "smollm2 stopped after 3 of its 4 tests" in report.split("## Data warnings")[0]  # its run, in the header
    stopped.stdout.fnmatch_lines(["partial: smollm2 (3 of 4 tests); run again to finish*"])
    assert not [p for p in (fake_findings.path / "reports").iterdir() if p.name.startswith(".")]  # no journal left
    (fake_findings.path / "findings" / "test_04_interrupting.py").unlink()
    run(fake_findings, "findings", *MODELS).assert_outcomes(passed=2, skipped=2, failed=2)
    assert "partial" not in results(fake_findings)["runs"]["smollm2"]  # a run that completes it


def test_the_reports_order_is_the_datas_not_the_order_tests_ran_in(fake_findings, monkeypatch):
    """Two runs of the same claims in two shuffled orders write the same findings.json and findings.md, but for
    the date."""
    (fake_findings.path / "findings" / "test_04_set_claim.py").write_text(PER_SET.replace("number=1", "number=4"))
    written, orders = [], []
    for seed in ("1", "2"):
        monkeypatch.setenv("LENS_SHUFFLE_SEED", seed)
        reports = fake_findings.path / "reports"
        shutil.rmtree(reports, ignore_errors=True)  # each run on its own: "no previous run" in both
        done = run(fake_findings, "findings", *MODELS, "-p", "tests.shuffle", "-v")
        done.assert_outcomes(passed=6, skipped=2, failed=2)
        orders.append(re.findall(r"^findings/(\S+) \w+", done.stdout.str(), re.M))
        data = (reports / "findings.json").read_text(), (reports / "findings.md").read_text()
        written.append([re.sub(r"\d{4}-\d\d-\d\d( \d\d:\d\d UTC)?", "DATE", text) for text in data])
    assert orders[0] != orders[1] and sorted(orders[0]) == sorted(orders[1])
    assert written[0] == written[1]


def test_the_report_says_what_changed_since_each_models_previous_run(fake_findings):
    run(fake_findings, "findings", *MODELS)
    (fake_findings.path / "findings" / "test_01_fake_claim.py").write_text(FAKE_CLAIM.format(verdict="refuted"))
    run(fake_findings, "findings", *MODELS)
    change = "fake_claim (capitals): holds 0.80 [0.60, 0.90] n=7 → refuted 0.80 [0.60, 0.90] n=7"
    assert results(fake_findings)["changes"] == {"smollm2": [change], "gemma3": []}
    report = (fake_findings.path / "reports" / "findings.md").read_text()
    assert f"- smollm2:\n  - {change}\n" in report and "- gemma3: no verdict changed." in report  # a line each


def test_a_previous_report_in_an_older_layout_is_not_compared(fake_findings):
    reports = fake_findings.path / "reports"
    reports.mkdir()
    (reports / "findings.json").write_text(json.dumps({"claims": {"fake_claim": {"results": {"smollm2": {}}}}}))
    run(fake_findings, "findings", *MODELS).assert_outcomes(passed=2, skipped=2, failed=2)
    assert results(fake_findings)["changes"] is None
    assert "- smollm2: no previous run to compare with." in (reports / "findings.md").read_text()


def test_results_accumulate_a_run_replaces_only_what_it_ran(fake_findings):
    run(fake_findings, "findings", *MODELS)
    first = results(fake_findings)
    (fake_findings.path / "findings" / "test_01_fake_claim.py").write_text(FAKE_CLAIM.format(verdict="refuted"))
    outcome = run(fake_findings, "findings", "-m", "smollm2", "-k", "fake")
    outcome.assert_outcomes(passed=1)
    data = results(fake_findings)
    fake = by_model(data, "fake_claim")
    assert fake[("smollm2",)]["verdict"]["verdict"] == "refuted"  # this run's
    assert fake[("gemma3",)] == by_model(first, "fake_claim")[("gemma3",)]  # kept from the first run
    assert by_model(data, "failing_claim")[("smollm2",)]["outcome"] == "failed"  # not selected: kept
    assert data["runs"]["gemma3"] == first["runs"]["gemma3"]
    assert data["runs"]["smollm2"]["command"].endswith("-m smollm2 -k fake")
    report = (fake_findings.path / "reports" / "findings.md").read_text()
    matrix = report.split("## Verdicts")[1].split("## Changes")[0]
    assert "| refuted " in matrix
    # Each run in the header with the columns it made: smollm2's column is partly the first run's, partly this one's.
    head = report.split("## Data warnings")[0]
    later = data["runs"]["smollm2"]
    assert (
        f"- smollm2 logit (2 of 3 results); gemma3 logit: {first['runs']['gemma3']['date']}, "
        f"`{first['runs']['gemma3']['command']}`;" in head
    )
    assert f"- smollm2 logit (1 of 3 results): {later['date']}, `{later['command']}`;" in head
    assert {f["model"] for f in data["figures"]} == {"smollm2", "gemma3"}
    assert f"kept from earlier runs: gemma3 ({first['runs']['gemma3']['date']})" in outcome.stdout.str()


def test_the_report_rerenders_without_models(fake_findings, capsys):
    run(fake_findings, "findings", *MODELS)
    reports = fake_findings.path / "reports"
    (reports / "findings.md").unlink()
    capsys.readouterr()
    assert suite_main(["report", "--reports", str(reports)]) == 0  # `./run report`, in this process
    assert capsys.readouterr().out == f"{reports / 'findings.md'}\n"
    assert "### 1. Fake claim" in (reports / "findings.md").read_text()
    # `python -m suite` itself, its exit status and its one line, in a process of its own:
    done = subprocess.run(
        [sys.executable, "-m", "suite", "report", "--reports", str(fake_findings.path / "nowhere")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "run the findings first" in done.stderr and done.stderr.count("\n") == 1


PER_SET = '''
"""Set claim: judged per prompt set.\n\nClaim: none."""
import pytest
from suite.statistics import Verdict

pytestmark = pytest.mark.claim("set_claim", number=1)

@pytest.mark.parametrize("prompt_set", ["capitals", "arithmetic"])
def test_per_set(model_name, prompt_set, record_verdict):
    record_verdict(Verdict(claim="set_claim", models=(model_name,), prompt_set=prompt_set,
                           verdict="holds" if prompt_set == "capitals" else "refuted",
                           statistic="share", value=0.5, ci=(0.4, 0.6), rule="r", n=9))
'''


def test_each_prompt_set_gets_its_own_verdict_matrix(pytester):
    pytester.makeini("[pytest]\nstrict_markers = true\n")
    pytester.mkdir("findings")
    (pytester.path / "findings" / "test_01_set_claim.py").write_text(PER_SET)
    run(pytester, "findings", "--model", "smollm2").assert_outcomes(passed=2)
    report = (pytester.path / "reports" / "findings.md").read_text()
    capitals, arithmetic = report.split("## Verdicts")[1].split("## Changes")[0].split("Prompt set `arithmetic`:")
    assert "| holds " in capitals and "refuted" not in capitals
    assert "| refuted " in arithmetic and "holds" not in arithmetic


JUDGED = '''
"""Judged claim.\n\nClaim: none."""
import pytest
from suite import recorded
from suite.statistics import Verdict

pytestmark = pytest.mark.claim("judged", number=1)
EXPECTED = recorded.Recorded({{"judged": {{"smollm2": {{"capitals": {{"verdict": "{recorded}", "figure": "f"}}}}}}}})

def test_judged(request, model_name, record_verdict):
    judge = recorded.judge(request, EXPECTED, record_verdict)
    judge(Verdict(claim="judged", models=(model_name,), prompt_set="capitals", verdict="{now}",
                  statistic="share", value=0.5, ci=(0.4, 0.6), rule="r", n=9))
'''


@pytest.mark.parametrize(
    "recorded, now, outcome",
    [
        ("holds", "holds", {"passed": 1}),
        ("holds", "refuted", {"failed": 1}),
        ("refuted", "refuted", {"xfailed": 1}),  # a recorded non-hold runs as a strict xfail
        ("refuted", "holds", {"failed": 1}),  # XPASS(strict): the verdict flipped to holds
        ("refuted", "inconclusive", {"failed": 1}),  # VerdictChanged: fails outright
    ],
)
def test_a_verdict_is_checked_against_the_recorded_one(pytester, recorded, now, outcome):
    pytester.makeini("[pytest]\nstrict_markers = true\n")
    pytester.mkdir("findings")
    (pytester.path / "findings" / "test_judged.py").write_text(JUDGED.format(recorded=recorded, now=now))
    result = run(pytester, "findings", "--model", "smollm2")
    result.assert_outcomes(**outcome)
    if (recorded, now) == ("refuted", "inconclusive"):
        result.stdout.fnmatch_lines(
            ["*VerdictChanged: judged on smollm2 (capitals): recorded refuted (f), now inconclusive*"]
        )
    if (recorded, now) == ("holds", "refuted"):
        result.stdout.fnmatch_lines(["*ClaimNotHeld: judged on smollm2 (capitals): refuted (recorded holds: f)*"])


CONTROLLED = '''
"""Controlled claim: judged with its control.\n\nClaim: none."""
import pytest
from suite.statistics import Verdict

pytestmark = pytest.mark.claim("controlled", number=1)

def evaluate(model, prompt_set, t, control=None):
    return Verdict(claim="controlled", models=(model,), prompt_set=prompt_set,
                   verdict="{control}" if control else "{claim}", statistic="share", value=0.2 if control else 0.8,
                   ci=(0.1, 0.3) if control else (0.7, 0.9), rule="r", n=60, control=bool(control),
                   interval={{"method": "exact share", "k": 12 if control else 48, "n": 60}})

def test_controlled(model_name, judge_claim):
    judge_claim(evaluate, model_name, "capitals", controls=("wrong answers",))
'''


@pytest.mark.parametrize(
    "claim, control, outcome, caveat",
    [
        ("holds", "refuted", {"passed": 1}, None),  # the control fails: the effect is the claim's own
        ("holds", "holds", {"passed": 1}, "the control holds too"),  # the effect is there without the mechanism too
        ("refuted", "holds", {"failed": 1}, "the control holds where the claim does not"),  # a control never rescues
    ],
)
def test_the_findings_judge_records_a_control_beside_its_claim_and_never_fails_on_it(
    fake_findings, claim, control, outcome, caveat
):
    """findings/conftest.py's `judge_claim`, the skeleton of every claim's test, on a fake claim."""
    path = fake_findings.path
    for test in (path / "findings").iterdir():
        test.unlink()
    (path / "findings").rmdir()  # not a package named `findings`, which would hide the project's own
    (path / "conftest.py").write_text("from findings.conftest import judge, judge_claim  # noqa: F401\n")
    (path / "claims").mkdir()
    (path / "claims" / "test_01_controlled.py").write_text(CONTROLLED.format(claim=claim, control=control))
    done = run(fake_findings, "claims", "--model", "smollm2")
    done.assert_outcomes(**outcome)
    if claim == "refuted":
        done.stdout.fnmatch_lines(["*ClaimNotHeld: controlled on smollm2 (capitals): refuted: share = 0.8 *"])
    (result,) = results(fake_findings)["claims"]["controlled"]["results"]
    # The control, then the difference claim - control on its own interval: 0.8 - 0.2, the exact intervals of
    # 48 and 12 of 60 at 97.5% joined (the difference's lower end: the claim's lower minus the control's upper).
    assert [c["verdict"] for c in result["controls"]] == [control, "holds"]
    assert all(c["control"] for c in result["controls"])
    difference = result["controls"][1]
    assert difference["value"] == pytest.approx(0.6) and difference["statistic"].startswith("claim - control")
    assert difference["ci"][0] == pytest.approx(share_ci(48, 60, 0.975)[0] - share_ci(12, 60, 0.975)[1])
    assert result["verdict"]["verdict"] == claim and not result["verdict"]["control"]
    assert result["verdict"]["beside"][-1] == {"label": "control: share", "value": 0.2, "kind": "share"}
    caveats = result["verdict"]["caveats"]
    assert [c.split(" (")[0] for c in caveats] == ([caveat] if caveat else [])
    report = (path / "reports" / "findings.md").read_text()
    assert re.search(rf"\n\| smollm2 \(capitals\), control +\| {control} 0\.20 \[0\.10, 0\.30\] n=60 ", report)


def test_a_run_with_no_model_here_skips_every_claim_and_still_ends_with_its_report(fake_findings):
    """No weights here (no network to fetch them): each claim's empty parameter set is skipped, and the report
    is written (this used to end at session finish in a TypeError over pytest's NOTSET parameter)."""
    for spec in embedded_models():
        spec.gguf_path.unlink()
    outcome = run(fake_findings, "findings")
    assert outcome.ret == pytest.ExitCode.OK
    outcome.assert_outcomes(passed=0, failed=0, skipped=3)


def test_an_unknown_lens_is_a_usage_error_that_names_the_lenses(fake_findings):
    outcome = run(fake_findings, "findings", *MODELS, "--lens", "logit,bogus")
    assert outcome.ret == pytest.ExitCode.USAGE_ERROR
    outcome.stderr.fnmatch_lines(["*--lens logit,bogus: unknown lens bogus; choose among exact, raw, tuned*"])
