"""Convergence depth: the answer becomes the top lens token at 80-85% of depth.

Claim: "All models converge on the correct answer around 80-85% through their layers" (readme of
experiment 001, from one prompt, "What is the capital of Germany?", on four models).

Definition: over the completion and Q&A prompts the model answers correctly (its output puts the
answer, in any spelling, top-1), take the relative depth (layer+1)/n_layers of the first block whose
lens has the answer top-1. The claim holds if the 95% bootstrap interval of the median depth lies
within [0.75, 0.90] (the notes' band widened by 5 points each side), is refuted if it lies wholly
outside, and is inconclusive otherwise.
"""

import pytest

from findings.data import CAPITALS, THRESHOLDS
from findings.evidence import depth, first_top1, forward_prompts, statistic_verdict
from suite.figures import DepthCurves
from suite.statistics import within

pytestmark = pytest.mark.claim("convergence_depth", number=1)

BAND = tuple(THRESHOLDS["convergence_depth"]["band"])
NOTES_BAND = tuple(THRESHOLDS["convergence_depth"]["notes_band"])
FORM_LABELS = {"completion": "completion: “The capital of X is”", "qa": "Q&A: “Question: …? Answer:”"}


def test_convergence_depth(findings, prompt_set, judge, claim, record_figure):
    if prompt_set == CAPITALS:
        record_figure(answer_by_depth(findings))
    rows = []
    for prompt, fact, trace in forward_prompts(findings.lens(prompt_set), prompt_set, answered=True):
        layer = first_top1(trace, fact.answer)
        rows.append({"prompt": prompt, "first_top1_layer": layer,
                     "first_top1_depth": depth(trace, layer)})
    judge(statistic_verdict(
        claim, findings.name, prompt_set, rows, "first_top1_depth", lambda ci: within(ci, BAND),
        f"holds if the interval lies within [{BAND[0]:g}, {BAND[1]:g}]",
        "median depth where the answer first is top-1",
    ))


def answer_by_depth(findings) -> DepthCurves:
    """Every capital prompt's answer probability and rank over depth, completion and Q&A."""
    forms = findings.lens(CAPITALS)
    return DepthCurves(
        model=findings.name, name="answer-by-depth",
        depth=[lay.depth for lay in forms["completion"][0].layers],
        p={FORM_LABELS[f]: [[lay.p_answer for lay in t.layers] for t in forms[f]] for f in FORM_LABELS},
        rank={FORM_LABELS[f]: [[lay.rank_answer for lay in t.layers] for t in forms[f]] for f in FORM_LABELS},
        band=NOTES_BAND, band_label=f"notes: converges at {NOTES_BAND[0] * 100:g}-{NOTES_BAND[1] * 100:g}%",
    )
