"""Factual recall: the model's output puts the answer top-1 in both the completion and the Q&A form.

Claim: "Llama 3: correct knowledge (Berlin) with both completion and Q&A formats"; "Mistral 7B:
correct knowledge (Berlin) with both formats" (project notes).

Definition: a fact is recalled when the output's top token is the answer (in any spelling that is a whole
token there: with or without a leading space, capitalised) after both "The capital of X is" and "Question: What is the
capital of X? Answer:". The claim holds if the exact 95% interval of the share of recalled facts lies
above 0.5.
"""

import pytest

from findings.data import THRESHOLDS
from findings.evidence import output_top1, share_verdict
from suite.statistics import Verdict

CLAIM = "factual_recall"
pytestmark = pytest.mark.claim(CLAIM, number=10)


def evaluate(findings, prompt_set: str) -> Verdict:
    """The claim's verdict on one model and prompt set."""
    forms = findings.lens(prompt_set)
    rows = []
    for fact, c, q in zip(findings.facts(prompt_set), forms["completion"], forms["qa"]):
        rows.append({"fact": fact.id, "completion_top1": c.output.top[0][0], "qa_top1": q.output.top[0][0],
                     "p_completion": c.output.p_answer, "p_qa": q.output.p_answer,
                     "recalled": output_top1(c, fact.answer) and output_top1(q, fact.answer)})
    return share_verdict(CLAIM, findings.name, prompt_set, rows, "recalled",
                         THRESHOLDS[CLAIM]["majority"], "share of facts recalled top-1 in both forms")


def test_factual_recall(findings, prompt_set, judge):
    judge(evaluate(findings, prompt_set))
