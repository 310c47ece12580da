"""Patching before the lens: the answer reaches the last position (patching) no later than the lens settles on it.

Claim: the causal counterpart of the lens (issue 6): the layer at which the answer moves from the subject
to the last position (activation patching) is at or before the layer from which the logit lens keeps the
answer top-1.

Definition: for each fact counted by the handover claim (same patching, same handover layer) whose lens
settles on the answer before the last block (where it settles only at the last block, "at or before" holds
whatever patching shows, so those facts tell nothing), compare the handover layer with the first block from
which the lens keeps the answer top-1 on the clean prompt. The lag (settling minus handover, in blocks) is
reported for every fact. The claim holds if the exact 95% interval of the share of facts with handover <=
settling lies above 0.5.
"""

import pytest

from findings.data import THRESHOLDS
from findings.evidence import handover, settled_top1, share_verdict
from suite.statistics import Verdict

CLAIM = "patching_before_convergence"
pytestmark = pytest.mark.claim(CLAIM, number=15)


def evaluate(findings, prompt_set: str) -> Verdict:
    """The claim's verdict on one model (the capitals' completion prompts)."""
    rows = []
    for fact, patching, subject, trace in findings.patched():
        layer, _, _ = handover(patching, subject)
        settled = settled_top1(trace, fact.answer)
        if layer is None or settled is None or settled == trace.n_layers - 1:
            continue
        rows.append({"fact": fact.id, "handover_layer": layer, "lens_settled_layer": settled,
                     "lag": settled - layer, "before_or_at": layer <= settled})
    return share_verdict(CLAIM, findings.name, prompt_set, rows, "before_or_at",
                         THRESHOLDS["patching"]["majority"],
                         "share of facts whose handover comes at or before the lens settles")


def test_patching_before_convergence(findings, prompt_set, judge):
    judge(evaluate(findings, prompt_set))
