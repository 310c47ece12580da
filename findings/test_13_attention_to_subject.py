"""Attention to the subject: where the answer moves to the last position, the last position attends to the subject.

Claim: the notes' next step, "Attention patterns: look at which parts of the input different layers pay
attention to", as the hypothesis that the answer is read from the subject ("Germany") by attention
from the last position where it moves there.

Definition: on each completion prompt ("The capital of X is") whose answer activation patching moves from
the subject to the last position (claim 14's handover block: the first where patching the last position
restores more than patching the subject), take the attention from the last position at the handover block,
averaged over heads, and the subject's share of it leaving out the first position (the usual attention
sink). The pattern is present when that share is at least twice what the subject's tokens would get from
attention spread evenly over the same positions. The claim holds if the exact 95% interval of the share
of facts showing it lies above 0.5. Sensitivity: the blocks before the handover too (`window`), the
concentration factor.
"""

from statistics import mean, median

import pytest

from findings.data import NOTES_FACT
from findings.evidence import RESAMPLING, handover, scope
from suite.figures import PositionHeatmap
from suite.statistics import Evidence, Verdict
from suite.verdicts import beside, share_verdict

CLAIM = "attention_to_subject"
pytestmark = pytest.mark.claim(CLAIM, number=13)


def evaluate(findings, prompt_set: str, t) -> Verdict:
    """The claim's verdict on one model (the capitals' completion prompts)."""
    rows = []
    attentions = findings.attention()
    for fact, patching, subject, _trace in findings.patched():
        layer, _, _ = handover(patching, subject)
        if layer is None:
            continue
        attention = attentions[fact.id]
        layers = range(max(0, layer - int(t["window"])), layer + 1)
        shares = [sum(attention.mean[i][p] for p in subject) / sum(attention.mean[i][1:]) for i in layers]
        even = len(subject) / (len(attention.tokens) - 1)
        rows.append(
            Evidence(
                fact.id,
                {
                    "layers": f"{layers.start}-{layers.stop - 1}",
                    "subject_share": mean(shares),
                    "even_share": even,
                    "concentrated": mean(shares) >= t["concentration"] * even,
                },
            )
        )
    shares = [row["subject_share"] for row in rows]
    return share_verdict(
        rows,
        flag="concentrated",
        threshold=t["majority"],
        statistic="share of facts whose last position attends to the subject where the answer moves",
        scope=scope(CLAIM, findings, prompt_set, t),
        resampling=RESAMPLING,
        figures=[
            beside("median subject share of the last position's attention there", median(shares) if shares else None)
        ],
    )


def test_attention_to_subject(findings, prompt_set, judge_claim, record_figure):
    if (figure := attention_figure(findings)) is not None:
        record_figure(figure)
    judge_claim(evaluate, findings, prompt_set)


def attention_figure(findings) -> PositionHeatmap | None:
    """Attention from the last position of the notes' fact, heads averaged, at every layer."""
    attention = findings.attention().get(NOTES_FACT.id)
    if attention is None:
        return None
    return PositionHeatmap(
        model=findings.name,
        name="attention",
        tokens=list(attention.tokens),
        values=[list(r) for r in attention.mean],
        title=f"{findings.name}: attention from the last position, {attention.prompt!r} (heads averaged)",
        label="attention weight",
    )
