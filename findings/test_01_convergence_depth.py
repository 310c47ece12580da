"""Convergence depth: the answer becomes the top lens token at 80-85% of depth.

Claim: "All models converge on the correct answer around 80-85% through their layers" (readme of
experiment 001, from one prompt, "What is the capital of Germany?", on four models).

Definition: over the completion and Q&A prompts the model answers correctly (its output puts the
answer, in any spelling, top-1), take the relative depth (layer+1)/n_layers of the first block whose
lens has the answer top-1. The claim holds if the 95% bootstrap interval of the median depth lies
within [0.75, 0.90] (the notes' band widened by 5 points each side), is refuted if it lies wholly
outside, and is inconclusive otherwise.
"""

from findings.data import THRESHOLDS
from findings.evidence import depth, first_top1, forward_prompts, result_key, statistic_verdict
from lens.verdicts import within

BAND = tuple(THRESHOLDS["convergence_depth"]["band"])

PROMPT_SETS = ["capitals", "arithmetic", "history", "capitals_german"]


def test_convergence_depth(traces, prompt_set, judge, claim):
    rows = []
    for prompt, fact, trace in forward_prompts(traces, prompt_set, answered=True):
        layer = first_top1(trace, fact.answer)
        rows.append({"prompt": prompt, "first_top1_layer": layer,
                     "first_top1_depth": depth(trace, layer)})
    judge(statistic_verdict(
        claim, result_key(traces.model, prompt_set), rows, "first_top1_depth", lambda ci: within(ci, BAND),
        f"holds if the interval lies within [{BAND[0]:g}, {BAND[1]:g}]",
        "median depth where the answer first is top-1",
    ))
