"""Norm correction matters: without the final norm, each block's lens is further from the output.

Claim: "LayerNorm correction: Important to apply the same normalization the model uses internally"
(readme of experiment 001, technical notes).

Definition: on each completion and Q&A prompt, for every block but the last, the KL divergence from the
model's output to the lens with the final norm (the exact lens) and to the lens without it (the residual
unembedded as it is); ranks are not used, since a norm that rescales the whole vector barely moves them.
Per prompt, the median over blocks of log10(KL without / KL with); the answer's probability under both is
kept beside it. The claim holds if the 95% interval of the median over prompts (a bootstrap resampling
facts) lies above 0 (the lens with the norm is closer to the output), is refuted if it lies at or below 0.
The notes give no size: how much closer is the figure itself (10^value times), and "at least 10x" is a
sensitivity row.
"""

import math
from dataclasses import replace
from statistics import median

import pytest

from findings.evidence import RESAMPLING, forward_prompts, scope
from lens.lenses.lenses import RAW
from suite.statistics import Verdict
from suite.verdicts import Rule, beside, median_verdict

CLAIM = "norm_correction"
pytestmark = pytest.mark.claim(CLAIM, number=8)


def evaluate(findings, prompt_set: str, t) -> Verdict:
    """The claim's verdict on one model and prompt set."""
    rows = []
    for prompt, unnormed in zip(forward_prompts(findings, prompt_set), forward_prompts(findings, prompt_set, RAW)):
        pairs = list(zip(prompt.trace.layers[:-1], unnormed.trace.layers[:-1]))
        ratios = [math.log10(max(without.kl_to_output, 1e-12) / max(lay.kl_to_output, 1e-12)) for lay, without in pairs]
        rows.append(
            prompt.row(
                median_log10_kl_ratio=median(ratios),
                median_kl_with_norm=median(lay.kl_to_output for lay, _ in pairs),
                median_kl_without=median(without.kl_to_output for _, without in pairs),
                median_p_answer_with_norm=median(lay.p_answer for lay, _ in pairs),
                median_p_answer_without=median(without.p_answer for _, without in pairs),
            )
        )
    verdict = median_verdict(
        rows,
        key="median_log10_kl_ratio",
        rule=Rule("above", t["min_log10_kl_ratio"]),
        kind="log10_ratio",
        statistic="median log10(KL without norm / KL with norm)",
        scope=scope(CLAIM, findings, prompt_set, t),
        resampling=RESAMPLING,
    )
    return replace(
        verdict,
        beside=(
            beside("times closer to the output with the norm (10^median)", 10**verdict.value, "factor"),
            *(
                beside(
                    f"log10 of the median KL to the output {label} (nats)",
                    math.log10(max(median(row[key] for row in rows), 1e-12)),
                    "log10_ratio",
                )
                for label, key in (("with the norm", "median_kl_with_norm"), ("without it", "median_kl_without"))
            ),
        ),
    )


def test_norm_correction(findings, prompt_set, judge_claim):
    judge_claim(evaluate, findings, prompt_set)
