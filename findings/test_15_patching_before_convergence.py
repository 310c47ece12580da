"""Patching before the lens: the handover layer lies before or at the layer where the lens converges on the answer.

Claim: the causal counterpart of the lens (issue 6): the layer at which the answer moves from the subject
to the last position (activation patching) is at or before the first layer whose logit lens puts the
answer top-1.

Definition: for each fact counted by the handover claim (same patching, same handover layer), compare
the handover layer with the first block whose lens has the answer top-1 on the clean prompt. The claim
holds if the 95% bootstrap interval of the share of facts with handover <= convergence lies above 0.5.
"""

import pytest

from findings.data import THRESHOLDS
from findings.evidence import first_top1, handover, share_verdict

pytestmark = pytest.mark.claim("patching_before_convergence", number=15)


def test_patching_before_convergence(findings, prompt_set, judge, claim):
    rows = []
    for fact, patching, subject, trace in findings.patched():
        layer, _, _ = handover(patching, subject)
        converged = first_top1(trace, fact.answer)
        rows.append({"fact": fact.id, "handover_layer": layer, "lens_top1_layer": converged,
                     "before_or_at": layer is not None and converged is not None and layer <= converged})
    judge(share_verdict(claim, findings.name, prompt_set, rows, "before_or_at", THRESHOLDS["patching"]["majority"],
                        "share of facts whose handover comes at or before the lens's convergence"))
