"""Internal confidence: the model's peak internal probability for the answer exceeds its output probability.

Claim: "Models exhibit higher internal certainty than their final output probabilities suggest"
(readme of experiment 001, key insights).

Definition: on each correctly answered completion or Q&A prompt, compare the answer's highest lens
probability at any block before the last with its output probability. The claim holds if the 95%
bootstrap interval of the share of prompts where the peak is higher lies above 0.5.
"""

import pytest

from findings.data import THRESHOLDS
from findings.evidence import forward_prompts, share_verdict

pytestmark = pytest.mark.claim("internal_confidence", number=3)


def test_internal_confidence(findings, prompt_set, judge, claim):
    rows = []
    for prompt, fact, trace in forward_prompts(findings.lens(prompt_set), prompt_set, answered=True):
        peak = max(lay.p_answer for lay in trace.layers[:-1])
        rows.append({"prompt": prompt, "peak_internal_p": peak,
                     "output_p": trace.output.p_answer,
                     "higher_inside": peak > trace.output.p_answer})
    judge(share_verdict(claim, findings.name, prompt_set, rows, "higher_inside",
                        THRESHOLDS["internal_confidence"]["majority"],
                        "share of prompts whose peak internal p(answer) exceeds the output's"))
