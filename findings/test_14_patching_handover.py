"""Patching handover: the answer moves from the subject position to the last position.

Claim: the notes' next step, "Intervention experiments: try changing intermediate layers to see what
happens", as activation patching: restoring the subject position's residual stream works only up to
some layer, and restoring the last position's works only from about that layer on.

Definition: for each fact the model answers, the clean prompt "The capital of X is" and a corrupted one
naming another country of the same token length; for every block and position, the clean block output is
patched into the corrupted run and the restored share of the clean answer's probability is measured,
(p_patched - p_corrupt) / (p_clean - p_corrupt). With the subject's restoration taken as its best token's,
the handover block is the first where the last position restores more than the subject. A clean handover:
the subject restores at least half somewhere before it and less than half at every block after it, and the
last position at least half from it on. At the last block the last position restores everything by
construction, so a handover there is forced and does not count. Only facts whose clean and corrupted
probabilities differ by at least 0.1 count. The claim holds if the exact 95% interval of the share of
facts with a clean handover lies above 0.5. Reported beside: the median handover depth with its interval
(exact, widened by half a block) and the notes' phase it falls in (early, middle, final third); a cut-off
in depth is a sensitivity row.
"""

import numpy as np
import pytest

from findings.evidence import RESAMPLING, handover, phase, scope
from suite.figures import PositionHeatmap
from suite.statistics import Evidence, Verdict, median_ci
from suite.verdicts import beside, share_verdict

CLAIM = "patching_handover"
pytestmark = pytest.mark.claim(CLAIM, number=14)


def evaluate(findings, prompt_set: str, t) -> Verdict:
    """The claim's verdict on one model (the capitals' completion prompts)."""
    rows = []
    for fact, patching, subject, trace in findings.patched():
        layer, subject_curve, last_curve = handover(patching, subject)
        row = {
            "corrupt": patching.corrupt,
            "handover_layer": layer,
            "handover_depth": (layer + 1) / trace.n_layers if layer is not None else None,
        }
        if layer is not None:
            row |= {
                "subject_best_before": max(subject_curve[:layer], default=0.0),
                "subject_best_after": max(subject_curve[layer + 1 :], default=0.0),
                "last_worst_from": min(last_curve[layer:]),
            }
        row["pattern"] = (
            layer is not None
            and layer < trace.n_layers - 1
            and row["subject_best_before"] >= t["restored"]
            and row["subject_best_after"] < t["restored"]
            and row["last_worst_from"] >= t["restored"]
            and row["handover_depth"] <= t["handover_by_depth"]
        )
        rows.append(Evidence(fact.id, row))
    clean = [row for row in rows if row["pattern"]]
    depths = [row["handover_depth"] for row in clean]
    figures = []
    if depths:
        lo, hi = median_ci(depths, t["confidence"], resolution=1 / findings.record.n_layers)  # one fact a row
        middle = float(np.median(depths))
        figures.append(
            beside(
                f"median depth of a clean handover ({t['confidence']:.0%} CI {lo:.2f} to {hi:.2f}; "
                f"the notes' {phase(middle)} third)",
                middle,
                "depth",
            )
        )
    return share_verdict(
        rows,
        flag="pattern",
        threshold=t["majority"],
        statistic="share of facts whose answer moves cleanly from the subject to the last position",
        scope=scope(CLAIM, findings, prompt_set, t),
        resampling=RESAMPLING,
        figures=figures,
    )


def test_patching_handover(findings, prompt_set, judge_claim, record_figure):
    if (figure := patching_figure(findings)) is not None:
        record_figure(figure)
    judge_claim(evaluate, findings, prompt_set, section="patching")


def patching_figure(findings) -> PositionHeatmap | None:
    """The restored share at every (block, position) for the notes' fact."""
    patch = findings.notes_patching()
    if patch is None:
        return None
    return PositionHeatmap(
        model=findings.name,
        name="patching",
        tokens=list(patch.tokens),
        values=[list(r) for r in patch.restored],
        title=f"{findings.name}: patching {patch.clean!r} into {patch.corrupt!r}",
        label=f"restored share of p({patch.answer!r})",
        vmin=-0.2,
        vmax=1.0,
    )
