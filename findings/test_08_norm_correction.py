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

from findings.data import THRESHOLDS
from findings.evidence import forward_prompts, result_key, statistic_verdict
from lens.verdicts import at_least

MIN = THRESHOLDS["norm_correction"]["min_log10_rank_ratio"]

PROMPT_SETS = ["capitals", "arithmetic", "history", "capitals_german"]


def test_norm_correction(traces, prompt_set, judge, claim):
    rows = []
    for prompt, fact, trace in forward_prompts(traces, prompt_set):
        ratios = [math.log10(lay.rank_answer_raw / lay.rank_answer) for lay in trace.layers[:-1]]
        rows.append({"prompt": prompt, "median_log10_rank_ratio": median(ratios),
                     "median_rank_normed": median(lay.rank_answer for lay in trace.layers[:-1]),
                     "median_rank_raw": median(lay.rank_answer_raw for lay in trace.layers[:-1])})
    judge(statistic_verdict(
        claim, result_key(traces.model, prompt_set), rows, "median_log10_rank_ratio", lambda ci: at_least(ci, MIN),
        f"holds if the interval lies at or above {MIN:g}",
        "median log10(rank without norm / rank with norm)",
    ))
