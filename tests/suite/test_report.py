"""suite.report: the report written with the results it renders, and read back the same; the family-error lines.
(The first screen's parts: tests/suite/test_screen.py; the results file read back and set aside:
tests/suite/test_document.py.)"""

from dataclasses import replace

from suite.document import load_results, set_aside_if_unreadable
from suite.report import render, write_report
from tests.suite.built import result, results


def test_written_results_load_back_as_they_were_and_render_the_same(tmp_path):
    written = results(
        "2026-11-30 10:00 UTC",
        {"a": [result(["llama3"]), result(["mistral"], label="refuted")], "b": [result(["llama3"], label=None)]},
        changes={"llama3": []},
    )
    write_report(written, tmp_path)
    assert set_aside_if_unreadable(tmp_path) is None
    loaded = load_results(tmp_path)
    assert loaded == written
    assert render(loaded, {}) == (tmp_path / "findings.md").read_text()
    assert "| 0. [A][c1] | holds 0.80 n=7  | refuted 0.80 n=7 |" in render(loaded, {})


def test_the_family_lines_count_decided_cells_at_their_own_directional_error_and_holm_survivors():
    """Two decided cells at 95% and one at 98.3%, one inconclusive: 0.025 + 0.025 + 0.00833 expected wrong by
    chance (inconclusive counts nothing); Holm over each model and lens keeps the ones whose p survives."""

    def judged(label, p, confidence=0.95, prompt_set="capitals", models=("smollm2",)):
        found = result(models, prompt_set, label=label)
        return replace(found, verdict=replace(found.verdict, p=p, confidence=confidence))

    done = results(
        "2026-11-30 10:00 UTC",
        {
            "a": [judged("holds", 0.001), judged("refuted", 0.04, models=("gemma3",))],
            "b": [
                judged("holds", 0.02, confidence=1 - 0.05 / 3, prompt_set="arithmetic"),
                judged("inconclusive", 0.3, prompt_set="arithmetic"),
            ],
        },
    ).with_holm()
    text = render(done, {})
    expected = 0.025 + 0.025 + 0.05 / 6
    assert "3 verdicts decided in this report (every prompt set, lens and model)" in text
    assert f"about {expected:.2f} may be wrong" in text
    # smollm2's family: p 0.001, 0.02, 0.3 at 5%: 0.001 <= 0.0167 and 0.02 <= 0.025 stay; gemma3's 0.04 <= 0.05.
    assert "3 of the 3 stay decided" in text
    assert "holds 0.80 [0.60, 0.90] n=7, Holm: same" in text
    strict = results("2026-11-30 10:00 UTC", {"a": [judged("holds", 0.03), judged("holds", 0.04)]}).with_holm()
    # One family of two: 0.03 > 0.025 stops at once: both turn inconclusive under Holm.
    assert "Holm: inconclusive" in render(strict, {}) and "0 of the 2 stay decided" in render(strict, {})
