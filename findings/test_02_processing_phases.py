"""Processing phases: early layers are generic, middle layers bring the answer up, final layers are confident.

Claim: "Early layers: generic/random predictions across all models; Middle layers: correct answer starts
emerging gradually; Final layers: confident prediction" (project notes, key findings).

Definition: split the blocks into thirds by relative depth (early <= 1/3 < middle <= 2/3 < final). On
each correctly answered completion or Q&A prompt, the pattern is present when the answer's lens
probability stays below 0.05 in every early layer, its median rank in the middle third is better than
in the early third, and it reaches at least 0.30 in some final layer. The claim holds if the 95%
bootstrap interval of the share of prompts showing the pattern lies above 0.5.
"""

import pytest

from statistics import median

from findings.data import THRESHOLDS
from findings.evidence import forward_prompts, share_verdict

pytestmark = pytest.mark.claim("processing_phases", number=2)

T = THRESHOLDS["processing_phases"]


def test_processing_phases(findings, prompt_set, judge, claim):
    rows = []
    for prompt, fact, trace in forward_prompts(findings.lens(prompt_set), prompt_set, answered=True):
        early = [lay for lay in trace.layers if lay.depth <= 1 / 3]
        middle = [lay for lay in trace.layers if 1 / 3 < lay.depth <= 2 / 3]
        final = [lay for lay in trace.layers if lay.depth > 2 / 3]
        row = {
            "prompt": prompt,
            "early_max_p": max(lay.p_answer for lay in early),
            "early_median_rank": median(lay.rank_answer for lay in early),
            "middle_median_rank": median(lay.rank_answer for lay in middle),
            "final_max_p": max(lay.p_answer for lay in final),
        }
        row["pattern"] = (
            row["early_max_p"] < T["early_max_p"]
            and row["middle_median_rank"] < row["early_median_rank"]
            and row["final_max_p"] >= T["final_min_p"]
        )
        rows.append(row)
    judge(share_verdict(claim, findings.name, prompt_set, rows, "pattern", T["majority"],
                        "share of prompts showing all three phases"))
