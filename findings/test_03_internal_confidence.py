"""Internal confidence: at 80% of depth the lens gives the answer more probability than the output does.

Claim: "Models exhibit higher internal certainty than their final output probabilities suggest" (readme of
experiment 001, key insights), beside "converge ... around 80-85% through their layers, followed by
confidence calibration in the final layers".

Definition: on each correctly answered completion or Q&A prompt, compare the answer's lens probability at
the block at 80% of depth (the first block at or past it) with its output probability: a stated depth,
not the maximum over all blocks against one value (a maximum over many noisy values beats one value by
chance). The claim holds if the exact 95% interval of the share of prompts where the internal
probability is higher (effective sample size: the facts) lies above 0.5. Control: another fact's answer
followed on the same prompts (it must not hold, or any token's probability falls late, not the answer's).
"""

import math

import pytest

from findings.data import THRESHOLDS
from findings.evidence import as_control, forward_prompts, partners, series, share_verdict
from suite.statistics import Verdict

CLAIM = "internal_confidence"
pytestmark = pytest.mark.claim(CLAIM, number=3)

T = THRESHOLDS[CLAIM]


def evaluate(findings, prompt_set: str, control: bool = False) -> Verdict:
    """The claim's verdict on one model and prompt set (with `control`, on shuffled answers)."""
    other = partners(findings.facts(prompt_set))
    rows = []
    for prompt, fact, trace in forward_prompts(findings, prompt_set, answered=True):
        word = series(trace, other[fact.id].answer if control else fact.answer)
        if word is None:
            continue
        at = math.ceil(T["at_depth"] * trace.n_layers) - 1
        rows.append({"fact": fact.id, "prompt": prompt, "followed": word.text, "layer": at,
                     "internal_p": word.p[at], "output_p": word.p_output,
                     "higher_inside": word.p[at] > word.p_output})
    verdict = share_verdict(CLAIM, findings.name, prompt_set, rows, "higher_inside", T["majority"],
                            f"share of prompts whose p(answer) at {T['at_depth']:.0%} depth exceeds the output's")
    return as_control(verdict) if control else verdict


def test_internal_confidence(findings, prompt_set, judge, record_control):
    record_control(evaluate(findings, prompt_set, control=True))
    judge(evaluate(findings, prompt_set))
