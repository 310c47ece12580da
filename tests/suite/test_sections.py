"""suite.sections: each claim's section holds every figure the matrix shows in brief, names the lens where the
claim is read through more than one, and is the target of the matrix's short links."""

import re
from dataclasses import replace

from suite.report import render
from suite.sections import anchor
from tests.suite.built import result, results


def test_every_figure_of_a_matrix_cell_is_under_its_claim_whole():
    """The matrix shows a verdict in brief; its interval and Holm word are in the claim's table."""
    tuned = result(["smollm2"], "history", label="refuted")
    done = results(
        "2026-11-30 10:00 UTC",
        {
            "a": [result(["smollm2"]), result(["gemma3"], label="refuted")],
            "b": [
                result(["smollm2"], "history", label="inconclusive"),
                replace(tuned, lens="tuned", verdict=replace(tuned.verdict, lens="tuned")),
            ],
        },
    ).with_holm()
    text = render(done, {})
    for entry in done.claims.values():
        section = text.split(f"### {entry.number}. {entry.title}")[1].split("\n### ")[0]
        for found in entry.results:
            assert f"| {found.cell} " in section, found.cell
    assert "| smollm2 (history, logit) " in text and "| smollm2 (history, tuned) " in text  # b: two lenses
    assert "| smollm2 (capitals) " in text  # a: the logit lens only, so unnamed


def test_each_claim_link_in_the_matrix_points_at_its_sections_heading():
    done = results("2026-11-30 10:00 UTC", {"convergence_depth": [result()], "chat_format": [result()]})
    done = replace(
        done,
        claims={
            c: replace(e, number=5, title=f"{c.replace('_', ' ').capitalize()}: at 80-85%")
            for c, e in done.claims.items()
        },
    )
    text = render(done, {})
    used = re.findall(r"\]\[(c\d+)\]", text.split("## Claims")[0])
    defined = dict(re.findall(r"^\[(c\d+)\]: #(\S+)$", text, re.M))
    assert used == ["c1", "c2"] and set(defined) == set(used)
    headings = {anchor(e): e for e in done.claims.values()}
    assert [headings[defined[label]].title for label in used] == [
        "Convergence depth: at 80-85%",
        "Chat format: at 80-85%",
    ]
    assert defined["c1"] == "5-convergence-depth-at-80-85"  # GitHub's anchor of "### 5. Convergence depth: ..."
