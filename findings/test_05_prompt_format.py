"""Prompt format: the Q&A form gives the answer a higher output probability than the completion form.

Claim: "Q&A format ('Question: What is the capital of Germany? Answer:') works better than completion
format for many models" (project notes, recent progress).

Definition: for each fact, compare the output probability of the answer's first token after
"Question: What is the capital of X? Answer:" with that after "The capital of X is". The claim holds
if the 95% bootstrap interval of the share of facts where the Q&A form is higher lies above 0.5.
"""

import pytest

from findings.data import SETS, THRESHOLDS
from findings.evidence import share_verdict

pytestmark = pytest.mark.claim("prompt_format", number=5)


def test_prompt_format(findings, prompt_set, judge, claim):
    rows = [
        {"fact": fact.id, "p_completion": c.output.p_answer, "p_qa": q.output.p_answer,
         "qa_higher": q.output.p_answer > c.output.p_answer}
        for fact, c, q in zip(SETS[prompt_set], findings.lens(prompt_set)["completion"], findings.lens(prompt_set)["qa"])
    ]
    judge(share_verdict(claim, findings.name, prompt_set, rows, "qa_higher",
                        THRESHOLDS["prompt_format"]["majority"],
                        "share of facts where Q&A beats completion"))
