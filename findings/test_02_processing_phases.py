"""Processing phases: early layers are noise, middle layers develop the answer, final layers are confident.

Claim: "Early layers: generic/random predictions across all models; Middle layers: correct answer starts
emerging gradually; Final layers: confident prediction" (project notes, key findings).

Definition: split the blocks into thirds by relative depth (early <= 1/3 < middle <= 2/3 < final). On
each completion or Q&A prompt the model answers, following the first token it writes, three conditions in
the notes' terms, each of which can fail: noise ("generic/random"), the answer is outside the lens's top 10
at every early block; development ("starts emerging"), the answer's median rank in the middle third is
better than in the early third; confidence, the answer's lens probability reaches 0.5 (more than all
other tokens together) in some final block. The claim holds if the exact 95% interval of the share of
prompts meeting all three (at the effective sample size, the number of facts) lies above 0.5. Reported
beside, not deciding: the share whose early lens is also unconfident (entropy at least 2 nats at every
early block), and each condition's own share. Control: the token the model writes on the prompts it
answers wrongly with another fact's answer (do wrong answers of the same type go through the same
phases?), and whether the claim's share exceeds the control's (its own interval).
"""

from statistics import median

import pytest

from findings.evidence import WRONG_ANSWERS, followed, majority, phase
from suite.statistics import Verdict
from suite.verdicts import beside, share_of

CLAIM = "processing_phases"
pytestmark = pytest.mark.claim(CLAIM, number=2)

EARLY_MIN_ENTROPY = 2.0
"""Reported beside the verdict only: an early lens this unconfident (the notes do not ask for it)."""


def evaluate(findings, prompt_set: str, t, control: str | None = None) -> Verdict:
    """The claim's verdict on one model and prompt set (with `control`, on its wrong answers: `followed`)."""
    rows = []
    for prompt, series in followed(findings, prompt_set, control):
        thirds = {"early": [], "middle": [], "final": []}
        for lay, p, rank in zip(prompt.trace.layers, series.p, series.rank):
            thirds[phase(lay.depth)].append((lay, p, rank))
        early_rank = median(rank for _, _, rank in thirds["early"])
        middle_rank = median(rank for _, _, rank in thirds["middle"])
        noise = all(rank > t["early_top_k"] for _, _, rank in thirds["early"])
        develops = middle_rank * t["middle_rank_gain"] < early_rank
        final_max_p = max(p for _, p, _ in thirds["final"])
        confident = final_max_p >= t["final_min_p"]
        rows.append(
            prompt.row(
                control,
                token=series.token,
                noise=noise,
                early_unconfident=all(lay.entropy >= EARLY_MIN_ENTROPY for lay, _, _ in thirds["early"]),
                early_median_rank=early_rank,
                middle_median_rank=middle_rank,
                develops=develops,
                final_max_p=final_max_p,
                confident=confident,
                pattern=noise and develops and confident,
            )
        )
    figures = [
        beside(
            f"share whose early lens has entropy >= {EARLY_MIN_ENTROPY:g} nats at every early block",
            share_of(rows, "early_unconfident"),
        ),
        *(beside(f"share meeting '{flag}'", share_of(rows, flag)) for flag in ("noise", "develops", "confident")),
    ]
    return majority(
        CLAIM,
        rows,
        "pattern",
        findings,
        prompt_set,
        t,
        control,
        statistic="share of prompts showing all three phases",
        figures=figures,
    )


def test_processing_phases(findings, prompt_set, judge_claim):
    judge_claim(evaluate, findings, prompt_set, controls=WRONG_ANSWERS)
