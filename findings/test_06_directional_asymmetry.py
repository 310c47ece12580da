"""Directional asymmetry: "Berlin is the capital of" -> Germany is more confident than "The capital of Germany is" -> Berlin.

Claim: "'Berlin is capital of Germany' produces higher confidence than 'Germany's capital is Berlin'"
(readme of experiment 001); "Directional knowledge bias exists across models" (project notes).
Literature: the reversal curse (Berglund et al. 2023); a capital/country pair is a weak test of it,
since both directions are common in training text.

Definition: the confidence the notes compare, the answer's own output probability: the country's after
"<capital> is the capital of" against the capital's after "The capital of <country> is", each where the
lens reads (the first token the model writes where it answers). A fact counts if the model answers it in
at least one direction. The effect is ln(p_reverse / p_forward); the claim holds if the 95% interval of
its median over facts (bootstrap) lies above 0, is refuted if it lies at or below 0. Beside it: the same
ratio normalised over the set's countries and capitals (a frame whose mass goes to " the" loses to any
other), and how often each direction is answered.
"""

import pytest

from findings.evidence import paired_forms

CLAIM = "directional_asymmetry"
pytestmark = pytest.mark.claim(CLAIM, number=6)


def evaluate(findings, prompt_set: str, t):
    """The claim's verdict on one model and prompt set."""
    return paired_forms(findings, prompt_set, t, claim=CLAIM, better="reverse", worse="completion")


def test_directional_asymmetry(findings, prompt_set, judge_claim):
    judge_claim(evaluate, findings, prompt_set)
