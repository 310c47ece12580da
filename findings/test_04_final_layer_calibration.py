"""Final-layer calibration: over the last 10% of blocks the model grows less confident in its answer.

Claim: "final layers calibrate confidence"; "Last few layers seem to moderate the confidence for more
natural responses" (readme of experiment 001). Lad et al. 2024 and Stolfo et al. 2024 describe final
layers that sharpen or flatten the distribution while the top token stays.

Definition: on each completion or Q&A prompt the model answers, following the first token it writes,
compare the lens at the block at 90% of depth with the output: the confidence is moderated when the
answer's probability falls. The claim holds if the exact 95% interval of the share of prompts showing
this (effective sample size: the facts) lies above 0.5. Reported beside, not deciding (the notes do not
state them): the share whose entropy rises too (the whole distribution flattens), and the share with the
answer top-1 at 90% of depth already. Control: the token the model writes on the prompts it answers
wrongly with another fact's answer, and whether the claim's share exceeds the control's (its own interval).
"""

import math

import pytest

from findings.evidence import WRONG_ANSWERS, followed, majority
from suite.statistics import Verdict
from suite.verdicts import beside, share_of

CLAIM = "final_layer_calibration"
pytestmark = pytest.mark.claim(CLAIM, number=4)


def evaluate(findings, prompt_set: str, t, control: str | None = None) -> Verdict:
    """The claim's verdict on one model and prompt set (with `control`, on its wrong answers: `followed`)."""
    rows = []
    for prompt, series in followed(findings, prompt_set, control):
        at = math.ceil(t["from_depth"] * prompt.trace.n_layers) - 1
        lens, output = prompt.trace.layers[at], prompt.trace.output
        rows.append(
            prompt.row(
                control,
                token=series.token,
                layer=at,
                entropy_there=lens.entropy,
                output_entropy=output.entropy,
                p_there=series.p[at],
                output_p=series.p_output,
                moderated=series.p_output < series.p[at],
                flattens=output.entropy > lens.entropy,
                top1_there=series.rank[at] == 1,
            )
        )
    figures = [
        beside("share whose entropy rises too", share_of(rows, "flattens")),
        beside(f"share with the answer top-1 at {t['from_depth']:.0%} depth", share_of(rows, "top1_there")),
    ]
    return majority(
        CLAIM,
        rows,
        "moderated",
        findings,
        prompt_set,
        t,
        control,
        statistic=f"share of prompts whose p(answer) falls from {t['from_depth']:.0%} depth to the output",
        figures=figures,
    )


def test_final_layer_calibration(findings, prompt_set, judge_claim):
    judge_claim(evaluate, findings, prompt_set, controls=WRONG_ANSWERS)
