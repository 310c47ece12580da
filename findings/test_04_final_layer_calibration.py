"""Final-layer calibration: over the last 10% of blocks the model grows less confident, in the answer too.

Claim: "final layers calibrate confidence"; "Last few layers seem to moderate the confidence for more
natural responses" (readme of experiment 001). Lad et al. 2024 and Stolfo et al. 2024 describe final
layers that sharpen or flatten the distribution while the top token stays.

Definition: on each correctly answered completion or Q&A prompt, compare the lens at the block at 90% of
depth with the output: confidence is moderated when the entropy rises (the distribution flattens) and
the answer's probability falls while the answer stays top-1 in both. The claim holds if the exact 95%
interval of the share of prompts showing this (effective sample size: the facts) lies above 0.5.
Control: another fact's answer in place of the answer (it must not hold).
"""

import math

import pytest

from findings.data import THRESHOLDS
from findings.evidence import as_control, forward_prompts, partners, series, share_verdict
from suite.statistics import Verdict

CLAIM = "final_layer_calibration"
pytestmark = pytest.mark.claim(CLAIM, number=4)

T = THRESHOLDS[CLAIM]


def evaluate(findings, prompt_set: str, control: bool = False) -> Verdict:
    """The claim's verdict on one model and prompt set (with `control`, on shuffled answers)."""
    other = partners(findings.facts(prompt_set))
    rows = []
    for prompt, fact, trace in forward_prompts(findings, prompt_set, answered=True):
        word = series(trace, other[fact.id].answer if control else fact.answer)
        if word is None:
            continue
        at = math.ceil(T["from_depth"] * trace.n_layers) - 1
        lens = trace.layers[at]
        row = {"fact": fact.id, "prompt": prompt, "followed": word.text, "layer": at,
               "entropy_there": lens.entropy, "output_entropy": trace.output.entropy,
               "p_there": word.p[at], "output_p": word.p_output,
               "top1_both": word.rank[at] == 1 and word.rank_output == 1}
        row["moderated"] = (row["top1_both"] and trace.output.entropy > lens.entropy
                            and word.p_output < word.p[at])
        rows.append(row)
    verdict = share_verdict(CLAIM, findings.name, prompt_set, rows, "moderated", T["majority"],
                            "share of prompts whose last 10% of blocks lower the confidence in the answer")
    return as_control(verdict) if control else verdict


def test_final_layer_calibration(findings, prompt_set, judge, record_control):
    record_control(evaluate(findings, prompt_set, control=True))
    judge(evaluate(findings, prompt_set))
