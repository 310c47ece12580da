"""Final-layer calibration: the last layers lower the confidence reached earlier.

Claim: "final layers calibrate confidence"; "Last few layers seem to moderate the confidence for more
natural responses" (readme of experiment 001).

Definition: confidence is measured by entropy (higher entropy, lower confidence). On each correctly
answered completion or Q&A prompt, compare the lens's entropy at the block at 90% depth with the
output's entropy. The claim holds if the 95% bootstrap interval of the share of prompts whose entropy
rises over the last 10% of layers lies above 0.5.
"""

import math

from findings.data import FACTS, THRESHOLDS
from findings.evidence import output_top1, share_verdict

T = THRESHOLDS["final_layer_calibration"]


def test_final_layer_calibration(traces, judge, claim):
    rows = []
    for form in ("completion", "qa"):
        for fact, trace in zip(FACTS, traces.forms[form]):
            if output_top1(trace, fact.answer):
                at = trace.layers[math.ceil(T["from_depth"] * trace.n_layers) - 1]
                rows.append({"prompt": f"{fact.id}/{form}", "layer": at.layer,
                             "entropy_there": at.entropy, "output_entropy": trace.output.entropy,
                             "confidence_lowered": trace.output.entropy > at.entropy})
    judge(share_verdict(claim, traces.model, rows, "confidence_lowered", T["majority"],
                        "share of prompts whose entropy rises over the last 10% of layers"))
