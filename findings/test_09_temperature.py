"""Temperature: it changes confidence but never the ranking, so a lower temperature reveals no different answer.

Claim: "Temperature scaling reveals model confidence patterns across architectures" (project notes);
"Lower temperature shows what the model 'really thinks'" (readme of experiment 001). Dividing logits
by a temperature is monotone, so it cannot change which token is on top; this tests what is measured.

Definition: on each completion and Q&A prompt, at temperatures 0.5 and 2.0 against 1.0: the top-5
tokens, in order, at every block and at the output are the same, the answer's rank at every block is
the same, and the output's top-1 probability is higher at 0.5 and lower at 2.0. The claim holds if
the 95% bootstrap interval of the share of prompts where all of this is true lies above 0.95. It
refutes the reading that a lower temperature shows a different answer.
"""

import pytest

from findings.data import SETS, THRESHOLDS
from findings.evidence import share_verdict

pytestmark = pytest.mark.claim("temperature", number=9)

T = THRESHOLDS["temperature"]


def test_temperature(findings, prompt_set, judge, claim):
    cool, warm = sorted(T["temperatures"])
    tempered = findings.tempered(prompt_set, (cool, warm))
    rows = []
    for form in ("completion", "qa"):
        for i, (fact, base) in enumerate(zip(SETS[prompt_set], findings.lens(prompt_set)[form])):
            same_ranking = True
            for other in (tempered[cool][form][i], tempered[warm][form][i]):
                same_ranking &= [t for t, _ in other.output.top] == [t for t, _ in base.output.top]
                for a, b in zip(base.layers, other.layers):
                    same_ranking &= [t for t, _ in a.top] == [t for t, _ in b.top]
                    same_ranking &= a.rank_answer == b.rank_answer
            p_cool = tempered[cool][form][i].output.top[0][1]
            p_warm = tempered[warm][form][i].output.top[0][1]
            p_base = base.output.top[0][1]
            rows.append({"prompt": f"{fact.id}/{form}", "same_ranking": same_ranking,
                         f"top1_p_T{cool:g}": p_cool, "top1_p_T1": p_base, f"top1_p_T{warm:g}": p_warm,
                         "holds": same_ranking and p_cool > p_base > p_warm})
    judge(share_verdict(claim, findings.name, prompt_set, rows, "holds", T["all_prompts"],
                        "share of prompts where temperature changes confidence but not the ranking"))
