"""Factual recall: the model answers in both the completion and the Q&A form.

Claim: "Llama 3: correct knowledge (Berlin) with both completion and Q&A formats"; "Mistral 7B:
correct knowledge (Berlin) with both formats" (project notes).

Definition: a fact is recalled when the model's own greedy continuation (a few tokens, after any
whitespace or line break it writes first) starts with the answer or one of its aliases (" Kiev" for Kyiv)
after both "The capital of X is" and "Question: What is the capital of X? Answer:". The claim holds if the
exact 95% interval of the share of recalled facts lies above 0.5. Beside it: the share answered in each form.
"""

import pytest

from findings.evidence import RESAMPLING, scope
from suite.statistics import Verdict
from suite.verdicts import beside, share_of, share_verdict

CLAIM = "factual_recall"
pytestmark = pytest.mark.claim(CLAIM, number=10)


def evaluate(findings, prompt_set: str, t) -> Verdict:
    """The claim's verdict on one model and prompt set."""
    rows = []
    for c, q in zip(findings.readings(prompt_set, "completion"), findings.readings(prompt_set, "qa")):
        rows.append({"fact": c.fact.id, "completion_reply": c.reply.text, "qa_reply": q.reply.text,
                     "completion": c.answered is not None, "qa": q.answered is not None,
                     "recalled": c.answered is not None and q.answered is not None})
    figures = [beside(f"share answered in the {form} form", share_of(rows, form)) for form in ("completion", "qa")]
    return share_verdict(rows, flag="recalled", threshold=t["majority"],
                         statistic="share of facts answered in both forms",
                         scope=scope(CLAIM, findings, prompt_set, t), resampling=RESAMPLING, figures=figures)


def test_factual_recall(findings, prompt_set, judge_claim):
    judge_claim(evaluate, findings, prompt_set)
