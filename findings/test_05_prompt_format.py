"""Prompt format: the Q&A form gives the answer more probability than the completion form does.

Claim: "Q&A format ('Question: What is the capital of Germany? Answer:') works better than completion
format for many models" (project notes, recent progress).

Definition: compare like with like. For each fact, the answer's output probability normalised over the
set's candidate answers (each candidate's followed token counted once), after "Question: What is the
capital of X? Answer:" and after "The capital of X is": a frame that spends its mass on " the" lowers
every candidate alike. A fact counts only if the model answers at all in at least one form (the
candidates together get at least 5% of the output probability). The effect is the log-ratio ln(p_qa / p_completion);
the claim holds if the 95% interval of its median over facts (bootstrap) lies above 0, is refuted if it
lies at or below 0.
"""

import pytest

from findings.data import THRESHOLDS
from findings.evidence import paired_forms_verdict

CLAIM = "prompt_format"
pytestmark = pytest.mark.claim(CLAIM, number=5)

T = THRESHOLDS[CLAIM]


def evaluate(findings, prompt_set: str):
    """The claim's verdict on one model and prompt set."""
    return paired_forms_verdict(CLAIM, findings, prompt_set, better="qa", worse="completion",
                                floor=T["floor"], statistic="median ln(p_qa / p_completion), normalised over candidates")


def test_prompt_format(findings, prompt_set, judge):
    judge(evaluate(findings, prompt_set))


