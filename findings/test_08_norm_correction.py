"""Norm correction matters: without the final norm, intermediate layers rank the answer far worse.

Claim: "LayerNorm correction: Important to apply the same normalization the model uses internally"
(readme of experiment 001, technical notes).

Definition: on each completion and Q&A prompt, for every block but the last, take log10 of the
answer's rank under the raw lens (residual unembedded without the final norm) over its rank under the
exact lens; take the median over blocks. The claim holds if the 95% bootstrap interval of the median
over prompts is at least 1.0 (the raw lens ranks the answer at least 10 times lower).
"""

import math
from statistics import median

import pytest

from findings.data import THRESHOLDS
from findings.evidence import forward_prompts, statistic_verdict
from lens.lenses import RAW
from suite.statistics import at_least

pytestmark = pytest.mark.claim("norm_correction", number=8)

MIN = THRESHOLDS["norm_correction"]["min_log10_rank_ratio"]


def test_norm_correction(findings, prompt_set, judge, claim):
    rows = []
    raw = forward_prompts(findings.lens(prompt_set, RAW), prompt_set)
    for (prompt, fact, trace), (_, _, unnormed) in zip(forward_prompts(findings.lens(prompt_set), prompt_set), raw):
        pairs = list(zip(trace.layers[:-1], unnormed.layers[:-1]))
        ratios = [math.log10(without.rank_answer / lay.rank_answer) for lay, without in pairs]
        rows.append({"prompt": prompt, "median_log10_rank_ratio": median(ratios),
                     "median_rank_normed": median(lay.rank_answer for lay, _ in pairs),
                     "median_rank_raw": median(without.rank_answer for _, without in pairs)})
    judge(statistic_verdict(
        claim, findings.name, prompt_set, rows, "median_log10_rank_ratio", lambda ci: at_least(ci, MIN),
        f"holds if the interval lies at or above {MIN:g}",
        "median log10(rank without norm / rank with norm)",
    ))
