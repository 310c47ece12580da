"""Patching handover: the answer moves from the subject position to the last position, before the last third of the blocks.

Claim: the notes' next step, "Intervention experiments: try changing intermediate layers to see what
happens", as activation patching: restoring the subject position's residual stream works only up to
some layer, and restoring the last position's works only from about that layer on.

Definition: for each fact, the clean prompt "The capital of X is" and a corrupted one naming another
country of the same token length; for every block and position, the clean block output is patched into
the corrupted run and the restored share of the clean answer's probability is measured,
(p_patched - p_corrupt) / (p_clean - p_corrupt). With the subject's restoration taken as its best token's,
the handover layer is the first block where the last position restores more than the subject. A crossing
is forced somewhere (at block 0 the subject restores about everything, at the last block the last position
restores exactly everything), so the pattern asks for what is not: the subject restores at least half
somewhere before the handover and less than half at every block after it, the last position at least half
from the handover on, and the handover comes within the first two thirds of the blocks. Only facts the model
answers top-1 and whose clean and corrupted probabilities differ by at least 0.1 count. The claim holds if
the exact 95% interval of the share of facts showing the pattern lies above 0.5.
"""

import pytest

from findings.data import THRESHOLDS
from findings.evidence import handover, share_verdict
from suite.figures import PositionHeatmap
from suite.statistics import Verdict

CLAIM = "patching_handover"
pytestmark = pytest.mark.claim(CLAIM, number=14)

T = THRESHOLDS["patching"]


def evaluate(findings, prompt_set: str) -> Verdict:
    """The claim's verdict on one model (the capitals' completion prompts)."""
    rows = []
    for fact, patching, subject, trace in findings.patched():
        layer, subject_curve, last_curve = handover(patching, subject)
        row = {"fact": fact.id, "corrupt": patching.corrupt, "handover_layer": layer,
               "handover_depth": (layer + 1) / trace.n_layers if layer is not None else None}
        if layer is not None:
            row |= {"subject_best_before": max(subject_curve[:layer], default=0.0),
                    "subject_best_after": max(subject_curve[layer + 1:], default=0.0),
                    "last_worst_from": min(last_curve[layer:])}
        row["pattern"] = (layer is not None and row["subject_best_before"] >= T["restored"]
                          and row["subject_best_after"] < T["restored"] and row["last_worst_from"] >= T["restored"]
                          and row["handover_depth"] <= T["handover_by_depth"])
        rows.append(row)
    return share_verdict(CLAIM, findings.name, prompt_set, rows, "pattern", T["majority"],
                         "share of facts whose answer moves from the subject to the last position early")


def test_patching_handover(findings, prompt_set, judge, record_figure):
    if (figure := patching_figure(findings)) is not None:
        record_figure(figure)
    judge(evaluate(findings, prompt_set))


def patching_figure(findings) -> PositionHeatmap | None:
    """The restored share at every (block, position) for the notes' fact."""
    patch = findings.notes_patching()
    if patch is None:
        return None
    return PositionHeatmap(
        model=findings.name, name="patching", tokens=list(patch.tokens), values=[list(r) for r in patch.restored],
        title=f"{findings.name}: patching {patch.clean!r} into {patch.corrupt!r}",
        label=f"restored share of p({patch.answer!r})", vmin=-0.2, vmax=1.0,
    )
