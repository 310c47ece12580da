"""Directional asymmetry: "Berlin is the capital of" -> Germany is more confident than "The capital of Germany is" -> Berlin.

Claim: "'Berlin is capital of Germany' produces higher confidence than 'Germany's capital is Berlin'"
(readme of experiment 001); "Directional knowledge bias exists across models" (project notes).
Literature: the reversal curse (Berglund et al. 2023); a capital/country pair is a weak test of it,
since both directions are common in training text.

Definition: compare like with like. For each fact, the country's output probability after "<capital> is
the capital of", normalised over the set's countries, against the capital's after "The capital of
<country> is", normalised over the set's capitals (each candidate's followed token counted once): raw
probabilities of different tokens after different frames are not comparable (a frame whose mass goes to
" the" loses to any other). A fact counts only if the model answers at all in at least one direction
(the candidates together get at least 5% of the output probability). The effect is ln(p_reverse / p_forward);
the claim holds if the 95% interval of its median over facts (bootstrap) lies above 0, is refuted if it
lies at or below 0.
"""

import pytest

from findings.data import THRESHOLDS
from findings.evidence import paired_forms_verdict

CLAIM = "directional_asymmetry"
pytestmark = pytest.mark.claim(CLAIM, number=6)

T = THRESHOLDS[CLAIM]


def evaluate(findings, prompt_set: str):
    """The claim's verdict on one model and prompt set."""
    return paired_forms_verdict(CLAIM, findings, prompt_set, better="reverse", worse="completion",
                                floor=T["floor"], statistic="median ln(p_reverse / p_forward), normalised over candidates")


def test_directional_asymmetry(findings, prompt_set, judge):
    judge(evaluate(findings, prompt_set))
