"""Factual recall: the model answers in both the completion and the Q&A form.

Claim: "Llama 3: correct knowledge (Berlin) with both completion and Q&A formats"; "Mistral 7B:
correct knowledge (Berlin) with both formats" (project notes).

Definition: a fact is recalled when the model's own greedy continuation (a few tokens, after any
whitespace or line break it writes first) starts with the answer or one of its aliases (" Kiev" for Kyiv)
after both "The capital of X is" and "Question: What is the capital of X? Answer:". The claim holds if the
exact 95% interval of the share of recalled facts lies above 0.5. Beside it: the share answered in each form,
and a read of recall that does not depend on the reply's format (a model that answers "\nA:" first still
ranks the answers): the share of facts whose answer is the most probable of the set's candidate answers at the
output in both forms, with its exact interval.
"""

import math

import pytest

from findings.evidence import RESAMPLING, scope
from suite.statistics import Evidence, Verdict, share_ci
from suite.verdicts import beside, share_of, share_verdict

CLAIM = "factual_recall"
pytestmark = pytest.mark.claim(CLAIM, number=10)


def evaluate(findings, prompt_set: str, t) -> Verdict:
    """The claim's verdict on one model and prompt set."""
    rows = []
    tops = {form: findings.candidates(prompt_set, form) for form in ("completion", "qa")}
    for c, q in zip(findings.readings(prompt_set, "completion"), findings.readings(prompt_set, "qa")):
        ranked = [tops[form].get(c.fact.id) for form in tops]
        rows.append(
            Evidence(
                c.fact.id,
                {
                    "completion_reply": c.reply.text,
                    "qa_reply": q.reply.text,
                    "completion": c.answered is not None,
                    "qa": q.answered is not None,
                    "recalled": c.answered is not None and q.answered is not None,
                    "top_candidate_in_both": all(r is not None and r.top for r in ranked),
                },
            )
        )
    ranked = share_of(rows, "top_candidate_in_both")
    lo, hi = share_ci(ranked * len(rows), len(rows), t["confidence"]) if rows else (math.nan, math.nan)
    figures = [beside(f"share answered in the {form} form", share_of(rows, form)) for form in ("completion", "qa")]
    figures.append(
        beside(
            f"share whose answer tops the set's candidate answers at the output in both forms, "
            f"whatever the reply ({t['confidence']:.1%} CI {lo:.2f} to {hi:.2f})",
            ranked,
        )
    )
    return share_verdict(
        rows,
        flag="recalled",
        threshold=t["majority"],
        statistic="share of facts answered in both forms",
        scope=scope(CLAIM, findings, prompt_set, t),
        resampling=RESAMPLING,
        figures=figures,
    )


def test_factual_recall(findings, prompt_set, judge_claim):
    judge_claim(evaluate, findings, prompt_set)
