"""Final-layer calibration: the last layers lower the confidence reached earlier.

Claim: "final layers calibrate confidence"; "Last few layers seem to moderate the confidence for more
natural responses" (readme of experiment 001).

Definition: confidence is measured by entropy (higher entropy, lower confidence). On each correctly
answered completion or Q&A prompt, compare the lens's entropy at the block at 90% depth with the
output's entropy. The claim holds if the 95% bootstrap interval of the share of prompts whose entropy
rises over the last 10% of layers lies above 0.5.
"""

import math

import pytest

from findings.data import THRESHOLDS
from findings.evidence import forward_prompts, share_verdict

pytestmark = pytest.mark.claim("final_layer_calibration", number=4)

T = THRESHOLDS["final_layer_calibration"]


def test_final_layer_calibration(findings, prompt_set, judge, claim):
    rows = []
    for prompt, fact, trace in forward_prompts(findings.lens(prompt_set), prompt_set, answered=True):
        at = trace.layers[math.ceil(T["from_depth"] * trace.n_layers) - 1]
        rows.append({"prompt": prompt, "layer": at.layer,
                     "entropy_there": at.entropy, "output_entropy": trace.output.entropy,
                     "confidence_lowered": trace.output.entropy > at.entropy})
    judge(share_verdict(claim, findings.name, prompt_set, rows, "confidence_lowered", T["majority"],
                        "share of prompts whose entropy rises over the last 10% of layers"))
