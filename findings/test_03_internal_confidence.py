"""Internal confidence: at 80% of depth the lens gives the answer more probability than the output does.

Claim: "Models exhibit higher internal certainty than their final output probabilities suggest" (readme of
experiment 001, key insights), beside "converge ... around 80-85% through their layers, followed by
confidence calibration in the final layers".

Definition: on each completion or Q&A prompt the model answers, following the first token it writes,
compare that token's lens probability at the block at 80% of depth (the first block at or past it) with
its output probability: a stated depth, not the maximum over all blocks against one value (a maximum over
many noisy values beats one value by chance). The claim holds if the exact 95% interval of the share of
prompts where the internal probability is higher (effective sample size: the facts) lies above 0.5.
Control: the token the model writes on the prompts it answers wrongly with another fact's answer (if its
probability falls late just as much, the fall is not about the answer), and whether the claim's share exceeds
the control's (its own interval).
"""

import math

import pytest

from findings.evidence import WRONG_ANSWERS, followed, majority
from suite.statistics import Verdict

CLAIM = "internal_confidence"
pytestmark = pytest.mark.claim(CLAIM, number=3)


def evaluate(findings, prompt_set: str, t, control: str | None = None) -> Verdict:
    """The claim's verdict on one model and prompt set (with `control`, on its wrong answers: `followed`)."""
    rows = []
    for prompt, series in followed(findings, prompt_set, control):
        at = math.ceil(t["at_depth"] * prompt.trace.n_layers) - 1
        rows.append(
            prompt.row(
                control,
                token=series.token,
                layer=at,
                internal_p=series.p[at],
                output_p=series.p_output,
                higher_inside=series.p[at] > series.p_output,
            )
        )
    return majority(
        CLAIM,
        rows,
        "higher_inside",
        findings,
        prompt_set,
        t,
        control,
        statistic=f"share of prompts whose p(answer) at {t['at_depth']:.0%} depth exceeds the output's",
    )


def test_internal_confidence(findings, prompt_set, judge_claim):
    judge_claim(evaluate, findings, prompt_set, controls=WRONG_ANSWERS)
