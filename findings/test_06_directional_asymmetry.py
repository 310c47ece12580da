"""Directional asymmetry: "Berlin is the capital of" -> Germany is more confident than "The capital of Germany is" -> Berlin.

Claim: "'Berlin is capital of Germany' produces higher confidence than 'Germany's capital is Berlin'"
(readme of experiment 001); "Directional knowledge bias exists across models" (project notes).
Literature: the reversal curse (Berglund et al. 2023); a capital/country pair is a weak test of it,
since both directions are common in training text.

Definition: for each fact, compare the output probability of the country after "<capital> is the
capital of" with that of the capital after "The capital of <country> is". The claim holds if the 95%
bootstrap interval of the share of facts where the reverse direction is higher lies above 0.5.
"""

import pytest

from findings.data import SETS, THRESHOLDS
from findings.evidence import share_verdict

pytestmark = pytest.mark.claim("directional_asymmetry", number=6)


def test_directional_asymmetry(findings, prompt_set, judge, claim):
    forms = findings.lens(prompt_set)
    rows = [
        {"fact": fact.id, "p_forward": f.output.p_answer, "p_reverse": r.output.p_answer,
         "reverse_higher": r.output.p_answer > f.output.p_answer}
        for fact, f, r in zip(SETS[prompt_set], forms["completion"], forms["reverse"])
    ]
    judge(share_verdict(claim, findings.name, prompt_set, rows, "reverse_higher",
                        THRESHOLDS["directional_asymmetry"]["majority"],
                        "share of facts where the reverse direction is more confident"))
