"""Processing phases: early layers are noise, middle layers develop the answer, final layers are confident.

Claim: "Early layers: generic/random predictions across all models; Middle layers: correct answer starts
emerging gradually; Final layers: confident prediction" (project notes, key findings).

Definition: split the blocks into thirds by relative depth (early <= 1/3 < middle <= 2/3 < final). On
each correctly answered completion or Q&A prompt, three measured conditions, each of which can fail:
noise, at every early block the answer is outside the lens's top 10 and the lens's entropy is at least
2 nats (no confident early guess); development, the answer's median rank in the middle third is at least
10 times better than in the early third; confidence, the answer's lens probability reaches 0.30 in some
final block. The claim holds if the exact 95% interval of the share of prompts meeting all three (at the
effective sample size, the number of facts) lies above 0.5. Control: another fact's answer followed on
the same prompts (it must not hold).
"""

from statistics import median

import pytest

from findings.data import THRESHOLDS
from findings.evidence import as_control, forward_prompts, partners, series, share_verdict
from suite.statistics import Verdict

CLAIM = "processing_phases"
pytestmark = pytest.mark.claim(CLAIM, number=2)

T = THRESHOLDS[CLAIM]


def evaluate(findings, prompt_set: str, control: bool = False) -> Verdict:
    """The claim's verdict on one model and prompt set (with `control`, on shuffled answers)."""
    other = partners(findings.facts(prompt_set))
    rows = []
    for prompt, fact, trace in forward_prompts(findings, prompt_set, answered=True):
        word = series(trace, other[fact.id].answer if control else fact.answer)
        if word is None:
            continue
        thirds = {"early": [], "middle": [], "final": []}
        for lay, p, rank in zip(trace.layers, word.p, word.rank):
            third = "early" if lay.depth <= 1 / 3 else "middle" if lay.depth <= 2 / 3 else "final"
            thirds[third].append((lay, p, rank))
        early_rank = median(rank for _, _, rank in thirds["early"])
        middle_rank = median(rank for _, _, rank in thirds["middle"])
        row = {
            "fact": fact.id, "prompt": prompt, "followed": word.text,
            "noise": all(rank > T["early_top_k"] and lay.entropy >= T["early_min_entropy"]
                         for lay, _, rank in thirds["early"]),
            "early_median_rank": early_rank, "middle_median_rank": middle_rank,
            "develops": middle_rank * T["middle_rank_gain"] <= early_rank,
            "final_max_p": max(p for _, p, _ in thirds["final"]),
        }
        row["confident"] = row["final_max_p"] >= T["final_min_p"]
        row["pattern"] = row["noise"] and row["develops"] and row["confident"]
        rows.append(row)
    verdict = share_verdict(CLAIM, findings.name, prompt_set, rows, "pattern", T["majority"],
                            "share of prompts showing all three phases")
    return as_control(verdict) if control else verdict


def test_processing_phases(findings, prompt_set, judge, record_control):
    record_control(evaluate(findings, prompt_set, control=True))
    judge(evaluate(findings, prompt_set))
