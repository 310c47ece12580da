"""Convergence depth: the answer settles as the top lens token at 80-85% of depth.

Claim: "All models converge on the correct answer around 80-85% through their layers" (readme of
experiment 001, from one prompt, "What is the capital of Germany?", on four models).

Definition: over the completion and Q&A prompts the model answers correctly (its output puts the answer,
in a whole-token spelling, top-1), take the relative depth (layer+1)/n_layers of the first block from
which the lens keeps the answer top-1 to the last block (a blip on top that is lost again does not
count; the first top-1 is reported beside it). Depth comes in steps of 1/n_layers. The claim holds if
the 95% interval of the median depth (a bootstrap resampling facts) lies within [0.75, 0.90] (the
notes' band widened by 5 points each side), is refuted if it lies wholly outside, and is inconclusive
otherwise. Control: the same depth for another fact's answer on the same prompts (it must not hold).
"""

import pytest

from findings.data import CAPITALS, THRESHOLDS
from findings.evidence import (
    as_control,
    depth,
    first_top1,
    forward_prompts,
    partners,
    settled_top1,
    statistic_verdict,
)
from suite.figures import DepthCurves
from suite.statistics import Verdict, within

CLAIM = "convergence_depth"
pytestmark = pytest.mark.claim(CLAIM, number=1)

BAND = tuple(THRESHOLDS[CLAIM]["band"])
NOTES_BAND = tuple(THRESHOLDS[CLAIM]["notes_band"])
FORM_LABELS = {"completion": "completion: “The capital of X is”", "qa": "Q&A: “Question: …? Answer:”"}


def evaluate(findings, prompt_set: str, control: bool = False) -> Verdict:
    """The claim's verdict on one model and prompt set (with `control`, on shuffled answers)."""
    other = partners(findings.facts(prompt_set))
    rows = []
    for prompt, fact, trace in forward_prompts(findings, prompt_set, answered=True):
        word = other[fact.id].answer if control else fact.answer
        settled = settled_top1(trace, word)
        rows.append({"fact": fact.id, "prompt": prompt, "followed": word, "first_top1_layer": first_top1(trace, word),
                     "settled_layer": settled, "settled_depth": depth(trace, settled),
                     "resolution": 1 / trace.n_layers})
    verdict = statistic_verdict(CLAIM, findings.name, prompt_set, rows, "settled_depth", lambda ci: within(ci, BAND),
        f"holds if the interval lies within [{BAND[0]:g}, {BAND[1]:g}]",
        "median depth from which the answer stays top-1",
    )
    return as_control(verdict) if control else verdict


def test_convergence_depth(findings, prompt_set, judge, record_control, record_figure):
    if prompt_set == CAPITALS:
        record_figure(answer_by_depth(findings))
    record_control(evaluate(findings, prompt_set, control=True))
    judge(evaluate(findings, prompt_set))


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
