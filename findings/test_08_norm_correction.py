"""Norm correction matters: without the final norm, each block's lens is far further from the output.

Claim: "LayerNorm correction: Important to apply the same normalization the model uses internally"
(readme of experiment 001, technical notes).

Definition: on each completion and Q&A prompt, for every block but the last, the KL divergence from the
model's output to the lens with the final norm (the exact lens) and to the lens without it (the residual
unembedded as it is); ranks are not used, since a norm that rescales the whole vector barely moves them.
Per prompt, the median over blocks of log10(KL without / KL with); the answer's probability under both is
kept beside it. The claim holds if the 95% interval of the median over prompts (a bootstrap resampling
facts) lies at or above 1.0 (the lens without the norm at least 10 times further from the output), is
refuted if it lies wholly below.
"""

import math
from statistics import median

import pytest

from findings.data import THRESHOLDS
from findings.evidence import forward_prompts, statistic_verdict
from lens.lenses import RAW
from suite.statistics import Verdict, at_least

CLAIM = "norm_correction"
pytestmark = pytest.mark.claim(CLAIM, number=8)

MIN = THRESHOLDS[CLAIM]["min_log10_kl_ratio"]


def evaluate(findings, prompt_set: str) -> Verdict:
    """The claim's verdict on one model and prompt set."""
    raw = forward_prompts(findings, prompt_set, lens=RAW)
    rows = []
    for (prompt, fact, trace), (_, _, unnormed) in zip(forward_prompts(findings, prompt_set), raw):
        pairs = list(zip(trace.layers[:-1], unnormed.layers[:-1]))
        ratios = [math.log10(max(without.kl_to_output, 1e-12) / max(lay.kl_to_output, 1e-12))
                  for lay, without in pairs]
        rows.append({"fact": fact.id, "prompt": prompt, "median_log10_kl_ratio": median(ratios),
                     "median_kl_with_norm": median(lay.kl_to_output for lay, _ in pairs),
                     "median_kl_without": median(without.kl_to_output for _, without in pairs),
                     "median_p_answer_with_norm": median(lay.p_answer for lay, _ in pairs),
                     "median_p_answer_without": median(without.p_answer for _, without in pairs)})
    return statistic_verdict(CLAIM, findings.name, prompt_set, rows, "median_log10_kl_ratio", lambda ci: at_least(ci, MIN),
        f"holds if the interval lies at or above {MIN:g}", "median log10(KL without norm / KL with norm)",
    )


def test_norm_correction(findings, prompt_set, judge):
    judge(evaluate(findings, prompt_set))
