"""Patching before the lens: the answer reaches the last position (patching) no later than the lens settles on it.

Claim: the causal counterpart of the lens (issue 6): the layer at which the answer moves from the subject
to the last position (activation patching) is at or before the layer from which the logit lens keeps the
answer top-1.

Definition: for each fact patching measures (claim 14: answered, same patching, same handover block) whose
lens settles on the followed answer token before the last block (where it settles only at the last block,
"at or before" holds whatever patching shows, so those facts tell nothing), compare the handover block with
the first block from which the lens keeps the answer top-1 on the clean prompt. The lag (settling minus
handover, in blocks) is reported for every fact. The claim holds if the exact 95% interval of the share of
facts with handover <= settling lies above 0.5.
"""

import pytest

from findings.evidence import RESAMPLING, answer_series, handover, scope, settled
from suite.statistics import Evidence, Verdict
from suite.verdicts import share_verdict

CLAIM = "patching_before_convergence"
pytestmark = pytest.mark.claim(CLAIM, number=15)


def evaluate(findings, prompt_set: str, t) -> Verdict:
    """The claim's verdict on one model (the capitals' completion prompts)."""
    rows = []
    for fact, patching, subject, trace in findings.patched():
        layer, _, _ = handover(patching, subject)
        lens_settled = settled(answer_series(trace).rank)
        if layer is None or lens_settled is None or lens_settled == trace.n_layers - 1:
            continue
        rows.append(
            Evidence(
                fact.id,
                {
                    "handover_layer": layer,
                    "lens_settled_layer": lens_settled,
                    "lag": lens_settled - layer,
                    "before_or_at": layer <= lens_settled,
                },
            )
        )
    return share_verdict(
        rows,
        flag="before_or_at",
        threshold=t["majority"],
        statistic="share of facts whose handover comes at or before the lens settles",
        scope=scope(CLAIM, findings, prompt_set, t),
        resampling=RESAMPLING,
    )


def test_patching_before_convergence(findings, prompt_set, judge_claim):
    judge_claim(evaluate, findings, prompt_set, section="patching")
