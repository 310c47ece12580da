"""Attention to the subject: in the layers where the answer emerges, the last position attends to the subject token.

Claim: the notes' next step, "Attention patterns: look at which parts of the input different layers pay
attention to", as the hypothesis that the answer is read from the subject ("Germany") by attention
from the last position in the layers where it appears.

Definition: on each correctly answered completion prompt ("The capital of X is"), the answer emerges in
the blocks from the first whose lens ranks it in the top 10 up to the first that ranks it top-1. In those
blocks, take the attention from the last position, averaged over heads, and the subject's share of it
leaving out the first position (the usual attention sink). The pattern is present when that share is at
least twice what the subject's tokens would get from attention spread evenly over the same positions.
The claim holds if the exact 95% interval of the share of prompts showing it lies above 0.5.
"""

from statistics import mean

import pytest

from findings.data import NOTES_FACT, THRESHOLDS
from findings.evidence import first_top1, output_top1, share_verdict
from suite.figures import PositionHeatmap
from suite.statistics import Verdict

CLAIM = "attention_to_subject"
pytestmark = pytest.mark.claim(CLAIM, number=13)

T = THRESHOLDS[CLAIM]


def evaluate(findings, prompt_set: str) -> Verdict:
    """The claim's verdict on one model and prompt set."""
    rows = []
    attentions, subjects = findings.attention(), findings.subject_positions()
    for fact, trace in zip(findings.facts(prompt_set), findings.lens(prompt_set)["completion"]):
        attention, subject = attentions[fact.id], subjects[fact.id]
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
    return share_verdict(CLAIM, findings.name, prompt_set, rows, "concentrated", T["majority"],
                         "share of prompts whose last position attends to the subject as the answer emerges")


def test_attention_to_subject(findings, prompt_set, judge, record_figure):
    if (figure := attention_figure(findings)) is not None:
        record_figure(figure)
    judge(evaluate(findings, prompt_set))


def attention_figure(findings) -> PositionHeatmap | None:
    """Attention from the last position of the notes' fact, heads averaged, at every layer."""
    attention = findings.attention().get(NOTES_FACT.id)
    if attention is None:
        return None
    return PositionHeatmap(
        model=findings.name, name="attention", tokens=list(attention.tokens), values=[list(r) for r in attention.mean],
        title=f"{findings.name}: attention from the last position, {attention.prompt!r} (heads averaged)",
        label="attention weight",
    )
