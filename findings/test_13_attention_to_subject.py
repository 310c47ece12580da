"""Attention to the subject: in the layers where the answer emerges, the last position attends to the subject token.

Claim: the notes' next step, "Attention patterns: look at which parts of the input different layers pay
attention to", as the hypothesis that the answer is read from the subject ("Germany") by attention
from the last position in the layers where it appears.

Definition: on each correctly answered completion prompt ("The capital of X is"), the answer emerges in
the blocks from the first whose lens ranks it in the top 10 up to the first that ranks it top-1. In those
blocks, take the attention from the last position, averaged over heads, and the subject's share of it
leaving out the first position (the usual attention sink). The pattern is present when that share is at
least twice what the subject's tokens would get from attention spread evenly over the same positions.
The claim holds if the 95% bootstrap interval of the share of prompts showing it lies above 0.5.
"""

from statistics import mean

import pytest

from findings.data import FACTS, NOTES_FACT, SETS, THRESHOLDS
from findings.evidence import first_top1, output_top1, share_verdict
from suite.figures import PositionHeatmap

pytestmark = pytest.mark.claim("attention_to_subject", number=13)

T = THRESHOLDS["attention_to_subject"]


def test_attention_to_subject(findings, prompt_set, judge, claim, record_figure):
    record_figure(attention_figure(findings))
    rows = []
    for fact, trace, attention, subject in zip(SETS[prompt_set], findings.lens(prompt_set)["completion"],
                                               findings.attention(), findings.subject_positions()):
        if not output_top1(trace, fact.answer):
            continue
        converged = first_top1(trace, fact.answer)
        emerging = next(lay.layer for lay in trace.layers if lay.rank_answer <= T["emerging_rank"])
        layers = range(min(emerging, converged), converged + 1)
        others = len(attention.tokens) - 1
        shares = [sum(attention.mean[i][p] for p in subject) / sum(attention.mean[i][1:]) for i in layers]
        even = len(subject) / others
        rows.append({"fact": fact.id, "layers": f"{layers.start}-{layers.stop - 1}",
                     "subject_share": mean(shares), "even_share": even,
                     "concentrated": mean(shares) >= T["concentration"] * even})
    judge(share_verdict(claim, findings.name, prompt_set, rows, "concentrated", T["majority"],
                        "share of prompts whose last position attends to the subject as the answer emerges"))


def attention_figure(findings) -> PositionHeatmap:
    """Attention from the last position of the notes' fact, heads averaged, at every layer."""
    attention = findings.attention()[FACTS.index(NOTES_FACT)]
    return PositionHeatmap(
        model=findings.name, name="attention", tokens=list(attention.tokens), values=[list(r) for r in attention.mean],
        title=f"{findings.name}: attention from the last position, {attention.prompt!r} (heads averaged)",
        label="attention weight",
    )
